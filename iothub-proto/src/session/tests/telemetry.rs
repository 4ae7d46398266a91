//! Telemetry: QoS 1 and 0 outcomes, packet ids and the in-flight window,
//! resends after a reconnection, the queue, time-to-live and timeouts.

use super::*;

#[test]
fn qos1_telemetry_is_acknowledged_with_its_id() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.add_application("alert", "yes").unwrap();
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"{}"[..]).with_properties(props))
            .unwrap();
    let p = only_publish(&h.sent());
    assert_eq!(
        p.topic().as_str(),
        "devices/dev1/messages/events/%24.ct=application%2Fjson&alert=yes"
    );
    assert_eq!(p.qos(), QoS::AtLeastOnce);
    assert!(!p.dup());
    assert_eq!(h.s.in_flight_len(), 1);
    assert!(h.events().is_empty());
    h.feed(Packet::Puback(p.pid().unwrap()));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id }]);
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn qos0_telemetry_is_reported_sent_when_handed_out() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
            .unwrap();
    // The event comes once the bytes were handed out.
    let Output::Transmit(bytes) = h.s.poll_output() else {
        panic!("the PUBLISH first")
    };
    assert_eq!(bytes[0] >> 4, 3, "a PUBLISH");
    assert_eq!(h.s.poll_output(), Output::Event(Event::MessageSent { id }));
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn packet_ids_never_collide_and_the_window_holds() {
    let mut h = Harness::new(config().with_max_in_flight(3));
    h.connect();
    h.events();
    // A SUBSCRIBE awaiting its SUBACK holds a packet id too.
    h.s.enable(h.now, Feature::Methods).unwrap();
    let sub = only_subscribe(&h.sent());
    let ids: Vec<_> = (0..5)
        .map(|i| h.s.send_telemetry(h.now, Message::new(vec![i])).unwrap())
        .collect();
    let sent = h.sent();
    let pubs = publishes(&sent);
    assert_eq!(pubs.len(), 3, "window of 3");
    assert_eq!(h.s.queued_len(), 2);
    let mut pids: Vec<Pid> = pubs.iter().map(|p| p.pid().unwrap()).collect();
    assert!(!pids.contains(&sub.pid()));
    // Acknowledge the second: the fourth goes out with an id not in use.
    h.feed(Packet::Puback(pids[1]));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id: ids[1] }]);
    let p = only_publish(&h.sent());
    let new = p.pid().unwrap();
    assert!(new != pids[0] && new != pids[2] && new != sub.pid());
    pids.push(new);
    assert_eq!(h.s.in_flight_len(), 3);
    assert_eq!(h.s.queued_len(), 1);
}

#[test]
fn a_message_in_flight_through_a_whole_turn_of_packet_ids_keeps_its_id() {
    let mut h = Harness::new(config().with_max_in_flight(2));
    h.connect();
    h.events();
    h.s.send_telemetry(h.now, Message::new(&b"held"[..]))
        .unwrap();
    let held = only_publish(&h.sent()).pid().unwrap();
    // 65,535 more, each acknowledged at once: the ids come round again,
    // and the one still held is skipped.
    let mut seen = Vec::new();
    for _ in 0..u16::MAX {
        h.s.send_telemetry(h.now, Message::new(&b"x"[..])).unwrap();
        let pid = only_publish(&h.sent()).pid().unwrap();
        assert_ne!(pid, held, "the id of a message in flight");
        seen.push(pid);
        h.feed(Packet::Puback(pid));
    }
    // Every other id was used, one of them twice (the turn that skipped
    // the held one went on to the next).
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), usize::from(u16::MAX) - 1);
    assert_eq!(h.s.in_flight_len(), 1);
    h.feed(Packet::Puback(held));
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn a_timed_out_message_keeps_its_packet_id_until_its_late_puback() {
    let mut h = Harness::new(
        config()
            .with_max_in_flight(1)
            .with_message_timeout(secs(10)),
    );
    h.connect();
    h.events();
    let first = h.s.send_telemetry(h.now, Message::new(&b"1"[..])).unwrap();
    let p1 = only_publish(&h.sent()).pid().unwrap();
    h.advance(secs(10));
    assert_eq!(
        h.events(),
        vec![Event::MessageFailed {
            id: first,
            reason: MessageFailure::Timeout
        }]
    );
    let second = h.s.send_telemetry(h.now, Message::new(&b"2"[..])).unwrap();
    let p2 = only_publish(&h.sent()).pid().unwrap();
    assert_ne!(p1, p2, "the timed-out id is reserved");
    // The late PUBACK of the first message acknowledges nothing else.
    h.feed(Packet::Puback(p1));
    assert!(h.events().is_empty());
    assert_eq!(h.s.in_flight_len(), 1);
    h.feed(Packet::Puback(p2));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id: second }]);
}

#[test]
fn unacknowledged_messages_are_resent_in_order_with_dup_after_reconnect() {
    let mut h = Harness::new(config());
    h.connect();
    let ids: Vec<_> = (0..3)
        .map(|i| h.s.send_telemetry(h.now, Message::new(vec![i])).unwrap())
        .collect();
    let sent = h.sent();
    let first: Vec<(Pid, Bytes)> = publishes(&sent)
        .iter()
        .map(|p| (p.pid().unwrap(), p.payload().clone()))
        .collect();
    // The first one is acknowledged; the connection drops.
    h.feed(Packet::Puback(first[0].0));
    h.drop_and_wait();
    // Sent while disconnected: queued behind the re-sends.
    let late =
        h.s.send_telemetry(h.now, Message::new(&b"late"[..]))
            .unwrap();
    assert_eq!(h.s.queued_len(), 1);
    h.events();
    let sent = h.connect();
    let again = publishes(&sent);
    assert_eq!(again.len(), 3);
    for (p, (pid, payload)) in again.iter().zip(&first[1..]) {
        assert!(p.dup());
        assert_eq!(p.pid(), Some(*pid));
        assert_eq!(p.payload(), payload);
    }
    assert!(!again[2].dup(), "the new message is not a re-send");
    assert_eq!(again[2].payload().as_ref(), b"late");
    for p in &again {
        h.feed(Packet::Puback(p.pid().unwrap()));
    }
    let acked: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageAcknowledged { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![ids[1], ids[2], late]);
}

