//! When a provisioned device should provision again: [`ReprovisionWatch`]
//! reads the device session's events and applies a [`ReprovisionPolicy`].
//!
//! The service's guidance: reconnect with exponential backoff and jitter
//! (the device session does that), and with DPS, provision again after
//! repeated failures or when the hub answers 401, 403 or 404 — over MQTT,
//! a CONNACK refusing the credentials (4, bad user name or password; 5, not
//! authorized: the device was deleted, disabled, or moved to another hub).
//! The watch keeps the one piece of state that needs: how many connection
//! attempts failed in a row.
//!
//! ```
//! use iothub_proto::mqtt::ConnectReturnCode;
//! use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason, ReprovisionWatch};
//! use iothub_proto::session::{ConnectRefused, DisconnectReason, Event};
//!
//! let mut watch = ReprovisionWatch::new(ReprovisionPolicy::default());
//! let refused = Event::Disconnected {
//!     reason: DisconnectReason::Refused(ConnectRefused { code: ConnectReturnCode::NotAuthorized }),
//! };
//! assert!(matches!(watch.observe(&refused), Some(ReprovisionReason::Refused(_))));
//! ```

use crate::session::{ConnectRefused, DisconnectReason, Event};

/// How many failed connection attempts in a row make a device provision
/// again, by default.
pub const DEFAULT_REPROVISION_AFTER_FAILED_CONNECTS: u32 = 5;

/// When to provision again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ReprovisionPolicy {
    /// Provision again when the hub refuses the credentials (CONNACK 4 or
    /// 5). Default `true`.
    pub on_auth_refusal: bool,
    /// Provision again after this many connection attempts in a row ended
    /// without a CONNACK 0 (refusals, transport failures, CONNACK
    /// timeouts); `0` turns it off. A connection that was up and then
    /// dropped does not count. Default
    /// [`DEFAULT_REPROVISION_AFTER_FAILED_CONNECTS`].
    pub after_failed_connects: u32,
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        ReprovisionPolicy {
            on_auth_refusal: true,
            after_failed_connects: DEFAULT_REPROVISION_AFTER_FAILED_CONNECTS,
        }
    }
}

impl ReprovisionPolicy {
    /// A policy that never asks to provision again.
    #[must_use]
    pub fn never() -> Self {
        ReprovisionPolicy {
            on_auth_refusal: false,
            after_failed_connects: 0,
        }
    }

    /// Sets [`on_auth_refusal`](Self::on_auth_refusal).
    #[must_use]
    pub fn with_on_auth_refusal(mut self, on: bool) -> Self {
        self.on_auth_refusal = on;
        self
    }

    /// Sets [`after_failed_connects`](Self::after_failed_connects).
    #[must_use]
    pub fn with_after_failed_connects(mut self, n: u32) -> Self {
        self.after_failed_connects = n;
        self
    }
}

/// Why the device should provision again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReprovisionReason {
    /// The hub refused the credentials (CONNACK 4 or 5).
    Refused(ConnectRefused),
    /// This many connection attempts in a row failed.
    FailedConnects(u32),
}

impl core::fmt::Display for ReprovisionReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReprovisionReason::Refused(r) => write!(f, "the hub refused the credentials ({r})"),
            ReprovisionReason::FailedConnects(n) => {
                write!(f, "{n} connection attempts in a row failed")
            }
        }
    }
}

/// Applies a [`ReprovisionPolicy`] to the device session's events: feed
/// every [`Event`] to [`observe`](Self::observe); when it returns a
/// reason, provision again and start a new session with the result (and
/// a new watch, or [`reset`](Self::reset) this one).
#[derive(Debug, Clone)]
pub struct ReprovisionWatch {
    policy: ReprovisionPolicy,
    /// A connection is up (CONNACK 0 seen, no disconnect since).
    connected: bool,
    /// Connection attempts that failed since the last CONNACK 0.
    failures: u32,
}

