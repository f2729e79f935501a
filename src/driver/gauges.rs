//! What the once-a-second gauges need of each session, kept in one compact
//! array beside the slots and updated after every session call.

use crate::clock::Instant;
use crate::session::spec::Scheme;
use crate::session::{Phase, Session};
use crate::targets::TargetId;

/// One session's gauge inputs. The per-second pass reads these instead of
/// every session's own scattered state, whose cache misses would stall the
/// loop at thousands of sessions. Instants are milliseconds since the
/// driver's epoch plus one (zero: none), which keeps an entry at 24 bytes.
#[derive(Debug, Clone, Copy)]
pub struct SessionGauge {
    target: TargetId,
    open: bool,
    last_pong: u64,
    last_message: u64,
}

impl SessionGauge {
    pub(super) fn of(target: TargetId, s: &Session, epoch: Instant) -> SessionGauge {
        let stats = s.stats();
        if s.phase() != Phase::Open {
            return SessionGauge {
                target,
                open: false,
                last_pong: 0,
                last_message: 0,
            };
        }
        let stamp = |t: Option<Instant>| t.or(stats.opened_at).map_or(0, |t| gauge_stamp(t, epoch));
        let probes = s.spec().timing.ping_interval.is_some();
        let last = match s.spec().scheme {
            Scheme::Tcp => stats.last_rx,
            _ => stats.last_message,
        };
        SessionGauge {
            target,
            open: true,
            last_pong: if probes { stamp(stats.last_pong) } else { 0 },
            last_message: stamp(last),
        }
    }

    /// A session that never counts (an idle-discovery trial).
    pub(super) fn none(target: TargetId) -> SessionGauge {
        SessionGauge {
            target,
            open: false,
            last_pong: 0,
            last_message: 0,
        }
    }

    pub fn target(&self) -> TargetId {
        self.target
    }

    pub fn open(&self) -> bool {
        self.open
    }

    /// Last answered probe, else when the session opened, on the clock of
    /// `Observer::on_tick`'s `now_ms`; `None` when not open or the target
    /// sends no probes.
    pub fn last_pong_ms(&self) -> Option<u64> {
        (self.last_pong != 0).then_some(self.last_pong)
    }

    /// Last data message (WebSocket; pongs do not count) or byte (TCP),
    /// else when the session opened, on the same clock; `None` when not open.
    pub fn last_message_ms(&self) -> Option<u64> {
        (self.last_message != 0).then_some(self.last_message)
    }
}

/// One target's open sessions summed up for the gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TargetGauges {
    /// At least one session open.
    pub up: bool,
    /// Oldest last-pong and last-message stamps among them, on the gauge
    /// clock (see `SessionGauge`).
    pub oldest_pong_ms: Option<u64>,
    pub oldest_message_ms: Option<u64>,
}

/// Sums `sessions` up per target, indexed by `TargetId::index` below
/// `targets` (sessions of other targets are left out). One pass over every
/// session each second, kept tight: a target's sessions mostly sit side by
/// side, so a run of them is summed in registers and stored once, and a
/// none stamp (zero) wraps to the largest value, so it never wins a minimum
/// (closed sessions' stamps are zero).
pub fn by_target(sessions: &[SessionGauge], targets: usize) -> Vec<TargetGauges> {
    const NONE: (bool, u64, u64) = (false, u64::MAX, u64::MAX);
    let mut acc = vec![NONE; targets];
    let mut run_target = usize::MAX;
    let mut run = NONE;
    for g in sessions {
        let t = g.target.index();
        if t != run_target {
            if let Some(slot) = acc.get_mut(run_target) {
                *slot = run;
            }
            run_target = t;
            run = acc.get(t).copied().unwrap_or(NONE);
        }
        run.0 |= g.open;
        run.1 = run.1.min(g.last_pong.wrapping_sub(1));
        run.2 = run.2.min(g.last_message.wrapping_sub(1));
    }
    if let Some(slot) = acc.get_mut(run_target) {
        *slot = run;
    }
    let stamp = |min: u64| (min != u64::MAX).then(|| min + 1);
    acc.into_iter()
        .map(|(up, pong, message)| TargetGauges {
            up,
            oldest_pong_ms: stamp(pong),
            oldest_message_ms: stamp(message),
        })
        .collect()
}

/// `t` on the gauge clock: whole milliseconds since `epoch`, plus one so that
/// zero can mean none.
pub(super) fn gauge_stamp(t: Instant, epoch: Instant) -> u64 {
    (t.nanos_since(epoch) / 1_000_000).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(target: usize, open: bool, last_pong: u64, last_message: u64) -> SessionGauge {
        SessionGauge {
            target: TargetId::from_index(target).expect("small index"),
            open,
            last_pong,
            last_message,
        }
    }

    #[test]
    fn targets_sum_up_their_open_sessions_oldest_stamps() {
        let sessions = [
            gauge(0, true, 500, 700),
            gauge(0, true, 300, 900),
            gauge(0, false, 0, 0),
            // Open, but the target sends no probes: no pong stamp.
            gauge(1, true, 0, 40),
            gauge(2, false, 0, 0),
            // A removed target's session, still closing: left out.
            gauge(9, true, 1, 1),
            // Target 0 again, after others (a reload appends slots).
            gauge(0, true, 250, 800),
        ];
        let summed = by_target(&sessions, 4);
        assert_eq!(
            summed,
            vec![
                TargetGauges {
                    up: true,
                    oldest_pong_ms: Some(250),
                    oldest_message_ms: Some(700)
                },
                TargetGauges {
                    up: true,
                    oldest_pong_ms: None,
                    oldest_message_ms: Some(40)
                },
                TargetGauges::default(),
                TargetGauges::default(),
            ]
        );
    }
}
