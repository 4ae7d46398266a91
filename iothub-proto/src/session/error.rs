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

use crate::connection::ConnectRefused;

use super::event::Feature;

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
    }
}
