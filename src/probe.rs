//! `GET /probe?target=URL&module=NAME`, the blackbox_exporter multi-target
//! contract: one check of the target (connect, upgrade or application
//! handshake, `pings` probes, close) run on the agent's loop, answered as
//! `probe_*` series. The deadline is Prometheus's scrape timeout (its
//! `X-Prometheus-Scrape-Timeout-Seconds` header) less `timeout_offset`; at
//! most `max_concurrent` checks run at once, and one more fails at once
//! with `reason="concurrency_limit"` rather than wait past its deadline.
//! `&debug=true` answers with the check's report as well, as blackbox does.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Instant;
use crate::config::modules::ProbeConfig;
use crate::driver::{LoopHandle, ProbeRequest};
use crate::metrics::probe_names as names;
use crate::observer::TargetReport;

/// Finished checks kept for `/api/v1/probes` and `status --agent`.
const RECENT_PROBES: usize = 50;

/// What the HTTP side needs to run checks.
pub struct ProbeEndpoint {
    pub handle: LoopHandle,
    /// Replaced by every successful reload.
    pub config: Arc<RwLock<ProbeConfig>>,
    pub in_flight: Arc<AtomicUsize>,
    /// The last checks, newest last.
    pub recent: Arc<Mutex<VecDeque<ProbeResult>>>,
}

impl ProbeEndpoint {
    pub fn new(handle: LoopHandle, config: Arc<RwLock<ProbeConfig>>) -> ProbeEndpoint {
        ProbeEndpoint {
            handle,
            config,
            in_flight: Arc::new(AtomicUsize::new(0)),
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_PROBES))),
        }
    }

    /// The last checks, oldest first.
    pub fn recent(&self) -> Vec<ProbeResult> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// One finished check, as `/api/v1/probes` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    /// When it finished, Unix seconds.
    pub finished_unix: f64,
    pub module: Option<String>,
    pub duration_seconds: f64,
    #[serde(flatten)]
    pub report: TargetReport,
}

/// An HTTP answer: status line and body.
pub struct Answer {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn bad(message: String) -> Answer {
        Answer {
            status: "400 Bad Request",
            content_type: "text/plain",
            body: message + "\n",
        }
    }
}

/// What became of a `/probe` request.
pub enum Started {
    /// Answered at once: a bad request, or the concurrency limit reached.
    Now(Answer),
    /// Running on the loop, which calls `done` by `deadline`; `fallback`
    /// is the answer if it does not (a loop that is stuck).
    Running { deadline: Instant, fallback: Answer },
}

/// Counts a check as running until dropped, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the check `query` asks for; `scrape_timeout` is the header's
/// value. Never blocks: the answer goes to `done` from the agent's loop.
pub fn start(
    endpoint: &ProbeEndpoint,
    query: &str,
    scrape_timeout: Option<f64>,
    done: impl FnOnce(Answer) + Send + 'static,
) -> Started {
    let started = Instant::now();
    let param = |name: &str| query_param(query, name);
    let Some(url) = param("target").filter(|t| !t.is_empty()) else {
        return Started::Now(Answer::bad("target parameter is missing".into()));
    };
    let module = param("module").filter(|m| !m.is_empty());
    let debug = param("debug").is_some_and(|d| d == "true");
    let Ok(cfg) = endpoint.config.read() else {
        return Started::Now(Answer::bad("configuration unavailable".into()));
    };
    let spec = match cfg.target(&url, module.as_deref()) {
        Ok(spec) => spec,
        Err(e) => return Started::Now(Answer::bad(format!("cannot probe {url}: {e}"))),
    };
    // As blackbox: the scrape timeout less the offset, never below a floor.
    let timeout = match scrape_timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            Duration::from_secs_f64(secs).saturating_sub(cfg.timeout_offset)
        }
        _ => cfg.default_timeout,
    }
    .max(Duration::from_millis(100));
    let busy = endpoint.in_flight.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight(Arc::clone(&endpoint.in_flight));
    if busy >= cfg.max_concurrent {
        drop(guard);
        let report = rejected(&spec, cfg.max_concurrent);
        return Started::Now(exposition_answer(&report, started.elapsed(), debug));
    }
    let pings = cfg.pings;
    drop(cfg);
    let mut stuck = TargetReport::new(&spec, pings);
    stuck.record_failure("incomplete", "the agent's loop did not answer in time");
    stuck.settle();
    let fallback = exposition_answer(&stuck, timeout, debug);
    let recent = Arc::clone(&endpoint.recent);
    let deadline = started + timeout;
    endpoint.handle.probe(ProbeRequest {
        spec,
        pings,
        deadline,
        reply: Box::new(move |report: TargetReport| {
            drop(guard);
            let took = started.elapsed();
            let answer = exposition_answer(&report, took, debug);
            remember(&recent, module, took, report);
            done(answer);
        }),
    });
    Started::Running {
        // The loop answers by the deadline; a little more is only for a
        // loop that is stuck.
        deadline: deadline + Duration::from_secs(1),
        fallback,
    }
}

