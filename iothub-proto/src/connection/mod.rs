//! The MQTT client connection both sessions stand on (as rustls's
//! `ConnectionCommon` stands under its client and server): one layer for
//! what a device session and a provisioning session share, so each adds
//! only its own states, subscriptions and requests on top.
//!
//! | this layer owns | the session on top owns |
//! |---|---|
//! | the transport commands ([`TransportCommand`]) and whether the adapter holds a transport | when a transport is wanted, and when one is given up |
//! | CONNECT written, the CONNACK read and its deadline | what the CONNECT carries (client id, username, token, will, CleanSession) |
//! | keep-alive: PINGREQ when idle, the PINGRESP deadline | — |
//! | inbound decode (packets split anywhere, the size limit) | what each PUBLISH, PUBACK or SUBACK means |
//! | the transmit queue, and what a torn-down connection drops from it | failing what was dropped |
//! | packet ids | which ids are in use |
//! | reconnection backoff (decorrelated jitter) and its timer | whether to reconnect, and after which delay |
//! | the connection's own timers, in one [`TimerTable`](crate::time) | the session's timers |
//!
//! Its phases:
//!
//! ```text
//!   Down ──open──▶ Opening ──connect(CONNECT)──▶ AwaitingConnack ──CONNACK 0──▶ Up
//!    ▲ │             │                              │                            │
//!    │ └─backoff─▶ Backoff ──(reconnect timer)──▶ the session opens again        │
//!    └──────── end(reason): teardown of any live phase ◀─────────────────────────┘
//! ```
//!
//! The public part: what an adapter sees of any session — [`Output`] (the
//! one output, [`Driven`] the one driving contract), [`TransportCommand`],
//! and the connection-level errors: [`DisconnectReason`],
//! [`TransportClosed`], [`ProtocolError`], [`ConnectRefused`],
//! [`ConfigError`].

mod errors;
mod link;

pub(crate) mod backoff;

pub use errors::{ConfigError, ConnectRefused, DisconnectReason, ProtocolError, TransportClosed};
pub(crate) use link::{Due, Link, LinkTimer, Phase, Settings};

use core::time::Duration;

use bytes::Bytes;

use crate::time::Instant;

/// Default MQTT keep-alive of both sessions: 60 s.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// The longest keep-alive IoT Hub (and DPS) accepts: 1177 s.
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(1177);
/// Default wait for a PINGRESP after a PINGREQ: 30 s.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(30);
/// Default wait for the CONNACK after the CONNECT: 30 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The smallest `max_packet_size` a configuration may ask for: 1 KiB.
pub const MIN_MAX_PACKET_SIZE: usize = 1024;
/// Bytes one [`Output::Transmit`] carries at most: packets queued together
/// leave together (one write, as few TLS records as fit), whole, up to this
/// size; a larger packet leaves alone.
pub const TRANSMIT_BATCH: usize = 64 * 1024;

/// Bytes an emptied byte buffer keeps for the next packets (more is
/// freed), so steady traffic reuses its buffers and an idle session still
/// holds little heap.
pub(crate) const KEEP_BYTES: usize = 1024;
/// Entries an emptied queue keeps (more are freed); the smallest
/// allocation of a `Vec` or `VecDeque` of small items.
pub(crate) const KEEP_ENTRIES: usize = 4;

/// Frees an empty queue's storage if it holds more than [`KEEP_ENTRIES`].
pub(crate) fn keep_small_deque<T>(q: &mut alloc::collections::VecDeque<T>) {
    if q.is_empty() && q.capacity() > KEEP_ENTRIES {
        *q = alloc::collections::VecDeque::new();
    }
}

/// Frees an empty vector's storage if it holds more than [`KEEP_ENTRIES`].
pub(crate) fn keep_small_vec<T>(v: &mut alloc::vec::Vec<T>) {
    if v.is_empty() && v.capacity() > KEEP_ENTRIES {
        *v = alloc::vec::Vec::new();
    }
}

/// Keeps an empty byte buffer's storage only when nothing else shares it
/// (no packet split from it is still held) and it is at most
/// [`KEEP_BYTES`]; otherwise lets it go, so a large or shared allocation
/// is never pinned.
pub(crate) fn keep_small_bytes(b: &mut bytes::BytesMut) {
    if b.is_empty() && !(b.try_reclaim(1) && b.capacity() <= KEEP_BYTES) {
        *b = bytes::BytesMut::new();
    }
}

