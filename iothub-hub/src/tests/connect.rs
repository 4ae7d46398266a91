//! CONNECT, authentication, eviction, keep-alive, token expiry, will.

use super::*;
use iothub_proto::mqtt::{LastWill, PacketType};

#[test]
fn accepts_devices_and_modules_in_both_username_forms() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (module, mk) = w.module("dev1", "mod1", 2);
    for options in [UsernameOptions::default(), UsernameOptions::legacy()] {
        for (identity, key) in [(&dev, &k), (&module, &mk)] {
            let connect =
                connect_with(identity, key, w.unix() + 60, &options).with_clean_session(true);
            let (conn, ack) = w.open(connect);
            assert_eq!(ack.code(), ConnectReturnCode::Accepted, "{identity}");
            assert!(!ack.session_present());
            assert!(w.hub.is_connected(identity));
            assert_eq!(w.hub.connection_identity(conn), Some(identity));
            assert_eq!(w.hub.connection_of(identity), Some(conn));
            w.send(conn, Packet::Disconnect);
            assert!(w.hub.is_closed(conn));
            assert_eq!(
                w.hub.close_reason(conn),
                Some(CloseReason::ClientDisconnected)
            );
            assert!(!w.hub.is_connected(identity));
            // The identity is still known after the close.
            assert_eq!(w.hub.connection_identity(conn), Some(identity));
        }
    }
    assert_eq!(w.hub.counters().connects_accepted, 4);
    assert_eq!(w.hub.counters().connects_refused, 0);
}

fn refused(w: &mut World, connect: Connect) -> ConnectReturnCode {
    let (conn, ack) = w.open(connect);
    assert!(!ack.session_present());
    assert!(w.hub.is_closed(conn));
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::Refused(ack.code()))
    );
    assert_eq!(w.hub.connection_identity(conn), None);
    ack.code()
}

#[test]
fn refusals_and_their_codes() {
    use ConnectReturnCode as C;
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (other, ok) = w.device("dev2", 2);
    let unix = w.unix();
    let base = || connect_with(&dev, &k, unix + 60, &UsernameOptions::default());

    // Wrong key: bad signature.
    assert_eq!(
        refused(
            &mut w,
            connect_with(&dev, &key(9), unix + 60, &UsernameOptions::default())
        ),
        C::BadUserNameOrPassword
    );
    // Expired token (valid signature).
    assert_eq!(
        refused(
            &mut w,
            connect_with(&dev, &k, unix, &UsernameOptions::default())
        ),
        C::NotAuthorized
    );
    assert_eq!(
        refused(
            &mut w,
            connect_with(&dev, &k, unix - 1, &UsernameOptions::default())
        ),
        C::NotAuthorized
    );
    // Unknown identity.
    let ghost = Identity::parse("ghost", None).unwrap();
    assert_eq!(
        refused(
            &mut w,
            connect_with(&ghost, &k, unix + 60, &UsernameOptions::default())
        ),
        C::NotAuthorized
    );
    let ghost_module = Identity::parse("dev1", Some("ghost")).unwrap();
    assert_eq!(
        refused(
            &mut w,
            connect_with(&ghost_module, &k, unix + 60, &UsernameOptions::default())
        ),
        C::NotAuthorized
    );
    // Keep-alive over 1177 s.
    assert_eq!(
        refused(&mut w, base().with_keep_alive(1178)),
        C::IdentifierRejected
    );
    // Client id that is not the username's identity.
    let c = connect_with(&dev, &k, unix + 60, &UsernameOptions::default());
    let wrong_id = Connect::new("dev2")
        .unwrap()
        .with_username(c.username().unwrap().as_str())
        .unwrap()
        .with_password(c.password().unwrap().clone())
        .unwrap();
    assert_eq!(refused(&mut w, wrong_id), C::IdentifierRejected);
    // No username, unreadable username, another hub's name.
    assert_eq!(
        refused(&mut w, Connect::new("dev1").unwrap()),
        C::BadUserNameOrPassword
    );
    let bad_user = Connect::new("dev1")
        .unwrap()
        .with_username("nonsense")
        .unwrap();
    assert_eq!(refused(&mut w, bad_user), C::BadUserNameOrPassword);
    let other_hub = Connect::new("dev1")
        .unwrap()
        .with_username("other.example.net/dev1/?api-version=2021-04-12")
        .unwrap()
        .with_password(c.password().unwrap().clone())
        .unwrap();
    assert_eq!(refused(&mut w, other_hub), C::BadUserNameOrPassword);
    // No password; a password that is not a SAS token.
    let no_password = Connect::new("dev1")
        .unwrap()
        .with_username(c.username().unwrap().as_str())
        .unwrap();
    assert_eq!(refused(&mut w, no_password), C::BadUserNameOrPassword);
    let garbage = Connect::new("dev1")
        .unwrap()
        .with_username(c.username().unwrap().as_str())
        .unwrap()
        .with_password(Bytes::from_static(b"hunter2"))
        .unwrap();
    assert_eq!(refused(&mut w, garbage), C::BadUserNameOrPassword);
    // A valid token of another identity: wrong resource URI.
    let foreign = connect_with(&other, &ok, unix + 60, &UsernameOptions::default());
    let stolen = Connect::new("dev1")
        .unwrap()
        .with_username(c.username().unwrap().as_str())
        .unwrap()
        .with_password(foreign.password().unwrap().clone())
        .unwrap();
    assert_eq!(refused(&mut w, stolen), C::NotAuthorized);

    assert_eq!(w.hub.counters().connects_refused, 13);
    assert_eq!(w.hub.counters().connects_accepted, 0);
    // And the right one goes through; a keep-alive of exactly 1177 is fine.
    let (_, ack) = w.open(base().with_keep_alive(1177));
    assert_eq!(ack.code(), C::Accepted);
}

