//! Targets with `endpoints = "all"`: their name is resolved every
//! `resolve_interval`, and every address behind it gets `connections`
//! sessions of its own, pinned to it. Addresses that appear get sessions;
//! those that vanish have theirs closed (1001); the rest are untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::gauges::SessionGauge;
use super::pacing::probe_anchor;
use super::resolver::Resolved;
use super::slots::Slot;
use super::{Driver, EndpointChange, Observer};
use crate::clock::Instant;
use crate::session::spec::{Endpoints, TargetSpec};
use crate::session::{Phase, Session};
use crate::targets::TargetId;

/// Resolver jobs for endpoint lookups are numbered from here, above every
/// session slot, so their answers are told apart from sessions' own.
pub const ENDPOINT_LOOKUPS: usize = 1 << 40;

/// One fanned-out target.
pub(super) struct FanOut {
    pub target: TargetId,
    /// The endpoints with sessions, in the resolver's order.
    pub endpoints: Vec<SocketAddr>,
    /// When to look the name up again; `None` while a lookup is out (or, in
    /// one-shot mode, after the first answer).
    next_lookup: Option<Instant>,
    seq: u64,
    /// The first answer came (one-shot runs wait for it).
    pub answered: bool,
    /// Ordinals for log lines, never reused within the target.
    next_ordinal: u32,
    /// Endpoints ever given sessions: spreads their probe phases apart.
    endpoints_seen: u32,
}

impl FanOut {
    pub fn new(target: TargetId, now: Instant) -> FanOut {
        FanOut {
            target,
            endpoints: Vec::new(),
            next_lookup: Some(now),
            seq: 0,
            answered: false,
            next_ordinal: 0,
            endpoints_seen: 0,
        }
    }
}

/// The limits of a fanned-out target.
fn limits(spec: &TargetSpec) -> Option<(Duration, usize)> {
    match spec.endpoints {
        Endpoints::All {
            resolve_interval,
            max_endpoints,
            ..
        } => Some((resolve_interval, max_endpoints)),
        Endpoints::First => None,
    }
}

impl<O: Observer> Driver<O> {
    /// When the next endpoint lookup is due.
    pub(super) fn next_endpoint_lookup(&self) -> Option<Instant> {
        self.fanouts.iter().filter_map(|f| f.next_lookup).min()
    }

    /// Sends the lookups that are due to the resolver threads.
    pub(super) fn look_up_endpoints(&mut self, now: Instant) {
        for f in self.fanouts.iter_mut() {
            if !f.next_lookup.is_some_and(|t| now >= t) {
                continue;
            }
            let Some(spec) = self.targets.get(f.target) else {
                continue;
            };
            f.next_lookup = None;
            f.seq += 1;
            let no_files: Arc<[std::path::PathBuf]> = Arc::new([]);
            let job = ENDPOINT_LOOKUPS + f.target.index();
            let answered = match &spec.endpoints {
                Endpoints::All { srv: Some(name), .. } => self.resolver.submit_srv(job, f.seq, name),
                // An IP literal answers at once and is its own set.
                _ => self.resolver.submit(job, f.seq, &spec.host, spec.port, &no_files),
            };
            if let Some(result) = answered {
                self.pending_endpoint_answers.push(Resolved {
                    slot: job,
                    seq: f.seq,
                    result,
                    secrets: None,
                });
            }
        }
    }