/// What a session wants done with the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportCommand {
    /// Open a new transport (TCP + TLS, or WebSocket) to the session
    /// configuration's transport host; then call the session's
    /// `handle_transport_connected`, or `handle_transport_closed` if it
    /// fails.
    Open,
    /// Close the current transport, after writing every byte already
    /// handed out. The session has already forgotten it: do not report its
    /// closure.
    Close,
}

/// The one output of a session ([`Driven::poll_output`]), str0m-style.
///
/// Call `poll_output` after every input and command, and act on what it
/// returns, until it returns [`Output::Timeout`]: that comes only when
/// nothing else is pending, so the loop settles by itself. The four arms
/// are the whole contract (the enum is not `non_exhaustive`: a driver's
/// `match` needs no catch-all).
#[derive(Debug, Clone, PartialEq)]
pub enum Output<E> {
    /// Write these bytes to the transport, in order: one or more whole
    /// packets, at most [`TRANSMIT_BATCH`] bytes unless one packet is
    /// larger.
    Transmit(Bytes),
    /// Open a new transport, or close the current one (only after its last
    /// bytes came out as [`Output::Transmit`]).
    Transport(TransportCommand),
    /// Hand this to the application.
    Event(E),
    /// Nothing else to do: wait for input, a command, or this instant
    /// (then call `handle_timeout`). `None`: no timer is set — the session
    /// has stopped, or waits for the adapter to open a transport.
    Timeout(Option<Instant>),
}

/// A session an adapter drives: the device session
/// ([`session::Session`](crate::session::Session)) and the provisioning
/// session ([`provisioning::Session`](crate::provisioning::Session)) alike.
/// One driver loop serves both:
///
/// ```text
/// loop {
///     match session.poll_output() {
///         Output::Transmit(bytes) => socket.write_all(&bytes)?,
///         Output::Transport(cmd) => open_or_close(cmd), // Open → handle_transport_connected(now(), unix())
///         Output::Event(event) => app.handle(event),
///         Output::Timeout(at) => match wait(socket, at) {
///             Read(data) => session.handle_input(now(), &data),
///             Deadline => session.handle_timeout(now(), unix()),
///             Closed(why) => session.handle_transport_closed(now(), why),
///         },
///     }
/// }
/// ```
pub trait Driven {
    /// What the session tells the application.
    type Event;

    /// The next thing to do; see [`Output`].
    #[must_use]
    fn poll_output(&mut self) -> Output<Self::Event>;

    /// The transport asked for by [`TransportCommand::Open`] is open, at
    /// monotonic `now` and wall-clock `unix_secs` (for a SAS token's
    /// expiry).
    fn handle_transport_connected(&mut self, now: Instant, unix_secs: u64);

    /// Bytes read from the transport.
    fn handle_input(&mut self, now: Instant, data: &[u8]);

    /// The instant of [`Output::Timeout`] has come (early or late is
    /// harmless).
    fn handle_timeout(&mut self, now: Instant, unix_secs: u64);

    /// The transport failed, the peer closed it, or opening it failed.
    fn handle_transport_closed(&mut self, now: Instant, reason: TransportClosed);
}

/// `impl Driven` for a session whose inherent methods of the same names
/// carry the contract (so that callers need no trait import).
macro_rules! driven {
    ($session:ty, $event:ty) => {
        impl $crate::connection::Driven for $session {
            type Event = $event;

            fn poll_output(&mut self) -> $crate::connection::Output<$event> {
                <$session>::poll_output(self)
            }

            fn handle_transport_connected(&mut self, now: $crate::time::Instant, unix_secs: u64) {
                <$session>::handle_transport_connected(self, now, unix_secs);
            }

            fn handle_input(&mut self, now: $crate::time::Instant, data: &[u8]) {
                <$session>::handle_input(self, now, data);
            }

            fn handle_timeout(&mut self, now: $crate::time::Instant, unix_secs: u64) {
                <$session>::handle_timeout(self, now, unix_secs);
            }

            fn handle_transport_closed(
                &mut self,
                now: $crate::time::Instant,
                reason: $crate::connection::TransportClosed,
            ) {
                <$session>::handle_transport_closed(self, now, reason);
            }
        }
    };
}
pub(crate) use driven;
