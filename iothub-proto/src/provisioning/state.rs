//! Every state transition of the provisioning session, in one place.
//!
//! [`next`] is a pure function from (state, trigger) to the next state;
//! [`Session::apply`] is the only code that assigns the state: it asks
//! [`next`], runs the exit action of the old state (tearing a connection
//! down) and the entry action of the new one.
//!
//! ```text
//!   new ──▶ Opening ──TransportOpened──▶ AwaitingConnack ──ConnackAccepted──▶ Subscribing
//!             ▲                                                                 │ SubscribeGranted
//!             │ ReconnectDue                                                    ▼
//!           Backoff ◀──ConnectionEnded (retries left)── any live ◀──▶ AwaitingResponse ◀─RetryDue─┐
//!                                                                      │ Wait(delay)              │
//!                                                                      └──────────────▶ Waiting ──┘
//!   any live ──Finish(result), or ConnectionEnded (refused / no retries left)──▶ Finished
//! ```
//!
//! | from | trigger | to |
//! |---|---|---|
//! | Opening | TransportOpened | AwaitingConnack (CONNECT written, CleanSession 1) |
//! | AwaitingConnack | ConnackAccepted | Subscribing (SUBSCRIBE `$dps/registrations/res/#`) |
//! | Subscribing | SubscribeGranted | AwaitingResponse (register, or poll when an operation id is known) |
//! | AwaitingResponse | Wait(delay) | Waiting (202 assigning, or 429 / 5xx) |
//! | Waiting | RetryDue | AwaitingResponse (the next request) |
//! | Opening, AwaitingConnack, Subscribing, AwaitingResponse, Waiting | ConnectionEnded(reason) | CONNACK 1, 2, 4, 5 → Finished; retries left → Backoff; else Finished |
//! | Backoff | ReconnectDue | Opening |
//! | any but Finished | Finish(result) | Finished |
//!
//! Any other pair is ignored (`next` returns `None`).

use core::time::Duration;

use bytes::Bytes;

use super::Session;
use super::error::{DisconnectReason, ProvisioningError};
use super::event::{Event, Registration};
use super::timer::TimerKind;
use crate::auth::ProvisioningAttestation;
use crate::connection::Phase;
use crate::mqtt::{ConnectReturnCode, Packet, QoS, Subscribe};
use crate::time::Instant;
use crate::topic::DPS_RESPONSE_FILTER;

/// The state of a provisioning session ([`Session::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProvisioningState {
    /// The session wants a transport ([`TransportCommand::Open`](super::TransportCommand::Open) pending
    /// or being carried out).
    Opening,
    /// CONNECT was written; waiting for the CONNACK.
    AwaitingConnack,
    /// SUBSCRIBE was written; waiting for the SUBACK.
    Subscribing,
    /// A register or poll request was sent; waiting for its answer.
    AwaitingResponse,
    /// Waiting out `retry-after` before the next request.
    Waiting,
    /// Waiting out the reconnection delay.
    Backoff,
    /// Over: [`Session::outcome`] has the result.
    Finished,
}

