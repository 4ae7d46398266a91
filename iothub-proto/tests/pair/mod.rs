//! A device session wired to the in-memory hub engine, driven in simulated
//! time: `step` jumps the clock to the earlier of the two wake-ups.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use iothub_hub::{ConnId, Hub};
use iothub_proto::auth::{ConnectionString, DeviceId, Identity, SharedAccessKey};
use iothub_proto::mqtt::{self, Packet};
use iothub_proto::session::{
    AckToken, Config, Event, Output, Session, TransportClosed, TransportCommand,
};
use iothub_proto::time::Instant;

pub(crate) const HOST: &str = "pair.azure-devices.net";
pub(crate) const DEVICE: &str = "dev1";
pub(crate) const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Unix time at simulated instant zero.
pub(crate) const UNIX0: u64 = 1_800_000_000;

pub(crate) fn connection_string() -> ConnectionString {
    format!("HostName={HOST};DeviceId={DEVICE};SharedAccessKey={KEY_B64}")
        .parse()
        .expect("valid connection string")
}

pub(crate) fn config() -> Config {
    Config::from_connection_string(&connection_string())
}

/// The PUBACK token of a cloud-to-device or module input event.
pub(crate) fn inbound_token(e: &Event) -> Option<AckToken> {
    match e {
        Event::C2dMessage(m) | Event::InputMessage { message: m, .. } => m.ack,
        _ => None,
    }
}

/// Everything that crossed the wire, decoded, for invariant checks.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// Packets the device sent, with the connection they went on.
    pub(crate) up: Vec<(u32, Packet)>,
    /// Packets the hub sent, with the connection.
    pub(crate) down: Vec<(u32, Packet)>,
}

pub(crate) struct Pair {
    pub(crate) session: Session,
    pub(crate) hub: Hub,
    pub(crate) identity: Identity,
    pub(crate) conn: Option<ConnId>,
    /// Connections opened so far (a connection number for `Wire`).
    pub(crate) conns: u32,
    pub(crate) now_ms: u64,
    /// Extra wall-clock seconds (a host that slept).
    pub(crate) unix_skew: u64,
    pub(crate) events: Vec<Event>,
    /// When set, hub→device bytes are delivered in pieces of this size.
    pub(crate) chunk: Option<usize>,
    /// Transports that fail to open while this is non-zero.
    pub(crate) failing_opens: u32,
    pub(crate) wire: Wire,
    up_buf: bytes::BytesMut,
    down_buf: bytes::BytesMut,
    /// Every hub→device byte, in order, per connection (for replays).
    pub(crate) transcript: Vec<Vec<u8>>,
    /// Whether the application takes every cloud-to-device and module
    /// input message as its event arrives ([`Session::taken`]); default
    /// true. Off, the test takes them by hand.
    pub(crate) take_inbound: bool,
    /// The session's last `Output::Timeout` (set by `pump`).
    session_deadline: Option<Instant>,
}

impl Pair {
    pub(crate) fn new(config: Config) -> Pair {
        let mut hub = Hub::new(HOST);
        let identity = hub.add_device(
            DeviceId::new(DEVICE).expect("id"),
            SharedAccessKey::from_base64(KEY_B64).expect("key"),
        );
        Pair {
            session: Session::new(config).expect("valid config"),
            hub,
            identity,
            conn: None,
            conns: 0,
            now_ms: 0,
            unix_skew: 0,
            events: Vec::new(),
            chunk: None,
            failing_opens: 0,
            wire: Wire::default(),
            up_buf: bytes::BytesMut::new(),
            down_buf: bytes::BytesMut::new(),
            transcript: Vec::new(),
            take_inbound: true,
            session_deadline: None,
        }
    }

    /// A pair around a given session and hub (the identity is the
    /// session's), at simulated time `now_ms`.
    pub(crate) fn with_hub(session: Session, hub: Hub, identity: Identity, now_ms: u64) -> Pair {
        Pair {
            session,
            hub,
            identity,
            conn: None,
            conns: 0,
            now_ms,
            unix_skew: 0,
            events: Vec::new(),
            chunk: None,
            failing_opens: 0,
            wire: Wire::default(),
            up_buf: bytes::BytesMut::new(),
            down_buf: bytes::BytesMut::new(),
            transcript: Vec::new(),
            take_inbound: true,
            session_deadline: None,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms)
    }

    pub(crate) fn unix(&self) -> u64 {
        UNIX0 + self.now_ms / 1000 + self.unix_skew
    }

    fn observe(buf: &mut bytes::BytesMut, out: &mut Vec<(u32, Packet)>, conn: u32, data: &[u8]) {
        buf.extend_from_slice(data);
        while let Ok(Some(p)) = mqtt::decode(buf, mqtt::MAX_PACKET_SIZE) {
            out.push((conn, p));
        }
    }

