//! # iothub-hub — the hub's side of the Azure IoT Hub device protocol
//!
//! Sans-IO engines for the other end of the wire: [`Hub`] (the IoT Hub MQTT
//! endpoint) and [`dps::DpsService`] (the Device Provisioning Service). They
//! are the core of `iothub-emulator`, and the in-memory peer that the
//! device session's tests (in `iothub-proto`) drive in simulated time,
//! without sockets. The device side lives in `iothub-proto`; this crate
//! adds the server-side readers of what devices send ([`topic`],
//! [`username`]).
//!
//! **Contract.** [`Hub`] is sans-IO like the device core: a
//! connection is a [`ConnId`], bytes go in through
//! [`handle_input`](Hub::handle_input) and come out of
//! [`poll_transmit`](Hub::poll_transmit), and time enters as arguments —
//! a monotonic [`Instant`] (the device core's) for keep-alive and
//! deadlines, and wall-clock Unix seconds where SAS expiry matters. It
//! reads no clock and never panics; [`poll_timeout`](Hub::poll_timeout)
//! says when it next needs [`handle_timeout`](Hub::handle_timeout).
//!
//! ```text
//!   test (owns both clocks)        device session           Hub
//!   ───────────────────────        ──────────────           ───────
//!   accept(now, thumbprint) ──────────────────────────────▶ ConnId
//!                                  poll_transmit ─bytes──▶  handle_input(conn, now, unix, ..)
//!                                  handle_input  ◀─bytes──  poll_transmit(conn)
//!   is_closed(conn)? ─▶ tell the session its transport closed
//!   session closed its transport? ─────────────────────────▶ client_closed(conn)
//!   advance time ─────────────────────────────────────────▶ handle_timeout(now, unix)
//!   service side ─────────────────────────────────────────▶ send_c2d, update_desired, invoke_method, …
//! ```
//!
//! **Driving loop.** After any call that changes the hub (input, a timeout,
//! a service-side call, a fault), drain [`poll_transmit`](Hub::poll_transmit)
//! for every open connection and check [`is_closed`](Hub::is_closed);
//! then jump time to the earlier of the session's and the hub's
//! [`poll_timeout`](Hub::poll_timeout):
//!
//! ```text
//! loop {
//!     while let Some(b) = session.poll_transmit() { hub.handle_input(conn, now, unix, &b) }
//!     while let Some(b) = hub.poll_transmit(conn) { session.handle_input(now, &b) }
//!     if hub.is_closed(conn) { session.handle_transport_closed(now) }
//!     now = min(session.poll_timeout(), hub.poll_timeout()); unix = start_unix + now / 1000;
//!     hub.handle_timeout(now, unix); session.handle_timeout(now, unix);
//! }
//! ```
//!
//! # The hub's rules
//!
//! **CONNECT** must be the first packet; anything else first, or a second
//! CONNECT, closes the connection. A connection that has no accepted
//! CONNECT [`connect_timeout`](Hub::connect_timeout) after it was
//! [`accept`](Hub::accept)ed (default [`DEFAULT_CONNECT_TIMEOUT`], 30 s) is
//! closed by
//! [`handle_timeout`](Hub::handle_timeout) with
//! [`CloseReason::ConnectTimeout`]: a client that sends nothing, or only
//! part of a CONNECT, does not keep its socket. A CONNECT of another protocol level than
//! 4 (MQTT 3.1.1) is answered CONNACK 1. Then these checks, in order (the
//! first failure answers CONNACK with the code shown and closes):
//!
//! | check | refusal |
//! |---|---|
//! | an injected refusal is pending ([`refuse_connects`](Hub::refuse_connects)) | its code |
//! | keep-alive above [`MAX_KEEP_ALIVE_SECS`] (1177 s) | 2 (identifier rejected; a choice, the service documents no code) |
//! | username missing or not read by [`Username::parse`](username::Username::parse) (either form) | 4 |
//! | username host name is not the hub's (ASCII case ignored) | 4 |
//! | client id is not `{device}` / `{device}/{module}` of the username | 2 |
//! | the identity is refused for a while ([`refuse_connects_until`](Hub::refuse_connects_until)) | its code |
//! | identity unknown | 5 |
//! | X.509 identity: no client certificate (no thumbprint given to [`accept`](Hub::accept)) | 5 |
//! | X.509 identity: thumbprint is neither registered one (then accepted, no expiry) | 4 |
//! | no password, or not a SAS token ([`SasToken::parse`]) | 4 |
//! | token resource URI is not the identity's ([`Identity::resource_uri`]) | 5 |
//! | signature verifies with neither the primary nor the secondary key ([`SasToken::verify`], constant time) | 4 |
//! | token expired at the `unix_secs` given ([`SasToken::is_expired_at`]) | 5 |
//!
//! With [`skip_authentication`](Hub::skip_authentication) only the
//! injected refusal, keep-alive, username and client-id checks remain, and
//! unknown identities are created on demand.
//!
//! An accepted CONNECT evicts the identity's older connection (closed, will
//! published), answers CONNACK 0 with `session_present` set when
//! CleanSession is 0 and a session was kept, and redelivers unacknowledged
//! messages with DUP. CleanSession 1 drops the kept subscriptions and the
//! queued C2D / module input messages.
//!
//! **Subscriptions.** At most [`MAX_SUBSCRIPTIONS`] (5) per session; only
//! `$iothub/twin/res/#`, `$iothub/twin/PATCH/properties/desired/#`,
//! `$iothub/methods/POST/#`, and for a device its own
//! `devices/{d}/messages/devicebound/#`, for a module its own
//! `devices/{d}/modules/{m}/inputs/#` (plus any filter given to
//! [`allow_filter`](Hub::allow_filter)). Anything else, and a sixth
//! filter, gets return code 0x80. QoS 2 is granted as QoS 1. Subscribing again to a
//! filter replaces it.
//!
//! **PUBLISH** from the client: QoS 2 closes the connection; a topic that
//! [`parse_device_topic`](crate::topic::parse_device_topic) does not read
//! as this identity's telemetry, twin request or method response closes it
//! too. QoS 1 is acknowledged (unless [`withhold_pubacks`](Hub::withhold_pubacks)).
//! Telemetry over 256 KB (payload plus property bag) closes the connection.
//! Telemetry of a module with `$.on` (an output name) goes through the IoT
//! Edge routes ([`set_route`](Hub::set_route)) to other modules' inputs.
//!
//! **Twins.** A GET is answered `$iothub/twin/res/200/?$rid=` with
//! `{"desired":{…,"$version":n},"reported":{…,"$version":m}}`; a reported
//! PATCH merges (`null` deletes, recursively), bumps the reported version
//! and is answered 204 with `&$version=`; a body that is not a JSON object
//! gets 400. A client not subscribed to `$iothub/twin/res/#` gets no answer
//! and its request is not applied.
//!
//! **Keep-alive and expiry.** A client silent for more than 1.5 × its
//! keep-alive is closed by [`handle_timeout`](Hub::handle_timeout), and
//! so is a client whose SAS token has expired (the will is published in
//! both cases). PINGREQ is answered PINGRESP.
//!
//! **Retain.** IoT Hub stores no retained message: a PUBLISH with RETAIN
//! (and a retained will) is passed on with the application property
//! `mqtt-retain=true` (the name in current docs; `x-opt-retain`, the seed
//! document's, with [`set_retain_property`](Hub::set_retain_property)).
//!
//! **Will.** Published as telemetry of the identity, with the application
//! property `iothub-MessageType=Will`, whenever an accepted connection ends
//! without DISCONNECT (see [`CloseReason::publishes_will`]). A will whose
//! topic is not the identity's telemetry topic is dropped.
//!
//! **Limits.** Desired and reported sections at most
//! [`MAX_TWIN_SECTION_SIZE`] (a reported PATCH over it is answered 413 and
//! not applied), tags [`MAX_TWIN_TAGS_SIZE`], C2D [`MAX_C2D_SIZE`] and
//! [`MAX_PENDING_C2D`], method payloads [`MAX_METHOD_PAYLOAD`].
//!
//! **For an adapter that serves real sockets** (`iothub-emulator`):
//! [`poll_ready`](Hub::poll_ready) names the connections that have output
//! or were closed (so a step costs nothing per idle connection);
//! [`poll_change`](Hub::poll_change) journals identities whose durable
//! state changed, [`identity_state`](Hub::identity_state) and
//! [`restore_identity`](Hub::restore_identity) move it to and from storage;
//! [`invoke_method_until`](Hub::invoke_method_until) tracks the service's
//! response timeout in the hub's timer and ends in one
//! [`poll_method_result`](Hub::poll_method_result);
//! [`remove_connection`](Hub::remove_connection) forgets a closed connection.
//!
//! Hub→device twin, desired-patch and method messages are sent at QoS 0;
//! C2D and module input messages at the granted QoS of the subscription
//! (QoS 1 normally), and removed only on PUBACK.

pub mod dps;
pub mod routes;
pub mod topic;
mod twin;
mod types;
pub mod username;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::string::String;
use std::vec::Vec;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iothub_proto::time::Instant;
use serde_json::{Map, Value};

use crate::topic::DeviceTopic;
use crate::username::Username;
use iothub_proto::auth::{DeviceId, Identity, ModuleId, SasToken, SharedAccessKey};
use iothub_proto::mqtt::{
    self, Connack, Connect, ConnectReturnCode, DecodeError, LastWill, Packet, Pid, Publish, QoS,
    QosPid, Suback, Subscribe, SubscribeReturnCode, Unsubscribe,
};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic::{
    DESIRED_PATCH_FILTER, METHOD_REQUEST_FILTER, RequestId, TWIN_RESPONSE_FILTER, c2d_filter, hub,
    module_inputs_filter,
};

