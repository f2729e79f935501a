//! The endpoints of a target with `endpoints = "all"`: their own series
//! (labelled `endpoint="ip:port"`, created and removed with the endpoints)
//! and their own live reports, beside the target's.

use std::net::SocketAddr;

use prometheus::Histogram;

use super::report::TargetReport;
use crate::driver::{EndpointChange, EventContext};
use crate::kernel::Diagnosis;
use crate::metrics::Metrics;
use crate::session::spec::TargetSpec;
use crate::session::{DisconnectReason, FailureReason, Phase, ProbeKind, SessionEvent};

struct Endpoint {
    addr: SocketAddr,
    label: String,
    rtt: Histogram,
    /// Its sessions open now.
    open: u32,
    live: TargetReport,
}

/// A target's endpoints (at most its `max_endpoints`).
#[derive(Default)]
pub struct EndpointSet {
    list: Vec<Endpoint>,
}

impl EndpointSet {
    /// Applies a lookup's answer: series for new endpoints, none for
    /// vanished ones.
    pub fn apply(&mut self, m: &Metrics, spec: &TargetSpec, change: &EndpointChange<'_>) {
        let target = spec.name.as_str();
        for addr in change.removed {
            if let Some(i) = self.list.iter().position(|e| e.addr == *addr) {
                let gone = self.list.swap_remove(i);
                remove_series(m, target, &gone.label);
            }
        }
        for addr in change.added {
            let label = addr.to_string();
            m.endpoint_up.with_label_values(&[target, &label]).set(0);
            let mut live = TargetReport::new(spec, 0);
            live.endpoint = Some(label.clone());
            self.list.push(Endpoint {
                addr: *addr,
                rtt: m.endpoint_rtt.with_label_values(&[target, &label]),
                label,
                open: 0,
                live,
            });
        }
        m.endpoints
            .with_label_values(&[target])
            .set(change.endpoints.len() as i64);
        m.endpoints_dropped
            .with_label_values(&[target])
            .set(change.dropped as i64);
    }

    /// Every series of every endpoint, and the target's endpoint gauges.
    pub fn remove_all(&mut self, m: &Metrics, target: &str) {
        for e in self.list.drain(..) {
            remove_series(m, target, &e.label);
        }
        let _ = m.endpoints.remove_label_values(&[target]);
        let _ = m.endpoints_dropped.remove_label_values(&[target]);
    }

    /// Folds an event of a session pinned to `addr` into its endpoint.
    pub fn on_event(
        &mut self,
        m: &Metrics,
        target: &str,
        addr: SocketAddr,
        ctx: &EventContext<'_>,
        event: &SessionEvent,
        diagnosis: Option<Diagnosis>,
    ) {
        let Some(e) = self.list.iter_mut().find(|e| e.addr == addr) else {
            return; // removed while its sessions close
        };
        e.live.record(ctx, event);
        let reason = match event {
            SessionEvent::PhaseChanged { from, to } => {
                if *to == Phase::Open {
                    e.open += 1;
                } else if *from == Phase::Open {
                    e.open = e.open.saturating_sub(1);
                }
                None
            }
            SessionEvent::Pong {
                rtt,
                probe: ProbeKind::Ping,
            } => {
                e.rtt.observe(rtt.as_secs_f64());
                None
            }
            SessionEvent::ConnectFailed { reason, .. } => Some(reason.as_str()),
            SessionEvent::Disconnected { reason, .. } if *reason != DisconnectReason::LocalClose => {
                Some(reason.as_str())
            }
            _ => None,
        };
        if let Some(reason) = reason {
            m.endpoint_failures.with_label_values(&[target, &e.label, reason]).inc();
            if let Some(d) = diagnosis {
                m.endpoint_diagnoses
                    .with_label_values(&[target, &e.label, d.as_str()])
                    .inc();
                e.live.diagnosis = Some(d.as_str().into());
            }
        }
    }

    /// Once a second: up or not, and the live reports' summaries.
    pub fn tick(&mut self, m: &Metrics, target: &str, rtt_samples: usize) {
        for e in &mut self.list {
            let up = e.open > 0;
            m.endpoint_up.with_label_values(&[target, &e.label]).set(i64::from(up));
            e.live.healthy = up;
            if up {
                e.live.clear_failure();
            }
            e.live.trim_rtts(rtt_samples);
            e.live.summarize_rtts();
        }
    }

    pub fn reports(&self) -> impl Iterator<Item = &TargetReport> {
        self.list.iter().map(|e| &e.live)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}

fn remove_series(m: &Metrics, target: &str, endpoint: &str) {
    let _ = m.endpoint_up.remove_label_values(&[target, endpoint]);
    let _ = m.endpoint_rtt.remove_label_values(&[target, endpoint]);
    let reasons = FailureReason::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(DisconnectReason::ALL.iter().map(|r| r.as_str()));
    for reason in reasons {
        let _ = m.endpoint_failures.remove_label_values(&[target, endpoint, reason]);
    }
    for d in Diagnosis::ALL {
        let _ = m
            .endpoint_diagnoses
            .remove_label_values(&[target, endpoint, d.as_str()]);
    }
}