#[test]
fn protocol_level_other_than_4_is_refused_with_code_1() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let mut bytes = BytesMut::from(&Packet::Connect(w.connect_packet(&dev, &k)).to_bytes()[..]);
    // Fixed header (2 or 3 bytes), then 00 04 'M' 'Q' 'T' 'T' level.
    let at = bytes.windows(4).position(|x| x == b"MQTT").unwrap() + 4;
    bytes[at] = 3;
    let conn = w.hub.accept(Instant::ZERO, None);
    w.send_bytes(conn, &bytes);
    let packets = w.recv(conn);
    assert_eq!(
        packets,
        [Packet::Connack(Connack::new(
            false,
            ConnectReturnCode::UnacceptableProtocolVersion
        ))]
    );
    assert!(w.hub.is_closed(conn));
}

#[test]
fn connect_must_come_first_and_only_once() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.hub.accept(Instant::ZERO, None);
    w.send(conn, Packet::Pingreq);
    assert!(w.recv(conn).is_empty());
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::NotConnectFirst))
    );
    // Input on a closed connection is ignored.
    let connect = w.connect_packet(&dev, &k);
    w.send(conn, connect.clone());
    assert!(w.recv(conn).is_empty());

    let conn = w.connect(&dev, &k);
    w.send(conn, connect);
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::SecondConnect))
    );
    assert_eq!(w.hub.counters().protocol_violations, 1);
}

#[test]
fn garbage_and_server_packets_close() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.send_bytes(conn, &[0xF0, 0x00]);
    assert!(matches!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::Malformed(_)))
    ));
    let conn = w.connect(&dev, &k);
    w.send(conn, Packet::Pingresp);
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::UnexpectedPacket(
            PacketType::Pingresp
        )))
    );
    let conn = w.connect(&dev, &k);
    w.send(conn, Packet::Pubrel(Pid::MIN));
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::UnexpectedPacket(
            PacketType::Pubrel
        )))
    );
}

#[test]
fn input_split_at_every_boundary() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let mut wire = BytesMut::new();
    Packet::Connect(w.connect_packet(&dev, &k)).encode(&mut wire);
    Packet::Subscribe(Subscribe::new(Pid::MIN, [(TWIN_RESPONSE_FILTER, QoS::AtMostOnce)]).unwrap())
        .encode(&mut wire);
    Packet::Publish(
        Publish::new(
            topic::twin_get(&RequestId::from(1)),
            QosPid::AtMostOnce,
            Bytes::new(),
        )
        .unwrap(),
    )
    .encode(&mut wire);
    Packet::Pingreq.encode(&mut wire);
    let mut expected = None;
    for split in 0..=wire.len() {
        let conn = w.hub.accept(Instant::ZERO, None);
        let (a, b) = wire.split_at(split);
        w.send_bytes(conn, a);
        w.send_bytes(conn, b);
        let packets = w.recv(conn);
        assert_eq!(packets.len(), 4, "split at {split}: {packets:?}");
        let types: Vec<PacketType> = packets.iter().map(Packet::packet_type).collect();
        assert_eq!(
            types,
            [
                PacketType::Connack,
                PacketType::Suback,
                PacketType::Publish,
                PacketType::Pingresp
            ]
        );
        // Every split gives the same bytes (CleanSession 0 after the first:
        // session present, so compare from the SUBACK on).
        let tail = packets[1..].to_vec();
        assert_eq!(expected.get_or_insert_with(|| tail.clone()), &tail);
        w.send(conn, Packet::Disconnect);
    }
}

