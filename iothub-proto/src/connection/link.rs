//! [`Link`]: one MQTT client connection after another, as a value — the
//! mechanics both sessions share. It decides nothing about policy (whether
//! to connect again, after which delay, what ends a session): the session
//! on top tells it what to do and reads what happened.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::BytesMut;
use rand_core::SeedableRng;
use rand_pcg::Pcg32;

use super::backoff::Backoff;
use super::errors::{ConfigError, ConnectRefused, DisconnectReason};
use super::{
    MAX_KEEP_ALIVE, MIN_MAX_PACKET_SIZE, Output, TRANSMIT_BATCH, TransportCommand,
    keep_small_bytes, keep_small_deque,
};
use crate::mqtt::{self, Connack, Connect, DecodeError, Packet, Pid, Publish};
use crate::time::{Instant, TimerSlot, TimerTable};

/// What a connection is configured with, whatever the session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// MQTT keep-alive; zero turns it off.
    pub(crate) keep_alive: Duration,
    /// How long a PINGREQ may go unanswered.
    pub(crate) ping_timeout: Duration,
    /// How long the CONNACK may take.
    pub(crate) connect_timeout: Duration,
    /// The reconnection delays' bounds.
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    /// After a connection has been up this long, the backoff starts from
    /// its minimum again; `None`: never.
    pub(crate) stable_after: Option<Duration>,
    /// The largest packet accepted from the peer, fixed header included.
    pub(crate) max_packet_size: usize,
    /// The jitter generator's seed.
    pub(crate) seed: u64,
}

impl Settings {
    /// The rules every session's configuration keeps for these values.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.keep_alive > MAX_KEEP_ALIVE {
            return Err(ConfigError::KeepAliveTooLong(self.keep_alive));
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            return Err(ConfigError::KeepAliveTooShort(self.keep_alive));
        }
        let mut durations = [
            ("ping_timeout", Some(self.ping_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("stable_after", self.stable_after),
        ];
        for (field, value) in &mut durations {
            if value.is_some_and(|d| d < Duration::from_millis(1)) {
                return Err(ConfigError::ZeroDuration(field));
            }
        }
        if self.backoff_min < Duration::from_millis(1) || self.backoff_min > self.backoff_max {
            return Err(ConfigError::BackoffRange {
                min: self.backoff_min,
                max: self.backoff_max,
            });
        }
        if self.max_packet_size < MIN_MAX_PACKET_SIZE {
            return Err(ConfigError::MaxPacketSize(self.max_packet_size));
        }
        Ok(())
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No transport, none wanted, nothing scheduled.
    Down,
    /// A transport is wanted: the `Open` is pending, being carried out, or
    /// held back by the session.
    Opening,
    /// CONNECT was written; waiting for the CONNACK.
    AwaitingConnack,
    /// The CONNACK accepted the CONNECT.
    Up,
    /// Waiting out a reconnection delay.
    Backoff,
}

/// The timers of the connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkTimer {
    /// The CONNACK must arrive by then.
    Connack,
    /// The PINGRESP must arrive by then.
    PingResponse,
    /// Nothing was sent for the keep-alive: send a PINGREQ.
    KeepAlive,
    /// The connection has been up for `stable_after`.
    StableConnection,
    /// The reconnection delay is over.
    Reconnect,
}

impl TimerSlot for LinkTimer {
    fn index(self) -> usize {
        self as usize
    }
}

/// What a due timer of the connection means for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing (a PINGREQ went out, or the timer no longer applies).
    Nothing,
    /// The connection is dead: end it for this reason.
    Dead(DisconnectReason),
    /// The reconnection delay is over: open again (or not).
    Reconnect,
}

/// What a torn-down connection leaves behind.
#[derive(Debug)]
pub(crate) struct Ended<T> {
    /// It was an attempt (not an `Open` that never left the session).
    pub(crate) attempted: bool,
    /// The tags of the bytes that will never be written.
    pub(crate) dropped: Vec<T>,
}

/// One MQTT client connection after another. `T` tags transmitted bytes
/// for the session (the device session: the QoS 0 message they carry).
#[derive(Debug)]
pub(crate) struct Link<T> {
    settings: Settings,
    phase: Phase,
    /// Incremented with every CONNECT.
    generation: u64,
    /// The adapter holds (or is opening) a transport for us.
    transport_open: bool,
    cmds: VecDeque<TransportCommand>,
    rx: BytesMut,
    /// Packets encoded and not yet handed out, back to back: handed out
    /// together, up to [`TRANSMIT_BATCH`] bytes per [`Output::Transmit`].
    tx: BytesMut,
    /// The length of each packet in `tx` and the session's tag for it (a
    /// QoS 0 message is reported sent when its bytes leave).
    tx_packets: VecDeque<(usize, Option<T>)>,
    timers: TimerTable<LinkTimer, 5>,
    backoff: Backoff,
    rng: Pcg32,
    /// The latest `now` seen (time never goes back).
    last_now: Instant,
    /// The latest Unix time seen.
    unix: Option<u64>,
    next_pid: Pid,
    /// The serial of `next_pid` (candidates so far).
    pid_serial: u64,
}

