//! Tokens signed outside the session
//! ([`Credential::ExternalSigner`]): when to ask for one, what to do
//! with the answer, and the retry of a request that failed.
//!
//! The session never connects without a token that is fresh (before its
//! renewal point, so never expired): it asks with
//! [`Event::TokenRequested`] and holds the `Open` of the transport back
//! until [`Session::provide_token`]. At the renewal point of a
//! connection's token it asks again while the connection goes on, and
//! reconnects once the new token is there (as the key-based renewal does,
//! via [`DisconnectReason::TokenRenewal`]). A request unanswered within
//! [`Config::token_request_timeout`](super::Config::token_request_timeout)
//! or reported failed fails with [`Event::TokenRequestFailed`] and is
//! asked again after a backoff of its own.

use core::time::Duration;

use super::Session;
use super::error::{CommandError, TokenFailure};
use super::event::Event;
use super::state::{State, Trigger};
use super::timer::TimerKind;
use crate::auth::{Credential, SasToken};
use crate::connection::backoff::Backoff;
use crate::connection::{ConnectRefused, DisconnectReason};
use crate::mqtt::ConnectReturnCode;
use crate::time::Instant;

/// Where the token request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing asked.
    Idle,
    /// [`Event::TokenRequested`] is out; [`TimerKind::TokenRequest`] is
    /// its deadline.
    Requested,
    /// A request failed; [`TimerKind::TokenRequest`] is when to ask again.
    Retry,
}

/// The external-signer state of a session.
#[derive(Debug)]
pub(crate) struct External {
    /// The latest token given, and its renewal point in Unix seconds.
    token: Option<(SasToken, u64)>,
    wait: Wait,
    backoff: Backoff,
    /// The session is in `Opening` and holds its `Open` back until a token
    /// comes.
    open_deferred: bool,
    /// The connection's token reached its renewal point: reconnect when
    /// the new one comes.
    renewing: bool,
}

impl External {
    pub(crate) fn new(min: Duration, max: Duration) -> External {
        External {
            token: None,
            wait: Wait::Idle,
            backoff: Backoff::new(min, max),
            open_deferred: false,
            renewing: false,
        }
    }
}

impl Session {
    pub(crate) fn is_external(&self) -> bool {
        matches!(self.config.credential, Credential::ExternalSigner)
    }

    /// The token to CONNECT with at `unix`, if the one held is before its
    /// renewal point (and so not expired).
    pub(crate) fn usable_token(&self, unix: u64) -> Option<(&SasToken, u64)> {
        match &self.external.token {
            Some((token, renew)) if unix < *renew && !token.is_expired_at(unix) => {
                Some((token, *renew))
            }
            _ => None,
        }
    }

    /// Entry of `Opening`: ask for a transport, or, for an external signer
    /// without a fresh token, for a token first.
    pub(crate) fn enter_opening(&mut self, now: Instant) {
        if self.is_external() && self.usable_token(self.link.unix().unwrap_or(0)).is_none() {
            self.external.open_deferred = true;
            self.link.open_later();
            self.request_token(now);
        } else {
            self.link.open();
        }
    }

    /// Asks for a token unless a request is out or waiting for its retry.
    pub(crate) fn request_token(&mut self, now: Instant) {
        if self.external.wait != Wait::Idle {
            return;
        }
        self.external.wait = Wait::Requested;
        self.timers.set(
            TimerKind::TokenRequest,
            now + self.config.token_request_timeout,
        );
        self.emit(Event::TokenRequested {
            lifetime: self.config.sas_lifetime,
        });
    }

    /// The connection's token reached its renewal point.
    pub(crate) fn external_renewal_due(&mut self, now: Instant) {
        self.external.renewing = true;
        self.request_token(now);
    }

    fn token_request_failed(&mut self, now: Instant, reason: TokenFailure) {
        if self.external.wait != Wait::Requested {
            return;
        }
        let retry_in = self.external.backoff.next_delay(self.link.rng());
        self.external.wait = Wait::Retry;
        self.timers.set(TimerKind::TokenRequest, now + retry_in);
        self.emit(Event::TokenRequestFailed { reason, retry_in });
    }

