//! `sockpulse status`: connect to each target once, probe a few times,
//! close, and report — as a table for people or JSON for scripts.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::driver::{EventContext, Observer};
use crate::session::spec::TargetSpec;
use crate::session::{DisconnectReason, SessionEvent};

#[derive(Debug, Clone, Serialize, PartialEq)]
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
    pub tcp_connect_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    pub handshake_ms: Option<f64>,
    pub pings_answered: u32,
    pub pings_wanted: u32,
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub cert_not_after_unix: Option<i64>,
    #[serde(skip)]
    rtts: Vec<Duration>,
    #[serde(skip)]
    opened: bool,
}

pub struct StatusObserver {
    pub reports: Vec<TargetReport>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl StatusObserver {
    pub fn new(targets: &[Arc<TargetSpec>], pings: u32) -> Self {
        let reports = targets
            .iter()
            .map(|t| TargetReport {
                target: t.name.clone(),
                url: t.url.clone(),
                healthy: false,
                reason: None,
                detail: None,
                diagnosis: None,
                kernel: None,
                tcp_connect_ms: None,
                tls_ms: None,
                handshake_ms: None,
                pings_answered: 0,
                pings_wanted: if t.timing.ping_interval.is_some() { pings } else { 0 },
                rtt_min_ms: None,
                rtt_avg_ms: None,
                rtt_max_ms: None,
                cert_not_after_unix: None,
                rtts: Vec::new(),
                opened: false,
            })
            .collect();
        StatusObserver { reports }
    }

    /// Settles verdicts once the driver has returned.
    pub fn finish(mut self) -> Vec<TargetReport> {
        for r in &mut self.reports {
            if !r.rtts.is_empty() {
                let sum: Duration = r.rtts.iter().sum();
                r.rtt_min_ms = r.rtts.iter().min().copied().map(ms);
                r.rtt_max_ms = r.rtts.iter().max().copied().map(ms);
                r.rtt_avg_ms = Some(ms(sum / r.rtts.len() as u32));
            }
            r.healthy = r.reason.is_none() && r.opened && r.pings_answered >= r.pings_wanted;
            if !r.healthy && r.reason.is_none() {
                r.reason = Some("incomplete".into());
                r.detail = Some(format!(
                    "check did not finish in time ({} of {} pings answered)",
                    r.pings_answered, r.pings_wanted
                ));
            }
        }
        self.reports
    }
}

impl Observer for StatusObserver {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        let Some(r) = self.reports.get_mut(ctx.target) else {
            return;
        };
        if r.diagnosis.is_none() && r.reason.is_none() {
            if let Some(k) = ctx.kernel {
                r.diagnosis = k.diagnosis.map(|d| d.as_str().to_string());
                r.kernel = Some(k.snapshot.summary());
            }
        }
        match event {
            SessionEvent::Opened { tcp, tls, handshake } => {
                r.opened = true;
                r.tcp_connect_ms = Some(ms(*tcp));
                r.tls_ms = tls.map(ms);
                r.handshake_ms = handshake.map(ms);
            }
            SessionEvent::ConnectFailed { reason, detail } => {
                r.reason.get_or_insert_with(|| reason.as_str().to_string());
                r.detail.get_or_insert_with(|| detail.clone());
            }
            SessionEvent::Disconnected { reason, detail, .. } if *reason != DisconnectReason::LocalClose => {
                r.reason.get_or_insert_with(|| reason.as_str().to_string());
                r.detail.get_or_insert_with(|| detail.clone());
            }
            SessionEvent::Pong { rtt } => {
                r.pings_answered += 1;
                r.rtts.push(*rtt);
            }
            SessionEvent::CertExpiry { not_after_unix } => r.cert_not_after_unix = Some(*not_after_unix),
            _ => {}
        }
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

pub fn render_table(reports: &[TargetReport], now_unix: i64) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "TARGET".to_string(),
        "VERDICT".into(),
        "REASON".into(),
        "DIAGNOSIS".into(),
        "TCP ms".into(),
        "TLS ms".into(),
        "HANDSHAKE ms".into(),
        "RTT min/avg/max ms".into(),
        "CERT EXPIRES".into(),
    ]];
    for r in reports {
        let rtt = match (r.rtt_min_ms, r.rtt_avg_ms, r.rtt_max_ms) {
            (Some(a), Some(b), Some(c)) => format!("{a:.2}/{b:.2}/{c:.2}"),
            _ => "-".into(),
        };
        let cert = r
            .cert_not_after_unix
            .map(|t| format!("in {} days", (t - now_unix).div_euclid(86_400)))
            .unwrap_or_else(|| "-".into());
        rows.push([
            r.target.clone(),
            if r.healthy { "ok".into() } else { "FAIL".into() },
            r.reason.clone().unwrap_or_else(|| "-".into()),
            r.diagnosis.clone().unwrap_or_else(|| "-".into()),
            opt_ms(r.tcp_connect_ms),
            opt_ms(r.tls_ms),
            opt_ms(r.handshake_ms),
            rtt,
            cert,
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for r in reports.iter().filter(|r| !r.healthy) {
        let _ = writeln!(out, "{}: {}", r.target, r.detail.as_deref().unwrap_or(""));
        if let Some(k) = &r.kernel {
            let _ = writeln!(out, "  {k}");
        }
    }
    out
}
