//! Every connection state transition, in one place (h11's "Rule 1").
//!
//! [`next`] is a pure function from (state, trigger) to the next state; it
//! decides *where* the session goes. [`Session::apply`] is the only code
//! that assigns the session's state: it asks [`next`], then runs the exit
//! action of the old state (tearing a connection down) and the entry action
//! of the new one (asking for a transport, writing CONNECT, resubscribing,
//! scheduling a reconnection, failing what is left).
//!
//! ```text
//!                 ┌──────────── ReconnectDue ─────────────┐
//!                 ▼                                       │
//!   new ──▶ Opening ──TransportOpened──▶ AwaitingConnack  │
//!             ▲  │                           │            │
//!  TokenRenewal  │ConnectionEnded            │ConnackAccepted
//!             │  ▼                           ▼            │
//!             │ Backoff ◀──ConnectionEnded── Connected ───┘ (via Backoff)
//!             │                              │
//!             └──────────────────────────────┤ DisconnectRequested
//!                                            ▼
//!                 Stopped ◀──DrainFinished── Draining
//! ```
//!
//! | from | trigger | to |
//! |---|---|---|
//! | Opening | TransportOpened | AwaitingConnack (CONNECT written) |
//! | AwaitingConnack | ConnackAccepted | Connected |
//! | Opening, AwaitingConnack, Connected | ConnectionEnded(reason) | by reason: TokenRenewal → Opening; CONNACK 1, 2 → Stopped; CONNACK 4, 5 → Backoff(fixed delay) or Stopped (policy); expired fixed token → Stopped; anything else → Backoff(jitter) |
//! | Draining | ConnectionEnded(_) or DrainFinished | Stopped(Requested) |
//! | Backoff | ReconnectDue | Opening (or Stopped if the fixed token expired) |
//! | Connected | DisconnectRequested | Draining |
//! | Opening, AwaitingConnack, Backoff | DisconnectRequested | Stopped(Requested) |
//! | any live state | Fatal(reason) | Stopped(reason) |
//!
//! Entering Opening asks for a transport, except with an external signer
//! ([`Credential::ExternalSigner`]) and no fresh token: then it asks for a
//! token and holds the transport back until it comes (`token.rs`).
//!
//! Any other pair is ignored (`next` returns `None`).

use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use super::Session;
use super::config::AuthFailurePolicy;
use super::error::{MessageFailure, StopReason};
use super::event::Event;
use super::timer::TimerKind;
use crate::auth::{ConnectCredentials, Credential};
use crate::connection::backoff::millis;
use crate::connection::{DisconnectReason, Phase};
use crate::mqtt::ConnectReturnCode;
use crate::time::Instant;

/// The state of the connection, as seen from outside
/// ([`Session::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The session wants a transport (a [`TransportCommand::Open`](super::TransportCommand::Open)
    /// is pending or being carried out).
    Opening,
    /// CONNECT was written; waiting for the CONNACK.
    AwaitingConnack,
    /// Connected: commands flow.
    Connected,
    /// A graceful disconnect is letting in-flight work finish.
    Draining,
    /// Waiting out the reconnection delay.
    Backoff,
    /// Stopped for good.
    Stopped,
}

/// How the delay of a [`State::Backoff`] is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delay {
    /// Exponential backoff with decorrelated jitter.
    Jitter,
    /// A fixed delay (the credential-refusal policy).
    Fixed(Duration),
}

/// The internal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Opening,
    AwaitingConnack,
    Connected,
    Draining,
    Backoff(Delay),
    Stopped(StopReason),
}

impl State {
    pub(crate) fn public(self) -> ConnectionState {
        match self {
            State::Opening => ConnectionState::Opening,
            State::AwaitingConnack => ConnectionState::AwaitingConnack,
            State::Connected => ConnectionState::Connected,
            State::Draining => ConnectionState::Draining,
            State::Backoff(_) => ConnectionState::Backoff,
            State::Stopped(_) => ConnectionState::Stopped,
        }
    }

