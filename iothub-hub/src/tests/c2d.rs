//! Cloud-to-device and module input messages: QoS 1 delivery, PUBACK,
//! redelivery with DUP, CleanSession, limits.

use super::*;
use iothub_proto::properties::Ack;

fn c2d_props(mid: Option<&str>) -> MessageProperties {
    let mut p = MessageProperties::new();
    p.message_id = mid.map(s);
    p.ack = Some(Ack::Full);
    p.add_application("k", "v").unwrap();
    p
}

fn parse_c2d(p: &Publish) -> MessageProperties {
    match topic::parse(p.topic().as_str()).unwrap() {
        topic::HubTopic::C2d { properties, .. } => properties,
        other => panic!("{other:?}"),
    }
}

#[test]
fn c2d_is_delivered_at_qos_1_with_mid_and_to_and_removed_on_puback() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let d = dev.device_id().clone();
    // Queued while offline.
    w.hub
        .send_c2d(&d, c2d_props(None), Bytes::from_static(b"one"))
        .unwrap();
    w.hub
        .send_c2d(&d, c2d_props(Some("mine")), Bytes::from_static(b"two"))
        .unwrap();
    assert_eq!(w.hub.pending_messages(&dev), 2);
    let conn = w.connect(&dev, &k);
    // Not delivered before the subscription.
    assert!(w.recv(conn).is_empty());
    let delivered = publishes(&w.subscribe_all(conn, &dev));
    assert_eq!(delivered.len(), 2);
    for p in &delivered {
        assert_eq!(p.qos(), QoS::AtLeastOnce);
        assert!(!p.dup());
    }
    let first = parse_c2d(&delivered[0]);
    assert!(first.message_id.is_some());
    assert_eq!(
        first.to.as_deref(),
        Some("/devices/dev1/messages/deviceBound")
    );
    assert_eq!(first.ack, Some(Ack::Full));
    assert_eq!(first.get_application("k"), Some(Some("v")));
    assert_eq!(parse_c2d(&delivered[1]).message_id.as_deref(), Some("mine"));
    assert_eq!(&delivered[0].payload()[..], b"one");
    assert_ne!(delivered[0].pid(), delivered[1].pid());

    // A message sent while connected and subscribed goes out at once.
    w.hub
        .send_c2d(&d, c2d_props(None), Bytes::from_static(b"three"))
        .unwrap();
    let third = one_publish(&w.recv(conn));
    assert_ne!(parse_c2d(&third).message_id, first.message_id);
    assert_eq!(w.hub.pending_messages(&dev), 3);

    w.send(conn, Packet::Puback(delivered[0].pid().unwrap()));
    w.send(conn, Packet::Puback(third.pid().unwrap()));
    // A PUBACK for nothing is ignored.
    w.send(conn, Packet::Puback(Pid::new(999).unwrap()));
    assert_eq!(w.hub.pending_messages(&dev), 1);
    assert!(w.recv(conn).is_empty());
    assert!(!w.hub.is_closed(conn));
}

#[test]
fn unacknowledged_c2d_is_redelivered_with_dup_after_a_clean_session_0_reconnect() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let d = dev.device_id().clone();
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub
        .send_c2d(&d, c2d_props(Some("a")), Bytes::from_static(b"a"))
        .unwrap();
    w.hub
        .send_c2d(&d, c2d_props(Some("b")), Bytes::from_static(b"b"))
        .unwrap();
    let sent = publishes(&w.recv(conn));
    assert_eq!(sent.len(), 2);
    w.send(conn, Packet::Puback(sent[0].pid().unwrap()));
    w.hub.client_closed(conn);
    // Sent while offline: never sent before, so no DUP.
    w.hub
        .send_c2d(&d, c2d_props(Some("c")), Bytes::from_static(b"c"))
        .unwrap();

    let conn = w.hub.accept(Instant::ZERO, None);
    let connect = w.connect_packet(&dev, &k);
    w.send(conn, connect);
    let packets = w.recv(conn);
    let Packet::Connack(ack) = &packets[0] else {
        panic!()
    };
    assert!(ack.session_present());
    // The kept subscription delivers right after CONNACK.
    let again = publishes(&packets);
    assert_eq!(again.len(), 2);
    assert_eq!(parse_c2d(&again[0]).message_id.as_deref(), Some("b"));
    assert!(again[0].dup());
    assert_eq!(parse_c2d(&again[1]).message_id.as_deref(), Some("c"));
    assert!(!again[1].dup());
    for p in &again {
        w.send(conn, Packet::Puback(p.pid().unwrap()));
    }
    assert_eq!(w.hub.pending_messages(&dev), 0);
}

