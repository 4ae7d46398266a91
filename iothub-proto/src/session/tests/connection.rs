//! The connection: CONNECT and CONNACK (refusals), keep-alive, reconnection
//! backoff, and protocol errors that end a connection.

use super::*;

#[test]
fn wants_a_transport_at_once_and_connect_has_the_identity_fields() {
    let mut h = Harness::new(config());
    assert_eq!(h.s.state(), ConnectionState::Opening);
    assert_eq!(
        h.s.poll_output(),
        Output::Transport(TransportCommand::Open),
        "an Open is waiting"
    );
    h.cmds.push(TransportCommand::Open);
    let c = h.open();
    assert_eq!(c.client_id().as_str(), "dev1");
    assert_eq!(
        c.username().unwrap().as_str(),
        "contoso.azure-devices.net/dev1/?api-version=2021-04-12"
    );
    let password = core::str::from_utf8(c.password().unwrap()).unwrap();
    let token = SasToken::parse(password).unwrap();
    assert_eq!(token.expiry_unix_secs(), h.unix() + 3600);
    assert_eq!(
        token.resource_uri(),
        "contoso.azure-devices.net/devices/dev1"
    );
    assert!(token.verify(&key()));
    assert!(!c.clean_session());
    assert_eq!(c.keep_alive(), 60);
    assert!(c.last_will().is_none());
    assert_eq!(h.s.state(), ConnectionState::AwaitingConnack);
    assert_eq!(h.s.timer(TimerKind::Connack), Some(h.now + secs(30)));

    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    assert_eq!(h.s.state(), ConnectionState::Connected);
    assert_eq!(
        h.events(),
        vec![Event::Connected {
            session_present: false
        }]
    );
    // No feature enabled: nothing is subscribed.
    assert!(h.sent().is_empty());
    assert_eq!(h.s.timer(TimerKind::Connack), None);
}

#[test]
fn module_identity_clean_session_keep_alive_and_will() {
    let mut props = MessageProperties::new();
    props.add_application("reason", "power").unwrap();
    let cfg = Config::new(module(), HostName::new(HOST).unwrap(), key_credential())
        .with_clean_session(true)
        .with_keep_alive(secs(1177))
        .with_will(Some(
            Will::new(&b"bye"[..])
                .with_properties(props)
                .with_qos(Qos::AtMostOnce),
        ));
    let mut h = Harness::new(cfg);
    let c = h.open();
    assert_eq!(c.client_id().as_str(), "dev1/mod1");
    assert!(c.clean_session());
    assert_eq!(c.keep_alive(), 1177);
    let will = c.last_will().unwrap();
    assert_eq!(
        will.topic().as_str(),
        "devices/dev1/modules/mod1/messages/events/reason=power"
    );
    assert_eq!(will.message().as_ref(), b"bye");
    assert_eq!(will.qos(), QoS::AtMostOnce);
}

#[test]
fn x509_sends_no_password_and_a_fixed_token_is_sent_as_is() {
    let cfg = Config::new(device(), HostName::new(HOST).unwrap(), Credential::X509);
    let mut h = Harness::new(cfg);
    let c = h.open();
    assert!(c.password().is_none());
    assert!(c.username().is_some());

    let token = SasToken::generate(
        "contoso.azure-devices.net/devices/dev1",
        &key(),
        UNIX + 7200,
        None,
    );
    let cfg = Config::new(
        device(),
        HostName::new(HOST).unwrap(),
        Credential::SharedAccessSignature(token.clone()),
    );
    let mut h = Harness::new(cfg);
    let c = h.open();
    assert_eq!(
        c.password().unwrap().as_ref(),
        token.expose_secret().as_bytes()
    );
}

#[test]
fn keep_alive_beyond_1177_is_a_config_error() {
    assert_eq!(
        Session::new(config().with_keep_alive(secs(1178))).err(),
        Some(ConfigError::KeepAliveTooLong(secs(1178)))
    );
}

#[test]
fn connack_codes_1_and_2_stop() {
    for code in [
        ConnectReturnCode::UnacceptableProtocolVersion,
        ConnectReturnCode::IdentifierRejected,
    ] {
        let mut h = Harness::new(config());
        h.open();
        h.feed(Connack::new(false, code));
        let refused = ConnectRefused { code };
        let events = h.events();
        assert_eq!(
            disconnected(&events),
            vec![DisconnectReason::Refused(refused)]
        );
        assert!(events.contains(&Event::Stopped {
            reason: StopReason::Refused(refused)
        }));
        assert_eq!(h.s.state(), ConnectionState::Stopped);
        assert_eq!(h.commands(), vec![TransportCommand::Close]);
        h.advance(secs(3600));
        assert!(h.commands().is_empty(), "no reconnection after {code:?}");
        assert_eq!(h.timeout(), None);
    }
}

