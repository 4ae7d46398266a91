//! Reconnection backoff: exponential with decorrelated jitter,
//! `sleep = min(max, random in [min, prev * 3])`, reset to `min` after a
//! stable connection.

use core::time::Duration;

use rand_core::Rng;

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A uniformly random value in `[low, high]` (`low` if `high < low`).
pub(crate) fn random_between(rng: &mut impl Rng, low: u64, high: u64) -> u64 {
    if high <= low {
        return low;
    }
    let span = high - low;
    match span.checked_add(1) {
        Some(n) => low + rng.next_u64() % n,
        None => rng.next_u64(),
    }
}

/// The decorrelated-jitter state.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min_ms: u64,
    max_ms: u64,
    prev_ms: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let min_ms = millis(min).max(1);
        Backoff {
            min_ms,
            max_ms: millis(max).max(min_ms),
            prev_ms: min_ms,
        }
    }

    /// The next delay: `min(max, random in [min, prev * 3])`.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let high = self.prev_ms.saturating_mul(3);
        let sleep = random_between(rng, self.min_ms, high).min(self.max_ms);
        self.prev_ms = sleep;
        Duration::from_millis(sleep)
    }

    /// Start again from the minimum (after a stable connection).
    pub(crate) fn reset(&mut self) {
        self.prev_ms = self.min_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use rand_pcg::Pcg32;

    #[test]
    fn delays_grow_within_bounds_and_reset() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for seed in 0..50 {
            let mut rng = Pcg32::seed_from_u64(seed);
            let mut b = Backoff::new(min, max);
            let mut prev = min;
            let mut reached_max = false;
            for _ in 0..40 {
                let d = b.next_delay(&mut rng);
                assert!(d >= min && d <= max, "{d:?}");
                assert!(d <= prev * 3, "{d:?} > 3 * {prev:?}");
                reached_max |= d > Duration::from_secs(20);
                prev = d;
            }
            assert!(reached_max, "seed {seed}: the delay never grew");
            b.reset();
            let d = b.next_delay(&mut rng);
            assert!(d >= min && d <= min * 3, "{d:?}");
        }
    }

    #[test]
    fn random_between_is_inclusive_and_total() {
        let mut rng = Pcg32::seed_from_u64(7);
        assert_eq!(random_between(&mut rng, 5, 5), 5);
        assert_eq!(random_between(&mut rng, 5, 1), 5);
        let _ = random_between(&mut rng, 0, u64::MAX);
        for _ in 0..100 {
            let v = random_between(&mut rng, 10, 12);
            assert!((10..=12).contains(&v));
        }
    }
}
