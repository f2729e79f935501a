//! The running agent assembled: the configuration's targets as sessions on
//! the event loop, reported to metrics and logs, with the HTTP endpoint, the
//! host scan, reloads and signals around them.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::modules::ProbeConfig;
use crate::config::{self, Config, ConfigError, KernelConfig, Sources};
use crate::driver::{fdlimit, Driver, Reloader};
use crate::http::{self, BasicAuth, HttpState, LiveWeb, WebLimits, WebSecurity};
use crate::kernel::owned::OwnedRegistry;
use crate::metrics::Metrics;
use crate::observer::MetricsObserver;
use crate::probe::ProbeEndpoint;
use crate::session::spec::TargetSpec;
use crate::session::Mode;
use crate::shard::Shard;
use crate::{filewatch, hostscan, signals};

/// What `sockpulse run` was asked for beyond the configuration.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub sources: Sources,
    /// Overrides `[web] listen_address`.
    pub listen_address: Option<String>,
    pub telemetry_path: String,
    /// Accept POST /-/reload.
    pub enable_lifecycle: bool,
    /// The exporter-toolkit web configuration file.
    pub web_config: Option<PathBuf>,
    pub external_url: Option<String>,
    pub route_prefix: Option<String>,
    /// Append every RTT sample to this file.
    pub rtt_log: Option<PathBuf>,
    /// Hold only this share of the targets.
    pub shard: Option<Shard>,
}

