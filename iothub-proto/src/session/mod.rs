//! The sans-IO device session: keep-alive, subscriptions, telemetry
//! delivery, twin correlation and versions, direct methods, cloud-to-device
//! messages, SAS renewal and reconnection — everything with protocol
//! meaning, and no I/O.
//!
//! # Driving contract
//!
//! A [`Session`] is a value. The adapter (the code that owns the socket and
//! the clock) feeds it four kinds of input and takes one output:
//!
//! | input | when |
//! |---|---|
//! | [`handle_transport_connected`](Session::handle_transport_connected) | the transport asked for by [`TransportCommand::Open`] is open |
//! | [`handle_input`](Session::handle_input) | bytes were read from the transport |
//! | [`handle_timeout`](Session::handle_timeout) | the instant of [`Output::Timeout`] has come |
//! | [`handle_transport_closed`](Session::handle_transport_closed) | the transport failed or the peer closed it (or opening it failed) |
//! | [`provide_token`](Session::provide_token) / [`token_unavailable`](Session::token_unavailable) | the answer to [`Event::TokenRequested`] ([`Credential::ExternalSigner`] only) |
//!
//! **After any input or command, call [`poll_output`](Session::poll_output)
//! and act on it until it returns [`Output::Timeout`]**, then wait for the
//! next input or that instant. `Timeout` comes only when nothing else is
//! pending, so the loop settles by itself. Commands
//! ([`send_telemetry`](Session::send_telemetry),
//! [`get_twin`](Session::get_twin), …) only queue work and return a typed
//! id; their bytes come out of the next `poll_output`.
//!
//! ```text
//! loop {
//!     match session.poll_output() {
//!         Output::Transmit(bytes) => socket.write_all(&bytes)?,
//!         Output::Transport(cmd) => open_or_close(cmd), // Open → session.handle_transport_connected(now(), unix_secs())
//!         Output::Event(event) => app.handle(event),    // then session.taken(token) for a C2D message the app has
//!         Output::Timeout(at) => match wait(socket, at) {
//!             Read(data) => session.handle_input(now(), &data),
//!             Deadline => session.handle_timeout(now(), unix_secs()),
//!             Closed(why) => session.handle_transport_closed(now(), why),
//!         },
//!     }
//! }
//! ```
//!
//! Time enters as [`Instant`] (monotonic) with every input; wall-clock Unix
//! seconds only where SAS tokens need them. Randomness comes from
//! [`Config::seed`].
//!
//! # Guarantees
//!
//! - Every accepted telemetry message ends in exactly one of
//!   [`Event::MessageAcknowledged`] (QoS 1), [`Event::MessageSent`] (QoS 0)
//!   or [`Event::MessageFailed`].
//! - Every accepted twin request ends in exactly one of
//!   [`Event::TwinReceived`], [`Event::ReportedUpdated`] or
//!   [`Event::RequestFailed`].
//! - Cloud-to-device and module input messages are delivered to the
//!   application **at least once**, and acknowledged to the hub only once
//!   the application has them: the PUBACK goes out when the application
//!   reports the message taken ([`taken`](Session::taken), with the
//!   message's [`InboundMessage::ack`] token), or with
//!   [`Config::manual_ack`] when it calls [`ack`](Session::ack). Taking the
//!   event from [`poll_output`](Session::poll_output) is not enough: an
//!   adapter takes events to route them. Until the PUBACK the hub keeps the
//!   message; if the connection drops or the process dies first, the hub
//!   sends it again (so the application may see it twice).
//! - A message for a feature the application has not
//!   [`enable`](Session::enable)d (a CleanSession 0 session's kept
//!   subscription redelivers it after a restart), or whose stream went
//!   away ([`hold_inbound`](Session::hold_inbound)), is held,
//!   unacknowledged, and delivered once the feature is enabled; one the
//!   application left in a dropped stream comes back through
//!   [`return_inbound`](Session::return_inbound).
//! - A PUBLISH the session cannot read is reported
//!   ([`Event::UnexpectedPublish`], with its bytes) and not acknowledged.
//! - Every queue a peer can grow is bounded: messages waiting for the
//!   application by [`Config::max_inbound_pending`]
//!   ([`Event::InboundOverflow`] beyond it), telemetry by
//!   [`Config::queue_capacity`] and [`Config::max_in_flight`], twin requests
//!   by [`Config::max_pending_requests`], input by
//!   [`Config::max_packet_size`].
//! - The session never asks for a transport in a tight loop: reconnections
//!   follow the backoff, refused credentials the [`AuthFailurePolicy`].

