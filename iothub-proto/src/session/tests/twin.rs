//! Twin requests and desired properties: answers, retries, timeouts,
//! versions, resync after a gap.

use super::*;

/// A connected harness with the twin-response subscription granted.
fn twin_ready(cfg: Config) -> Harness {
    let mut h = Harness::new(cfg);
    h.connect();
    h.s.get_twin(h.now).unwrap();
    let sent = h.sent();
    let rest = h.grant(sent);
    let get = only_publish(&rest);
    h.feed(twin_answer(200, &rid_of(&get), None, b"{}"));
    h.events();
    h
}

#[test]
fn twin_get_accepts_both_body_shapes() {
    let mut h = twin_ready(config());
    for body in [
        json!({"desired": {"a": 1, "$version": 4}, "reported": {"b": 2, "$version": 9}}),
        json!({"properties": {"desired": {"a": 1, "$version": 4}, "reported": {"b": 2, "$version": 9}}}),
    ] {
        let token = h.s.get_twin(h.now).unwrap();
        let get = only_publish(&h.sent());
        let body = serde_json::to_vec(&body).unwrap();
        h.feed(twin_answer(200, &rid_of(&get), None, &body));
        let events = h.events();
        let [Event::TwinReceived { token: t, twin }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(*t, token);
        assert_eq!(twin.desired["a"], json!(1));
        assert_eq!(twin.reported["b"], json!(2));
        assert_eq!(twin.desired_version, Some(4));
        assert_eq!(twin.reported_version, Some(9));
    }
    assert_eq!(h.s.pending_requests_len(), 0);
}

#[test]
fn reported_patch_returns_the_new_version() {
    let mut h = twin_ready(config());
    let token =
        h.s.update_reported(h.now, Bytes::from_static(br#"{"fw":"1.2"}"#))
            .unwrap();
    let patch = only_publish(&h.sent());
    assert!(
        patch
            .topic()
            .as_str()
            .starts_with("$iothub/twin/PATCH/properties/reported/?$rid=")
    );
    assert_eq!(patch.payload().as_ref(), br#"{"fw":"1.2"}"#);
    h.feed(twin_answer(204, &rid_of(&patch), Some(12), b""));
    assert_eq!(
        h.events(),
        vec![Event::ReportedUpdated {
            token,
            version: Some(12)
        }]
    );
}

#[test]
fn reported_patch_must_be_a_json_object_of_at_most_32_kb() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.s.update_reported(h.now, Bytes::from_static(b"[1,2]")),
        Err(CommandError::NotJsonObject)
    );
    assert!(matches!(
        h.s.update_reported(h.now, Bytes::from_static(b"{nope")),
        Err(CommandError::InvalidJson(JsonError::Syntax { .. }))
    ));
    let mut big = String::from("{\"a\":\"");
    big.push_str(&"x".repeat(MAX_REPORTED_SIZE));
    big.push_str("\"}");
    assert!(matches!(
        h.s.update_reported(h.now, Bytes::from(big)),
        Err(CommandError::PayloadTooLarge { .. })
    ));
    assert_eq!(h.s.pending_requests_len(), 0);
}

#[test]
fn status_429_is_retried_with_backoff_then_succeeds() {
    let mut h = twin_ready(config());
    let token = h.s.get_twin(h.now).unwrap();
    let first = only_publish(&h.sent());
    h.feed(twin_answer(429, &rid_of(&first), None, b""));
    assert!(h.events().is_empty(), "a retriable status is not final");
    assert!(h.sent().is_empty(), "not retried at once");
    h.advance(secs(3));
    let second = only_publish(&h.sent());
    assert_ne!(
        rid_of(&first),
        rid_of(&second),
        "each attempt has its own $rid"
    );
    // A late answer to the first attempt is ignored.
    h.feed(twin_answer(200, &rid_of(&first), None, b"{}"));
    assert!(h.events().is_empty());
    h.feed(twin_answer(
        200,
        &rid_of(&second),
        None,
        br#"{"desired":{"$version":1},"reported":{}}"#,
    ));
    assert!(matches!(
        h.events().as_slice(),
        [Event::TwinReceived { token: t, .. }] if *t == token
    ));
}

#[test]
fn retriable_statuses_give_up_after_the_retry_limit() {
    let mut h = twin_ready(config().with_request_retries(2));
    let token = h.s.get_twin(h.now).unwrap();
    for _ in 0..2 {
        let p = only_publish(&h.sent());
        h.feed(twin_answer(503, &rid_of(&p), None, b""));
        // At most min * 3 then min * 9.
        h.advance(secs(9));
    }
    let p = only_publish(&h.sent());
    h.feed(twin_answer(503, &rid_of(&p), None, b""));
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::RequestFailed {
            token,
            error: RequestError::Hub(HubStatus { status: 503 })
        }]
    );
}