/// Why the agent could not start, or stopped abnormally.
#[derive(Debug)]
pub enum AgentError {
    Config(ConfigError),
    /// Something it needs at start is not there (address, files, threads).
    Start(String),
    /// The event loop failed.
    Loop(io::Error),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Config(e) => e.fmt(f),
            AgentError::Start(msg) => f.write_str(msg),
            AgentError::Loop(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

impl std::error::Error for AgentError {}

impl From<ConfigError> for AgentError {
    fn from(e: ConfigError) -> AgentError {
        AgentError::Config(e)
    }
}

fn start_error(what: impl fmt::Display) -> AgentError {
    AgentError::Start(what.to_string())
}

/// Runs the agent until SIGINT/SIGTERM.
pub fn run(opts: AgentOptions) -> Result<(), AgentError> {
    let mut cfg = config::load(&opts.sources)?;
    keep_shard(&mut cfg, opts.shard);
    let web = web_settings(&opts)?;
    let security = web_security(opts.web_config.as_deref())?;
    log_web_security(&security);
    let tls_on = security.tls.is_some();
    let listen = opts
        .listen_address
        .clone()
        .unwrap_or_else(|| cfg.web.listen_address.clone());
    let listener = TcpListener::bind(&listen).map_err(|e| start_error(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
    when_no_targets(&mut cfg, &bound, tls_on, opts.shard.is_some())?;
    let metrics = Arc::new(Metrics::new());
    if let Some(shard) = opts.shard {
        metrics.shards.set(i64::from(shard.count));
        metrics.shard_index.set(i64::from(shard.index));
    }
    let observer = metrics_observer(&metrics, &cfg, &opts)?;
    let status = observer.status_handle();
    let scan_share = hostscan::ScanShare {
        host: Arc::new(Mutex::new(None)),
        events: observer.events_handle(),
    };
    let watched: filewatch::Patterns = Arc::new(Mutex::new(cfg.target_files.clone()));
    let probe_config = Arc::new(RwLock::new(cfg.probe.clone()));
    let live_web = Arc::new(LiveWeb::new(web_limits(&cfg), cfg.web.echo_endpoint, security));
    let kernel_config = Arc::new(RwLock::new(cfg.kernel.clone()));
    let driver = Driver::new(&cfg.targets, Mode::Persistent, observer)
        .map_err(|e| start_error(format!("cannot start the event loop: {e}")))?
        .with_reloader(reloader(
            opts.sources.clone(),
            bound.clone(),
            Reloaded {
                target_files: Arc::clone(&watched),
                probe: Arc::clone(&probe_config),
                web_config: opts.web_config.clone(),
                web: Arc::clone(&live_web),
                kernel: Arc::clone(&kernel_config),
                listen_address: cfg.web.listen_address.clone(),
            },
            opts.shard,
        ));
    if let Err(e) = filewatch::spawn(driver.handle(), watched) {
        return Err(start_error(format!("cannot start the target files watcher: {e}")));
    }
    let state = Arc::new(HttpState {
        metrics: Arc::clone(&metrics),
        telemetry_path: opts.telemetry_path.clone(),
        live: Arc::clone(&live_web),
        lifecycle: opts.enable_lifecycle.then(|| driver.handle()),
        status,
        events: Arc::clone(&scan_share.events),
        host: Arc::clone(&scan_share.host),
        probe: ProbeEndpoint::new(driver.handle(), probe_config),
        prefix: web.prefix,
        external_origin: web.external_origin,
    });
    let scheme = if tls_on { "https" } else { "http" };
    http::spawn(listener, state).map_err(|e| start_error(format!("cannot start the HTTP thread: {e}")))?;
    log::info!("listening on {scheme}://{bound} (metrics at {})", opts.telemetry_path);
    let sessions: u32 = cfg.targets.iter().map(|t| t.connections).sum();
    log::info!("monitoring {} target(s) with {sessions} session(s)", cfg.targets.len());
    for t in &cfg.targets {
        if let Some(proxy) = &t.proxy {
            log::info!("target={} via proxy {proxy}", t.name);
        }
    }
    let driver = with_host_scan(driver, &cfg, kernel_config, &metrics, scan_share);
    let mut driver = with_fd_budget(driver, sessions, cfg.web.max_connections);
    signals::install(driver.handle(), true);
    let grace = cfg
        .targets
        .iter()
        .map(|t| t.timing.close_timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1);
    driver.run(None, grace).map_err(AgentError::Loop)?;
    log::info!("stopped");
    Ok(())
}

fn metrics_observer(metrics: &Arc<Metrics>, cfg: &Config, opts: &AgentOptions) -> Result<MetricsObserver, AgentError> {
    let observer = MetricsObserver::new(Arc::clone(metrics), &cfg.targets);
    let Some(path) = &opts.rtt_log else {
        return Ok(observer);
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| start_error(format!("cannot open --rtt-log {}: {e}", path.display())))?;
    Ok(observer.with_rtt_log(file))
}

/// Drops the targets another shard holds.
fn keep_shard(cfg: &mut Config, shard: Option<Shard>) {
    let Some(shard) = shard else {
        return;
    };
    let all = cfg.targets.len();
    cfg.targets.retain(|t| shard.owns(&t.name));
    log::info!(
        "shard {shard}: {} of {all} target(s) are this agent's",
        cfg.targets.len()
    );
}

/// Reloads read the same sources again; `[web]` and `[kernel]` changes
/// need a restart.
/// What a reload replaces beside the targets.
struct Reloaded {
    target_files: filewatch::Patterns,
    probe: Arc<RwLock<ProbeConfig>>,
    web_config: Option<PathBuf>,
    web: Arc<LiveWeb>,
    kernel: Arc<RwLock<KernelConfig>>,
    /// `[web] listen_address` at start: a change needs a restart.
    listen_address: String,
}

fn web_limits(cfg: &Config) -> WebLimits {
    WebLimits {
        max_connections: cfg.web.max_connections,
        header_timeout: cfg.web.header_timeout,
        max_stream_clients: cfg.web.max_stream_clients,
        max_echo_clients: cfg.web.max_echo_clients,
    }
}

fn reloader(sources: Sources, bound: String, shared: Reloaded, shard: Option<Shard>) -> Reloader {
    Box::new(move || {
        let mut cfg = config::load(&sources)?;
        keep_shard(&mut cfg, shard);
        // Read before anything applies: a broken file fails the whole reload.
        let security = web_security(shared.web_config.as_deref())?;
        when_no_targets(&mut cfg, &bound, security.tls.is_some(), shard.is_some())?;
        if cfg.web.listen_address != shared.listen_address {
            log::warn!("[web] listen_address changed: it takes a restart");
        }
        shared.web.apply(web_limits(&cfg), cfg.web.echo_endpoint, security);
        if let Ok(mut k) = shared.kernel.write() {
            *k = cfg.kernel.clone();
        }
        if let Ok(mut w) = shared.target_files.lock() {
            *w = cfg.target_files.clone();
        }
        if let Ok(mut p) = shared.probe.write() {
            *p = cfg.probe.clone();
        }
        Ok(cfg.targets)
    })
}

/// Starts the host scan, which follows `kernel` as reloads change it. Off
/// at start, it stays off until a restart (its bookkeeping of the agent's
/// own sockets costs the session loop).
fn with_host_scan<O: crate::driver::Observer>(
    driver: Driver<O>,
    cfg: &Config,
    kernel: Arc<RwLock<KernelConfig>>,
    metrics: &Arc<Metrics>,
    share: hostscan::ScanShare,
) -> Driver<O> {
    if cfg.kernel.scan_interval.is_none() {
        return driver;
    }
    let registry = Arc::new(OwnedRegistry::default());
    match hostscan::spawn(kernel, Arc::clone(metrics), Some(Arc::clone(&registry)), Some(share)) {
        Ok(_) => driver.with_owned_registry(registry),
        Err(e) => {
            log::warn!("host TCP table scan disabled: cannot start its thread: {e}");
            driver
        }
    }
}

/// Raises the descriptor limit and keeps sessions within it, so that a
/// full table fails sessions with `fd_limit` instead of the HTTP endpoint.
fn with_fd_budget<O: crate::driver::Observer>(driver: Driver<O>, sessions: u32, http_connections: usize) -> Driver<O> {
    match fdlimit::raise_nofile() {
        Ok(limit) => {
            let budget = fdlimit::session_budget(limit, http_connections);
            log::info!("file-descriptor limit {limit}: up to {budget} sockets for sessions");
            if sessions as usize > budget {
                log::warn!(
                    "{sessions} sessions configured but only {budget} descriptors available for them: \
                     the rest fail with reason fd_limit until descriptors free up (raise LimitNOFILE / ulimit -n)"
                );
            }
            driver.with_fd_budget(budget)
        }
        Err(e) => {
            log::warn!("cannot read the file-descriptor limit: {e}");
            driver
        }
    }
}

/// What `--web.external-url` and `--web.route-prefix` ask of the HTTP
/// endpoint.
struct WebSettings {
    prefix: String,
    external_origin: Option<String>,
}

/// The web configuration file, read and built (TLS configuration, users);
/// the default, plain and open, without one.
fn web_security(path: Option<&std::path::Path>) -> Result<WebSecurity, ConfigError> {
    let Some(path) = path else {
        return Ok(WebSecurity::default());
    };
    let security = config::web_file::load(path)?;
    let tls = match &security.tls {
        Some(t) => Some(http::tls::server_config(t).map_err(|e| ConfigError {
            source_name: path.display().to_string(),
            problems: vec![config::Problem {
                field: "tls_server_config".into(),
                message: e.to_string(),
            }],
        })?),
        None => None,
    };
    let auth = (!security.users.is_empty()).then(|| Arc::new(BasicAuth::new(security.users.clone())));
    Ok(WebSecurity { tls, auth })
}

fn log_web_security(s: &WebSecurity) {
    if s.tls.is_some() {
        log::info!("web: TLS on");
    }
    if s.auth.is_some() {
        log::info!("web: basic auth on (/healthz and /ws stay open)");
    }
}

fn web_settings(opts: &AgentOptions) -> Result<WebSettings, AgentError> {
    let external = match &opts.external_url {
        Some(u) => Some(url::Url::parse(u).map_err(|e| start_error(format!("--web.external-url {u:?}: {e}")))?),
        None => None,
    };
    let prefix = opts
        .route_prefix
        .clone()
        .or_else(|| external.as_ref().map(|u| u.path().to_string()))
        .unwrap_or_default();
    let prefix = format!("/{}", prefix.trim_matches('/'));
    let prefix = if prefix == "/" { String::new() } else { prefix };
    let external_origin = external.map(|u| u.origin().ascii_serialization());
    Ok(WebSettings {
        prefix,
        external_origin,
    })
}

/// An agent with no targets watches its own echo endpoint as target
/// "self", unless its targets are to come from `target_files` (a file not
/// written yet, a discovery sidecar starting, is something to wait for, not
/// a mistake) or it is one shard of several (more shards than targets
/// leaves some with none; a "self" in each would be counted as targets).
/// The echo target is plain ws, so with TLS on there is nothing it could
/// watch: an error.
fn when_no_targets(cfg: &mut Config, bound: &str, tls_on: bool, sharded: bool) -> Result<(), AgentError> {
    if !cfg.targets.is_empty() {
        return Ok(());
    }
    if !cfg.target_files.is_empty() {
        log::info!("no targets in target_files yet: waiting for them");
        return Ok(());
    }
    if sharded {
        log::info!("no targets in this shard: waiting for a reload to bring some");
        return Ok(());
    }
    if tls_on {
        return Err(start_error(
            "no targets: the built-in echo target is plain ws and the endpoint serves TLS; \
             give --target URL, [[target]] entries or target_files",
        ));
    }
    add_self_target(cfg, bound)?;
    log::info!(
        "no targets configured: monitoring the built-in echo endpoint {}",
        cfg.targets[0].url
    );
    Ok(())
}

fn add_self_target(cfg: &mut Config, bound: &str) -> Result<(), AgentError> {
    if !cfg.web.echo_endpoint {
        return Err(start_error(
            "no targets: give --target URL or a config with [[target]] entries",
        ));
    }
    let own = Sources {
        file: None,
        urls: vec![self_url(bound)],
        proxy: None,
    };
    let Some(own) = config::load(&own)?.targets.into_iter().next() else {
        return Err(start_error(format!("no target for the echo endpoint on {bound}")));
    };
    let mut spec = TargetSpec::clone(&own);
    spec.name = "self".into();
    cfg.targets.push(Arc::new(spec));
    Ok(())
}

/// The URL of our own echo endpoint, reachable from this host.
fn self_url(bound: &str) -> String {
    match bound.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => {
            format!("ws://127.0.0.1:{}/ws", a.port())
        }
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => format!("ws://[::1]:{}/ws", a.port()),
        Ok(a) => format!("ws://{a}/ws"),
        Err(_) => format!("ws://{bound}/ws"),
    }
}
