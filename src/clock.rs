//! The monotonic clock as the agent counts it: `CLOCK_MONOTONIC` (the clock
//! behind `std::time::Instant` on Linux) in nanoseconds, in one 64-bit word.
//!
//! Why not `std::time::Instant`: it keeps seconds and nanoseconds apart, so
//! every comparison, difference and sum normalizes a pair with checks, and a
//! probe does a dozen of them (deadlines, timer ticks, gauge stamps). Here
//! each is one integer operation, and an `Option<Instant>` is 8 bytes, not 16.
//! The API is the subset of std's the agent uses, with the same meaning;
//! arithmetic saturates instead of panicking (a deadline 600 years away is
//! simply never), so no configured duration can crash the loop.

use std::fmt;
use std::num::NonZeroU64;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A moment on the monotonic clock. Never zero, so `Option<Instant>` takes
/// no extra room; the clock reads far above zero once a host has booted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

impl Instant {
    pub fn now() -> Instant {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid clock id and a pointer to a timespec we own.
        // CLOCK_MONOTONIC cannot fail on Linux; a failure would leave zeros,
        // which `from_nanos` lifts to the clock's first moment.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Instant::from_nanos(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
    }

    fn from_nanos(nanos: u64) -> Instant {
        Instant(NonZeroU64::new(nanos).unwrap_or(NonZeroU64::MIN))
    }

    fn nanos(self) -> u64 {
        self.0.get()
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos().saturating_sub(earlier.nanos()))
    }

    /// Whole nanoseconds from `earlier` to `self` (zero if `earlier` is
    /// later): for code that counts in integers, without a `Duration`.
    pub fn nanos_since(&self, earlier: Instant) -> u64 {
        self.nanos().saturating_sub(earlier.nanos())
    }

    /// `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.nanos().checked_sub(earlier.nanos()).map(Duration::from_nanos)
    }

    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(*self)
    }

    /// `None` past the clock's range (about 584 years of uptime).
    pub fn checked_add(&self, d: Duration) -> Option<Instant> {
        self.nanos().checked_add(nanos_of(d)?).map(Instant::from_nanos)
    }

    /// `None` before the clock's start (the host's boot).
    pub fn checked_sub(&self, d: Duration) -> Option<Instant> {
        self.nanos()
            .checked_sub(nanos_of(d)?)
            .filter(|&n| n > 0)
            .map(Instant::from_nanos)
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `d` in nanoseconds; `None` past 584 years (a `Duration` holds more).
fn nanos_of(d: Duration) -> Option<u64> {
    d.as_secs()
        .checked_mul(NANOS_PER_SEC)?
        .checked_add(u64::from(d.subsec_nanos()))
}

/// `d` in nanoseconds, saturating.
fn saturating_nanos(d: Duration) -> u64 {
    nanos_of(d).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the end of the clock's range: "never".
    fn add(self, d: Duration) -> Instant {
        Instant::from_nanos(self.nanos().saturating_add(saturating_nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the clock's start.
    fn sub(self, d: Duration) -> Instant {
        Instant::from_nanos(self.nanos().saturating_sub(saturating_nanos(d)))
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Zero if `other` is later, as std's.
    fn sub(self, other: Instant) -> Duration {
        self.saturating_duration_since(other)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos();
        write!(f, "Instant({}.{:09}s)", n / NANOS_PER_SEC, n % NANOS_PER_SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_the_clock_std_reads() {
        // std::time::Instant is CLOCK_MONOTONIC too: a reading of ours sits
        // between two of std's, by their own difference.
        let a = std::time::Instant::now();
        let ours = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let later = Instant::now();
        let b = std::time::Instant::now();
        let span = later - ours;
        assert!(span >= Duration::from_millis(20), "{span:?}");
        assert!(span <= b - a, "{span:?} within {:?}", b - a);
    }

    #[test]
    fn arithmetic_matches_std_and_saturates_where_std_would_panic() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!((t + ms(1500)) - t, ms(1500));
        assert_eq!((t + ms(1500)).duration_since(t + ms(500)), ms(1000));
        assert_eq!(t.saturating_duration_since(t + ms(1)), Duration::ZERO);
        assert_eq!(t.checked_duration_since(t + ms(1)), None);
        assert_eq!((t + ms(3)).checked_duration_since(t), Some(ms(3)));
        assert_eq!(t.checked_sub(ms(2)).map(|e| t - e), Some(ms(2)));
        assert!(t < t + Duration::from_nanos(1));
        let mut u = t;
        u += ms(7);
        u -= ms(2);
        assert_eq!(u - t, ms(5));
        // A configured 1,000-year timeout: "never", not a crash.
        let never = t + Duration::from_secs(1000 * 365 * 86_400);
        assert!(never > t + Duration::from_secs(500 * 365 * 86_400));
        assert_eq!(never + ms(1), never);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(t.checked_sub(Duration::MAX), None);
        assert_eq!(t - Duration::MAX, Instant::from_nanos(1));
    }

    #[test]
    fn an_optional_instant_takes_one_word() {
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
    }
}
