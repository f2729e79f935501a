//! Session events turned into Prometheus metrics, log lines and the live
//! per-target status a running agent serves.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::local::LocalHistogram;
use prometheus::{Histogram, IntCounter, IntGauge};

use super::digest::{Digest, Say};
use super::endpoints::EndpointSet;
use super::lifetime::{LifetimeWatch, Verdict};
use super::report::TargetReport;
use super::target_info::TargetInfo;
use crate::clock::Instant;
use crate::driver::{
    gauges, EndpointChange, EventContext, IdleFinding, KernelEvidence, Observer, ReloadSummary, SessionGauge,
};
use crate::events::{self, Event, EventKind, SharedEventLog};
use crate::kernel::Diagnosis;
use crate::metrics::{ConnectPhase, Metrics, TlsHandshakeKind};
use crate::session::spec::TargetSpec;
use crate::session::{DisconnectReason, Phase, ProbeKind, SessionEvent};
use crate::targets::{TargetId, TargetMap};
use crate::wallclock::{unix_now, unix_now_ms};

/// Everything the observer keeps per live target.
struct TargetState {
    spec: Arc<TargetSpec>,
    /// By `ProbeKind`, for the probes the target uses. Resolved once: a
    /// label lookup per pong (hash and lock) costs more than the observation.
    /// Local (unsynchronized) copies, flushed to the shared series once a
    /// second by `on_tick`: a shared histogram takes four atomic operations
    /// per observation, on the path of every pong.
    rtt: [Option<LocalHistogram>; ProbeKind::ALL.len()],
    pong_timeouts: [Option<IntCounter>; ProbeKind::ALL.len()],
    message_size: Histogram,
    session_duration: Histogram,
    /// `sockpulse_sessions` by state, read once a second for the live row.
    sessions_by_state: Vec<(&'static str, IntGauge)>,
    /// Whether its sessions keep ending at one age.
    lifetime: LifetimeWatch,
    /// The path's idle timeout, once idle discovery found it.
    idle_timeout: Option<Duration>,
    /// Which of its log lines go out at their level.
    digest: Digest,
    /// What `status --agent` shows of it.
    live: TargetReport,
    /// With `endpoints = "all"`: each endpoint's series and report.
    endpoints: EndpointSet,
    fans_out: bool,
    /// Endpoint lookups are failing (logged once per streak).
    lookup_failing: bool,
    /// Addresses left out by `max_endpoints` at the last lookup.
    endpoints_dropped: usize,
}

impl TargetState {
    fn new(metrics: &Metrics, spec: &Arc<TargetSpec>) -> TargetState {
        metrics.init_target(&spec.name);
        // Every target has the transport's probe series (at zero when it
        // sends none); the application's only where it speaks one.
        let used = |probe: ProbeKind| probe == ProbeKind::Ping || spec.has_app_probe();
        let series = |probe: ProbeKind| used(probe).then(|| [spec.name.as_str(), probe.as_str()]);
        TargetState {
            spec: Arc::clone(spec),
            rtt: ProbeKind::ALL.map(|p| series(p).map(|l| metrics.ping_rtt.with_label_values(&l).local())),
            pong_timeouts: ProbeKind::ALL.map(|p| series(p).map(|l| metrics.pong_timeouts.with_label_values(&l))),
            message_size: metrics.message_size.with_label_values(&[spec.name.as_str()]),
            session_duration: metrics.session_duration.with_label_values(&[spec.name.as_str()]),
            sessions_by_state: Phase::EXPORTED
                .iter()
                .map(|p| {
                    (
                        p.as_str(),
                        metrics.sessions.with_label_values(&[spec.name.as_str(), p.as_str()]),
                    )
                })
                .collect(),
            lifetime: LifetimeWatch::default(),
            idle_timeout: None,
            digest: Digest::new(spec.connections),
            live: TargetReport::new(spec, 0),
            endpoints: EndpointSet::default(),
            fans_out: matches!(spec.endpoints, crate::session::spec::Endpoints::All { .. }),
            lookup_failing: false,
            endpoints_dropped: 0,
        }
    }
}

pub struct MetricsObserver {
    metrics: Arc<Metrics>,
    targets: TargetMap<TargetState>,
    /// Every RTT sample as `unix_ms target rtt_us`, for offline analysis
    /// (exact percentiles and maxima a histogram cannot give).
    rtt_log: Option<BufWriter<File>>,
    /// What the HTTP side serves: a snapshot taken once a second, so
    /// pongs never take a lock.
    published: Arc<Mutex<Vec<TargetReport>>>,
    target_info: TargetInfo,
    /// Recent events, for the HTTP side.
    events: SharedEventLog,
    /// `sockpulse_loop_read_delay_seconds`, observed per read and flushed
    /// once a second (see `TargetState::rtt`).
    read_delay: LocalHistogram,
}

/// RTT samples kept per target for the live status.
const LIVE_RTT_SAMPLES: usize = 64;

impl MetricsObserver {
    /// An observer for `targets`, keyed by the ids the driver gives them (in
    /// list order, see `Driver::new`).
    pub fn new(metrics: Arc<Metrics>, targets: &[Arc<TargetSpec>]) -> Self {
        let mut states = TargetMap::default();
        for t in targets {
            states.push(TargetState::new(&metrics, t));
        }
        metrics.config_reload_successful.set(1);
        metrics.config_reload_timestamp.set(unix_now() as f64);
        let read_delay = metrics.loop_read_delay.local();
        let mut observer = MetricsObserver {
            target_info: TargetInfo::new(&metrics.registry),
            metrics,
            targets: states,
            rtt_log: None,
            published: Arc::new(Mutex::new(Vec::new())),
            events: events::shared(),
            read_delay,
        };
        observer.publish_target_info();
        observer
    }

