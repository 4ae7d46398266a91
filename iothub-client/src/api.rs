//! The values every adapter's API hands out, independent of the runtime:
//! the [`Error`] of client operations, the connection [`Status`], and the
//! items of the inbound streams ([`DesiredUpdate`], [`InputMessage`]).

use std::fmt;

use iothub_proto::provisioning::ProvisioningError;
use iothub_proto::session::{
    AckToken, CommandError, ConnectRefused, ConnectionState, DisconnectReason, Event,
    InboundMessage, MessageFailure, RequestError, Session, StopReason, TokenFailure,
};
use serde_json::Value;

use crate::OptionsError;

/// What went wrong with a client operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The options are invalid: a bad connection string, PEM or session
    /// option.
    Options(OptionsError),
    /// The session refused the command (too large, bad properties, wrong
    /// identity kind, shutting down, …); nothing was queued.
    Command(CommandError),
    /// The telemetry message failed (no acknowledgment in time, expired,
    /// session stopped).
    Message(MessageFailure),
    /// The twin request failed (hub status after retries, timeout, …).
    Request(RequestError),
    /// The hub refused the credentials (CONNACK 4 or 5); the client keeps
    /// retrying per [`AuthFailurePolicy`](iothub_proto::session::AuthFailurePolicy).
    Refused(ConnectRefused),
    /// The session stopped for good.
    Stopped(StopReason),
    /// The client's driver has ended (after `shutdown`, a stop, or the
    /// runtime shutting down).
    Closed,
    /// The operation did not finish within the time the caller gave it
    /// (blocking adapter; the operation itself goes on).
    Timeout,
    /// Provisioning with the Device Provisioning Service failed (refused,
    /// failed or disabled registration, timeout, …; see
    /// [`ProvisioningError::is_retriable`]).
    Provisioning(ProvisioningError),
    /// An IoT Edge module client could not be made: the `IOTEDGE_*`
    /// variables, or the workload API.
    Edge(crate::edge::EdgeError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Options(e) => fmt::Display::fmt(e, f),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Message(e) => write!(f, "telemetry failed: {e}"),
            Error::Request(e) => write!(f, "twin request failed: {e}"),
            Error::Refused(e) => write!(f, "the hub refused the connection: {e}"),
            Error::Stopped(e) => write!(f, "the client {e}"),
            Error::Closed => f.write_str("the client has stopped"),
            Error::Timeout => f.write_str("timed out waiting for the client"),
            Error::Provisioning(e) => write!(f, "provisioning failed: {e}"),
            Error::Edge(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Options(e) => Some(e),
            Error::Command(e) => Some(e),
            Error::Request(e) => Some(e),
            Error::Refused(e) => Some(e),
            Error::Provisioning(e) => Some(e),
            Error::Edge(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OptionsError> for Error {
    fn from(e: OptionsError) -> Self {
        Error::Options(e)
    }
}

/// The connection as the client sees it, observed with
/// `Client::status`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The session's connection state.
    pub state: ConnectionState,
    /// The connection number (0 before the first CONNECT, then 1, 2, …).
    pub connection: u64,
    /// Why the last connection (or attempt) ended, if one did.
    pub last_disconnect: Option<DisconnectReason>,
    /// Why the session stopped, once it has.
    pub stopped: Option<StopReason>,
    /// Why the last token request of an external signer (the IoT Edge
    /// workload API, a custom signer) failed, if one did since the last
    /// connection: set from
    /// [`Event::TokenRequestFailed`],
    /// cleared once the client connects. The session keeps asking (and
    /// `wait_connected` keeps waiting) meanwhile; this says why it does
    /// not connect.
    pub last_token_failure: Option<TokenRequestFailure>,
}

/// Why a token request of an external signer failed ([`Status::last_token_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequestFailure {
    /// What the session saw: no token in time, the signer failed, or the
    /// token had already expired.
    pub reason: TokenFailure,
    /// What the signer said ([`TokenFailure::Unavailable`]: the workload
    /// API's or the custom signer's error), or why the token it gave was
    /// refused.
    pub detail: Option<String>,
}

impl TokenRequestFailure {
    /// A failure for `reason`, with the signer's `detail` if known.
    #[must_use]
    pub fn new(reason: TokenFailure, detail: Option<String>) -> TokenRequestFailure {
        TokenRequestFailure { reason, detail }
    }
}

impl fmt::Display for TokenRequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.reason),
            None => fmt::Display::fmt(&self.reason, f),
        }
    }
}

/// A desired-properties update.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DesiredUpdate {
    /// The full desired section (after a connection, or a missed
    /// notification): replace your state with it.
    Full {
        /// The desired properties (an object).
        desired: Value,
        /// Its `$version`.
        version: u64,
    },
    /// A patch exactly one version after the last: merge it (`null`
    /// deletes).
    Patch {
        /// The patch (an object).
        patch: Value,
        /// Its `$version`.
        version: u64,
    },
}