#[test]
fn status_404_is_a_typed_error() {
    let mut h = twin_ready(config());
    let token = h.s.get_twin(h.now).unwrap();
    let p = only_publish(&h.sent());
    h.feed(twin_answer(404, &rid_of(&p), None, b""));
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::RequestFailed {
            token,
            error: RequestError::Hub(HubStatus { status: 404 })
        }]
    );
    let Event::RequestFailed {
        error: RequestError::Hub(status),
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert!(!status.is_retriable());
}

#[test]
fn malformed_json_fails_only_that_request() {
    let mut h = twin_ready(config());
    let bad = h.s.get_twin(h.now).unwrap();
    let good = h.s.get_twin(h.now).unwrap();
    let sent = h.sent();
    let gets = publishes(&sent);
    h.feed(twin_answer(200, &rid_of(gets[0]), None, b"{\"desired\":"));
    h.feed(twin_answer(
        200,
        &rid_of(gets[1]),
        None,
        br#"{"desired":{},"reported":{}}"#,
    ));
    let events = h.events();
    assert!(matches!(
        &events[0],
        Event::RequestFailed { token, error: RequestError::MalformedResponse(JsonError::Syntax { .. }) } if *token == bad
    ));
    assert!(matches!(&events[1], Event::TwinReceived { token, .. } if *token == good));
    assert_eq!(h.s.state(), ConnectionState::Connected);
}

#[test]
fn request_ids_are_unique_beyond_256_requests() {
    let mut h = twin_ready(config().with_max_pending_requests(400));
    let mut rids = Vec::new();
    for _ in 0..300 {
        h.s.get_twin(h.now).unwrap();
    }
    for p in h.sent() {
        if let Packet::Publish(p) = p {
            rids.push(rid_of(&p));
        }
    }
    assert_eq!(rids.len(), 300);
    let mut unique = rids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300);
    assert_eq!(
        h.s.get_twin(h.now).map(|_| ()).err(),
        None,
        "301 pending is still under the limit of 400"
    );
}

#[test]
fn too_many_pending_requests_are_refused() {
    let mut h = Harness::new(config().with_max_pending_requests(2));
    h.s.get_twin(h.now).unwrap();
    h.s.get_twin(h.now).unwrap();
    assert_eq!(
        h.s.get_twin(h.now),
        Err(CommandError::TooManyRequests { max: 2 })
    );
}

#[test]
fn an_unanswered_request_times_out() {
    let mut h = twin_ready(config());
    let token = h.s.get_twin(h.now).unwrap();
    h.sent();
    h.advance(secs(30));
    assert_eq!(
        h.events(),
        vec![Event::RequestFailed {
            token,
            error: RequestError::Timeout
        }]
    );
}

#[test]
fn requests_in_flight_are_resent_after_reconnect_and_keep_their_deadline() {
    let mut h = twin_ready(config());
    let start = h.now;
    let token = h.s.get_twin(h.now).unwrap();
    let first = only_publish(&h.sent());
    h.drop_transport();
    h.advance(secs(5));
    h.events();
    let sent = h.connect();
    let rest = h.grant(sent);
    let again = only_publish(&rest);
    assert!(again.topic().as_str().starts_with("$iothub/twin/GET/"));
    assert_ne!(rid_of(&first), rid_of(&again));
    assert_eq!(h.s.timer(TimerKind::Request), Some(start + secs(30)));
    h.feed(twin_answer(
        200,
        &rid_of(&again),
        None,
        br#"{"desired":{},"reported":{}}"#,
    ));
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, Event::TwinReceived { token: t, .. } if *t == token))
    );
}

/// Answers the session's own full twin read with desired `$version` `v`.
fn answer_resync(h: &mut Harness, packets: &[Packet], v: u64) {
    let get = publishes(packets)
        .into_iter()
        .find(|p| p.topic().as_str().starts_with("$iothub/twin/GET/"))
        .expect("a full twin read");
    let body = json!({"desired": {"mode": v, "$version": v}, "reported": {}});
    h.feed(twin_answer(
        200,
        &rid_of(get),
        None,
        &serde_json::to_vec(&body).unwrap(),
    ));
}

fn patch(v: u64, body: serde_json::Value) -> Publish {
    Publish::new(
        hub::desired_patch(v),
        QosPid::AtMostOnce,
        Bytes::from(serde_json::to_vec(&body).unwrap()),
    )
    .unwrap()
}

