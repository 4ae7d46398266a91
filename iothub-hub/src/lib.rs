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

mod c2d;
mod conn;
pub mod dps;
mod faults;
mod methods;
mod registry;
pub mod routes;
mod telemetry;
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

use self::c2d::{Queued, check_name};
use self::conn::Conn;
use self::faults::{Delayed, DelayedWhat, Faults};
use self::methods::Call;
use self::registry::Record;
use self::routes::{Route, RouteFailure};
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
/// packets close the connection before they are buffered. (DPS reads at
/// most 64 KiB.) A transport that frames MQTT (WebSocket) should refuse a
/// message or frame larger than this before buffering it.
pub const MAX_PACKET_SIZE: usize = 5 + 2 + 65_535 + 2 + MAX_TELEMETRY_SIZE;

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

/// Appends the decimal form of `n`.
fn topic_push_u64(n: u64, out: &mut String) {
    use core::fmt::Write as _;
    // Writing into a `String` never fails.
    let _ = write!(out, "{n}");
}
