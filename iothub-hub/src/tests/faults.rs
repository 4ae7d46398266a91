//! Fault injection.

use super::*;
use iothub_proto::mqtt::LastWill;

#[test]
fn fail_next_twin_ops_answers_the_injected_status() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub.fail_next_twin_ops(&dev, 2, 429).unwrap();
    let rid = RequestId::from(1);
    w.publish(
        conn,
        &topic::twin_patch_reported(&rid),
        QosPid::AtMostOnce,
        b"{\"a\":1}",
    );
    w.publish(conn, &topic::twin_get(&rid), QosPid::AtMostOnce, b"");
    w.publish(conn, &topic::twin_get(&rid), QosPid::AtMostOnce, b"");
    let answers = publishes(&w.recv(conn));
    let statuses: Vec<u16> = answers
        .iter()
        .map(|p| match topic::parse(p.topic().as_str()).unwrap() {
            topic::HubTopic::TwinResponse { status, .. } => status,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    assert_eq!(json(&answers[0])["errorCode"], 429_001);
    // The failed PATCH was not applied.
    assert_eq!(w.hub.reported_version(&dev), Some(1));
    assert_eq!(
        w.hub
            .fail_next_twin_ops(&Identity::parse("ghost", None).unwrap(), 1, 500),
        Err(HubError::UnknownIdentity)
    );
}

#[test]
fn malformed_twin_body_next_breaks_one_get() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub.malformed_twin_body_next(&dev).unwrap();
    let rid = RequestId::from(1);
    w.publish(conn, &topic::twin_get(&rid), QosPid::AtMostOnce, b"");
    let p = one_publish(&w.recv(conn));
    assert!(p.topic().as_str().starts_with("$iothub/twin/res/200/"));
    assert!(serde_json::from_slice::<Value>(p.payload()).is_err());
    w.publish(conn, &topic::twin_get(&rid), QosPid::AtMostOnce, b"");
    let p = one_publish(&w.recv(conn));
    assert!(serde_json::from_slice::<Value>(p.payload()).is_ok());
}

#[test]
fn drop_connection_closes_without_a_word_and_publishes_the_will() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let will = LastWill::new(
        topic::telemetry(&dev, &MessageProperties::new()),
        Bytes::from_static(b"w"),
        QoS::AtMostOnce,
        false,
    )
    .unwrap();
    let (conn, _) = w.open(w.connect_packet(&dev, &k).with_last_will(will));
    w.hub.drop_connection(conn);
    assert!(w.hub.is_closed(conn));
    assert_eq!(w.hub.close_reason(conn), Some(CloseReason::Dropped));
    assert!(w.recv(conn).is_empty());
    assert!(!w.hub.is_connected(&dev));
    assert!(w.hub.telemetry()[0].is_will());
    // Dropping again, or client_closed afterwards, changes nothing.
    w.hub.drop_connection(conn);
    w.hub.client_closed(conn);
    assert_eq!(w.hub.close_reason(conn), Some(CloseReason::Dropped));
    assert_eq!(w.hub.telemetry().len(), 1);
}

#[test]
fn refuse_connects_refuses_the_next_n() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    w.hub
        .refuse_connects(2, ConnectReturnCode::ServerUnavailable);
    for _ in 0..2 {
        let (conn, ack) = w.open(w.connect_packet(&dev, &k));
        assert_eq!(ack.code(), ConnectReturnCode::ServerUnavailable);
        assert!(w.hub.is_closed(conn));
    }
    w.connect(&dev, &k);
    assert_eq!(w.hub.counters().connects_refused, 2);
    assert_eq!(w.hub.counters().connects_accepted, 1);
    // Accepted turns it off.
    w.hub.refuse_connects(5, ConnectReturnCode::Accepted);
    w.connect(&dev, &k);
}

#[test]
fn silence_pingresp_swallows_pings() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.hub.silence_pingresp(true);
    w.send(conn, Packet::Pingreq);
    assert!(w.recv(conn).is_empty());
    // The ping still counts as activity for the keep-alive.
    assert_eq!(w.hub.counters().pings, 1);
    w.hub.silence_pingresp(false);
    w.send(conn, Packet::Pingreq);
    assert_eq!(w.recv(conn), [Packet::Pingresp]);
}

#[test]
fn withhold_pubacks_stores_but_does_not_acknowledge() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.hub.withhold_pubacks(true);
    let t = topic::telemetry(&dev, &MessageProperties::new());
    w.publish(conn, &t, QosPid::AtLeastOnce(Pid::MIN), b"1");
    assert!(w.recv(conn).is_empty());
    assert_eq!(w.hub.telemetry().len(), 1);
    assert_eq!(w.hub.counters().pubacks_withheld, 1);
    w.hub.withhold_pubacks(false);
    w.publish(conn, &t, QosPid::AtLeastOnce(Pid::MIN), b"1");
    assert_eq!(w.recv(conn), [Packet::Puback(Pid::MIN)]);
}

#[test]
fn send_raw_injects_bytes_such_as_a_qos_2_publish() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    let qos2 = Publish::new(
        "devices/dev1/messages/devicebound/",
        QosPid::ExactlyOnce(Pid::MIN),
        Bytes::from_static(b"!"),
    )
    .unwrap();
    w.hub
        .send_raw(conn, Packet::Publish(qos2.clone()).to_bytes());
    assert_eq!(w.recv(conn), [Packet::Publish(qos2)]);
    w.hub.drop_connection(conn);
    w.hub.send_raw(conn, Bytes::from_static(b"\x00"));
    assert!(w.hub.poll_transmit(conn).is_none());
}
