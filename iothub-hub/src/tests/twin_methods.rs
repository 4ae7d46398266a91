//! Twins (GET, reported PATCH, desired notifications) and direct methods.

use super::*;
use serde_json::json;

fn get(w: &mut World, conn: ConnId, rid: u64) -> Vec<Packet> {
    let t = topic::twin_get(&RequestId::from(rid));
    w.publish(conn, &t, QosPid::AtMostOnce, b"");
    w.recv(conn)
}

fn patch(w: &mut World, conn: ConnId, rid: u64, body: &[u8]) -> Vec<Packet> {
    let t = topic::twin_patch_reported(&RequestId::from(rid));
    w.publish(conn, &t, QosPid::AtMostOnce, body);
    w.recv(conn)
}

fn response(p: &Publish) -> (u16, String, Option<u64>) {
    match topic::parse(p.topic().as_str()).unwrap() {
        topic::HubTopic::TwinResponse {
            status,
            request_id,
            version,
        } => (status, s(request_id), version),
        other => panic!("{other:?}"),
    }
}

#[test]
fn twin_get_patch_merge_and_versions() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);

    let p = one_publish(&get(&mut w, conn, 1));
    assert_eq!(response(&p), (200, s("1"), None));
    assert_eq!(p.qos(), QoS::AtMostOnce);
    assert_eq!(
        json(&p),
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );

    let p = one_publish(&patch(
        &mut w,
        conn,
        2,
        br#"{"fw": {"version": "1.0", "state": "ok"}, "temp": 21, "gone": 1}"#,
    ));
    assert_eq!(response(&p), (204, s("2"), Some(2)));
    assert!(p.payload().is_empty());
    let p = one_publish(&patch(
        &mut w,
        conn,
        3,
        br#"{"fw": {"state": null, "eta": [1, 2]}, "gone": null, "new": {"x": null}}"#,
    ));
    assert_eq!(response(&p), (204, s("3"), Some(3)));
    let expected = json!({"fw": {"version": "1.0", "eta": [1, 2]}, "temp": 21, "new": {}});
    assert_eq!(
        Value::Object(w.hub.reported(&dev).unwrap().clone()),
        expected
    );
    assert_eq!(w.hub.reported_version(&dev), Some(3));

    w.hub.update_desired(&dev, json!({"interval": 5})).unwrap();
    w.recv(conn);
    let p = one_publish(&get(&mut w, conn, 4));
    assert_eq!(
        json(&p),
        json!({
            "desired": {"interval": 5, "$version": 2},
            "reported": {"fw": {"version": "1.0", "eta": [1, 2]}, "temp": 21, "new": {}, "$version": 3}
        })
    );

    // Malformed JSON, or JSON that is not an object: 400, nothing applied.
    for body in [&b"{not json"[..], b"[1,2]", b"", b"null"] {
        let t = topic::twin_patch_reported(&RequestId::from(5));
        w.publish(conn, &t, QosPid::AtMostOnce, body);
        let p = one_publish(&w.recv(conn));
        assert_eq!(response(&p), (400, s("5"), None));
    }
    assert_eq!(w.hub.reported_version(&dev), Some(3));

    // QoS 1 twin requests are acknowledged before they are answered.
    let t = topic::twin_get(&RequestId::from(6));
    let pid = Pid::new(9).unwrap();
    w.publish(conn, &t, QosPid::AtLeastOnce(pid), b"");
    let packets = w.recv(conn);
    assert_eq!(packets[0], Packet::Puback(pid));
    assert_eq!(response(&one_publish(&packets)).0, 200);
}

#[test]
fn twin_requests_without_the_response_subscription_get_no_answer() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    assert!(get(&mut w, conn, 1).is_empty());
    assert!(patch(&mut w, conn, 2, br#"{"a": 1}"#).is_empty());
    assert_eq!(w.hub.reported_version(&dev), Some(1));
    assert_eq!(w.hub.counters().twin_requests_unanswered, 2);
    assert!(!w.hub.is_closed(conn));
    w.subscribe(conn, &[(TWIN_RESPONSE_FILTER, QoS::AtMostOnce)]);
    assert_eq!(publishes(&get(&mut w, conn, 3)).len(), 1);
}

#[test]
fn desired_updates_are_notified_to_subscribed_connected_identities() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    // Offline: version bumps, nothing sent.
    assert_eq!(
        w.hub.update_desired(&dev, json!({"a": 1, "b": {"c": 2}})),
        Ok(2)
    );
    assert_eq!(w.hub.desired_version(&dev), Some(2));
    let conn = w.connect(&dev, &k);
    // Connected but not subscribed: nothing sent.
    assert_eq!(w.hub.update_desired(&dev, json!({"a": 2})), Ok(3));
    assert!(w.recv(conn).is_empty());
    w.subscribe(conn, &[(DESIRED_PATCH_FILTER, QoS::AtMostOnce)]);
    assert_eq!(
        w.hub
            .update_desired(&dev, json!({"b": {"c": null}, "a": null})),
        Ok(4)
    );
    let p = one_publish(&w.recv(conn));
    assert_eq!(
        p.topic().as_str(),
        "$iothub/twin/PATCH/properties/desired/?$version=4"
    );
    assert_eq!(p.qos(), QoS::AtMostOnce);
    assert_eq!(
        json(&p),
        json!({"b": {"c": null}, "a": null, "$version": 4})
    );
    assert_eq!(
        Value::Object(w.hub.desired(&dev).unwrap().clone()),
        json!({"b": {}})
    );
    // Not an object; unknown identity.
    assert_eq!(
        w.hub.update_desired(&dev, json!([1])),
        Err(HubError::NotAnObject)
    );
    let ghost = Identity::parse("ghost", None).unwrap();
    assert_eq!(
        w.hub.update_desired(&ghost, json!({})),
        Err(HubError::UnknownIdentity)
    );
    assert_eq!(w.hub.desired_version(&ghost), None);
    assert_eq!(w.hub.reported(&ghost), None);
}