impl ProvisioningState {
    /// A transport is (being) used in this state.
    fn has_transport(self) -> bool {
        matches!(
            self,
            Self::Opening
                | Self::AwaitingConnack
                | Self::Subscribing
                | Self::AwaitingResponse
                | Self::Waiting
        )
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Trigger {
    /// The adapter opened the transport the session asked for.
    TransportOpened,
    /// DPS accepted the CONNECT.
    ConnackAccepted,
    /// DPS granted the response subscription.
    SubscribeGranted,
    /// An answer asks for another request after this delay.
    Wait(Duration),
    /// The `retry-after` wait is over.
    RetryDue,
    /// The connection (or the attempt) ended.
    ConnectionEnded(DisconnectReason),
    /// The reconnection delay is over.
    ReconnectDue,
    /// The registration is over, with this result.
    Finish(Result<Registration, ProvisioningError>),
}

/// What [`next`] needs to know besides the state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// Another transport may still be tried.
    pub(crate) retries_left: bool,
}

/// The transition table; `None` means the trigger is ignored in `state`.
pub(crate) fn next(
    state: ProvisioningState,
    trigger: &Trigger,
    cx: Context,
) -> Option<ProvisioningState> {
    use ProvisioningState::*;
    match (state, trigger) {
        (Opening, Trigger::TransportOpened) => Some(AwaitingConnack),
        (AwaitingConnack, Trigger::ConnackAccepted) => Some(Subscribing),
        (Subscribing, Trigger::SubscribeGranted) => Some(AwaitingResponse),
        (AwaitingResponse, Trigger::Wait(_)) => Some(Waiting),
        (Waiting, Trigger::RetryDue) => Some(AwaitingResponse),
        (
            Opening | AwaitingConnack | Subscribing | AwaitingResponse | Waiting,
            Trigger::ConnectionEnded(reason),
        ) => Some(if ends_registration(reason) || !cx.retries_left {
            Finished
        } else {
            Backoff
        }),
        (Backoff, Trigger::ReconnectDue) => Some(Opening),
        (
            Opening | AwaitingConnack | Subscribing | AwaitingResponse | Waiting | Backoff,
            Trigger::Finish(_),
        ) => Some(Finished),
        _ => None,
    }
}

/// A refusal that another attempt cannot fix: every CONNACK code but 3
/// (server unavailable). DPS does not change its mind about a key.
fn ends_registration(reason: &DisconnectReason) -> bool {
    matches!(reason, DisconnectReason::Refused(r) if r.code != ConnectReturnCode::ServerUnavailable)
}

/// The result a trigger that leads to `Finished` carries.
fn outcome_of(trigger: Trigger) -> Result<Registration, ProvisioningError> {
    match trigger {
        Trigger::Finish(result) => result,
        Trigger::ConnectionEnded(reason) => Err(match reason {
            DisconnectReason::Refused(r) if r.code != ConnectReturnCode::ServerUnavailable => {
                ProvisioningError::Refused(r)
            }
            other => ProvisioningError::TransportRetriesExhausted(other),
        }),
        // `next` leads no other trigger to Finished (asserted by a test).
        _ => Err(ProvisioningError::Cancelled),
    }
}

/// Where a registration stands while connected (with the connection's
/// phase it makes the [`ProvisioningState`], see [`Session::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// SUBSCRIBE was written; waiting for the SUBACK.
    Subscribing,
    /// A request was sent; waiting for its answer.
    AwaitingResponse,
    /// Waiting out `retry-after`.
    Waiting,
}

impl Session {
    fn context(&self) -> Context {
        Context {
            retries_left: self.transport_failures < self.config.max_transport_retries,
        }
    }

    /// The state: the registration's step over the connection's phase.
    pub(crate) fn current(&self) -> ProvisioningState {
        use ProvisioningState as S;
        if self.outcome.is_some() {
            return S::Finished;
        }
        match self.link.phase() {
            Phase::Down | Phase::Opening => S::Opening,
            Phase::AwaitingConnack => S::AwaitingConnack,
            Phase::Backoff => S::Backoff,
            Phase::Up => match self.step {
                Step::Subscribing => S::Subscribing,
                Step::AwaitingResponse => S::AwaitingResponse,
                Step::Waiting => S::Waiting,
            },
        }
    }

    /// Applies a trigger: the only place the state changes.
    pub(crate) fn apply(&mut self, now: Instant, trigger: Trigger) {
        use ProvisioningState as S;
        let old = self.current();
        let Some(new) = next(old, &trigger, self.context()) else {
            return;
        };

        // Exit: does the transport of `old` go on in `new`?
        let keeps_transport = matches!(
            (old, new),
            (S::Opening, S::AwaitingConnack)
                | (S::AwaitingConnack, S::Subscribing)
                | (S::Subscribing, S::AwaitingResponse)
                | (S::AwaitingResponse, S::Waiting)
                | (S::Waiting, S::AwaitingResponse)
        );
        if old.has_transport() && !keeps_transport {
            let reason = match &trigger {
                Trigger::ConnectionEnded(r) => r.clone(),
                _ => DisconnectReason::Requested,
            };
            self.teardown(reason);
        }

        // Entry.
        match new {
            S::Opening => self.link.open(),
            S::AwaitingConnack => self.enter_awaiting_connack(now),
            S::Subscribing => self.enter_subscribing(now),
            S::AwaitingResponse => self.enter_awaiting_response(now),
            S::Waiting => {
                self.step = Step::Waiting;
                let delay = match trigger {
                    Trigger::Wait(d) => d,
                    _ => self.config.default_retry_after,
                };
                self.timers.set(TimerKind::Retry, now + delay);
            }
            S::Backoff => {
                self.transport_failures = self.transport_failures.saturating_add(1);
                let delay = self.link.back_off(now, None);
                self.events.push_back(Event::ReconnectScheduled { delay });
            }
            S::Finished => self.enter_finished(outcome_of(trigger)),
        }
    }

