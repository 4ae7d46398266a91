//! Subscriptions and the client's PUBLISH rules; telemetry.

use super::*;
use iothub_proto::mqtt::LastWill;

const OK0: SubscribeReturnCode = SubscribeReturnCode::Success(QoS::AtMostOnce);
const OK1: SubscribeReturnCode = SubscribeReturnCode::Success(QoS::AtLeastOnce);
const FAIL: SubscribeReturnCode = SubscribeReturnCode::Failure;

#[test]
fn subscription_rules_for_a_device() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    let codes = w.subscribe(
        conn,
        &[
            (TWIN_RESPONSE_FILTER, QoS::AtMostOnce),
            (DESIRED_PATCH_FILTER, QoS::AtLeastOnce),
            (METHOD_REQUEST_FILTER, QoS::ExactlyOnce),
            ("devices/dev1/messages/devicebound/#", QoS::ExactlyOnce),
            ("devices/dev2/messages/devicebound/#", QoS::AtLeastOnce),
            ("devices/dev1/modules/m/inputs/#", QoS::AtLeastOnce),
            ("#", QoS::AtMostOnce),
            ("$iothub/twin/res/+", QoS::AtMostOnce),
            ("devices/dev1/messages/events/", QoS::AtMostOnce),
        ],
    );
    // QoS 2 is granted as QoS 1; foreign and wildcard filters fail.
    assert_eq!(codes, [OK0, OK1, OK1, OK1, FAIL, FAIL, FAIL, FAIL, FAIL]);
    assert_eq!(
        w.hub.subscriptions(conn),
        [
            (s(TWIN_RESPONSE_FILTER), QoS::AtMostOnce),
            (s(DESIRED_PATCH_FILTER), QoS::AtLeastOnce),
            (s(METHOD_REQUEST_FILTER), QoS::AtLeastOnce),
            (s("devices/dev1/messages/devicebound/#"), QoS::AtLeastOnce),
        ]
    );
    // Subscribing again replaces (no new slot).
    assert_eq!(
        w.subscribe(conn, &[(DESIRED_PATCH_FILTER, QoS::AtMostOnce)]),
        [OK0]
    );
    assert_eq!(w.hub.subscriptions(conn).len(), 4);
    // Unsubscribe.
    let pid = w.pid();
    w.send(
        conn,
        Unsubscribe::new(pid, [DESIRED_PATCH_FILTER, "never/subscribed"]).unwrap(),
    );
    assert_eq!(w.recv(conn), [Packet::Unsuback(pid)]);
    assert_eq!(w.hub.subscriptions(conn).len(), 3);
    assert!(!w.hub.is_closed(conn));
}

#[test]
fn at_most_five_subscriptions() {
    // An identity may use four filters (five with extra allowed ones), so
    // the limit is reached through `allow_filter`.
    let mut w = World::new();
    w.hub.allow_filter("custom/a/#");
    w.hub.allow_filter("custom/b/#");
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    assert_eq!(w.hub.subscriptions(conn).len(), 4);
    let codes = w.subscribe(
        conn,
        &[
            ("custom/a/#", QoS::AtMostOnce),
            ("custom/b/#", QoS::AtMostOnce),
            // Replacing an existing one still works at the limit.
            (TWIN_RESPONSE_FILTER, QoS::AtLeastOnce),
        ],
    );
    assert_eq!(codes, [OK0, FAIL, OK1]);
    assert_eq!(w.hub.subscriptions(conn).len(), MAX_SUBSCRIPTIONS);
    // Freeing a slot makes room.
    let pid = w.pid();
    w.send(conn, Unsubscribe::new(pid, ["custom/a/#"]).unwrap());
    w.recv(conn);
    assert_eq!(w.subscribe(conn, &[("custom/b/#", QoS::AtMostOnce)]), [OK0]);
}

#[test]
fn subscription_rules_for_a_module() {
    let mut w = World::new();
    let (m, mk) = w.module("dev1", "m", 2);
    let conn = w.connect(&m, &mk);
    let codes = w.subscribe(
        conn,
        &[
            (TWIN_RESPONSE_FILTER, QoS::AtMostOnce),
            (DESIRED_PATCH_FILTER, QoS::AtMostOnce),
            (METHOD_REQUEST_FILTER, QoS::AtMostOnce),
            ("devices/dev1/modules/m/inputs/#", QoS::AtLeastOnce),
            ("devices/dev1/modules/other/inputs/#", QoS::AtLeastOnce),
            // A module may not take its device's C2D filter.
            ("devices/dev1/messages/devicebound/#", QoS::AtLeastOnce),
        ],
    );
    assert_eq!(codes, [OK0, OK0, OK0, OK1, FAIL, FAIL]);
}