    /// `sockpulse_target_info` for the live targets.
    fn publish_target_info(&mut self) {
        let targets: Vec<(&str, &[(String, String)])> = self
            .targets
            .values()
            .map(|t| (t.spec.name.as_str(), t.spec.labels.as_slice()))
            .collect();
        self.target_info.publish(&targets);
    }

    /// The live status snapshot the HTTP side serves at /api/v1/status.
    pub fn status_handle(&self) -> Arc<Mutex<Vec<TargetReport>>> {
        Arc::clone(&self.published)
    }

    /// The event history the HTTP side serves at /api/v1/events.
    pub fn events_handle(&self) -> SharedEventLog {
        Arc::clone(&self.events)
    }

    pub fn with_rtt_log(mut self, file: File) -> Self {
        self.rtt_log = Some(BufWriter::with_capacity(64 * 1024, file));
        self
    }
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

/// An event's line at `level`, or only at debug when the digest sums it up.
fn log_at(say: Say, level: log::Level, line: &str) {
    match say {
        Say::Full => log::log!(level, "{line}"),
        Say::Quiet => log::debug!("{line}"),
    }
}

/// Ends that say something about the path: the peer or something between
/// ended the session (not our own timeouts or close).
fn ended_by_peer(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::PeerClose | DisconnectReason::Eof | DisconnectReason::Reset | DisconnectReason::IoError
    )
}

/// Publishes what a session's end says about a lifetime limit; returns the
/// limit when it explains this end.
fn lifetime_verdict(m: &Metrics, events: &SharedEventLog, name: &str, verdict: Verdict) -> Option<Duration> {
    match verdict {
        Verdict::Unexplained => None,
        Verdict::AtLimit { limit, new } => {
            if new {
                m.session_lifetime_limit
                    .with_label_values(&[name])
                    .set(limit.as_secs_f64());
                let line = format!(
                    "sessions keep ending after {} open: something on the path limits connection lifetime \
                     (diagnosis=lifetime_limit)",
                    secs(limit)
                );
                log::warn!("target={name} {line}");
                let mut event = Event::new(EventKind::Summary, name).detail(&line);
                event.diagnosis = Some(Diagnosis::LifetimeLimit.as_str().into());
                events::record(events, event);
            }
            Some(limit)
        }
        Verdict::LimitGone { was } => {
            let _ = m.session_lifetime_limit.remove_label_values(&[name]);
            log::info!(
                "target={name} a session outlived the lifetime limit of {}: no limit any more",
                secs(was)
            );
            None
        }
    }
}

/// `idle_killed` when a session the far side ended had been silent for the
/// path's idle timeout (within a tenth).
fn idle_killed(
    timeout: Option<Duration>,
    ctx: &EventContext<'_>,
    reason: DisconnectReason,
) -> Option<(Diagnosis, String)> {
    let timeout = timeout?;
    let last = ctx.session.stats().last_rx?;
    let silence = ctx.now.saturating_duration_since(last);
    let slack = timeout / 10 + Duration::from_millis(100);
    let near = silence.max(timeout) - silence.min(timeout) <= slack;
    (ended_by_peer(reason) && near).then(|| {
        (
            Diagnosis::IdleKilled,
            format!(
                " diagnosis=idle_killed (silent for {}, the path's idle timeout)",
                secs(silence)
            ),
        )
    })
}

/// Replaces the published row of `row`'s target (none yet: the next tick
/// adds it).
fn publish_row(published: &Mutex<Vec<TargetReport>>, row: &TargetReport) {
    if let Ok(mut rows) = published.lock() {
        if let Some(r) = rows.iter_mut().find(|r| r.target == row.target && r.endpoint.is_none()) {
            *r = row.clone();
        }
    }
}

/// A digest line as an event: the target is the event's, not the text's.
fn summary_event(name: &str, line: &str) -> Event {
    let text = line.strip_prefix(&format!("target={name} ")).unwrap_or(line);
    Event::new(EventKind::Summary, name).detail(text)
}

/// An event about the session `ctx` is about.
fn session_event(kind: EventKind, target: &str, ctx: &EventContext<'_>) -> Event {
    let mut event = Event::new(kind, target);
    event.session = Some(ctx.ordinal);
    event.endpoint = ctx.session.endpoint().map(|a| a.to_string());
    event
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

/// Whole microseconds, in 64 bits (formatting `as_micros`'s u128 costs
/// several times more, once per pong in the RTT log).
fn micros(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}

impl Observer for MetricsObserver {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent) {
        let Some(state) = self.targets.get_mut(ctx.target) else {
            return;
        };
        let name = state.spec.name.as_str();
        let ordinal = ctx.ordinal;
        state.live.record(ctx, event);
        // Trimmed in batches (and before each snapshot), not per pong.
        if state.live.rtt_samples() >= 2 * LIVE_RTT_SAMPLES {
            state.live.trim_rtts(LIVE_RTT_SAMPLES);
        }
        let m = &self.metrics;
        let explained = match event {
            SessionEvent::Disconnected { reason, open_for, .. } => {
                state.session_duration.observe(open_for.as_secs_f64());
                // Killed for its silence: says nothing about a lifetime limit.
                let idle = idle_killed(state.idle_timeout, ctx, *reason);
                let by_peer = ended_by_peer(*reason) && idle.is_none();
                let verdict = state.lifetime.on_end(ctx.now, *open_for, by_peer);
                let at_limit = lifetime_verdict(m, &self.events, name, verdict).map(|limit| {
                    (
                        Diagnosis::LifetimeLimit,
                        format!(" diagnosis=lifetime_limit (sessions end after {})", secs(limit)),
                    )
                });
                let explained = idle.or(at_limit);
                if let Some((d, _)) = &explained {
                    if state.live.reason.as_deref() == Some(reason.as_str()) {
                        state.live.diagnosis = Some(d.as_str().into());
                    }
                }
                explained
            }
            _ => None,
        };
        // An end the path's pattern explains is that, whatever the socket says.
        let (diagnosis, kernel) = match explained {
            Some((d, note)) => (Some(d), note),
            None => (ctx.kernel.and_then(|k| k.diagnosis), kernel_note(ctx.kernel)),
        };
        if let Some(d) = diagnosis {
            m.diagnoses.with_label_values(&[name, d.as_str()]).inc();
        }
        // Only fanned-out targets' sessions have an endpoint: the others'
        // events never touch that part of the session.
        if state.fans_out {
            if let Some(addr) = ctx.session.endpoint() {
                state.endpoints.on_event(m, name, addr, ctx, event, diagnosis);
            }
        }
        match event {
            SessionEvent::PhaseChanged { from, to } => {
                if *from == Phase::Open {
                    state.digest.session_closed();
                }
                if Phase::EXPORTED.contains(from) {
                    m.sessions.with_label_values(&[name, from.as_str()]).dec();
                }
                if Phase::EXPORTED.contains(to) {
                    m.sessions.with_label_values(&[name, to.as_str()]).inc();
                }
                log::debug!("target={name} session={ordinal} {} -> {}", from.as_str(), to.as_str());
            }
            SessionEvent::ConnectAttempt => m.connect_attempts.with_label_values(&[name]).inc(),
            SessionEvent::Opened {
                tcp,
                proxy,
                tls,
                handshake,
                app,
            } => {
                m.sessions_opened.with_label_values(&[name]).inc();
                let phases = [
                    (ConnectPhase::Tcp, Some(*tcp)),
                    (ConnectPhase::Proxy, *proxy),
                    (ConnectPhase::Tls, *tls),
                    (ConnectPhase::Handshake, *handshake),
                    (ConnectPhase::App, *app),
                ];
                let mut timing = Vec::new();
                for (phase, took) in phases {
                    if let Some(d) = took {
                        m.connect_duration
                            .with_label_values(&[name, phase.as_str()])
                            .observe(d.as_secs_f64());
                        timing.push(format!("{phase}={}", ms(d)));
                    }
                }
                let (say, recovery) = state.digest.opened(name, ctx.now);
                let line = format!("target={name} session={ordinal} open ({})", timing.join(" "));
                log_at(say, log::Level::Info, &line);
                if say == Say::Full {
                    let event = session_event(EventKind::Opened, name, ctx).detail(&timing.join(" "));
                    events::record(&self.events, event);
                }
                if let Some(recovery) = recovery {
                    log::info!("{recovery}");
                    events::record(&self.events, summary_event(name, &recovery));
                }
            }
            SessionEvent::ConnectFailed { reason, detail } => {
                m.connect_failures.with_label_values(&[name, reason.as_str()]).inc();
                let say = state.digest.failure(ordinal, reason.as_str(), ctx.now);
                let line =
                    format!("target={name} session={ordinal} connect failed: reason={reason}{kernel} ({detail})");
                log_at(say, log::Level::Warn, &line);
                if say == Say::Full {
                    let mut event = session_event(EventKind::ConnectFailed, name, ctx).detail(detail);
                    event.reason = Some(reason.as_str().into());
                    event.diagnosis = diagnosis.map(|d| d.as_str().into());
                    events::record(&self.events, event);
                }
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
                    let say = state.digest.failure(ordinal, reason.as_str(), ctx.now);
                    log_at(say, log::Level::Warn, &line);
                    if say == Say::Full {
                        let mut event = session_event(EventKind::Disconnected, name, ctx).detail(detail);
                        event.reason = Some(reason.as_str().into());
                        event.diagnosis = diagnosis.map(|d| d.as_str().into());
                        event.close_code = *close_code;
                        event.open_for_seconds = Some(open_for.as_secs_f64());
                        events::record(&self.events, event);
                    }
                }
            }
            SessionEvent::Pong { rtt, probe } => {
                if let Some(h) = &state.rtt[*probe as usize] {
                    h.observe(rtt.as_secs_f64());
                }
                log::trace!("target={name} session={ordinal} probe={probe} rtt={}", ms(*rtt));
                if let Some(w) = self.rtt_log.as_mut() {
                    let _ = match ctx.read_delay {
                        Some(d) => writeln!(w, "{} {name} {} {}", unix_now_ms(), micros(*rtt), micros(d)),
                        None => writeln!(w, "{} {name} {} -", unix_now_ms(), micros(*rtt)),
                    };
                }
            }
            SessionEvent::PongTimeout { probe } => {
                if let Some(c) = &state.pong_timeouts[*probe as usize] {
                    c.inc();
                }
            }
            SessionEvent::StrayPong => m.stray_pongs.with_label_values(&[name]).inc(),
            SessionEvent::Message { size } => state.message_size.observe(*size as f64),
            SessionEvent::TlsHandshake { resumed } => {
                let kind = if *resumed {
                    TlsHandshakeKind::Resumed
                } else {
                    TlsHandshakeKind::Full
                };
                m.tls_handshakes.with_label_values(&[name, kind.as_str()]).inc();
            }
            SessionEvent::CertExpiry { not_after_unix } => {
                m.tls_cert_expiry.with_label_values(&[name]).set(*not_after_unix as f64);
                let left = *not_after_unix - unix_now();
                if left < 14 * 86_400 {
                    log::warn!("target={name} certificate expires in {} days", left / 86_400);
                }
            }
        }
        // A target that just went up or down is published at once, not at
        // the next tick: the live page shows it within a quarter second.
        if matches!(event, SessionEvent::PhaseChanged { .. } | SessionEvent::Opened { .. }) {
            let up = state.digest.open_sessions() > 0;
            if up != state.live.healthy {
                state.live.set_healthy(up);
                publish_row(&self.published, &state.live);
            }
        }
    }