impl<T> Link<T> {
    /// A connection that is down, with these settings, at `now`.
    pub(crate) fn new(settings: Settings, now: Instant) -> Link<T> {
        Link {
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            rng: Pcg32::seed_from_u64(settings.seed),
            settings,
            phase: Phase::Down,
            generation: 0,
            transport_open: false,
            cmds: VecDeque::new(),
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            tx_packets: VecDeque::new(),
            timers: TimerTable::default(),
            last_now: now,
            unix: None,
            next_pid: Pid::MIN,
            pid_serial: 0,
        }
    }

    // -----------------------------------------------------------------
    // Clocks

    /// Records the time of an input (time never goes back) and, when
    /// given, the Unix time; the instant to use.
    pub(crate) fn observe(&mut self, now: Instant, unix: Option<u64>) -> Instant {
        self.last_now = self.last_now.max(now);
        if let Some(u) = unix {
            self.unix = Some(u);
        }
        self.last_now
    }

    /// The latest instant seen.
    pub(crate) fn now(&self) -> Instant {
        self.last_now
    }

    /// The latest Unix time seen, if any.
    pub(crate) fn unix(&self) -> Option<u64> {
        self.unix
    }

    /// The jitter generator (for the session's own backoffs).
    pub(crate) fn rng(&mut self) -> &mut Pcg32 {
        &mut self.rng
    }

