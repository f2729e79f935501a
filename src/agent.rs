//! `sockpulse run`: sessions on the driver, reported to Prometheus metrics and logs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus::Histogram;

use crate::driver::{EventContext, KernelEvidence, Observer, ReloadSummary, SessionGauge};
use crate::metrics::{ConnectPhase, Metrics};
use crate::session::min_opt;
use crate::session::spec::TargetSpec;
use crate::session::{DisconnectReason, Phase, SessionEvent};
use crate::status::TargetReport;

pub struct MetricsObserver {
    metrics: Arc<Metrics>,
    /// By target index; `None` once a reload removed the target.
    targets: Vec<Option<Arc<TargetSpec>>>,
    /// Each target's RTT histogram, by target index: resolved once, as a
    /// label lookup per pong (hash and lock) costs more than the observation.
    rtt_histograms: Vec<Option<Histogram>>,
    /// Every RTT sample as `unix_ms target rtt_us`, for offline analysis
    /// (exact percentiles and maxima a histogram cannot give).
    rtt_log: Option<BufWriter<File>>,
    /// Live per-target state for `status --agent`, by target index.
    live: Vec<Option<TargetReport>>,
    /// What the HTTP thread serves: a snapshot taken once a second, so
    /// pongs never take a lock.
    published: Arc<Mutex<Vec<TargetReport>>>,
}

/// RTT samples kept per target for the live status.
const LIVE_RTT_SAMPLES: usize = 64;

