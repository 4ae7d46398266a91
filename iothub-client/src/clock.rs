//! Clocks: the platform's monotonic time mapped to the core's
//! [`Instant`] (milliseconds since the client started), and wall-clock Unix
//! seconds for SAS token expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iothub_proto::time::Instant;

/// Maps `std::time::Instant` (and runtime instants that convert to it, such
/// as `tokio::time::Instant`) to the core's [`Instant`], counted from an
/// epoch fixed when the clock is made. One clock per session, so the
/// session's instants never go back.
///
/// ```
/// use std::time::Duration;
/// use iothub_client::Clock;
///
/// let start = std::time::Instant::now();
/// let clock = Clock::starting_at(start);
/// let t = clock.instant(start + Duration::from_millis(1500));
/// assert_eq!(t.as_millis(), 1500);
/// assert_eq!(clock.deadline(t), start + Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    #[must_use]
    pub fn new() -> Clock {
        Clock::starting_at(std::time::Instant::now())
    }

    /// A clock whose epoch is `epoch`.
    #[must_use]
    pub fn starting_at(epoch: std::time::Instant) -> Clock {
        Clock { epoch }
    }

    /// The core's instant for a platform instant (instants before the epoch
    /// map to the epoch).
    #[must_use]
    pub fn instant(&self, t: std::time::Instant) -> Instant {
        let ms = t.saturating_duration_since(self.epoch).as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The platform instant of a core instant: when to wake up for an
    /// [`Output::Timeout`](iothub_proto::connection::Output::Timeout).
    /// Saturates about a century ahead instead of overflowing.
    #[must_use]
    pub fn deadline(&self, at: Instant) -> std::time::Instant {
        const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let d = Duration::from_millis(at.as_millis()).min(FAR);
        self.epoch.checked_add(d).unwrap_or(self.epoch + FAR)
    }

    /// Both clocks, read now: what every input of a driver core carries.
    #[must_use]
    pub fn now(&self) -> Now {
        Now {
            at: self.instant(std::time::Instant::now()),
            unix_secs: Clock::unix_secs(),
        }
    }

    /// Wall-clock time in seconds since the Unix epoch (0 if the system
    /// clock is before 1970).
    #[must_use]
    pub fn unix_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// One reading of both clocks, taken by the I/O side of a driver
/// ([`Clock::now`]) and passed to the driver core with every input: the
/// core itself never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, on the session's scale.
    pub at: Instant,
    /// Wall-clock seconds since the Unix epoch (for SAS token expiry).
    pub unix_secs: u64,
}

impl Now {
    /// A reading made of these two values (tests drive time by hand).
    #[must_use]
    pub fn new(at: Instant, unix_secs: u64) -> Now {
        Now { at, unix_secs }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways_and_saturates() {
        let start = std::time::Instant::now();
        let c = Clock::starting_at(start);
        assert_eq!(c.instant(start).as_millis(), 0);
        assert_eq!(c.instant(start + Duration::from_secs(3)).as_millis(), 3000);
        // Instants before the epoch clamp to it.
        let earlier = start.checked_sub(Duration::from_millis(5));
        if let Some(e) = earlier {
            assert_eq!(c.instant(e).as_millis(), 0);
        }
        assert!(c.deadline(Instant::MAX) > start + Duration::from_secs(3600 * 24 * 365));
        assert!(Clock::unix_secs() > 1_700_000_000);
    }
}
