//! Errors of the provisioning session, split by who is at fault:
//!
//! | who | type | examples |
//! |---|---|---|
//! | the peer broke the protocol | [`ProtocolError`], [`ResponseError`] | a decode error, a 200 without `operationId` |
//! | DPS said no | [`ConnectRefused`], [`ServiceFailure`], [`RegistrationFailure`] | CONNACK 5 (wrong key), 401, status `failed` |
//! | the caller misused the API | [`ConfigError`] | a zero timeout |
//! | the transport failed | [`TransportClosed`] | passed in by the adapter |
//! | time ran out | [`ProvisioningError::Timeout`] | the overall limit |
//!
//! What happened to one connection is a [`DisconnectReason`]; what ended
//! the registration, a [`ProvisioningError`].

use alloc::string::String;
use core::fmt;

use super::response::{RegistrationStatus, ResponseError, ServiceError};
pub use crate::connection::{
    ConfigError, ConnectRefused, DisconnectReason, ProtocolError, TransportClosed,
};

/// DPS answered a request with a status other than 200 / 202 and it was
/// not (or no longer) worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ServiceFailure {
    /// The status from the response topic (400, 401, 404, 429, 500, …).
    pub status: u16,
    /// The error body (every member optional).
    pub error: ServiceError,
}

impl ServiceFailure {
    /// Whether trying again later may succeed: 429 and 5xx (reported only
    /// once [`Config::max_throttle_retries`](super::Config::max_throttle_retries)
    /// were used up).
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        self.status == 429 || (500..=599).contains(&self.status)
    }
}

impl fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DPS answered status {}", self.status)?;
        if let Some(code) = self.error.error_code {
            write!(f, " (error code {code})")?;
        }
        if let Some(m) = &self.error.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// The registration ended in status `failed` or `disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RegistrationFailure {
    /// `failed` or `disabled`.
    pub status: RegistrationStatus,
    /// The operation id.
    pub operation_id: String,
    /// `registrationState.errorCode`, if sent.
    pub error_code: Option<u64>,
    /// `registrationState.errorMessage`, if sent.
    pub error_message: Option<String>,
}

impl fmt::Display for RegistrationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registration {}", self.status)?;
        if let Some(code) = self.error_code {
            write!(f, " (error code {code})")?;
        }
        if let Some(m) = &self.error_message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// Why the registration ended without an assignment. Carried by
/// [`Event::Failed`](super::Event::Failed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// DPS refused the CONNECT: a wrong key or token (codes 4, 5), a
    /// rejected registration id (2), or the protocol version (1).
    Refused(ConnectRefused),
    /// DPS refused the `$dps/registrations/res/#` subscription.
    SubscriptionRefused,
    /// DPS answered an error status (see [`ServiceFailure::is_retriable`]).
    Service(ServiceFailure),
    /// The registration's status is `failed` or `disabled`.
    Registration(RegistrationFailure),
    /// DPS answered 200 / 202 with a body that is not the documented JSON,
    /// or an assignment without `assignedHub` / `deviceId`, or with values
    /// that are not a valid host name / device id.
    MalformedResponse(ResponseError),
    /// The transport failed more than
    /// [`Config::max_transport_retries`](super::Config::max_transport_retries)
    /// times; this is the last reason.
    TransportRetriesExhausted(DisconnectReason),
    /// [`Config::timeout`](super::Config::timeout) ran out.
    Timeout,
    /// The fixed SAS token ([`ProvisioningAttestation::SasToken`](crate::auth::ProvisioningAttestation::SasToken))
    /// had expired when a connection was to be made.
    TokenExpired,
    /// The CONNECT or a request could not be built (a field over 65,535
    /// bytes).
    InvalidRequest,
    /// [`Session::cancel`](super::Session::cancel) was called.
    Cancelled,
}

impl ProvisioningError {
    /// Whether registering again later (a new session) may succeed: after a
    /// timeout, exhausted transport retries, throttling or a server error.
    /// Not after a refusal, a failed or disabled registration, or a
    /// malformed answer.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Service(s) => s.is_retriable(),
            Self::TransportRetriesExhausted(_) | Self::Timeout => true,
            Self::Refused(r) => r.is_retriable(),
            _ => false,
        }
    }
}

impl fmt::Display for ProvisioningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "DPS refused the connection: {r}"),
            Self::SubscriptionRefused => f.write_str("DPS refused the response subscription"),
            Self::Service(s) => fmt::Display::fmt(s, f),
            Self::Registration(r) => fmt::Display::fmt(r, f),
            Self::MalformedResponse(e) => write!(f, "malformed DPS answer: {e}"),
            Self::TransportRetriesExhausted(last) => {
                write!(f, "gave up after repeated transport failures; last: {last}")
            }
            Self::Timeout => f.write_str("the registration timed out"),
            Self::TokenExpired => f.write_str("the fixed SAS token has expired"),
            Self::InvalidRequest => f.write_str("a request could not be built"),
            Self::Cancelled => f.write_str("the registration was cancelled"),
        }
    }
}

impl core::error::Error for ProvisioningError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::ConnectReturnCode;
    use alloc::string::ToString;

    #[test]
    fn retriable() {
        let s = |status| {
            ProvisioningError::Service(ServiceFailure {
                status,
                error: ServiceError::default(),
            })
        };
        assert!(s(429).is_retriable() && s(503).is_retriable());
        assert!(!s(401).is_retriable() && !s(404).is_retriable());
        assert!(ProvisioningError::Timeout.is_retriable());
        assert!(
            !ProvisioningError::Refused(ConnectRefused {
                code: ConnectReturnCode::NotAuthorized
            })
            .is_retriable()
        );
        assert!(!ProvisioningError::Cancelled.is_retriable());
        let failure = ProvisioningError::Registration(RegistrationFailure {
            status: RegistrationStatus::Failed,
            operation_id: "o".into(),
            error_code: Some(400_209),
            error_message: Some("nope".into()),
        });
        assert!(!failure.is_retriable());
        assert_eq!(
            failure.to_string(),
            "registration failed (error code 400209): nope"
        );
        let e = ServiceFailure {
            status: 401,
            error: ServiceError {
                error_code: Some(401_002),
                message: Some("Unauthorized".into()),
                ..ServiceError::default()
            },
        };
        assert_eq!(
            e.to_string(),
            "DPS answered status 401 (error code 401002): Unauthorized"
        );
    }
}