    /// [`TimerKind::TokenRequest`] fired.
    pub(crate) fn on_token_timer(&mut self, now: Instant) {
        match self.external.wait {
            Wait::Requested => self.token_request_failed(now, TokenFailure::TimedOut),
            Wait::Retry => {
                self.external.wait = Wait::Idle;
                if self.usable_token(self.link.unix().unwrap_or(0)).is_none() {
                    self.request_token(now);
                }
            }
            Wait::Idle => {}
        }
    }

    /// The connection ended for `reason`: a token the hub refused is not
    /// used again.
    pub(crate) fn external_connection_ended(&mut self, reason: &DisconnectReason) {
        self.external.renewing = false;
        if let DisconnectReason::Refused(ConnectRefused {
            code: ConnectReturnCode::BadUserNameOrPassword | ConnectReturnCode::NotAuthorized,
        }) = reason
        {
            self.external.token = None;
        }
    }

    /// The session stopped: no request stays open.
    pub(crate) fn external_stopped(&mut self) {
        self.external.wait = Wait::Idle;
        self.external.open_deferred = false;
        self.external.renewing = false;
    }

    /// A token signed outside the session, for a
    /// [`Credential::ExternalSigner`] session, usually the answer to
    /// [`Event::TokenRequested`] (`unix_secs`: the wall-clock time now).
    ///
    /// Its renewal point is [`Config::renewal_percent`](super::Config::renewal_percent)
    /// of its remaining lifetime from `unix_secs` (at least a second). If the session was
    /// waiting for it to open a transport, [`TransportCommand::Open`](super::TransportCommand::Open)
    /// follows; if the current connection's token is due for renewal, the
    /// session reconnects with it (DISCONNECT, then a new transport,
    /// [`DisconnectReason::TokenRenewal`]); otherwise it is kept for the
    /// next connection.
    ///
    /// Refused: [`CommandError::NotExternalSigner`] for another
    /// credential, [`CommandError::TokenExpired`] for a token expired at
    /// `unix_secs` (an open request then fails with
    /// [`TokenFailure::Expired`] and is retried), and
    /// [`CommandError::SessionClosed`] once the session stops.
    pub fn provide_token(
        &mut self,
        now: Instant,
        unix_secs: u64,
        token: SasToken,
    ) -> Result<(), CommandError> {
        let now = self.observe(now, Some(unix_secs));
        let result = self.accept_token(now, unix_secs, token);
        self.after_input(now);
        result
    }

    fn accept_token(
        &mut self,
        now: Instant,
        unix: u64,
        token: SasToken,
    ) -> Result<(), CommandError> {
        if !self.is_external() {
            return Err(CommandError::NotExternalSigner);
        }
        if self.accepting().is_err() {
            return Err(CommandError::SessionClosed);
        }
        let expiry = token.expiry_unix_secs();
        if token.is_expired_at(unix) {
            self.token_request_failed(now, TokenFailure::Expired);
            return Err(CommandError::TokenExpired {
                expiry_unix_secs: expiry,
            });
        }
        let left = expiry - unix;
        // At least a second: a renewal point that rounds down to now
        // would make the token unusable the moment it came, and the
        // session would ask, open, refuse it and ask again without end.
        // (`left` is at least 1, so this is never past the expiry.)
        let renew_after =
            u64::try_from(u128::from(left) * u128::from(self.config.renewal_percent) / 100)
                .unwrap_or(u64::MAX)
                .max(1);
        self.external.token = Some((token, unix.saturating_add(renew_after)));
        if self.external.wait == Wait::Requested {
            self.timers.clear(TimerKind::TokenRequest);
            self.external.wait = Wait::Idle;
        }
        self.external.backoff.reset();
        match self.current() {
            State::Opening if self.external.open_deferred => {
                self.external.open_deferred = false;
                self.link.release_open();
            }
            State::Connected if self.external.renewing => {
                self.apply(
                    now,
                    Trigger::ConnectionEnded(DisconnectReason::TokenRenewal),
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The adapter could not get a token for the open
    /// [`Event::TokenRequested`] (the signer failed or refused): the
    /// request fails at once ([`Event::TokenRequestFailed`] with
    /// [`TokenFailure::Unavailable`]) and is asked again after a backoff.
    /// Ignored when no request is open.
    pub fn token_unavailable(&mut self, now: Instant) {
        let now = self.observe(now, None);
        self.token_request_failed(now, TokenFailure::Unavailable);
        self.after_input(now);
    }
}
