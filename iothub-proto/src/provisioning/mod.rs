//! The sans-IO provisioning session: registers a device with the Azure IoT
//! Hub Device Provisioning Service (DPS) over MQTT and reports the hub and
//! device id it was assigned — with no I/O.
//!
//! # Driving contract
//!
//! The same as the device session's ([`crate::session`]): four inputs,
//! one output ([`poll_output`](Session::poll_output)), time as an
//! argument — the same [`Driven`] loop drives both.
//!
//! | input | when |
//! |---|---|
//! | [`handle_transport_connected`](Session::handle_transport_connected) | the transport asked for by [`TransportCommand::Open`] is open (to [`Config::transport_host`]) |
//! | [`handle_input`](Session::handle_input) | bytes were read from the transport |
//! | [`handle_timeout`](Session::handle_timeout) | the instant of [`Output::Timeout`] has come |
//! | [`handle_transport_closed`](Session::handle_transport_closed) | the transport failed, the peer closed it, or opening it failed |
//!
//! **After any input or command, call `poll_output` and act on it until it
//! returns [`Output::Timeout`], then wait for the next input or that
//! instant.** The session ends with exactly one [`Event::Assigned`] or
//! [`Event::Failed`]; after it, the timeout is `None` and
//! [`outcome`](Session::outcome) holds the result.
//!
//! ```text
//! loop {
//!     match dps.poll_output() {
//!         Output::Transmit(bytes) => socket.write_all(&bytes)?,
//!         Output::Transport(cmd) => open_or_close(cmd), // Open → dps.handle_transport_connected(now(), unix())
//!         Output::Event(Event::Assigned(r)) => return Ok(r),
//!         Output::Event(_) => {}
//!         Output::Timeout(at) => match wait(socket, at) {
//!             Read(data) => dps.handle_input(now(), &data),
//!             Deadline => dps.handle_timeout(now(), unix()),
//!             Closed(why) => dps.handle_transport_closed(now(), why),
//!         },
//!     }
//! }
//! ```
//!
//! # The protocol
//!
//! 1. CONNECT with client id = registration id, username
//!    `{idScope}/registrations/{registrationId}/api-version=2021-06-01`
//!    ([`Config::username`]), CleanSession 1, and a SAS token for
//!    `{idScope}/registrations/{registrationId}` with `skn=registration`
//!    (or no password for X.509).
//! 2. SUBSCRIBE `$dps/registrations/res/#` (QoS 1).
//! 3. PUBLISH `$dps/registrations/PUT/iotdps-register/?$rid={rid}` with
//!    `{"registrationId":"…","payload":…}` ([`Config::payload`]).
//! 4. DPS answers `202` with `{"operationId":"…","status":"assigning"}` and
//!    `retry-after`; the session waits that long ([`Config::default_retry_after`]
//!    when absent, at least [`MIN_RETRY_AFTER`]) and PUBLISHes
//!    `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`,
//!    until the status is no longer `assigning`.
//! 5. `assigned` gives [`Event::Assigned`] with a [`Registration`];
//!    `failed` / `disabled` gives [`Event::Failed`]. The session sends
//!    DISCONNECT and asks to close the transport.
//!
//! 429 and 5xx answers are retried after `retry-after`, up to
//! [`Config::max_throttle_retries`]; other error statuses end the
//! registration. A transport that fails (or a request that goes
//! unanswered for [`Config::response_timeout`]) is replaced after a
//! backoff, up to [`Config::max_transport_retries`]; after a reconnection
//! the session polls the known operation instead of registering again.
//! CONNACK refusals other than 3 (server unavailable) end the registration
//! at once: DPS does not change its mind about a key. Everything is bounded
//! by [`Config::timeout`].
//!
//! # Provisioning again
//!
//! Once provisioned, a device runs a device session for the assigned hub.
//! [`ReprovisionWatch`] reads that session's events and says when to
//! provision again ([`ReprovisionPolicy`]): when the hub refuses the
//! credentials (CONNACK 4 or 5: the device was deleted, disabled or moved)
//! or after a number of failed connection attempts in a row.
//!
//! ```
//! use iothub_proto::auth::{IdScope, ProvisioningAttestation, RegistrationId, SharedAccessKey};
//! use iothub_proto::provisioning::{Config, Output, Session, TransportCommand};
//! use iothub_proto::time::Instant;
//!
//! let key = SharedAccessKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let config = Config::new(
//!     IdScope::new("0ne00000A0A")?,
//!     RegistrationId::new("my-device")?,
//!     ProvisioningAttestation::SymmetricKey(key),
//! );
//! let now = Instant::from_millis(0);
//! let mut dps = Session::new(config, now)?;
//! assert_eq!(dps.poll_output(), Output::Transport(TransportCommand::Open));
//! dps.handle_transport_connected(now, 1_700_000_000);
//! let Output::Transmit(connect) = dps.poll_output() else { panic!("CONNECT") };
//! assert_eq!(connect[0] >> 4, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod event;
mod reprovision;
mod response;
mod state;
mod timer;