#[test]
fn connack_code_3_retries_with_normal_backoff() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::ServerUnavailable));
    let events = h.events();
    let delays = reconnect_delays(&events);
    assert_eq!(delays.len(), 1);
    assert!(delays[0] >= secs(1) && delays[0] <= secs(3), "{delays:?}");
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
    h.advance(delays[0]);
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
}

#[test]
fn bad_credentials_wait_long_by_default_or_stop_by_policy() {
    for code in [
        ConnectReturnCode::BadUserNameOrPassword,
        ConnectReturnCode::NotAuthorized,
    ] {
        let mut h = Harness::new(config());
        h.open();
        h.feed(Connack::new(false, code));
        assert_eq!(reconnect_delays(&h.events()), vec![secs(300)]);
        h.commands();
        h.advance(secs(299));
        assert!(h.commands().is_empty(), "no tight loop");
        h.advance(secs(1));
        // A fresh token is signed for the next attempt.
        let c = h.open();
        let token = SasToken::parse(core::str::from_utf8(c.password().unwrap()).unwrap()).unwrap();
        assert_eq!(token.expiry_unix_secs(), h.unix() + 3600);

        let mut h = Harness::new(config().with_auth_failure(AuthFailurePolicy::Stop));
        h.open();
        h.feed(Connack::new(false, code));
        assert!(h.events().contains(&Event::Stopped {
            reason: StopReason::Refused(ConnectRefused { code })
        }));
    }
}

#[test]
fn no_connack_in_time_closes_and_backs_off() {
    let mut h = Harness::new(config().with_connect_timeout(secs(10)));
    h.open();
    h.advance(secs(9));
    assert_eq!(h.s.state(), ConnectionState::AwaitingConnack);
    h.advance(secs(1));
    let events = h.events();
    assert_eq!(
        disconnected(&events),
        vec![DisconnectReason::ConnackTimeout]
    );
    assert_eq!(reconnect_delays(&events).len(), 1);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

#[test]
fn transport_that_fails_to_open_is_retried_with_backoff() {
    let mut h = Harness::new(config());
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    h.s.handle_transport_closed(h.now, TransportClosed::ConnectFailed);
    let events = h.events();
    assert_eq!(
        disconnected(&events),
        vec![DisconnectReason::Transport(TransportClosed::ConnectFailed)]
    );
    assert_eq!(reconnect_delays(&events).len(), 1);
    assert!(h.commands().is_empty(), "nothing to close");
}

#[test]
fn input_split_at_every_byte_boundary() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.open();
    let mut wire = BytesMut::new();
    Packet::Connack(Connack::new(false, ConnectReturnCode::Accepted)).encode(&mut wire);
    Packet::Suback(Suback::new(Pid::MIN, [SubscribeReturnCode::Success(QoS::AtMostOnce)]).unwrap())
        .encode(&mut wire);
    let rid = RequestId::new("r1");
    Packet::Publish(
        Publish::new(
            hub::method_request("reboot", &rid).unwrap(),
            QosPid::AtMostOnce,
            Bytes::from_static(b"{}"),
        )
        .unwrap(),
    )
    .encode(&mut wire);
    for byte in wire.iter() {
        h.s.handle_input(h.now, &[*byte]);
    }
    let events = h.events();
    assert!(matches!(events.first(), Some(Event::Connected { .. })));
    assert!(
        matches!(events.last(), Some(Event::MethodRequest { name, .. }) if name == "reboot"),
        "{events:?}"
    );
}

#[test]
fn pingreq_after_keep_alive_of_idle_sending() {
    let mut h = Harness::new(config());
    h.connect();
    h.advance(secs(30));
    // Sending restarts the keep-alive.
    h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
        .unwrap();
    h.sent();
    h.advance(secs(59));
    assert!(h.sent().is_empty());
    h.advance(secs(1));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
    assert_eq!(h.s.timer(TimerKind::PingResponse), Some(h.now + secs(30)));
    h.feed(Packet::Pingresp);
    assert_eq!(h.s.timer(TimerKind::PingResponse), None);
    h.advance(secs(60));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
}