#[test]
fn skip_authentication_accepts_anyone_with_a_readable_username() {
    let mut w = World::new();
    w.hub.skip_authentication(true);
    let who = Identity::parse("anyone", Some("m")).unwrap();
    let connect = Connect::new("anyone/m")
        .unwrap()
        .with_username("elsewhere.net/anyone/m/?api-version=2021-04-12")
        .unwrap();
    let (conn, ack) = w.open(connect);
    assert_eq!(ack.code(), ConnectReturnCode::Accepted);
    assert_eq!(w.hub.connection_identity(conn), Some(&who));
    // Service-side calls create identities on demand.
    let ghost = Identity::parse("ghost", None).unwrap();
    assert_eq!(
        w.hub.update_desired(&ghost, serde_json::json!({"a": 1})),
        Ok(2)
    );
    // The client id must still match.
    let mismatch = Connect::new("x")
        .unwrap()
        .with_username("h/anyone/?api-version=1")
        .unwrap();
    let (_, ack) = w.open(mismatch);
    assert_eq!(ack.code(), ConnectReturnCode::IdentifierRejected);
    // With authentication back on, unknown identities are refused again.
    w.hub.skip_authentication(false);
    let (_, ack) = w.open(connect_with(
        &Identity::parse("nobody", None).unwrap(),
        &key(1),
        w.unix() + 9,
        &UsernameOptions::default(),
    ));
    assert_eq!(ack.code(), ConnectReturnCode::NotAuthorized);
}

#[test]
fn a_new_connect_evicts_the_older_connection() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let will = LastWill::new(
        topic::telemetry(&dev, &MessageProperties::new()),
        Bytes::from_static(b"gone"),
        QoS::AtLeastOnce,
        false,
    )
    .unwrap();
    let first = w.connect_packet(&dev, &k).with_last_will(will);
    let (a, _) = w.open(first);
    w.subscribe_all(a, &dev);
    let b = w.connect(&dev, &k);
    assert!(w.hub.is_closed(a));
    assert_eq!(w.hub.close_reason(a), Some(CloseReason::Evicted));
    assert!(!w.hub.is_closed(b));
    assert_eq!(w.hub.connection_of(&dev), Some(b));
    assert_eq!(w.hub.counters().evictions, 1);
    // The evicted connection's subscriptions belong to the session, not to it.
    assert!(w.hub.subscriptions(a).is_empty());
    assert_eq!(w.hub.subscriptions(b).len(), 4);
    // Its will was published.
    let t = w.hub.telemetry();
    assert_eq!(t.len(), 1);
    assert!(t[0].is_will());
    assert_eq!(t[0].conn, a);
    assert_eq!(&t[0].payload[..], b"gone");
}

#[test]
fn pingreq_gets_pingresp() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.send(conn, Packet::Pingreq);
    assert_eq!(w.recv(conn), [Packet::Pingresp]);
    assert_eq!(w.hub.counters().pings, 1);
}

fn with_will(w: &World, dev: &Identity, k: &SharedAccessKey) -> Connect {
    let mut p = MessageProperties::new();
    p.add_application("reason", "lost").unwrap();
    let will = LastWill::new(
        topic::telemetry(dev, &p),
        Bytes::from_static(b"bye"),
        QoS::AtMostOnce,
        false,
    )
    .unwrap();
    w.connect_packet(dev, k).with_last_will(will)
}

