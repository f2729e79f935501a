//! Targets joining and leaving the loop: the sessions of a new target, and a
//! reload's reconciliation of the running targets with a new list.

use std::collections::HashSet;
use std::sync::Arc;

use super::endpoints::FanOut;
use super::pacing::timer_granularity;
use super::{Driver, Observer, ReloadSummary};
use crate::clock::Instant;
use crate::session::spec::{Endpoints, TargetSpec};
use crate::targets::TargetId;

impl<O: Observer> Driver<O> {
    /// Adds a target and its sessions (not yet started); returns its id. A
    /// target with `endpoints = "all"` has none until its name is resolved.
    pub(super) fn add_target(&mut self, spec: &Arc<TargetSpec>) -> TargetId {
        let id = self.targets.push(Arc::clone(spec));
        if let Some(r) = &self.owned {
            r.set_target_name(id, Some(spec.name.clone()));
        }
        if let (Some(max), crate::session::Mode::Persistent) = (spec.idle_discovery, self.mode) {
            self.discoveries
                .push(super::idle_discovery::Discovery::new(id, max, Instant::now()));
        }
        match spec.endpoints {
            Endpoints::All { .. } => self.fanouts.push(FanOut::new(id, Instant::now())),
            Endpoints::First => {
                self.add_sessions(id, spec, None);
            }
        }
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
            if let Some(n) = new
                .iter()
                .find(|n| n.name == spec.name && n.fingerprint == spec.fingerprint)
            {
                kept.insert(spec.name.clone());
                summary.kept += 1;
                self.observer.on_target_kept(id, n);
                continue;
            }
            summary.removed += 1;
            self.targets.remove(id);
            self.fanouts.retain(|f| f.target != id);
            self.drop_discoveries(id, now);
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
