//! The `status` report as a table: one row per target with its verdict,
//! reason, diagnosis, connect timings, RTTs and certificate expiry.

use std::fmt::Write as _;

use super::columns;
use crate::events::Event;
use crate::observer::TargetReport;
use crate::probe::ProbeResult;

/// The target, and the endpoint when the row is one endpoint's.
fn row_name(r: &TargetReport) -> String {
    match &r.endpoint {
        Some(e) => format!("{} [{e}]", r.target),
        None => r.target.clone(),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// A running agent's last events, up to `per_target` for each target (and
/// for the host), newest first within each.
pub fn recent_events(events: &[Event], per_target: usize, now_unix: f64) -> String {
    let mut by_target: std::collections::BTreeMap<&str, Vec<&Event>> = Default::default();
    for e in events.iter().rev() {
        let kept = by_target.entry(e.target.as_str()).or_default();
        if kept.len() < per_target {
            kept.push(e);
        }
    }
    if by_target.is_empty() {
        return String::new();
    }
    let mut rows: Vec<[String; 5]> = vec![[
        "WHEN".to_string(),
        "TARGET".into(),
        "EVENT".into(),
        "REASON / DIAGNOSIS".into(),
        "DETAIL".into(),
    ]];
    for (target, events) in by_target {
        for e in events {
            let why = match (&e.reason, &e.diagnosis, e.close_code) {
                (Some(r), Some(d), _) => format!("{r} / {d}"),
                (Some(r), None, Some(c)) => format!("{r} (close {c})"),
                (Some(r), None, None) => r.clone(),
                (None, Some(d), _) => d.clone(),
                (None, None, _) => "-".into(),
            };
            let who = match (target, e.session) {
                ("", _) => "(host)".to_string(),
                (t, Some(s)) => format!("{t} #{s}"),
                (t, None) => t.to_string(),
            };
            rows.push([
                format!("{:.0}s ago", (now_unix - e.unix_ms as f64 / 1000.0).max(0.0)),
                who,
                e.kind.as_str().to_string(),
                why,
                e.detail.clone(),
            ]);
        }
    }
    format!("\nRecent events:\n{}", columns(&rows))
}

/// A running agent's last `/probe` checks, newest first.
pub fn recent_probes(probes: &[ProbeResult], now_unix: f64) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "PROBED".to_string(),
        "TARGET".into(),
        "MODULE".into(),
        "RESULT".into(),
        "REASON".into(),
        "DURATION ms".into(),
        "RTT avg ms".into(),
    ]];
    for p in probes.iter().rev() {
        let r = &p.report;
        rows.push([
            format!("{:.0}s ago", (now_unix - p.finished_unix).max(0.0)),
            r.target.clone(),
            p.module.clone().unwrap_or_else(|| "-".into()),
            if r.healthy { "ok".into() } else { "FAIL".into() },
            r.reason.clone().unwrap_or_else(|| "-".into()),
            format!("{:.1}", p.duration_seconds * 1000.0),
            opt_ms(r.rtt_avg_ms),
        ]);
    }
    format!("\nRecent /probe checks ({}):\n{}", probes.len(), columns(&rows))
}

/// The `status` table, then the details of every unhealthy target.
pub fn table(reports: &[TargetReport], now_unix: i64) -> String {
    let mut rows: Vec<[String; 12]> = vec![[
        "TARGET".to_string(),
        "PROTOCOL".into(),
        "VERDICT".into(),
        "REASON".into(),
        "DIAGNOSIS".into(),
        "TCP ms".into(),
        "PROXY ms".into(),
        "TLS ms".into(),
        "HANDSHAKE ms".into(),
        "APP ms".into(),
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
            row_name(r),
            r.protocol.clone(),
            if r.healthy { "ok".into() } else { "FAIL".into() },
            r.reason.clone().unwrap_or_else(|| "-".into()),
            r.diagnosis.clone().unwrap_or_else(|| "-".into()),
            opt_ms(r.tcp_connect_ms),
            opt_ms(r.proxy_ms),
            opt_ms(r.tls_ms),
            opt_ms(r.handshake_ms),
            opt_ms(r.app_handshake_ms),
            rtt,
            cert,
        ]);
    }
    let mut out = columns(&rows);
    for r in reports {
        if let Some(t) = r.path_idle_timeout_seconds {
            let pings = match r.idle_pings_keep_alive {
                Some(true) => "; pings alone keep connections alive",
                Some(false) => "; pings alone do NOT keep connections alive",
                None => "",
            };
            let _ = writeln!(out, "{}: the path's idle timeout is {t:.2}s{pings}", row_name(r));
        }
        if let Some(limit) = r.lifetime_limit_seconds {
            let _ = writeln!(
                out,
                "{}: sessions keep ending after {limit:.2}s open (lifetime_limit)",
                r.target
            );
        }
    }
    for r in reports.iter().filter(|r| !r.healthy) {
        let _ = writeln!(out, "{}: {}", row_name(r), r.detail.as_deref().unwrap_or(""));
        if let Some(k) = &r.kernel {
            let _ = writeln!(out, "  {k}");
        }
    }
    out
}
