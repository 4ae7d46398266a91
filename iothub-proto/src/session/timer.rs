//! The one timer table: every deadline the session keeps, one slot per
//! purpose (as in quinn-proto's `timer.rs`).
//!
//! Per-message and per-request deadlines are not timers of their own: the
//! [`TimerKind::Message`] and [`TimerKind::Request`] slots hold the earliest
//! of them, recomputed whenever a message or request comes or goes.

use crate::connection::LinkTimer;
use crate::time::{TimerSlot, TimerTable};

/// The purpose of one slot of the timer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// The CONNACK must arrive by then (`connect_timeout` after CONNECT).
    Connack,
    /// Nothing was sent for `keep_alive`: send a PINGREQ.
    KeepAlive,
    /// The PINGRESP must arrive by then (`ping_timeout` after PINGREQ).
    PingResponse,
    /// Reconnect with a fresh SAS token (`renewal_percent` of
    /// `sas_lifetime` after CONNECT).
    Renewal,
    /// A fixed SAS token expires (reported once).
    TokenExpiry,
    /// [`Credential::ExternalSigner`](crate::auth::Credential::ExternalSigner):
    /// the token asked for must have come by then, or the next request
    /// after a failed one is due.
    TokenRequest,
    /// The connection has been up for `stable_after`: reset the backoff.
    StableConnection,
    /// The backoff delay is over: ask for a new transport.
    Reconnect,
    /// The graceful disconnect's deadline.
    Drain,
    /// The earliest telemetry deadline (message timeout or time-to-live).
    Message,
    /// The earliest twin request deadline (timeout or retry).
    Request,
}

impl TimerKind {
    /// The number of timer kinds: the size of the table.
    pub const COUNT: usize = 11;

    /// Every kind, in the order `handle_timeout` handles due timers.
    pub const ALL: [TimerKind; TimerKind::COUNT] = [
        TimerKind::Connack,
        TimerKind::PingResponse,
        TimerKind::KeepAlive,
        TimerKind::Renewal,
        TimerKind::TokenExpiry,
        TimerKind::TokenRequest,
        TimerKind::StableConnection,
        TimerKind::Reconnect,
        TimerKind::Drain,
        TimerKind::Message,
        TimerKind::Request,
    ];

    /// The connection's own timer this kind names, if it is one.
    pub(crate) fn link_timer(self) -> Option<LinkTimer> {
        match self {
            TimerKind::Connack => Some(LinkTimer::Connack),
            TimerKind::KeepAlive => Some(LinkTimer::KeepAlive),
            TimerKind::PingResponse => Some(LinkTimer::PingResponse),
            TimerKind::StableConnection => Some(LinkTimer::StableConnection),
            TimerKind::Reconnect => Some(LinkTimer::Reconnect),
            TimerKind::Renewal
            | TimerKind::TokenExpiry
            | TimerKind::TokenRequest
            | TimerKind::Drain
            | TimerKind::Message
            | TimerKind::Request => None,
        }
    }
}

impl TimerSlot for TimerKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// The timer table.
pub(crate) type Timers = TimerTable<TimerKind, { TimerKind::COUNT }>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;

    #[test]
    fn every_kind_has_a_slot() {
        let mut t = Timers::default();
        for (i, k) in TimerKind::ALL.iter().enumerate() {
            t.set(*k, Instant::from_millis(100 - i as u64));
        }
        assert_eq!(t.earliest(), Some(Instant::from_millis(90)));
        for k in TimerKind::ALL {
            assert!(t.get(k).is_some(), "{k:?}");
        }
        assert!(!t.take_due(TimerKind::Connack, Instant::from_millis(99)));
        assert!(t.take_due(TimerKind::Connack, Instant::from_millis(100)));
        assert_eq!(t.get(TimerKind::Connack), None);
    }
}
