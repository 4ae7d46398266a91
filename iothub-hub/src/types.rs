//! The public value types of the fake hub: handles, records, counters,
//! close reasons and errors.

use core::fmt;
use std::string::String;
use std::vec::Vec;

use bytes::Bytes;

use super::twin::Twin;
use iothub_proto::auth::{Identity, SharedAccessKey};
use iothub_proto::mqtt::{ConnectReturnCode, DecodeError, PacketType, QoS};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic::RequestId;

/// A connection handle, given by [`Hub::accept`](super::Hub::accept).
/// Handles are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(super) u64);

impl ConnId {
    /// The handle's number (1 for the first accepted connection).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Why a connection ended. See [`Hub::close_reason`](super::Hub::close_reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent DISCONNECT: a clean close, no will.
    ClientDisconnected,
    /// The test reported that the client's transport went away
    /// ([`Hub::client_closed`](super::Hub::client_closed)).
    TransportClosed,
    /// The hub answered CONNACK with this refusal and closed.
    Refused(ConnectReturnCode),
    /// A newer CONNECT of the same identity took over.
    Evicted,
    /// The client was silent for more than 1.5 × its keep-alive.
    KeepAliveTimeout,
    /// The SAS token the client connected with expired.
    TokenExpired,
    /// The client broke a rule of MQTT or of the hub.
    ProtocolViolation(Violation),
    /// Fault injection: [`Hub::drop_connection`](super::Hub::drop_connection).
    Dropped,
    /// The service deleted the identity
    /// ([`Hub::remove_identity`](super::Hub::remove_identity)); no will.
    IdentityDeleted,
    /// No CONNECT was accepted within the connect timeout after the
    /// connection opened ([`Hub::accept`](super::Hub::accept),
    /// [`Hub::set_connect_timeout`](super::Hub::set_connect_timeout)): the
    /// client sent nothing, or not a whole CONNECT. No session, no will.
    ConnectTimeout,
}

impl CloseReason {
    /// Whether the hub publishes the client's will on this close: on every
    /// close except DISCONNECT, a deleted identity, and a connection that
    /// never got a session (a refused CONNECT, a CONNECT timeout).
    #[must_use]
    pub fn publishes_will(self) -> bool {
        !matches!(
            self,
            CloseReason::ClientDisconnected
                | CloseReason::Refused(_)
                | CloseReason::IdentityDeleted
                | CloseReason::ConnectTimeout
        )
    }
}

/// A rule the client broke; the hub closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The bytes are not MQTT 3.1.1.
    Malformed(DecodeError),
    /// The first packet was not CONNECT.
    NotConnectFirst,
    /// A second CONNECT on the same connection.
    SecondConnect,
    /// A PUBLISH with QoS 2 (the hub supports QoS 0 and 1 only).
    Qos2,
    /// A PUBLISH to a topic that is not one of the identity's device→hub
    /// topics (another device's telemetry, a hub→device topic, DPS, …).
    ForeignTopic,
    /// A telemetry message over 256 KB (payload plus property bag).
    MessageTooLarge {
        /// Payload plus encoded property bag, in bytes.
        size: usize,
    },
    /// A packet a client may not send here (CONNACK, SUBACK, PUBREC, …).
    UnexpectedPacket(PacketType),
}

/// The application property the hub adds, with the value `true`, to a
/// message published with RETAIN (IoT Hub stores no retained message; it
/// passes the message on, marked). See [`Hub::set_retain_property`](super::Hub::set_retain_property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RetainProperty {
    /// `mqtt-retain`: the name in Microsoft's current MQTT documentation
    /// ("Communicate with an IoT hub using the MQTT protocol") and the
    /// default of Microsoft's C# device SDK. The default.
    #[default]
    MqttRetain,
    /// `x-opt-retain`: the name in the original product page (the seed
    /// document) and older documentation.
    XOptRetain,
}

impl RetainProperty {
    /// The property name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            RetainProperty::MqttRetain => "mqtt-retain",
            RetainProperty::XOptRetain => "x-opt-retain",
        }
    }

    /// The variant of a name (`mqtt-retain` or `x-opt-retain`, exact).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [RetainProperty::MqttRetain, RetainProperty::XOptRetain]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// A device-to-cloud message the hub received, or a will it published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Telemetry {
    /// Who sent it.
    pub identity: Identity,
    /// Its property bag, decoded. A will carries the extra application
    /// property `iothub-MessageType=Will`; a retained PUBLISH (or will)
    /// carries the [`RetainProperty`] `=true`.
    pub properties: MessageProperties,
    /// The body.
    pub payload: Bytes,
    /// The QoS of the PUBLISH (of the will, for a will).
    pub qos: QoS,
    /// The DUP flag as received (a device resending after a reconnect).
    pub dup: bool,
    /// The connection it arrived on.
    pub conn: ConnId,
}

