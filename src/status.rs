//! `sockpulse status`: connect to each target once, probe a few times,
//! close, and report — as a table for people or JSON for scripts.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::{EventContext, Observer};
use crate::session::spec::TargetSpec;
use crate::session::{DisconnectReason, SessionEvent};

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
            tcp_connect_ms: None,
            tls_ms: None,
            handshake_ms: None,
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
            SessionEvent::Opened { tcp, tls, handshake } => {
                self.opened = true;
                self.tcp_connect_ms = Some(ms(*tcp));
                self.tls_ms = tls.map(ms);
                self.handshake_ms = handshake.map(ms);
            }
            SessionEvent::ConnectFailed { reason, detail } => {
                self.reason.get_or_insert_with(|| reason.as_str().to_string());
                self.detail.get_or_insert_with(|| detail.clone());
            }
            SessionEvent::Disconnected { reason, detail, .. } if *reason != DisconnectReason::LocalClose => {
                self.reason.get_or_insert_with(|| reason.as_str().to_string());
                self.detail.get_or_insert_with(|| detail.clone());
            }
            SessionEvent::Pong { rtt } => {
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

pub struct StatusObserver {
    pub reports: Vec<TargetReport>,
}

impl StatusObserver {
    pub fn new(targets: &[Arc<TargetSpec>], pings: u32) -> Self {
        StatusObserver {
            reports: targets.iter().map(|t| TargetReport::new(t, pings)).collect(),
        }
    }

    /// Settles verdicts once the driver has returned.
    pub fn finish(mut self) -> Vec<TargetReport> {
        for r in &mut self.reports {
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
        self.reports
    }
}

impl Observer for StatusObserver {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        if let Some(r) = self.reports.get_mut(ctx.target) {
            r.record(ctx, event);
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

/// Why `status --agent` could not get an answer.
#[derive(Debug)]
pub enum AgentError {
    /// The URL itself is wrong: exit 2.
    Usage(String),
    /// The agent did not answer properly: exit 1.
    Unreachable(String),
}

/// Asks a running agent for its live per-target state (GET /api/v1/status).
pub fn fetch_from_agent(base: &str, timeout: Duration) -> Result<Vec<TargetReport>, AgentError> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let url = url::Url::parse(base).map_err(|e| AgentError::Usage(format!("--agent {base:?}: {e}")))?;
    if url.scheme() != "http" {
        return Err(AgentError::Usage(format!(
            "--agent {base:?}: only http:// is supported"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| AgentError::Usage(format!("--agent {base:?} has no host")))?;
    let port = url.port().unwrap_or(80);
    let unreachable = |e: String| AgentError::Unreachable(format!("agent {base}: {e}"));
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| unreachable("no address".into()))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| unreachable(e.to_string()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| unreachable(e.to_string()))?;
    write!(s, "GET /api/v1/status HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| unreachable(e.to_string()))?;
    let mut resp = Vec::new();
    // A status answer is small; refuse to buffer a hostile endless one.
    s.take(16 << 20)
        .read_to_end(&mut resp)
        .map_err(|e| unreachable(e.to_string()))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| unreachable("malformed HTTP answer".into()))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(unreachable(format!("answered {:?}", head.lines().next().unwrap_or(""))));
    }
    serde_json::from_str(body).map_err(|e| unreachable(format!("bad status JSON: {e}")))
}
