//! Errors of the session, split by who is at fault:
//!
//! | who | type | examples |
//! |---|---|---|
//! | the peer broke the protocol | [`ProtocolError`] | a decode error, a QoS 2 PUBLISH, a second CONNACK |
//! | the hub answered a status | [`HubStatus`], [`ConnectRefused`] | twin 429 / 404, CONNACK 5 |
//! | the caller misused the API | [`CommandError`], [`ConfigError`] | a 300 KB message, a full queue |
//! | the transport failed | [`TransportClosed`] | passed in by the adapter |
//!
//! What happened to a connection is a [`DisconnectReason`], what ended the
//! session a [`StopReason`]; a telemetry message that did not make it
//! fails with a [`MessageFailure`], a twin request with a [`RequestError`].
//! No `std::io::Error` anywhere: the core does no I/O.

use core::fmt;
use core::time::Duration;

use crate::mqtt::{ConnectReturnCode, DecodeError, PacketType};

use super::event::Feature;

/// An impossible [`Config`](super::Config) value: the caller misused the
/// API when building the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// The keep-alive is longer than IoT Hub accepts (1177 s).
    KeepAliveTooLong(Duration),
    /// The keep-alive is shorter than one second but not zero.
    KeepAliveTooShort(Duration),
    /// This duration field must be at least one millisecond.
    ZeroDuration(&'static str),
    /// `backoff_min` must be at least 1 ms and at most `backoff_max`.
    BackoffRange {
        /// The configured minimum.
        min: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// `renewal_percent` must be 1 to 100.
    RenewalPercent(u8),
    /// `max_in_flight` must be 1 to
    /// [`MAX_IN_FLIGHT_LIMIT`](super::config::MAX_IN_FLIGHT_LIMIT).
    MaxInFlight(usize),
    /// `max_pending_requests` must be at least 1.
    MaxPendingRequests,
    /// `max_inbound_pending` must be at least 1.
    MaxInboundPending,
    /// `max_packet_size` is below
    /// [`MIN_MAX_PACKET_SIZE`](super::config::MIN_MAX_PACKET_SIZE).
    MaxPacketSize(usize),
    /// The will's properties break a rule.
    WillProperties(PropertyProblem),
    /// The will's body is over 65,535 bytes.
    WillTooLarge(usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::KeepAliveTooLong(d) => {
                write!(f, "keep-alive {d:?} is longer than IoT Hub's 1177 s")
            }
            ConfigError::KeepAliveTooShort(d) => {
                write!(f, "keep-alive {d:?} is neither zero nor at least 1 s")
            }
            ConfigError::ZeroDuration(field) => write!(f, "`{field}` must be at least 1 ms"),
            ConfigError::BackoffRange { min, max } => write!(
                f,
                "backoff minimum {min:?} must be at least 1 ms and at most the maximum {max:?}"
            ),
            ConfigError::RenewalPercent(p) => write!(f, "renewal percent {p} is not 1 to 100"),
            ConfigError::MaxInFlight(n) => write!(f, "in-flight window {n} is not 1 to 1024"),
            ConfigError::MaxPendingRequests => f.write_str("max_pending_requests must be >= 1"),
            ConfigError::MaxInboundPending => f.write_str("max_inbound_pending must be >= 1"),
            ConfigError::MaxPacketSize(n) => write!(f, "max packet size {n} is below 1024"),
            ConfigError::WillProperties(p) => write!(f, "will properties: {p}"),
            ConfigError::WillTooLarge(n) => write!(f, "will body of {n} bytes is over 65535"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// A message property that may not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PropertyProblem {
    /// An application property name starts with `$`, the prefix of system
    /// properties.
    ReservedPrefix,
    /// An application property is called `iothub-MessageType` (in any
    /// case), which the hub sets itself.
    MessageType,
}

impl fmt::Display for PropertyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PropertyProblem::ReservedPrefix => {
                "an application property name starts with `$`, reserved for system properties"
            }
            PropertyProblem::MessageType => {
                "`iothub-MessageType` is set by the hub, not by the device"
            }
        })
    }
}