    /// Leaves the current transport behind. A registration that is over
    /// ends with DISCONNECT after what is queued.
    fn teardown(&mut self, reason: DisconnectReason) {
        let graceful = reason == DisconnectReason::Requested;
        let ended = self.link.end(&reason, graceful);
        for kind in [TimerKind::Suback, TimerKind::Response, TimerKind::Retry] {
            self.timers.clear(kind);
        }
        self.pending = None;
        self.subscribe_pid = None;
        if ended.attempted {
            self.events.push_back(Event::Disconnected { reason });
        }
    }

    /// Entry of AwaitingConnack: a new connection; write CONNECT.
    fn enter_awaiting_connack(&mut self, now: Instant) {
        let expiry = self
            .link
            .unix()
            .unwrap_or(0)
            .saturating_add(self.config.sas_lifetime.as_secs());
        let creds = self
            .config
            .attestation
            .connect_credentials(&self.config.username(), expiry);
        let keep_alive = u16::try_from(self.config.keep_alive.as_secs()).unwrap_or(u16::MAX);
        let connect = crate::mqtt::Connect::new(creds.client_id.as_str())
            .ok()
            .map(|c| c.with_keep_alive(keep_alive).with_clean_session(true))
            .and_then(|c| c.with_username(creds.username.as_str()).ok())
            .and_then(|c| match creds.expose_password() {
                Some(p) => c.with_password(Bytes::copy_from_slice(p)).ok(),
                None => Some(c),
            });
        let Some(connect) = connect else {
            self.apply(now, Trigger::Finish(Err(ProvisioningError::InvalidRequest)));
            return;
        };
        self.link.connect(now, connect);
    }

    /// Entry of Subscribing: connected; subscribe to the answers.
    fn enter_subscribing(&mut self, now: Instant) {
        self.link.up(now);
        self.step = Step::Subscribing;
        self.events.push_back(Event::Connected);
        let pid = self.alloc_pid();
        match Subscribe::new(pid, [(DPS_RESPONSE_FILTER, QoS::AtLeastOnce)]) {
            Ok(subscribe) => {
                self.subscribe_pid = Some(pid);
                self.link.send(&Packet::Subscribe(subscribe));
                self.timers
                    .set(TimerKind::Suback, now + self.config.connect_timeout);
            }
            Err(_) => self.apply(now, Trigger::Finish(Err(ProvisioningError::InvalidRequest))),
        }
    }

    /// Entry of AwaitingResponse: send the register request, or the poll
    /// once DPS has named the operation.
    fn enter_awaiting_response(&mut self, now: Instant) {
        self.step = Step::AwaitingResponse;
        self.timers.clear(TimerKind::Suback);
        self.timers.clear(TimerKind::Retry);
        if self.send_request().is_none() {
            self.apply(now, Trigger::Finish(Err(ProvisioningError::InvalidRequest)));
            return;
        }
        self.timers
            .set(TimerKind::Response, now + self.config.response_timeout);
    }

    /// Entry of Finished: report the result once, stop every timer.
    fn enter_finished(&mut self, outcome: Result<Registration, ProvisioningError>) {
        self.link.stop();
        self.timers = super::timer::Timers::default();
        self.events.push_back(match &outcome {
            Ok(r) => Event::Assigned(r.clone()),
            Err(e) => Event::Failed(e.clone()),
        });
        self.outcome = Some(outcome);
    }