impl Telemetry {
    /// Whether this is a will message published by the hub.
    #[must_use]
    pub fn is_will(&self) -> bool {
        self.properties.get_application("iothub-MessageType") == Some(Some("Will"))
    }
}

/// A device's answer to a direct method call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodResponse {
    /// The request id [`Hub::invoke_method`](super::Hub::invoke_method) returned.
    pub request_id: RequestId,
    /// The identity that answered.
    pub identity: Identity,
    /// The status the device chose: any integer.
    pub status: i32,
    /// The body (JSON or empty).
    pub payload: Bytes,
}

/// How an identity authenticates, as the registry stores it.
///
/// `Debug` never shows a key (see [`SharedAccessKey`]). `==` compares
/// keys by value (not in constant time: it is for state comparisons, never
/// for authentication).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Authentication {
    /// Symmetric keys: a CONNECT's SAS token must be signed with either.
    Sas {
        /// The primary key.
        primary: SharedAccessKey,
        /// The secondary key, if any.
        secondary: Option<SharedAccessKey>,
    },
    /// X.509 client certificates: the SHA-256 thumbprint (hex of the
    /// digest of the certificate's DER; ASCII case ignored) that the
    /// transport reports for a connection
    /// ([`Hub::accept`](super::Hub::accept))
    /// must be one of these. The CONNECT password is not looked at.
    X509 {
        /// The primary thumbprint.
        primary_thumbprint: String,
        /// The secondary thumbprint, if any.
        secondary_thumbprint: Option<String>,
    },
}

impl PartialEq for Authentication {
    fn eq(&self, other: &Authentication) -> bool {
        let same =
            |a: &SharedAccessKey, b: &SharedAccessKey| a.expose_secret() == b.expose_secret();
        match (self, other) {
            (
                Authentication::Sas { primary, secondary },
                Authentication::Sas {
                    primary: p,
                    secondary: s,
                },
            ) => {
                same(primary, p)
                    && match (secondary, s) {
                        (None, None) => true,
                        (Some(a), Some(b)) => same(a, b),
                        _ => false,
                    }
            }
            (
                Authentication::X509 {
                    primary_thumbprint,
                    secondary_thumbprint,
                },
                Authentication::X509 {
                    primary_thumbprint: p,
                    secondary_thumbprint: s,
                },
            ) => primary_thumbprint == p && secondary_thumbprint == s,
            _ => false,
        }
    }
}

impl Eq for Authentication {}

impl Authentication {
    /// Symmetric-key authentication with a primary key only.
    #[must_use]
    pub fn sas(primary: SharedAccessKey) -> Authentication {
        Authentication::Sas {
            primary,
            secondary: None,
        }
    }

    /// Whether a connection that presented `thumbprint` (if any) matches
    /// an X.509 registration; always false for symmetric keys.
    #[must_use]
    pub fn matches_thumbprint(&self, thumbprint: &str) -> bool {
        match self {
            Authentication::X509 {
                primary_thumbprint,
                secondary_thumbprint,
            } => {
                primary_thumbprint.eq_ignore_ascii_case(thumbprint)
                    || secondary_thumbprint
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(thumbprint))
            }
            Authentication::Sas { .. } => false,
        }
    }
}

/// An entry of the change journal ([`Hub::poll_change`](super::Hub::poll_change)):
/// an identity whose durable state (registration, twin, kept session,
/// pending messages) changed since it was last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The identity exists; read its state with
    /// [`Hub::identity_state`](super::Hub::identity_state).
    Updated(Identity),
    /// The identity was removed.
    Removed(Identity),
}

/// One message waiting for an identity's PUBACK, as stored durably.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedMessage {
    /// The full hub→device topic (with its property bag).
    pub topic: String,
    /// The body.
    pub payload: Bytes,
    /// Whether it was sent before (it is resent with DUP).
    pub sent_before: bool,
}

impl QueuedMessage {
    /// A queued message.
    #[must_use]
    pub fn new(topic: String, payload: Bytes, sent_before: bool) -> QueuedMessage {
        QueuedMessage {
            topic,
            payload,
            sent_before,
        }
    }
}