/// The peer broke the protocol. The session ends the connection (the
/// adapter is told to close it) and reconnects with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes do not decode as MQTT 3.1.1 (including a packet over
    /// [`Config::max_packet_size`](super::Config::max_packet_size),
    /// [`DecodeError::PacketTooLarge`]).
    Decode(DecodeError),
    /// A packet a hub never sends to a client (CONNECT, SUBSCRIBE,
    /// UNSUBSCRIBE, UNSUBACK, PINGREQ, PUBREC, PUBREL, PUBCOMP, DISCONNECT),
    /// a second CONNACK, or anything but CONNACK before the CONNACK.
    UnexpectedPacket(PacketType),
    /// A PUBLISH with QoS 2, which IoT Hub does not support.
    Qos2Publish,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Decode(e) => write!(f, "malformed packet from the hub: {e}"),
            ProtocolError::UnexpectedPacket(t) => write!(f, "unexpected {t} from the hub"),
            ProtocolError::Qos2Publish => f.write_str("the hub sent a QoS 2 PUBLISH"),
        }
    }
}

impl core::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ProtocolError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

/// The hub answered a request with a status that is not success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HubStatus {
    /// The status code from the response topic (e.g. 400, 404, 429, 500).
    pub status: u16,
}

impl HubStatus {
    /// Whether trying again later may succeed: 429 (throttled) and 5xx.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        self.status == 429 || (500..=599).contains(&self.status)
    }
}

impl fmt::Display for HubStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the hub answered status {}", self.status)
    }
}

impl core::error::Error for HubStatus {}

/// The hub refused the CONNECT: a CONNACK return code other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectRefused {
    /// The return code (never [`ConnectReturnCode::Accepted`]).
    pub code: ConnectReturnCode,
}

impl ConnectRefused {
    /// Whether the credentials were refused (codes 4 and 5); see
    /// [`AuthFailurePolicy`](super::AuthFailurePolicy).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self.code,
            ConnectReturnCode::BadUserNameOrPassword | ConnectReturnCode::NotAuthorized
        )
    }

    /// Whether connecting again is useful: only code 3 (server
    /// unavailable) is retried with normal backoff; codes 4 and 5 follow the
    /// [`AuthFailurePolicy`](super::AuthFailurePolicy); codes 1 and 2 stop
    /// the session.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        self.code == ConnectReturnCode::ServerUnavailable
    }
}

impl fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.code, f)
    }
}

impl core::error::Error for ConnectRefused {}

/// The caller misused the API: the command was refused and nothing was
/// queued.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandError {
    /// The session is stopped or shutting down
    /// ([`Session::disconnect`](super::Session::disconnect)): it accepts no
    /// new work.
    SessionClosed,
    /// The message (topic with its properties, plus body) is over IoT Hub's
    /// 256 KB.
    MessageTooLarge {
        /// The size of topic and body, in bytes.
        size: usize,
        /// The limit, 262,144 bytes.
        max: usize,
    },
    /// A message property breaks a rule.
    InvalidProperties(PropertyProblem),
    /// The queue of waiting telemetry is full; try again after some
    /// messages were acknowledged. Nothing is ever dropped silently.
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// Too many twin requests are pending.
    TooManyRequests {
        /// The configured limit.
        max: usize,
    },
    /// This feature does not exist for this kind of identity (cloud-to-device
    /// messages are for devices, module inputs for modules).
    FeatureNotAvailable(Feature),
    /// The reported-properties patch is not valid JSON.
    InvalidJson(JsonError),
    /// The reported-properties patch is valid JSON but not an object.
    NotJsonObject,
    /// A payload is over its limit (reported properties 32 KB, method
    /// response 128 KB).
    PayloadTooLarge {
        /// The payload size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The connection that carried the method request is gone: the hub
    /// will not accept a response on another connection (and has answered
    /// the caller with a timeout).
    MethodResponseUndeliverable,
    /// The connection that carried the message is gone, or the token was
    /// already used: the PUBACK cannot be sent. The hub redelivers
    /// unacknowledged messages on a later connection.
    AckUndeliverable,
    /// [`Session::provide_token`](super::Session::provide_token) on a
    /// session whose credential is not
    /// [`Credential::ExternalSigner`](crate::auth::Credential::ExternalSigner).
    NotExternalSigner,
    /// [`Session::provide_token`](super::Session::provide_token) with a
    /// token that has already expired: it is never sent.
    TokenExpired {
        /// The token's `se=` expiry, Unix seconds.
        expiry_unix_secs: u64,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::SessionClosed => f.write_str("the session accepts no new work"),
            CommandError::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes is over the limit of {max}")
            }
            CommandError::InvalidProperties(p) => write!(f, "invalid message properties: {p}"),
            CommandError::QueueFull { capacity } => {
                write!(f, "the telemetry queue is full ({capacity} messages)")
            }
            CommandError::TooManyRequests { max } => {
                write!(f, "{max} twin requests are already pending")
            }
            CommandError::FeatureNotAvailable(feature) => {
                write!(f, "{feature:?} is not available for this identity")
            }
            CommandError::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            CommandError::NotJsonObject => {
                f.write_str("a reported-properties patch must be a JSON object")
            }
            CommandError::PayloadTooLarge { size, max } => {
                write!(f, "payload of {size} bytes is over the limit of {max}")
            }
            CommandError::MethodResponseUndeliverable => {
                f.write_str("the connection that carried the method request is gone")
            }
            CommandError::AckUndeliverable => {
                f.write_str("the message cannot be acknowledged on this connection")
            }
            CommandError::NotExternalSigner => {
                f.write_str("the session's credential is not an external signer")
            }
            CommandError::TokenExpired { expiry_unix_secs } => {
                write!(f, "the token expired at {expiry_unix_secs} (Unix seconds)")
            }
        }
    }
}