#[test]
fn with_clean_session_unacknowledged_messages_are_resent_as_new_publishes() {
    let mut h = Harness::new(config().with_clean_session(true));
    h.connect();
    for i in 0..2 {
        h.s.send_telemetry(h.now, Message::new(vec![i])).unwrap();
    }
    let sent = h.sent();
    let before: Vec<Pid> = publishes(&sent).iter().map(|p| p.pid().unwrap()).collect();
    h.drop_and_wait();
    let sent = h.connect();
    let again = publishes(&sent);
    assert_eq!(again.len(), 2);
    for p in &again {
        assert!(!p.dup());
        assert!(!before.contains(&p.pid().unwrap()), "new packet ids");
    }
    assert_eq!(again[0].payload().as_ref(), &[0]);
    assert_eq!(again[1].payload().as_ref(), &[1]);
}

#[test]
fn a_full_queue_refuses_new_messages() {
    let mut h = Harness::new(config().with_queue_capacity(2));
    // Not connected: everything waits in the queue.
    assert!(!h.s.telemetry_queue_full());
    h.s.send_telemetry(h.now, Message::new(&b"1"[..])).unwrap();
    h.s.send_telemetry(h.now, Message::new(&b"2"[..])).unwrap();
    assert!(h.s.telemetry_queue_full());
    assert_eq!(
        h.s.send_telemetry(h.now, Message::new(&b"3"[..])),
        Err(CommandError::QueueFull { capacity: 2 })
    );
    assert_eq!(h.s.queued_len(), 2);
    // Once connected they go out and there is room again.
    assert_eq!(publishes(&h.connect()).len(), 2);
    assert!(!h.s.telemetry_queue_full());
    h.s.send_telemetry(h.now, Message::new(&b"3"[..])).unwrap();
    // A stopping session is not "full": it refuses with SessionClosed.
    h.s.disconnect(h.now, secs(1));
    assert!(!h.s.telemetry_queue_full());
}

#[test]
fn queue_full_matches_what_send_telemetry_refuses() {
    // Connected with a window of 1 and a queue of 1: the first message
    // goes out, the second waits, the third is refused.
    let mut h = Harness::new(config().with_queue_capacity(1).with_max_in_flight(1));
    let _ = h.connect();
    for expect_full in [false, false, true] {
        assert_eq!(h.s.telemetry_queue_full(), expect_full);
        let r = h.s.send_telemetry(h.now, Message::new(&b"m"[..]));
        assert_eq!(r.is_err(), expect_full, "{r:?}");
    }
    // With a queue of 0 a connected session still sends while the window
    // has room.
    let mut h = Harness::new(config().with_queue_capacity(0).with_max_in_flight(1));
    assert!(h.s.telemetry_queue_full(), "nothing can wait while offline");
    let _ = h.connect();
    assert!(!h.s.telemetry_queue_full());
    h.s.send_telemetry(h.now, Message::new(&b"m"[..])).unwrap();
    assert!(h.s.telemetry_queue_full());
}

#[test]
fn a_message_past_its_ttl_before_sending_expires() {
    let mut h = Harness::new(config());
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"1"[..]).with_ttl(secs(5)))
            .unwrap();
    let keep = h.s.send_telemetry(h.now, Message::new(&b"2"[..])).unwrap();
    h.advance(secs(5));
    assert!(h.events().contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::Expired
    }));
    assert_eq!(h.s.queued_len(), 1);
    let p = only_publish(&h.connect());
    assert_eq!(p.payload().as_ref(), b"2");
    h.feed(Packet::Puback(p.pid().unwrap()));
    assert!(
        h.events()
            .contains(&Event::MessageAcknowledged { id: keep })
    );
}

#[test]
fn a_message_without_puback_times_out() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let id = h.s.send_telemetry(h.now, Message::new(&b"1"[..])).unwrap();
    h.sent();
    assert_eq!(h.s.timer(TimerKind::Message), Some(h.now + secs(60)));
    h.advance(secs(59));
    assert!(
        h.events()
            .iter()
            .all(|e| !matches!(e, Event::MessageFailed { .. }))
    );
    h.advance(secs(1));
    assert!(h.events().contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::Timeout
    }));
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn oversized_messages_and_bad_properties_are_refused() {
    let mut h = Harness::new(config());
    let topic_len = "devices/dev1/messages/events/".len();
    let body = vec![0u8; MAX_MESSAGE_SIZE - topic_len];
    h.s.send_telemetry(h.now, Message::new(body)).unwrap();
    let body = vec![0u8; MAX_MESSAGE_SIZE - topic_len + 1];
    assert_eq!(
        h.s.send_telemetry(h.now, Message::new(body)),
        Err(CommandError::MessageTooLarge {
            size: MAX_MESSAGE_SIZE + 1,
            max: MAX_MESSAGE_SIZE
        })
    );
    for name in ["$custom", "iothub-MessageType"] {
        let mut props = MessageProperties::new();
        props.add_application(name, "x").unwrap();
        assert!(matches!(
            h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_properties(props)),
            Err(CommandError::InvalidProperties(_))
        ));
    }
}