use self::routes::{Route, RouteFailure, RouteSink};
use self::twin::PatchError;
pub use self::twin::{MAX_TWIN_SECTION_SIZE, MAX_TWIN_TAGS_SIZE, Twin};
use self::types::key;
pub use self::types::{
    Authentication, Change, CloseReason, ConnId, Counters, HubError, IdentityState, MethodOutcome,
    MethodResponse, MethodResult, QueuedMessage, RetainProperty, Telemetry, Violation,
};

/// The largest keep-alive the hub accepts, in seconds.
pub const MAX_KEEP_ALIVE_SECS: u16 = 1177;
/// The most subscriptions one session may hold.
pub const MAX_SUBSCRIPTIONS: usize = 5;
/// The largest telemetry message, payload plus encoded property bag: 256 KB.
pub const MAX_TELEMETRY_SIZE: usize = 256 * 1024;
/// The largest C2D or module input message, payload plus encoded property
/// bag: 64 KB.
pub const MAX_C2D_SIZE: usize = 64 * 1024;
/// The most C2D (or module input) messages pending for one identity.
pub const MAX_PENDING_C2D: usize = 50;
/// The largest direct-method payload: 128 KB.
pub const MAX_METHOD_PAYLOAD: usize = 128 * 1024;
/// How long a connection may go without an accepted CONNECT before the
/// hub (or DPS) closes it: 30 s. The service documents no value; 30 s is
/// the CONNACK timeout of Microsoft's C device SDK, so a client slow
/// enough to be cut off has given up already.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest packet the hub decodes: a maximal telemetry PUBLISH (fixed
/// header, topic of up to 65,535 bytes, packet id, 256 KB body). Larger
/// packets close the connection before they are buffered.
const MAX_PACKET_SIZE: usize = 5 + 2 + 65_535 + 2 + MAX_TELEMETRY_SIZE;

/// One message waiting for delivery to an identity (C2D for a device,
/// module input for a module), until PUBACK.
#[derive(Debug, Clone)]
struct Queued {
    topic: String,
    payload: Bytes,
    /// The packet id it is in flight under on the current connection.
    pid: Option<Pid>,
    /// Whether it was sent before (then it is resent with DUP).
    sent_before: bool,
}

/// Everything the hub keeps about one identity.
#[derive(Debug)]
struct Record {
    identity: Identity,
    auth: Option<Authentication>,
    /// The live connection, if any.
    conn: Option<ConnId>,
    /// Whether a CleanSession 0 session is kept (for `session_present`).
    session_kept: bool,
    subscriptions: Vec<(String, QoS)>,
    queue: VecDeque<Queued>,
    twin: Twin,
    /// Injected failures: how many twin operations still fail, and with
    /// which status.
    twin_failures: (u32, u16),
    malformed_get_next: bool,
    /// Injected refusal: CONNECTs before this monotonic ms get this code.
    refuse_until: Option<(u64, ConnectReturnCode)>,
    /// Injected latency of twin answers and method results, in ms.
    answer_delay_ms: u64,
    /// The `model-id` (IoT Plug and Play) of the last accepted CONNECT.
    model_id: Option<String>,
}

impl Record {
    fn new(identity: Identity, auth: Option<Authentication>) -> Record {
        Record {
            identity,
            auth,
            conn: None,
            session_kept: false,
            subscriptions: Vec::new(),
            queue: VecDeque::new(),
            twin: Twin::new(),
            twin_failures: (0, 0),
            malformed_get_next: false,
            refuse_until: None,
            answer_delay_ms: 0,
            model_id: None,
        }
    }

    fn state(&self) -> IdentityState {
        IdentityState {
            identity: self.identity.clone(),
            authentication: self.auth.clone(),
            twin: self.twin.clone(),
            session: self.session_kept.then(|| self.subscriptions.clone()),
            queue: self
                .queue
                .iter()
                .map(|q| QueuedMessage::new(q.topic.clone(), q.payload.clone(), q.sent_before))
                .collect(),
        }
    }

    fn granted(&self, filter: &str) -> Option<QoS> {
        self.subscriptions
            .iter()
            .find(|(f, _)| f == filter)
            .map(|&(_, q)| q)
    }

    /// The filter this identity's queued messages are delivered on.
    fn delivery_filter(&self) -> String {
        match self.identity.module_id() {
            None => c2d_filter(self.identity.device_id()),
            Some(m) => module_inputs_filter(self.identity.device_id(), m),
        }
    }

    /// Whether the identity may subscribe to `filter`.
    fn may_subscribe(&self, filter: &str, extra: &[String]) -> bool {
        extra.iter().any(|f| f == filter)
            || filter == TWIN_RESPONSE_FILTER
            || filter == DESIRED_PATCH_FILTER
            || filter == METHOD_REQUEST_FILTER
            || filter == self.delivery_filter()
    }
}

/// The state of one connection.
#[derive(Debug)]
struct Conn {
    rx: BytesMut,
    tx: BytesMut,
    /// The identity key, once CONNECT was accepted (kept after close).
    client_id: Option<String>,
    closed: Option<CloseReason>,
    keep_alive_ms: u64,
    last_rx_ms: u64,
    /// The SAS expiry, in Unix seconds and in the caller's monotonic ms.
    token_expiry: Option<(u64, u64)>,
    will: Option<LastWill>,
    clean_session: bool,
    next_pid: Pid,
    /// The SHA-256 thumbprint of the client certificate the transport saw.
    thumbprint: Option<String>,
    /// The monotonic ms by which CONNECT must be accepted
    /// ([`Hub::accept`]); `None` when the deadline is off.
    connect_deadline: Option<u64>,
}

impl Conn {
    /// A new connection: nothing received, nothing to send.
    fn new(thumbprint: Option<String>, connect_deadline: Option<u64>) -> Conn {
        Conn {
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            client_id: None,
            closed: None,
            keep_alive_ms: 0,
            last_rx_ms: 0,
            token_expiry: None,
            will: None,
            clean_session: true,
            next_pid: Pid::MIN,
            thumbprint,
            connect_deadline,
        }
    }

    /// The CONNECT deadline while it matters: the connection is open and
    /// no CONNECT was accepted yet.
    fn pending_connect_deadline(&self) -> Option<u64> {
        (self.is_open() && self.client_id.is_none())
            .then_some(self.connect_deadline)
            .flatten()
    }

    /// The timers of the connection: the CONNECT deadline before CONNECT,
    /// then the keep-alive deadline and the SAS expiry.
    fn deadlines(&self) -> [Option<u64>; 2] {
        if self.is_live() {
            [
                self.keep_alive_deadline(),
                self.token_expiry.map(|(_, ms)| ms),
            ]
        } else {
            [self.pending_connect_deadline(), None]
        }
    }

    fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    fn is_live(&self) -> bool {
        self.closed.is_none() && self.client_id.is_some()
    }

    /// The keep-alive deadline: the first instant at which the client has
    /// been silent for more than 1.5 × its keep-alive.
    fn keep_alive_deadline(&self) -> Option<u64> {
        (self.keep_alive_ms > 0).then(|| {
            self.last_rx_ms
                .saturating_add(self.keep_alive_ms.saturating_mul(3) / 2)
                .saturating_add(1)
        })
    }

    fn send(&mut self, packet: &Packet) {
        packet.encode(&mut self.tx);
    }

    fn send_publish(&mut self, topic: String, qospid: QosPid, payload: Bytes, dup: bool) {
        // Every topic the hub builds is a valid topic name; a failure
        // (which cannot happen) just sends nothing.
        if let Ok(p) = Publish::new(topic, qospid, payload) {
            self.send(&Packet::Publish(p.with_dup(dup)));
        }
    }

    /// The next packet id not in `in_use`.
    fn alloc_pid(&mut self, in_use: &[Pid]) -> Pid {
        let mut pid = self.next_pid;
        for _ in 0..=u16::MAX {
            if !in_use.contains(&pid) {
                break;
            }
            pid = pid.next();
        }
        self.next_pid = pid.next();
        pid
    }
}

/// Fault-injection switches that are not tied to one identity.
#[derive(Debug, Default)]
struct Faults {
    refuse_connects: (u32, Option<ConnectReturnCode>),
    silence_pingresp: bool,
    withhold_pubacks: bool,
}