impl core::error::Error for CommandError {}

/// Why a token request of an
/// [`Credential::ExternalSigner`](crate::auth::Credential::ExternalSigner)
/// session failed ([`Event::TokenRequestFailed`](super::Event::TokenRequestFailed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenFailure {
    /// No token came within
    /// [`Config::token_request_timeout`](super::Config::token_request_timeout).
    TimedOut,
    /// The adapter reported that the signer failed
    /// ([`Session::token_unavailable`](super::Session::token_unavailable)).
    Unavailable,
    /// The token given had already expired.
    Expired,
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenFailure::TimedOut => "no token came in time",
            TokenFailure::Unavailable => "the signer could not sign a token",
            TokenFailure::Expired => "the token given had already expired",
        })
    }
}

impl core::error::Error for TokenFailure {}

/// Why the transport closed, as the adapter saw it. Passed to
/// [`Session::handle_transport_closed`](super::Session::handle_transport_closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportClosed {
    /// The transport could not be opened (DNS, TCP connect, proxy).
    ConnectFailed,
    /// The TLS (or WebSocket) handshake failed.
    HandshakeFailed,
    /// The peer closed the connection (end of stream).
    ClosedByPeer,
    /// Reading or writing failed (reset, broken pipe, timeout).
    Io,
}

impl fmt::Display for TransportClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportClosed::ConnectFailed => "the transport could not be opened",
            TransportClosed::HandshakeFailed => "the TLS or WebSocket handshake failed",
            TransportClosed::ClosedByPeer => "the peer closed the connection",
            TransportClosed::Io => "reading or writing the transport failed",
        })
    }
}

impl core::error::Error for TransportClosed {}

/// Why a connection (or a connection attempt) ended. Carried by
/// [`Event::Disconnected`](super::Event::Disconnected).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The transport failed or was closed (reported by the adapter).
    Transport(TransportClosed),
    /// The hub broke the protocol.
    Protocol(ProtocolError),
    /// The hub refused the CONNECT.
    Refused(ConnectRefused),
    /// No CONNACK within [`Config::connect_timeout`](super::Config::connect_timeout).
    ConnackTimeout,
    /// No PINGRESP within [`Config::ping_timeout`](super::Config::ping_timeout):
    /// the connection is dead.
    PingTimeout,
    /// A clean disconnect to reconnect with a fresh SAS token.
    TokenRenewal,
    /// The fixed SAS token expired.
    TokenExpired,
    /// The application asked for it ([`Session::disconnect`](super::Session::disconnect)).
    Requested,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Transport(t) => fmt::Display::fmt(t, f),
            DisconnectReason::Protocol(p) => fmt::Display::fmt(p, f),
            DisconnectReason::Refused(r) => fmt::Display::fmt(r, f),
            DisconnectReason::ConnackTimeout => f.write_str("no CONNACK in time"),
            DisconnectReason::PingTimeout => f.write_str("no PINGRESP in time"),
            DisconnectReason::TokenRenewal => f.write_str("reconnecting with a fresh SAS token"),
            DisconnectReason::TokenExpired => f.write_str("the SAS token expired"),
            DisconnectReason::Requested => f.write_str("disconnect requested"),
        }
    }
}