/// Everything durable the hub keeps about one identity: what an adapter
/// writes to storage after a [`Change`], and gives back to
/// [`Hub::restore_identity`](super::Hub::restore_identity) at start.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IdentityState {
    /// Who.
    pub identity: Identity,
    /// How it authenticates (`None`: only with authentication skipped).
    pub authentication: Option<Authentication>,
    /// Its twin.
    pub twin: Twin,
    /// The subscriptions of its kept (CleanSession 0) session, or `None`
    /// when no session is kept.
    pub session: Option<Vec<(String, QoS)>>,
    /// The C2D or module input messages waiting for its PUBACK, in order.
    pub queue: Vec<QueuedMessage>,
}

impl IdentityState {
    /// A fresh identity: empty twin, no session, no messages.
    #[must_use]
    pub fn new(identity: Identity, authentication: Option<Authentication>) -> IdentityState {
        IdentityState {
            identity,
            authentication,
            twin: Twin::new(),
            session: None,
            queue: Vec::new(),
        }
    }
}

/// How a direct method call made with
/// [`Hub::invoke_method_until`](super::Hub::invoke_method_until) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MethodOutcome {
    /// The device answered.
    Answered {
        /// The status the device chose: any integer.
        status: i32,
        /// The body (JSON or empty).
        payload: Bytes,
    },
    /// No answer came before the deadline (the service answers 504).
    TimedOut,
}

/// The end of one deadline-tracked direct method call, from
/// [`Hub::poll_method_result`](super::Hub::poll_method_result).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodResult {
    /// The request id the call returned.
    pub request_id: RequestId,
    /// The identity called.
    pub identity: Identity,
    /// How it ended.
    pub outcome: MethodOutcome,
}

/// What the hub has counted since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// CONNECTs answered with CONNACK 0.
    pub connects_accepted: u64,
    /// CONNECTs refused (CONNACK 1–5), including injected refusals.
    pub connects_refused: u64,
    /// Connections closed because the same identity connected again.
    pub evictions: u64,
    /// PINGREQs received (answered or not).
    pub pings: u64,
    /// Connections closed for keep-alive silence.
    pub keep_alive_timeouts: u64,
    /// Connections closed because their SAS token expired.
    pub token_expiries: u64,
    /// Connections closed for a [`Violation`].
    pub protocol_violations: u64,
    /// Twin requests ignored because the client had not subscribed to
    /// `$iothub/twin/res/#`.
    pub twin_requests_unanswered: u64,
    /// PUBACKs not sent because of [`Hub::withhold_pubacks`](super::Hub::withhold_pubacks).
    pub pubacks_withheld: u64,
    /// Module messages a route queued for another module's input
    /// ([`Hub::set_route`](super::Hub::set_route)).
    pub messages_routed: u64,
    /// Routed messages that could not be queued ([`Hub::take_route_failures`](super::Hub::take_route_failures)).
    pub route_failures: u64,
    /// Connections closed because no CONNECT was accepted in time
    /// ([`CloseReason::ConnectTimeout`]).
    pub connect_timeouts: u64,
}

/// A service-side call that the hub refused: the test misused the API or
/// asked for something the real service would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// The identity was never added (and authentication is on, so it is
    /// not created on demand).
    UnknownIdentity,
    /// The identity is not connected, or not subscribed to the filter the
    /// operation needs (direct methods: `$iothub/methods/POST/#`).
    NotConnected,
    /// The message is larger than the service allows.
    TooLarge {
        /// Its size in bytes (payload, plus property bag where it counts).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The identity already has this many messages waiting.
    QueueFull {
        /// The limit (50).
        max: usize,
    },
    /// A method or input name that is empty, holds `/`, `+`, `#` or
    /// U+0000, or is too long for an MQTT topic.
    InvalidName,
    /// A twin patch that is not a JSON object.
    NotAnObject,
    /// A module operation on a device identity, or the reverse.
    WrongIdentityKind,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::UnknownIdentity => f.write_str("no such identity"),
            HubError::NotConnected => {
                f.write_str("the identity is not connected or not subscribed")
            }
            HubError::TooLarge { size, max } => {
                write!(f, "message of {size} bytes is over the limit of {max}")
            }
            HubError::QueueFull { max } => write!(f, "{max} messages are already pending"),
            HubError::InvalidName => f.write_str(
                "name must be non-empty, hold no `/`, `+`, `#` or U+0000, and fit in an MQTT topic",
            ),
            HubError::NotAnObject => f.write_str("a twin patch must be a JSON object"),
            HubError::WrongIdentityKind => {
                f.write_str("a module operation needs a module identity, a device one a device")
            }
        }
    }
}

impl core::error::Error for HubError {}

/// The key of an identity in the hub's tables: its MQTT client id.
pub(super) fn key(identity: &Identity) -> String {
    identity.client_id()
}