    /// Connected or draining: a CONNACK was accepted on the current
    /// transport.
    pub(crate) fn is_connected(self) -> bool {
        matches!(self, State::Connected | State::Draining)
    }

    /// Whether a transport is (being) used in this state.
    fn has_transport(self) -> bool {
        matches!(
            self,
            State::Opening | State::AwaitingConnack | State::Connected | State::Draining
        )
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The adapter opened the transport the session asked for.
    TransportOpened,
    /// The hub accepted the CONNECT.
    ConnackAccepted { session_present: bool },
    /// The connection (or the attempt) ended, for this reason.
    ConnectionEnded(DisconnectReason),
    /// The reconnection delay is over.
    ReconnectDue,
    /// The application called `disconnect`.
    DisconnectRequested,
    /// The graceful disconnect finished (nothing left, or its deadline).
    DrainFinished,
    /// Something makes going on impossible.
    Fatal(StopReason),
}

/// What [`next`] needs to know besides the state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    pub(crate) auth_failure: AuthFailurePolicy,
    /// The credential is a fixed token and the last Unix time seen is past
    /// its expiry.
    pub(crate) token_expired: bool,
}

/// The transition table; `None` means the trigger is ignored in `state`.
pub(crate) fn next(state: State, trigger: &Trigger, cx: Context) -> Option<State> {
    use State::*;
    match (state, trigger) {
        (Opening, Trigger::TransportOpened) => Some(AwaitingConnack),
        (AwaitingConnack, Trigger::ConnackAccepted { .. }) => Some(Connected),
        (Draining, Trigger::ConnectionEnded(_) | Trigger::DrainFinished) => {
            Some(Stopped(StopReason::Requested))
        }
        (Opening | AwaitingConnack | Connected, Trigger::ConnectionEnded(reason)) => {
            Some(after_connection(reason, cx))
        }
        (Backoff(_), Trigger::ReconnectDue) => Some(if cx.token_expired {
            Stopped(StopReason::TokenExpired)
        } else {
            Opening
        }),
        (Connected, Trigger::DisconnectRequested) => Some(Draining),
        (Opening | AwaitingConnack | Backoff(_), Trigger::DisconnectRequested) => {
            Some(Stopped(StopReason::Requested))
        }
        (Opening | AwaitingConnack | Connected | Draining | Backoff(_), Trigger::Fatal(r)) => {
            Some(Stopped(*r))
        }
        _ => None,
    }
}

/// Where a connection that ended for `reason` leads.
fn after_connection(reason: &DisconnectReason, cx: Context) -> State {
    let expired = State::Stopped(StopReason::TokenExpired);
    match reason {
        DisconnectReason::Requested => State::Stopped(StopReason::Requested),
        DisconnectReason::TokenRenewal => State::Opening,
        DisconnectReason::TokenExpired => expired,
        DisconnectReason::Refused(refused) => match refused.code {
            ConnectReturnCode::UnacceptableProtocolVersion
            | ConnectReturnCode::IdentifierRejected => {
                State::Stopped(StopReason::Refused(*refused))
            }
            ConnectReturnCode::BadUserNameOrPassword | ConnectReturnCode::NotAuthorized => {
                if cx.token_expired {
                    expired
                } else {
                    match cx.auth_failure {
                        AuthFailurePolicy::Stop => State::Stopped(StopReason::Refused(*refused)),
                        AuthFailurePolicy::RetryAfter(d) => State::Backoff(Delay::Fixed(d)),
                    }
                }
            }
            ConnectReturnCode::ServerUnavailable | ConnectReturnCode::Accepted => {
                State::Backoff(Delay::Jitter)
            }
        },
        DisconnectReason::Transport(_)
        | DisconnectReason::Protocol(_)
        | DisconnectReason::ConnackTimeout
        | DisconnectReason::PingTimeout
        | DisconnectReason::SubackTimeout
        | DisconnectReason::ResponseTimeout => {
            if cx.token_expired {
                expired
            } else {
                State::Backoff(Delay::Jitter)
            }
        }
    }
}

