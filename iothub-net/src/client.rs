//! The values every adapter's client hands out: its [`Error`], the
//! connection [`Status`] (and what "connected" means for
//! `wait_connected`), and the items of its streams ([`DesiredUpdate`],
//! [`InputMessage`]). The same types in every adapter, so an application
//! can move between runtimes without rewriting its error handling.

use std::fmt;

use iothub_proto::session::{
    CommandError, ConnectRefused, ConnectionState, DisconnectReason, InboundMessage,
    MessageFailure, RequestError, StopReason,
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
            _ => None,
        }
    }
}

impl From<OptionsError> for Error {
    fn from(e: OptionsError) -> Self {
        Error::Options(e)
    }
}

/// The connection as the client sees it.
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
}

impl Status {
    /// What `wait_connected` returns for this status: `None` while it
    /// should keep waiting; `Ok` once connected; [`Error::Refused`] when
    /// the hub refused the credentials (the client retries in the
    /// background) and [`Error::Stopped`] when the session stopped.
    #[must_use]
    pub fn connect_outcome(&self) -> Option<Result<(), Error>> {
        if self.state == ConnectionState::Connected {
            return Some(Ok(()));
        }
        if let Some(r) = self.stopped {
            return Some(Err(Error::Stopped(r)));
        }
        match &self.last_disconnect {
            Some(DisconnectReason::Refused(r))
                if r.is_auth_failure() && self.state == ConnectionState::Backoff =>
            {
                Some(Err(Error::Refused(*r)))
            }
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::mqtt::ConnectReturnCode;

    fn status(state: ConnectionState) -> Status {
        Status {
            state,
            connection: 1,
            last_disconnect: None,
            stopped: None,
        }
    }

    #[test]
    fn connect_outcome() {
        assert!(matches!(
            status(ConnectionState::Connected).connect_outcome(),
            Some(Ok(()))
        ));
        assert!(status(ConnectionState::Opening).connect_outcome().is_none());
        let refused = ConnectRefused {
            code: ConnectReturnCode::NotAuthorized,
        };
        let mut s = status(ConnectionState::Backoff);
        s.last_disconnect = Some(DisconnectReason::Refused(refused));
        assert!(matches!(s.connect_outcome(), Some(Err(Error::Refused(_)))));
        s.state = ConnectionState::Opening;
        assert!(s.connect_outcome().is_none(), "retrying");
        s.stopped = Some(StopReason::Requested);
        assert!(matches!(s.connect_outcome(), Some(Err(Error::Stopped(_)))));
    }
}