impl MetricsObserver {
    pub fn new(metrics: Arc<Metrics>, targets: Vec<Arc<TargetSpec>>) -> Self {
        for t in &targets {
            metrics.init_target(&t.name);
        }
        metrics.config_reload_successful.set(1);
        metrics.config_reload_timestamp.set(unix_now() as f64);
        MetricsObserver {
            rtt_histograms: targets.iter().map(|t| Some(rtt_histogram(&metrics, t))).collect(),
            metrics,
            live: targets.iter().map(|t| Some(TargetReport::new(t, 0))).collect(),
            targets: targets.into_iter().map(Some).collect(),
            rtt_log: None,
            published: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The live status snapshot the HTTP thread serves at /api/v1/status.
    pub fn status_handle(&self) -> Arc<Mutex<Vec<TargetReport>>> {
        Arc::clone(&self.published)
    }

    pub fn with_rtt_log(mut self, file: File) -> Self {
        self.rtt_log = Some(BufWriter::with_capacity(64 * 1024, file));
        self
    }
}

fn rtt_histogram(metrics: &Metrics, spec: &TargetSpec) -> Histogram {
    metrics.ping_rtt.with_label_values(&[spec.name.as_str()])
}

/// ` diagnosis=… [kernel: …]` for log lines, empty without evidence.
fn kernel_note(kernel: Option<&KernelEvidence>) -> String {
    match kernel {
        Some(k) => format!(
            " diagnosis={} [{}]",
            k.diagnosis.map(|d| d.as_str()).unwrap_or("unclear"),
            k.snapshot.summary()
        ),
        None => String::new(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

impl Observer for MetricsObserver {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        let Some(Some(spec)) = self.targets.get(ctx.target) else {
            return;
        };
        let name = spec.name.as_str();
        let ordinal = ctx.ordinal;
        if let Some(Some(r)) = self.live.get_mut(ctx.target) {
            r.record(ctx, event);
            // Trimmed in batches (and before each snapshot), not per pong.
            if r.rtt_samples() >= 2 * LIVE_RTT_SAMPLES {
                r.trim_rtts(LIVE_RTT_SAMPLES);
            }
        }
        let m = &self.metrics;
        let kernel = kernel_note(ctx.kernel);
        if let Some(d) = ctx.kernel.and_then(|k| k.diagnosis) {
            m.diagnoses.with_label_values(&[name, d.as_str()]).inc();
        }
        match event {
            SessionEvent::PhaseChanged { from, to } => {
                if Phase::EXPORTED.contains(from) {
                    m.sessions.with_label_values(&[name, from.as_str()]).dec();
                }
                if Phase::EXPORTED.contains(to) {
                    m.sessions.with_label_values(&[name, to.as_str()]).inc();
                }
                log::debug!("target={name} session={ordinal} {} -> {}", from.as_str(), to.as_str());
            }
            SessionEvent::ConnectAttempt => m.connect_attempts.with_label_values(&[name]).inc(),
            SessionEvent::Opened { tcp, tls, handshake } => {
                m.sessions_opened.with_label_values(&[name]).inc();
                m.connect_duration
                    .with_label_values(&[name, ConnectPhase::Tcp.as_str()])
                    .observe(tcp.as_secs_f64());
                let mut timing = format!("tcp={}", ms(*tcp));
                if let Some(t) = tls {
                    m.connect_duration
                        .with_label_values(&[name, ConnectPhase::Tls.as_str()])
                        .observe(t.as_secs_f64());
                    timing.push_str(&format!(" tls={}", ms(*t)));
                }
                if let Some(h) = handshake {
                    m.connect_duration
                        .with_label_values(&[name, ConnectPhase::Handshake.as_str()])
                        .observe(h.as_secs_f64());
                    timing.push_str(&format!(" handshake={}", ms(*h)));
                }
                log::info!("target={name} session={ordinal} open ({timing})");
            }
            SessionEvent::ConnectFailed { reason, detail } => {
                m.connect_failures.with_label_values(&[name, reason.as_str()]).inc();
                log::warn!("target={name} session={ordinal} connect failed: reason={reason}{kernel} ({detail})");
            }
            SessionEvent::Disconnected {
                reason,
                detail,
                close_code,
                open_for,
            } => {
                m.disconnects.with_label_values(&[name, reason.as_str()]).inc();
                let code = close_code.map(|c| format!(" close_code={c}")).unwrap_or_default();
                let line = format!(
                    "target={name} session={ordinal} disconnected: reason={reason}{code}{kernel} after {} ({detail})",
                    humantime::format_duration(Duration::from_secs(open_for.as_secs()))
                );
                if *reason == DisconnectReason::LocalClose {
                    log::info!("{line}");
                } else {
                    log::warn!("{line}");
                }
            }
            SessionEvent::Pong { rtt } => {
                if let Some(Some(h)) = self.rtt_histograms.get(ctx.target) {
                    h.observe(rtt.as_secs_f64());
                }
                log::trace!("target={name} session={ordinal} rtt={}", ms(*rtt));
                if let Some(w) = self.rtt_log.as_mut() {
                    let _ = match ctx.read_delay {
                        Some(d) => writeln!(w, "{} {name} {} {}", unix_now_ms(), rtt.as_micros(), d.as_micros()),
                        None => writeln!(w, "{} {name} {} -", unix_now_ms(), rtt.as_micros()),
                    };
                }
            }
            SessionEvent::PongTimeout => m.pong_timeouts.with_label_values(&[name]).inc(),
            SessionEvent::StrayPong => m.stray_pongs.with_label_values(&[name]).inc(),
            SessionEvent::CertExpiry { not_after_unix } => {
                m.tls_cert_expiry.with_label_values(&[name]).set(*not_after_unix as f64);
                let left = *not_after_unix - unix_now();
                if left < 14 * 86_400 {
                    log::warn!("target={name} certificate expires in {} days", left / 86_400);
                }
            }
        }
    }

    fn on_read_delay(&mut self, delay: Duration) {
        self.metrics.loop_read_delay.observe(delay.as_secs_f64());
    }

    fn on_target_added(&mut self, index: usize, spec: &Arc<TargetSpec>) {
        if self.targets.len() <= index {
            self.targets.resize(index + 1, None);
        }
        self.targets[index] = Some(Arc::clone(spec));
        if self.live.len() <= index {
            self.live.resize(index + 1, None);
        }
        self.live[index] = Some(TargetReport::new(spec, 0));
        self.metrics.init_target(&spec.name);
        if self.rtt_histograms.len() <= index {
            self.rtt_histograms.resize(index + 1, None);
        }
        self.rtt_histograms[index] = Some(rtt_histogram(&self.metrics, spec));
        log::info!(
            "target={} added ({} connection(s)) {}",
            spec.name,
            spec.connections,
            spec.url
        );
    }

    fn on_target_removed(&mut self, index: usize, spec: &Arc<TargetSpec>) {
        if let Some(slot) = self.targets.get_mut(index) {
            *slot = None;
        }
        if let Some(slot) = self.live.get_mut(index) {
            *slot = None;
        }
        if let Some(slot) = self.rtt_histograms.get_mut(index) {
            *slot = None;
        }
        // A removed target's series go with it, as Prometheus expects.
        self.metrics.remove_target(&spec.name);
        log::info!("target={} removed: closing its sessions", spec.name);
    }

    fn on_reload(&mut self, result: Result<&ReloadSummary, &str>) {
        match result {
            Ok(s) => {
                self.metrics.config_reload_successful.set(1);
                self.metrics.config_reload_timestamp.set(unix_now() as f64);
                log::info!(
                    "configuration reloaded: {} target(s) kept, {} added, {} removed",
                    s.kept,
                    s.added,
                    s.removed
                );
            }
            Err(e) => {
                self.metrics.config_reload_successful.set(0);
                log::error!("configuration reload failed, keeping the running one: {e}");
            }
        }
    }

    fn on_tick(&mut self, sessions: &[SessionGauge], now_ms: u64) {
        if let Some(w) = self.rtt_log.as_mut() {
            if let Err(e) = w.flush() {
                log::warn!("rtt log write failed, disabling it: {e}");
                self.rtt_log = None;
            }
        }
        let n = self.targets.len();
        let mut up = vec![false; n];
        // The oldest instant per target, turned into an age once: a
        // subtraction per session was a quarter of the agent's instructions.
        let mut oldest_pong: Vec<Option<u64>> = vec![None; n];
        let mut oldest_msg: Vec<Option<u64>> = vec![None; n];
        for g in sessions {
            let ti = g.target();
            // Retired targets' sessions may still be closing: not reported.
            if !g.open() || !matches!(self.targets.get(ti), Some(Some(_))) {
                continue;
            }
            up[ti] = true;
            oldest_pong[ti] = min_opt(oldest_pong[ti], g.last_pong_ms());
            oldest_msg[ti] = min_opt(oldest_msg[ti], g.last_message_ms());
        }
        let age = |t: Option<u64>| t.map(|t| now_ms.saturating_sub(t) as f64 / 1000.0);
        let pong_age: Vec<Option<f64>> = oldest_pong.into_iter().map(age).collect();
        let msg_age: Vec<Option<f64>> = oldest_msg.into_iter().map(age).collect();
        for (i, r) in self.live.iter_mut().enumerate() {
            let Some(r) = r else { continue };
            r.healthy = up.get(i).copied().unwrap_or(false);
            if r.healthy {
                r.clear_failure();
            }
            r.trim_rtts(LIVE_RTT_SAMPLES);
            r.summarize_rtts();
        }
        if let Ok(mut p) = self.published.lock() {
            *p = self.live.iter().flatten().cloned().collect();
        }
        for (i, t) in self.targets.iter().enumerate() {
            let Some(t) = t else { continue };
            let name = t.name.as_str();
            self.metrics.target_up.with_label_values(&[name]).set(up[i] as i64);
            // No open session: no age to report rather than a stale one.
            match pong_age[i] {
                Some(a) => self.metrics.last_pong_age.with_label_values(&[name]).set(a),
                None => {
                    let _ = self.metrics.last_pong_age.remove_label_values(&[name]);
                }
            }
            match msg_age[i] {
                Some(a) => self.metrics.last_message_age.with_label_values(&[name]).set(a),
                None => {
                    let _ = self.metrics.last_message_age.remove_label_values(&[name]);
                }
            }
        }
    }
}

fn unix_now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