#[test]
fn a_clean_session_1_connect_drops_queued_c2d() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let d = dev.device_id().clone();
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub
        .send_c2d(&d, c2d_props(None), Bytes::from_static(b"x"))
        .unwrap();
    w.recv(conn);
    w.hub.drop_connection(conn);
    w.hub
        .send_c2d(&d, c2d_props(None), Bytes::from_static(b"y"))
        .unwrap();
    assert_eq!(w.hub.pending_messages(&dev), 2);
    let (conn, ack) = w.open(w.connect_packet(&dev, &k).with_clean_session(true));
    assert!(!ack.session_present());
    assert_eq!(w.hub.pending_messages(&dev), 0);
    assert!(w.hub.subscriptions(conn).is_empty());
    assert!(w.subscribe_all(conn, &dev).is_empty());
}

#[test]
fn c2d_at_qos_0_subscription_is_sent_once_and_forgotten() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe(
        conn,
        &[("devices/dev1/messages/devicebound/#", QoS::AtMostOnce)],
    );
    w.hub
        .send_c2d(
            dev.device_id(),
            MessageProperties::new(),
            Bytes::from_static(b"z"),
        )
        .unwrap();
    let p = one_publish(&w.recv(conn));
    assert_eq!(p.qos(), QoS::AtMostOnce);
    assert_eq!(w.hub.pending_messages(&dev), 0);
}

#[test]
fn c2d_limits() {
    let mut w = World::new();
    let (dev, _) = w.device("dev1", 1);
    let d = dev.device_id().clone();
    let empty = MessageProperties::new();
    // 64 KB, payload plus properties.
    assert_eq!(
        w.hub
            .send_c2d(&d, empty.clone(), Bytes::from(vec![0; MAX_C2D_SIZE + 1])),
        Err(HubError::TooLarge {
            size: MAX_C2D_SIZE + 1,
            max: MAX_C2D_SIZE
        })
    );
    let mut p = MessageProperties::new();
    p.add_application("k", "v").unwrap();
    assert_eq!(
        w.hub
            .send_c2d(&d, p, Bytes::from(vec![0; MAX_C2D_SIZE - 2])),
        Err(HubError::TooLarge {
            size: MAX_C2D_SIZE + 1,
            max: MAX_C2D_SIZE
        })
    );
    w.hub
        .send_c2d(&d, empty.clone(), Bytes::from(vec![0; MAX_C2D_SIZE]))
        .unwrap();
    // 50 pending.
    for _ in 1..MAX_PENDING_C2D {
        w.hub.send_c2d(&d, empty.clone(), Bytes::new()).unwrap();
    }
    assert_eq!(
        w.hub.send_c2d(&d, empty.clone(), Bytes::new()),
        Err(HubError::QueueFull {
            max: MAX_PENDING_C2D
        })
    );
    assert_eq!(w.hub.pending_messages(&dev), MAX_PENDING_C2D);
    assert_eq!(
        w.hub
            .send_c2d(&DeviceId::new("ghost").unwrap(), empty, Bytes::new()),
        Err(HubError::UnknownIdentity)
    );
}