#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};

use bytes::Bytes;

pub use config::{
    Config, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_PACKET_SIZE, DEFAULT_MAX_THROTTLE_RETRIES, DEFAULT_MAX_TRANSPORT_RETRIES,
    DEFAULT_PING_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_RETRY_AFTER, DEFAULT_SAS_LIFETIME,
    DEFAULT_TIMEOUT, MAX_KEEP_ALIVE, MIN_RETRY_AFTER,
};
pub use error::{
    ConfigError, ConnectRefused, DisconnectReason, ProtocolError, ProvisioningError,
    RegistrationFailure, ServiceFailure, TransportClosed,
};
pub use event::{Event, Registration};
pub use reprovision::{
    DEFAULT_REPROVISION_AFTER_FAILED_CONNECTS, ReprovisionPolicy, ReprovisionReason,
    ReprovisionWatch,
};
pub use response::{
    OperationStatus, RegisterRequest, RegistrationState, RegistrationStatus, Response,
    ResponseError, ServiceError, Substatus, parse_response,
};
pub use state::ProvisioningState;
pub use timer::TimerKind;

pub use crate::connection::{Driven, Output, TransportCommand};

use crate::auth::{DeviceId, HostName};
use crate::connection::{Due, Link, Phase};
use crate::mqtt::{Packet, Pid, Publish, QosPid};
use crate::time::Instant;
use crate::topic::{self, HubTopic, RequestId, TopicError};
use state::{Step, Trigger};
use timer::Timers;

/// The provisioning session: a state machine driven by the adapter. See
/// the [module docs](self) for the driving contract and the protocol.
#[derive(Debug)]
pub struct Session {
    config: Config,
    /// The MQTT connection (the layer both sessions share): transport,
    /// CONNECT/CONNACK, keep-alive, decode, transmit queue, packet ids,
    /// backoff.
    link: Link<core::convert::Infallible>,
    /// Where the registration stands while connected.
    step: Step,
    /// The session's own timers (the connection keeps its own).
    timers: Timers,
    events: VecDeque<Event>,
    /// The SUBSCRIBE awaiting its SUBACK.
    subscribe_pid: Option<Pid>,
    next_rid: u64,
    /// The request awaiting its answer.
    pending: Option<RequestId>,
    /// The operation DPS named in its first answer: polled from then on.
    operation_id: Option<String>,
    transport_failures: u32,
    throttle_retries: u32,
    outcome: Option<Result<Registration, ProvisioningError>>,
}

impl Session {
    /// A session from a configuration, after checking it
    /// ([`Config::validate`]), started at `now`: the overall
    /// [`Config::timeout`] runs from here. It wants a transport at once.
    pub fn new(config: Config, now: Instant) -> Result<Session, ConfigError> {
        config.validate()?;
        let mut timers = Timers::default();
        timers.set(TimerKind::Deadline, now + config.timeout);
        let mut link = Link::new(config.link_settings(), now);
        link.open();
        Ok(Session {
            config,
            link,
            step: Step::Subscribing,
            timers,
            events: VecDeque::new(),
            subscribe_pid: None,
            next_rid: 1,
            pending: None,
            operation_id: None,
            transport_failures: 0,
            throttle_retries: 0,
            outcome: None,
        })
    }

    /// The configuration the session runs with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    // -----------------------------------------------------------------
    // Inputs

