//! Codec tests: property tests (round trip, prefixes, concatenation,
//! arbitrary input), byte-exact vectors checked against the MQTT 3.1.1
//! specification, and one negative test per validation rule.

use std::prelude::rust_2024::*;
use std::{format, vec};

use bytes::{Bytes, BytesMut};
use proptest::collection::vec as pvec;
use proptest::option;
use proptest::prelude::*;

use super::decode::parse_remaining_length;
use super::packet::publish_remaining_len;
use super::*;

// ---------------------------------------------------------------------------
// Helpers

fn pid(v: u16) -> Pid {
    Pid::new(v).unwrap()
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.encode(&mut out);
    assert_eq!(out.len(), packet.encoded_len());
    out.to_vec()
}

/// Decodes `bytes` as exactly one packet (nothing may be left over).
fn decode_one(bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, MAX_PACKET_SIZE)
        .expect("valid")
        .expect("complete");
    assert!(buf.is_empty(), "bytes left after the packet: {buf:?}");
    packet
}

/// Decodes `bytes`, expects an error, and checks the buffer is untouched.
fn decode_err(bytes: &[u8]) -> DecodeError {
    decode_err_max(bytes, MAX_PACKET_SIZE)
}

fn decode_err_max(bytes: &[u8], max: usize) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    let err = decode(&mut buf, max).expect_err("must be refused");
    assert_eq!(&buf[..], bytes, "an error must leave the buffer untouched");
    err
}

fn assert_round_trip(packet: &Packet) {
    let bytes = encode(packet);
    assert_eq!(&decode_one(&bytes), packet);
}

/// A CONNECT with protocol name `name`, level `level`, connect flags
/// `flags`, keep-alive 60 and `payload` (remaining length < 128).
fn connect_bytes(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
    body.extend_from_slice(payload);
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

/// A length-prefixed field.
fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

// ---------------------------------------------------------------------------
// Strategies

/// Arbitrary Unicode without U+0000, mixed with topic-like ASCII.
fn arb_string(max_chars: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        pvec(any::<char>(), 0..max_chars)
            .prop_map(|cs| cs.into_iter().filter(|&c| c != '\0').collect()),
        "[a-zA-Z0-9/$.%=&?_-]{0,40}",
    ]
}

fn arb_mqtt_str() -> impl Strategy<Value = MqttStr> {
    arb_string(30).prop_map(|s| MqttStr::try_from(s).unwrap())
}

fn arb_topic_name() -> impl Strategy<Value = TopicName> {
    arb_string(30).prop_map(|s| {
        let s: String = s.chars().filter(|c| !matches!(c, '+' | '#')).collect();
        let s = if s.is_empty() { "t".to_string() } else { s };
        TopicName::try_from(s).unwrap()
    })
}

fn arb_topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![
        1 => Just("+".to_string()),
        4 => arb_string(8).prop_map(|s| s.chars().filter(|c| !matches!(c, '+' | '#' | '/')).collect()),
    ];
    (pvec(level, 1..5), any::<bool>()).prop_map(|(levels, hash)| {
        let mut s = levels.join("/");
        if hash {
            if !s.is_empty() {
                s.push('/');
            }
            s.push('#');
        }
        if s.is_empty() {
            s.push('#');
        }
        TopicFilter::try_from(s).unwrap()
    })
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    pvec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_payload() -> impl Strategy<Value = Bytes> {
    // Mostly small; sometimes beyond 127 and 16,383 bytes (2- and 3-byte
    // remaining lengths).
    prop_oneof![
        8 => arb_bytes(200),
        1 => arb_bytes(20_000),
    ]
}

fn arb_pid() -> impl Strategy<Value = Pid> {
    (1..=u16::MAX).prop_map(pid)
}

fn arb_qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn arb_qospid() -> impl Strategy<Value = QosPid> {
    prop_oneof![
        Just(QosPid::AtMostOnce),
        arb_pid().prop_map(QosPid::AtLeastOnce),
        arb_pid().prop_map(QosPid::ExactlyOnce),
    ]
}

fn arb_connect() -> impl Strategy<Value = Connect> {
    let will = (arb_topic_name(), arb_bytes(100), arb_qos(), any::<bool>())
        .prop_map(|(t, m, q, r)| LastWill::new(t, m, q, r).unwrap());
    let credentials = option::of((arb_mqtt_str(), option::of(arb_bytes(200))));
    (
        arb_mqtt_str(),
        any::<u16>(),
        any::<bool>(),
        option::of(will),
        credentials,
    )
        .prop_map(|(client_id, keep_alive, clean, will, credentials)| {
            let mut c = Connect::new(client_id)
                .unwrap()
                .with_keep_alive(keep_alive)
                .with_clean_session(clean)
                .with_last_will(will);
            if let Some((username, password)) = credentials {
                c = c.with_username(username).unwrap();
                if let Some(password) = password {
                    c = c.with_password(password).unwrap();
                }
            }
            c
        })
}

fn arb_connack() -> impl Strategy<Value = Connack> {
    (any::<bool>(), 0..=5u8)
        .prop_map(|(sp, code)| Connack::new(sp, ConnectReturnCode::from_u8(code).unwrap()))
}

