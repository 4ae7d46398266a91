//! Cloud-to-device and module input messages: acknowledged only once the
//! application has them, held, given back, bounded.

use super::*;

#[test]
fn c2d_is_acknowledged_only_once_taken() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    let mut props = MessageProperties::new();
    props.message_id = Some("m-1".into());
    props.add_application("color", "blue").unwrap();
    h.feed(c2d(7, &props, b"hello"));
    let msg = take_c2d(&mut h);
    assert_eq!(msg.properties, props);
    assert_eq!(msg.payload.as_ref(), b"hello");
    assert!(
        h.sent().is_empty(),
        "taking the event is not taking the message"
    );
    assert_eq!(h.s.inbound_pending_len(), 1);
    let token = msg.ack.expect("a QoS 1 message has a token");
    assert_eq!(token.pid(), Pid::new(7).unwrap());
    h.s.taken(token);
    assert_eq!(h.sent(), vec![puback(7)]);
    assert_eq!(h.s.inbound_pending_len(), 0);
    h.s.taken(token);
    assert!(h.sent().is_empty(), "once");
}

#[test]
fn c2d_bags_the_old_decoder_refused_are_delivered_and_acknowledged_once_taken() {
    // Shapes of real hub traffic and of the official SDKs' test data (see
    // tests/hub_topics.rs for their sources).
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    for (pid, bag) in [
        (
            1,
            "iothub-ack=Full&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&%24.cid&%24.uid",
        ),
        (2, "%24.cid=Corrid1&%24.mid=MessageId1&Prop1=Value1/"),
        (3, "iothub-ack=sometimes&a=%zz&&b=%FF"),
        (4, "%24.mid=1&%24.mid=2&=v"),
    ] {
        let topic = alloc::format!("devices/dev1/messages/devicebound/{bag}");
        h.feed(c2d_topic(pid, &topic, b"x"));
        let msg = take_c2d(&mut h);
        assert!(h.sent().is_empty(), "{bag}: not before it is taken");
        h.s.taken(msg.ack.unwrap());
        assert_eq!(h.sent(), vec![puback(pid)], "{bag}");
        match pid {
            1 => {
                assert_eq!(msg.properties.ack, Some(crate::properties::Ack::Full));
                assert_eq!(msg.properties.get_application("$.cid"), Some(None));
            }
            2 => assert_eq!(
                msg.properties.get_application("Prop1"),
                Some(Some("Value1"))
            ),
            3 => assert_eq!(
                msg.properties.ack,
                Some(crate::properties::Ack::Other("sometimes".into()))
            ),
            _ => assert_eq!(msg.properties.get_application("$.mid"), Some(Some("2"))),
        }
    }
}

#[test]
fn c2d_taken_after_the_connection_dropped_is_not_acknowledged() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(7, &MessageProperties::new(), b"x"));
    let msg = take_c2d(&mut h);
    h.drop_transport();
    h.events();
    h.s.taken(msg.ack.unwrap());
    assert!(h.sent().is_empty(), "the hub redelivers it instead");
    h.drop_and_wait();
    h.connect_and_grant();
    h.s.taken(msg.ack.unwrap());
    assert!(h.sent().is_empty(), "not on a later connection either");
}

#[test]
fn manual_ack_sends_the_puback_on_ack_only_on_the_same_connection() {
    let mut h = Harness::new(config().with_manual_ack(true));
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(9, &MessageProperties::new(), b"x"));
    let msg = take_c2d(&mut h);
    let token = msg.ack.unwrap();
    h.s.taken(token);
    assert!(h.sent().is_empty(), "taking does not ack in manual mode");
    assert_eq!(token.pid(), Pid::new(9).unwrap());
    h.s.ack(token).unwrap();
    assert_eq!(h.sent(), vec![puback(9)]);
    assert_eq!(h.s.ack(token), Err(CommandError::AckUndeliverable), "twice");

    h.feed(c2d(10, &MessageProperties::new(), b"y"));
    let msg = take_c2d(&mut h);
    h.drop_and_wait();
    h.connect_and_grant();
    assert_eq!(
        h.s.ack(msg.ack.unwrap()),
        Err(CommandError::AckUndeliverable)
    );
}