#[test]
fn will_is_published_on_unclean_close_only() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    // DISCONNECT: no will.
    let (conn, _) = w.open(with_will(&w, &dev, &k));
    w.send(conn, Packet::Disconnect);
    w.hub.client_closed(conn);
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::ClientDisconnected)
    );
    assert!(w.hub.telemetry().is_empty());
    // Transport gone without DISCONNECT: will.
    let (conn, _) = w.open(with_will(&w, &dev, &k));
    w.hub.client_closed(conn);
    assert_eq!(w.hub.close_reason(conn), Some(CloseReason::TransportClosed));
    let t = w.hub.take_telemetry();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].identity, dev);
    assert!(t[0].is_will());
    assert_eq!(
        t[0].properties.get_application("iothub-MessageType"),
        Some(Some("Will"))
    );
    assert_eq!(
        t[0].properties.get_application("reason"),
        Some(Some("lost"))
    );
    assert_eq!(&t[0].payload[..], b"bye");
    assert_eq!(t[0].qos, QoS::AtMostOnce);
    // A will on someone else's topic is dropped.
    let (other, _) = w.device("dev2", 2);
    let will = LastWill::new(
        topic::telemetry(&other, &MessageProperties::new()),
        Bytes::new(),
        QoS::AtMostOnce,
        false,
    )
    .unwrap();
    let (conn, _) = w.open(w.connect_packet(&dev, &k).with_last_will(will));
    w.hub.client_closed(conn);
    assert!(w.hub.telemetry().is_empty());
}

#[test]
fn keep_alive_drops_a_client_silent_for_more_than_one_and_a_half_times() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (conn, _) = w.open(with_will(&w, &dev, &k)); // keep-alive 60 s
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), Some(90_001));
    // Activity moves the deadline.
    w.advance(50_000);
    w.send(conn, Packet::Pingreq);
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), Some(140_001));
    w.hub
        .handle_timeout(Instant::from_millis(140_000), T0 + 140);
    assert!(!w.hub.is_closed(conn));
    w.hub
        .handle_timeout(Instant::from_millis(140_001), T0 + 140);
    assert_eq!(
        w.hub.close_reason(conn),
        Some(CloseReason::KeepAliveTimeout)
    );
    assert_eq!(w.hub.counters().keep_alive_timeouts, 1);
    assert!(w.hub.telemetry()[0].is_will());
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), None);
    // Keep-alive 0: no deadline.
    let connect = w.connect_packet(&dev, &k).with_keep_alive(0);
    let (conn, _) = w.open(connect);
    // The token still expires in an hour.
    assert_eq!(
        w.hub.poll_timeout().map(Instant::as_millis),
        Some(w.now_ms + 3_600_000)
    );
    w.hub
        .handle_timeout(Instant::from_millis(w.now_ms + 3_599_999), w.unix() + 3599);
    assert!(!w.hub.is_closed(conn));
}

#[test]
fn a_connection_is_closed_when_its_token_expires() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    w.advance(5_000);
    let connect =
        connect_with(&dev, &k, w.unix() + 100, &UsernameOptions::default()).with_keep_alive(0);
    let (conn, _) = w.open(connect);
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), Some(105_000));
    w.hub
        .handle_timeout(Instant::from_millis(104_999), T0 + 104);
    assert!(!w.hub.is_closed(conn));
    w.hub
        .handle_timeout(Instant::from_millis(105_000), T0 + 105);
    assert_eq!(w.hub.close_reason(conn), Some(CloseReason::TokenExpired));
    assert_eq!(w.hub.counters().token_expiries, 1);

    // Input arriving after expiry closes before it is processed.
    let connect = connect_with(&dev, &k, w.unix() + 100, &UsernameOptions::default());
    let (conn, _) = w.open(connect);
    w.advance(100_000);
    w.send(conn, Packet::Pingreq);
    assert!(w.recv(conn).is_empty());
    assert_eq!(w.hub.close_reason(conn), Some(CloseReason::TokenExpired));
}

#[test]
fn a_connection_without_connect_is_closed_at_the_connect_deadline() {
    let mut w = World::new();
    assert_eq!(w.hub.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
    w.advance(1_000);
    let silent = w.hub.accept(Instant::from_millis(w.now_ms), None);
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), Some(31_000));
    w.hub.handle_timeout(Instant::from_millis(30_999), T0 + 30);
    assert!(!w.hub.is_closed(silent));
    w.hub.handle_timeout(Instant::from_millis(31_000), T0 + 31);
    assert!(w.hub.is_closed(silent));
    assert_eq!(
        w.hub.close_reason(silent),
        Some(CloseReason::ConnectTimeout)
    );
    // The adapter learns of the close through poll_ready; nothing is sent.
    assert_eq!(w.hub.poll_ready(), Some(silent));
    assert!(w.recv(silent).is_empty());
    assert_eq!(w.hub.counters().connect_timeouts, 1);
    assert!(w.hub.telemetry().is_empty());
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), None);
}

