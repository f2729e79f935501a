//! When the loop wakes and when each session probes: the timer grid, the
//! spacing of wake-ups, and each session's probe phase.

use std::time::Duration;

use crate::clock::Instant;
use crate::session::spec::TargetSpec;
use crate::session::Phase;
use crate::targets::TargetId;

/// Timer wake-ups are rounded up to a grid so that deadlines in the same
/// window fire in one wake: at thousands of sessions a wake per deadline
/// costs more in context switches than all the work done. The grid is the
/// shortest configured timer over `TIMER_GRID_DIVISOR` (deadlines fire at
/// most 0.5 % late), between these bounds. RTT is measured from the actual
/// send and to the pong's arrival, so the grid never skews it; but the pings
/// of one grid period reach a server together and queue there, which is
/// what bounds the grid from above (the README has the measurements).
pub const MAX_TIMER_GRANULARITY: Duration = Duration::from_millis(25);
pub const MIN_TIMER_GRANULARITY: Duration = Duration::from_millis(1);
pub const TIMER_GRID_DIVISOR: u32 = 200;

/// The timer grid for these targets (see `MAX_TIMER_GRANULARITY`).
pub fn timer_granularity<'a>(targets: impl IntoIterator<Item = &'a TargetSpec>) -> Duration {
    let shortest = targets
        .into_iter()
        .flat_map(|spec| {
            let t = &spec.timing;
            [
                t.ping_interval,
                Some(t.pong_timeout),
                t.idle_timeout,
                Some(t.connect_timeout),
                Some(t.handshake_timeout),
                // Not close_timeout: a close finishing late costs nothing.
            ]
        })
        .flatten()
        .min();
    match shortest {
        Some(d) => (d / TIMER_GRID_DIVISOR).clamp(MIN_TIMER_GRANULARITY, MAX_TIMER_GRANULARITY),
        None => MAX_TIMER_GRANULARITY,
    }
}

/// How long the loop sleeps before polling: kernel receive stamps make a
/// late read cost RTT nothing, so it wakes at most once per grid period and
/// pongs and deadlines of one period share a wake-up (each costs tens of µs
/// on a VM). Not unless `quiet` (no session being established: connect
/// completion has no stamp and its duration must stay exact; not stopping),
/// and not when the poll must not wait at all.
pub fn wake_spacing(last_wake: Option<Instant>, now: Instant, grid: Duration, wait: Duration, quiet: bool) -> Duration {
    match last_wake {
        Some(last) if quiet && !wait.is_zero() => (last + grid).saturating_duration_since(now),
        _ => Duration::ZERO,
    }
}

/// Where in the ping interval session `ordinal` of `connections` of target
/// `id` probes: the target's sessions evenly spaced in order (neighbours
/// in memory probe in the same or the next timer tick), each target shifted
/// by the golden ratio so that targets with one session each do not probe
/// together.
pub fn probe_anchor(epoch: Instant, interval: Duration, id: TargetId, ordinal: u32, connections: u32) -> Instant {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    let share = f64::from(ordinal) / f64::from(connections.max(1)) + id.index() as f64 * GOLDEN;
    epoch + interval.mul_f64(share.fract())
}

/// Phases in which a session is being established: while any is, the loop
/// does not space its wake-ups (connect timings must stay exact).
pub fn establishing(phase: Phase) -> bool {
    matches!(phase, Phase::Resolving | Phase::Connecting | Phase::Handshaking)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn probe_anchors_spread_a_targets_sessions_evenly_in_order_and_shift_targets_apart() {
        let epoch = Instant::now();
        let interval = Duration::from_secs(10);
        let offset = |index: usize, ordinal: u32, connections: u32| {
            let id = TargetId::from_index(index).expect("small index");
            probe_anchor(epoch, interval, id, ordinal, connections) - epoch
        };
        // Target 0: ordinal k of 4 at k quarters of the interval.
        let quarters: Vec<_> = (0..4).map(|k| offset(0, k, 4)).collect();
        assert_eq!(quarters, [0, 2_500, 5_000, 7_500].map(Duration::from_millis));
        // Target 1 starts 0.618 of an interval in and wraps around.
        let shifted: Vec<_> = (0..2).map(|k| offset(1, k, 2).as_millis()).collect();
        assert_eq!(shifted, [6_180, 1_180]);
        // One session per target: ten targets at least 5 % of the interval apart.
        let mut phases: Vec<_> = (0..10).map(|t| offset(t, 0, 1).as_millis()).collect();
        phases.sort();
        let closest = phases.windows(2).map(|w| w[1] - w[0]).min();
        assert!(closest >= Some(500), "{phases:?}");
    }

    #[test]
    fn the_timer_grid_follows_the_shortest_timer_within_bounds() {
        let spec = |ping_ms: u64, pong_ms: u64| {
            let text = format!(
                "[[target]]\nurl = \"ws://example.test/\"\nping_interval = \"{ping_ms}ms\"\npong_timeout = \"{pong_ms}ms\"\n"
            );
            let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
            TargetSpec::clone(&cfg.targets[0])
        };
        // Production-like timers: the coarsest grid.
        assert_eq!(timer_granularity([&spec(10_000, 5_000)]), MAX_TIMER_GRANULARITY);
        // The test suite's fast timers: 300 ms / 200 = 1.5 ms.
        assert_eq!(timer_granularity([&spec(500, 300)]), Duration::from_micros(1_500));
        // The shortest target decides; never below the floor.
        assert_eq!(
            timer_granularity([&spec(10_000, 5_000), &spec(500, 300)]),
            Duration::from_micros(1_500)
        );
        assert_eq!(timer_granularity([&spec(50, 20)]), MIN_TIMER_GRANULARITY);
        assert_eq!(timer_granularity(std::iter::empty()), MAX_TIMER_GRANULARITY);
        assert_eq!(ms(25), MAX_TIMER_GRANULARITY);
    }

    #[test]
    fn the_loop_wakes_at_most_once_per_grid_period_once_sessions_are_open() {
        let t = Instant::now();
        let grid = ms(10);
        // 3 ms after the last wake: sleep out the other 7.
        assert_eq!(wake_spacing(Some(t), t + ms(3), grid, ms(500), true), ms(7));
        // A whole period has passed, or this is the first wake: poll now.
        assert_eq!(wake_spacing(Some(t), t + ms(12), grid, ms(500), true), Duration::ZERO);
        assert_eq!(wake_spacing(None, t, grid, ms(500), true), Duration::ZERO);
        // Sessions being established (or stopping), or unfinished reads
        // (wait zero): no spacing.
        assert_eq!(wake_spacing(Some(t), t + ms(3), grid, ms(500), false), Duration::ZERO);
        assert_eq!(
            wake_spacing(Some(t), t + ms(3), grid, Duration::ZERO, true),
            Duration::ZERO
        );
    }

    #[test]
    fn establishing_covers_resolve_connect_and_handshake_only() {
        for p in [Phase::Resolving, Phase::Connecting, Phase::Handshaking] {
            assert!(establishing(p), "{p:?}");
        }
        for p in [Phase::Idle, Phase::Open, Phase::Closing, Phase::Backoff, Phase::Stopped] {
            assert!(!establishing(p), "{p:?}");
        }
    }
}