#[test]
fn subscriptions_survive_a_clean_session_0_reconnect_only() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub.client_closed(conn);
    let (conn, ack) = w.open(w.connect_packet(&dev, &k));
    assert!(ack.session_present());
    assert_eq!(w.hub.subscriptions(conn).len(), 4);
    let (conn, ack) = w.open(w.connect_packet(&dev, &k).with_clean_session(true));
    assert!(!ack.session_present());
    assert!(w.hub.subscriptions(conn).is_empty());
    // A clean session is not kept after it ends either.
    w.subscribe_all(conn, &dev);
    w.send(conn, Packet::Disconnect);
    let (conn, ack) = w.open(w.connect_packet(&dev, &k));
    assert!(!ack.session_present());
    assert!(w.hub.subscriptions(conn).is_empty());
}

#[test]
fn qos_2_publish_closes_the_connection() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    let t = topic::telemetry(&dev, &MessageProperties::new());
    w.publish(conn, &t, QosPid::ExactlyOnce(Pid::MIN), b"x");
    assert!(w.recv(conn).is_empty());
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::Qos2))
    );
    assert!(w.hub.telemetry().is_empty());
}

#[test]
fn publishing_to_a_topic_not_its_own_closes_the_connection() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (m, _) = w.module("dev1", "m", 2);
    let other = Identity::parse("dev2", None).unwrap();
    let r = RequestId::from(1);
    for t in [
        topic::telemetry(&other, &MessageProperties::new()),
        topic::telemetry(&m, &MessageProperties::new()),
        hub::c2d(dev.device_id(), &MessageProperties::new()),
        hub::twin_response(200, &r, None),
        topic::dps_register(&r),
        s("something/else"),
    ] {
        let conn = w.connect(&dev, &k);
        w.publish(conn, &t, QosPid::AtLeastOnce(Pid::MIN), b"x");
        assert!(w.recv(conn).is_empty(), "{t}");
        assert_eq!(
            w.hub.close_reason(conn),
            Some(CloseReason::ProtocolViolation(Violation::ForeignTopic)),
            "{t}"
        );
    }
    assert!(w.hub.telemetry().is_empty());
}

#[test]
fn telemetry_is_stored_and_acknowledged_at_qos_1() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (m, mk) = w.module("dev1", "m", 2);
    let conn = w.connect(&dev, &k);
    let mut p = MessageProperties::new();
    p.content_type = Some(s("application/json"));
    p.add_application("alert", "high temp").unwrap();
    let t = topic::telemetry(&dev, &p);
    w.publish(conn, &t, QosPid::AtMostOnce, b"{\"t\":1}");
    assert!(w.recv(conn).is_empty());
    let pid = Pid::new(7).unwrap();
    w.publish(conn, &t, QosPid::AtLeastOnce(pid), b"{\"t\":2}");
    assert_eq!(w.recv(conn), [Packet::Puback(pid)]);
    // A resend after a reconnect keeps its DUP flag; RETAIN becomes a property.
    let p2 = Publish::new(
        t.as_str(),
        QosPid::AtLeastOnce(pid),
        Bytes::from_static(b"3"),
    )
    .unwrap()
    .with_dup(true)
    .with_retain(true);
    w.send(conn, p2);
    assert_eq!(w.recv(conn), [Packet::Puback(pid)]);
    let mconn = w.connect(&m, &mk);
    w.publish(
        mconn,
        &topic::telemetry(&m, &MessageProperties::new()),
        QosPid::AtMostOnce,
        b"",
    );

    let t = w.hub.telemetry();
    assert_eq!(t.len(), 4);
    assert_eq!(t[0].identity, dev);
    // As sent, with the hub's stamp of the sender.
    let mut stamped = p.clone();
    stamped.connection_device_id = Some(s("dev1"));
    assert_eq!(t[0].properties, stamped);
    assert_eq!(&t[0].payload[..], b"{\"t\":1}");
    assert_eq!((t[0].qos, t[0].dup), (QoS::AtMostOnce, false));
    assert_eq!((t[1].qos, t[1].dup), (QoS::AtLeastOnce, false));
    assert!(t[2].dup);
    assert_eq!(
        t[2].properties.get_application("mqtt-retain"),
        Some(Some("true"))
    );
    assert!(!t[2].is_will());
    assert_eq!(t[3].identity, m);
    assert_eq!(t[3].conn, mconn);
    assert_eq!(
        t[3].properties.connection_device_id.as_deref(),
        Some("dev1")
    );
    assert_eq!(t[3].properties.connection_module_id.as_deref(), Some("m"));
    assert_eq!(w.hub.take_telemetry().len(), 4);
    assert!(w.hub.telemetry().is_empty());
}

#[test]
fn a_device_cannot_pose_as_another_in_its_telemetry() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    // `$.cdid` / `$.cmid` are the hub's to set: the device's are replaced.
    let mut p = MessageProperties::new();
    p.connection_device_id = Some(s("other"));
    p.connection_module_id = Some(s("someone"));
    w.publish(conn, &topic::telemetry(&dev, &p), QosPid::AtMostOnce, b"x");
    let t = w.hub.telemetry();
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].properties.connection_device_id.as_deref(),
        Some("dev1")
    );
    assert_eq!(t[0].properties.connection_module_id, None);
}

