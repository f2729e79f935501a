//! Wall-clock time, for exported timestamps and log-facing dates only:
//! every deadline and duration inside the agent uses the monotonic clock.

use std::time::SystemTime;

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| {
            d.as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(d.subsec_millis()))
        })
        .unwrap_or(0)
}