mod config;
mod delivery;
mod error;
mod event;
mod inbound;
mod outbox;
mod state;
mod timer;
mod token;
mod twin;

#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

pub use crate::connection::{
    ConfigError, ConnectRefused, DisconnectReason, Driven, Output, ProtocolError, TransportClosed,
    TransportCommand,
};
pub use config::{
    AuthFailurePolicy, Config, DEFAULT_AUTH_RETRY_DELAY, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_INBOUND_PENDING, DEFAULT_MAX_PACKET_SIZE, DEFAULT_MAX_PENDING_REQUESTS,
    DEFAULT_MESSAGE_TIMEOUT, DEFAULT_PING_TIMEOUT, DEFAULT_QUEUE_CAPACITY, DEFAULT_RENEWAL_PERCENT,
    DEFAULT_REQUEST_RETRIES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SAS_LIFETIME, DEFAULT_STABLE_AFTER,
    DEFAULT_TOKEN_REQUEST_TIMEOUT, MAX_IN_FLIGHT_LIMIT, MAX_KEEP_ALIVE, MIN_MAX_PACKET_SIZE, Will,
};
pub use error::{
    CommandError, HubStatus, JsonError, MessageFailure, PropertyProblem, RequestError, StopReason,
    TokenFailure,
};
pub use event::{
    AckToken, Event, Feature, InboundMessage, Message, MessageId, MethodId, Qos, RequestToken,
    Subscription, Twin,
};
pub use state::ConnectionState;
pub use timer::TimerKind;

use crate::auth::Credential;
use crate::connection::{Due, Link, keep_small_deque, keep_small_vec};
use crate::mqtt::{LastWill, Packet, Pid};
use crate::time::Instant;
use state::{Mode, State, Trigger};
use timer::Timers;

/// The largest telemetry message IoT Hub accepts: 256 KB of topic
/// (properties included) and body.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;
/// The largest direct method response payload: 128 KB.
pub const MAX_METHOD_PAYLOAD: usize = 128 * 1024;
/// The largest reported-properties patch: 32 KB.
pub const MAX_REPORTED_SIZE: usize = 32 * 1024;

/// The subscriptions: which are wanted (for the life of the session) and
/// which the current connection has.
#[derive(Debug, Default)]
struct Subs {
    /// Bits of [`Subscription::bit`]: enabled features plus twin responses
    /// once needed.
    enabled: u8,
    /// Granted on the current connection.
    subscribed: u8,
    /// SUBSCRIBEs awaiting their SUBACK: packet id and the filters in order.
    pending: Vec<(Pid, Vec<Subscription>)>,
}

impl Subs {
    fn is_enabled(&self, s: Subscription) -> bool {
        self.enabled & s.bit() != 0
    }

    fn is_subscribed(&self, s: Subscription) -> bool {
        self.subscribed & s.bit() != 0
    }
}

