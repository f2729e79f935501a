//! Session events folded into per-target reports: the verdict of a one-shot
//! `status` run, and the live state a running agent serves at /api/v1/status.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::{EventContext, Observer};
use crate::session::spec::{Scheme, TargetSpec};
use crate::session::{DisconnectReason, SessionEvent};
use crate::targets::TargetMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetReport {
    pub target: String,
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
                self.reason.get_or_insert_with(|| reason.as_str().to_string());
                self.detail.get_or_insert_with(|| detail.clone());
            }
            SessionEvent::Disconnected { reason, detail, .. } if *reason != DisconnectReason::LocalClose => {
                self.reason.get_or_insert_with(|| reason.as_str().to_string());
                self.detail.get_or_insert_with(|| detail.clone());
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
    }

    /// Forgets the last failure (a live agent whose target is healthy again).
    pub fn clear_failure(&mut self) {
        self.reason = None;
        self.detail = None;
        self.diagnosis = None;
        self.kernel = None;
    }
}

/// Folds the events of a one-shot run into one report per target.
pub struct StatusObserver {
    reports: TargetMap<TargetReport>,
}

impl StatusObserver {
    /// Reports for `targets`, keyed by the ids the driver gives them (in
    /// list order, see `Driver::new`).
    pub fn new(targets: &[Arc<TargetSpec>], pings: u32) -> Self {
        let mut reports = TargetMap::default();
        for t in targets {
            reports.push(TargetReport::new(t, pings));
        }
        StatusObserver { reports }
    }

    /// Settles verdicts once the driver has returned.
    pub fn finish(mut self) -> Vec<TargetReport> {
        for (_, r) in self.reports.iter_mut() {
            r.summarize_rtts();
            r.healthy = r.reason.is_none() && r.opened && r.pings_answered >= r.pings_wanted;
            if !r.healthy && r.reason.is_none() {
                r.reason = Some("incomplete".into());
                r.detail = Some(format!(
                    "check did not finish in time ({} of {} pings answered)",
                    r.pings_answered, r.pings_wanted
                ));
            }
        }
        self.reports.values().cloned().collect()
    }
}

impl Observer for StatusObserver {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        if let Some(r) = self.reports.get_mut(ctx.target) {
            r.record(ctx, event);
        }
    }
}
