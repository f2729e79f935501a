//! RFC 6455 ping/pong as the liveness probe: a ping carrying the probe's id
//! every interval; the pong carrying the same id answers it.

use super::{run_probe, Ctx, Input, ProbeKind, Report};
use crate::clock::Instant;
use crate::session::ping::ID_LEN;
use crate::session::schedule::ProbeSchedule;
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

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let timing = &ctx.spec.timing;
        run_probe(&mut self.schedule, timing, ProbeKind::Ping, ctx, |id, io| {
            io.send_ping(id)
        })
    }

    /// Pongs answer probes; every data message is the feed flowing.
    pub fn on_input(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        let payload = match input {
            Input::Pong(payload) => payload,
            Input::Text(_) | Input::Binary(_) | Input::Skipped | Input::Chunk(_) => {
                ctx.data = true;
                return Report::Quiet;
            }
            Input::Bytes(_) => return Report::Quiet,
        };
        let id = <[u8; ID_LEN]>::try_from(payload).ok().map(u64::from_be_bytes);
        match id.and_then(|id| self.schedule.answer(id, ctx.now)) {
            Some(rtt) => Report::Answered(rtt, ProbeKind::Ping),
            None => Report::Stray,
        }
    }
}