/// Where the device session stands above its connection; with the
/// connection's phase it makes the [`State`] (see [`Session::current`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Connecting, connected or waiting to reconnect, as the connection's
    /// phase says.
    Running,
    /// A graceful disconnect lets in-flight work finish.
    Draining,
    /// Stopped for good.
    Stopped(StopReason),
}

impl Session {
    fn context(&self) -> Context {
        Context {
            auth_failure: self.config.auth_failure,
            token_expired: self.fixed_token_expired(),
        }
    }

    /// The state: the session's mode over the connection's phase.
    pub(crate) fn current(&self) -> State {
        match (self.mode, self.link.phase()) {
            (Mode::Stopped(reason), _) => State::Stopped(reason),
            (Mode::Draining, Phase::Up) => State::Draining,
            (_, Phase::Up) => State::Connected,
            (_, Phase::AwaitingConnack) => State::AwaitingConnack,
            (_, Phase::Backoff) => State::Backoff(Delay::Jitter),
            // `Down` while running lasts only inside `apply`.
            (_, Phase::Opening | Phase::Down) => State::Opening,
        }
    }

    /// Applies a trigger: the only place the state changes.
    pub(crate) fn apply(&mut self, now: Instant, trigger: Trigger) {
        let old = self.current();
        let Some(new) = next(old, &trigger, self.context()) else {
            return;
        };

        // Exit: does the transport of `old` go on in `new`?
        let keeps_transport = matches!(
            (old, new),
            (State::Opening, State::AwaitingConnack)
                | (State::AwaitingConnack, State::Connected)
                | (State::Connected, State::Draining)
        );
        if old.has_transport() && !keeps_transport {
            let reason = match &trigger {
                Trigger::ConnectionEnded(r) => r.clone(),
                Trigger::Fatal(StopReason::TokenExpired) => DisconnectReason::TokenExpired,
                _ => DisconnectReason::Requested,
            };
            self.teardown(old, reason);
        }

        // Entry.
        match new {
            State::Opening => {
                self.mode = Mode::Running;
                self.enter_opening(now);
            }
            State::AwaitingConnack => self.enter_awaiting_connack(now),
            State::Connected => {
                let session_present = matches!(
                    trigger,
                    Trigger::ConnackAccepted {
                        session_present: true
                    }
                );
                self.enter_connected(now, session_present);
            }
            State::Draining => self.mode = Mode::Draining,
            State::Backoff(delay) => {
                let fixed = match delay {
                    Delay::Jitter => None,
                    Delay::Fixed(d) => Some(d),
                };
                let delay = self.link.back_off(now, fixed);
                self.emit(Event::ReconnectScheduled { delay });
            }
            State::Stopped(reason) => self.enter_stopped(reason),
        }
    }

    /// Leaves the transport of state `old` behind.
    fn teardown(&mut self, old: State, reason: DisconnectReason) {
        let graceful = old.is_connected()
            && matches!(
                reason,
                DisconnectReason::Requested | DisconnectReason::TokenRenewal
            );
        // Graceful: what is queued goes out first, then DISCONNECT.
        let ended = self.link.end(&reason, graceful);
        for id in ended.dropped {
            self.emit(Event::MessageFailed {
                id,
                reason: MessageFailure::ConnectionLost,
            });
        }
        for kind in [TimerKind::Renewal, TimerKind::TokenExpiry, TimerKind::Drain] {
            self.timers.clear(kind);
        }
        self.subs.subscribed = 0;
        self.subs.pending = Vec::new();
        self.reserved_pids = Vec::new();
        self.delivery_connection_ended();
        self.renew_unix = None;
        self.external_connection_ended(&reason);
        self.requests_connection_lost();
        if ended.attempted {
            self.emit(Event::Disconnected { reason });
        }
    }