    fn on_read_delay(&mut self, delay: Duration) {
        self.read_delay.observe(delay.as_secs_f64());
    }

    fn on_target_added(&mut self, id: TargetId, spec: &Arc<TargetSpec>) {
        self.targets.insert(id, TargetState::new(&self.metrics, spec));
        let via = spec.proxy.as_ref().map(|p| format!(" via {p}")).unwrap_or_default();
        log::info!(
            "target={} added ({} connection(s)) {}{via}",
            spec.name,
            spec.connections,
            spec.url
        );
        let detail = format!("{} connection(s) to {}", spec.connections, spec.url);
        events::record(
            &self.events,
            Event::new(EventKind::TargetAdded, &spec.name).detail(&detail),
        );
    }

    fn on_target_kept(&mut self, id: TargetId, spec: &Arc<TargetSpec>) {
        if let Some(state) = self.targets.get_mut(id) {
            state.spec = Arc::clone(spec);
        }
    }

    fn on_target_removed(&mut self, id: TargetId, spec: &Arc<TargetSpec>) {
        if let Some(mut state) = self.targets.remove(id) {
            state.endpoints.remove_all(&self.metrics, &spec.name);
        }
        // A removed target's series go with it, as Prometheus expects.
        self.metrics.remove_target(&spec.name);
        log::info!("target={} removed: closing its sessions", spec.name);
        events::record(&self.events, Event::new(EventKind::TargetRemoved, &spec.name));
    }

