//! Time as the session sees it: a monotonic [`Instant`] that works in
//! `no_std`, and nothing else.
//!
//! The core never reads a clock. The adapter picks an epoch (the moment it
//! started, say), and passes the milliseconds elapsed since then as
//! [`Instant::from_millis`] with every input. Only two rules matter:
//!
//! - the values never go backwards (use a monotonic clock:
//!   `std::time::Instant`, `embassy_time::Instant`, a hardware tick counter);
//! - one session always gets instants measured from the same epoch.
//!
//! Wall-clock time (Unix seconds) is a different quantity: it enters only
//! where a SAS token's `se=` expiry needs it
//! ([`Session::handle_transport_connected`](crate::session::Session::handle_transport_connected)
//! and [`Session::handle_timeout`](crate::session::Session::handle_timeout)).
//!
//! ```
//! use core::time::Duration;
//! use iothub_proto::time::Instant;
//!
//! let start = Instant::from_millis(1_000);
//! let later = start + Duration::from_secs(60);
//! assert_eq!(later.as_millis(), 61_000);
//! assert_eq!(later.saturating_duration_since(start), Duration::from_secs(60));
//! assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
//! // Arithmetic saturates instead of overflowing.
//! assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
//! ```

use core::fmt;
use core::ops::{Add, AddAssign};
use core::time::Duration;

/// A point in monotonic time: milliseconds since an epoch the adapter
/// chooses. `Copy`, totally ordered, and free of any clock.
///
/// Adding a [`Duration`] saturates at [`Instant::MAX`]; sub-millisecond
/// parts of a duration are dropped.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself (0 ms).
    pub const ZERO: Instant = Instant(0);

    /// The latest representable instant (about 584 million years after the
    /// epoch).
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `millis` milliseconds after the adapter's epoch.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis)
    }

    /// Milliseconds since the adapter's epoch.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this instant is, or zero if `earlier` is
    /// later.
    #[must_use]
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// How long after `earlier` this instant is, or `None` if `earlier` is
    /// later.
    #[must_use]
    pub const fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        }
    }

    /// `self + duration`, or `None` past [`Instant::MAX`].
    #[must_use]
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let ms = u64::try_from(duration.as_millis()).ok()?;
        self.0.checked_add(ms).map(Instant)
    }

    /// `self + duration`, saturating at [`Instant::MAX`].
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Instant {
        self.checked_add(duration).unwrap_or(Instant::MAX)
    }

    /// `self - duration`, saturating at [`Instant::ZERO`].
    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Instant {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(ms))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: never panics, never wraps.
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = self.saturating_add(rhs);
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({} ms)", self.0)
    }
}

/// One slot of a timer table: a small `Copy` enum numbered from 0.
pub(crate) trait TimerSlot: Copy {
    /// The slot's position in the table.
    fn index(self) -> usize;
}

/// A table of deadlines, one per purpose (`K`), as the sessions keep them:
/// `Output::Timeout` is the earliest one (quinn-proto's `TimerTable`).
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<K, const N: usize> {
    slots: [Option<Instant>; N],
    kind: core::marker::PhantomData<K>,
}

impl<K, const N: usize> Default for TimerTable<K, N> {
    fn default() -> Self {
        TimerTable {
            slots: [None; N],
            kind: core::marker::PhantomData,
        }
    }
}

impl<K: TimerSlot, const N: usize> TimerTable<K, N> {
    pub(crate) fn get(&self, kind: K) -> Option<Instant> {
        self.slots.get(kind.index()).copied().flatten()
    }

    pub(crate) fn set(&mut self, kind: K, at: Instant) {
        self.put(kind, Some(at));
    }

    pub(crate) fn put(&mut self, kind: K, at: Option<Instant>) {
        if let Some(slot) = self.slots.get_mut(kind.index()) {
            *slot = at;
        }
    }

    pub(crate) fn clear(&mut self, kind: K) {
        self.put(kind, None);
    }

    /// Whether the timer is set and due at `now`; if so, clears it.
    pub(crate) fn take_due(&mut self, kind: K, now: Instant) -> bool {
        match self.get(kind) {
            Some(at) if at <= now => {
                self.clear(kind);
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline of the table.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_millis(7), Instant::from_millis(12));
        assert_eq!(Instant::MAX + Duration::from_millis(1), Instant::MAX);
        assert_eq!(t + Duration::MAX, Instant::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(t.saturating_sub(Duration::from_secs(1)), Instant::ZERO);
        let mut u = t;
        u += Duration::from_micros(2_500);
        assert_eq!(u.as_millis(), 7);
    }

    #[test]
    fn durations_between_instants() {
        let a = Instant::from_millis(1_000);
        let b = Instant::from_millis(3_500);
        assert_eq!(b.saturating_duration_since(a), Duration::from_millis(2_500));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(a.checked_duration_since(b), None);
        assert_eq!(
            b.checked_duration_since(a),
            Some(Duration::from_millis(2_500))
        );
        assert!(a < b);
        assert_eq!(alloc::format!("{a:?}"), "Instant(1000 ms)");
    }
}