/// The device session: a state machine driven by the adapter. See the
/// [module docs](self) for the driving contract.
///
/// ```
/// use iothub_proto::auth::ConnectionString;
/// use iothub_proto::session::{Config, Feature, Message, Output, Session, TransportCommand};
/// use iothub_proto::time::Instant;
///
/// let cs: ConnectionString = "HostName=contoso.azure-devices.net;DeviceId=dev1;\
///     SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
///     .parse()?;
/// let mut session = Session::new(Config::from_connection_string(&cs))?;
/// let now = Instant::from_millis(0);
///
/// // Work may be queued before any connection exists.
/// session.enable(now, Feature::Methods)?;
/// let id = session.send_telemetry(now, Message::new(&b"hello"[..]))?;
///
/// // The session wants a transport at once.
/// assert_eq!(session.poll_output(), Output::Transport(TransportCommand::Open));
/// session.handle_transport_connected(now, 1_700_000_000);
/// let Output::Transmit(connect) = session.poll_output() else { panic!("CONNECT") };
/// assert_eq!(connect[0] >> 4, 1); // packet type CONNECT
/// # let _ = id;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Session {
    config: Config,
    /// The will, built once from `config.will`.
    will: Option<LastWill>,

    /// The MQTT connection (the layer every session shares): transport,
    /// CONNECT/CONNACK, keep-alive, decode, transmit queue, packet ids,
    /// backoff. Its transmitted bytes are tagged with the QoS 0 message
    /// they carry. Its generation (1 for the first CONNECT) is the
    /// connection number method ids and ack tokens carry.
    link: Link<MessageId>,
    /// Where the session stands above the connection.
    mode: Mode,
    /// The session's own timers (the connection keeps its own).
    timers: Timers,
    /// When to renew the SAS token of the current connection.
    renew_at: Option<Instant>,
    /// The same renewal point in Unix seconds (detects host sleep).
    renew_unix: Option<u64>,
    token_expiry_reported: bool,
    /// Tokens of an external signer.
    external: token::External,

    events: VecDeque<Event>,

    subs: Subs,

    // Telemetry.
    queue: VecDeque<outbox::OutMessage>,
    /// A queued message may have a time-to-live (its expiry then counts
    /// for the message timer); cleared when the queue empties.
    ttl_queued: bool,
    /// The telemetry topic of a message without properties, once built.
    bare_topic: Option<crate::mqtt::TopicName>,
    in_flight: VecDeque<outbox::OutMessage>,
    /// Packet ids of timed-out messages, held until their PUBACK or the end
    /// of the connection.
    reserved_pids: Vec<Pid>,
    next_message_id: u64,

    // Twin.
    requests: Vec<twin::Request>,
    next_token: u64,
    next_rid: u64,
    desired: twin::Desired,

    /// Cloud-to-device and module input messages waiting for the
    /// application.
    delivery: delivery::Delivery,
}

impl Session {
    /// A session from a configuration, after checking it
    /// ([`Config::validate`]). It wants a transport at once:
    /// [`poll_output`](Self::poll_output) returns
    /// [`TransportCommand::Open`].
    pub fn new(config: Config) -> Result<Session, ConfigError> {
        config.validate()?;
        let will = match &config.will {
            Some(w) => Some(
                LastWill::new(
                    crate::topic::telemetry(&config.identity, &w.properties),
                    w.payload.clone(),
                    w.qos.to_mqtt(),
                    false,
                )
                .map_err(|_| ConfigError::WillTooLarge(w.payload.len()))?,
            ),
            None => None,
        };
        let mut session = Session {
            will,
            link: Link::new(config.link_settings(), Instant::ZERO),
            mode: Mode::Running,
            timers: Timers::default(),
            renew_at: None,
            renew_unix: None,
            token_expiry_reported: false,
            external: token::External::new(config.backoff_min, config.backoff_max),
            events: VecDeque::new(),
            subs: Subs::default(),
            queue: VecDeque::new(),
            ttl_queued: false,
            bare_topic: None,
            in_flight: VecDeque::new(),
            reserved_pids: Vec::new(),
            next_message_id: 1,
            requests: Vec::new(),
            next_token: 1,
            next_rid: 1,
            desired: twin::Desired::new(config.initial_desired_version),
            delivery: delivery::Delivery::default(),
            config,
        };
        session.enter_opening(Instant::ZERO);
        Ok(session)
    }