#[test]
fn c2d_for_a_feature_not_asked_for_is_held_unacknowledged_until_enabled() {
    // A CleanSession 0 session's kept subscription: the hub delivers C2D
    // before the application asked for it (after a restart, say).
    let mut h = Harness::new(config());
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"first"));
    h.feed(c2d(2, &MessageProperties::new(), b"second"));
    assert!(h.events().is_empty(), "held, not delivered");
    assert!(h.sent().is_empty(), "and not acknowledged");
    assert_eq!((h.s.held_len(), h.s.inbound_pending_len()), (2, 2));
    h.s.enable(h.now, Feature::C2d).unwrap();
    let mut subscribe = None;
    for p in h.sent() {
        match p {
            Packet::Subscribe(s) => subscribe = Some(s),
            other => panic!("only a SUBSCRIBE, got {other:?}"),
        }
    }
    assert!(subscribe.is_some());
    let first = take_c2d(&mut h);
    let second = take_c2d(&mut h);
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"first"[..], &b"second"[..]),
        "in their order"
    );
    assert_eq!(h.s.held_len(), 0);
    h.s.taken(second.ack.unwrap());
    h.s.taken(first.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(2), puback(1)]);
}

#[test]
fn held_messages_are_left_to_the_hub_when_the_connection_ends() {
    let mut h = Harness::new(config());
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"x"));
    assert_eq!(h.s.held_len(), 1);
    h.drop_and_wait();
    assert_eq!(h.s.held_len(), 0, "the hub sends it again");
    assert_eq!(h.s.inbound_pending_len(), 0);
    h.connect_and_grant();
    h.events();
    // The hub's redelivery (DUP) is held again, then delivered once.
    h.feed(c2d(1, &MessageProperties::new(), b"x").with_dup(true));
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.sent();
    let msg = take_c2d(&mut h);
    assert!(h.next_event().is_none());
    h.s.taken(msg.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(1)]);
}

#[test]
fn a_message_given_back_is_held_with_the_ones_after_it_until_enabled_again() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let event = h.next_event().unwrap();
    // The application's stream went away before it took the message.
    h.s.hold_inbound(Feature::C2d);
    h.s.return_inbound(event);
    h.feed(c2d(2, &MessageProperties::new(), b"b"));
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty(), "nothing acknowledged");
    assert_eq!(h.s.held_len(), 2);
    // A new stream.
    h.s.enable(h.now, Feature::C2d).unwrap();
    assert!(h.sent().is_empty(), "already subscribed");
    let a = take_c2d(&mut h);
    let b = take_c2d(&mut h);
    assert_eq!(
        (a.payload.as_ref(), b.payload.as_ref()),
        (&b"a"[..], &b"b"[..])
    );
    h.s.taken(a.ack.unwrap());
    h.s.taken(b.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(1), puback(2)]);
    // Other events given back, and other features held, are ignored.
    h.s.return_inbound(Event::Connected {
        session_present: false,
    });
    h.s.hold_inbound(Feature::Methods);
    assert!(h.events().is_empty());
}

#[test]
fn a_message_given_back_late_is_held_in_its_arrival_place() {
    // The stream is dropped with "a" inside; "b" arrives and is held
    // before the stream's give-back of "a" reaches the session.
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let a = h.next_event().unwrap();
    h.feed(c2d(2, &MessageProperties::new(), b"b"));
    let b = h.next_event().unwrap();
    h.s.hold_inbound(Feature::C2d);
    h.s.return_inbound(b);
    h.s.return_inbound(a);
    h.s.enable(h.now, Feature::C2d).unwrap();
    let first = take_c2d(&mut h);
    let second = take_c2d(&mut h);
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"a"[..], &b"b"[..])
    );
}

#[test]
fn a_message_left_in_an_old_stream_goes_to_the_current_one() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let event = h.next_event().unwrap();
    // A newer stream is open when the old one is dropped with the message
    // inside: the message is delivered again, and nothing is held.
    h.s.return_inbound(event);
    let again = take_c2d(&mut h);
    assert_eq!(again.payload.as_ref(), b"a");
    assert_eq!(h.s.held_len(), 0);
    h.feed(c2d(2, &MessageProperties::new(), b"b"));
    assert_eq!(take_c2d(&mut h).payload.as_ref(), b"b", "still delivered");
    h.s.taken(again.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(1)]);
}

#[test]
fn a_message_given_back_after_its_connection_ended_is_left_to_the_hub() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let event = h.next_event().unwrap();
    h.drop_transport();
    h.events();
    h.s.hold_inbound(Feature::C2d);
    h.s.return_inbound(event);
    assert_eq!(h.s.held_len(), 0, "the hub sends it again");
}

