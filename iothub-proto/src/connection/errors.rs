//! The errors every connection shares, whatever the session on top.

use core::fmt;
use core::time::Duration;

use crate::mqtt::{ConnectReturnCode, DecodeError, PacketType};

/// An impossible configuration value ([`session::Config`](crate::session::Config)
/// or [`provisioning::Config`](crate::provisioning::Config)): the caller
/// misused the API when building the session.
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
    /// [`MAX_IN_FLIGHT_LIMIT`](crate::session::MAX_IN_FLIGHT_LIMIT).
    MaxInFlight(usize),
    /// `max_pending_requests` must be at least 1.
    MaxPendingRequests,
    /// `max_inbound_pending` must be at least 1.
    MaxInboundPending,
    /// `max_packet_size` is below [`MIN_MAX_PACKET_SIZE`](super::MIN_MAX_PACKET_SIZE).
    MaxPacketSize(usize),
    /// The (DPS) api-version is empty.
    EmptyApiVersion,
    /// The will's properties break a rule.
    WillProperties(crate::session::PropertyProblem),
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
            ConfigError::EmptyApiVersion => f.write_str("the api-version is empty"),
            ConfigError::WillProperties(p) => write!(f, "will properties: {p}"),
            ConfigError::WillTooLarge(n) => write!(f, "will body of {n} bytes is over 65535"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// The peer broke the protocol. The session ends the connection (the
/// adapter is told to close it) and reconnects after a backoff (or gives
/// up, by its own rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes do not decode as MQTT 3.1.1 (including a packet over
    /// [`Config::max_packet_size`](crate::session::Config::max_packet_size),
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

/// The hub refused the CONNECT: a CONNACK return code other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectRefused {
    /// The return code (never [`ConnectReturnCode::Accepted`]).
    pub code: ConnectReturnCode,
}

impl ConnectRefused {
    /// Whether the credentials were refused (codes 4 and 5); see
    /// [`AuthFailurePolicy`](crate::session::AuthFailurePolicy).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self.code,
            ConnectReturnCode::BadUserNameOrPassword | ConnectReturnCode::NotAuthorized
        )
    }

    /// Whether connecting again is useful: only code 3 (server
    /// unavailable) is retried with normal backoff; codes 4 and 5 follow the
    /// [`AuthFailurePolicy`](crate::session::AuthFailurePolicy); codes 1 and 2 stop
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

/// Why the transport closed, as the adapter saw it. Passed to
/// [`Driven::handle_transport_closed`](super::Driven::handle_transport_closed).
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

/// Why a connection (or a connection attempt) ended: the same for the
/// device session and the provisioning session. Carried by their
/// `Event::Disconnected`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The transport failed or was closed (reported by the adapter).
    Transport(TransportClosed),
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The peer refused the CONNECT.
    Refused(ConnectRefused),
    /// No CONNACK within the configuration's `connect_timeout`.
    ConnackTimeout,
    /// No PINGRESP within the configuration's `ping_timeout`: the
    /// connection is dead.
    PingTimeout,
    /// Provisioning: no SUBACK within `connect_timeout`.
    SubackTimeout,
    /// Provisioning: no answer to a request within `response_timeout`.
    ResponseTimeout,
    /// Device: a clean disconnect to reconnect with a fresh SAS token.
    TokenRenewal,
    /// Device: the fixed SAS token expired.
    TokenExpired,
    /// The session closed the connection itself, cleanly: the application
    /// asked ([`Session::disconnect`](crate::session::Session::disconnect),
    /// [`provisioning::Session::cancel`](crate::provisioning::Session::cancel)),
    /// or its work is done (a registration that finished).
    Requested,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Transport(t) => fmt::Display::fmt(t, f),
            DisconnectReason::Protocol(p) => fmt::Display::fmt(p, f),
            DisconnectReason::Refused(r) => write!(f, "the connection was refused: {r}"),
            DisconnectReason::ConnackTimeout => f.write_str("no CONNACK in time"),
            DisconnectReason::PingTimeout => f.write_str("no PINGRESP in time"),
            DisconnectReason::SubackTimeout => f.write_str("no SUBACK in time"),
            DisconnectReason::ResponseTimeout => f.write_str("no answer to the request in time"),
            DisconnectReason::TokenRenewal => f.write_str("reconnecting with a fresh SAS token"),
            DisconnectReason::TokenExpired => f.write_str("the SAS token expired"),
            DisconnectReason::Requested => f.write_str("closed by the session"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_code() {
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
