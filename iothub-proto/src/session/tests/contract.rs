//! The driving contract itself, and graceful disconnect.

use super::*;

#[test]
fn graceful_disconnect_lets_in_flight_work_finish_then_reports_the_rest() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let a = h.s.send_telemetry(h.now, Message::new(&b"a"[..])).unwrap();
    let b = h.s.send_telemetry(h.now, Message::new(&b"b"[..])).unwrap();
    let sent = h.sent();
    let pids: Vec<Pid> = publishes(&sent).iter().map(|p| p.pid().unwrap()).collect();
    h.s.disconnect(h.now, secs(10));
    assert_eq!(h.s.state(), ConnectionState::Draining);
    assert_eq!(
        h.s.send_telemetry(h.now, Message::new(&b"c"[..])),
        Err(CommandError::SessionClosed)
    );
    assert_eq!(h.s.get_twin(h.now), Err(CommandError::SessionClosed));
    h.feed(Packet::Puback(pids[0]));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id: a }]);
    h.advance(secs(10));
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(
        h.events(),
        vec![
            Event::Disconnected {
                reason: DisconnectReason::Requested
            },
            Event::MessageFailed {
                id: b,
                reason: MessageFailure::SessionClosed
            },
            Event::Stopped {
                reason: StopReason::Requested
            },
        ]
    );
    h.advance(secs(3600));
    assert!(h.commands().is_empty(), "no reconnection");
    assert_eq!(h.timeout(), None);
}

#[test]
fn graceful_disconnect_finishes_early_when_nothing_is_pending() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let a = h.s.send_telemetry(h.now, Message::new(&b"a"[..])).unwrap();
    let p = only_publish(&h.sent());
    h.s.disconnect(h.now, secs(30));
    h.feed(Packet::Puback(p.pid().unwrap()));
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    let events = h.events();
    assert_eq!(events[0], Event::MessageAcknowledged { id: a });
    assert_eq!(h.s.state(), ConnectionState::Stopped);
}

#[test]
fn disconnect_while_offline_stops_at_once_and_fails_everything() {
    let mut h = Harness::new(config());
    let id = h.s.send_telemetry(h.now, Message::new(&b"a"[..])).unwrap();
    let token = h.s.get_twin(h.now).unwrap();
    h.s.disconnect(h.now, secs(30));
    let events = h.events();
    assert!(events.contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::SessionClosed
    }));
    assert!(events.contains(&Event::RequestFailed {
        token,
        error: RequestError::SessionClosed
    }));
    assert!(events.contains(&Event::Stopped {
        reason: StopReason::Requested
    }));
    // The Open that was never handed out is withdrawn; no attempt ended.
    assert!(h.commands().is_empty());
    assert!(disconnected(&events).is_empty());
    assert_eq!(
        h.s.enable(h.now, Feature::Methods),
        Err(CommandError::SessionClosed)
    );
}

#[test]
fn close_comes_after_the_disconnect_bytes() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    h.s.disconnect(h.now, Duration::ZERO);
    let Output::Transmit(bytes) = h.s.poll_output() else {
        panic!("DISCONNECT first")
    };
    assert_eq!(bytes.as_ref(), Packet::Disconnect.to_bytes().as_ref());
    assert_eq!(
        h.s.poll_output(),
        Output::Transport(TransportCommand::Close)
    );
    assert!(matches!(h.s.poll_output(), Output::Event(_)));
}

#[test]
fn the_output_loop_settles_and_timeout_comes_last() {
    // Several outputs pending at once: a C2D message (acknowledged only
    // when taken), a twin GET, a QoS 0 message (its event follows its
    // bytes).
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    h.s.get_twin(h.now).unwrap();
    h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
        .unwrap();
    let mut kinds = Vec::new();
    let mut wire = BytesMut::new();
    let deadline = loop {
        match h.s.poll_output() {
            Output::Transmit(bytes) => {
                wire.extend_from_slice(&bytes);
                kinds.push('T');
            }
            Output::Transport(_) => kinds.push('C'),
            Output::Event(e) => {
                // Taking an event queues nothing, not even the PUBACK.
                if let Event::C2dMessage(m) = &e {
                    assert!(m.ack.is_some());
                }
                kinds.push('E');
            }
            Output::Timeout(at) => break at,
        }
        assert!(kinds.len() < 100, "the loop settles");
    };
    // The twin-response SUBSCRIBE (the GET waits for its SUBACK) and the
    // QoS 0 PUBLISH in one write, then the C2D message and the QoS 0
    // message's outcome.
    assert_eq!(kinds, ['T', 'E', 'E']);
    let packets: Vec<Packet> =
        core::iter::from_fn(|| mqtt::decode(&mut wire, MAX_PACKET_SIZE).unwrap()).collect();
    assert!(
        matches!(
            packets.as_slice(),
            [Packet::Subscribe(_), Packet::Publish(_)]
        ),
        "{packets:?}"
    );
    assert!(
        deadline.is_some(),
        "keep-alive and the request timer are set"
    );
    // Asked again, with no input in between: the same answer.
    assert_eq!(h.s.poll_output(), Output::Timeout(deadline));
}

#[test]
fn every_accepted_qos1_message_ends_exactly_once() {
    // Messages, drops, timeouts and a final disconnect, in a fixed
    // pseudo-random order: each id gets exactly one outcome.
    let mut h = Harness::new(
        config()
            .with_max_in_flight(2)
            .with_message_timeout(secs(20)),
    );
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as u32
    };
    let mut accepted = Vec::new();
    let mut outcomes: Vec<MessageId> = Vec::new();
    let record = |events: Vec<Event>, outcomes: &mut Vec<MessageId>| {
        for e in events {
            match e {
                Event::MessageAcknowledged { id } | Event::MessageFailed { id, .. } => {
                    outcomes.push(id);
                }
                _ => {}
            }
        }
    };
    for _ in 0..200 {
        match next() % 6 {
            0 | 1 => {
                if let Ok(id) = h.s.send_telemetry(h.now, Message::new(&b"m"[..])) {
                    accepted.push(id);
                }
            }
            2 => {
                for p in h.sent() {
                    if let Packet::Publish(p) = p {
                        if next() % 2 == 0 {
                            h.feed(Packet::Puback(p.pid().unwrap()));
                        }
                    }
                }
            }
            3 => {
                if h.s.state() == ConnectionState::Connected && next() % 3 == 0 {
                    h.drop_transport();
                }
            }
            4 => h.advance(Duration::from_secs(u64::from(next() % 15))),
            _ => {
                if h.commands().contains(&TransportCommand::Open) {
                    h.cmds.clear();
                    let unix = h.unix();
                    h.s.handle_transport_connected(h.now, unix);
                    h.sent();
                    h.feed(Connack::new(true, ConnectReturnCode::Accepted));
                }
            }
        }
        let events = h.events();
        record(events, &mut outcomes);
    }
    h.s.disconnect(h.now, secs(1));
    h.advance(secs(2));
    let events = h.events();
    record(events, &mut outcomes);
    let mut sorted = outcomes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), outcomes.len(), "an id had two outcomes");
    let mut acc = accepted.clone();
    acc.sort();
    assert_eq!(sorted, acc, "an id had no outcome");
    assert!(accepted.len() > 20);
}
