//! Targets joining and leaving the loop: the sessions of a new target, and a
//! reload's reconciliation of the running targets with a new list.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::gauges::SessionGauge;
use super::pacing::{probe_anchor, timer_granularity};
use super::slots::Slot;
use super::{Driver, Observer, ReloadSummary};
use crate::session::spec::TargetSpec;
use crate::session::{Phase, Session};
use crate::targets::TargetId;

impl<O: Observer> Driver<O> {
    /// Adds a target and its sessions (not yet started), reusing the slots
    /// of removed targets' stopped sessions; returns its id.
    pub(super) fn add_target(&mut self, spec: &Arc<TargetSpec>) -> TargetId {
        let id = self.targets.push(Arc::clone(spec));
        if let Some(r) = &self.owned {
            r.set_target_name(id, Some(spec.name.clone()));
        }
        let mut reusable = (0..self.slots.len())
            .filter(|&i| self.slots[i].retired && self.slots[i].session.phase() == Phase::Stopped)
            .collect::<Vec<_>>()
            .into_iter();
        for ordinal in 0..spec.connections {
            let n = ((id.index() as u64) << 20) ^ (self.slots.len() as u64 + u64::from(ordinal));
            let mut session = Session::new(
                Arc::clone(spec),
                self.mode,
                self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            if let Some(interval) = spec.timing.ping_interval {
                session.set_probe_anchor(probe_anchor(self.epoch, interval, id, ordinal, spec.connections));
            }
            match reusable.next() {
                Some(i) => {
                    let slot = &mut self.slots[i];
                    slot.session = session;
                    slot.target = id;
                    slot.ordinal = ordinal;
                    slot.retired = false;
                    self.stopped -= 1;
                    self.gauges[i] = SessionGauge::of(id, &slot.session, self.epoch);
                }
                None => {
                    self.gauges.push(SessionGauge::of(id, &session, self.epoch));
                    self.slots.push(Slot::new(session, id, ordinal));
                }
            }
        }
        self.timers.ensure_slots(self.slots.len());
        id
    }

    /// Applies a new target list: targets with an unchanged fingerprint keep
    /// their sessions; removed or changed ones close theirs; new ones start.
    pub fn reconcile(&mut self, new: &[Arc<TargetSpec>], now: Instant) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let mut kept = HashSet::new();
        let running: Vec<(TargetId, Arc<TargetSpec>)> =
            self.targets.iter().map(|(id, spec)| (id, Arc::clone(spec))).collect();
        for (id, spec) in running {
            if new
                .iter()
                .any(|n| n.name == spec.name && n.fingerprint == spec.fingerprint)
            {
                kept.insert(spec.name.clone());
                summary.kept += 1;
                continue;
            }
            summary.removed += 1;
            self.targets.remove(id);
            if let Some(r) = &self.owned {
                r.set_target_name(id, None);
            }
            self.observer.on_target_removed(id, &spec);
            for i in 0..self.slots.len() {
                if self.slots[i].target == id && !self.slots[i].retired {
                    self.slots[i].retired = true;
                    self.slots[i].session.stop(now, &mut self.out);
                    self.after_session_call(i, now);
                }
            }
        }
        for spec in new.iter().filter(|s| !kept.contains(&s.name)) {
            summary.added += 1;
            let id = self.add_target(spec);
            self.observer.on_target_added(id, spec);
            for i in 0..self.slots.len() {
                if self.slots[i].target == id && !self.slots[i].retired {
                    self.start_or_wait(i, now);
                }
            }
        }
        // The grid (see `timer_granularity`) follows the targets through reloads.
        self.timers
            .set_grid(timer_granularity(self.targets.values().map(|t| t.as_ref())));
        summary
    }
}
