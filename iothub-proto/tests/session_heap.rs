//! Heap test: an idle connected session (methods, cloud-to-device and
//! desired properties enabled, desired state read) holds at most 4 KiB of
//! heap.
//!
//! Its own test binary with a single test: dhat owns the global allocator
//! and only one profiler may run at a time.

use bytes::{Bytes, BytesMut};
use iothub_proto::auth::{Credential, HostName, Identity, SharedAccessKey};
use iothub_proto::mqtt::{
    self, Connack, ConnectReturnCode, MAX_PACKET_SIZE, Packet, Pid, Publish, QosPid, Suback,
    SubscribeReturnCode,
};
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{
    Config, ConnectionState, Event, Feature, Message, Output, Session, TransportCommand,
};
use iothub_proto::time::Instant;
use iothub_proto::topic::{RequestId, hub};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UNIX: u64 = 1_700_000_000;

/// Takes every output until `Timeout`: the packets transmitted, decoded,
/// are returned; the events are added to `events`.
fn transmitted(session: &mut Session, events: &mut Vec<Event>) -> Vec<Packet> {
    let mut wire = BytesMut::new();
    loop {
        match session.poll_output() {
            Output::Transmit(bytes) => wire.extend_from_slice(&bytes),
            Output::Event(e) => events.push(e),
            Output::Transport(cmd) => panic!("unexpected {cmd:?}"),
            Output::Timeout(_) => break,
        }
    }
    let mut packets = Vec::new();
    while let Some(p) = mqtt::decode(&mut wire, MAX_PACKET_SIZE).unwrap() {
        packets.push(p);
    }
    packets
}

/// Every event so far (`events`, and those still in the session); no
/// packet may be waiting.
fn drain_events(session: &mut Session, events: &mut Vec<Event>) -> Vec<Event> {
    assert!(transmitted(session, events).is_empty());
    std::mem::take(events)
}

/// Builds, connects and idles a session; returns it.
fn connected_session() -> Session {
    let config = Config::new(
        Identity::parse("thermostat-0042", None).unwrap(),
        HostName::new("contoso-prod.azure-devices.net").unwrap(),
        Credential::SharedAccessKey {
            key: SharedAccessKey::from_bytes([7u8; 32]).unwrap(),
            key_name: None,
        },
    )
    .with_seed(0x5eed);
    let mut s = Session::new(config).unwrap();
    let now = Instant::from_millis(0);
    for f in [Feature::C2d, Feature::Methods, Feature::DesiredProperties] {
        s.enable(now, f).unwrap();
    }
    assert_eq!(s.poll_output(), Output::Transport(TransportCommand::Open));
    let mut ev = Vec::new();
    s.handle_transport_connected(now, UNIX);
    assert!(matches!(
        transmitted(&mut s, &mut ev).as_slice(),
        [Packet::Connect(_)]
    ));
    s.handle_input(
        now,
        &Packet::Connack(Connack::new(true, ConnectReturnCode::Accepted)).to_bytes(),
    );
    let Some(Packet::Subscribe(sub)) = transmitted(&mut s, &mut ev).pop() else {
        panic!("no SUBSCRIBE");
    };
    let codes = sub
        .filters()
        .iter()
        .map(|(_, q)| SubscribeReturnCode::Success(*q));
    let suback = Packet::Suback(Suback::new(sub.pid(), codes).unwrap());
    s.handle_input(now, &suback.to_bytes());
    // The session reads the twin for the desired state; answer it.
    let Some(Packet::Publish(get)) = transmitted(&mut s, &mut ev).pop() else {
        panic!("no twin GET");
    };
    let rid = get.topic().as_str().split("$rid=").nth(1).unwrap();
    let answer = Publish::new(
        hub::twin_response(200, &RequestId::from_wire(rid), None),
        QosPid::AtMostOnce,
        Bytes::from_static(br#"{"desired":{"mode":"eco","$version":3},"reported":{}}"#),
    )
    .unwrap();
    s.handle_input(now, &Packet::Publish(answer).to_bytes());
    let events = drain_events(&mut s, &mut ev);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::DesiredState { version: 3, .. }))
    );
    assert!(transmitted(&mut s, &mut ev).is_empty());
    assert_eq!(s.state(), ConnectionState::Connected);
    s
}

/// Some traffic: 20 telemetry messages acknowledged, a twin read answered,
/// a cloud-to-device message taken (and so acknowledged).
fn traffic(s: &mut Session) {
    let mut ev = Vec::new();
    let now = Instant::from_millis(1_000);
    for i in 0..20u8 {
        s.send_telemetry(now, Message::new(vec![i; 200])).unwrap();
    }
    // The window is 16: the last 4 go out as the first PUBACKs come in.
    loop {
        let sent = transmitted(s, &mut ev);
        if sent.is_empty() {
            break;
        }
        for p in sent {
            if let Packet::Publish(p) = p {
                s.handle_input(now, &Packet::Puback(p.pid().unwrap()).to_bytes());
            }
        }
    }
    s.get_twin(now).unwrap();
    let Some(Packet::Publish(get)) = transmitted(s, &mut ev).pop() else {
        panic!("no twin GET");
    };
    let rid = get.topic().as_str().split("$rid=").nth(1).unwrap();
    let answer = Publish::new(
        hub::twin_response(200, &RequestId::from_wire(rid), None),
        QosPid::AtMostOnce,
        Bytes::from(vec![b' '; 4096]),
    )
    .unwrap();
    s.handle_input(now, &Packet::Publish(answer).to_bytes());
    let device = Identity::parse("thermostat-0042", None).unwrap();
    let c2d = Publish::new(
        hub::c2d(device.device_id(), &MessageProperties::new()),
        QosPid::AtLeastOnce(Pid::MIN),
        Bytes::from(vec![0u8; 1024]),
    )
    .unwrap();
    s.handle_input(now, &Packet::Publish(c2d).to_bytes());
    let events = drain_events(s, &mut ev);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::MessageAcknowledged { .. }))
            .count(),
        20
    );
    let token = events
        .iter()
        .find_map(|e| match e {
            Event::C2dMessage(m) => m.ack,
            _ => None,
        })
        .expect("the C2D message, with its token");
    assert!(
        transmitted(s, &mut ev).is_empty(),
        "not acknowledged before it is taken"
    );
    s.taken(token);
    assert!(matches!(
        transmitted(s, &mut ev).as_slice(),
        [Packet::Puback(_)]
    ));
    assert_eq!(
        s.in_flight_len() + s.queued_len() + s.pending_requests_len(),
        0
    );
}

#[test]
fn an_idle_connected_session_holds_at_most_4_kib_of_heap() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().curr_bytes;
    let mut session = connected_session();
    let idle = dhat::HeapStats::get().curr_bytes - before;
    traffic(&mut session);
    let after_traffic = dhat::HeapStats::get().curr_bytes - before;
    println!(
        "idle connected session: {idle} bytes of heap ({after_traffic} after traffic); \
         size_of::<Session>() = {} bytes",
        std::mem::size_of::<Session>()
    );
    dhat::assert!(idle <= 4096, "idle heap {} > 4096", idle);
    dhat::assert!(
        after_traffic <= 4096,
        "idle heap after traffic {} > 4096",
        after_traffic
    );
    drop(session);
}
