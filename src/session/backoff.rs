//! Reconnect backoff with jitter, so that sessions that fail together do
//! not come back together.

use std::time::Duration;

use super::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub min: Duration,
    pub max: Duration,
    /// A session that stayed open this long resets the failure streak.
    pub reset_after: Duration,
}

impl BackoffPolicy {
    /// Delay before the next attempt after `failures` consecutive failures
    /// (1 for the first). The cap doubles per failure from `2 * min` up to
    /// `max`; the delay is uniform in `[min, cap]` so sessions that failed
    /// together spread out instead of reconnecting in lockstep.
    pub fn delay(&self, failures: u32, rng: &mut Rng) -> Duration {
        let min = self.min.as_micros() as u64;
        let max = (self.max.as_micros() as u64).max(min);
        let shift = failures.clamp(1, 40);
        let cap = min.saturating_mul(1u64 << shift).clamp(min, max);
        Duration::from_micros(min + rng.below_inclusive(cap - min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_stays_within_bounds_and_grows() {
        let p = policy();
        let mut rng = Rng::new(7);
        for failures in 1..=64 {
            let cap = (Duration::from_millis(500) * 2u32.saturating_pow(failures.min(20))).min(Duration::from_secs(30));
            for _ in 0..200 {
                let d = p.delay(failures, &mut rng);
                assert!(d >= p.min, "failures={failures} d={d:?}");
                assert!(d <= cap, "failures={failures} d={d:?} cap={cap:?}");
            }
        }
        // The first retry is at most 2 * min; late retries reach close to max.
        let late_max = (0..500).map(|_| p.delay(30, &mut rng)).max().unwrap();
        assert!(late_max > Duration::from_secs(25), "{late_max:?}");
    }

    #[test]
    fn sessions_failing_together_do_not_reconnect_in_lockstep() {
        let p = policy();
        let mut delays: Vec<Duration> = (0..16).map(|seed| p.delay(1, &mut Rng::new(seed))).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() >= 12, "delays too clustered: {delays:?}");
    }

    #[test]
    fn min_equal_max_is_constant() {
        let p = BackoffPolicy {
            min: Duration::from_secs(1),
            max: Duration::from_secs(1),
            ..policy()
        };
        let mut rng = Rng::new(1);
        assert!((0..50).all(|i| p.delay(i, &mut rng) == Duration::from_secs(1)));
    }
}