impl ReprovisionWatch {
    /// A watch with no failure seen.
    #[must_use]
    pub fn new(policy: ReprovisionPolicy) -> Self {
        ReprovisionWatch {
            policy,
            connected: false,
            failures: 0,
        }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> ReprovisionPolicy {
        self.policy
    }

    /// Connection attempts that failed in a row so far.
    #[must_use]
    pub fn failed_connects(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures counted (after provisioning again).
    pub fn reset(&mut self) {
        self.connected = false;
        self.failures = 0;
    }

    /// Reads one event of the device session; `Some` when the device should
    /// provision again. After it says so, the count starts again.
    pub fn observe(&mut self, event: &Event) -> Option<ReprovisionReason> {
        match event {
            Event::Connected { .. } => {
                self.connected = true;
                self.failures = 0;
                None
            }
            Event::Disconnected { reason } => {
                let was_connected = core::mem::replace(&mut self.connected, false);
                if let DisconnectReason::Refused(r) = reason {
                    if self.policy.on_auth_refusal && r.is_auth_failure() {
                        self.failures = 0;
                        return Some(ReprovisionReason::Refused(*r));
                    }
                }
                if was_connected {
                    return None;
                }
                self.failures = self.failures.saturating_add(1);
                let limit = self.policy.after_failed_connects;
                if limit > 0 && self.failures >= limit {
                    let n = core::mem::take(&mut self.failures);
                    return Some(ReprovisionReason::FailedConnects(n));
                }
                None
            }
            // A refusal that stops the session (`AuthFailurePolicy::Stop`)
            // was reported by its `Disconnected` first.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::ConnectReturnCode as C;
    use crate::session::TransportClosed;

    fn refused(code: C) -> Event {
        Event::Disconnected {
            reason: DisconnectReason::Refused(ConnectRefused { code }),
        }
    }

    fn failed() -> Event {
        Event::Disconnected {
            reason: DisconnectReason::Transport(TransportClosed::ConnectFailed),
        }
    }

    fn connected() -> Event {
        Event::Connected {
            session_present: false,
        }
    }

    #[test]
    fn credential_refusals_ask_at_once() {
        let mut w = ReprovisionWatch::new(ReprovisionPolicy::default());
        for code in [C::BadUserNameOrPassword, C::NotAuthorized] {
            assert_eq!(
                w.observe(&refused(code)),
                Some(ReprovisionReason::Refused(ConnectRefused { code }))
            );
        }
        // Server unavailable is an ordinary failure.
        assert_eq!(w.observe(&refused(C::ServerUnavailable)), None);
        assert_eq!(w.failed_connects(), 1);
        let mut off =
            ReprovisionWatch::new(ReprovisionPolicy::default().with_on_auth_refusal(false));
        assert_eq!(off.observe(&refused(C::NotAuthorized)), None);
        assert_eq!(off.failed_connects(), 1);
    }

    #[test]
    fn repeated_failed_connects_ask_and_a_connection_resets_the_count() {
        let policy = ReprovisionPolicy::default().with_after_failed_connects(3);
        let mut w = ReprovisionWatch::new(policy);
        assert_eq!(w.observe(&failed()), None);
        assert_eq!(w.observe(&failed()), None);
        assert_eq!(w.observe(&connected()), None);
        assert_eq!(w.failed_connects(), 0);
        // A drop after a connection does not count; the attempts after it do.
        assert_eq!(w.observe(&failed()), None);
        assert_eq!(w.failed_connects(), 0);
        assert_eq!(w.observe(&failed()), None);
        assert_eq!(w.observe(&failed()), None);
        assert_eq!(
            w.observe(&failed()),
            Some(ReprovisionReason::FailedConnects(3))
        );
        assert_eq!(w.failed_connects(), 0, "the count starts again");
        assert_eq!(w.observe(&failed()), None);
        w.reset();
        assert_eq!(w.failed_connects(), 0);
        // Other events change nothing.
        assert_eq!(
            w.observe(&Event::ReconnectScheduled {
                delay: core::time::Duration::from_secs(1)
            }),
            None
        );
    }

    #[test]
    fn never_never_asks() {
        let mut w = ReprovisionWatch::new(ReprovisionPolicy::never());
        for _ in 0..100 {
            assert_eq!(w.observe(&failed()), None);
            assert_eq!(w.observe(&refused(C::NotAuthorized)), None);
        }
        assert_eq!(w.policy(), ReprovisionPolicy::never());
    }
}