#[test]
fn module_inputs_follow_the_same_rules() {
    let mut w = World::new();
    let (m, mk) = w.module("dev1", "mod1", 2);
    let (d, mo) = (m.device_id().clone(), m.module_id().unwrap().clone());
    let mut p = MessageProperties::new();
    p.add_application("route", "r1").unwrap();
    w.hub
        .send_module_input(&d, &mo, "in1", p.clone(), Bytes::from_static(b"i"))
        .unwrap();
    assert_eq!(
        w.hub
            .send_module_input(&d, &mo, "a/b", p.clone(), Bytes::new()),
        Err(HubError::InvalidName)
    );
    let conn = w.connect(&m, &mk);
    let got = publishes(&w.subscribe_all(conn, &m));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos(), QoS::AtLeastOnce);
    assert_eq!(
        topic::parse(got[0].topic().as_str()),
        Ok(topic::HubTopic::ModuleInput {
            device_id: "dev1",
            module_id: "mod1",
            input: "in1".into(),
            properties: p,
        })
    );
    // Not acknowledged; redelivered with DUP on a CleanSession 0 reconnect.
    w.hub.client_closed(conn);
    let conn = w.hub.accept(Instant::ZERO, None);
    let connect = w.connect_packet(&m, &mk);
    w.send(conn, connect);
    let packets = w.recv(conn);
    assert_eq!(
        packets[0],
        Packet::Connack(Connack::new(true, ConnectReturnCode::Accepted))
    );
    let again = one_publish(&packets);
    assert!(again.dup());
    assert_eq!(again.topic(), got[0].topic());
    w.send(conn, Packet::Puback(again.pid().unwrap()));
    assert_eq!(w.hub.pending_messages(&m), 0);
}

#[test]
fn a_module_input_name_that_cannot_be_a_topic_is_refused_not_queued_for_ever() {
    // `+`, `#` and U+0000 cannot be in an MQTT topic name, nor can a topic
    // be over 65,535 bytes: such a message could never be sent, so it
    // would sit in the queue (and count against its limit) unsent and
    // unrefused.
    let mut w = World::new();
    let (m, mk) = w.module("dev1", "mod1", 2);
    let (d, mo) = (m.device_id().clone(), m.module_id().unwrap().clone());
    let long = "i".repeat(70_000);
    for bad in ["a+b", "#", "in\0", long.as_str()] {
        assert_eq!(
            w.hub
                .send_module_input(&d, &mo, bad, MessageProperties::new(), Bytes::new()),
            Err(HubError::InvalidName),
            "{:?}",
            bad.chars().take(8).collect::<String>()
        );
    }
    assert_eq!(w.hub.pending_messages(&m), 0);
    // A good one still goes through.
    w.hub
        .send_module_input(&d, &mo, "in1", MessageProperties::new(), Bytes::new())
        .unwrap();
    let conn = w.connect(&m, &mk);
    assert_eq!(publishes(&w.subscribe_all(conn, &m)).len(), 1);
}

#[test]
fn a_c2d_property_bag_that_fits_64_kb_but_not_a_topic_is_refused() {
    // Within 64 KB (payload plus bag), but the bag, with the topic's
    // prefix and the `$.mid` and `$.to` the hub adds, is over the 65,535
    // bytes of an MQTT topic: the PUBLISH cannot be built, so the message
    // must be refused, not queued and never sent.
    let mut w = World::new();
    let (dev, key) = w.device("dev1", 1);
    let d = dev.device_id().clone();
    let mut p = MessageProperties::new();
    p.add_application("k", "v".repeat(MAX_C2D_SIZE - 10))
        .unwrap();
    assert!(p.encoded_len() <= MAX_C2D_SIZE);
    assert!(matches!(
        w.hub.send_c2d(&d, p, Bytes::new()),
        Err(HubError::TooLarge { .. })
    ));
    assert_eq!(w.hub.pending_messages(&dev), 0);
    // Every message accepted is sent.
    let mut p = MessageProperties::new();
    p.add_application("k", "v".repeat(60_000)).unwrap();
    w.hub.send_c2d(&d, p, Bytes::new()).unwrap();
    let conn = w.connect(&dev, &key);
    assert_eq!(publishes(&w.subscribe_all(conn, &dev)).len(), 1);
}