fn arb_publish() -> impl Strategy<Value = Publish> {
    (
        arb_topic_name(),
        arb_qospid(),
        arb_payload(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(topic, qospid, payload, dup, retain)| {
            Publish::new(topic, qospid, payload)
                .unwrap()
                .with_dup(dup)
                .with_retain(retain)
        })
}

fn arb_subscribe() -> impl Strategy<Value = Subscribe> {
    (arb_pid(), pvec((arb_topic_filter(), arb_qos()), 1..6))
        .prop_map(|(pid, filters)| Subscribe::new(pid, filters).unwrap())
}

fn arb_suback() -> impl Strategy<Value = Suback> {
    let code = prop_oneof![
        arb_qos().prop_map(SubscribeReturnCode::Success),
        Just(SubscribeReturnCode::Failure)
    ];
    (arb_pid(), pvec(code, 1..10)).prop_map(|(pid, codes)| Suback::new(pid, codes).unwrap())
}

fn arb_unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (arb_pid(), pvec(arb_topic_filter(), 1..6))
        .prop_map(|(pid, filters)| Unsubscribe::new(pid, filters).unwrap())
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        arb_connect().prop_map(Packet::Connect),
        arb_connack().prop_map(Packet::Connack),
        arb_publish().prop_map(Packet::Publish),
        arb_pid().prop_map(Packet::Puback),
        arb_pid().prop_map(Packet::Pubrec),
        arb_pid().prop_map(Packet::Pubrel),
        arb_pid().prop_map(Packet::Pubcomp),
        arb_subscribe().prop_map(Packet::Subscribe),
        arb_suback().prop_map(Packet::Suback),
        arb_unsubscribe().prop_map(Packet::Unsubscribe),
        arb_pid().prop_map(Packet::Unsuback),
        Just(Packet::Pingreq),
        Just(Packet::Pingresp),
        Just(Packet::Disconnect),
    ]
}

// ---------------------------------------------------------------------------
// 1. encode → decode is the identity, for every packet type

proptest! {
    #[test]
    fn round_trip_connect(p in arb_connect()) { assert_round_trip(&p.into()); }
    #[test]
    fn round_trip_connack(p in arb_connack()) { assert_round_trip(&p.into()); }
    #[test]
    fn round_trip_publish(p in arb_publish()) {
        assert_eq!(p.encoded_len(), Packet::from(p.clone()).encoded_len());
        let mut direct = BytesMut::new();
        p.encode(&mut direct);
        assert_eq!(&direct[..], &encode(&p.clone().into())[..]);
        assert_round_trip(&p.into());
    }
    #[test]
    fn round_trip_puback(pid in arb_pid()) { assert_round_trip(&Packet::Puback(pid)); }
    #[test]
    fn round_trip_pubrec(pid in arb_pid()) { assert_round_trip(&Packet::Pubrec(pid)); }
    #[test]
    fn round_trip_pubrel(pid in arb_pid()) { assert_round_trip(&Packet::Pubrel(pid)); }
    #[test]
    fn round_trip_pubcomp(pid in arb_pid()) { assert_round_trip(&Packet::Pubcomp(pid)); }
    #[test]
    fn round_trip_subscribe(p in arb_subscribe()) { assert_round_trip(&p.into()); }
    #[test]
    fn round_trip_suback(p in arb_suback()) { assert_round_trip(&p.into()); }
    #[test]
    fn round_trip_unsubscribe(p in arb_unsubscribe()) { assert_round_trip(&p.into()); }
    #[test]
    fn round_trip_unsuback(pid in arb_pid()) { assert_round_trip(&Packet::Unsuback(pid)); }

    // 2. Every strict prefix is "need more bytes" and leaves the buffer
    // unchanged; concatenated packets decode one after another, whatever the
    // chunking of the input.
    #[test]
    fn strict_prefixes_need_more(p in arb_packet()) {
        let bytes = encode(&p);
        for i in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..i]);
            prop_assert_eq!(decode(&mut buf, MAX_PACKET_SIZE), Ok(None), "prefix {}", i);
            prop_assert_eq!(&buf[..], &bytes[..i]);
        }
    }

    #[test]
    fn concatenated_packets_decode_in_order(
        packets in pvec(arb_packet(), 1..6),
        chunk in 1..64usize,
    ) {
        let mut wire = Vec::new();
        for p in &packets {
            wire.extend_from_slice(&encode(p));
        }
        // All at once.
        let mut buf = BytesMut::from(&wire[..]);
        for p in &packets {
            prop_assert_eq!(decode(&mut buf, MAX_PACKET_SIZE), Ok(Some(p.clone())));
        }
        prop_assert_eq!(decode(&mut buf, MAX_PACKET_SIZE), Ok(None));
        prop_assert!(buf.is_empty());
        // Fed in chunks of `chunk` bytes, decoding whatever is complete.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = decode(&mut buf, MAX_PACKET_SIZE).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(got, packets);
        prop_assert!(buf.is_empty());
    }

    // 3. Arbitrary bytes never panic; whatever decodes re-encodes and
    // re-decodes to the same packet.
    #[test]
    fn arbitrary_bytes_never_panic(data in pvec(any::<u8>(), 0..512)) {
        check_round_trip(&data, MAX_PACKET_SIZE);
        check_round_trip(&data, 64);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_first_byte(
        first in 0x10..=0xEFu8,
        rest in pvec(any::<u8>(), 0..128),
    ) {
        let mut data = vec![first, rest.len() as u8 & 0x7F];
        data.extend_from_slice(&rest);
        check_round_trip(&data, MAX_PACKET_SIZE);
    }

    #[test]
    fn mutated_packets_never_panic(
        p in arb_packet(),
        edits in pvec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = encode(&p);
        for (at, byte) in edits {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        check_round_trip(&bytes, MAX_PACKET_SIZE);
        let cut = cut % (bytes.len() + 1);
        check_round_trip(&bytes[..cut], MAX_PACKET_SIZE);
    }
}

#[test]
fn every_packet_type_is_generated() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_packet();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let p = strategy.new_tree(&mut runner).unwrap().current();
        seen.insert(p.packet_type().as_u8());
    }
    assert_eq!(seen.len(), 14);
}