    /// The transport asked for by [`TransportCommand::Open`] is open: the
    /// session writes CONNECT (with a SAS token signed for
    /// `unix_secs + sas_lifetime` when the attestation is a key). A fixed
    /// token that has expired ends the registration
    /// ([`ProvisioningError::TokenExpired`]). Ignored when no transport was
    /// asked for.
    pub fn handle_transport_connected(&mut self, now: Instant, unix_secs: u64) {
        let now = self.observe(now, Some(unix_secs));
        if self.outcome.is_some() || !self.link.ready_to_connect() {
            return;
        }
        if self.fixed_token_expired() {
            self.apply(now, Trigger::Finish(Err(ProvisioningError::TokenExpired)));
        } else {
            self.apply(now, Trigger::TransportOpened);
        }
    }

    /// Bytes read from the transport. Decodes every complete packet and
    /// keeps the rest. Bytes that do not decode, a packet over
    /// [`Config::max_packet_size`], a QoS 2 PUBLISH or a packet DPS must
    /// not send end the connection ([`ProtocolError`]) and the session
    /// reconnects with backoff. Ignored unless a connection is up.
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
                    self.protocol_error(now, ProtocolError::Decode(e));
                    break;
                }
            }
            if !self.link.is_live() || self.link.generation() != generation {
                break;
            }
        }
        self.link.shrink();
    }

    /// The instant of [`Output::Timeout`] has come
    /// (calling it early or late is harmless: only due timers fire).
    /// `unix_secs` is the wall-clock time, for the SAS expiry of the next
    /// CONNECT.
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
        self.link.shrink();
    }

    /// The transport failed, the peer closed it, or opening it failed:
    /// [`Event::Disconnected`], then a reconnection after backoff (or the
    /// end, once the retries are used up). Do not call it for a transport
    /// the session told you to close.
    pub fn handle_transport_closed(&mut self, now: Instant, reason: TransportClosed) {
        let now = self.observe(now, None);
        if self.outcome.is_none() && self.link.holds_transport() {
            self.apply(
                now,
                Trigger::ConnectionEnded(DisconnectReason::Transport(reason)),
            );
        }
    }

    /// Gives up: the registration ends with
    /// [`ProvisioningError::Cancelled`] (DISCONNECT is sent if connected).
    /// No effect once finished.
    pub fn cancel(&mut self, now: Instant) {
        let now = self.observe(now, None);
        self.apply(now, Trigger::Finish(Err(ProvisioningError::Cancelled)));
    }

    // -----------------------------------------------------------------
    // Output

    /// The next thing to do — write bytes, open or close the transport,
    /// hand an event to the application — or, once nothing is pending,
    /// when to call [`handle_timeout`](Self::handle_timeout)
    /// ([`Output::Timeout`]). Call it after every input and command until
    /// it returns `Timeout`. `Close` comes only after the last bytes of
    /// its connection. `Timeout(None)` only once finished: until then the
    /// overall deadline ([`TimerKind::Deadline`]) is always set.
    #[must_use]
    pub fn poll_output(&mut self) -> Output<Event> {
        self.link
            .poll_output(&mut self.events, self.timers.earliest(), |tag| match tag {})
    }

    // -----------------------------------------------------------------
    // Observers

    /// The state.
    #[must_use]
    pub fn state(&self) -> ProvisioningState {
        self.current()
    }

    /// The result, once finished.
    #[must_use]
    pub fn outcome(&self) -> Option<&Result<Registration, ProvisioningError>> {
        self.outcome.as_ref()
    }

    /// The operation id DPS named, once it has.
    #[must_use]
    pub fn operation_id(&self) -> Option<&str> {
        self.operation_id.as_deref()
    }

    /// The current connection number (0 before the first CONNECT).
    #[must_use]
    pub fn connection(&self) -> u64 {
        self.link.generation()
    }

    /// Transports replaced so far (of [`Config::max_transport_retries`]).
    #[must_use]
    pub fn transport_retries(&self) -> u32 {
        self.transport_failures
    }

    /// Requests retried after 429 / 5xx so far (of
    /// [`Config::max_throttle_retries`]).
    #[must_use]
    pub fn throttle_retries(&self) -> u32 {
        self.throttle_retries
    }

    /// The deadline of one timer of the table, if set.
    #[must_use]
    pub fn timer(&self, kind: TimerKind) -> Option<Instant> {
        match kind.link_timer() {
            Some(t) => self.link.timer(t),
            None => self.timers.get(kind),
        }
    }

    // -----------------------------------------------------------------
    // Internals

    fn observe(&mut self, now: Instant, unix: Option<u64>) -> Instant {
        self.link.observe(now, unix)
    }

    /// The next packet id (none is ever held for long: one SUBSCRIBE or
    /// one request at a time).
    fn alloc_pid(&mut self) -> Pid {
        let subscribe = self.subscribe_pid;
        self.link
            .alloc_pid(|pid| Some(pid) == subscribe)
            .unwrap_or(Pid::MIN)
    }

    fn protocol_error(&mut self, now: Instant, e: ProtocolError) {
        self.apply(now, Trigger::ConnectionEnded(DisconnectReason::Protocol(e)));
    }

    /// Sends the next request: the register request until DPS has named
    /// an operation, then the poll. `None` if it cannot be built.
    fn send_request(&mut self) -> Option<()> {
        let rid = RequestId::from(self.next_rid);
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        let (topic, body) = match &self.operation_id {
            Some(op) => (topic::dps_poll(&rid, op), Bytes::new()),
            None => {
                let request = RegisterRequest::new(
                    self.config.registration_id.as_str(),
                    self.config.payload.clone(),
                );
                (topic::dps_register(&rid), Bytes::from(request.to_vec()))
            }
        };
        let pid = self.alloc_pid();
        let publish = Publish::new(topic, QosPid::AtLeastOnce(pid), body).ok()?;
        self.link.send(&Packet::Publish(publish));
        self.pending = Some(rid);
        Some(())
    }

    /// One of the session's own timers fired (the connection handles its
    /// own: the CONNACK and PINGRESP deadlines, keep-alive, the
    /// reconnection delay).
    fn on_timer(&mut self, now: Instant, kind: TimerKind) {
        use ProvisioningState as S;
        let ended = |r| Trigger::ConnectionEnded(r);
        match kind {
            TimerKind::Deadline => {
                self.apply(now, Trigger::Finish(Err(ProvisioningError::Timeout)));
            }
            TimerKind::Suback if self.current() == S::Subscribing => {
                self.apply(now, ended(DisconnectReason::SubackTimeout));
            }
            TimerKind::Response if self.current() == S::AwaitingResponse => {
                self.apply(now, ended(DisconnectReason::ResponseTimeout));
            }
            TimerKind::Retry => self.apply(now, Trigger::RetryDue),
            _ => {}
        }
    }

    /// One decoded packet from DPS.
    fn on_packet(&mut self, now: Instant, packet: Packet) {
        if self.link.phase() == Phase::AwaitingConnack {
            match packet {
                Packet::Connack(c) => match self.link.connack(&c) {
                    Ok(_) => self.apply(now, Trigger::ConnackAccepted),
                    Err(refused) => self.apply(
                        now,
                        Trigger::ConnectionEnded(DisconnectReason::Refused(refused)),
                    ),
                },
                other => {
                    self.protocol_error(now, ProtocolError::UnexpectedPacket(other.packet_type()));
                }
            }
            return;
        }
        match packet {
            Packet::Publish(p) => self.on_publish(now, p),
            // The PUBACK of a request: the answer is what counts.
            Packet::Puback(_) => {}
            Packet::Suback(s) => {
                if self.current() != ProvisioningState::Subscribing
                    || self.subscribe_pid != Some(s.pid())
                {
                    return; // Not the SUBACK we wait for: ignored.
                }
                self.subscribe_pid = None;
                let granted = !s.return_codes().is_empty()
                    && s.return_codes()
                        .iter()
                        .all(|c| *c != crate::mqtt::SubscribeReturnCode::Failure);
                if granted {
                    self.apply(now, Trigger::SubscribeGranted);
                } else {
                    self.apply(
                        now,
                        Trigger::Finish(Err(ProvisioningError::SubscriptionRefused)),
                    );
                }
            }
            Packet::Pingresp => self.link.pingresp(),
            other @ (Packet::Connect(_)
            | Packet::Connack(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::Unsuback(_)
            | Packet::Pingreq
            | Packet::Disconnect) => {
                self.protocol_error(now, ProtocolError::UnexpectedPacket(other.packet_type()));
            }
        }
    }

    fn on_publish(&mut self, now: Instant, publish: Publish) {
        match publish.qospid() {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(pid) => self.link.send(&Packet::Puback(pid)),
            QosPid::ExactlyOnce(_) => {
                self.protocol_error(now, ProtocolError::Qos2Publish);
                return;
            }
        }
        let (topic_name, payload) = publish.into_parts();
        match topic::parse(topic_name.as_str()) {
            Ok(HubTopic::DpsResponse {
                status,
                request_id,
                retry_after,
            }) => {
                let ours = self.current() == ProvisioningState::AwaitingResponse
                    && self.pending.as_ref().is_some_and(|r| r == request_id);
                // Otherwise the answer to an earlier request: ignored.
                if ours {
                    self.on_response(now, status, retry_after, &payload);
                }
            }
            Ok(_) => self.events.push_back(Event::UnexpectedPublish {
                topic: topic_name.as_str().to_string(),
                error: TopicError::NoMatch,
            }),
            Err(error) => self.events.push_back(Event::UnexpectedPublish {
                topic: topic_name.as_str().to_string(),
                error,
            }),
        }
    }

    /// The wait an answer asks for: `retry-after` seconds, or the default,
    /// never less than [`MIN_RETRY_AFTER`].
    fn retry_delay(&self, retry_after: Option<u32>) -> core::time::Duration {
        retry_after
            .map(|s| core::time::Duration::from_secs(u64::from(s)))
            .unwrap_or(self.config.default_retry_after)
            .max(MIN_RETRY_AFTER)
    }

    /// The answer to the pending request.
    fn on_response(&mut self, now: Instant, status: u16, retry_after: Option<u32>, body: &[u8]) {
        self.pending = None;
        self.timers.clear(TimerKind::Response);
        let delay = self.retry_delay(retry_after);
        let finish = |r| Trigger::Finish(r);
        let trigger = match parse_response(status, body) {
            Err(e) => finish(Err(ProvisioningError::MalformedResponse(e))),
            Ok(Response::Operation(op)) => match op.status {
                RegistrationStatus::Unassigned | RegistrationStatus::Assigning => {
                    self.events.push_back(Event::Assigning {
                        operation_id: op.operation_id.clone(),
                        retry_after: delay,
                    });
                    self.operation_id = Some(op.operation_id);
                    Trigger::Wait(delay)
                }
                RegistrationStatus::Assigned => finish(
                    registration(op, &self.config).map_err(ProvisioningError::MalformedResponse),
                ),
                status @ (RegistrationStatus::Failed | RegistrationStatus::Disabled) => {
                    let state = op.registration_state.unwrap_or_default();
                    finish(Err(ProvisioningError::Registration(RegistrationFailure {
                        status,
                        operation_id: op.operation_id,
                        error_code: state.error_code,
                        error_message: state.error_message,
                    })))
                }
            },
            Ok(Response::Error { status, error }) => {
                let failure = ServiceFailure { status, error };
                if failure.is_retriable()
                    && self.throttle_retries < self.config.max_throttle_retries
                {
                    self.throttle_retries = self.throttle_retries.saturating_add(1);
                    self.events.push_back(Event::Throttled {
                        status,
                        retry_after: delay,
                    });
                    Trigger::Wait(delay)
                } else {
                    finish(Err(ProvisioningError::Service(failure)))
                }
            }
        };
        self.apply(now, trigger);
    }
}

/// The registration an `assigned` operation describes.
fn registration(op: OperationStatus, config: &Config) -> Result<Registration, ResponseError> {
    let state = op
        .registration_state
        .ok_or(ResponseError::MissingField("registrationState"))?;
    let hub = state
        .assigned_hub
        .ok_or(ResponseError::MissingField("assignedHub"))?;
    let device = state
        .device_id
        .ok_or(ResponseError::MissingField("deviceId"))?;
    Ok(Registration {
        registration_id: state
            .registration_id
            .unwrap_or_else(|| config.registration_id.as_str().to_string()),
        operation_id: op.operation_id,
        assigned_hub: HostName::new(hub).map_err(|_| ResponseError::InvalidField("assignedHub"))?,
        device_id: DeviceId::new(device).map_err(|_| ResponseError::InvalidField("deviceId"))?,
        substatus: state.substatus,
        payload: state.payload,
        etag: state.etag,
        created_date_time_utc: state.created_date_time_utc,
        last_updated_date_time_utc: state.last_updated_date_time_utc,
    })
}

crate::connection::driven!(Session, Event);