    /// Entry of AwaitingConnack: a new connection; write CONNECT.
    fn enter_awaiting_connack(&mut self, now: Instant) {
        let unix = self.link.unix().unwrap_or(0);
        let lifetime = self.config.sas_lifetime.as_secs();
        let mut creds = ConnectCredentials::new(
            &self.config.identity,
            &self.config.host_name,
            &self.config.credential,
            &self.config.username,
            unix.saturating_add(lifetime),
        );
        // An external signer's token (fresh: checked when the transport
        // opened).
        let external = self.usable_token(unix).map(|(t, renew)| (t.clone(), renew));
        if let Some((token, _)) = &external {
            creds.password = Some(token.clone());
        }
        let connect = match self.build_connect(creds) {
            Some(c) => c,
            None => {
                self.apply(now, Trigger::Fatal(StopReason::InvalidConnect));
                return;
            }
        };
        self.link.connect(now, connect);
        match &self.config.credential {
            Credential::SharedAccessKey { .. } => {
                let after_ms = u128::from(millis(self.config.sas_lifetime))
                    * u128::from(self.config.renewal_percent)
                    / 100;
                let after = Duration::from_millis(u64::try_from(after_ms).unwrap_or(u64::MAX));
                self.renew_at = Some(now + after);
                self.renew_unix = Some(unix.saturating_add(after.as_secs()));
            }
            Credential::SharedAccessSignature(token) => {
                self.renew_at = None;
                self.renew_unix = None;
                let expiry = token.expiry_unix_secs();
                if expiry > unix {
                    self.timers.set(
                        TimerKind::TokenExpiry,
                        now + Duration::from_secs(expiry - unix),
                    );
                }
            }
            Credential::ExternalSigner => {
                let renew = external.map_or(unix, |(_, renew)| renew);
                self.renew_at = Some(now + Duration::from_secs(renew.saturating_sub(unix)));
                self.renew_unix = Some(renew);
            }
            _ => {
                self.renew_at = None;
                self.renew_unix = None;
            }
        }
    }

    fn build_connect(&self, creds: ConnectCredentials) -> Option<crate::mqtt::Connect> {
        let keep_alive = u16::try_from(self.config.keep_alive.as_secs()).unwrap_or(u16::MAX);
        let mut connect = crate::mqtt::Connect::new(creds.client_id.as_str())
            .ok()?
            .with_keep_alive(keep_alive)
            .with_clean_session(self.config.clean_session)
            .with_last_will(self.will.clone())
            .with_username(creds.username.as_str())
            .ok()?;
        if let Some(password) = creds.expose_password() {
            connect = connect
                .with_password(Bytes::copy_from_slice(password))
                .ok()?;
        }
        Some(connect)
    }

    /// Entry of Connected: the connection goes up (keep-alive and the
    /// stable timer armed), then re-send what was in flight, resubscribe,
    /// resume queued work.
    fn enter_connected(&mut self, now: Instant, session_present: bool) {
        self.link.up(now);
        self.timers.put(TimerKind::Renewal, self.renew_at);
        self.emit(Event::Connected { session_present });
        self.resend_in_flight();
        self.subscribe_missing();
        if self
            .subs
            .is_enabled(super::event::Subscription::DesiredProperties)
        {
            self.start_resync(now);
        }
        self.pump_outbox(now);
        self.dispatch_requests();
    }