#[test]
fn a_resend_of_a_waiting_packet_id_is_not_delivered_twice() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(5, &MessageProperties::new(), b"x"));
    h.feed(c2d(5, &MessageProperties::new(), b"x"));
    let msg = take_c2d(&mut h);
    assert!(h.next_event().is_none());
    h.s.taken(msg.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(5)]);
}

#[test]
fn messages_over_the_pending_limit_are_neither_delivered_nor_acknowledged() {
    let mut h = Harness::new(config().with_max_inbound_pending(2));
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    for pid in 1..=3 {
        h.feed(c2d(pid, &MessageProperties::new(), b"x"));
    }
    let events = h.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        &events[2],
        Event::InboundOverflow { topic, limit: 2 } if topic.starts_with("devices/dev1/messages/devicebound/")
    ));
    assert!(h.sent().is_empty());
    // Taking one makes room.
    let Event::C2dMessage(first) = &events[0] else {
        panic!()
    };
    h.s.taken(first.ack.unwrap());
    h.feed(c2d(4, &MessageProperties::new(), b"y"));
    assert!(matches!(h.events().as_slice(), [Event::C2dMessage(_)]));
    assert_eq!(h.sent(), vec![puback(1)]);
    assert!(
        Session::new(config().with_max_inbound_pending(0)).is_err(),
        "a limit of zero is refused"
    );
}

#[test]
fn module_input_messages_carry_their_decoded_input_name() {
    let mut h = Harness::new(Config::new(
        module(),
        HostName::new(HOST).unwrap(),
        key_credential(),
    ));
    h.s.enable(h.now, Feature::ModuleInputs).unwrap();
    h.connect_and_grant();
    h.events();
    for (pid, topic, name) in [
        (1, "devices/dev1/modules/mod1/inputs/input1/", "input1"),
        // Microsoft's C SDK test data: a trailing `/` after the bag, and
        // no bag at all.
        (
            2,
            "devices/dev1/modules/mod1/inputs/input1/%24.cdid=connected_device&%24.cmid=connected_module/",
            "input1",
        ),
        (3, "devices/dev1/modules/mod1/inputs/input1", "input1"),
        // Percent-decoded (a raw `+` cannot be in a PUBLISH topic).
        (
            4,
            "devices/dev1/modules/mod1/inputs/fake%24in%2Bput/",
            "fake$in+put",
        ),
    ] {
        h.feed(
            Publish::new(
                topic,
                QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
                Bytes::from_static(b"m"),
            )
            .unwrap(),
        );
        let events = h.events();
        let [Event::InputMessage { input, message }] = events.as_slice() else {
            panic!("{topic}: {events:?}")
        };
        assert_eq!(input, name);
        assert!(h.sent().is_empty());
        h.s.taken(message.ack.unwrap());
        assert_eq!(h.sent(), vec![puback(pid)]);
        if pid == 2 {
            assert_eq!(
                message.properties.connection_module_id.as_deref(),
                Some("connected_module")
            );
        }
    }
}

#[test]
fn a_publish_the_session_cannot_read_is_reported_with_its_bytes_and_not_acknowledged() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    for (pid, topic) in [
        (1, "some/other/topic"),
        (2, "devices/other/messages/devicebound/"),
        (3, "$iothub/methods/POST/bad%zz/?$rid=1"),
    ] {
        h.feed(
            Publish::new(
                topic,
                QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
                Bytes::from_static(b"raw"),
            )
            .unwrap(),
        );
        let events = h.events();
        let [
            Event::UnexpectedPublish {
                topic: t,
                payload,
                error,
                ack,
            },
        ] = events.as_slice()
        else {
            panic!("{topic}: {events:?}")
        };
        assert_eq!((t.as_str(), payload.as_ref()), (topic, &b"raw"[..]));
        assert_eq!(
            *error,
            if pid == 3 {
                topic::TopicError::InvalidEncoding
            } else {
                topic::TopicError::NoMatch
            }
        );
        assert!(h.sent().is_empty(), "{topic}: not acknowledged");
        assert_eq!(h.s.state(), ConnectionState::Connected, "not fatal");
        if pid == 1 {
            // The application may still acknowledge it.
            h.s.ack(ack.unwrap()).unwrap();
            assert_eq!(h.sent(), vec![puback(1)]);
        }
    }
}