    /// An answer to an endpoint lookup: sessions for new endpoints, a close
    /// for vanished ones; a failed lookup keeps the set it had.
    pub(super) fn endpoints_resolved(&mut self, r: Resolved, now: Instant) {
        let index = r.slot - ENDPOINT_LOOKUPS;
        let Some(f) = self.fanouts.iter_mut().find(|f| f.target.index() == index) else {
            return; // the target was removed meanwhile
        };
        let Some(spec) = self.targets.get(f.target).map(Arc::clone) else {
            return;
        };
        if r.seq != f.seq {
            return;
        }
        let Some((interval, max_endpoints)) = limits(&spec) else {
            return;
        };
        let id = f.target;
        f.answered = true;
        f.next_lookup = match self.mode {
            crate::session::Mode::Persistent => Some(now + interval),
            crate::session::Mode::OneShot { .. } => None,
        };
        let mut found = match r.result {
            Ok(addrs) => addrs,
            Err(e) => {
                let name = match &spec.endpoints {
                    Endpoints::All { srv: Some(name), .. } => format!("SRV {name}"),
                    _ => spec.host.clone(),
                };
                self.observer
                    .on_endpoints(id, Err(&format!("cannot resolve {name}: {e}")));
                return;
            }
        };
        let mut unique = Vec::with_capacity(found.len());
        for a in found.drain(..) {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        let dropped = unique.len().saturating_sub(max_endpoints);
        unique.truncate(max_endpoints);
        let old = std::mem::take(&mut f.endpoints);
        let added: Vec<SocketAddr> = unique.iter().filter(|a| !old.contains(a)).copied().collect();
        let removed: Vec<SocketAddr> = old.iter().filter(|a| !unique.contains(a)).copied().collect();
        f.endpoints = unique.clone();
        self.observer.on_endpoints(
            id,
            Ok(&EndpointChange {
                endpoints: &unique,
                added: &added,
                removed: &removed,
                dropped,
            }),
        );
        for addr in removed {
            for i in 0..self.slots.len() {
                let slot = &self.slots[i];
                if slot.target == id && !slot.retired && slot.session.endpoint() == Some(addr) {
                    self.slots[i].retired = true;
                    self.slots[i].session.stop(now, &mut self.out);
                    self.after_session_call(i, now);
                }
            }
        }
        for addr in added {
            for i in self.add_sessions(id, &spec, Some(addr)) {
                self.start_or_wait(i, now);
            }
        }
    }

    /// Adds `connections` sessions of target `id` (pinned to `endpoint` if
    /// given), reusing the slots of stopped retired sessions; returns their
    /// slot indexes. They are not started.
    pub(super) fn add_sessions(
        &mut self,
        id: TargetId,
        spec: &Arc<TargetSpec>,
        endpoint: Option<SocketAddr>,
    ) -> Vec<usize> {
        let fanout = self.fanouts.iter_mut().find(|f| f.target == id);
        let (first_ordinal, shift) = match fanout {
            Some(f) if endpoint.is_some() => {
                let first = f.next_ordinal;
                f.next_ordinal = f.next_ordinal.saturating_add(spec.connections);
                f.endpoints_seen = f.endpoints_seen.wrapping_add(1);
                // Endpoints' probe phases apart, as targets' are.
                (first, (f64::from(f.endpoints_seen) * 0.381_966_011_250_105).fract())
            }
            _ => (0, 0.0),
        };
        let mut indexes = Vec::with_capacity(spec.connections as usize);
        for k in 0..spec.connections {
            let ordinal = first_ordinal + k;
            let n = ((id.index() as u64) << 20) ^ (self.slots.len() as u64 + u64::from(ordinal));
            let mut session = Session::new(
                Arc::clone(spec),
                self.mode,
                self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            if let Some(addr) = endpoint {
                session.pin_endpoint(addr);
            }
            if let Some(interval) = spec.timing.ping_interval {
                let anchor = probe_anchor(self.epoch, interval, id, k, spec.connections);
                session.set_probe_anchor(anchor + interval.mul_f64(shift));
            }
            indexes.push(self.place_session(id, ordinal, session, false));
        }
        indexes
    }

    /// Puts a new session of target `id` in a slot: one of a stopped session
    /// whose target is gone (or trial is over), else a new one. A `trial`
    /// session (idle discovery) is the target's on the wire only.
    pub(super) fn place_session(&mut self, id: TargetId, ordinal: u32, session: Session, trial: bool) -> usize {
        let reusable =
            (0..self.slots.len()).find(|&i| self.slots[i].retired && self.slots[i].session.phase() == Phase::Stopped);
        let gauge = SessionGauge::of(id, &session, self.epoch);
        let i = match reusable {
            Some(i) => {
                let slot = &mut self.slots[i];
                slot.session = session;
                slot.target = id;
                slot.ordinal = ordinal;
                self.stopped -= 1;
                self.gauges[i] = gauge;
                i
            }
            None => {
                self.gauges.push(gauge);
                self.slots.push(Slot::new(session, id, ordinal));
                self.slots.len() - 1
            }
        };
        // A trial's slot is free again as soon as it stops.
        self.slots[i].retired = trial;
        self.slots[i].trial = trial;
        self.slots[i].probe = false;
        self.timers.ensure_slots(self.slots.len());
        i
    }
}