    /// The configuration the session was built from.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    // -----------------------------------------------------------------
    // Inputs

    /// The transport asked for by [`TransportCommand::Open`] is open: the
    /// session writes CONNECT (with a SAS token signed for
    /// `unix_secs + sas_lifetime` when the credential is a key).
    ///
    /// `unix_secs` is the wall-clock time in seconds since the Unix epoch.
    /// With a fixed token that has expired, the session reports
    /// [`Event::TokenExpired`], asks to close the transport and stops.
    /// With an external signer whose token is past its renewal point (the
    /// transport took that long), no CONNECT is written: the session asks
    /// to close the transport and for a new token
    /// ([`Event::TokenRequested`]).
    /// Ignored when no transport was asked for.
    pub fn handle_transport_connected(&mut self, now: Instant, unix_secs: u64) {
        let now = self.observe(now, Some(unix_secs));
        if self.mode != Mode::Running || !self.link.ready_to_connect() {
            return;
        }
        if self.fixed_token_expired() {
            self.report_token_expired();
            self.apply(
                now,
                Trigger::ConnectionEnded(DisconnectReason::TokenExpired),
            );
        } else if self.is_external() && self.usable_token(unix_secs).is_none() {
            // Never CONNECT with a stale token: close, ask for a new one.
            self.apply(
                now,
                Trigger::ConnectionEnded(DisconnectReason::TokenRenewal),
            );
        } else {
            self.apply(now, Trigger::TransportOpened);
        }
        self.after_input(now);
    }