// ---------------------------------------------------------------------------
// 4. Byte-exact vectors, written out by hand from the MQTT 3.1.1 text

#[test]
fn vector_connect_with_will_username_password() {
    let connect = Connect::new("dev1")
        .unwrap()
        .with_keep_alive(60)
        .with_clean_session(true)
        .with_last_will(LastWill::new("w/t", &b"bye"[..], QoS::AtLeastOnce, false).unwrap())
        .with_username("user")
        .unwrap()
        .with_password(&b"pass"[..])
        .unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // Fixed header: CONNECT (1 << 4), flags 0; remaining length 38.
        0x10, 38,
        // §3.1.2.1 protocol name: length 4, "MQTT".
        0x00, 0x04, b'M', b'Q', b'T', b'T',
        // §3.1.2.2 protocol level 4.
        0x04,
        // §3.1.2.3 connect flags: user name (0x80) | password (0x40)
        // | will retain 0 | will QoS 1 (0x08) | will flag (0x04)
        // | clean session (0x02) | reserved 0  = 0xCE.
        0xCE,
        // §3.1.2.10 keep alive: 60 s.
        0x00, 0x3C,
        // §3.1.3.1 client identifier "dev1".
        0x00, 0x04, b'd', b'e', b'v', b'1',
        // §3.1.3.2 will topic "w/t".
        0x00, 0x03, b'w', b'/', b't',
        // §3.1.3.3 will message "bye".
        0x00, 0x03, b'b', b'y', b'e',
        // §3.1.3.4 user name "user".
        0x00, 0x04, b'u', b's', b'e', b'r',
        // §3.1.3.5 password "pass".
        0x00, 0x04, b'p', b'a', b's', b's',
    ];
    let packet = Packet::Connect(connect.clone());
    assert_eq!(encode(&packet), expected);
    assert_eq!(decode_one(expected), packet);
    assert_eq!(connect.protocol(), Protocol::Mqtt311);
    assert_eq!(connect.client_id(), "dev1");
    assert_eq!(connect.password().map(|p| &p[..]), Some(&b"pass"[..]));
}

#[test]
fn vector_minimal_connect() {
    // Clean session, keep-alive 0, empty client id (§3.1.3.1 allows it).
    let expected = [
        0x10, 12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00,
    ];
    let packet = Packet::Connect(Connect::new("").unwrap());
    assert_eq!(encode(&packet), expected);
    assert_eq!(decode_one(&expected), packet);
}

#[test]
fn vector_publish_qos1() {
    let publish = Publish::new(
        "a/b",
        QosPid::AtLeastOnce(pid(10)),
        Bytes::from_static(b"hi"),
    )
    .unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // PUBLISH (3 << 4) | DUP 0 | QoS 1 (0b010) | RETAIN 0 = 0x32;
        // remaining length 2 + 3 + 2 + 2 = 9.
        0x32, 0x09,
        // §3.3.2.1 topic name "a/b".
        0x00, 0x03, b'a', b'/', b'b',
        // §3.3.2.2 packet identifier 10.
        0x00, 0x0A,
        // §3.3.3 payload.
        b'h', b'i',
    ];
    let packet = Packet::Publish(publish);
    assert_eq!(encode(&packet), expected);
    assert_eq!(decode_one(expected), packet);

    // DUP and RETAIN, QoS 2: 0x30 | 0x08 | 0x04 | 0x01 = 0x3D.
    let publish = Publish::new("a/b", QosPid::ExactlyOnce(pid(10)), Bytes::new())
        .unwrap()
        .with_dup(true)
        .with_retain(true);
    let expected = [0x3D, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A];
    assert_eq!(encode(&publish.into()), expected);

    // QoS 0: no packet identifier.
    let publish = Publish::new("a", QosPid::AtMostOnce, Bytes::from_static(b"x")).unwrap();
    let expected = [0x30, 0x04, 0x00, 0x01, b'a', b'x'];
    assert_eq!(encode(&publish.into()), expected);
}

#[test]
fn vector_subscribe_two_filters() {
    // The example of §3.8.3: "a/b" QoS 1 and "c/d" QoS 2, packet id 10.
    let subscribe = Subscribe::new(
        pid(10),
        [("a/b", QoS::AtLeastOnce), ("c/d", QoS::ExactlyOnce)],
    )
    .unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // SUBSCRIBE (8 << 4) | reserved 0b0010; remaining length
        // 2 + (2 + 3 + 1) * 2 = 14.
        0x82, 0x0E,
        // §3.8.2 packet identifier 10.
        0x00, 0x0A,
        // Filter "a/b", requested QoS 1.
        0x00, 0x03, b'a', b'/', b'b', 0x01,
        // Filter "c/d", requested QoS 2.
        0x00, 0x03, b'c', b'/', b'd', 0x02,
    ];
    let packet = Packet::Subscribe(subscribe);
    assert_eq!(encode(&packet), expected);
    assert_eq!(decode_one(expected), packet);
}