    /// Moves bytes, transport commands and events until nothing moves.
    pub(crate) fn pump(&mut self) {
        loop {
            let mut moved = false;
            loop {
                match self.session.poll_output() {
                    Output::Transport(cmd) => {
                        moved = true;
                        self.transport(cmd);
                    }
                    Output::Transmit(bytes) => {
                        moved = true;
                        if let Some(conn) = self.conn {
                            Self::observe(&mut self.up_buf, &mut self.wire.up, self.conns, &bytes);
                            let (now, unix) = (self.now(), self.unix());
                            self.hub.handle_input(conn, now, unix, &bytes);
                        }
                    }
                    Output::Event(e) => {
                        moved = true;
                        if let (true, Some(token)) = (self.take_inbound, inbound_token(&e)) {
                            self.session.taken(token);
                        }
                        self.events.push(e);
                    }
                    Output::Timeout(at) => {
                        self.session_deadline = at;
                        break;
                    }
                }
            }
            if let Some(conn) = self.conn {
                while let Some(bytes) = self.hub.poll_transmit(conn) {
                    moved = true;
                    Self::observe(&mut self.down_buf, &mut self.wire.down, self.conns, &bytes);
                    if let Some(t) = self.transcript.last_mut() {
                        t.extend_from_slice(&bytes);
                    }
                    self.deliver(&bytes);
                }
                if self.hub.is_closed(conn) {
                    moved = true;
                    self.conn = None;
                    self.session
                        .handle_transport_closed(self.now(), TransportClosed::ClosedByPeer);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Carries out a transport command of the session.
    fn transport(&mut self, cmd: TransportCommand) {
        match cmd {
            TransportCommand::Open => {
                if self.failing_opens > 0 {
                    self.failing_opens -= 1;
                    self.session
                        .handle_transport_closed(self.now(), TransportClosed::ConnectFailed);
                    return;
                }
                if let Some(old) = self.conn.take() {
                    self.hub.client_closed(old);
                }
                self.conn = Some(self.hub.accept(self.now(), None));
                self.conns += 1;
                self.up_buf.clear();
                self.down_buf.clear();
                self.transcript.push(Vec::new());
                let (now, unix) = (self.now(), self.unix());
                self.session.handle_transport_connected(now, unix);
            }
            TransportCommand::Close => {
                if let Some(old) = self.conn.take() {
                    self.hub.client_closed(old);
                }
            }
        }
    }

    fn deliver(&mut self, bytes: &Bytes) {
        let now = self.now();
        match self.chunk {
            Some(n) if n > 0 => {
                for piece in bytes.chunks(n) {
                    self.session.handle_input(now, piece);
                }
            }
            _ => self.session.handle_input(now, bytes),
        }
    }

    /// The next instant either side wants to be woken at (after `pump`).
    pub(crate) fn next_wakeup(&self) -> Option<u64> {
        let s = self.session_deadline.map(Instant::as_millis);
        let h = self.hub.poll_timeout().map(Instant::as_millis);
        match (s, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pumps, then jumps time to the next wake-up (no further than
    /// `limit_ms`) and delivers it to both sides. False when nothing is
    /// scheduled before the limit.
    pub(crate) fn step(&mut self, limit_ms: u64) -> bool {
        self.pump();
        let Some(at) = self.next_wakeup() else {
            return false;
        };
        if at > limit_ms {
            return false;
        }
        self.now_ms = self.now_ms.max(at);
        let (now, unix) = (self.now(), self.unix());
        self.hub.handle_timeout(now, unix);
        self.session.handle_timeout(now, unix);
        self.pump();
        true
    }

    /// Runs simulated time forward by `d`, waking both sides on time.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now_ms + d.as_millis() as u64;
        let mut guard = 0u32;
        while self.step(end) {
            guard += 1;
            assert!(guard < 1_000_000, "runaway timers");
        }
        self.now_ms = end;
        let (now, unix) = (self.now(), self.unix());
        self.hub.handle_timeout(now, unix);
        self.session.handle_timeout(now, unix);
        self.pump();
    }

    /// Steps until `pred` holds, for at most `max` of simulated time.
    pub(crate) fn run_until(&mut self, max: Duration, mut pred: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now_ms + max.as_millis() as u64;
        self.pump();
        while !pred(self) {
            if !self.step(end) {
                return pred(self);
            }
        }
        true
    }

    /// Takes the events seen so far.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Connects (from a fresh session) and waits for `Connected`.
    pub(crate) fn connected(config: Config) -> Pair {
        let mut p = Pair::new(config);
        let ok = p.run_until(Duration::from_secs(5), |p| {
            p.events
                .iter()
                .any(|e| matches!(e, Event::Connected { .. }))
        });
        assert!(ok, "did not connect: {:?}", p.events);
        p
    }
}
