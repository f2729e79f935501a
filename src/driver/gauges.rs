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

/// `t` on the gauge clock: whole milliseconds since `epoch`, plus one so that
/// zero can mean none (saturating: half a billion years).
pub(super) fn gauge_stamp(t: Instant, epoch: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_millis()).map_or(u64::MAX, |ms| ms.saturating_add(1))
}