#[test]
fn vectors_of_the_other_packets() {
    let cases: Vec<(Packet, Vec<u8>)> = vec![
        // CONNACK: session present, accepted; refused with 0x05.
        (
            Connack::new(true, ConnectReturnCode::Accepted).into(),
            vec![0x20, 0x02, 0x01, 0x00],
        ),
        (
            Connack::new(false, ConnectReturnCode::NotAuthorized).into(),
            vec![0x20, 0x02, 0x00, 0x05],
        ),
        (Packet::Puback(pid(10)), vec![0x40, 0x02, 0x00, 0x0A]),
        (Packet::Pubrec(pid(10)), vec![0x50, 0x02, 0x00, 0x0A]),
        // PUBREL has the reserved flags 0b0010.
        (Packet::Pubrel(pid(10)), vec![0x62, 0x02, 0x00, 0x0A]),
        (Packet::Pubcomp(pid(0x1234)), vec![0x70, 0x02, 0x12, 0x34]),
        // SUBACK: the example of §3.9.3 (QoS 0, QoS 2, failure).
        (
            Suback::new(
                pid(10),
                [
                    SubscribeReturnCode::Success(QoS::AtMostOnce),
                    SubscribeReturnCode::Success(QoS::ExactlyOnce),
                    SubscribeReturnCode::Failure,
                ],
            )
            .unwrap()
            .into(),
            vec![0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80],
        ),
        // UNSUBSCRIBE: the example of §3.10.3 ("a/b", "c/d"), flags 0b0010.
        (
            Unsubscribe::new(pid(10), ["a/b", "c/d"]).unwrap().into(),
            vec![
                0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd',
            ],
        ),
        (Packet::Unsuback(pid(10)), vec![0xB0, 0x02, 0x00, 0x0A]),
        (Packet::Pingreq, vec![0xC0, 0x00]),
        (Packet::Pingresp, vec![0xD0, 0x00]),
        (Packet::Disconnect, vec![0xE0, 0x00]),
    ];
    for (packet, bytes) in cases {
        assert_eq!(encode(&packet), bytes, "{packet:?}");
        assert_eq!(decode_one(&bytes), packet);
    }
}

/// A QoS 0 PUBLISH to "t" whose remaining length is `rl`.
fn publish_with_remaining_len(rl: usize) -> Packet {
    Publish::new("t", QosPid::AtMostOnce, Bytes::from(vec![0xA5; rl - 3]))
        .unwrap()
        .into()
}