/// An IoT Edge module input message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InputMessage {
    /// The input name.
    pub input: String,
    /// The message.
    pub message: InboundMessage,
}

impl Status {
    /// The status of a session, with the last disconnection reason the
    /// adapter saw (from [`Event::Disconnected`])
    /// and no token failure ([`with_token_failure`](Status::with_token_failure)).
    #[must_use]
    pub fn of(session: &Session, last_disconnect: Option<DisconnectReason>) -> Status {
        Status {
            state: session.state(),
            connection: session.connection(),
            last_disconnect,
            stopped: session.stop_reason(),
            last_token_failure: None,
        }
    }

    /// This status with [`last_token_failure`](Status::last_token_failure) set.
    #[must_use]
    pub fn with_token_failure(mut self, failure: Option<TokenRequestFailure>) -> Status {
        self.last_token_failure = failure;
        self
    }

    /// What `wait_connected` returns for this status: `None` while it
    /// should keep waiting; `Ok` once connected; otherwise the
    /// [`failure`](Status::failure).
    #[must_use]
    pub fn connect_outcome(&self) -> Option<Result<(), Error>> {
        if self.state == ConnectionState::Connected {
            return Some(Ok(()));
        }
        self.failure().map(Err)
    }

    /// What waiting for a connection should fail with in this status: the
    /// session stopped ([`Error::Stopped`]), or the hub refused the
    /// credentials and the session waits before trying again
    /// ([`Error::Refused`]).
    #[must_use]
    pub fn failure(&self) -> Option<Error> {
        if let Some(r) = self.stopped {
            return Some(Error::Stopped(r));
        }
        match &self.last_disconnect {
            Some(DisconnectReason::Refused(r))
                if r.is_auth_failure() && self.state == ConnectionState::Backoff =>
            {
                Some(Error::Refused(*r))
            }
            _ => None,
        }
    }
}

impl InputMessage {
    /// An input message received on `input`.
    #[must_use]
    pub fn new(input: String, message: InboundMessage) -> InputMessage {
        InputMessage { input, message }
    }
}

/// A cloud-to-device or module input message as a stream hands it to the
/// application: what the stream reports when the application takes it
/// (its PUBACK token), and the session event it goes back as when it
/// cannot be taken (its stream was dropped with it inside).
pub trait Inbound: Sized {
    /// The token of a QoS 1 message ([`InboundMessage::ack`]).
    fn ack_token(&self) -> Option<AckToken>;
    /// The event to give back to the session
    /// ([`Session::return_inbound`]).
    fn into_event(self) -> Event;
}

impl Inbound for InboundMessage {
    fn ack_token(&self) -> Option<AckToken> {
        self.ack
    }
    fn into_event(self) -> Event {
        Event::C2dMessage(Box::new(self))
    }
}

impl Inbound for InputMessage {
    fn ack_token(&self) -> Option<AckToken> {
        self.message.ack
    }
    fn into_event(self) -> Event {
        Event::InputMessage {
            input: self.input,
            message: Box::new(self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::mqtt::ConnectReturnCode;

    fn status(state: ConnectionState, last: Option<DisconnectReason>) -> Status {
        Status {
            state,
            connection: 1,
            last_disconnect: last,
            stopped: None,
            last_token_failure: None,
        }
    }

    #[test]
    fn failure_of_a_status() {
        let refused = DisconnectReason::Refused(ConnectRefused {
            code: ConnectReturnCode::BadUserNameOrPassword,
        });
        assert!(matches!(
            status(ConnectionState::Backoff, Some(refused.clone())).failure(),
            Some(Error::Refused(_))
        ));
        // Reconnecting after the refusal: not a failure (yet).
        assert!(
            status(ConnectionState::Opening, Some(refused))
                .failure()
                .is_none()
        );
        let unavailable = DisconnectReason::Refused(ConnectRefused {
            code: ConnectReturnCode::ServerUnavailable,
        });
        assert!(
            status(ConnectionState::Backoff, Some(unavailable))
                .failure()
                .is_none()
        );
        let mut stopped = status(ConnectionState::Stopped, None);
        stopped.stopped = Some(StopReason::Requested);
        assert!(matches!(
            stopped.failure(),
            Some(Error::Stopped(StopReason::Requested))
        ));
        assert!(Error::Closed.to_string().contains("stopped"));
        let f = TokenRequestFailure::new(TokenFailure::Unavailable, Some("HSM busy".into()));
        assert_eq!(f.to_string(), "the signer could not sign a token: HSM busy");
        // A token failure alone does not fail `wait_connected`: the session retries.
        assert!(
            status(ConnectionState::Opening, None)
                .with_token_failure(Some(f))
                .failure()
                .is_none()
        );
    }
}
