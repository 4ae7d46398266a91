//! Direct methods: answered on their topic, only on their connection.

use super::*;

fn method_request(name: &str, rid: &str, body: &'static [u8]) -> Publish {
    Publish::new(
        hub::method_request(name, &RequestId::new(rid)).unwrap(),
        QosPid::AtMostOnce,
        Bytes::from_static(body),
    )
    .unwrap()
}

#[test]
fn a_method_request_is_answered_on_its_topic() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(method_request("reboot", "abc", br#"{"delay":5}"#));
    let events = h.events();
    let [Event::MethodRequest { id, name, payload }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(name, "reboot");
    assert_eq!(id.request_id().as_str(), "abc");
    assert_eq!(payload.as_ref(), br#"{"delay":5}"#);
    h.s.respond_to_method(
        h.now,
        id.clone(),
        200,
        Bytes::from_static(br#"{"ok":true}"#),
    )
    .unwrap();
    let p = only_publish(&h.sent());
    assert_eq!(p.topic().as_str(), "$iothub/methods/res/200/?$rid=abc");
    assert_eq!(p.payload().as_ref(), br#"{"ok":true}"#);
    assert_eq!(p.qos(), QoS::AtMostOnce);

    let big = Bytes::from(vec![b' '; MAX_METHOD_PAYLOAD + 1]);
    assert!(matches!(
        h.s.respond_to_method(h.now, id.clone(), 200, big),
        Err(CommandError::PayloadTooLarge { .. })
    ));
}

#[test]
fn a_method_response_after_reconnect_is_undeliverable() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(method_request("reboot", "abc", b""));
    let Some(Event::MethodRequest { id, .. }) = h.events().pop() else {
        panic!("no method request");
    };
    assert_eq!(id.connection(), 1);
    h.drop_transport();
    assert_eq!(
        h.s.respond_to_method(h.now, id.clone(), 200, Bytes::new()),
        Err(CommandError::MethodResponseUndeliverable)
    );
    h.advance(secs(61));
    h.connect_and_grant();
    assert_eq!(h.s.connection(), 2);
    assert_eq!(
        h.s.respond_to_method(h.now, id, 200, Bytes::new()),
        Err(CommandError::MethodResponseUndeliverable)
    );
    assert!(h.sent().is_empty());
}