#[test]
fn a_partial_connect_does_not_hold_the_connection_open() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    w.hub
        .set_connect_timeout(Some(Duration::from_millis(5_000)));
    let conn = w.hub.accept(Instant::from_millis(w.now_ms), None);
    let bytes = Packet::Connect(w.connect_packet(&dev, &k)).to_bytes();
    // A slowloris: one byte now, one more later, never the whole CONNECT.
    w.send_bytes(conn, &bytes[..1]);
    w.advance(4_000);
    w.send_bytes(conn, &bytes[1..2]);
    assert_eq!(
        w.hub.poll_timeout().map(Instant::as_millis),
        Some(5_000),
        "input moves no deadline"
    );
    w.hub.handle_timeout(Instant::from_millis(5_000), T0 + 5);
    assert_eq!(w.hub.close_reason(conn), Some(CloseReason::ConnectTimeout));
    // The rest of the CONNECT, too late, is ignored.
    w.send_bytes(conn, &bytes[2..]);
    assert!(w.recv(conn).is_empty());
    assert!(!w.hub.is_connected(&dev));
}

#[test]
fn an_accepted_connect_ends_the_connect_deadline() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    w.hub
        .set_connect_timeout(Some(Duration::from_millis(5_000)));
    let conn = w.hub.accept(Instant::from_millis(w.now_ms), None);
    w.advance(4_999);
    let connect = w.connect_packet(&dev, &k).with_keep_alive(0);
    w.send(conn, connect);
    assert!(matches!(w.recv(conn).as_slice(), [Packet::Connack(a)] if a.code().is_accepted()));
    // Only the token's expiry (an hour from now) is left.
    assert_eq!(
        w.hub.poll_timeout().map(Instant::as_millis),
        Some(w.now_ms + 3_600_000)
    );
    w.hub.handle_timeout(Instant::from_millis(60_000), T0 + 60);
    assert!(w.hub.is_connected(&dev));
    assert_eq!(w.hub.counters().connect_timeouts, 0);
}

#[test]
fn the_connect_deadline_can_be_turned_off() {
    let mut w = World::new();
    let timed = w.hub.accept(Instant::ZERO, None);
    assert_eq!(
        w.hub.poll_timeout(),
        Some(Instant::ZERO + DEFAULT_CONNECT_TIMEOUT)
    );
    w.hub.set_connect_timeout(None);
    let off = w.hub.accept(Instant::from_millis(0), None);
    w.hub
        .handle_timeout(Instant::from_millis(u64::MAX), u64::MAX);
    assert!(
        w.hub.is_closed(timed),
        "accepted before the deadline was turned off"
    );
    assert!(!w.hub.is_closed(off));
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), None);
    // A deadline near the end of time saturates instead of wrapping.
    w.hub
        .set_connect_timeout(Some(Duration::from_millis(u64::MAX)));
    let late = w.hub.accept(Instant::from_millis(u64::MAX - 1), None);
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), Some(u64::MAX));
    w.hub.handle_timeout(Instant::from_millis(u64::MAX - 1), T0);
    assert!(!w.hub.is_closed(late));
}

#[test]
fn a_refused_or_client_closed_connection_keeps_its_own_close_reason() {
    let mut w = World::new();
    let (dev, _) = w.device("dev1", 1);
    w.hub
        .set_connect_timeout(Some(Duration::from_millis(1_000)));
    let refused = w.hub.accept(Instant::from_millis(0), None);
    let bad_key = connect_with(&dev, &key(9), T0 + 60, &UsernameOptions::default());
    w.send(refused, bad_key);
    let gone = w.hub.accept(Instant::from_millis(0), None);
    w.hub.client_closed(gone);
    // Not CONNECT first: a violation before the deadline.
    let pinger = w.hub.accept(Instant::from_millis(0), None);
    w.send(pinger, Packet::Pingreq);
    assert_eq!(
        w.hub.poll_timeout().map(Instant::as_millis),
        None,
        "closed connections have no deadline"
    );
    w.hub.handle_timeout(Instant::from_millis(1_000), T0 + 1);
    assert_eq!(
        w.hub.close_reason(refused),
        Some(CloseReason::Refused(
            ConnectReturnCode::BadUserNameOrPassword
        ))
    );
    assert_eq!(w.hub.close_reason(gone), Some(CloseReason::TransportClosed));
    assert_eq!(
        w.hub.close_reason(pinger),
        Some(CloseReason::ProtocolViolation(Violation::NotConnectFirst))
    );
    assert_eq!(w.hub.counters().connect_timeouts, 0);
}
