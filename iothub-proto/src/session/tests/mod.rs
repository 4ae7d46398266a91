//! Session tests against a small scripted peer (this file: the
//! [`Harness`] and the helpers every concern's file shares): what the session transmits
//! is decoded with `mqtt::decode`, answers are built with the codec and
//! `topic::hub`. Time is simulated; nothing sleeps.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::event::InboundMessage;
use super::*;
use crate::auth::{HostName, Identity, SasToken, SharedAccessKey};
use crate::mqtt::{
    self, Connack, Connect, ConnectReturnCode, MAX_PACKET_SIZE, Packet, Pid, Publish, QoS, QosPid,
    Suback, Subscribe, SubscribeReturnCode,
};
use crate::properties::MessageProperties;
use crate::topic::{self, RequestId, hub};

const UNIX: u64 = 1_700_000_000;
const HOST: &str = "contoso.azure-devices.net";

fn key() -> SharedAccessKey {
    SharedAccessKey::from_bytes([7u8; 32]).unwrap()
}

fn device() -> Identity {
    Identity::parse("dev1", None).unwrap()
}

fn module() -> Identity {
    Identity::parse("dev1", Some("mod1")).unwrap()
}

fn key_credential() -> Credential {
    Credential::SharedAccessKey {
        key: key(),
        key_name: None,
    }
}