    /// Bytes read from the transport. Decodes every complete packet and
    /// keeps the rest for the next call. A packet the hub must not send, a
    /// QoS 2 PUBLISH, bytes that do not decode or a packet over
    /// [`Config::max_packet_size`] end the connection
    /// ([`Event::Disconnected`] with a [`ProtocolError`], then
    /// [`TransportCommand::Close`]) and the session reconnects with backoff.
    ///
    /// Ignored unless a connection is up (after CONNECT was written).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        let now = self.observe(now, None);
        if !self.link.is_live() {
            return;
        }
        self.link.receive(data);
        let generation = self.link.generation();
        loop {
            match self.link.next_packet() {
                Ok(Some(packet)) => self.on_packet(now, packet),
                Ok(None) => break,
                Err(e) => {
                    self.apply(
                        now,
                        Trigger::ConnectionEnded(DisconnectReason::Protocol(
                            ProtocolError::Decode(e),
                        )),
                    );
                    break;
                }
            }
            if !self.link.is_live() || self.link.generation() != generation {
                break;
            }
        }
        self.after_input(now);
    }

    /// The instant of [`Output::Timeout`] has come (calling
    /// it early or late is harmless: only due timers fire). `unix_secs` is
    /// the wall-clock time: a jump past the SAS renewal point (the host
    /// slept) renews the token at once, and a fixed token past its expiry is
    /// reported.
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64) {
        let now = self.observe(now, Some(unix_secs));
        for kind in TimerKind::ALL {
            match kind.link_timer() {
                Some(link_timer) => match self.link.timeout(link_timer, now) {
                    Due::Nothing => {}
                    Due::Dead(reason) => self.apply(now, Trigger::ConnectionEnded(reason)),
                    Due::Reconnect => self.apply(now, Trigger::ReconnectDue),
                },
                None => {
                    if self.timers.take_due(kind, now) {
                        self.on_timer(now, kind);
                    }
                }
            }
        }
        if self.current() == State::Connected && self.renew_unix.is_some_and(|r| unix_secs >= r) {
            self.renewal_due(now);
        }
        if self.fixed_token_expired() {
            self.report_token_expired();
        }
        self.after_input(now);
    }

    /// The transport failed, the peer closed it, or opening it failed.
    /// The session reports [`Event::Disconnected`] and reconnects with
    /// backoff (or stops, see [`ConnectionState`]).
    ///
    /// Do not call it for a transport the session told you to close
    /// ([`TransportCommand::Close`]): that one is already forgotten, and
    /// the report would be taken for the next transport.
    pub fn handle_transport_closed(&mut self, now: Instant, reason: TransportClosed) {
        let now = self.observe(now, None);
        if self.link.holds_transport() {
            self.apply(
                now,
                Trigger::ConnectionEnded(DisconnectReason::Transport(reason)),
            );
        }
        self.after_input(now);
    }

    // -----------------------------------------------------------------
    // Output

    /// The next thing to do — write bytes, open or close the transport,
    /// hand an event to the application — or, once nothing is pending,
    /// when to call [`handle_timeout`](Self::handle_timeout)
    /// ([`Output::Timeout`]). Call it after every input and command until
    /// it returns `Timeout`: the loop settles by itself, since taking an
    /// output never queues another one of an earlier kind.
    ///
    /// - [`Output::Transmit`]: bytes for the transport, in order. A QoS 0
    ///   message is reported sent ([`Event::MessageSent`]) once its bytes
    ///   are handed out here.
    /// - [`Output::Transport`]: `Open` a new transport, or `Close` the
    ///   current one (only after its last bytes came out).
    /// - [`Output::Event`]: for the application. Taking an event queues
    ///   nothing: a cloud-to-device or module input message is
    ///   acknowledged when the application reports it taken
    ///   ([`taken`](Self::taken)).
    /// - [`Output::Timeout`]: the earliest timer; `None` when none is set
    ///   (stopped, or waiting for the adapter to open a transport).
    #[must_use]
    pub fn poll_output(&mut self) -> Output<Event> {
        self.link
            .poll_output(&mut self.events, self.timers.earliest(), |id| {
                Event::MessageSent { id }
            })
    }

    // -----------------------------------------------------------------
    // Commands

    /// Accepts a telemetry message and returns its id; the outcome comes as
    /// [`Event::MessageAcknowledged`] / [`Event::MessageSent`] /
    /// [`Event::MessageFailed`]. Sent at once if connected and the in-flight
    /// window has room, else queued (up to [`Config::queue_capacity`]).
    ///
    /// Refused: over [`MAX_MESSAGE_SIZE`] (topic with properties plus
    /// body), properties breaking [`PropertyProblem`] rules, a full queue,
    /// or a session that is stopping.
    pub fn send_telemetry(
        &mut self,
        now: Instant,
        msg: Message,
    ) -> Result<MessageId, CommandError> {
        let now = self.observe(now, None);
        let result = self.accept_telemetry(now, msg);
        self.after_input(now);
        result
    }

    /// Asks for the full twin; the answer comes as [`Event::TwinReceived`]
    /// or [`Event::RequestFailed`]. Subscribes to twin responses first if
    /// needed; waits for a connection if there is none.
    pub fn get_twin(&mut self, now: Instant) -> Result<RequestToken, CommandError> {
        let now = self.observe(now, None);
        let result = self.accept_request(now, twin::RequestKind::Get);
        self.after_input(now);
        result
    }

    /// Sends a reported-properties patch (JSON object text, at most
    /// [`MAX_REPORTED_SIZE`]); the answer comes as
    /// [`Event::ReportedUpdated`] (with the new reported `$version`) or
    /// [`Event::RequestFailed`].
    pub fn update_reported(
        &mut self,
        now: Instant,
        json: Bytes,
    ) -> Result<RequestToken, CommandError> {
        let now = self.observe(now, None);
        let result = twin::check_reported(&json)
            .and_then(|()| self.accept_request(now, twin::RequestKind::Patch(json)));
        self.after_input(now);
        result
    }

    /// Answers a direct method call with a status and a payload (at most
    /// [`MAX_METHOD_PAYLOAD`], JSON or empty) on
    /// `$iothub/methods/res/{status}/?$rid={rid}`.
    ///
    /// [`CommandError::MethodResponseUndeliverable`] if the connection the
    /// request arrived on is gone: the hub accepts answers only there.
    pub fn respond_to_method(
        &mut self,
        now: Instant,
        id: MethodId,
        status: i32,
        payload: Bytes,
    ) -> Result<(), CommandError> {
        let now = self.observe(now, None);
        let result = self.send_method_response(id, status, payload);
        self.after_input(now);
        result
    }

    /// Enables a feature: its subscription is made now if connected, and
    /// after every reconnection, and its messages are delivered as events
    /// (for [`Feature::C2d`] and [`Feature::ModuleInputs`], the held ones
    /// first: see [`taken`](Self::taken)). Enabling twice is harmless.
    /// [`Feature::DesiredProperties`] also reads the full twin after every
    /// connection ([`Event::DesiredState`]).
    ///
    /// [`CommandError::FeatureNotAvailable`] for [`Feature::C2d`] on a
    /// module identity and [`Feature::ModuleInputs`] on a device identity.
    pub fn enable(&mut self, now: Instant, feature: Feature) -> Result<(), CommandError> {
        let now = self.observe(now, None);
        let result = self.enable_feature(now, feature);
        self.after_input(now);
        result
    }

    /// The application has the cloud-to-device or module input message
    /// of this [`InboundMessage::ack`] token (it took it from its stream,
    /// or handled its event). Unless [`Config::manual_ack`], that
    /// acknowledges it: its PUBACK comes out of the next `poll_output`.
    ///
    /// Nothing happens for a message of a connection that is gone (the hub
    /// sends it again), one already acknowledged, or in manual-ack mode
    /// (call [`ack`](Self::ack)).
    pub fn taken(&mut self, token: AckToken) {
        self.message_taken(token);
        let now = self.link.now();
        self.after_input(now);
    }

    /// Acknowledges a message from the hub: in manual-ack mode a
    /// cloud-to-device or module input message, in any mode a message on a
    /// topic the session cannot read ([`Event::UnexpectedPublish`]). Its
    /// PUBACK comes out of the next `poll_output`.
    ///
    /// [`CommandError::AckUndeliverable`] if the message arrived on a
    /// connection that is gone (the hub redelivers it) or was already
    /// acknowledged.
    pub fn ack(&mut self, token: AckToken) -> Result<(), CommandError> {
        let result = self.ack_inbound(token);
        let now = self.link.now();
        self.after_input(now);
        result
    }

    /// The application's stream of cloud-to-device ([`Feature::C2d`]) or
    /// module input ([`Feature::ModuleInputs`]) messages is gone: from now
    /// on the session holds that feature's messages, unacknowledged, until
    /// the feature is [`enable`](Self::enable)d again (the subscription
    /// stays). Other features are ignored.
    pub fn hold_inbound(&mut self, feature: Feature) {
        if matches!(feature, Feature::C2d | Feature::ModuleInputs) {
            self.stop_delivery(feature.into());
        }
    }

    /// Gives back a [`Event::C2dMessage`] or [`Event::InputMessage`] the
    /// application did not take (it was left in a stream that was
    /// dropped): it goes out again as an event while its feature is
    /// delivered, else it is held, unacknowledged, until the feature is
    /// [`enable`](Self::enable)d again. A QoS 1 message of a connection
    /// that has ended is dropped instead (the hub sends it again); other
    /// events are ignored.
    pub fn return_inbound(&mut self, event: Event) {
        self.message_returned(event);
        let now = self.link.now();
        self.after_input(now);
    }

    /// Graceful shutdown: accepts no new work from now on; while connected,
    /// lets queued and in-flight telemetry and pending twin requests finish
    /// for up to `timeout`, then sends DISCONNECT and asks to close the
    /// transport. What is left is reported failed, then
    /// [`Event::Stopped`]. No reconnection follows. When not connected, the
    /// session stops at once.
    pub fn disconnect(&mut self, now: Instant, timeout: Duration) {
        let now = self.observe(now, None);
        if self.current() == State::Connected {
            self.apply(now, Trigger::DisconnectRequested);
            self.timers.set(TimerKind::Drain, now + timeout);
        } else {
            self.apply(now, Trigger::DisconnectRequested);
        }
        self.after_input(now);
    }

    // -----------------------------------------------------------------
    // Observers

    /// The connection state.
    #[must_use]
    pub fn state(&self) -> ConnectionState {
        self.current().public()
    }

    /// Why the session stopped, once it has.
    #[must_use]
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.mode {
            Mode::Stopped(r) => Some(r),
            _ => None,
        }
    }

    /// The current connection number (0 before the first CONNECT, then 1,
    /// 2, …); see [`MethodId::connection`].
    #[must_use]
    pub fn connection(&self) -> u64 {
        self.link.generation()
    }

    /// QoS 1 telemetry messages sent and awaiting their PUBACK.
    #[must_use]
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Telemetry messages accepted and not yet sent.
    #[must_use]
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Whether [`send_telemetry`](Self::send_telemetry) would refuse a QoS 1
    /// message with [`CommandError::QueueFull`] now: the queue is at
    /// [`Config::queue_capacity`] and the message could not go out at once.
    /// Adapters use it for backpressure (stop taking messages from the
    /// application until an acknowledgment makes room). `false` while the
    /// session is stopping: it refuses with `SessionClosed` instead.
    #[must_use]
    pub fn telemetry_queue_full(&self) -> bool {
        let sends_now = self.link.is_up()
            && self.queue.is_empty()
            && self.in_flight.len() < self.config.max_in_flight;
        self.accepting().is_ok() && !sends_now && self.queue.len() >= self.config.queue_capacity
    }

    /// Twin requests accepted and not yet answered (the session's own
    /// desired-properties reads excluded).
    #[must_use]
    pub fn pending_requests_len(&self) -> usize {
        self.requests.iter().filter(|r| !r.is_resync()).count()
    }

    /// The last desired-properties `$version` applied (reported by
    /// [`Event::DesiredState`] or [`Event::DesiredPatch`]).
    #[must_use]
    pub fn desired_version(&self) -> Option<u64> {
        self.desired.version
    }

    /// Whether a feature is enabled.
    #[must_use]
    pub fn is_enabled(&self, feature: Feature) -> bool {
        self.subs.is_enabled(feature.into())
    }

    /// The deadline of one timer, if set.
    #[must_use]
    pub fn timer(&self, kind: TimerKind) -> Option<Instant> {
        match kind.link_timer() {
            Some(t) => self.link.timer(t),
            None => self.timers.get(kind),
        }
    }

    // -----------------------------------------------------------------
    // Internals shared by the submodules

    /// Records the time of an input; time never goes back.
    fn observe(&mut self, now: Instant, unix: Option<u64>) -> Instant {
        self.link.observe(now, unix)
    }

    /// Work that follows every input and command.
    fn after_input(&mut self, now: Instant) {
        self.check_drain(now);
        self.shrink_idle();
    }

    /// Frees the storage of buffers that are empty beyond a small working
    /// size (kept so steady traffic does not allocate per message), so an
    /// idle session holds little heap.
    fn shrink_idle(&mut self) {
        self.link.shrink();
        keep_small_deque(&mut self.events);
        keep_small_deque(&mut self.queue);
        keep_small_deque(&mut self.in_flight);
        keep_small_vec(&mut self.requests);
        keep_small_vec(&mut self.subs.pending);
        keep_small_vec(&mut self.reserved_pids);
        self.delivery.shrink();
        self.desired.shrink();
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Queues a packet for `poll_output`; sending restarts the
    /// keep-alive.
    fn send_packet(&mut self, packet: &Packet) {
        self.link.send(packet);
    }

    /// Whether the session accepts new work.
    fn accepting(&self) -> Result<(), CommandError> {
        match self.mode {
            Mode::Draining | Mode::Stopped(_) => Err(CommandError::SessionClosed),
            Mode::Running => Ok(()),
        }
    }

    /// The credential is a fixed token and the last Unix time seen is past
    /// its expiry.
    fn fixed_token_expired(&self) -> bool {
        match (&self.config.credential, self.link.unix()) {
            (Credential::SharedAccessSignature(token), Some(unix)) => token.is_expired_at(unix),
            _ => false,
        }
    }

    fn report_token_expired(&mut self) {
        if self.token_expiry_reported {
            return;
        }
        if let Credential::SharedAccessSignature(token) = &self.config.credential {
            let expiry_unix_secs = token.expiry_unix_secs();
            self.token_expiry_reported = true;
            self.emit(Event::TokenExpired { expiry_unix_secs });
        }
    }

    /// One of the session's own timers fired (the connection handles its
    /// own: CONNACK and PINGRESP deadlines, keep-alive, the stable
    /// connection, the reconnection delay).
    fn on_timer(&mut self, now: Instant, kind: TimerKind) {
        match kind {
            TimerKind::Renewal => {
                if self.current() == State::Connected {
                    self.renewal_due(now);
                }
            }
            TimerKind::TokenExpiry => self.report_token_expired(),
            TimerKind::TokenRequest => self.on_token_timer(now),
            TimerKind::Drain => self.apply(now, Trigger::DrainFinished),
            TimerKind::Message => self.expire_messages(now),
            TimerKind::Request => self.expire_requests(now),
            TimerKind::Connack
            | TimerKind::PingResponse
            | TimerKind::KeepAlive
            | TimerKind::StableConnection
            | TimerKind::Reconnect => {}
        }
    }

    /// The token of the connection is due for renewal: reconnect with a
    /// fresh one (key), or ask for one first (external signer).
    fn renewal_due(&mut self, now: Instant) {
        if self.is_external() {
            self.external_renewal_due(now);
        } else {
            self.apply(
                now,
                Trigger::ConnectionEnded(DisconnectReason::TokenRenewal),
            );
        }
    }

    /// Finishes a graceful disconnect once nothing is left.
    fn check_drain(&mut self, now: Instant) {
        if self.current() == State::Draining
            && self.in_flight.is_empty()
            && self.queue.is_empty()
            && self.pending_requests_len() == 0
        {
            self.apply(now, Trigger::DrainFinished);
        }
    }

    /// The next free packet id: not used by an in-flight message, a
    /// reserved (timed-out) one, or a SUBSCRIBE awaiting its SUBACK.
    fn alloc_pid(&mut self) -> Option<Pid> {
        self.alloc_pid_serial().map(|(pid, _)| pid)
    }

    /// [`alloc_pid`](Self::alloc_pid) with the id's serial. O(1) against
    /// the in-flight window in the common case: the window holds ids in
    /// the order of their serials (sent in turn; re-sent in turn on a new
    /// connection, with their old ids or new ones), so while the oldest
    /// is fewer than 65535 serials behind the candidate, none can share
    /// its id; only then is the window searched.
    fn alloc_pid_serial(&mut self) -> Option<(Pid, u64)> {
        let (in_flight, reserved, pending) =
            (&self.in_flight, &self.reserved_pids, &self.subs.pending);
        let oldest = in_flight.front().and_then(|m| m.pid.map(|_| m.pid_serial));
        self.link.alloc_pid_serial(|pid, serial| {
            oldest.is_some_and(|o| serial - o >= u64::from(u16::MAX))
                && in_flight.iter().any(|m| m.pid == Some(pid))
                || reserved.contains(&pid)
                || pending.iter().any(|(p, _)| *p == pid)
        })
    }
}

crate::connection::driven!(Session, Event);
