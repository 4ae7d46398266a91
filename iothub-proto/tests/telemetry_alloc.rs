//! Allocation test: in steady state, sending a telemetry message (QoS 0,
//! and QoS 1 through its PUBACK) allocates nothing in the session; the
//! message's own buffer is the caller's (a static payload here).
//!
//! Its own test binary without libtest (`harness = false`): dhat owns the
//! global allocator and counts every thread's allocations, and libtest's
//! main thread allocates now and then while it waits for a test (its
//! timeout queue, its channel's waker), which made the count flaky.

use bytes::Bytes;
use iothub_proto::auth::{Credential, HostName, Identity, SharedAccessKey};
use iothub_proto::mqtt::{Connack, ConnectReturnCode, Packet};
use iothub_proto::session::{
    Config, ConnectionState, Event, Message, Output, Qos, Session, TransportCommand,
};
use iothub_proto::time::Instant;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UNIX: u64 = 1_700_000_000;
const PAYLOAD: &[u8] = &[0x5a; 64];

/// Takes every output until `Timeout`; returns the bytes transmitted and
/// the number of events.
fn drain(s: &mut Session, wire: &mut Vec<u8>) -> usize {
    let mut events = 0;
    loop {
        match s.poll_output() {
            Output::Transmit(bytes) => wire.extend_from_slice(&bytes),
            Output::Event(e) => {
                assert!(
                    matches!(
                        e,
                        Event::MessageSent { .. }
                            | Event::MessageAcknowledged { .. }
                            | Event::Connected { .. }
                    ),
                    "{e:?}"
                );
                events += 1;
            }
            Output::Transport(cmd) => panic!("unexpected {cmd:?}"),
            Output::Timeout(_) => return events,
        }
    }
}

fn connected() -> Session {
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
    assert_eq!(s.poll_output(), Output::Transport(TransportCommand::Open));
    s.handle_transport_connected(now, UNIX);
    let mut wire = Vec::new();
    drain(&mut s, &mut wire);
    s.handle_input(
        now,
        &Packet::Connack(Connack::new(false, ConnectReturnCode::Accepted)).to_bytes(),
    );
    drain(&mut s, &mut wire);
    assert_eq!(s.state(), ConnectionState::Connected);
    s
}

/// `n` messages of `qos`, one at a time; a QoS 1 message's PUBACK is fed
/// back as soon as its PUBLISH leaves.
fn send(s: &mut Session, n: usize, qos: Qos, wire: &mut Vec<u8>) {
    let now = Instant::from_millis(1_000);
    for _ in 0..n {
        wire.clear();
        let m = Message::new(Bytes::from_static(PAYLOAD)).with_qos(qos);
        s.send_telemetry(now, m).unwrap();
        drain(s, wire);
        // The PUBLISH: fixed header, topic length, topic, [packet id], body.
        assert_eq!(wire[0] >> 4, 3);
        if qos == Qos::AtLeastOnce {
            let topic_len = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
            let pid = [wire[4 + topic_len], wire[5 + topic_len]];
            s.handle_input(now, &[0x40, 0x02, pid[0], pid[1]]);
            assert_eq!(drain(s, wire), 1, "acknowledged");
        }
    }
}

fn main() {
    steady_telemetry_allocates_nothing_in_the_session();
    println!("test steady_telemetry_allocates_nothing_in_the_session ... ok");
}

fn steady_telemetry_allocates_nothing_in_the_session() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut s = connected();
    let mut wire = Vec::with_capacity(1024);
    // Warm-up: queues, maps and buffers reach their working size.
    send(&mut s, 100, Qos::AtMostOnce, &mut wire);
    send(&mut s, 100, Qos::AtLeastOnce, &mut wire);
    let before = dhat::HeapStats::get().total_blocks;
    send(&mut s, 1000, Qos::AtMostOnce, &mut wire);
    send(&mut s, 1000, Qos::AtLeastOnce, &mut wire);
    let blocks = dhat::HeapStats::get().total_blocks - before;
    println!("2,000 telemetry messages: {blocks} heap blocks allocated");
    dhat::assert!(blocks == 0, "{} blocks for 2,000 messages", blocks);
}
