//! The live page at `/`: server-rendered HTML that works without
//! JavaScript (targets, the event timeline, the host's TCP table), which
//! `assets/app.js` then keeps current from `/api/v1/stream`. Everything is
//! compiled in; links are relative, so the page works under a path prefix.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::HttpState;
use crate::events::Event;
use crate::kernel::host::{HostSummary, ACCEPT_QUEUE_SATURATED};
use crate::observer::TargetReport;

pub const APP_JS: &str = include_str!("assets/app.js");
pub const STYLE_CSS: &str = include_str!("assets/style.css");
/// Events the first paint lists.
const PAGE_EVENTS: usize = 100;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page, with the timeline filtered to `target` when given (the
/// filter form's answer without JavaScript).
pub fn render(state: &HttpState, target: Option<&str>, now_unix_ms: u64) -> String {
    let rows = state.rows();
    let events = state.events_since(0, target, PAGE_EVENTS);
    let host = state.host_summary();
    let up = rows.iter().filter(|r| r.healthy && r.endpoint.is_none()).count();
    let total = rows.iter().filter(|r| r.endpoint.is_none()).count();
    let mut names: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    names.dedup();
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>sockpulse</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"assets/style.css\"><script src=\"assets/app.js\" defer></script></head><body>\
         <header><h1>sockpulse <small>{version}</small></h1>\
         <p id=\"summary\">{total} targets · {up} up · {down} down</p>\
         <p id=\"conn\" class=\"conn\">static view: refresh to update</p>\
         <nav><a href=\"{metrics}\">Metrics</a><a href=\"api/v1/status\">Status JSON</a>\
         <a href=\"api/v1/events\">Events JSON</a></nav></header><main>",
        version = env!("CARGO_PKG_VERSION"),
        down = total - up,
        metrics = escape(state.telemetry_path.trim_start_matches('/')),
    );
    out.push_str(
        "<section><h2>Targets</h2><div class=\"scroll\"><table id=\"targets\"><thead><tr>\
         <th>Target</th><th>State</th><th class=\"wide\">Sessions</th><th>RTT</th><th>p50 / p99</th>\
         <th class=\"wide\">Last pong</th><th>Last failure</th><th class=\"wide\">Certificate</th>\
         </tr></thead><tbody>",
    );
    for r in &rows {
        target_row(&mut out, r, now_unix_ms);
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"empty\">No targets.</td></tr>");
    }
    out.push_str("</tbody></table></div></section>");
    timeline(&mut out, &events, &names, target);
    out.push_str("<section><h2>Host TCP</h2><div id=\"host\">");
    host_table(&mut out, host.as_ref());
    out.push_str("</div></section></main></body></html>\n");
    out
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

fn target_row(out: &mut String, r: &TargetReport, now_unix_ms: u64) {
    let sessions: Vec<String> = r.sessions.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let failure = match &r.reason {
        Some(reason) => {
            let mut why = vec![reason.clone()];
            why.extend(r.diagnosis.clone());
            why.extend(r.close_code.map(|c| format!("close {c}")));
            let when = r
                .failed_unix_ms
                .map(|t| format!(" <small>{}s ago</small>", now_unix_ms.saturating_sub(t) / 1000))
                .unwrap_or_default();
            format!(
                "{}{when}<br><small>{}</small>",
                escape(&why.join(" · ")),
                escape(r.detail.as_deref().unwrap_or(""))
            )
        }
        None => "–".into(),
    };
    let cert = r
        .cert_not_after_unix
        .map(|t| format!("{} days", (t - (now_unix_ms / 1000) as i64).div_euclid(86_400)))
        .unwrap_or_else(|| "–".into());
    let name = match &r.endpoint {
        Some(e) => format!("{} <small>[{}]</small>", escape(&r.target), escape(e)),
        None => escape(&r.target),
    };
    let _ = write!(
        out,
        "<tr class=\"{class}\" data-target=\"{target}\" data-endpoint=\"{endpoint}\">\
         <td class=\"name\"><b>{name}</b><br><small>{url}</small></td>\
         <td class=\"state\"><span class=\"badge\">{state}</span></td>\
         <td class=\"sessions wide num\">{sessions}</td><td class=\"spark\">{spark}</td>\
         <td class=\"rtt num\">{p50} / {p99} ms</td><td class=\"pong wide num\">{pong}</td>\
         <td class=\"failure\">{failure}</td><td class=\"cert wide num\">{cert}</td></tr>",
        class = if r.healthy { "up" } else { "down" },
        target = escape(&r.target),
        endpoint = escape(r.endpoint.as_deref().unwrap_or("")),
        url = escape(&r.url),
        state = if r.healthy { "up" } else { "down" },
        sessions = escape(&sessions.join(" · ")),
        spark = sparkline(&r.rtt_recent_ms),
        p50 = ms(r.rtt_p50_ms),
        p99 = ms(r.rtt_p99_ms),
        pong = r
            .last_pong_age_seconds
            .map_or_else(|| "–".into(), |a| format!("{a:.1} s ago")),
    );
}

