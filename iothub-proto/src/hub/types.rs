//! The public value types of the fake hub: handles, records, counters,
//! close reasons and errors.

use alloc::string::String;
use core::fmt;

use bytes::Bytes;

use crate::auth::Identity;
use crate::mqtt::{ConnectReturnCode, DecodeError, PacketType, QoS};
use crate::properties::MessageProperties;
use crate::topic::RequestId;

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
}

impl CloseReason {
    /// Whether the hub publishes the client's will on this close: on every
    /// close except DISCONNECT and a refused CONNECT (which has no session).
    #[must_use]
    pub fn publishes_will(self) -> bool {
        !matches!(
            self,
            CloseReason::ClientDisconnected | CloseReason::Refused(_)
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

/// A device-to-cloud message the hub received, or a will it published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Telemetry {
    /// Who sent it.
    pub identity: Identity,
    /// Its property bag, decoded. A will carries the extra application
    /// property `iothub-MessageType=Will`; a retained PUBLISH carries
    /// `mqtt-retain=true`.
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
    /// The status the device chose.
    pub status: u16,
    /// The body (JSON or empty).
    pub payload: Bytes,
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
    /// A method or input name that is empty or holds a `/`.
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
            HubError::InvalidName => f.write_str("name must be non-empty and hold no `/`"),
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