/// An in-memory IoT Hub speaking the hub's side of MQTT 3.1.1; see the
/// [module docs](self) for the contract and the rules.
///
/// ```
/// use bytes::BytesMut;
/// use iothub_proto::auth::{ConnectCredentials, Credential, DeviceId, HostName, SharedAccessKey, UsernameOptions};
/// use iothub_proto::mqtt::{self, Connect, Packet, MAX_PACKET_SIZE};
/// use iothub_proto::time::Instant;
/// use iothub_hub::Hub;
///
/// let key = SharedAccessKey::from_bytes([7u8; 32])?;
/// let mut hub = Hub::new("hub.example.net");
/// let dev = hub.add_device(DeviceId::new("dev1")?, key.clone());
///
/// let now_unix = 1_700_000_000;
/// let credential = Credential::SharedAccessKey { key, key_name: None };
/// let creds = ConnectCredentials::new(&dev, &HostName::new("hub.example.net")?, &credential,
///     &UsernameOptions::default(), now_unix + 3600);
/// let connect = Connect::new(creds.client_id.as_str())?
///     .with_keep_alive(60)
///     .with_username(creds.username.as_str())?
///     .with_password(creds.expose_password().unwrap_or_default().to_vec())?;
///
/// let now = Instant::ZERO; // the caller's monotonic clock
/// let conn = hub.accept(now, None);
/// hub.handle_input(conn, now, now_unix, &Packet::Connect(connect).to_bytes());
/// let mut rx = BytesMut::from(&hub.poll_transmit(conn).unwrap()[..]);
/// let Some(Packet::Connack(ack)) = mqtt::decode(&mut rx, MAX_PACKET_SIZE)? else { panic!() };
/// assert!(ack.code().is_accepted());
/// assert!(hub.is_connected(&dev));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Hub {
    host_name: String,
    authenticate: bool,
    /// Filters allowed beyond the documented ones ([`Hub::allow_filter`]).
    extra_filters: Vec<String>,
    identities: BTreeMap<String, Record>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    next_request: u64,
    next_message: u64,
    telemetry: Vec<Telemetry>,
    /// Method calls awaiting an answer, by request id.
    method_calls: BTreeMap<String, Call>,
    method_responses: Vec<MethodResponse>,
    faults: Faults,
    counters: Counters,
    /// Connections with bytes to send or newly closed ([`Hub::poll_ready`]).
    touched: BTreeSet<ConnId>,
    /// The change journal ([`Hub::poll_change`]): identity key → identity.
    changes: BTreeMap<String, Identity>,
    /// Results of deadline-tracked method calls ([`Hub::poll_method_result`]).
    method_results: VecDeque<MethodResult>,
    /// Twin answers and method results held back by
    /// [`Hub::delay_answers`], in the order they were made.
    delayed: Vec<Delayed>,
    /// IoT Edge routes between modules, by name ([`Hub::set_route`]).
    routes: BTreeMap<String, Route>,
    /// Routed messages that could not be queued ([`Hub::take_route_failures`]).
    route_failures: Vec<RouteFailure>,
    /// How long a connection may wait for its CONNECT ([`Hub::set_connect_timeout`]).
    connect_timeout_ms: Option<u64>,
    /// What marks a retained message ([`Hub::set_retain_property`]).
    retain_property: RetainProperty,
}

/// A method call awaiting its answer.
#[derive(Debug)]
struct Call {
    /// The identity key.
    key: String,
    /// The monotonic ms at which it times out, for
    /// [`Hub::invoke_method_until`]; `None` for [`Hub::invoke_method`].
    deadline: Option<u64>,
}

/// Something held back by an injected delay.
#[derive(Debug)]
struct Delayed {
    at_ms: u64,
    what: DelayedWhat,
}

#[derive(Debug)]
enum DelayedWhat {
    TwinAnswer {
        conn: ConnId,
        topic: String,
        body: Bytes,
    },
    MethodResult(MethodResult),
}

impl Hub {
    /// A hub called `host_name` (what the CONNECT usernames and SAS resource
    /// URIs must name), with no identities and authentication on.
    #[must_use]
    pub fn new(host_name: &str) -> Hub {
        Hub {
            host_name: String::from(host_name),
            authenticate: true,
            extra_filters: Vec::new(),
            identities: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            next_request: 0,
            next_message: 0,
            telemetry: Vec::new(),
            method_calls: BTreeMap::new(),
            method_responses: Vec::new(),
            faults: Faults::default(),
            counters: Counters::default(),
            touched: BTreeSet::new(),
            changes: BTreeMap::new(),
            method_results: VecDeque::new(),
            delayed: Vec::new(),
            routes: BTreeMap::new(),
            route_failures: Vec::new(),
            connect_timeout_ms: Some(millis(DEFAULT_CONNECT_TIMEOUT)),
            retain_property: RetainProperty::default(),
        }
    }

    /// The hub's host name.
    #[must_use]
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// With `true`, CONNECT is accepted without looking at the host name,
    /// the password or the identity's existence (identities are created on
    /// demand, here and in the service-side calls); the username must still
    /// parse and match the client id. For tests that don't care about
    /// authentication.
    pub fn skip_authentication(&mut self, skip: bool) {
        self.authenticate = !skip;
    }