#[test]
fn remaining_length_boundaries() {
    // The table of §2.2.3.
    let cases: [(usize, &[u8]); 6] = [
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (rl, encoded_rl) in cases {
        let packet = publish_with_remaining_len(rl);
        let bytes = encode(&packet);
        assert_eq!(bytes[0], 0x30);
        assert_eq!(&bytes[1..1 + encoded_rl.len()], encoded_rl, "rl {rl}");
        assert_eq!(bytes.len(), 1 + encoded_rl.len() + rl);
        assert_eq!(remaining_length_len(rl), encoded_rl.len());
        assert_eq!(
            parse_remaining_length(encoded_rl),
            Ok(Some((rl, encoded_rl.len())))
        );
        assert_eq!(decode_one(&bytes), packet);
    }
    // The largest value, 268,435,455 = 0xFF 0xFF 0xFF 0x7F.
    assert_eq!(
        parse_remaining_length(&[0xFF, 0xFF, 0xFF, 0x7F]),
        Ok(Some((MAX_REMAINING_LENGTH, 4)))
    );
    assert_eq!(remaining_length_len(MAX_REMAINING_LENGTH), 4);
    // Its header alone is "need more bytes" without a size limit.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(decode(&mut buf, MAX_PACKET_SIZE), Ok(None));
    assert_eq!(buf.len(), 5);
}

#[test]
fn remaining_length_of_five_bytes_is_refused() {
    assert_eq!(
        decode_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        DecodeError::MalformedRemainingLength
    );
    // Refused as soon as the fourth byte still has the continuation bit.
    assert_eq!(
        decode_err(&[0x30, 0x80, 0x80, 0x80, 0x80]),
        DecodeError::MalformedRemainingLength
    );
    // Three continuation bytes: maybe a fourth will end it.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80][..]);
    assert_eq!(decode(&mut buf, MAX_PACKET_SIZE), Ok(None));
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    // MQTT 3.1.1 does not require the shortest encoding; re-encoding uses it.
    assert_eq!(decode_one(&[0xC0, 0x80, 0x00]), Packet::Pingreq);
    assert_eq!(
        decode_one(&[0x40, 0x82, 0x80, 0x00, 0x00, 0x01]),
        Packet::Puback(pid(1))
    );
}

// ---------------------------------------------------------------------------
// 5. One negative test per validation rule

#[test]
fn reserved_packet_types() {
    assert_eq!(decode_err(&[0x00, 0x00]), DecodeError::InvalidPacketType(0));
    assert_eq!(
        decode_err(&[0xF0, 0x00]),
        DecodeError::InvalidPacketType(15)
    );
    // Known from the first byte alone.
    assert_eq!(decode_err(&[0xF0]), DecodeError::InvalidPacketType(15));
}

#[test]
fn reserved_header_flags() {
    for t in 1..=14u8 {
        let packet_type = PacketType::from_u8(t).unwrap();
        let Some(expected) = packet_type.fixed_flags() else {
            continue;
        };
        for flags in 0..16u8 {
            if flags == expected {
                continue;
            }
            assert_eq!(
                decode_err(&[t << 4 | flags, 0x00]),
                DecodeError::InvalidHeaderFlags { packet_type, flags },
            );
        }
    }
    // The common mistakes: PUBREL, SUBSCRIBE, UNSUBSCRIBE with flags 0.
    assert_eq!(
        decode_err(&[0x60, 0x02, 0x00, 0x01]),
        DecodeError::InvalidHeaderFlags {
            packet_type: PacketType::Pubrel,
            flags: 0
        }
    );
    assert_eq!(
        decode_err(&[0x80]),
        DecodeError::InvalidHeaderFlags {
            packet_type: PacketType::Subscribe,
            flags: 0
        }
    );
    assert_eq!(
        decode_err(&[0xA0]),
        DecodeError::InvalidHeaderFlags {
            packet_type: PacketType::Unsubscribe,
            flags: 0
        }
    );
}

#[test]
fn publish_qos_3() {
    assert_eq!(decode_err(&[0x36]), DecodeError::InvalidPublishQos);
    assert_eq!(
        decode_err(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
        DecodeError::InvalidPublishQos
    );
}

#[test]
fn publish_dup_with_qos_0() {
    assert_eq!(
        decode_err(&[0x38, 0x03, 0x00, 0x01, b'a']),
        DecodeError::DupWithQos0
    );
    // DUP with QoS 1 is fine.
    assert!(matches!(
        decode_one(&[0x3A, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
        Packet::Publish(p) if p.dup()
    ));
}

#[test]
fn invalid_utf8() {
    // 0xC3 0x28: a two-byte sequence with a bad continuation byte.
    assert_eq!(
        decode_err(&[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]),
        DecodeError::InvalidUtf8
    );
    // 0xED 0xA0 0x80: an encoded surrogate (U+D800), ill-formed ([MQTT-1.5.3-1]).
    assert_eq!(
        decode_err(&[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80]),
        DecodeError::InvalidUtf8
    );
    // In a CONNECT client id and user name too.
    let bad_id = connect_bytes(b"MQTT", 4, 0x02, &lp(&[0xFF]));
    assert_eq!(decode_err(&bad_id), DecodeError::InvalidUtf8);
    let mut payload = lp(b"id");
    payload.extend(lp(&[0xC0, 0x80])); // overlong encoding of U+0000
    let bad_user = connect_bytes(b"MQTT", 4, 0x82, &payload);
    assert_eq!(decode_err(&bad_user), DecodeError::InvalidUtf8);
}

#[test]
fn null_character() {
    assert_eq!(
        decode_err(&[0x30, 0x04, 0x00, 0x02, b'a', 0x00]),
        DecodeError::NullCharacter
    );
    let bad_id = connect_bytes(b"MQTT", 4, 0x02, &lp(b"a\0"));
    assert_eq!(decode_err(&bad_id), DecodeError::NullCharacter);
    // In a topic filter.
    assert_eq!(
        decode_err(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]),
        DecodeError::NullCharacter
    );
}

#[test]
fn wildcard_in_topic_name() {
    assert_eq!(
        decode_err(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+']),
        DecodeError::WildcardInTopicName
    );
    assert_eq!(
        decode_err(&[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#']),
        DecodeError::WildcardInTopicName
    );
    // In a will topic.
    let mut payload = lp(b"id");
    payload.extend(lp(b"w/#"));
    payload.extend(lp(b"bye"));
    let bytes = connect_bytes(b"MQTT", 4, 0x06, &payload);
    assert_eq!(decode_err(&bytes), DecodeError::WildcardInTopicName);
}

#[test]
fn empty_topic_name() {
    assert_eq!(
        decode_err(&[0x30, 0x02, 0x00, 0x00]),
        DecodeError::EmptyTopicName
    );
    let mut payload = lp(b"id");
    payload.extend(lp(b""));
    payload.extend(lp(b"bye"));
    let bytes = connect_bytes(b"MQTT", 4, 0x06, &payload);
    assert_eq!(decode_err(&bytes), DecodeError::EmptyTopicName);
}

#[test]
fn zero_packet_id() {
    for bytes in [
        &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00][..],
        &[0x34, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
        &[0x40, 0x02, 0x00, 0x00],
        &[0x50, 0x02, 0x00, 0x00],
        &[0x62, 0x02, 0x00, 0x00],
        &[0x70, 0x02, 0x00, 0x00],
        &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00],
        &[0x90, 0x03, 0x00, 0x00, 0x00],
        &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'],
        &[0xB0, 0x02, 0x00, 0x00],
    ] {
        assert_eq!(decode_err(bytes), DecodeError::ZeroPacketId, "{bytes:x?}");
    }
}

#[test]
fn connect_protocol_name() {
    // MQTT 3.1's "MQIsdp" is not MQTT 3.1.1.
    let bytes = connect_bytes(b"MQIsdp", 3, 0x02, &lp(b"id"));
    assert_eq!(decode_err(&bytes), DecodeError::InvalidProtocolName);
    let bytes = connect_bytes(b"mqtt", 4, 0x02, &lp(b"id"));
    assert_eq!(decode_err(&bytes), DecodeError::InvalidProtocolName);
}

#[test]
fn connect_protocol_level() {
    // MQTT 5 sends "MQTT" level 5: a server answers CONNACK 0x01.
    let bytes = connect_bytes(b"MQTT", 5, 0x02, &lp(b"id"));
    assert_eq!(decode_err(&bytes), DecodeError::UnsupportedProtocolLevel(5));
    let bytes = connect_bytes(b"MQTT", 3, 0x02, &lp(b"id"));
    assert_eq!(decode_err(&bytes), DecodeError::UnsupportedProtocolLevel(3));
}

#[test]
fn connect_reserved_flag() {
    let bytes = connect_bytes(b"MQTT", 4, 0x03, &lp(b"id"));
    assert_eq!(decode_err(&bytes), DecodeError::ConnectReservedFlag);
}

#[test]
fn connect_will_flags_without_will() {
    for flags in [0x08, 0x10, 0x18, 0x20, 0x2A] {
        let bytes = connect_bytes(b"MQTT", 4, flags, &lp(b"id"));
        assert_eq!(
            decode_err(&bytes),
            DecodeError::WillFlagsWithoutWill,
            "{flags:#x}"
        );
    }
}

#[test]
fn connect_will_qos_3() {
    let mut payload = lp(b"id");
    payload.extend(lp(b"w"));
    payload.extend(lp(b"bye"));
    let bytes = connect_bytes(b"MQTT", 4, 0x1E, &payload);
    assert_eq!(decode_err(&bytes), DecodeError::InvalidWillQos);
}

#[test]
fn connect_password_without_username() {
    let mut payload = lp(b"id");
    payload.extend(lp(b"secret"));
    let bytes = connect_bytes(b"MQTT", 4, 0x42, &payload);
    assert_eq!(decode_err(&bytes), DecodeError::PasswordWithoutUsername);
}

#[test]
fn connack_reserved_flags() {
    assert_eq!(
        decode_err(&[0x20, 0x02, 0x02, 0x00]),
        DecodeError::InvalidConnackFlags(0x02)
    );
    assert_eq!(
        decode_err(&[0x20, 0x02, 0x81, 0x00]),
        DecodeError::InvalidConnackFlags(0x81)
    );
}

#[test]
fn connack_reserved_return_code() {
    assert_eq!(
        decode_err(&[0x20, 0x02, 0x00, 0x06]),
        DecodeError::InvalidConnectReturnCode(6)
    );
    assert_eq!(
        decode_err(&[0x20, 0x02, 0x00, 0xFF]),
        DecodeError::InvalidConnectReturnCode(0xFF)
    );
}

#[test]
fn connack_session_present_with_refusal() {
    assert_eq!(
        decode_err(&[0x20, 0x02, 0x01, 0x05]),
        DecodeError::SessionPresentWithRefusal
    );
}

#[test]
fn subscribe_and_unsubscribe_without_filters() {
    assert_eq!(
        decode_err(&[0x82, 0x02, 0x00, 0x01]),
        DecodeError::NoTopicFilters(PacketType::Subscribe)
    );
    assert_eq!(
        decode_err(&[0xA2, 0x02, 0x00, 0x01]),
        DecodeError::NoTopicFilters(PacketType::Unsubscribe)
    );
}

/// SUBSCRIBE, packet id 1, one filter with requested QoS `qos`.
fn subscribe_bytes(filter: &[u8], qos: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(lp(filter));
    body.push(qos);
    let mut out = vec![0x82, body.len() as u8];
    out.extend(body);
    out
}

/// UNSUBSCRIBE, packet id 1, one filter.
fn unsubscribe_bytes(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(lp(filter));
    let mut out = vec![0xA2, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn empty_topic_filter() {
    assert_eq!(
        decode_err(&subscribe_bytes(b"", 0)),
        DecodeError::EmptyTopicFilter
    );
    assert_eq!(
        decode_err(&unsubscribe_bytes(b"")),
        DecodeError::EmptyTopicFilter
    );
}

#[test]
fn misplaced_multi_level_wildcard() {
    for filter in [&b"a/#/b"[..], b"a#", b"#/", b"a/b#"] {
        assert_eq!(
            decode_err(&subscribe_bytes(filter, 0)),
            DecodeError::InvalidMultiLevelWildcard
        );
        assert_eq!(
            decode_err(&unsubscribe_bytes(filter)),
            DecodeError::InvalidMultiLevelWildcard
        );
    }
    // Valid placements.
    for filter in [&b"#"[..], b"a/#", b"/#", b"+/#"] {
        assert!(matches!(
            decode_one(&subscribe_bytes(filter, 1)),
            Packet::Subscribe(_)
        ));
    }
}

#[test]
fn misplaced_single_level_wildcard() {
    for filter in [&b"a+"[..], b"+a/b", b"a/b+/c"] {
        assert_eq!(
            decode_err(&subscribe_bytes(filter, 0)),
            DecodeError::InvalidSingleLevelWildcard
        );
        assert_eq!(
            decode_err(&unsubscribe_bytes(filter)),
            DecodeError::InvalidSingleLevelWildcard
        );
    }
    for filter in [&b"+"[..], b"+/+", b"a/+/c", b"/+"] {
        assert!(matches!(
            decode_one(&unsubscribe_bytes(filter)),
            Packet::Unsubscribe(_)
        ));
    }
}

#[test]
fn subscribe_requested_qos() {
    assert_eq!(
        decode_err(&subscribe_bytes(b"a", 3)),
        DecodeError::InvalidRequestedQos(3)
    );
    // Reserved upper bits ([MQTT-3.8.3-4]).
    assert_eq!(
        decode_err(&subscribe_bytes(b"a", 0x41)),
        DecodeError::InvalidRequestedQos(0x41)
    );
    assert_eq!(
        decode_err(&subscribe_bytes(b"a", 0x80)),
        DecodeError::InvalidRequestedQos(0x80)
    );
}

#[test]
fn suback_return_codes() {
    assert_eq!(
        decode_err(&[0x90, 0x02, 0x00, 0x01]),
        DecodeError::NoReturnCodes
    );
    for code in [0x03, 0x04, 0x7F, 0x81, 0xFF] {
        assert_eq!(
            decode_err(&[0x90, 0x04, 0x00, 0x01, 0x00, code]),
            DecodeError::InvalidSubackReturnCode(code)
        );
    }
}

#[test]
fn trailing_bytes() {
    // CONNECT with one byte after the client id.
    let mut payload = lp(b"id");
    payload.push(0xFF);
    let bytes = connect_bytes(b"MQTT", 4, 0x02, &payload);
    assert_eq!(
        decode_err(&bytes),
        DecodeError::TrailingBytes(PacketType::Connect)
    );
    // In SUBSCRIBE, UNSUBSCRIBE and SUBACK a dangling byte starts another
    // entry, which is then too short.
    assert_eq!(
        decode_err(&[0xA2, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
        DecodeError::RemainingLengthTooShort(PacketType::Unsubscribe)
    );
}

#[test]
fn remaining_length_too_short() {
    let short = DecodeError::RemainingLengthTooShort;
    // PUBLISH: the topic length needs two bytes.
    assert_eq!(decode_err(&[0x30, 0x01, 0x00]), short(PacketType::Publish));
    // PUBLISH: topic length says 5, only 1 byte.
    assert_eq!(
        decode_err(&[0x30, 0x03, 0x00, 0x05, b'a']),
        short(PacketType::Publish)
    );
    // QoS 1 PUBLISH without room for its packet id.
    assert_eq!(
        decode_err(&[0x32, 0x04, 0x00, 0x01, b'a', 0x00]),
        short(PacketType::Publish)
    );
    // SUBSCRIBE: filter without its requested-QoS byte.
    assert_eq!(
        decode_err(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
        short(PacketType::Subscribe)
    );
    // SUBSCRIBE / UNSUBSCRIBE / SUBACK: no room for the packet id.
    assert_eq!(
        decode_err(&[0x82, 0x01, 0x00]),
        short(PacketType::Subscribe)
    );
    assert_eq!(
        decode_err(&[0xA2, 0x01, 0x00]),
        short(PacketType::Unsubscribe)
    );
    assert_eq!(decode_err(&[0x90, 0x01, 0x00]), short(PacketType::Suback));
    // CONNECT cut in the protocol name, and without its client id.
    assert_eq!(
        decode_err(&[0x10, 0x02, 0x00, 0x04]),
        short(PacketType::Connect)
    );
    let bytes = connect_bytes(b"MQTT", 4, 0x02, &[]);
    assert_eq!(decode_err(&bytes), short(PacketType::Connect));
    // CONNECT whose flags announce a user name that is missing.
    let bytes = connect_bytes(b"MQTT", 4, 0x82, &lp(b"id"));
    assert_eq!(decode_err(&bytes), short(PacketType::Connect));
}

#[test]
fn fixed_size_packets_with_another_remaining_length() {
    let cases: [(u8, PacketType, usize); 9] = [
        (0x20, PacketType::Connack, 2),
        (0x40, PacketType::Puback, 2),
        (0x50, PacketType::Pubrec, 2),
        (0x62, PacketType::Pubrel, 2),
        (0x70, PacketType::Pubcomp, 2),
        (0xB0, PacketType::Unsuback, 2),
        (0xC0, PacketType::Pingreq, 0),
        (0xD0, PacketType::Pingresp, 0),
        (0xE0, PacketType::Disconnect, 0),
    ];
    for (first, packet_type, expected) in cases {
        for actual in [1usize, 3] {
            // Refused from the fixed header, before the body arrives.
            assert_eq!(
                decode_err(&[first, actual as u8]),
                DecodeError::UnexpectedRemainingLength {
                    packet_type,
                    expected,
                    actual
                }
            );
        }
    }
    // PINGREQ / PINGRESP / DISCONNECT with a non-zero remaining length.
    assert_eq!(
        decode_err(&[0xE0, 0x01, 0x00]),
        DecodeError::UnexpectedRemainingLength {
            packet_type: PacketType::Disconnect,
            expected: 0,
            actual: 1
        }
    );
}

// ---------------------------------------------------------------------------
// 6. Maximum packet size

#[test]
fn too_large_packet_is_refused_from_its_fixed_header() {
    // PUBLISH announcing a remaining length of 1024 (0x80 0x08): only the
    // three header bytes have arrived.
    assert_eq!(
        decode_err_max(&[0x30, 0x80, 0x08], 1000),
        DecodeError::PacketTooLarge {
            size: 1027,
            max: 1000
        }
    );
    // The limit counts the fixed header: 1027 passes with 1027, not 1026.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x08][..]);
    assert_eq!(decode(&mut buf, 1027), Ok(None));
    assert_eq!(
        decode_err_max(&[0x30, 0x80, 0x08], 1026),
        DecodeError::PacketTooLarge {
            size: 1027,
            max: 1026
        }
    );
    // A whole packet at exactly the limit decodes; one byte more does not.
    let bytes = encode(&Packet::Puback(pid(7)));
    assert_eq!(
        Decoder::new(4).decode(&mut BytesMut::from(&bytes[..])),
        Ok(Some(Packet::Puback(pid(7))))
    );
    assert_eq!(
        decode_err_max(&bytes, 3),
        DecodeError::PacketTooLarge { size: 4, max: 3 }
    );
    assert_eq!(Decoder::default().max_packet_size(), MAX_PACKET_SIZE);
}

// ---------------------------------------------------------------------------
// Construction

#[test]
fn constructors_check_limits() {
    assert_eq!(
        Publish::new("a/+", QosPid::AtMostOnce, Bytes::new()),
        Err(BuildError::WildcardInTopicName)
    );
    assert_eq!(
        Publish::new("", QosPid::AtMostOnce, Bytes::new()),
        Err(BuildError::EmptyTopicName)
    );
    let long = "x".repeat(MAX_STRING_LEN + 1);
    assert_eq!(
        Publish::new(long.as_str(), QosPid::AtMostOnce, Bytes::new()),
        Err(BuildError::StringTooLong { len: 65_536 })
    );
    assert_eq!(
        Connect::new(long.clone()),
        Err(BuildError::StringTooLong { len: 65_536 })
    );
    assert_eq!(
        Subscribe::new(pid(1), Vec::<(&str, QoS)>::new()),
        Err(BuildError::NoTopicFilters)
    );
    assert_eq!(
        Subscribe::new(pid(1), [("a/#/b", QoS::AtMostOnce)]),
        Err(BuildError::InvalidMultiLevelWildcard)
    );
    assert_eq!(
        Unsubscribe::new(pid(1), Vec::<&str>::new()),
        Err(BuildError::NoTopicFilters)
    );
    assert_eq!(
        Unsubscribe::new(pid(1), ["a+"]),
        Err(BuildError::InvalidSingleLevelWildcard)
    );
    assert_eq!(Suback::new(pid(1), []), Err(BuildError::NoReturnCodes));
    assert_eq!(
        Connect::new("id").unwrap().with_password("p"),
        Err(BuildError::PasswordWithoutUsername)
    );
    let big = Bytes::from(vec![0u8; MAX_STRING_LEN + 1]);
    assert_eq!(
        Connect::new("id")
            .unwrap()
            .with_username("u")
            .unwrap()
            .with_password(big.clone()),
        Err(BuildError::BinaryTooLong { len: 65_536 })
    );
    assert_eq!(
        LastWill::new("w", big, QoS::AtMostOnce, false),
        Err(BuildError::BinaryTooLong { len: 65_536 })
    );
    // The PUBLISH size limit (a 256 MiB payload is not allocated here).
    assert_eq!(
        publish_remaining_len(1, QoS::AtMostOnce, MAX_REMAINING_LENGTH - 3),
        Some(MAX_REMAINING_LENGTH)
    );
    assert_eq!(
        publish_remaining_len(1, QoS::AtMostOnce, MAX_REMAINING_LENGTH - 2),
        None
    );
    assert_eq!(
        publish_remaining_len(1, QoS::AtLeastOnce, MAX_REMAINING_LENGTH - 4),
        None
    );
    assert_eq!(publish_remaining_len(1, QoS::AtLeastOnce, usize::MAX), None);
}

#[test]
fn constructors_accept_every_string_form() {
    let name = TopicName::new("a/b").unwrap();
    let s = MqttStr::new("a/b").unwrap();
    let owned = String::from("a/b");
    for publish in [
        Publish::new("a/b", QosPid::AtMostOnce, Bytes::new()),
        Publish::new(String::from("a/b"), QosPid::AtMostOnce, Bytes::new()),
        Publish::new(&owned, QosPid::AtMostOnce, Bytes::new()),
        Publish::new(name.clone(), QosPid::AtMostOnce, Bytes::new()),
        Publish::new(s.clone(), QosPid::AtMostOnce, Bytes::new()),
        Publish::new(Bytes::from_static(b"a/b"), QosPid::AtMostOnce, Bytes::new()),
    ] {
        assert_eq!(publish.unwrap().topic(), &name);
    }
    assert_eq!(Connect::new(&s).unwrap().client_id(), &s);
    assert_eq!(owned, "a/b");
}

#[test]
fn flags_that_would_be_invalid_are_normalised() {
    // DUP is meaningless with QoS 0 ([MQTT-3.3.1-2]).
    let p = Publish::new("t", QosPid::AtMostOnce, Bytes::new())
        .unwrap()
        .with_dup(true);
    assert!(!p.dup());
    // A refusal never has session present ([MQTT-3.2.2-4]).
    let c = Connack::new(true, ConnectReturnCode::NotAuthorized);
    assert!(!c.session_present());
    assert!(Connack::new(true, ConnectReturnCode::Accepted).session_present());
}

#[test]
fn connect_debug_redacts_the_password() {
    let connect = Connect::new("dev1")
        .unwrap()
        .with_username("hub/dev1/?api-version=2021-04-12")
        .unwrap()
        .with_password("SharedAccessSignature sr=hub&sig=SECRET&se=1")
        .unwrap();
    let debug = format!("{connect:?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains("hub/dev1"), "{debug}");
    let debug = format!("{:?}", Packet::Connect(connect));
    assert!(!debug.contains("SECRET"), "{debug}");
}

#[test]
fn packet_helpers() {
    assert_eq!(Packet::Pingreq.packet_type(), PacketType::Pingreq);
    assert_eq!(Packet::Puback(pid(3)).pid(), Some(pid(3)));
    assert_eq!(Packet::Disconnect.pid(), None);
    let p = Publish::new("t", QosPid::AtLeastOnce(pid(9)), Bytes::new()).unwrap();
    assert_eq!(Packet::from(p).pid(), Some(pid(9)));
    assert_eq!(PacketType::Subscribe.to_string(), "SUBSCRIBE");
    assert_eq!(
        Packet::Pingreq.to_bytes(),
        Bytes::from_static(&[0xC0, 0x00])
    );
}

#[test]
fn decoded_publish_shares_the_receive_buffer() {
    let publish = Publish::new(
        "devices/d/messages/devicebound/",
        QosPid::AtLeastOnce(pid(1)),
        Bytes::from(vec![7u8; 64]),
    )
    .unwrap();
    let mut buf = BytesMut::new();
    publish.encode(&mut buf);
    let range = buf.as_ptr_range();
    let Packet::Publish(decoded) = decode(&mut buf, MAX_PACKET_SIZE).unwrap().unwrap() else {
        std::panic!("not a PUBLISH");
    };
    assert!(range.contains(&decoded.payload().as_ptr()));
    assert!(range.contains(&decoded.topic().as_mqtt_str().as_bytes().as_ptr()));
    assert_eq!(decoded, publish);
}

#[test]
fn error_messages() {
    let e = DecodeError::PacketTooLarge { size: 10, max: 5 };
    assert_eq!(
        e.to_string(),
        "packet of 10 bytes exceeds the maximum packet size of 5 bytes"
    );
    let e: &dyn core::error::Error = &BuildError::NoTopicFilters;
    assert_eq!(e.to_string(), "no topic filters");
}