/// An SVG polyline of `rtts` scaled to their maximum.
fn sparkline(rtts: &[f64]) -> String {
    let max = rtts.iter().copied().fold(0.0_f64, f64::max);
    let step = if rtts.len() > 1 {
        120.0 / (rtts.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = rtts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = if max > 0.0 { 24.0 - 22.0 * v / max } else { 24.0 };
            format!("{:.1},{y:.1}", i as f64 * step)
        })
        .collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 120 26\" preserveAspectRatio=\"none\" aria-label=\"RTT\">\
         <polyline points=\"{}\"/></svg>",
        points.join(" ")
    )
}

/// `HH:MM:SS` (UTC) of a Unix-ms instant; the script shows local time.
fn clock(unix_ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(unix_ms);
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    stamp.get(11..19).unwrap_or("").to_string()
}

fn timeline(out: &mut String, events: &[Event], names: &[&str], target: Option<&str>) {
    out.push_str(
        "<section><h2>Timeline</h2><form class=\"filter\" method=\"get\"><label for=\"filter\">Target</label>\
         <select id=\"filter\" name=\"target\"><option value=\"\">all</option>",
    );
    for name in names {
        let selected = if target == Some(*name) { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", escape(name));
    }
    out.push_str("</select><button>Filter</button></form><ol id=\"timeline\">");
    for e in events.iter().rev() {
        let who = match (e.target.as_str(), e.session) {
            ("", _) => "host".to_string(),
            (t, Some(s)) => format!("{t} #{s}"),
            (t, None) => t.to_string(),
        };
        let mut why: Vec<String> = e.reason.iter().chain(e.diagnosis.iter()).cloned().collect();
        why.extend(e.close_code.map(|c| format!("close {c}")));
        let _ = write!(
            out,
            "<li data-seq=\"{}\" data-kind=\"{}\" data-target=\"{}\"><time>{}</time><b>{}</b> \
             <span class=\"kind\">{}</span> <span class=\"why\">{}</span> <small>{}</small></li>",
            e.seq,
            e.kind.as_str(),
            escape(&e.target),
            clock(e.unix_ms),
            escape(&who),
            e.kind.as_str().replace('_', " "),
            escape(&why.join(" · ")),
            escape(&e.detail)
        );
    }
    if events.is_empty() {
        out.push_str("<li class=\"empty\">No events yet.</li>");
    }
    out.push_str("</ol></section>");
}

fn host_table(out: &mut String, host: Option<&HostSummary>) {
    let Some(h) = host else {
        out.push_str("<p class=\"empty\">No host scan yet (or <code>[kernel] scan_interval = \"off\"</code>).</p>");
        return;
    };
    let pressure = if h.time_wait_port_ratio >= 0.5 { " warn" } else { "" };
    let _ = write!(
        out,
        "<p>{} sockets · <span class=\"tw{pressure}\">TIME_WAIT {} ({:.1} % of {} ephemeral ports)</span></p>\
         <div class=\"grid\"><div class=\"scroll\"><table id=\"states\"><thead><tr><th>State</th><th>Sockets</th>\
         </tr></thead><tbody>",
        h.total,
        h.time_wait,
        h.time_wait_port_ratio * 100.0,
        h.ephemeral_ports
    );
    for (state, n) in &h.by_state {
        let _ = write!(out, "<tr><td>{state}</td><td class=\"num\">{n}</td></tr>");
    }
    out.push_str(
        "</tbody></table></div><div class=\"scroll\"><table id=\"ports\"><thead><tr><th>Port</th>\
         <th>ESTABLISHED</th><th>CLOSE_WAIT</th><th>oldest CLOSE_WAIT</th><th>TIME_WAIT</th>\
         <th>accept queue</th></tr></thead><tbody>",
    );
    for (port, p) in &h.ports {
        let n = |s: &str| p.by_state.get(s).copied().unwrap_or(0);
        let leak = if p.close_wait_over_age > 0 {
            format!(" <span class=\"warn\">{} past age</span>", p.close_wait_over_age)
        } else {
            String::new()
        };
        let queue = match p.listen_queue_ratio {
            Some(r) if r >= ACCEPT_QUEUE_SATURATED => {
                format!("{} <span class=\"warn\">{:.0} % full</span>", p.listen_queue, r * 100.0)
            }
            Some(r) => format!("{} ({:.0} %)", p.listen_queue, r * 100.0),
            None => p.listen_queue.to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}{leak}</td><td class=\"num\">{:.0} s</td>\
             <td class=\"num\">{}</td><td class=\"num\">{queue}</td></tr>",
            escape(port),
            n("established"),
            n("close_wait"),
            p.close_wait_oldest_seconds,
            n("time_wait"),
        );
    }
    out.push_str("</tbody></table></div></div>");
    if !h.suspicious.is_empty() {
        out.push_str("<h3>Worth a look</h3><ul id=\"suspicious\">");
        for s in h.suspicious.iter().take(20) {
            let _ = write!(
                out,
                "<li><code>{} → {}</code> {} <small>{}</small></li>",
                escape(&s.local),
                escape(&s.remote),
                s.state,
                escape(&s.why)
            );
        }
        out.push_str("</ul>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_their_maximum_and_survive_no_samples() {
        assert!(sparkline(&[]).contains("points=\"\""));
        let s = sparkline(&[1.0, 2.0]);
        assert!(s.contains("points=\"0.0,13.0 120.0,2.0\""), "{s}");
    }

    #[test]
    fn clocks_and_escapes() {
        assert_eq!(clock(1_796_027_016_660), "08:23:36");
        assert_eq!(escape("<a href='x'>&\""), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
    }
}