/// Why the session stopped for good (no reconnection follows). Carried by
/// [`Event::Stopped`](super::Event::Stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// [`Session::disconnect`](super::Session::disconnect) was called.
    Requested,
    /// The hub refused the CONNECT in a way that retrying cannot fix
    /// (codes 1 and 2, or 4 and 5 under
    /// [`AuthFailurePolicy::Stop`](super::AuthFailurePolicy::Stop)).
    Refused(ConnectRefused),
    /// The fixed SAS token (`SharedAccessSignature=`) has expired and
    /// cannot be renewed: give the session a new credential.
    TokenExpired,
    /// The CONNECT packet could not be built from the configuration
    /// (a field over 65,535 bytes).
    InvalidConnect,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Requested => f.write_str("stopped on request"),
            StopReason::Refused(r) => write!(f, "stopped: {r}"),
            StopReason::TokenExpired => f.write_str("stopped: the fixed SAS token expired"),
            StopReason::InvalidConnect => f.write_str("stopped: the CONNECT cannot be built"),
        }
    }
}

/// Why a telemetry message failed. Every accepted message ends in exactly
/// one [`Event::MessageAcknowledged`](super::Event::MessageAcknowledged),
/// [`Event::MessageSent`](super::Event::MessageSent) (QoS 0) or
/// [`Event::MessageFailed`](super::Event::MessageFailed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageFailure {
    /// No PUBACK within [`Config::message_timeout`](super::Config::message_timeout)
    /// of acceptance. The message may still have reached the hub.
    Timeout,
    /// Its time-to-live ran out before it could be sent; it was never sent.
    Expired,
    /// The session stopped before the message was acknowledged. It may
    /// have reached the hub if it was sent.
    SessionClosed,
    /// A QoS 0 message was lost with its connection before being handed to
    /// the transport; it was never sent.
    ConnectionLost,
}

impl fmt::Display for MessageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageFailure::Timeout => "no acknowledgment in time",
            MessageFailure::Expired => "time-to-live ran out before sending",
            MessageFailure::SessionClosed => "the session stopped",
            MessageFailure::ConnectionLost => "the connection was lost before sending",
        })
    }
}

/// Why a twin request failed. Every accepted request ends in exactly one
/// result event or [`Event::RequestFailed`](super::Event::RequestFailed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestError {
    /// The hub answered this status (after the allowed retries if it was
    /// 429 or 5xx).
    Hub(HubStatus),
    /// No answer within [`Config::request_timeout`](super::Config::request_timeout).
    Timeout,
    /// The answer's body is not the JSON the request expects.
    MalformedResponse(JsonError),
    /// The hub refused the `$iothub/twin/res/#` subscription.
    SubscriptionFailed,
    /// The session stopped first.
    SessionClosed,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Hub(s) => fmt::Display::fmt(s, f),
            RequestError::Timeout => f.write_str("no answer in time"),
            RequestError::MalformedResponse(e) => write!(f, "malformed answer: {e}"),
            RequestError::SubscriptionFailed => {
                f.write_str("the twin response subscription failed")
            }
            RequestError::SessionClosed => f.write_str("the session stopped"),
        }
    }
}

impl core::error::Error for RequestError {}

/// What is wrong with a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON at all, at this line and column (1-based).
    Syntax {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// JSON, but not of the expected shape (an object with `desired` and
    /// `reported` objects for a twin, an object for a patch).
    Shape,
    /// The desired section has no numeric `$version`.
    MissingVersion,
}

impl JsonError {
    pub(crate) fn from_serde(e: &serde_json::Error) -> JsonError {
        JsonError::Syntax {
            line: e.line(),
            column: e.column(),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { line, column } => {
                write!(f, "invalid JSON at line {line}, column {column}")
            }
            JsonError::Shape => f.write_str("JSON of an unexpected shape"),
            JsonError::MissingVersion => f.write_str("no numeric `$version`"),
        }
    }
}

impl core::error::Error for JsonError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_statuses() {
        for s in [429, 500, 503, 599] {
            assert!(HubStatus { status: s }.is_retriable(), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 428, 600] {
            assert!(!HubStatus { status: s }.is_retriable(), "{s}");
        }
        let r = ConnectRefused {
            code: ConnectReturnCode::NotAuthorized,
        };
        assert!(r.is_auth_failure() && !r.is_retriable());
        let r = ConnectRefused {
            code: ConnectReturnCode::ServerUnavailable,
        };
        assert!(!r.is_auth_failure() && r.is_retriable());
    }
}