    fn on_endpoints(&mut self, id: TargetId, change: Result<&EndpointChange<'_>, &str>) {
        let Some(state) = self.targets.get_mut(id) else {
            return;
        };
        let name = state.spec.name.as_str();
        match change {
            Ok(change) => {
                state.endpoints.apply(&self.metrics, &state.spec, change);
                let list =
                    |addrs: &[std::net::SocketAddr]| addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                if !change.added.is_empty() || !change.removed.is_empty() {
                    let mut line = format!("target={name} endpoints: {}", change.endpoints.len());
                    if !change.added.is_empty() {
                        line.push_str(&format!(", added {}", list(change.added)));
                    }
                    if !change.removed.is_empty() {
                        line.push_str(&format!(", removed {} (closing their sessions)", list(change.removed)));
                    }
                    log::info!("{line}");
                }
                if state.lookup_failing {
                    state.lookup_failing = false;
                    log::info!("target={name} endpoint lookup works again");
                }
                // Once per change, not at every lookup.
                if change.dropped > 0 && change.dropped != state.endpoints_dropped {
                    log::warn!(
                        "target={name} resolves to {} more address(es) than max_endpoints ({}): they get no sessions",
                        change.dropped,
                        change.endpoints.len()
                    );
                }
                state.endpoints_dropped = change.dropped;
            }
            Err(e) => {
                let line = format!(
                    "target={name} endpoint lookup failed, keeping its {} endpoint(s): {e}",
                    state.endpoints.len()
                );
                // The first failure of a streak in full; the rest at debug.
                if std::mem::replace(&mut state.lookup_failing, true) {
                    log::debug!("{line}");
                } else {
                    log::warn!("{line}");
                }
                state
                    .live
                    .record_failure(crate::session::FailureReason::Dns.as_str(), e);
            }
        }
    }

