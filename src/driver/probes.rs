//! `/probe` checks on the loop: one-shot sessions asked for by the HTTP
//! side through the `LoopHandle`, their events folded into a report that
//! goes back to the asker when the session is done or its deadline
//! passes, whichever comes first. Like idle discovery's trials, they are
//! no target's: never in the series, never at a target's gate.

use std::sync::Arc;

use super::{Driver, Observer};
use crate::clock::Instant;
use crate::observer::TargetReport;
use crate::session::spec::TargetSpec;
use crate::session::{Mode, Session};
use crate::targets::TargetId;

/// A check the HTTP side wants.
pub struct ProbeRequest {
    pub spec: Arc<TargetSpec>,
    pub pings: u32,
    /// The answer goes back by then, finished or not.
    pub deadline: Instant,
    /// Called once with the report; dropped unanswered only when the loop
    /// ends.
    pub reply: Box<dyn FnOnce(TargetReport) + Send>,
}

pub(super) struct ProbeRun {
    pub slot: usize,
    deadline: Instant,
    pub report: TargetReport,
    /// Taken when the answer went back.
    reply: Option<Box<dyn FnOnce(TargetReport) + Send>>,
    /// Its session stopped: the run can go.
    pub done: bool,
}

impl ProbeRun {
    /// Folds in an event of its session; answers when the session stopped.
    pub fn on_event(&mut self, ctx: &super::EventContext<'_>, event: &crate::session::SessionEvent) {
        self.report.record(ctx, event);
        if matches!(
            event,
            crate::session::SessionEvent::PhaseChanged {
                to: crate::session::Phase::Stopped,
                ..
            }
        ) {
            self.answer();
            self.done = true;
        }
    }

    fn answer(&mut self) {
        if let Some(reply) = self.reply.take() {
            let mut report = self.report.clone();
            report.settle();
            reply(report);
        }
    }
}

impl<O: Observer> Driver<O> {
    /// Starts the checks asked for since the last turn.
    pub(super) fn start_probes(&mut self, now: Instant) {
        for req in self.handle.take_probes() {
            let seed = self.seed ^ (self.slots.len() as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            let session = Session::new(Arc::clone(&req.spec), Mode::OneShot { pings: req.pings }, seed);
            // Probe slots belong to no target; the id only fills the field.
            let id = TargetId::from_index(0).expect("index 0");
            let i = self.place_session(id, 0, session, true);
            self.slots[i].trial = false;
            self.slots[i].probe = true;
            self.probes.push(ProbeRun {
                slot: i,
                deadline: req.deadline,
                report: TargetReport::new(&req.spec, req.pings),
                reply: Some(req.reply),
                done: false,
            });
            self.slots[i].session.start(now, &mut self.out);
            self.after_session_call(i, now);
        }
    }

    /// The earliest deadline of a running check.
    pub(super) fn next_probe_deadline(&self) -> Option<Instant> {
        self.probes
            .iter()
            .filter(|p| p.reply.is_some())
            .map(|p| p.deadline)
            .min()
    }

    /// Answers the checks whose deadline passed with what they have, and
    /// stops their sessions.
    pub(super) fn expire_probes(&mut self, now: Instant) {
        // Answered first, stopped after: stopping ends runs (and removes
        // them from the list) while this walks it.
        let due: Vec<usize> = self
            .probes
            .iter_mut()
            .filter(|p| p.reply.is_some() && now >= p.deadline)
            .map(|p| {
                p.answer();
                p.slot
            })
            .collect();
        for i in due {
            self.slots[i].session.stop(now, &mut self.out);
            self.after_session_call(i, now);
        }
        self.probes.retain(|p| !p.done);
    }
}