    // -----------------------------------------------------------------
    // State

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// A CONNACK accepted the current connection.
    pub(crate) fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// CONNECT was written on the current transport (input is read).
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.phase, Phase::AwaitingConnack | Phase::Up)
    }

    /// The connection counter: 1 for the first CONNECT, then 2, 3, …
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// In `Opening` with the transport the session asked for open: the
    /// time to write CONNECT.
    pub(crate) fn ready_to_connect(&self) -> bool {
        self.phase == Phase::Opening && self.transport_open
    }

    /// A transport is (being) used: a closure reported now ends it.
    pub(crate) fn holds_transport(&self) -> bool {
        match self.phase {
            Phase::Opening => self.transport_open,
            Phase::AwaitingConnack | Phase::Up => true,
            Phase::Down | Phase::Backoff => false,
        }
    }

    // -----------------------------------------------------------------
    // Opening and connecting

    /// Wants a transport: `Opening`, with the `Open` for the adapter.
    pub(crate) fn open(&mut self) {
        self.phase = Phase::Opening;
        self.timers.clear(LinkTimer::Reconnect);
        self.cmds.push_back(TransportCommand::Open);
    }

    /// `Opening`, with the `Open` held back until [`release_open`](Self::release_open)
    /// (a token that must come first).
    pub(crate) fn open_later(&mut self) {
        self.phase = Phase::Opening;
        self.timers.clear(LinkTimer::Reconnect);
    }

    /// The `Open` held back by [`open_later`](Self::open_later).
    pub(crate) fn release_open(&mut self) {
        if self.phase == Phase::Opening && !self.transport_open {
            self.cmds.push_back(TransportCommand::Open);
        }
    }

    /// The transport is open: a new connection, CONNECT written, the
    /// CONNACK deadline armed.
    pub(crate) fn connect(&mut self, now: Instant, connect: Connect) {
        self.generation = self.generation.wrapping_add(1);
        self.phase = Phase::AwaitingConnack;
        self.push(&Packet::Connect(connect), None);
        self.timers
            .set(LinkTimer::Connack, now + self.settings.connect_timeout);
    }

    // -----------------------------------------------------------------
    // Input

    /// Bytes read from the transport, kept until decoded (ignored unless
    /// the connection is live).
    pub(crate) fn receive(&mut self, data: &[u8]) {
        if self.is_live() {
            self.rx.extend_from_slice(data);
        }
    }

    /// The next complete packet received; `Ok(None)`: more bytes needed.
    pub(crate) fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        mqtt::decode(&mut self.rx, self.settings.max_packet_size)
    }

    /// Reads a CONNACK received while awaiting it: the session-present
    /// flag, or the refusal. The session then goes [`up`](Self::up) (or
    /// ends the connection).
    pub(crate) fn connack(&mut self, connack: &Connack) -> Result<bool, ConnectRefused> {
        self.timers.clear(LinkTimer::Connack);
        if connack.code().is_accepted() {
            Ok(connack.session_present())
        } else {
            Err(ConnectRefused {
                code: connack.code(),
            })
        }
    }

    /// The CONNACK accepted the connection: `Up`, keep-alive and the
    /// stable timer armed.
    pub(crate) fn up(&mut self, now: Instant) {
        self.phase = Phase::Up;
        self.arm_keep_alive();
        if let Some(stable) = self.settings.stable_after {
            self.timers.set(LinkTimer::StableConnection, now + stable);
        }
    }

    /// A PINGRESP: the connection is alive.
    pub(crate) fn pingresp(&mut self) {
        self.timers.clear(LinkTimer::PingResponse);
    }

    // -----------------------------------------------------------------
    // Output

    /// Queues a packet; sending restarts the keep-alive.
    pub(crate) fn send(&mut self, packet: &Packet) {
        self.send_tagged(packet, None);
    }

    /// Queues a packet with the session's tag; sending restarts the
    /// keep-alive.
    pub(crate) fn send_tagged(&mut self, packet: &Packet, tag: Option<T>) {
        self.push(packet, tag);
        self.arm_keep_alive();
    }

    /// Queues a PUBLISH with the session's tag (encoded in place, as
    /// [`send_tagged`](Self::send_tagged) would).
    pub(crate) fn send_publish(&mut self, publish: &Publish, tag: Option<T>) {
        let before = self.tx.len();
        publish.encode(&mut self.tx);
        self.tx_packets.push_back((self.tx.len() - before, tag));
        self.arm_keep_alive();
    }

    /// Encodes the packet after the bytes already waiting.
    fn push(&mut self, packet: &Packet, tag: Option<T>) {
        let before = self.tx.len();
        packet.encode(&mut self.tx);
        self.tx_packets.push_back((self.tx.len() - before, tag));
    }

    fn arm_keep_alive(&mut self) {
        if self.is_up() && !self.settings.keep_alive.is_zero() {
            self.timers.set(
                LinkTimer::KeepAlive,
                self.last_now + self.settings.keep_alive,
            );
        }
    }

    /// The next packet id for which `in_use` is false, if any is free.
    pub(crate) fn alloc_pid(&mut self, in_use: impl Fn(Pid) -> bool) -> Option<Pid> {
        self.alloc_pid_serial(|pid, _| in_use(pid))
            .map(|(pid, _)| pid)
    }

    /// The next packet id for which `in_use` is false, if any is free,
    /// with its serial: candidates are numbered from the link's creation,
    /// and two candidates fewer than `u16::MAX` serials apart never share
    /// an id (ids are handed out in turn, 1 to 65535).
    pub(crate) fn alloc_pid_serial(
        &mut self,
        in_use: impl Fn(Pid, u64) -> bool,
    ) -> Option<(Pid, u64)> {
        for _ in 0..u16::MAX {
            let (pid, serial) = (self.next_pid, self.pid_serial);
            self.next_pid = pid.next();
            self.pid_serial += 1;
            if !in_use(pid, serial) {
                return Some((pid, serial));
            }
        }
        None
    }

    /// The session's one output ([`Output`]): the next bytes (whole
    /// packets, up to [`TRANSMIT_BATCH`] bytes or one larger packet; their
    /// tags made into events by `sent`, queued after them), then the next
    /// transport command, then the next of the session's `events`; once
    /// nothing is pending, the earliest of the connection's timers and
    /// the session's (`earliest`).
    pub(crate) fn poll_output<E>(
        &mut self,
        events: &mut VecDeque<E>,
        earliest: Option<Instant>,
        mut sent: impl FnMut(T) -> E,
    ) -> Output<E> {
        if !self.tx.is_empty() {
            let mut len = 0;
            while let Some(&(next, _)) = self.tx_packets.front() {
                if len > 0 && len + next > TRANSMIT_BATCH {
                    break;
                }
                len += next;
                if let Some((_, Some(tag))) = self.tx_packets.pop_front() {
                    events.push_back(sent(tag));
                }
            }
            return Output::Transmit(self.tx.split_to(len).freeze());
        }
        if let Some(cmd) = self.poll_transport() {
            return Output::Transport(cmd);
        }
        if let Some(event) = events.pop_front() {
            return Output::Event(event);
        }
        keep_small_deque(events);
        Output::Timeout(match (earliest, self.timers.earliest()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The next transport command. `Close` waits until the bytes before
    /// it are taken; taking `Open` marks the transport as the adapter's.
    fn poll_transport(&mut self) -> Option<TransportCommand> {
        let cmd = *self.cmds.front()?;
        if cmd == TransportCommand::Close && !self.tx.is_empty() {
            return None;
        }
        self.cmds.pop_front();
        if cmd == TransportCommand::Open {
            self.transport_open = true;
        }
        Some(cmd)
    }

    // -----------------------------------------------------------------
    // Ending and reconnecting

    /// Tears the connection down (a no-op unless a transport is, or is
    /// being, used). `graceful` on an `Up` connection: what is queued goes
    /// out, then DISCONNECT; otherwise the queue is dropped (its tags are
    /// returned). A transport the adapter reported closed is forgotten;
    /// any other is closed (or its pending `Open` cancelled). `Down`
    /// afterwards.
    pub(crate) fn end(&mut self, reason: &DisconnectReason, graceful: bool) -> Ended<T> {
        let attempted = match self.phase {
            Phase::Opening => self.transport_open,
            Phase::AwaitingConnack | Phase::Up => true,
            Phase::Down | Phase::Backoff => false,
        };
        let mut dropped = Vec::new();
        if graceful && self.is_up() {
            self.push(&Packet::Disconnect, None);
        } else {
            self.tx.clear();
            dropped = self
                .tx_packets
                .drain(..)
                .filter_map(|(_, tag)| tag)
                .collect();
        }
        if matches!(reason, DisconnectReason::Transport(_)) {
            // The adapter told us; it has nothing left to close.
            self.transport_open = false;
        } else {
            self.close_transport();
        }
        for kind in [
            LinkTimer::Connack,
            LinkTimer::PingResponse,
            LinkTimer::KeepAlive,
            LinkTimer::StableConnection,
        ] {
            self.timers.clear(kind);
        }
        self.rx = BytesMut::new();
        self.phase = Phase::Down;
        Ended { attempted, dropped }
    }

    /// Forgets the transport: cancels an `Open` not yet handed out, or asks
    /// the adapter to close the open one.
    fn close_transport(&mut self) {
        if let Some(pos) = self.cmds.iter().position(|c| *c == TransportCommand::Open) {
            self.cmds.remove(pos);
        } else if self.transport_open {
            self.cmds.push_back(TransportCommand::Close);
        }
        self.transport_open = false;
    }

    /// Waits before the next connection: `delay`, or the next backoff
    /// delay (decorrelated jitter) when `None`. Returns the delay.
    pub(crate) fn back_off(&mut self, now: Instant, delay: Option<Duration>) -> Duration {
        let delay = delay.unwrap_or_else(|| self.backoff.next_delay(&mut self.rng));
        self.phase = Phase::Backoff;
        self.timers.set(LinkTimer::Reconnect, now + delay);
        delay
    }

    /// No more connections: `Down`, every timer cleared (after
    /// [`end`](Self::end) when a connection was live).
    pub(crate) fn stop(&mut self) {
        self.close_transport();
        self.timers = TimerTable::default();
        self.phase = Phase::Down;
    }

    // -----------------------------------------------------------------
    // Timers

    /// Handles the connection's timer `kind` if due at `now`.
    pub(crate) fn timeout(&mut self, kind: LinkTimer, now: Instant) -> Due {
        if !self.timers.take_due(kind, now) {
            return Due::Nothing;
        }
        match kind {
            LinkTimer::Connack if self.phase == Phase::AwaitingConnack => {
                Due::Dead(DisconnectReason::ConnackTimeout)
            }
            LinkTimer::PingResponse if self.is_up() => Due::Dead(DisconnectReason::PingTimeout),
            LinkTimer::KeepAlive if self.is_up() => {
                self.send(&Packet::Pingreq);
                if self.timers.get(LinkTimer::PingResponse).is_none() {
                    self.timers
                        .set(LinkTimer::PingResponse, now + self.settings.ping_timeout);
                }
                Due::Nothing
            }
            LinkTimer::StableConnection => {
                self.backoff.reset();
                Due::Nothing
            }
            LinkTimer::Reconnect if self.phase == Phase::Backoff => Due::Reconnect,
            _ => Due::Nothing,
        }
    }

    /// The deadline of one of the connection's timers.
    pub(crate) fn timer(&self, kind: LinkTimer) -> Option<Instant> {
        self.timers.get(kind)
    }

    /// Frees the storage of empty buffers beyond a small working size, so
    /// an idle connection holds little heap and steady traffic reuses its
    /// buffers.
    pub(crate) fn shrink(&mut self) {
        // Even with no capacity left, an emptied buffer may still hold
        // the storage its packets were split from: kept only if unshared.
        keep_small_bytes(&mut self.rx);
        keep_small_bytes(&mut self.tx);
        keep_small_deque(&mut self.tx_packets);
        keep_small_deque(&mut self.cmds);
    }
}