    fn on_idle_discovery(&mut self, id: TargetId, finding: Option<IdleFinding>, pings_keep_alive: Option<bool>) {
        let Some(state) = self.targets.get_mut(id) else {
            return;
        };
        let name = state.spec.name.as_str();
        let m = &self.metrics;
        match finding {
            Some(IdleFinding::Timeout(t)) => {
                let new = state.idle_timeout != Some(t);
                state.idle_timeout = Some(t);
                state.live.path_idle_timeout_seconds = Some(t.as_secs_f64());
                m.path_idle_timeout.with_label_values(&[name]).set(t.as_secs_f64());
                if new {
                    log::info!(
                        "target={name} the path closes or forgets connections silent for {}",
                        secs(t)
                    );
                    // A ping and its answer deadline must fit in the timeout, twice over.
                    if let Some(interval) = state.spec.timing.ping_interval {
                        if interval * 2 > t {
                            log::warn!(
                                "target={name} ping_interval ({}) is not safely below the path's idle timeout ({}): \
                                 set it to at most half of it",
                                secs(interval),
                                secs(t)
                            );
                        }
                    }
                }
            }
            Some(IdleFinding::NoneUpTo(max)) => {
                log::info!(
                    "target={name} the path kept a connection silent for {} alive: no idle timeout up to that",
                    secs(max)
                );
            }
            None => {}
        }
        if let Some(keep) = pings_keep_alive {
            state.live.idle_pings_keep_alive = Some(keep);
            m.path_idle_pings_keep_alive
                .with_label_values(&[name])
                .set(i64::from(keep));
            if keep {
                log::info!("target={name} pings alone keep a connection alive through the path's idle timeout");
            } else {
                log::warn!(
                    "target={name} pings alone do NOT keep a connection alive through the path's idle timeout: \
                     it counts only data"
                );
            }
        }
    }