    /// Entry of Stopped: fail everything that is left.
    fn enter_stopped(&mut self, reason: StopReason) {
        self.mode = Mode::Stopped(reason);
        if reason == StopReason::TokenExpired {
            self.report_token_expired();
        }
        self.external_stopped();
        self.link.stop();
        self.fail_all_messages(MessageFailure::SessionClosed);
        self.fail_all_requests();
        self.timers = super::timer::Timers::default();
        self.emit(Event::Stopped { reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{ConnectRefused, ProtocolError, TransportClosed};

    const CX: Context = Context {
        auth_failure: AuthFailurePolicy::RetryAfter(Duration::from_secs(300)),
        token_expired: false,
    };

    fn refused(code: ConnectReturnCode) -> Trigger {
        Trigger::ConnectionEnded(DisconnectReason::Refused(ConnectRefused { code }))
    }

    #[test]
    fn transition_table() {
        use State::*;
        let lost = Trigger::ConnectionEnded(DisconnectReason::Transport(TransportClosed::Io));
        assert_eq!(
            next(Opening, &Trigger::TransportOpened, CX),
            Some(AwaitingConnack)
        );
        assert_eq!(
            next(
                AwaitingConnack,
                &Trigger::ConnackAccepted {
                    session_present: false
                },
                CX
            ),
            Some(Connected)
        );
        assert_eq!(next(Connected, &lost, CX), Some(Backoff(Delay::Jitter)));
        assert_eq!(next(Opening, &lost, CX), Some(Backoff(Delay::Jitter)));
        assert_eq!(
            next(Draining, &lost, CX),
            Some(Stopped(StopReason::Requested))
        );
        assert_eq!(
            next(Backoff(Delay::Jitter), &Trigger::ReconnectDue, CX),
            Some(Opening)
        );
        assert_eq!(
            next(
                Connected,
                &Trigger::ConnectionEnded(DisconnectReason::TokenRenewal),
                CX
            ),
            Some(Opening)
        );
        assert_eq!(
            next(
                Connected,
                &Trigger::ConnectionEnded(DisconnectReason::Protocol(ProtocolError::Qos2Publish)),
                CX
            ),
            Some(Backoff(Delay::Jitter))
        );
        assert_eq!(
            next(Connected, &Trigger::DisconnectRequested, CX),
            Some(Draining)
        );
        assert_eq!(
            next(Backoff(Delay::Jitter), &Trigger::DisconnectRequested, CX),
            Some(Stopped(StopReason::Requested))
        );
        // Ignored pairs.
        assert_eq!(next(Connected, &Trigger::TransportOpened, CX), None);
        assert_eq!(next(Backoff(Delay::Jitter), &lost, CX), None);
        assert_eq!(
            next(Stopped(StopReason::Requested), &Trigger::ReconnectDue, CX),
            None
        );
        assert_eq!(next(Draining, &Trigger::DisconnectRequested, CX), None);
    }

    #[test]
    fn refusals() {
        use State::*;
        for code in [
            ConnectReturnCode::UnacceptableProtocolVersion,
            ConnectReturnCode::IdentifierRejected,
        ] {
            assert_eq!(
                next(AwaitingConnack, &refused(code), CX),
                Some(Stopped(StopReason::Refused(ConnectRefused { code })))
            );
        }
        assert_eq!(
            next(
                AwaitingConnack,
                &refused(ConnectReturnCode::ServerUnavailable),
                CX
            ),
            Some(Backoff(Delay::Jitter))
        );
        for code in [
            ConnectReturnCode::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized,
        ] {
            assert_eq!(
                next(AwaitingConnack, &refused(code), CX),
                Some(Backoff(Delay::Fixed(Duration::from_secs(300))))
            );
            let stop = Context {
                auth_failure: AuthFailurePolicy::Stop,
                ..CX
            };
            assert_eq!(
                next(AwaitingConnack, &refused(code), stop),
                Some(Stopped(StopReason::Refused(ConnectRefused { code })))
            );
            let expired = Context {
                token_expired: true,
                ..CX
            };
            assert_eq!(
                next(AwaitingConnack, &refused(code), expired),
                Some(Stopped(StopReason::TokenExpired))
            );
        }
        let expired = Context {
            token_expired: true,
            ..CX
        };
        assert_eq!(
            next(Backoff(Delay::Jitter), &Trigger::ReconnectDue, expired),
            Some(Stopped(StopReason::TokenExpired))
        );
    }
}