#[test]
fn direct_methods_round_trip() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let payload = Bytes::from_static(b"{\"delay\":1}");
    assert_eq!(
        w.hub.invoke_method(&dev, "reboot", payload.clone()),
        Err(HubError::NotConnected)
    );
    let conn = w.connect(&dev, &k);
    assert_eq!(
        w.hub.invoke_method(&dev, "reboot", payload.clone()),
        Err(HubError::NotConnected),
        "not subscribed"
    );
    w.subscribe(conn, &[(METHOD_REQUEST_FILTER, QoS::AtMostOnce)]);
    let rid = w
        .hub
        .invoke_method(&dev, "reboot", payload.clone())
        .unwrap();
    let p = one_publish(&w.recv(conn));
    assert_eq!(
        p.topic().as_str(),
        format!("$iothub/methods/POST/reboot/?$rid={rid}")
    );
    assert_eq!(p.payload(), &payload);
    let rid2 = w.hub.invoke_method(&dev, "getLog", Bytes::new()).unwrap();
    assert_ne!(rid, rid2);
    w.recv(conn);

    // Answers, in any order; an unknown request id is ignored.
    w.publish(
        conn,
        &topic::method_response(404, &rid2),
        QosPid::AtMostOnce,
        b"",
    );
    w.publish(
        conn,
        &topic::method_response(500, &RequestId::from(999)),
        QosPid::AtMostOnce,
        b"",
    );
    let pid = w.pid();
    w.publish(
        conn,
        &topic::method_response(200, &rid),
        QosPid::AtLeastOnce(pid),
        b"{\"ok\":true}",
    );
    assert_eq!(w.recv(conn), [Packet::Puback(pid)]);
    assert_eq!(w.hub.method_responses().len(), 2);
    assert_eq!(w.hub.method_responses()[0].identity, dev);
    assert_eq!(
        w.hub.take_method_response(&rid),
        Some((200, Bytes::from_static(b"{\"ok\":true}")))
    );
    assert_eq!(w.hub.take_method_response(&rid), None);
    assert_eq!(w.hub.take_method_response(&rid2), Some((404, Bytes::new())));
    // A second answer to an answered call is ignored.
    w.publish(
        conn,
        &topic::method_response(200, &rid),
        QosPid::AtMostOnce,
        b"",
    );
    assert!(w.hub.method_responses().is_empty());

    assert_eq!(
        w.hub.invoke_method(&dev, "a/b", Bytes::new()),
        Err(HubError::InvalidName)
    );
    assert_eq!(
        w.hub.invoke_method(&dev, "", Bytes::new()),
        Err(HubError::InvalidName)
    );
    // A name that cannot be in an MQTT topic: refused, not a call whose
    // request is never sent (and, without a deadline, never ends).
    let long = "m".repeat(70_000);
    for bad in ["a+b", "#", "m\0", long.as_str()] {
        assert_eq!(
            w.hub.invoke_method(&dev, bad, Bytes::new()),
            Err(HubError::InvalidName)
        );
    }
    assert!(w.recv(conn).is_empty());
    let big = Bytes::from(vec![b' '; MAX_METHOD_PAYLOAD + 1]);
    assert_eq!(
        w.hub.invoke_method(&dev, "m", big),
        Err(HubError::TooLarge {
            size: MAX_METHOD_PAYLOAD + 1,
            max: MAX_METHOD_PAYLOAD
        })
    );
    assert_eq!(
        w.hub
            .invoke_method(&Identity::parse("ghost", None).unwrap(), "m", Bytes::new()),
        Err(HubError::UnknownIdentity)
    );
}

#[test]
fn module_twins_and_methods_are_their_own() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (m, mk) = w.module("dev1", "m", 2);
    let dconn = w.connect(&dev, &k);
    let mconn = w.connect(&m, &mk);
    w.subscribe_all(dconn, &dev);
    w.subscribe_all(mconn, &m);
    patch(&mut w, mconn, 1, br#"{"module": true}"#);
    assert_eq!(w.hub.reported_version(&m), Some(2));
    assert_eq!(w.hub.reported_version(&dev), Some(1));
    w.hub.invoke_method(&m, "x", Bytes::new()).unwrap();
    assert!(w.recv(dconn).is_empty());
    assert_eq!(publishes(&w.recv(mconn)).len(), 1);
}