fn config() -> Config {
    Config::new(device(), HostName::new(HOST).unwrap(), key_credential()).with_seed(42)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The session plus a scripted peer: simulated monotonic time, Unix time
/// moving with it (plus `unix_skew` to simulate a sleeping host), and logs
/// of what the session asked for.
struct Harness {
    s: Session,
    now: Instant,
    unix_skew: u64,
    wire: BytesMut,
    /// Packets transmitted and not yet taken by `sent()`.
    out: Vec<Packet>,
    /// Transport commands not yet taken by `commands()`.
    cmds: Vec<TransportCommand>,
    /// Events not yet taken by `events()` / `next_event()`.
    evq: alloc::collections::VecDeque<Event>,
    /// The last `Output::Timeout`.
    deadline: Option<Instant>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        Harness {
            s: Session::new(config).unwrap(),
            now: Instant::from_millis(1_000),
            unix_skew: 0,
            wire: BytesMut::new(),
            out: Vec::new(),
            cmds: Vec::new(),
            evq: alloc::collections::VecDeque::new(),
            deadline: None,
        }
    }

    fn unix(&self) -> u64 {
        UNIX + self.now.as_millis() / 1000 + self.unix_skew
    }

    /// Takes every output until `Timeout`: packets, transport commands
    /// and events are kept for `sent()`, `commands()` and `events()`.
    fn collect(&mut self) {
        loop {
            match self.s.poll_output() {
                Output::Transmit(bytes) => self.wire.extend_from_slice(&bytes),
                Output::Transport(cmd) => self.cmds.push(cmd),
                Output::Event(e) => self.evq.push_back(e),
                Output::Timeout(at) => {
                    self.deadline = at;
                    break;
                }
            }
        }
        while let Some(p) = mqtt::decode(&mut self.wire, MAX_PACKET_SIZE).unwrap() {
            self.out.push(p);
        }
        assert!(self.wire.is_empty(), "a partial packet was transmitted");
    }

    /// The next event, if any.
    fn next_event(&mut self) -> Option<Event> {
        self.collect();
        self.evq.pop_front()
    }

    /// When the session wants `handle_timeout` next.
    fn timeout(&mut self) -> Option<Instant> {
        self.collect();
        self.deadline
    }

    /// Every packet transmitted since the last call.
    fn sent(&mut self) -> Vec<Packet> {
        self.collect();
        core::mem::take(&mut self.out)
    }

    /// Every transport command since the last call.
    fn commands(&mut self) -> Vec<TransportCommand> {
        self.collect();
        core::mem::take(&mut self.cmds)
    }

    /// Every event so far.
    fn events(&mut self) -> Vec<Event> {
        self.collect();
        self.evq.drain(..).collect()
    }

    fn feed(&mut self, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        self.s.handle_input(self.now, &bytes);
    }

    /// Moves time forward to `now + d`, firing every timer due on the way
    /// at its own instant.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..100_000 {
            match self.timeout() {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    let unix = self.unix();
                    self.s.handle_timeout(self.now, unix);
                }
                _ => break,
            }
        }
        self.now = target;
        let unix = self.unix();
        self.s.handle_timeout(self.now, unix);
        self.collect();
    }

    /// Expects the session to want a transport; opens it and returns the
    /// CONNECT.
    fn open(&mut self) -> Connect {
        assert_eq!(self.commands(), vec![TransportCommand::Open]);
        let unix = self.unix();
        self.s.handle_transport_connected(self.now, unix);
        let sent = self.sent();
        match sent.as_slice() {
            [Packet::Connect(c)] => c.clone(),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// Opens, answers CONNACK, and returns what followed (resends,
    /// SUBSCRIBE, queued work).
    fn connect(&mut self) -> Vec<Packet> {
        self.open();
        self.feed(Connack::new(true, ConnectReturnCode::Accepted));
        assert_eq!(self.s.state(), ConnectionState::Connected);
        self.sent()
    }

    /// Connects and grants every SUBSCRIBE that follows; returns the other
    /// packets.
    fn connect_and_grant(&mut self) -> Vec<Packet> {
        let sent = self.connect();
        self.grant(sent)
    }

    /// Grants every SUBSCRIBE among `packets`; returns the other packets
    /// plus whatever the grants caused.
    fn grant(&mut self, packets: Vec<Packet>) -> Vec<Packet> {
        let mut rest = Vec::new();
        for p in packets {
            match p {
                Packet::Subscribe(s) => {
                    let codes = s
                        .filters()
                        .iter()
                        .map(|(_, q)| SubscribeReturnCode::Success(*q));
                    self.feed(Suback::new(s.pid(), codes).unwrap());
                }
                other => rest.push(other),
            }
        }
        rest.extend(self.sent());
        rest
    }

    /// The transport dies (the adapter reports it).
    fn drop_transport(&mut self) {
        self.s
            .handle_transport_closed(self.now, TransportClosed::Io);
    }

    /// Drops the transport and waits out the backoff (in steps of 100 ms);
    /// the session then wants a new transport.
    fn drop_and_wait(&mut self) {
        self.drop_transport();
        for _ in 0..700 {
            self.advance(Duration::from_millis(100));
            if self.cmds.contains(&TransportCommand::Open) {
                return;
            }
        }
        panic!("no reconnection within 70 s");
    }
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn only_publish(packets: &[Packet]) -> Publish {
    match packets {
        [Packet::Publish(p)] => p.clone(),
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
}

fn only_subscribe(packets: &[Packet]) -> Subscribe {
    match packets {
        [Packet::Subscribe(s)] => s.clone(),
        other => panic!("expected one SUBSCRIBE, got {other:?}"),
    }
}

fn filters(s: &Subscribe) -> Vec<String> {
    s.filters()
        .iter()
        .map(|(f, _)| f.as_str().to_string())
        .collect()
}

/// The `$rid` of a twin request topic.
fn rid_of(p: &Publish) -> RequestId {
    let t = p.topic().as_str();
    let rid = t.split("$rid=").nth(1).expect("a $rid");
    RequestId::new(rid)
}

fn twin_answer(status: u16, rid: &RequestId, version: Option<u64>, body: &[u8]) -> Publish {
    Publish::new(
        hub::twin_response(status, rid, version),
        QosPid::AtMostOnce,
        Bytes::copy_from_slice(body),
    )
    .unwrap()
}

fn disconnected(events: &[Event]) -> Vec<DisconnectReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn reconnect_delays(events: &[Event]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReconnectScheduled { delay } => Some(*delay),
            _ => None,
        })
        .collect()
}

fn c2d(pid: u16, props: &MessageProperties, body: &'static [u8]) -> Publish {
    Publish::new(
        hub::c2d(device().device_id(), props),
        QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
        Bytes::from_static(body),
    )
    .unwrap()
}

fn c2d_topic(pid: u16, topic: &str, body: &'static [u8]) -> Publish {
    Publish::new(
        topic,
        QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
        Bytes::from_static(body),
    )
    .unwrap()
}

fn take_c2d(h: &mut Harness) -> InboundMessage {
    match h.next_event() {
        Some(Event::C2dMessage(m)) => *m,
        other => panic!("expected a C2D message, got {other:?}"),
    }
}

fn puback(pid: u16) -> Packet {
    Packet::Puback(Pid::new(pid).unwrap())
}

mod connection;
mod contract;
mod inbound;
mod methods;
mod subscriptions;
mod telemetry;
mod tokens;
mod twin;