    /// Whether the fixed token has expired at the last Unix time seen.
    pub(crate) fn fixed_token_expired(&self) -> bool {
        match (&self.config.attestation, self.link.unix()) {
            (ProvisioningAttestation::SasToken(t), Some(unix)) => t.is_expired_at(unix),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{ConnectRefused, TransportClosed};
    use ProvisioningState::*;

    const LEFT: Context = Context { retries_left: true };
    const NONE_LEFT: Context = Context {
        retries_left: false,
    };

    fn ended(reason: DisconnectReason) -> Trigger {
        Trigger::ConnectionEnded(reason)
    }

    fn refused(code: ConnectReturnCode) -> Trigger {
        ended(DisconnectReason::Refused(ConnectRefused { code }))
    }

    const ALL: [ProvisioningState; 7] = [
        Opening,
        AwaitingConnack,
        Subscribing,
        AwaitingResponse,
        Waiting,
        Backoff,
        Finished,
    ];

    #[test]
    fn transition_table() {
        let lost = ended(DisconnectReason::Transport(TransportClosed::Io));
        assert_eq!(
            next(Opening, &Trigger::TransportOpened, LEFT),
            Some(AwaitingConnack)
        );
        assert_eq!(
            next(AwaitingConnack, &Trigger::ConnackAccepted, LEFT),
            Some(Subscribing)
        );
        assert_eq!(
            next(Subscribing, &Trigger::SubscribeGranted, LEFT),
            Some(AwaitingResponse)
        );
        assert_eq!(
            next(
                AwaitingResponse,
                &Trigger::Wait(Duration::from_secs(3)),
                LEFT
            ),
            Some(Waiting)
        );
        assert_eq!(
            next(Waiting, &Trigger::RetryDue, LEFT),
            Some(AwaitingResponse)
        );
        for s in [
            Opening,
            AwaitingConnack,
            Subscribing,
            AwaitingResponse,
            Waiting,
        ] {
            assert_eq!(next(s, &lost, LEFT), Some(Backoff), "{s:?}");
            assert_eq!(next(s, &lost, NONE_LEFT), Some(Finished), "{s:?}");
        }
        assert_eq!(next(Backoff, &Trigger::ReconnectDue, LEFT), Some(Opening));
        for s in ALL {
            let want = (s != Finished).then_some(Finished);
            assert_eq!(
                next(s, &Trigger::Finish(Err(ProvisioningError::Cancelled)), LEFT),
                want,
                "{s:?}"
            );
        }
        // Ignored pairs.
        assert_eq!(next(Backoff, &lost, LEFT), None);
        assert_eq!(next(Finished, &lost, LEFT), None);
        assert_eq!(next(Waiting, &Trigger::Wait(Duration::ZERO), LEFT), None);
        assert_eq!(next(AwaitingResponse, &Trigger::RetryDue, LEFT), None);
        assert_eq!(next(Subscribing, &Trigger::TransportOpened, LEFT), None);
    }

    #[test]
    fn refusals_end_the_registration_except_server_unavailable() {
        for code in [
            ConnectReturnCode::UnacceptableProtocolVersion,
            ConnectReturnCode::IdentifierRejected,
            ConnectReturnCode::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized,
        ] {
            assert_eq!(next(AwaitingConnack, &refused(code), LEFT), Some(Finished));
            assert_eq!(
                outcome_of(refused(code)),
                Err(ProvisioningError::Refused(ConnectRefused { code }))
            );
        }
        let unavailable = refused(ConnectReturnCode::ServerUnavailable);
        assert_eq!(next(AwaitingConnack, &unavailable, LEFT), Some(Backoff));
        assert_eq!(
            next(AwaitingConnack, &unavailable, NONE_LEFT),
            Some(Finished)
        );
        assert!(matches!(
            outcome_of(unavailable),
            Err(ProvisioningError::TransportRetriesExhausted(
                DisconnectReason::Refused(_)
            ))
        ));
    }

    #[test]
    fn only_finish_and_connection_ended_lead_to_finished() {
        let others = [
            Trigger::TransportOpened,
            Trigger::ConnackAccepted,
            Trigger::SubscribeGranted,
            Trigger::Wait(Duration::ZERO),
            Trigger::RetryDue,
            Trigger::ReconnectDue,
        ];
        for s in ALL {
            for t in &others {
                for cx in [LEFT, NONE_LEFT] {
                    assert_ne!(next(s, t, cx), Some(Finished), "{s:?} {t:?}");
                }
            }
        }
    }
}
