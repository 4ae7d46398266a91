//! Subscriptions: only what is enabled, at most five, after every
//! reconnection, and twin requests waiting for theirs.

use super::*;

#[test]
fn subscribes_only_to_enabled_features_and_at_most_five() {
    let mut h = Harness::new(config());
    assert!(
        h.connect().is_empty(),
        "nothing enabled, nothing subscribed"
    );
    h.events();

    h.s.enable(h.now, Feature::Methods).unwrap();
    let sub = only_subscribe(&h.sent());
    assert_eq!(filters(&sub), vec!["$iothub/methods/POST/#"]);
    assert_eq!(sub.filters()[0].1, QoS::AtMostOnce);
    // Enabling again is harmless.
    h.s.enable(h.now, Feature::Methods).unwrap();
    assert!(h.sent().is_empty());

    h.s.enable(h.now, Feature::C2d).unwrap();
    let sub = only_subscribe(&h.sent());
    assert_eq!(filters(&sub), vec!["devices/dev1/messages/devicebound/#"]);
    assert_eq!(sub.filters()[0].1, QoS::AtLeastOnce);
    assert!(h.s.is_enabled(Feature::C2d));
    assert!(!h.s.is_enabled(Feature::DesiredProperties));
}

#[test]
fn features_enabled_before_connecting_go_in_one_subscribe() {
    let mut h = Harness::new(config());
    for f in [Feature::C2d, Feature::Methods, Feature::DesiredProperties] {
        h.s.enable(h.now, f).unwrap();
    }
    let sent = h.connect();
    let sub = only_subscribe(&sent);
    let f = filters(&sub);
    assert_eq!(
        f,
        vec![
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
            "devices/dev1/messages/devicebound/#",
        ]
    );
    assert!(f.len() <= 5);
}

#[test]
fn features_must_fit_the_identity() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.s.enable(h.now, Feature::ModuleInputs),
        Err(CommandError::FeatureNotAvailable(Feature::ModuleInputs))
    );
    let mut h = Harness::new(Config::new(
        module(),
        HostName::new(HOST).unwrap(),
        key_credential(),
    ));
    assert_eq!(
        h.s.enable(h.now, Feature::C2d),
        Err(CommandError::FeatureNotAvailable(Feature::C2d))
    );
    h.s.enable(h.now, Feature::ModuleInputs).unwrap();
    let sub = only_subscribe(&h.connect());
    assert_eq!(filters(&sub), vec!["devices/dev1/modules/mod1/inputs/#"]);
}

#[test]
fn twin_requests_wait_for_the_twin_response_suback() {
    let mut h = Harness::new(config());
    h.connect();
    let token = h.s.get_twin(h.now).unwrap();
    let sub = only_subscribe(&h.sent());
    assert_eq!(filters(&sub), vec!["$iothub/twin/res/#"]);
    // No GET before the SUBACK.
    let second = h.s.get_twin(h.now).unwrap();
    assert!(h.sent().is_empty());
    h.feed(Suback::new(sub.pid(), [SubscribeReturnCode::Success(QoS::AtMostOnce)]).unwrap());
    let sent = h.sent();
    let gets = publishes(&sent);
    assert_eq!(gets.len(), 2);
    assert!(
        gets[0]
            .topic()
            .as_str()
            .starts_with("$iothub/twin/GET/?$rid=")
    );
    assert!(gets[0].payload().is_empty());
    assert_eq!(gets[0].qos(), QoS::AtMostOnce);
    assert_ne!(token, second);
    // A third request goes out at once, without another SUBSCRIBE.
    h.s.get_twin(h.now).unwrap();
    assert_eq!(publishes(&h.sent()).len(), 1);
}

#[test]
fn suback_failure_is_an_event_and_fails_waiting_twin_requests() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    let token = h.s.get_twin(h.now).unwrap();
    let sub = only_subscribe(&h.connect());
    h.events();
    let codes = sub.filters().iter().map(|(f, q)| {
        if f.as_str() == "$iothub/twin/res/#" {
            SubscribeReturnCode::Failure
        } else {
            SubscribeReturnCode::Success(*q)
        }
    });
    h.feed(Suback::new(sub.pid(), codes).unwrap());
    let events = h.events();
    assert_eq!(
        events,
        vec![
            Event::SubscriptionFailed {
                subscription: Subscription::TwinResponses
            },
            Event::RequestFailed {
                token,
                error: RequestError::SubscriptionFailed
            }
        ]
    );
    assert_eq!(h.s.state(), ConnectionState::Connected, "not fatal");
}

#[test]
fn resubscribes_everything_enabled_after_each_reconnect() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.connect_and_grant();
    h.s.enable(h.now, Feature::C2d).unwrap();
    let sent = h.sent();
    h.grant(sent);
    h.s.get_twin(h.now).unwrap();
    let sent = h.sent();
    let rest = h.grant(sent);
    assert_eq!(publishes(&rest).len(), 1);
    h.drop_and_wait();
    let sent = h.connect();
    let subs: Vec<_> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Subscribe(s) => Some(filters(s)),
            _ => None,
        })
        .collect();
    assert_eq!(
        subs,
        vec![vec![
            "$iothub/twin/res/#".to_string(),
            "$iothub/methods/POST/#".to_string(),
            "devices/dev1/messages/devicebound/#".to_string(),
        ]]
    );
}
