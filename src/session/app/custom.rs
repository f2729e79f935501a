//! A custom application probe on a plain WebSocket target: a message sent
//! every ping interval (`${seq}` in text replaced by the probe's number) and
//! the answer recognised by a pattern, timed and deadlined like a pong.
//! Messages that do not match are ordinary traffic, never a false answer.

use super::{run_probe, Ctx, Input, ProbeKind, Protocol, Report};
use crate::clock::Instant;
use crate::session::schedule::ProbeSchedule;
use crate::session::spec::{AppProbe, ProbeAnswer, ProbeMessage, TargetSpec};

/// What stands for the probe's number in `send` and `expect`.
pub const SEQ: &str = "${seq}";

/// The name of the capture group that the `i`th `${seq}` of an `expect`
/// pattern becomes.
pub fn seq_group(i: usize) -> String {
    format!("sockpulse_seq{i}")
}

pub struct CustomProbe {
    probe: AppProbe,
    pings: ProbeSchedule,
}

impl CustomProbe {
    pub fn new(probe: &AppProbe) -> CustomProbe {
        CustomProbe {
            probe: probe.clone(),
            pings: ProbeSchedule::default(),
        }
    }

    /// Whether `input` answers probe number `id`.
    fn answers(&self, input: Input<'_>, id: u64) -> bool {
        match (&self.probe.expect, input) {
            (ProbeAnswer::Text { pattern, seq_groups }, Input::Text(text)) => {
                let Some(caps) = pattern.captures(text) else {
                    return false;
                };
                let id = id.to_string();
                (0..*seq_groups).all(|g| caps.name(&seq_group(g)).is_some_and(|m| m.as_str() == id))
            }
            (ProbeAnswer::Binary(expected), Input::Binary(bytes)) => {
                expected.is_empty() || bytes.windows(expected.len()).any(|w| w == expected.as_slice())
            }
            _ => false,
        }
    }
}

impl Protocol for CustomProbe {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        self.pings = ProbeSchedule::starting(ctx.now, ctx.spec.timing.ping_interval);
        Report::Ready
    }

    fn on_message(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        let answer = self.pings.in_flight().filter(|&id| self.answers(input, id));
        match answer.and_then(|id| self.pings.answer(id, ctx.now)) {
            Some(rtt) => Report::Answered(rtt, ProbeKind::App),
            None => {
                ctx.data = true;
                Report::Quiet
            }
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let timing = &ctx.spec.timing;
        let send = &self.probe.send;
        run_probe(&mut self.pings, timing, ProbeKind::App, ctx, |id, io| match send {
            ProbeMessage::Text(template) => io.send_text(&template.replace(SEQ, &id.to_string())),
            ProbeMessage::Binary(bytes) => io.send_binary(bytes),
        })
    }

    fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        self.pings.poll_timeout(spec.timing.pong_timeout)
    }

    fn awaiting(&self) -> Option<&'static str> {
        None
    }
}
