//! RFC 6455 ping/pong as the liveness probe: a ping carrying the probe's id
//! every interval; the pong carrying the same id answers it.

use std::time::Instant;

use super::{Ctx, Input, Report};
use crate::session::ping::ID_LEN;
use crate::session::schedule::{Due, ProbeSchedule};
use crate::session::spec::TargetSpec;

pub struct WsPing {
    schedule: ProbeSchedule,
}

impl WsPing {
    pub fn start(now: Instant, interval: Option<std::time::Duration>) -> WsPing {
        WsPing {
            schedule: ProbeSchedule::starting(now, interval),
        }
    }

    pub fn probes(&self) -> bool {
        self.schedule.probes()
    }

    pub fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        self.schedule.poll_timeout(spec.timing.pong_timeout)
    }

    pub fn on_timeout(&mut self, ctx: Ctx<'_>) -> Report {
        match self
            .schedule
            .on_timeout(ctx.now, &ctx.spec.timing, ctx.probing, ctx.rng)
        {
            Due::Nothing => Report::Quiet,
            Due::Unanswered => Report::Unanswered,
            Due::Probe(id) => {
                ctx.io.send_ping(id);
                Report::Quiet
            }
        }
    }

    /// Only pongs matter here; data messages are ordinary traffic.
    pub fn on_input(&mut self, input: Input<'_>, ctx: Ctx<'_>) -> Report {
        let Input::Pong(payload) = input else {
            return Report::Quiet;
        };
        let id = <[u8; ID_LEN]>::try_from(payload).ok().map(u64::from_be_bytes);
        match id.and_then(|id| self.schedule.answer(id, ctx.now)) {
            Some(rtt) => Report::Answered(rtt),
            None => Report::Stray,
        }
    }
}
