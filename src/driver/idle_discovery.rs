//! Idle discovery's trial sessions: one at a time per target, each a
//! one-shot session that is silent for a while and then probes, or only
//! pings (see `idle_search`). They are the target's sessions on the wire
//! but not in its series: their events go to the search, never to the
//! observer's counters, and they never count as the target being up.

use std::sync::Arc;
use std::time::Duration;

use super::idle_search::{IdleSearch, Outcome, Trial};
use super::{Driver, Observer};
use crate::clock::Instant;
use crate::session::spec::{Endpoints, TargetSpec};
use crate::session::{DisconnectReason, Mode, Phase, SessionEvent};
use crate::targets::TargetId;

/// The first trial waits for the target's own sessions to open.
const FIRST_TRIAL_AFTER: Duration = Duration::from_secs(1);
const BETWEEN_TRIALS: Duration = Duration::from_millis(200);

pub(super) struct Discovery {
    pub target: TargetId,
    search: IdleSearch,
    /// The trial running, in which slot, and what it has shown so far.
    running: Option<Running>,
    next_start: Option<Instant>,
}

struct Running {
    trial: Trial,
    slot: usize,
    outcome: Outcome,
}

impl Discovery {
    pub fn new(target: TargetId, max: Duration, now: Instant) -> Discovery {
        Discovery {
            target,
            search: IdleSearch::new(max),
            running: None,
            next_start: Some(now + FIRST_TRIAL_AFTER),
        }
    }

    /// The trial session in `slot`, if one of ours.
    pub fn runs_in(&self, slot: usize) -> bool {
        self.running.as_ref().is_some_and(|r| r.slot == slot)
    }

    /// Takes an event of its trial session; true when the trial is over.
    pub fn on_event(&mut self, event: &SessionEvent) -> bool {
        let Some(running) = self.running.as_mut() else {
            return false;
        };
        match event {
            SessionEvent::Disconnected { reason, open_for, .. } => {
                running.outcome = match reason {
                    // A one-shot session closes itself once its probes are answered.
                    DisconnectReason::LocalClose => Outcome::Answered,
                    DisconnectReason::Eof
                    | DisconnectReason::Reset
                    | DisconnectReason::PeerClose
                    | DisconnectReason::IoError => Outcome::Killed { after: *open_for },
                    DisconnectReason::PongTimeout => Outcome::Unanswered,
                    _ => Outcome::Inconclusive,
                };
                false
            }
            SessionEvent::PhaseChanged { to: Phase::Stopped, .. } => {
                self.search.record(running.trial, running.outcome);
                self.running = None;
                true
            }
            _ => false,
        }
    }
}

/// The target as a trial session sees it: nothing sent after the upgrade
/// but the trial's probes, no idle or message timeout of its own.
fn trial_spec(spec: &TargetSpec, trial: Trial) -> TargetSpec {
    let mut t = spec.clone();
    t.connections = 1;
    t.endpoints = Endpoints::First;
    t.idle_discovery = None;
    t.ws.on_open = Vec::new();
    t.timing.idle_timeout = None;
    t.timing.message_timeout = None;
    match trial {
        Trial::Silent { hold } => {
            t.timing.ping_interval = Some(hold);
            t.timing.first_probe_delay = Some(hold);
        }
        Trial::PingsOnly { interval, .. } => {
            t.timing.ping_interval = Some(interval);
            t.timing.first_probe_delay = None;
        }
    }
    if let Some(interval) = t.timing.ping_interval {
        t.timing.pong_timeout = t.timing.pong_timeout.min(interval / 2);
    }
    t
}

impl<O: Observer> Driver<O> {
    /// When the next trial is due to start.
    pub(super) fn next_discovery_start(&self) -> Option<Instant> {
        self.discoveries.iter().filter_map(|d| d.next_start).min()
    }

    /// Starts the trials that are due.
    pub(super) fn run_discoveries(&mut self, now: Instant) {
        for k in 0..self.discoveries.len() {
            let d = &mut self.discoveries[k];
            if d.running.is_some() || !d.next_start.is_some_and(|t| now >= t) {
                continue;
            }
            d.next_start = None;
            let Some(trial) = d.search.next_trial() else {
                continue; // everything is known
            };
            let id = d.target;
            let Some(spec) = self.targets.get(id).map(Arc::clone) else {
                continue;
            };
            let mode = match trial {
                Trial::Silent { .. } => Mode::OneShot { pings: 1 },
                Trial::PingsOnly { pings, .. } => Mode::OneShot { pings },
            };
            let trial_spec = Arc::new(trial_spec(&spec, trial));
            let i = self.add_trial_session(id, trial_spec, mode);
            log::debug!("target={} idle discovery: {trial:?}", spec.name);
            self.discoveries[k].running = Some(Running {
                trial,
                slot: i,
                outcome: Outcome::Inconclusive,
            });
            self.slots[i].session.start(now, &mut self.out);
            self.after_session_call(i, now);
        }
    }

    /// After a trial's event that ended it: tells the observer what is
    /// known, and schedules the next trial.
    pub(super) fn trial_over(&mut self, k: usize, now: Instant) {
        let d = &mut self.discoveries[k];
        d.next_start = Some(now + BETWEEN_TRIALS);
        let (id, finding, pings) = (d.target, d.search.finding(), d.search.pings_keep_alive());
        if finding.is_some() {
            self.observer.on_idle_discovery(id, finding, pings);
        }
    }

    /// A slot for a trial session of target `id`.
    fn add_trial_session(&mut self, id: TargetId, spec: Arc<TargetSpec>, mode: Mode) -> usize {
        let seed = self.seed ^ (id.index() as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let session = crate::session::Session::new(spec, mode, seed);
        self.place_session(id, u32::MAX, session, true)
    }

    /// Stops the trials of a removed target.
    pub(super) fn drop_discoveries(&mut self, id: TargetId, now: Instant) {
        let slots: Vec<usize> = self
            .discoveries
            .iter()
            .filter(|d| d.target == id)
            .filter_map(|d| d.running.as_ref().map(|r| r.slot))
            .collect();
        self.discoveries.retain(|d| d.target != id);
        for i in slots {
            self.slots[i].session.stop(now, &mut self.out);
            self.after_session_call(i, now);
        }
    }
}