    fn on_reload(&mut self, result: Result<&ReloadSummary, &str>) {
        match result {
            Ok(s) => {
                self.publish_target_info();
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
                // Config errors list one problem per line: one log line here.
                let e = e.trim_end().replace('\n', "; ");
                log::error!("configuration reload failed, keeping the running one: {e}");
            }
        }
    }

    fn on_tick(&mut self, sessions: &[SessionGauge], now: Instant, now_ms: u64) {
        if let Some(w) = self.rtt_log.as_mut() {
            if let Err(e) = w.flush() {
                log::warn!("rtt log write failed, disabling it: {e}");
                self.rtt_log = None;
            }
        }
        self.read_delay.flush();
        // The oldest stamp per target, turned into an age once per target
        // rather than once per session. Sessions of removed targets (still
        // closing) are summed too, but only live targets are read below.
        let oldest = gauges::by_target(sessions, self.targets.id_bound());
        let age = |t: Option<u64>| t.map(|t| now_ms.saturating_sub(t) as f64 / 1000.0);
        for (id, state) in self.targets.iter_mut() {
            let o = oldest.get(id.index()).copied().unwrap_or_default();
            let r = &mut state.live;
            for h in state.rtt.iter().flatten() {
                h.flush();
            }
            r.lifetime_limit_seconds = state.lifetime.limit().map(|l| l.as_secs_f64());
            r.set_healthy(o.up);
            r.trim_rtts(LIVE_RTT_SAMPLES);
            r.summarize_rtts();
            r.refresh_recent_rtts();
            r.last_pong_age_seconds = age(o.oldest_pong_ms);
            let name = state.spec.name.as_str();
            r.sessions.clear();
            for (state_name, gauge) in &state.sessions_by_state {
                let n = gauge.get();
                if n > 0 {
                    r.sessions.insert((*state_name).to_string(), n);
                }
            }
            state.endpoints.tick(&self.metrics, name, LIVE_RTT_SAMPLES);
            for (level, line) in state.digest.tick(name, now) {
                log::log!(level, "{line}");
                events::record(&self.events, summary_event(name, &line));
            }
            let m = &self.metrics;
            m.target_up.with_label_values(&[name]).set(i64::from(o.up));
            // No open session: no age to report rather than a stale one.
            match age(o.oldest_pong_ms) {
                Some(a) => m.last_pong_age.with_label_values(&[name]).set(a),
                None => {
                    let _ = m.last_pong_age.remove_label_values(&[name]);
                }
            }
            match age(o.oldest_message_ms) {
                Some(a) => m.last_message_age.with_label_values(&[name]).set(a),
                None => {
                    let _ = m.last_message_age.remove_label_values(&[name]);
                }
            }
        }
        if let Ok(mut p) = self.published.lock() {
            *p = self
                .targets
                .values()
                .flat_map(|t| std::iter::once(&t.live).chain(t.endpoints.reports()))
                .cloned()
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Mode, Session};
    use crate::targets::TargetId;

    #[test]
    fn pongs_and_read_delays_reach_the_shared_series_on_the_tick() {
        let cfg = crate::config::parse("[[target]]\nname = \"t\"\nurl = \"ws://a.test/\"\n", "t", &[], &|_| {
            None
        })
        .expect("valid config");
        let metrics = Arc::new(Metrics::new());
        let mut observer = MetricsObserver::new(Arc::clone(&metrics), &cfg.targets);
        let session = Session::new(Arc::clone(&cfg.targets[0]), Mode::Persistent, 1);
        let now = Instant::now();
        let ctx = EventContext {
            target: TargetId::from_index(0).expect("index 0"),
            ordinal: 0,
            session: &session,
            kernel: None,
            read_delay: None,
            now,
        };
        let rtt = metrics.ping_rtt.with_label_values(&["t", "ping"]);
        for ms in [2, 4, 6] {
            let pong = SessionEvent::Pong {
                rtt: Duration::from_millis(ms),
                probe: ProbeKind::Ping,
            };
            observer.on_event(&ctx, &pong);
        }
        observer.on_read_delay(Duration::from_millis(3));
        // Held locally until the once-a-second tick.
        assert_eq!(rtt.get_sample_count(), 0);
        observer.on_tick(&[], now, 1);
        assert_eq!(rtt.get_sample_count(), 3);
        assert!(
            (rtt.get_sample_sum() - 0.012).abs() < 1e-9,
            "sum {}",
            rtt.get_sample_sum()
        );
        assert_eq!(metrics.loop_read_delay.get_sample_count(), 1);
        // Flushed once: the next tick adds nothing.
        observer.on_tick(&[], now, 1001);
        assert_eq!(rtt.get_sample_count(), 3);
    }
}