fn desired_events(events: &[Event]) -> Vec<(&'static str, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DesiredState { version, .. } => Some(("state", *version)),
            Event::DesiredPatch { version, .. } => Some(("patch", *version)),
            _ => None,
        })
        .collect()
}

#[test]
fn full_desired_state_after_each_connect_only_when_the_version_moved() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    let events = h.events();
    assert_eq!(desired_events(&events), vec![("state", 5)]);
    assert!(events.iter().any(|e| matches!(e,
        Event::DesiredState { desired, .. } if desired["mode"] == json!(5))));
    assert_eq!(h.s.desired_version(), Some(5));
    assert_eq!(h.s.pending_requests_len(), 0, "the read is internal");

    // Reconnect: same version, no event.
    h.drop_and_wait();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    assert_eq!(desired_events(&h.events()), vec![]);

    // Reconnect: the version moved while offline.
    h.drop_and_wait();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 7);
    assert_eq!(desired_events(&h.events()), vec![("state", 7)]);
    assert_eq!(h.s.desired_version(), Some(7));
}

#[test]
fn stale_desired_patches_are_dropped_and_a_gap_triggers_a_full_read() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    h.events();

    h.feed(patch(5, json!({"mode": "old"})));
    h.feed(patch(4, json!({"mode": "older"})));
    assert_eq!(desired_events(&h.events()), vec![], "stale");
    h.feed(patch(6, json!({"mode": "six"})));
    let events = h.events();
    assert_eq!(desired_events(&events), vec![("patch", 6)]);
    assert!(events.iter().any(|e| matches!(e,
        Event::DesiredPatch { patch, .. } if patch["mode"] == json!("six"))));
    assert!(h.sent().is_empty());

    // Version 8 skips 7: a full read follows.
    h.feed(patch(8, json!({"mode": "eight"})));
    assert_eq!(desired_events(&h.events()), vec![]);
    let sent = h.sent();
    answer_resync(&mut h, &sent, 8);
    assert_eq!(desired_events(&h.events()), vec![("state", 8)]);
    assert_eq!(h.s.desired_version(), Some(8));
}

#[test]
fn patches_arriving_during_the_full_read_are_applied_after_it() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    // While the read is in flight: 5 (will be stale) and 6.
    h.feed(patch(5, json!({"a": 5})));
    h.feed(patch(6, json!({"a": 6})));
    assert_eq!(desired_events(&h.events()), vec![]);
    answer_resync(&mut h, &rest, 5);
    assert_eq!(
        desired_events(&h.events()),
        vec![("state", 5), ("patch", 6)]
    );
    assert_eq!(h.s.desired_version(), Some(6));
}

#[test]
fn an_initial_desired_version_suppresses_an_unchanged_state() {
    let mut h = Harness::new(config().with_initial_desired_version(Some(5)));
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    assert_eq!(desired_events(&h.events()), vec![]);
}

#[test]
fn a_refused_desired_subscription_fails_the_sync_at_once() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let sub = only_subscribe(&h.connect());
    h.events();
    let codes = sub.filters().iter().map(|(f, q)| {
        if f.as_str() == "$iothub/twin/PATCH/properties/desired/#" {
            SubscribeReturnCode::Failure
        } else {
            SubscribeReturnCode::Success(*q)
        }
    });
    h.feed(Suback::new(sub.pid(), codes).unwrap());
    assert_eq!(
        h.events(),
        vec![
            Event::SubscriptionFailed {
                subscription: Subscription::DesiredProperties
            },
            Event::DesiredSyncFailed {
                error: RequestError::SubscriptionFailed
            }
        ]
    );
    assert!(h.sent().is_empty(), "no twin read without notifications");
    // The next connection tries again.
    h.drop_and_wait();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 2);
    assert_eq!(desired_events(&h.events()), vec![("state", 2)]);
}

#[test]
fn desired_patches_without_the_feature_are_ignored() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    h.feed(patch(3, json!({"a": 1})));
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty(), "no twin read");
    assert_eq!(h.s.desired_version(), None);
}

#[test]
fn an_invalid_desired_patch_is_reported_and_resynced() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 1);
    h.events();
    h.feed(
        Publish::new(
            hub::desired_patch(2),
            QosPid::AtMostOnce,
            Bytes::from_static(b"[]"),
        )
        .unwrap(),
    );
    assert_eq!(
        h.events(),
        vec![Event::InvalidDesiredPatch {
            version: 2,
            error: JsonError::Shape
        }]
    );
    let sent = h.sent();
    answer_resync(&mut h, &sent, 2);
    assert_eq!(desired_events(&h.events()), vec![("state", 2)]);
}