fn remember(recent: &Mutex<VecDeque<ProbeResult>>, module: Option<String>, took: Duration, report: TargetReport) {
    let Ok(mut recent) = recent.lock() else { return };
    if recent.len() == RECENT_PROBES {
        recent.pop_front();
    }
    recent.push_back(ProbeResult {
        finished_unix: crate::wallclock::unix_now_ms() as f64 / 1000.0,
        module,
        duration_seconds: took.as_secs_f64(),
        report,
    });
}

fn rejected(spec: &crate::session::spec::TargetSpec, limit: usize) -> TargetReport {
    let mut r = TargetReport::new(spec, 0);
    r.record_failure(
        "concurrency_limit",
        &format!("{limit} probes already running ([probe] max_concurrent)"),
    );
    r.settle();
    r
}

fn exposition_answer(report: &TargetReport, took: Duration, debug: bool) -> Answer {
    let mut body = exposition(report, took);
    if debug {
        let pretty = serde_json::to_string_pretty(report).unwrap_or_default();
        body = format!("Probe report:\n{pretty}\n\nMetrics that would have been returned:\n{body}");
    }
    Answer {
        status: "200 OK",
        content_type: if debug { "text/plain" } else { prometheus::TEXT_FORMAT },
        body,
    }
}

/// The `probe_*` series of a finished check.
pub fn exposition(r: &TargetReport, took: Duration) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, series: &[(String, f64)]| {
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in series {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |v: f64| vec![(String::new(), v)];
    gauge(
        names::SUCCESS,
        "1 if the check succeeded",
        &plain(f64::from(u8::from(r.healthy))),
    );
    gauge(names::DURATION, "How long the check took", &plain(took.as_secs_f64()));
    let phases: Vec<(String, f64)> = [
        ("tcp", r.tcp_connect_ms),
        ("proxy", r.proxy_ms),
        ("tls", r.tls_ms),
        ("handshake", r.handshake_ms),
        ("app", r.app_handshake_ms),
    ]
    .into_iter()
    .filter_map(|(phase, ms)| ms.map(|ms| (format!("{{phase=\"{phase}\"}}"), ms / 1000.0)))
    .collect();
    gauge(
        names::PHASE_DURATION,
        "Duration of each step of getting the session open",
        &phases,
    );
    let rtts: Vec<(String, f64)> = [("min", r.rtt_min_ms), ("avg", r.rtt_avg_ms), ("max", r.rtt_max_ms)]
        .into_iter()
        .filter_map(|(stat, ms)| ms.map(|ms| (format!("{{stat=\"{stat}\"}}"), ms / 1000.0)))
        .collect();
    gauge(names::RTT, "Round trip of the check's probes", &rtts);
    gauge(names::PINGS, "Probes answered", &plain(f64::from(r.pings_answered)));
    if let Some(t) = r.cert_not_after_unix {
        gauge(
            names::CERT_EXPIRY,
            "notAfter of the peer's leaf certificate, Unix seconds",
            &plain(t as f64),
        );
    }
    if let Some(reason) = &r.reason {
        let diagnosis = r.diagnosis.as_deref().unwrap_or("");
        let labels = format!("{{diagnosis=\"{}\",reason=\"{}\"}}", escape(diagnosis), escape(reason));
        gauge(
            names::FAILURE,
            "Why the check failed (a closed set) and the kernel's diagnosis; always 1",
            &[(labels, 1.0)],
        );
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The percent-decoded value of `name` in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("ws%3A%2F%2Fh%3A1%2Fp%3Fa%3Db"), "ws://h:1/p?a=b");
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