#[test]
fn no_pingresp_in_time_means_a_dead_connection() {
    let mut h = Harness::new(config().with_ping_timeout(secs(10)));
    h.connect();
    h.events();
    h.advance(secs(60));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
    h.advance(secs(10));
    let events = h.events();
    assert_eq!(disconnected(&events), vec![DisconnectReason::PingTimeout]);
    assert_eq!(reconnect_delays(&events).len(), 1);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

#[test]
fn backoff_grows_within_bounds_and_resets_after_a_stable_connection() {
    let mut h = Harness::new(
        config()
            .with_backoff_min(secs(1))
            .with_backoff_max(secs(60))
            .with_stable_after(secs(60)),
    );
    let mut delays = Vec::new();
    for _ in 0..20 {
        assert_eq!(h.commands(), vec![TransportCommand::Open]);
        h.s.handle_transport_closed(h.now, TransportClosed::ConnectFailed);
        let d = reconnect_delays(&h.events());
        assert_eq!(d.len(), 1);
        assert_eq!(h.s.timer(TimerKind::Reconnect), Some(h.now + d[0]));
        // Not a moment earlier.
        h.advance(d[0] - Duration::from_millis(1));
        assert!(h.commands().is_empty());
        h.advance(Duration::from_millis(1));
        delays.push(d[0]);
    }
    let mut prev = secs(1);
    for d in &delays {
        assert!(*d >= secs(1) && *d <= secs(60), "{d:?}");
        assert!(*d <= prev * 3);
        prev = *d;
    }
    assert!(delays.iter().any(|d| *d > secs(20)), "grew: {delays:?}");

    // A connection that lasts 60 s resets the backoff.
    h.connect();
    h.advance(secs(30));
    h.feed(Packet::Pingresp);
    h.advance(secs(30));
    h.events();
    h.drop_transport();
    let d = reconnect_delays(&h.events());
    assert!(d[0] <= secs(3), "reset: {d:?}");
}

#[test]
fn a_short_connection_does_not_reset_the_backoff() {
    let mut h = Harness::new(config().with_seed(3));
    let mut last = Duration::ZERO;
    for _ in 0..8 {
        h.open();
        h.s.handle_transport_closed(h.now, TransportClosed::Io);
        last = reconnect_delays(&h.events())[0];
        h.advance(last);
    }
    assert!(last > secs(3), "{last:?}");
    h.connect();
    h.advance(secs(5));
    h.events();
    h.drop_transport();
    let d = reconnect_delays(&h.events())[0];
    assert!(d >= secs(1) && d <= secs(60));
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

fn assert_protocol_error(h: &mut Harness, expected: ProtocolError) {
    let events = h.events();
    assert_eq!(
        disconnected(&events),
        vec![DisconnectReason::Protocol(expected)]
    );
    assert_eq!(reconnect_delays(&events).len(), 1, "{events:?}");
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

#[test]
fn a_qos2_publish_ends_the_connection_and_reconnects() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let p = Publish::new(
        hub::c2d(device().device_id(), &MessageProperties::new()),
        QosPid::ExactlyOnce(Pid::MIN),
        Bytes::new(),
    )
    .unwrap();
    h.feed(p);
    assert_protocol_error(&mut h, ProtocolError::Qos2Publish);
    assert!(h.sent().is_empty(), "no PUBREC");
    h.advance(secs(3));
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
}

#[test]
fn packets_a_hub_never_sends_are_protocol_errors() {
    let sub = Subscribe::new(Pid::MIN, [("a/b", QoS::AtMostOnce)]).unwrap();
    let cases: Vec<Packet> = vec![
        Packet::Pingreq,
        Packet::Subscribe(sub),
        Packet::Unsubscribe(crate::mqtt::Unsubscribe::new(Pid::MIN, ["a"]).unwrap()),
        Packet::Unsuback(Pid::MIN),
        Packet::Pubrec(Pid::MIN),
        Packet::Pubrel(Pid::MIN),
        Packet::Pubcomp(Pid::MIN),
        Packet::Connack(Connack::new(false, ConnectReturnCode::Accepted)),
        Packet::Connect(Connect::new("x").unwrap()),
        Packet::Disconnect,
    ];
    for packet in cases {
        let mut h = Harness::new(config());
        h.connect();
        h.events();
        let t = packet.packet_type();
        h.feed(packet);
        assert_protocol_error(&mut h, ProtocolError::UnexpectedPacket(t));
    }
}

#[test]
fn anything_but_connack_before_connack_is_a_protocol_error() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Packet::Pingresp);
    assert_protocol_error(
        &mut h,
        ProtocolError::UnexpectedPacket(mqtt::PacketType::Pingresp),
    );
}

#[test]
fn undecodable_and_oversized_packets_are_protocol_errors() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    h.s.handle_input(h.now, &[0x00, 0x00]);
    assert_protocol_error(
        &mut h,
        ProtocolError::Decode(mqtt::DecodeError::InvalidPacketType(0)),
    );

    let mut h = Harness::new(config().with_max_packet_size(2048));
    h.connect();
    h.events();
    let big = Publish::new("a/b", QosPid::AtMostOnce, Bytes::from(vec![0u8; 4096])).unwrap();
    h.feed(big);
    let events = h.events();
    assert!(matches!(
        disconnected(&events).as_slice(),
        [DisconnectReason::Protocol(ProtocolError::Decode(
            mqtt::DecodeError::PacketTooLarge { max: 2048, .. }
        ))]
    ));
}
