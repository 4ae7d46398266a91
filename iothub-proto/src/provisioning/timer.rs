//! The one timer table of the provisioning session: one slot per purpose.

use crate::connection::LinkTimer;
use crate::time::{TimerSlot, TimerTable};

/// The purpose of one slot of the timer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// The whole registration must be over by then
    /// ([`Config::timeout`](super::Config::timeout) after `Session::new`).
    Deadline,
    /// The CONNACK must arrive by then.
    Connack,
    /// The SUBACK must arrive by then.
    Suback,
    /// The answer to the pending request must arrive by then.
    Response,
    /// The PINGRESP must arrive by then.
    PingResponse,
    /// Nothing was sent for `keep_alive`: send a PINGREQ.
    KeepAlive,
    /// The `retry-after` wait is over: send the next request.
    Retry,
    /// The backoff delay is over: ask for a new transport.
    Reconnect,
}

impl TimerKind {
    /// The number of timer kinds: the size of the table.
    pub const COUNT: usize = 8;

    /// Every kind, in the order `handle_timeout` handles due timers (the
    /// deadline first: once it has passed, nothing else matters).
    pub const ALL: [TimerKind; TimerKind::COUNT] = [
        TimerKind::Deadline,
        TimerKind::Connack,
        TimerKind::Suback,
        TimerKind::Response,
        TimerKind::PingResponse,
        TimerKind::KeepAlive,
        TimerKind::Retry,
        TimerKind::Reconnect,
    ];

    /// The connection's own timer this kind names, if it is one.
    pub(crate) fn link_timer(self) -> Option<LinkTimer> {
        match self {
            TimerKind::Connack => Some(LinkTimer::Connack),
            TimerKind::PingResponse => Some(LinkTimer::PingResponse),
            TimerKind::KeepAlive => Some(LinkTimer::KeepAlive),
            TimerKind::Reconnect => Some(LinkTimer::Reconnect),
            TimerKind::Deadline | TimerKind::Suback | TimerKind::Response | TimerKind::Retry => {
                None
            }
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
        assert_eq!(t.earliest(), Some(Instant::from_millis(93)));
        for k in TimerKind::ALL {
            assert!(t.get(k).is_some(), "{k:?}");
        }
        assert!(!t.take_due(TimerKind::Deadline, Instant::from_millis(99)));
        assert!(t.take_due(TimerKind::Deadline, Instant::from_millis(100)));
        assert_eq!(t.get(TimerKind::Deadline), None);
    }
}