    /// How long a connection may go without an accepted CONNECT before the
    /// hub closes it ([`CloseReason::ConnectTimeout`]); `None` turns the
    /// deadline off. Applies to connections accepted afterwards. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn set_connect_timeout(&mut self, timeout: Option<Duration>) {
        self.connect_timeout_ms = timeout.map(millis);
    }

    /// The CONNECT deadline of new connections
    /// ([`set_connect_timeout`](Self::set_connect_timeout)).
    #[must_use]
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout_ms.map(Duration::from_millis)
    }

    /// The application property that marks a message published with
    /// RETAIN, or a retained will: `mqtt-retain=true` (current docs, the
    /// default) or `x-opt-retain=true` (the seed document).
    pub fn set_retain_property(&mut self, property: RetainProperty) {
        self.retain_property = property;
    }

    /// The property set by [`set_retain_property`](Self::set_retain_property).
    #[must_use]
    pub fn retain_property(&self) -> RetainProperty {
        self.retain_property
    }

    /// Lets every identity subscribe to `filter` too (exact match), beyond
    /// the documented ones. For sessions that subscribe to something the
    /// real hub refuses, and to reach the [`MAX_SUBSCRIPTIONS`] limit,
    /// which the four documented filters of an identity alone cannot reach.
    pub fn allow_filter(&mut self, filter: &str) {
        self.extra_filters.push(String::from(filter));
    }

    /// Registers a device identity with its primary key (replacing the key
    /// if it exists) and returns the identity.
    pub fn add_device(&mut self, device_id: DeviceId, primary_key: SharedAccessKey) -> Identity {
        self.add_identity(Identity::device(device_id), primary_key)
    }

    /// Registers a module identity with its key (replacing the key if it
    /// exists) and returns the identity.
    pub fn add_module(
        &mut self,
        device_id: DeviceId,
        module_id: ModuleId,
        key: SharedAccessKey,
    ) -> Identity {
        self.add_identity(Identity::module(device_id, module_id), key)
    }

    fn add_identity(&mut self, identity: Identity, key: SharedAccessKey) -> Identity {
        self.set_authentication(&identity, Authentication::sas(key));
        identity
    }

    /// Registers an identity with `authentication`, or replaces the
    /// authentication of an existing one (its twin, session and messages
    /// stay). Returns whether the identity is new. A module needs no
    /// registered device here; the service API checks that.
    pub fn set_authentication(
        &mut self,
        identity: &Identity,
        authentication: Authentication,
    ) -> bool {
        let k = key(identity);
        let created = match self.identities.get_mut(&k) {
            Some(r) => {
                r.auth = Some(authentication);
                false
            }
            None => {
                self.identities.insert(
                    k.clone(),
                    Record::new(identity.clone(), Some(authentication)),
                );
                true
            }
        };
        self.changes.insert(k, identity.clone());
        created
    }

    /// Deletes an identity, and for a device every module of it: their live
    /// connections are closed ([`CloseReason::IdentityDeleted`], no will),
    /// their twins, sessions and pending messages are gone, and the change
    /// journal reports them [`Change::Removed`]. Returns whether the
    /// identity existed.
    pub fn remove_identity(&mut self, identity: &Identity) -> bool {
        let doomed: Vec<String> = self
            .identities
            .iter()
            .filter(|(_, r)| {
                r.identity == *identity
                    || (identity.module_id().is_none()
                        && r.identity.device_id() == identity.device_id())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            if let Some(conn) = self.identities.get(k).and_then(|r| r.conn) {
                self.close(conn, CloseReason::IdentityDeleted);
            }
            if let Some(r) = self.identities.remove(k) {
                self.changes.insert(k.clone(), r.identity);
            }
        }
        !doomed.is_empty()
    }

    /// The registered identities, devices and modules, ordered by client id
    /// (a device comes right before its modules).
    pub fn identities(&self) -> impl Iterator<Item = &Identity> + '_ {
        self.identities.values().map(|r| &r.identity)
    }

    /// Whether the identity is registered.
    #[must_use]
    pub fn contains(&self, identity: &Identity) -> bool {
        self.identities.contains_key(&key(identity))
    }

    /// How the identity authenticates.
    #[must_use]
    pub fn authentication(&self, identity: &Identity) -> Option<&Authentication> {
        self.identities.get(&key(identity))?.auth.as_ref()
    }

    // -----------------------------------------------------------------------
    // Durable state: the change journal, snapshots and restore

    /// The next identity whose durable state ([`IdentityState`]) changed
    /// since it was last returned, or `None`. An adapter that stores the
    /// hub drains this after every call that may change the hub (input,
    /// timeout, service call) and writes [`identity_state`](Self::identity_state)
    /// (or deletes, for [`Change::Removed`]); several changes of one
    /// identity are reported once.
    #[must_use = "a change that is not stored is lost on restart"]
    pub fn poll_change(&mut self) -> Option<Change> {
        let (k, identity) = self.changes.pop_first()?;
        Some(if self.identities.contains_key(&k) {
            Change::Updated(identity)
        } else {
            Change::Removed(identity)
        })
    }

    /// Everything durable about an identity, or `None` if it is unknown.
    #[must_use]
    pub fn identity_state(&self, identity: &Identity) -> Option<IdentityState> {
        self.identities.get(&key(identity)).map(Record::state)
    }

    /// Puts an identity back as stored (at start, before any connection):
    /// registration, twin, kept session and pending messages (sent again,
    /// with DUP when they were sent before, once the identity connects
    /// with CleanSession 0). Replaces an existing identity's durable state;
    /// its live connection, if any, is closed first. Not journaled.
    pub fn restore_identity(&mut self, state: IdentityState) {
        let k = key(&state.identity);
        if let Some(conn) = self.identities.get(&k).and_then(|r| r.conn) {
            self.close(conn, CloseReason::Dropped);
        }
        let mut r = Record::new(state.identity, state.authentication);
        r.twin = state.twin;
        r.session_kept = state.session.is_some();
        r.subscriptions = state.session.unwrap_or_default();
        r.queue = state
            .queue
            .into_iter()
            .take(MAX_PENDING_C2D)
            .map(|q| Queued {
                topic: q.topic,
                payload: q.payload,
                pid: None,
                sent_before: q.sent_before,
            })
            .collect();
        self.identities.insert(k, r);
    }

    /// Journals an identity key (no effect for an unknown key).
    fn changed(&mut self, k: &str) {
        if let Some(r) = self.identities.get(k) {
            self.changes.insert(String::from(k), r.identity.clone());
        }
    }

    // -----------------------------------------------------------------------
    // Connections: bytes in, bytes out, time

    /// A new connection, its transport up at `now` (the client has sent
    /// nothing yet). `thumbprint` is the SHA-256 thumbprint (hex) of the
    /// client certificate its TLS layer received, checked against X.509
    /// registrations at CONNECT; `None` when the client presented none.
    /// Unless a CONNECT is accepted by `now` +
    /// [`connect_timeout`](Self::connect_timeout),
    /// [`handle_timeout`](Self::handle_timeout) closes it with
    /// [`CloseReason::ConnectTimeout`]; [`poll_timeout`](Self::poll_timeout)
    /// includes that deadline.
    pub fn accept(&mut self, now: Instant, thumbprint: Option<String>) -> ConnId {
        let now_ms = now.as_millis();
        let deadline = self.connect_timeout_ms.map(|t| now_ms.saturating_add(t));
        self.insert_conn(Conn::new(thumbprint, deadline))
    }

    fn insert_conn(&mut self, conn: Conn) -> ConnId {
        self.next_conn = self.next_conn.saturating_add(1);
        let id = ConnId(self.next_conn);
        self.conns.insert(id, conn);
        id
    }

    /// Forgets a closed connection entirely (an adapter calls this once
    /// its transport is gone, so that a long-running hub does not keep every
    /// connection it ever had). No effect on an open connection.
    pub fn remove_connection(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| !c.is_open()) {
            self.conns.remove(&conn);
            self.touched.remove(&conn);
        }
    }

    /// The next connection that has bytes to transmit, or was closed, since
    /// it was last returned; `None` when there is none. An adapter drains
    /// this after every call that may change the hub, then
    /// [`poll_transmit`](Self::poll_transmit) and
    /// [`is_closed`](Self::is_closed) each connection returned: a call on
    /// one connection (or a service call) can make output for another.
    #[must_use = "the connection's bytes must be delivered"]
    pub fn poll_ready(&mut self) -> Option<ConnId> {
        self.touched.pop_first()
    }

    /// Bytes from the client, at monotonic time `now` and wall-clock
    /// `unix_secs` (for SAS expiry). Packets may be split anywhere. Ignored
    /// on a closed or unknown connection. Drain [`poll_transmit`](Self::poll_transmit)
    /// and check [`is_closed`](Self::is_closed) afterwards.
    pub fn handle_input(&mut self, conn: ConnId, now: Instant, unix_secs: u64, data: &[u8]) {
        let now_ms = now.as_millis();
        match self.conns.get_mut(&conn) {
            Some(c) if c.is_open() => c.rx.extend_from_slice(data),
            _ => return,
        }
        self.touched.insert(conn);
        if self.token_expired(conn, unix_secs) {
            self.close(conn, CloseReason::TokenExpired);
            return;
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if !c.is_open() {
                c.rx.clear();
                return;
            }
            match mqtt::decode(&mut c.rx, MAX_PACKET_SIZE) {
                Ok(None) => return,
                Ok(Some(packet)) => {
                    c.last_rx_ms = now_ms;
                    self.on_packet(conn, now_ms, unix_secs, packet);
                }
                Err(DecodeError::UnsupportedProtocolLevel(_)) if c.client_id.is_none() => {
                    self.refuse(conn, ConnectReturnCode::UnacceptableProtocolVersion);
                }
                Err(DecodeError::PacketTooLarge { size, .. }) => {
                    self.violation(conn, Violation::MessageTooLarge { size });
                }
                Err(e) => self.violation(conn, Violation::Malformed(e)),
            }
        }
    }

    /// The bytes the hub has queued for the client since the last call
    /// (everything, coalesced), or `None`. Bytes queued before the hub
    /// closed a connection (a refusing CONNACK, say) remain available after
    /// the close.
    #[must_use = "the bytes must be delivered to the client"]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let c = self.conns.get_mut(&conn)?;
        (!c.tx.is_empty()).then(|| c.tx.split().freeze())
    }

    /// Whether the connection is closed — by the hub (then tell the client
    /// its transport closed, after draining [`poll_transmit`](Self::poll_transmit))
    /// or by [`client_closed`](Self::client_closed). True for an unknown id.
    #[must_use]
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| !c.is_open())
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.conns.get(&conn).and_then(|c| c.closed)
    }

    /// The client's transport went away. Without a prior DISCONNECT the
    /// will is published. No effect on a closed connection.
    pub fn client_closed(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::TransportClosed);
    }

    /// Advances the hub to monotonic `now` and wall-clock `unix_secs`:
    /// closes every connection past its CONNECT deadline without an
    /// accepted CONNECT ([`CloseReason::ConnectTimeout`]), every connection
    /// silent for more than 1.5 × its keep-alive and every connection whose
    /// SAS token has expired (will published), ends method calls past
    /// their deadline ([`MethodOutcome::TimedOut`]), and releases answers
    /// held back by [`delay_answers`](Self::delay_answers).
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64) {
        let now_ms = now.as_millis();
        let unconnected: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pending_connect_deadline().is_some_and(|d| now_ms >= d))
            .map(|(&id, _)| id)
            .collect();
        for id in unconnected {
            self.close(id, CloseReason::ConnectTimeout);
        }
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_live())
            .map(|(&id, _)| id)
            .collect();
        for id in live {
            if self.token_expired(id, unix_secs) {
                self.close(id, CloseReason::TokenExpired);
            } else if self
                .conns
                .get(&id)
                .and_then(Conn::keep_alive_deadline)
                .is_some_and(|d| now_ms >= d)
            {
                self.close(id, CloseReason::KeepAliveTimeout);
            }
        }
        let expired: Vec<String> = self
            .method_calls
            .iter()
            .filter(|(_, call)| call.deadline.is_some_and(|d| now_ms >= d))
            .map(|(rid, _)| rid.clone())
            .collect();
        for rid in expired {
            let Some(call) = self.method_calls.remove(&rid) else {
                continue;
            };
            let Some(r) = self.identities.get(&call.key) else {
                continue;
            };
            let request_id = RequestId::from_wire(rid);
            self.method_results.push_back(MethodResult {
                request_id,
                identity: r.identity.clone(),
                outcome: MethodOutcome::TimedOut,
            });
        }
        let (due, later): (Vec<Delayed>, Vec<Delayed>) = core::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|d| now_ms >= d.at_ms);
        self.delayed = later;
        for d in due {
            match d.what {
                DelayedWhat::TwinAnswer { conn, topic, body } => {
                    if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.is_open()) {
                        c.send_publish(topic, QosPid::AtMostOnce, body, false);
                        self.touched.insert(conn);
                    }
                }
                DelayedWhat::MethodResult(m) => self.method_results.push_back(m),
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, on the
    /// caller's monotonic clock: the earliest CONNECT deadline of a connection
    /// still waiting for its CONNECT, keep-alive deadline or SAS expiry
    /// (translated from Unix seconds with the clocks given at CONNECT) of
    /// the live connections, method-call deadline, or end of an injected
    /// delay. `None` when nothing is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().flat_map(Conn::deadlines).flatten();
        let calls = self.method_calls.values().filter_map(|c| c.deadline);
        let delayed = self.delayed.iter().map(|d| d.at_ms);
        conns
            .chain(calls)
            .chain(delayed)
            .min()
            .map(Instant::from_millis)
    }

    // -----------------------------------------------------------------------
    // Observability

    /// What the hub has counted.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The identity a connection authenticated as (kept after it closed);
    /// `None` before an accepted CONNECT.
    #[must_use]
    pub fn connection_identity(&self, conn: ConnId) -> Option<&Identity> {
        let k = self.conns.get(&conn)?.client_id.as_ref()?;
        self.identities.get(k).map(|r| &r.identity)
    }

    /// The live connection of an identity.
    #[must_use]
    pub fn connection_of(&self, identity: &Identity) -> Option<ConnId> {
        self.identities.get(&key(identity))?.conn
    }

    /// Whether the identity has a live connection.
    #[must_use]
    pub fn is_connected(&self, identity: &Identity) -> bool {
        self.connection_of(identity).is_some()
    }

    /// The IoT Plug and Play `model-id` the identity announced in the
    /// username of its last accepted CONNECT, if any.
    #[must_use]
    pub fn model_id(&self, identity: &Identity) -> Option<&str> {
        self.identities.get(&key(identity))?.model_id.as_deref()
    }

    /// The subscriptions (filter, granted QoS) of the session a live
    /// connection belongs to; empty for a closed or unauthenticated one.
    #[must_use]
    pub fn subscriptions(&self, conn: ConnId) -> &[(String, QoS)] {
        self.conns
            .get(&conn)
            .and_then(|c| c.client_id.as_ref())
            .and_then(|k| self.identities.get(k))
            .filter(|r| r.conn == Some(conn))
            .map_or(&[], |r| r.subscriptions.as_slice())
    }

    /// The telemetry received (and wills published), in order.
    #[must_use]
    pub fn telemetry(&self) -> &[Telemetry] {
        &self.telemetry
    }

    /// Takes the telemetry received so far.
    pub fn take_telemetry(&mut self) -> Vec<Telemetry> {
        core::mem::take(&mut self.telemetry)
    }

    /// How many C2D (device) or module input (module) messages wait for the
    /// identity's PUBACK, in flight or not yet sent.
    #[must_use]
    pub fn pending_messages(&self, identity: &Identity) -> usize {
        self.identities
            .get(&key(identity))
            .map_or(0, |r| r.queue.len())
    }

    // -----------------------------------------------------------------------
    // Service side: twins

    /// The desired properties (without `$version`).
    #[must_use]
    pub fn desired(&self, identity: &Identity) -> Option<&Map<String, Value>> {
        self.identities.get(&key(identity)).map(|r| &r.twin.desired)
    }

    /// The desired `$version` (1 for a new twin).
    #[must_use]
    pub fn desired_version(&self, identity: &Identity) -> Option<u64> {
        self.identities
            .get(&key(identity))
            .map(|r| r.twin.desired_version)
    }

    /// The reported properties (without `$version`).
    #[must_use]
    pub fn reported(&self, identity: &Identity) -> Option<&Map<String, Value>> {
        self.identities
            .get(&key(identity))
            .map(|r| &r.twin.reported)
    }

    /// The reported `$version` (1 for a new twin, +1 per accepted PATCH).
    #[must_use]
    pub fn reported_version(&self, identity: &Identity) -> Option<u64> {
        self.identities
            .get(&key(identity))
            .map(|r| r.twin.reported_version)
    }

    /// The service updates desired properties: merges `patch` (a JSON
    /// object; `null` deletes), bumps the desired version and returns it.
    /// If the identity is connected and subscribed to
    /// `$iothub/twin/PATCH/properties/desired/#`, sends it the patch with
    /// `"$version"` added on `…/desired/?$version={v}`.
    ///
    /// Errors: [`HubError::NotAnObject`], [`HubError::TooLarge`] when the
    /// desired section would exceed [`MAX_TWIN_SECTION_SIZE`] (nothing is
    /// applied), [`HubError::UnknownIdentity`].
    pub fn update_desired(&mut self, identity: &Identity, patch: Value) -> Result<u64, HubError> {
        let Value::Object(patch) = patch else {
            return Err(HubError::NotAnObject);
        };
        let mut body = patch.clone();
        let r = self.record_mut(identity)?;
        let version = r.twin.try_patch_desired(patch).map_err(patch_error)?;
        let target = r.granted(DESIRED_PATCH_FILTER).and(r.conn);
        self.changed(&key(identity));
        if let Some(id) = target {
            self.touched.insert(id);
        }
        if let Some(c) = target.and_then(|id| self.conns.get_mut(&id)) {
            body.insert("$version".into(), Value::from(version));
            let body = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
            c.send_publish(
                hub::desired_patch(version),
                QosPid::AtMostOnce,
                body.into(),
                false,
            );
        }
        Ok(version)
    }

    /// The service updates the tags: merges `patch` (a JSON object; `null`
    /// deletes) and returns the twin's new version. Devices see nothing.
    ///
    /// Errors: [`HubError::NotAnObject`], [`HubError::TooLarge`] over
    /// [`MAX_TWIN_TAGS_SIZE`] (nothing is applied), [`HubError::UnknownIdentity`].
    pub fn update_tags(&mut self, identity: &Identity, patch: Value) -> Result<u64, HubError> {
        let Value::Object(patch) = patch else {
            return Err(HubError::NotAnObject);
        };
        let version = self
            .record_mut(identity)?
            .twin
            .try_patch_tags(patch)
            .map_err(patch_error)?;
        self.changed(&key(identity));
        Ok(version)
    }

    /// The identity's whole twin (desired, reported, tags, versions).
    #[must_use]
    pub fn twin(&self, identity: &Identity) -> Option<&Twin> {
        self.identities.get(&key(identity)).map(|r| &r.twin)
    }

    // -----------------------------------------------------------------------
    // Service side: direct methods

    /// The service calls a direct method: sends
    /// `$iothub/methods/POST/{name}/?$rid={rid}` and returns the request id
    /// under which the answer will appear in
    /// [`method_responses`](Self::method_responses).
    ///
    /// Errors: [`HubError::NotConnected`] unless the identity is connected
    /// and subscribed to `$iothub/methods/POST/#`; [`HubError::InvalidName`];
    /// [`HubError::TooLarge`] over 128 KB.
    pub fn invoke_method(
        &mut self,
        identity: &Identity,
        name: &str,
        payload: Bytes,
    ) -> Result<RequestId, HubError> {
        self.invoke(identity, name, payload, None)
    }

    /// The service calls a direct method and waits until monotonic
    /// `deadline` (the caller's `now` plus the response timeout,
    /// which the service API keeps within 5–300 s). The call ends in
    /// exactly one [`MethodResult`] from [`poll_method_result`](Self::poll_method_result):
    /// the device's answer, or [`MethodOutcome::TimedOut`] from the first
    /// [`handle_timeout`](Self::handle_timeout) at or after the deadline
    /// (also when the device went away meanwhile). Errors as
    /// [`invoke_method`](Self::invoke_method); then there is no result.
    pub fn invoke_method_until(
        &mut self,
        identity: &Identity,
        name: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<RequestId, HubError> {
        self.invoke(identity, name, payload, Some(deadline.as_millis()))
    }

    /// The next ended deadline-tracked method call, or `None`. Drain after
    /// input and after [`handle_timeout`](Self::handle_timeout).
    #[must_use = "a method result that is not taken never reaches its caller"]
    pub fn poll_method_result(&mut self) -> Option<MethodResult> {
        self.method_results.pop_front()
    }

    fn invoke(
        &mut self,
        identity: &Identity,
        name: &str,
        payload: Bytes,
        deadline: Option<u64>,
    ) -> Result<RequestId, HubError> {
        if payload.len() > MAX_METHOD_PAYLOAD {
            return Err(HubError::TooLarge {
                size: payload.len(),
                max: MAX_METHOD_PAYLOAD,
            });
        }
        check_name(name)?;
        let request_id = RequestId::from(self.next_request.saturating_add(1));
        let topic = hub::method_request(name, &request_id).map_err(|_| HubError::InvalidName)?;
        // A topic that cannot be sent (a wildcard, U+0000, over 65,535
        // bytes) would make a call whose request never leaves: refused.
        iothub_proto::mqtt::TopicName::new(&topic).map_err(|_| HubError::InvalidName)?;
        let k = key(identity);
        let r = self.identities.get(&k).ok_or(HubError::UnknownIdentity)?;
        let c = r
            .granted(METHOD_REQUEST_FILTER)
            .and(r.conn)
            .and_then(|id| self.conns.get_mut(&id))
            .ok_or(HubError::NotConnected)?;
        c.send_publish(topic, QosPid::AtMostOnce, payload, false);
        if let Some(id) = r.conn {
            self.touched.insert(id);
        }
        self.next_request = self.next_request.saturating_add(1);
        self.method_calls
            .insert(String::from(request_id.as_str()), Call { key: k, deadline });
        Ok(request_id)
    }

    /// The method answers received, in order.
    #[must_use]
    pub fn method_responses(&self) -> &[MethodResponse] {
        &self.method_responses
    }

    /// Takes the answer to one method call: its status and body.
    pub fn take_method_response(&mut self, request_id: &RequestId) -> Option<(i32, Bytes)> {
        let i = self
            .method_responses
            .iter()
            .position(|m| m.request_id == *request_id)?;
        let m = self.method_responses.remove(i);
        Some((m.status, m.payload))
    }

    // -----------------------------------------------------------------------
    // Service side: cloud-to-device and module input messages

    /// The service sends a cloud-to-device message. `$.mid` and `$.to` are
    /// filled in when absent. It is queued for the device and delivered on
    /// `devices/{d}/messages/devicebound/{bag}` while the device is
    /// connected and subscribed; it stays queued until PUBACK.
    ///
    /// Errors: [`HubError::TooLarge`] over 64 KB (payload plus property
    /// bag), or with a topic over the 65,535 bytes MQTT allows (the bag
    /// with the properties added here), [`HubError::QueueFull`] with 50 pending,
    /// [`HubError::UnknownIdentity`].
    pub fn send_c2d(
        &mut self,
        device_id: &DeviceId,
        mut properties: MessageProperties,
        payload: Bytes,
    ) -> Result<(), HubError> {
        check_c2d_size(&properties, &payload)?;
        self.next_message = self.next_message.saturating_add(1);
        if properties.message_id.is_none() {
            let mut mid = String::from("hub-");
            topic_push_u64(self.next_message, &mut mid);
            properties.message_id = Some(mid);
        }
        if properties.to.is_none() {
            let mut to = String::from("/devices/");
            to.push_str(device_id.as_str());
            to.push_str("/messages/deviceBound");
            properties.to = Some(to);
        }
        let identity = Identity::device(device_id.clone());
        let topic = hub::c2d(device_id, &properties);
        // The bag fits 64 KB but, with the prefix and the properties added
        // here, not an MQTT topic: a PUBLISH that cannot be built would
        // wait in the queue for ever.
        if topic.len() > iothub_proto::mqtt::MAX_STRING_LEN {
            return Err(HubError::TooLarge {
                size: topic.len(),
                max: iothub_proto::mqtt::MAX_STRING_LEN,
            });
        }
        self.enqueue(&identity, topic, payload)
    }

    /// The service (an IoT Edge route) sends a message to a module's input
    /// `input`, on `devices/{d}/modules/{m}/inputs/{input}/{bag}`; queued and
    /// delivered like [`send_c2d`](Self::send_c2d) (without adding
    /// properties), with the same limits, plus [`HubError::InvalidName`]
    /// for an input name that is empty, holds `/`, `+`, `#` or U+0000, or
    /// makes the topic longer than MQTT allows.
    pub fn send_module_input(
        &mut self,
        device_id: &DeviceId,
        module_id: &ModuleId,
        input: &str,
        properties: MessageProperties,
        payload: Bytes,
    ) -> Result<(), HubError> {
        check_c2d_size(&properties, &payload)?;
        check_name(input)?;
        let topic = hub::module_input(device_id, module_id, input, &properties)
            .map_err(|_| HubError::InvalidName)?;
        // A topic that cannot be sent (a wildcard, U+0000, over 65,535
        // bytes) would wait in the queue for ever: refused here.
        iothub_proto::mqtt::TopicName::new(&topic).map_err(|_| HubError::InvalidName)?;
        let identity = Identity::module(device_id.clone(), module_id.clone());
        self.enqueue(&identity, topic, payload)
    }

    // -----------------------------------------------------------------------
    // IoT Edge routes between modules

    /// Adds or replaces the route called `name` (see [`routes`] for the
    /// forms). It applies to the modules of every device: a telemetry
    /// message that module `m` of device `D` sends with `$.on` = an output
    /// the route takes is queued, like [`send_module_input`](Self::send_module_input),
    /// for the route's input of the route's module of the same device `D`.
    /// The routed message keeps its properties, without `$.on`, and with
    /// `$.cdid` / `$.cmid` naming the sender. A message no route takes is
    /// stored as telemetry (as if the edge hub sent it `$upstream`); one
    /// that routes take is stored as telemetry only if one of them says
    /// `$upstream`. A message that cannot be queued (the module is not
    /// registered, its queue is full, it is over 64 KB) is journaled in
    /// [`take_route_failures`](Self::take_route_failures); the sender's
    /// PUBLISH is acknowledged either way. Returns the route it replaced.
    pub fn set_route(&mut self, name: &str, route: Route) -> Option<Route> {
        self.routes.insert(String::from(name), route)
    }

    /// Removes the route called `name`; returns it, if there was one.
    pub fn remove_route(&mut self, name: &str) -> Option<Route> {
        self.routes.remove(name)
    }

    /// The routes, by name.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Route)> + '_ {
        self.routes.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Takes the routed messages that could not be queued since the last
    /// call, in order.
    pub fn take_route_failures(&mut self) -> Vec<RouteFailure> {
        core::mem::take(&mut self.route_failures)
    }

    fn enqueue(
        &mut self,
        identity: &Identity,
        topic: String,
        payload: Bytes,
    ) -> Result<(), HubError> {
        let r = self.record_mut(identity)?;
        if r.queue.len() >= MAX_PENDING_C2D {
            return Err(HubError::QueueFull {
                max: MAX_PENDING_C2D,
            });
        }
        r.queue.push_back(Queued {
            topic,
            payload,
            pid: None,
            sent_before: false,
        });
        let k = key(identity);
        self.changed(&k);
        self.deliver(&k);
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Fault injection

    /// The identity's next `n` twin requests (GET or PATCH) are answered
    /// with `status` (429, 500, …) and a small JSON error body instead of
    /// the real result; a failed PATCH is not applied.
    pub fn fail_next_twin_ops(
        &mut self,
        identity: &Identity,
        n: u32,
        status: u16,
    ) -> Result<(), HubError> {
        self.record_mut(identity)?.twin_failures = (n, status);
        Ok(())
    }

    /// The identity's next twin GET is answered 200 with a body that is not
    /// JSON.
    pub fn malformed_twin_body_next(&mut self, identity: &Identity) -> Result<(), HubError> {
        self.record_mut(identity)?.malformed_get_next = true;
        Ok(())
    }

    /// CONNECTs of this identity are refused with `code` until monotonic
    /// `until` (checked once the username names the identity, before the
    /// credentials). `ConnectReturnCode::Accepted` turns this off.
    pub fn refuse_connects_until(
        &mut self,
        identity: &Identity,
        until: Instant,
        code: ConnectReturnCode,
    ) -> Result<(), HubError> {
        let until_ms = until.as_millis();
        self.record_mut(identity)?.refuse_until = (!code.is_accepted()).then_some((until_ms, code));
        Ok(())
    }

    /// Holds back the identity's twin answers, and the results of
    /// deadline-tracked method calls to it, by `delay` (zero turns this
    /// off): a slow hub. A delayed method result still counts as answered
    /// if the answer itself arrived before the deadline.
    pub fn delay_answers(&mut self, identity: &Identity, delay: Duration) -> Result<(), HubError> {
        self.record_mut(identity)?.answer_delay_ms = millis(delay);
        Ok(())
    }

    /// The hub closes the connection without a word (a network failure as
    /// the hub sees it); the will is published.
    pub fn drop_connection(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::Dropped);
    }

    /// The next `n` CONNECTs are refused with `code` (before any other
    /// check). `ConnectReturnCode::Accepted` or `n == 0` turns this off.
    pub fn refuse_connects(&mut self, n: u32, code: ConnectReturnCode) {
        self.faults.refuse_connects = (n, (!code.is_accepted()).then_some(code));
    }

    /// While `true`, PINGREQs are counted but not answered.
    pub fn silence_pingresp(&mut self, silent: bool) {
        self.faults.silence_pingresp = silent;
    }

    /// While `true`, no PUBACK is sent for any QoS 1 PUBLISH from a client:
    /// telemetry is still stored and twin and method messages still
    /// processed.
    pub fn withhold_pubacks(&mut self, withhold: bool) {
        self.faults.withhold_pubacks = withhold;
    }

    /// Queues arbitrary bytes for the client (a QoS 2 PUBLISH, garbage, a
    /// stray PUBACK, …), after anything already queued. Ignored on a closed
    /// connection.
    pub fn send_raw(&mut self, conn: ConnId, bytes: Bytes) {
        if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.is_open()) {
            c.tx.extend_from_slice(&bytes);
            self.touched.insert(conn);
        }
    }

    // -----------------------------------------------------------------------
    // Packet handling

    fn on_packet(&mut self, conn: ConnId, now_ms: u64, unix_secs: u64, packet: Packet) {
        let connected = self.conns.get(&conn).is_some_and(|c| c.client_id.is_some());
        match packet {
            Packet::Connect(c) if !connected => self.on_connect(conn, now_ms, unix_secs, &c),
            _ if !connected => self.violation(conn, Violation::NotConnectFirst),
            Packet::Connect(_) => self.violation(conn, Violation::SecondConnect),
            Packet::Publish(p) => self.on_publish(conn, now_ms, p),
            Packet::Puback(pid) => self.on_puback(conn, pid),
            Packet::Subscribe(s) => self.on_subscribe(conn, &s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(conn, &u),
            Packet::Pingreq => {
                self.counters.pings = self.counters.pings.saturating_add(1);
                if !self.faults.silence_pingresp {
                    self.send(conn, &Packet::Pingresp);
                }
            }
            Packet::Disconnect => self.close(conn, CloseReason::ClientDisconnected),
            other => self.violation(conn, Violation::UnexpectedPacket(other.packet_type())),
        }
    }

    /// Runs the CONNECT checks of the module docs; on success the identity
    /// key and the token expiry (Unix seconds).
    fn check_connect(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        now_ms: u64,
        unix_secs: u64,
    ) -> Result<(String, Option<u64>, Option<String>), ConnectReturnCode> {
        use ConnectReturnCode as Code;
        if let (n @ 1.., Some(code)) = self.faults.refuse_connects {
            self.faults.refuse_connects.0 = n - 1;
            return Err(code);
        }
        if connect.keep_alive() > MAX_KEEP_ALIVE_SECS {
            return Err(Code::IdentifierRejected);
        }
        let username = connect
            .username()
            .and_then(|u| Username::parse(u.as_str()).ok())
            .ok_or(Code::BadUserNameOrPassword)?;
        if self.authenticate
            && !username
                .host_name
                .as_str()
                .eq_ignore_ascii_case(&self.host_name)
        {
            return Err(Code::BadUserNameOrPassword);
        }
        let k = key(&username.identity);
        if connect.client_id().as_str() != k {
            return Err(Code::IdentifierRejected);
        }
        if let Some((until, code)) = self.identities.get(&k).and_then(|r| r.refuse_until) {
            if now_ms < until {
                return Err(code);
            }
        }
        let model_id = username.model_id().map(String::from);
        if !self.authenticate {
            self.identities
                .entry(k.clone())
                .or_insert_with(|| Record::new(username.identity.clone(), None));
            return Ok((k, None, model_id));
        }
        let record = self.identities.get(&k).ok_or(Code::NotAuthorized)?;
        let (primary, secondary) = match &record.auth {
            Some(Authentication::Sas { primary, secondary }) => (primary, secondary.as_ref()),
            Some(x509 @ Authentication::X509 { .. }) => {
                let thumbprint = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.thumbprint.as_deref())
                    .ok_or(Code::NotAuthorized)?;
                if !x509.matches_thumbprint(thumbprint) {
                    return Err(Code::BadUserNameOrPassword);
                }
                return Ok((k, None, model_id));
            }
            None => return Err(Code::NotAuthorized),
        };
        let token = connect
            .password()
            .and_then(|p| core::str::from_utf8(p).ok())
            .and_then(|p| SasToken::parse(p).ok())
            .ok_or(Code::BadUserNameOrPassword)?;
        if token.resource_uri() != record.identity.resource_uri(&self.host_name) {
            return Err(Code::NotAuthorized);
        }
        // `verify` compares in constant time; both keys are always tried,
        // so the time taken does not tell which one matched.
        let with_primary = token.verify(primary);
        let with_secondary = secondary.is_some_and(|key| token.verify(key));
        if !(with_primary | with_secondary) {
            return Err(Code::BadUserNameOrPassword);
        }
        if token.is_expired_at(unix_secs) {
            return Err(Code::NotAuthorized);
        }
        Ok((k, Some(token.expiry_unix_secs()), model_id))
    }

    fn on_connect(&mut self, conn: ConnId, now_ms: u64, unix_secs: u64, connect: &Connect) {
        let (k, expiry, model_id) = match self.check_connect(conn, connect, now_ms, unix_secs) {
            Ok(ok) => ok,
            Err(code) => return self.refuse(conn, code),
        };
        // One connection per identity: the older one goes.
        if let Some(old) = self.identities.get(&k).and_then(|r| r.conn) {
            self.counters.evictions = self.counters.evictions.saturating_add(1);
            self.close(old, CloseReason::Evicted);
        }
        let clean = connect.clean_session();
        let Some(r) = self.identities.get_mut(&k) else {
            return;
        };
        let session_present = !clean && r.session_kept;
        let journal = r.session_kept == clean || (clean && !r.queue.is_empty());
        if clean {
            r.subscriptions.clear();
            r.queue.clear();
        }
        r.session_kept = !clean;
        r.conn = Some(conn);
        r.model_id = model_id;
        if journal {
            self.changed(&k);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.client_id = Some(k.clone());
        c.keep_alive_ms = u64::from(connect.keep_alive()).saturating_mul(1000);
        c.last_rx_ms = now_ms;
        c.clean_session = clean;
        c.will = connect.last_will().cloned();
        c.token_expiry = expiry.map(|se| {
            let left_ms = se.saturating_sub(unix_secs).saturating_mul(1000);
            (se, now_ms.saturating_add(left_ms))
        });
        c.send(&Packet::Connack(Connack::new(
            session_present,
            ConnectReturnCode::Accepted,
        )));
        self.counters.connects_accepted = self.counters.connects_accepted.saturating_add(1);
        self.deliver(&k);
    }

    fn refuse(&mut self, conn: ConnId, code: ConnectReturnCode) {
        self.counters.connects_refused = self.counters.connects_refused.saturating_add(1);
        self.send(conn, &Packet::Connack(Connack::new(false, code)));
        self.close(conn, CloseReason::Refused(code));
    }

    fn on_publish(&mut self, conn: ConnId, now_ms: u64, publish: Publish) {
        if publish.qos() == QoS::ExactlyOnce {
            return self.violation(conn, Violation::Qos2);
        }
        let Some(k) = self.conns.get(&conn).and_then(|c| c.client_id.clone()) else {
            return;
        };
        let Some(identity) = self.identities.get(&k).map(|r| r.identity.clone()) else {
            return;
        };
        let (dup, qos, retain, pid) = (
            publish.dup(),
            publish.qos(),
            publish.retain(),
            publish.pid(),
        );
        let (topic, payload) = publish.into_parts();
        match crate::topic::parse_device_topic(topic.as_str()) {
            Ok(DeviceTopic::Telemetry {
                device_id,
                module_id,
                mut properties,
            }) if is_own(&identity, device_id, module_id) => {
                let size = payload.len().saturating_add(properties.encoded_len());
                if size > MAX_TELEMETRY_SIZE {
                    return self.violation(conn, Violation::MessageTooLarge { size });
                }
                if retain {
                    let _ = properties.add_application(self.retain_property.name(), "true");
                }
                let upstream = self.route(&identity, &properties, &payload);
                if upstream {
                    self.telemetry.push(Telemetry {
                        identity,
                        properties,
                        payload,
                        qos,
                        dup,
                        conn,
                    });
                }
                self.puback(conn, pid);
            }
            Ok(DeviceTopic::TwinGet { request_id }) => {
                self.puback(conn, pid);
                self.on_twin_request(conn, now_ms, &k, request_id, None);
            }
            Ok(DeviceTopic::TwinPatchReported { request_id }) => {
                self.puback(conn, pid);
                self.on_twin_request(conn, now_ms, &k, request_id, Some(&payload));
            }
            Ok(DeviceTopic::MethodResponse { status, request_id }) => {
                self.puback(conn, pid);
                if self
                    .method_calls
                    .get(request_id)
                    .is_some_and(|c| c.key == k)
                {
                    let call = self.method_calls.remove(request_id);
                    let request_id = RequestId::from_wire(request_id);
                    if call.is_some_and(|c| c.deadline.is_some()) {
                        let result = MethodResult {
                            request_id,
                            identity,
                            outcome: MethodOutcome::Answered { status, payload },
                        };
                        let delay = self.identities.get(&k).map_or(0, |r| r.answer_delay_ms);
                        if delay > 0 {
                            self.delayed.push(Delayed {
                                at_ms: now_ms.saturating_add(delay),
                                what: DelayedWhat::MethodResult(result),
                            });
                        } else {
                            self.method_results.push_back(result);
                        }
                    } else {
                        self.method_responses.push(MethodResponse {
                            request_id,
                            identity,
                            status,
                            payload,
                        });
                    }
                }
            }
            _ => self.violation(conn, Violation::ForeignTopic),
        }
    }

    /// Applies the routes to a telemetry message of `identity`; whether it
    /// goes upstream (stored as telemetry): when no route takes it, or a
    /// route taking it says `$upstream`.
    fn route(
        &mut self,
        identity: &Identity,
        properties: &MessageProperties,
        payload: &Bytes,
    ) -> bool {
        let (Some(module), Some(output)) =
            (identity.module_id(), properties.output_name.as_deref())
        else {
            return true;
        };
        let taken: Vec<(String, RouteSink)> = self
            .routes
            .iter()
            .filter(|(_, r)| r.matches(module, output))
            .map(|(name, r)| (name.clone(), r.sink.clone()))
            .collect();
        if taken.is_empty() {
            return true;
        }
        let mut upstream = false;
        for (name, sink) in taken {
            let (to_module, input) = match sink {
                RouteSink::Upstream => {
                    upstream = true;
                    continue;
                }
                RouteSink::ModuleInput { module, input } => (module, input),
            };
            let mut routed = properties.clone();
            routed.output_name = None;
            routed.connection_device_id = Some(String::from(identity.device_id().as_str()));
            routed.connection_module_id = Some(String::from(module.as_str()));
            let device = identity.device_id().clone();
            let result =
                self.send_module_input(&device, &to_module, &input, routed, payload.clone());
            match result {
                Ok(()) => {
                    self.counters.messages_routed = self.counters.messages_routed.saturating_add(1);
                }
                Err(error) => {
                    self.counters.route_failures = self.counters.route_failures.saturating_add(1);
                    self.route_failures.push(RouteFailure {
                        route: name,
                        from: identity.clone(),
                        to: Identity::module(device, to_module),
                        error,
                    });
                }
            }
        }
        upstream
    }

    fn puback(&mut self, conn: ConnId, pid: Option<Pid>) {
        let Some(pid) = pid else { return };
        if self.faults.withhold_pubacks {
            self.counters.pubacks_withheld = self.counters.pubacks_withheld.saturating_add(1);
        } else {
            self.send(conn, &Packet::Puback(pid));
        }
    }

    /// A twin GET (`patch` is `None`) or reported PATCH.
    fn on_twin_request(
        &mut self,
        conn: ConnId,
        now_ms: u64,
        k: &str,
        request_id: &str,
        patch: Option<&Bytes>,
    ) {
        let (Some(r), Some(c)) = (self.identities.get_mut(k), self.conns.get_mut(&conn)) else {
            return;
        };
        let rid = RequestId::from_wire(request_id);
        if r.granted(TWIN_RESPONSE_FILTER).is_none() {
            self.counters.twin_requests_unanswered =
                self.counters.twin_requests_unanswered.saturating_add(1);
            return;
        }
        let (status, version, body): (u16, Option<u64>, Bytes) = if r.twin_failures.0 > 0 {
            r.twin_failures.0 -= 1;
            let status = r.twin_failures.1;
            let mut body = String::from("{\"errorCode\":");
            topic_push_u64(
                u64::from(status).saturating_mul(1000).saturating_add(1),
                &mut body,
            );
            body.push_str(",\"message\":\"injected by Hub\"}");
            (status, None, body.into())
        } else if let Some(patch) = patch {
            match r.twin.try_patch_reported(patch) {
                Ok(v) => {
                    self.changes.insert(String::from(k), r.identity.clone());
                    (204, Some(v), Bytes::new())
                }
                Err(PatchError::NotAnObject) => (
                    400,
                    None,
                    Bytes::from_static(
                        b"{\"errorCode\":400004,\"message\":\"malformed twin patch\"}",
                    ),
                ),
                Err(PatchError::TooLarge(..)) => (
                    413,
                    None,
                    Bytes::from_static(
                        b"{\"errorCode\":413001,\"message\":\"reported properties over 32 KB\"}",
                    ),
                ),
            }
        } else if core::mem::take(&mut r.malformed_get_next) {
            (
                200,
                None,
                Bytes::from_static(b"{\"desired\":{\"$version\":"),
            )
        } else {
            (200, None, r.twin.get_body().into())
        };
        let topic = hub::twin_response(status, &rid, version);
        if r.answer_delay_ms > 0 {
            self.delayed.push(Delayed {
                at_ms: now_ms.saturating_add(r.answer_delay_ms),
                what: DelayedWhat::TwinAnswer { conn, topic, body },
            });
        } else {
            c.send_publish(topic, QosPid::AtMostOnce, body, false);
        }
    }

    fn on_puback(&mut self, conn: ConnId, pid: Pid) {
        let Some(r) = self
            .conns
            .get(&conn)
            .and_then(|c| c.client_id.as_ref())
            .and_then(|k| self.identities.get_mut(k))
        else {
            return;
        };
        let before = r.queue.len();
        r.queue.retain(|q| q.pid != Some(pid));
        if r.queue.len() != before {
            let identity = r.identity.clone();
            self.changes.insert(key(&identity), identity);
        }
    }

    fn on_subscribe(&mut self, conn: ConnId, subscribe: &Subscribe) {
        let Some(k) = self.conns.get(&conn).and_then(|c| c.client_id.clone()) else {
            return;
        };
        let Some(r) = self.identities.get_mut(&k) else {
            return;
        };
        let mut codes = Vec::with_capacity(subscribe.filters().len());
        for (filter, qos) in subscribe.filters() {
            let granted = match qos {
                QoS::AtMostOnce => QoS::AtMostOnce,
                QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
            };
            let filter = filter.as_str();
            let code = if !r.may_subscribe(filter, &self.extra_filters) {
                SubscribeReturnCode::Failure
            } else if let Some(slot) = r.subscriptions.iter_mut().find(|(f, _)| f == filter) {
                slot.1 = granted;
                SubscribeReturnCode::Success(granted)
            } else if r.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                SubscribeReturnCode::Failure
            } else {
                r.subscriptions.push((String::from(filter), granted));
                SubscribeReturnCode::Success(granted)
            };
            codes.push(code);
        }
        if let Ok(suback) = Suback::new(subscribe.pid(), codes) {
            self.send(conn, &Packet::Suback(suback));
        }
        self.changed(&k);
        self.deliver(&k);
    }

    fn on_unsubscribe(&mut self, conn: ConnId, unsubscribe: &Unsubscribe) {
        if let Some(r) = self
            .conns
            .get(&conn)
            .and_then(|c| c.client_id.as_ref())
            .and_then(|k| self.identities.get_mut(k))
        {
            r.subscriptions
                .retain(|(f, _)| !unsubscribe.filters().iter().any(|u| u.as_str() == f));
            let identity = r.identity.clone();
            self.changes.insert(key(&identity), identity);
        }
        self.send(conn, &Packet::Unsuback(unsubscribe.pid()));
    }

    /// Sends the identity's queued messages that are not in flight, if it
    /// is connected and subscribed to its delivery filter.
    fn deliver(&mut self, k: &str) {
        let Some(r) = self.identities.get_mut(k) else {
            return;
        };
        let (Some(granted), Some(c)) = (
            r.granted(&r.delivery_filter()),
            r.conn.and_then(|id| self.conns.get_mut(&id)),
        ) else {
            return;
        };
        let mut in_use: Vec<Pid> = r.queue.iter().filter_map(|q| q.pid).collect();
        let mut first_sends = false;
        if let Some(id) = r.conn {
            if r.queue.iter().any(|q| q.pid.is_none()) {
                self.touched.insert(id);
            }
        }
        for q in r.queue.iter_mut().filter(|q| q.pid.is_none()) {
            first_sends |= !q.sent_before;
            let qospid = if granted == QoS::AtMostOnce {
                QosPid::AtMostOnce
            } else {
                let pid = c.alloc_pid(&in_use);
                in_use.push(pid);
                q.pid = Some(pid);
                QosPid::AtLeastOnce(pid)
            };
            c.send_publish(q.topic.clone(), qospid, q.payload.clone(), q.sent_before);
            q.sent_before = true;
        }
        // At QoS 0 there is no PUBACK to wait for.
        let before = r.queue.len();
        r.queue.retain(|q| q.pid.is_some());
        if first_sends || r.queue.len() != before {
            let identity = r.identity.clone();
            self.changes.insert(key(&identity), identity);
        }
    }

    // -----------------------------------------------------------------------
    // Helpers

    fn send(&mut self, conn: ConnId, packet: &Packet) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.send(packet);
        }
    }

    /// The identity's record; created on demand when authentication is
    /// skipped.
    fn record_mut(&mut self, identity: &Identity) -> Result<&mut Record, HubError> {
        let k = key(identity);
        if self.authenticate {
            self.identities.get_mut(&k).ok_or(HubError::UnknownIdentity)
        } else {
            Ok(self
                .identities
                .entry(k)
                .or_insert_with(|| Record::new(identity.clone(), None)))
        }
    }

    fn token_expired(&self, conn: ConnId, unix_secs: u64) -> bool {
        self.conns
            .get(&conn)
            .filter(|c| c.is_live())
            .and_then(|c| c.token_expiry)
            .is_some_and(|(se, _)| unix_secs >= se)
    }

    fn violation(&mut self, conn: ConnId, violation: Violation) {
        self.close(conn, CloseReason::ProtocolViolation(violation));
    }

    /// Closes a connection (no effect if closed): detaches it from its
    /// identity, forgets the session if it was clean, publishes the will
    /// unless the reason says otherwise.
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| c.is_open()) else {
            return;
        };
        c.closed = Some(reason);
        c.rx.clear();
        self.touched.insert(conn);
        let will = c.will.take().filter(|_| reason.publishes_will());
        let clean = c.clean_session;
        let Some(k) = c.client_id.clone() else {
            if reason == CloseReason::ConnectTimeout {
                self.counters.connect_timeouts = self.counters.connect_timeouts.saturating_add(1);
            }
            return;
        };
        match reason {
            CloseReason::KeepAliveTimeout => {
                self.counters.keep_alive_timeouts =
                    self.counters.keep_alive_timeouts.saturating_add(1);
            }
            CloseReason::TokenExpired => {
                self.counters.token_expiries = self.counters.token_expiries.saturating_add(1);
            }
            CloseReason::ProtocolViolation(_) => {
                self.counters.protocol_violations =
                    self.counters.protocol_violations.saturating_add(1);
            }
            _ => {}
        }
        let Some(r) = self.identities.get_mut(&k).filter(|r| r.conn == Some(conn)) else {
            return;
        };
        r.conn = None;
        for q in &mut r.queue {
            q.pid = None;
        }
        if clean {
            r.subscriptions.clear();
            r.session_kept = false;
        }
        let identity = r.identity.clone();
        if clean {
            self.changes.insert(k, identity.clone());
        }
        if let Some(will) = will {
            self.publish_will(conn, identity, &will);
        }
    }

    fn publish_will(&mut self, conn: ConnId, identity: Identity, will: &LastWill) {
        let Ok(DeviceTopic::Telemetry {
            device_id,
            module_id,
            mut properties,
        }) = crate::topic::parse_device_topic(will.topic().as_str())
        else {
            return;
        };
        if !is_own(&identity, device_id, module_id) {
            return;
        }
        let _ = properties.add_application("iothub-MessageType", "Will");
        if will.retain() {
            let _ = properties.add_application(self.retain_property.name(), "true");
        }
        self.telemetry.push(Telemetry {
            identity,
            properties,
            payload: will.message().clone(),
            qos: will.qos(),
            dup: false,
            conn,
        });
    }
}