#[test]
fn telemetry_over_256_kb_closes_the_connection() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    let t = topic::telemetry(&dev, &MessageProperties::new());
    let exact = Publish::new(
        t.as_str(),
        QosPid::AtMostOnce,
        Bytes::from(vec![0u8; MAX_TELEMETRY_SIZE]),
    )
    .unwrap();
    w.send(conn, exact);
    assert!(!w.hub.is_closed(conn));
    let mut p = MessageProperties::new();
    p.add_application("k", "v").unwrap();
    let t = topic::telemetry(&dev, &p);
    let over = Publish::new(
        t.as_str(),
        QosPid::AtMostOnce,
        Bytes::from(vec![0u8; MAX_TELEMETRY_SIZE]),
    )
    .unwrap();
    w.send(conn, over);
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::MessageTooLarge {
            size: MAX_TELEMETRY_SIZE + 3
        }))
    );
    assert_eq!(w.hub.telemetry().len(), 1);
    // A packet far beyond the limit is refused from its fixed header.
    let conn = w.connect(&dev, &k);
    w.send_bytes(conn, &[0x30, 0xFF, 0xFF, 0x7F]);
    assert!(matches!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(
            Violation::MessageTooLarge { .. }
        ))
    ));
}

#[test]
fn will_with_retain_and_qos_1_keeps_its_qos() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let will = LastWill::new(
        topic::telemetry(&dev, &MessageProperties::new()),
        Bytes::from_static(b"w"),
        QoS::AtLeastOnce,
        false,
    )
    .unwrap();
    let (conn, _) = w.open(w.connect_packet(&dev, &k).with_last_will(will));
    w.send(conn, Packet::Pubcomp(Pid::MIN));
    assert!(w.hub.is_closed(conn));
    let t = w.hub.telemetry();
    assert_eq!(t.len(), 1);
    assert!(t[0].is_will());
    assert_eq!(t[0].qos, QoS::AtLeastOnce);
}

#[test]
fn a_retained_will_is_marked_like_a_retained_publish_with_the_configured_name() {
    for (property, name) in [
        (None, "mqtt-retain"),
        (Some(RetainProperty::MqttRetain), "mqtt-retain"),
        (Some(RetainProperty::XOptRetain), "x-opt-retain"),
    ] {
        let mut w = World::new();
        if let Some(p) = property {
            w.hub.set_retain_property(p);
        }
        assert_eq!(w.hub.retain_property().name(), name);
        let (dev, k) = w.device("dev1", 1);
        let t = topic::telemetry(&dev, &MessageProperties::new());
        let will =
            LastWill::new(t.clone(), Bytes::from_static(b"w"), QoS::AtMostOnce, true).unwrap();
        let (conn, _) = w.open(w.connect_packet(&dev, &k).with_last_will(will));
        let retained = Publish::new(t.as_str(), QosPid::AtMostOnce, Bytes::from_static(b"r"))
            .unwrap()
            .with_retain(true);
        w.send(conn, retained);
        w.publish(conn, &t, QosPid::AtMostOnce, b"plain");
        w.send(conn, Packet::Pubcomp(Pid::MIN));
        let t = w.hub.telemetry();
        assert_eq!(t.len(), 3, "{name}");
        assert_eq!(t[0].properties.get_application(name), Some(Some("true")));
        assert_eq!(t[1].properties.get_application(name), None, "not retained");
        assert!(t[2].is_will());
        assert_eq!(t[2].properties.get_application(name), Some(Some("true")));
        let other = if name == "mqtt-retain" {
            "x-opt-retain"
        } else {
            "mqtt-retain"
        };
        assert_eq!(t[0].properties.get_application(other), None);
    }
    assert_eq!(
        RetainProperty::from_name("x-opt-retain"),
        Some(RetainProperty::XOptRetain)
    );
    assert_eq!(RetainProperty::from_name("retain"), None);
}

#[test]
fn device_bags_are_read_as_liberally_as_the_device_reads_the_hubs() {
    // Microsoft's Node device SDK ends a module output topic with `/` after
    // the bag (device/transport/mqtt/src/mqtt.ts, sendOutputEvent).
    let mut w = World::new();
    let (m, mk) = w.module("dev1", "mod1", 2);
    let conn = w.connect(&m, &mk);
    for t in [
        "devices/dev1/modules/mod1/messages/events/%24.on=out1&kind=reading/",
        "devices/dev1/modules/mod1/messages/events/a&&b=%zz&%24.cid",
    ] {
        w.publish(conn, t, QosPid::AtLeastOnce(Pid::MIN), b"x");
        assert_eq!(w.recv(conn), [Packet::Puback(Pid::MIN)], "{t}");
    }
    let t = w.hub.telemetry();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].properties.output_name.as_deref(), Some("out1"));
    assert_eq!(
        t[0].properties.get_application("kind"),
        Some(Some("reading"))
    );
    assert_eq!(t[1].properties.get_application("b"), Some(Some("%zz")));
    assert_eq!(t[1].properties.get_application("$.cid"), Some(None));
}
