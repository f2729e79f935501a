//! A TCP target's probe: `send` every interval, and the answer is in once
//! `expect` appears in what comes back (possibly split across reads).

use std::time::Duration;

use super::{run_probe, Ctx, Input, ProbeKind, Report};
use crate::clock::Instant;
use crate::session::schedule::ProbeSchedule;
use crate::session::spec::TargetSpec;

/// Bytes kept while searching an answer for its pattern.
const WINDOW: usize = 4096;

pub struct TcpProbe {
    schedule: ProbeSchedule,
    /// What arrived since the probe went out, up to `WINDOW` bytes.
    window: Vec<u8>,
}

impl TcpProbe {
    pub fn start(now: Instant, interval: Option<Duration>) -> TcpProbe {
        TcpProbe {
            schedule: ProbeSchedule::starting(now, interval),
            window: Vec::new(),
        }
    }

    pub fn probes(&self) -> bool {
        self.schedule.probes()
    }

    pub fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        self.schedule.poll_timeout(spec.timing.pong_timeout)
    }

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let spec = ctx.spec;
        let window = &mut self.window;
        run_probe(&mut self.schedule, &spec.timing, ProbeKind::Ping, ctx, |_, io| {
            window.clear();
            if let Some(probe) = &spec.probe {
                io.send_raw(&probe.send);
            }
        })
    }

    /// Bytes outside a probe's round trip are not searched.
    pub fn on_input(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        let (Input::Bytes(bytes), Some(probe), Some(id)) = (input, &ctx.spec.probe, self.schedule.in_flight()) else {
            return Report::Quiet;
        };
        self.window.extend_from_slice(bytes);
        if contains(&self.window, &probe.expect) {
            self.window.clear();
            return match self.schedule.answer(id, ctx.now) {
                Some(rtt) => Report::Answered(rtt, ProbeKind::Ping),
                None => Report::Quiet,
            };
        }
        if self.window.len() > WINDOW {
            // Keep only a tail long enough to hold a split match.
            let keep = probe.expect.len().saturating_sub(1);
            let cut = self.window.len() - keep;
            self.window.drain(..cut);
        }
        Report::Quiet
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