/// A method or input name the hub sends as it is: not empty, and without
/// `/`, `+`, `#` or U+0000 (the topic builders could percent-encode them,
/// but the official SDKs other than Python's do not decode names, so the
/// hub keeps to names every device reads the same).
fn check_name(name: &str) -> Result<(), HubError> {
    if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
        return Err(HubError::InvalidName);
    }
    Ok(())
}

/// A duration in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a telemetry topic's ids are the identity's own.
fn is_own(identity: &Identity, device_id: &str, module_id: Option<&str>) -> bool {
    identity.device_id().as_str() == device_id
        && identity.module_id().map(ModuleId::as_str) == module_id
}

fn patch_error(e: PatchError) -> HubError {
    match e {
        PatchError::NotAnObject => HubError::NotAnObject,
        PatchError::TooLarge(size, max) => HubError::TooLarge { size, max },
    }
}

fn check_c2d_size(properties: &MessageProperties, payload: &Bytes) -> Result<(), HubError> {
    let size = payload.len().saturating_add(properties.encoded_len());
    if size > MAX_C2D_SIZE {
        return Err(HubError::TooLarge {
            size,
            max: MAX_C2D_SIZE,
        });
    }
    Ok(())
}

/// Appends the decimal form of `n`.
fn topic_push_u64(n: u64, out: &mut String) {
    use core::fmt::Write as _;
    // Writing into a `String` never fails.
    let _ = write!(out, "{n}");
}
