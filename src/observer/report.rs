//! Session events folded into per-target reports: the verdict of a one-shot
//! `status` run, and the live state a running agent serves at /api/v1/status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::net::SocketAddr;

use crate::driver::{EndpointChange, EventContext, Observer};
use crate::session::spec::{Scheme, TargetSpec};
use crate::session::{DisconnectReason, FailureReason, SessionEvent};
use crate::targets::{TargetId, TargetMap};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetReport {
    pub target: String,
    /// With `endpoints = "all"`: the endpoint (`ip:port`) this row is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub url: String,
    pub healthy: bool,
    /// A failure or disconnect reason from the closed sets, or `incomplete`.
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// What the kernel's TCP state says caused the failure, when it can tell.
    pub diagnosis: Option<String>,
    /// The kernel's account of the socket when it failed.
    pub kernel: Option<String>,
    /// The application protocol: `ws` (plain RFC 6455), `socketio`,
    /// `graphql-ws`, ..., or `tcp`.
    #[serde(default)]
    pub protocol: String,
    pub tcp_connect_ms: Option<f64>,
    /// The proxy's tunnel, when the target is reached through one.
    #[serde(default)]
    pub proxy_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    /// The WebSocket upgrade.
    pub handshake_ms: Option<f64>,
    /// The application protocol's own handshake.
    #[serde(default)]
    pub app_handshake_ms: Option<f64>,
    pub pings_answered: u32,
    pub pings_wanted: u32,
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub cert_not_after_unix: Option<i64>,
    /// The age at which the target's sessions keep being ended, when a
    /// running agent sees one (`lifetime_limit`).
    #[serde(default)]
    pub lifetime_limit_seconds: Option<f64>,
    /// How long the path lets a silent connection live (idle discovery).
    #[serde(default)]
    pub path_idle_timeout_seconds: Option<f64>,
    /// Whether pings alone keep a connection alive through it.
    #[serde(default)]
    pub idle_pings_keep_alive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_p99_ms: Option<f64>,
    /// The close code of the failure, when the peer sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// When the failure happened, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_unix_ms: Option<u64>,
    /// A running agent's: its sessions by state (`open`, `connecting`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions: BTreeMap<String, i64>,
    /// A running agent's: seconds since the oldest open session's last pong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pong_age_seconds: Option<f64>,
    /// A running agent's: the last RTTs, oldest first (the live page's
    /// sparkline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtt_recent_ms: Vec<f64>,
    #[serde(skip)]
    rtts: Vec<Duration>,
    #[serde(skip)]
    opened: bool,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl TargetReport {
    pub fn new(spec: &TargetSpec, pings_wanted: u32) -> Self {
        TargetReport {
            target: spec.name.clone(),
            endpoint: None,
            url: spec.url.clone(),
            healthy: false,
            reason: None,
            detail: None,
            diagnosis: None,
            kernel: None,
            protocol: match spec.scheme {
                Scheme::Tcp => "tcp".into(),
                _ => spec.protocol.name().into(),
            },
            tcp_connect_ms: None,
            proxy_ms: None,
            tls_ms: None,
            handshake_ms: None,
            app_handshake_ms: None,
            pings_answered: 0,
            pings_wanted: if spec.timing.ping_interval.is_some() {
                pings_wanted
            } else {
                0
            },
            rtt_min_ms: None,
            rtt_avg_ms: None,
            rtt_max_ms: None,
            cert_not_after_unix: None,
            lifetime_limit_seconds: None,
            path_idle_timeout_seconds: None,
            idle_pings_keep_alive: None,
            rtt_p50_ms: None,
            rtt_p99_ms: None,
            close_code: None,
            failed_unix_ms: None,
            sessions: BTreeMap::new(),
            last_pong_age_seconds: None,
            rtt_recent_ms: Vec::new(),
            rtts: Vec::new(),
            opened: false,
        }
    }

    /// Folds in one session event. The first failure is kept: it is the
    /// cause; later ones are its consequences.
    pub fn record(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        if self.diagnosis.is_none() && self.reason.is_none() {
            if let Some(k) = ctx.kernel {
                self.diagnosis = k.diagnosis.map(|d| d.as_str().to_string());
                self.kernel = Some(k.snapshot.summary());
            }
        }
        match event {
            SessionEvent::Opened {
                tcp,
                proxy,
                tls,
                handshake,
                app,
            } => {
                self.opened = true;
                self.tcp_connect_ms = Some(ms(*tcp));
                self.proxy_ms = proxy.map(ms);
                self.tls_ms = tls.map(ms);
                self.handshake_ms = handshake.map(ms);
                self.app_handshake_ms = app.map(ms);
            }
            SessionEvent::ConnectFailed { reason, detail } => {
                self.record_failure(reason.as_str(), detail);
            }
            SessionEvent::Disconnected {
                reason,
                detail,
                close_code,
                ..
            } if *reason != DisconnectReason::LocalClose => {
                if self.reason.is_none() {
                    self.close_code = *close_code;
                }
                self.record_failure(reason.as_str(), detail);
            }
            SessionEvent::Pong { rtt, .. } => {
                self.pings_answered = self.pings_answered.saturating_add(1);
                self.rtts.push(*rtt);
            }
            SessionEvent::CertExpiry { not_after_unix } => self.cert_not_after_unix = Some(*not_after_unix),
            _ => {}
        }
    }

    pub fn rtt_samples(&self) -> usize {
        self.rtts.len()
    }

    /// Keeps only the newest `n` RTT samples (a live agent's window).
    pub fn trim_rtts(&mut self, n: usize) {
        if self.rtts.len() > n {
            let cut = self.rtts.len() - n;
            self.rtts.drain(..cut);
        }
    }

    /// Fills the RTT summary fields from the samples held.
    pub fn summarize_rtts(&mut self) {
        if self.rtts.is_empty() {
            return;
        }
        let sum: Duration = self.rtts.iter().sum();
        self.rtt_min_ms = self.rtts.iter().min().copied().map(ms);
        self.rtt_max_ms = self.rtts.iter().max().copied().map(ms);
        self.rtt_avg_ms = Some(ms(sum / self.rtts.len() as u32));
        // Quantiles by selection on a stack copy: no sort, no allocation
        // (this runs for every target every second).
        let mut scratch = [Duration::ZERO; 64];
        let n = self.rtts.len().min(scratch.len());
        let window = &mut scratch[..n];
        window.copy_from_slice(&self.rtts[self.rtts.len() - n..]);
        let mut at = |q: f64| {
            let k = ((n - 1) as f64 * q).round() as usize;
            ms(*window.select_nth_unstable(k).1)
        };
        self.rtt_p50_ms = Some(at(0.5));
        self.rtt_p99_ms = Some(at(0.99));
    }

    /// Fills `rtt_recent_ms` with the RTTs held, oldest first (reusing
    /// its allocation).
    pub fn refresh_recent_rtts(&mut self) {
        self.rtt_recent_ms.clear();
        self.rtt_recent_ms.extend(self.rtts.iter().copied().map(ms));
    }

    /// A running agent's verdict: up when a session is open; the failure
    /// shown goes when the target is up again.
    pub fn set_healthy(&mut self, up: bool) {
        self.healthy = up;
        if up {
            self.clear_failure();
        }
    }

    /// Forgets the last failure (a live agent whose target is healthy again).
    pub fn clear_failure(&mut self) {
        self.reason = None;
        self.detail = None;
        self.diagnosis = None;
        self.kernel = None;
        self.close_code = None;
        self.failed_unix_ms = None;
    }
}

/// Folds the events of a one-shot run into one report per target, or per
/// endpoint of a target with `endpoints = "all"`.
pub struct StatusObserver {
    reports: TargetMap<TargetReport>,
    /// Per endpoint, in the order they were first heard of.
    endpoints: Vec<(TargetId, SocketAddr, TargetReport)>,
}

impl StatusObserver {
    /// Reports for `targets`, keyed by the ids the driver gives them (in
    /// list order, see `Driver::new`).
    pub fn new(targets: &[Arc<TargetSpec>], pings: u32) -> Self {
        let mut reports = TargetMap::default();
        for t in targets {
            reports.push(TargetReport::new(t, pings));
        }
        StatusObserver {
            reports,
            endpoints: Vec::new(),
        }
    }

    /// Settles verdicts once the driver has returned: a target that fanned
    /// out is reported by its endpoints' rows.
    pub fn finish(mut self) -> Vec<TargetReport> {
        let mut out = Vec::new();
        for (id, r) in self.reports.iter_mut() {
            let mut rows: Vec<&mut TargetReport> = self
                .endpoints
                .iter_mut()
                .filter(|(t, _, _)| *t == id)
                .map(|(_, _, r)| r)
                .collect();
            if rows.is_empty() {
                rows.push(r);
            }
            for r in rows {
                r.settle();
                out.push(r.clone());
            }
        }
        out
    }
}

impl TargetReport {
    /// The one-shot verdict from what was recorded.
    pub fn settle(&mut self) {
        self.summarize_rtts();
        self.healthy = self.reason.is_none() && self.opened && self.pings_answered >= self.pings_wanted;
        if !self.healthy && self.reason.is_none() {
            self.reason = Some("incomplete".into());
            self.detail = Some(format!(
                "check did not finish in time ({} of {} pings answered)",
                self.pings_answered, self.pings_wanted
            ));
        }
    }

    /// A failure that is not any session's: the name did not resolve.
    pub fn record_failure(&mut self, reason: &str, detail: &str) {
        if self.reason.is_none() {
            self.failed_unix_ms = Some(crate::wallclock::unix_now_ms());
        }
        self.reason.get_or_insert_with(|| reason.to_string());
        self.detail.get_or_insert_with(|| detail.to_string());
    }
}

impl Observer for StatusObserver {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        let Some(addr) = ctx.session.endpoint() else {
            if let Some(r) = self.reports.get_mut(ctx.target) {
                r.record(ctx, event);
            }
            return;
        };
        let found = self
            .endpoints
            .iter()
            .position(|(t, a, _)| *t == ctx.target && *a == addr);
        let i = match found {
            Some(i) => i,
            None => {
                let Some(base) = self.reports.get(ctx.target) else {
                    return;
                };
                let mut r = base.clone();
                r.endpoint = Some(addr.to_string());
                self.endpoints.push((ctx.target, addr, r));
                self.endpoints.len() - 1
            }
        };
        self.endpoints[i].2.record(ctx, event);
    }

    fn on_endpoints(&mut self, id: TargetId, change: Result<&EndpointChange<'_>, &str>) {
        if let (Err(e), Some(r)) = (change, self.reports.get_mut(id)) {
            r.record_failure(FailureReason::Dns.as_str(), e);
        }
    }
}
