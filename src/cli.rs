//! Command-line interface: flag parsing here, behaviour in the modules.
//! Exit codes: 0 all good, 1 something unhealthy, 2 usage or config error.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::agent::{unix_now, MetricsObserver};
use crate::config::{self, Config, ConfigError};
use crate::driver::Driver;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::session::Mode;
use crate::status::{self, StatusObserver};

// Output that treats a closed pipe (`sockpulse … | head`) as the reader
// being done rather than a reason to panic, as print! would.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! say_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! complain {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! complain_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_UNHEALTHY: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sockpulse",
    version,
    about = "Connection-liveness monitor for WebSocket and TCP sessions, exporting Prometheus metrics"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: hold sessions to every target and serve metrics.
    Run(RunArgs),
    /// Connect to each target once, probe, close and report; exit 1 if any is unhealthy.
    Status(StatusArgs),
    /// One-shot host TCP report: states, watched ports, suspicious sockets; exit 1 when a threshold is crossed.
    Sockets(SocketsArgs),
    /// Validate a config file and report every problem; exit 2 on error.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// TOML config file.
    #[arg(long, short = 'c', env = "SOCKPULSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A target URL (ws://, wss:// or tcp://host:port); repeatable; added to the config's targets.
    #[arg(long = "target", short = 't', value_name = "URL")]
    pub targets: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Address for /metrics, /, /healthz and the /ws echo endpoint [default: 0.0.0.0:9747, or [web] listen_address].
    #[arg(long = "web.listen-address", env = "SOCKPULSE_LISTEN_ADDRESS", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_name = "PATH")]
    pub telemetry_path: String,
    /// Accept POST /-/reload (like Prometheus's --web.enable-lifecycle); SIGHUP always reloads.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Diagnostics: append every RTT sample to FILE as `unix_ms target rtt_us read_delay_us`
    /// (read delay: how long the pong waited in the kernel before the loop read it; `-` if unknown).
    #[arg(long = "rtt-log", value_name = "FILE")]
    pub rtt_log: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Pings (or TCP probes) per target.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub pings: u32,
    /// Time between pings.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Give up on targets still unfinished after this long.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ask a running agent (http://HOST:PORT) what it sees instead of opening sessions.
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "targets"])]
    pub agent: Option<String>,
}

#[derive(Args, Debug)]
pub struct SocketsArgs {
    /// TOML config file (its [kernel] section).
    #[arg(long, short = 'c', env = "SOCKPULSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A local or remote port to break out; repeatable; added to kernel.watch_ports.
    #[arg(long = "watch-port", value_name = "PORT")]
    pub watch_ports: Vec<u16>,
    /// Read the network namespace of this process instead of our own (via /proc).
    #[arg(long)]
    pub pid: Option<u32>,
    /// How to read the table: netlink sock_diag (our namespace), /proc, or auto (netlink, else /proc).
    #[arg(long, value_parser = ["auto", "netlink", "procfs"])]
    pub method: Option<String>,
    /// Scan twice this far apart: CLOSE_WAIT sockets present in both are reported as leak suspects.
    #[arg(long = "close-wait-age", value_parser = humantime::parse_duration, value_name = "DUR")]
    pub close_wait_age: Option<Duration>,
    /// Exit 1 when TIME_WAIT sockets fill this share of the ephemeral port range.
    #[arg(long = "max-time-wait-ratio", default_value_t = 0.8)]
    pub max_time_wait_ratio: f64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    }))
    .format_timestamp_millis()
    .init();
    ExitCode::from(match cli.command {
        Command::Run(args) => run(args),
        Command::Status(args) => run_status(args),
        Command::Sockets(args) => run_sockets(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sockpulse", &mut buf);
            say_raw!("{}", String::from_utf8_lossy(&buf));
            EXIT_OK
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                Ok(()) => {
                    say_raw!("{}", String::from_utf8_lossy(&buf));
                    EXIT_OK
                }
                Err(e) => {
                    complain!("cannot render the man page: {e}");
                    EXIT_UNHEALTHY
                }
            }
        }
    })
}

fn load(args: &TargetArgs) -> Result<Config, ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                source_name: path.display().to_string(),
                problems: vec![config::Problem {
                    field: "(file)".into(),
                    message: format!("cannot read: {e}"),
                }],
            })?;
            config::parse(&text, &path.display().to_string(), &args.targets, &env)
        }
        None => config::parse("", "command line", &args.targets, &env),
    }
}

fn check_config(file: &std::path::Path) -> u8 {
    match config::load_file(file) {
        Ok(cfg) => {
            say!("{}: ok, {} target(s)", file.display(), cfg.targets.len());
            for t in &cfg.targets {
                say!("  {} ({} connection(s)) {}", t.name, t.connections, t.url);
            }
            EXIT_OK
        }
        Err(e) => {
            complain_raw!("{e}");
            EXIT_USAGE
        }
    }
}

/// With no targets, the agent monitors its own echo endpoint.
fn add_self_target(cfg: &mut Config, bound: &str) -> Result<(), String> {
    if !cfg.targets.is_empty() {
        return Ok(());
    }
    if !cfg.web.echo_endpoint {
        return Err("no targets: give --target URL or a config with [[target]] entries".into());
    }
    let url = self_url(bound);
    let mut c = config::parse("", "built-in", std::slice::from_ref(&url), &|_| None).map_err(|e| e.to_string())?;
    let mut spec = (*c.targets.remove(0)).clone();
    spec.name = "self".into();
    cfg.targets.push(Arc::new(spec));
    Ok(())
}

fn run(args: RunArgs) -> u8 {
    let mut cfg = match load(&args.targets) {
        Ok(c) => c,
        Err(e) => {
            complain_raw!("{e}");
            return EXIT_USAGE;
        }
    };
    let listen = args
        .listen_address
        .clone()
        .unwrap_or_else(|| cfg.web.listen_address.clone());
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            complain!("cannot listen on {listen}: {e}");
            return EXIT_USAGE;
        }
    };
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
    let self_target = cfg.targets.is_empty();
    if let Err(e) = add_self_target(&mut cfg, &bound) {
        complain!("{e}");
        return EXIT_USAGE;
    }
    if self_target {
        log::info!(
            "no targets configured: monitoring the built-in echo endpoint {}",
            cfg.targets[0].url
        );
    }
    let metrics = Arc::new(Metrics::new());
    let mut observer = MetricsObserver::new(Arc::clone(&metrics), cfg.targets.clone());
    if let Some(path) = &args.rtt_log {
        match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => observer = observer.with_rtt_log(f),
            Err(e) => {
                complain!("cannot open --rtt-log {}: {e}", path.display());
                return EXIT_USAGE;
            }
        }
    }
    // Reloads read the same sources again; [web] and [kernel] changes need a restart.
    let sources = args.targets.clone();
    let reload_bound = bound.clone();
    let reloader: crate::driver::Reloader = Box::new(move || {
        let mut cfg = load(&sources).map_err(|e| e.to_string().trim_end().replace('\n', "; "))?;
        add_self_target(&mut cfg, &reload_bound)?;
        Ok(cfg.targets)
    });
    let status_handle = observer.status_handle();
    let mut driver = match Driver::new(&cfg.targets, Mode::Persistent, observer) {
        Ok(d) => d.with_reloader(reloader),
        Err(e) => {
            complain!("cannot start the event loop: {e}");
            return EXIT_USAGE;
        }
    };
    let state = Arc::new(HttpState {
        metrics: Arc::clone(&metrics),
        telemetry_path: args.telemetry_path.clone(),
        echo_endpoint: cfg.web.echo_endpoint,
        lifecycle: args.enable_lifecycle.then(|| driver.reload_handle()),
        status: status_handle,
    });
    if let Err(e) = http::spawn(listener, state) {
        complain!("cannot start the HTTP thread: {e}");
        return EXIT_USAGE;
    }
    log::info!("listening on http://{bound} (metrics at {})", args.telemetry_path);
    let sessions: u32 = cfg.targets.iter().map(|t| t.connections).sum();
    log::info!("monitoring {} target(s) with {sessions} session(s)", cfg.targets.len());
    if let Some(interval) = cfg.kernel.scan_interval {
        let registry = Arc::new(crate::kernel::owned::OwnedRegistry::default());
        match crate::hostscan::spawn(&cfg.kernel, interval, Arc::clone(&metrics), Some(Arc::clone(&registry))) {
            Ok(_) => driver = driver.with_owned_registry(registry),
            Err(e) => log::warn!("host TCP table scan disabled: cannot start its thread: {e}"),
        }
    }
    match crate::driver::fdlimit::raise_nofile() {
        Ok(limit) => {
            let budget = crate::driver::fdlimit::session_budget(limit);
            log::info!("file-descriptor limit {limit}: up to {budget} sockets for sessions");
            if sessions as usize > budget {
                log::warn!(
                    "{sessions} sessions configured but only {budget} descriptors available for them: \
                     the rest fail with reason fd_limit until descriptors free up (raise LimitNOFILE / ulimit -n)"
                );
            }
            driver = driver.with_fd_budget(budget);
        }
        Err(e) => log::warn!("cannot read the file-descriptor limit: {e}"),
    }
    install_signal_handlers(driver.stop_handle(), Some(driver.reload_handle()));
    let grace = cfg
        .targets
        .iter()
        .map(|t| t.timing.close_timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1);
    match driver.run(None, grace) {
        Ok(()) => {
            log::info!("stopped");
            EXIT_OK
        }
        Err(e) => {
            log::error!("event loop failed: {e}");
            EXIT_UNHEALTHY
        }
    }
}

fn run_sockets(args: SocketsArgs) -> u8 {
    use crate::kernel::{host::CloseWaitTracker, scan::ScanMethod};
    let mut kernel = match &args.config {
        Some(path) => match config::load_file(path) {
            Ok(c) => c.kernel,
            Err(e) => {
                complain_raw!("{e}");
                return EXIT_USAGE;
            }
        },
        None => config::KernelConfig::default(),
    };
    kernel.watch_ports.extend(&args.watch_ports);
    kernel.watch_ports.sort_unstable();
    kernel.watch_ports.dedup();
    if args.pid.is_some() {
        kernel.netns_pid = args.pid;
    }
    if let Some(method) = args.method.as_deref().and_then(ScanMethod::from_label) {
        kernel.method = method;
    }
    let mut host_cfg = kernel.host_config();
    let ns = kernel.namespace();
    let mut tracker = CloseWaitTracker::default();
    if let Some(age) = args.close_wait_age {
        host_cfg.close_wait_age_alert = age;
        if let Err(e) = crate::kernel::scan::scan(kernel.method, ns, &host_cfg, &mut tracker) {
            complain!("cannot read the TCP table: {e}");
            return EXIT_USAGE;
        }
        std::thread::sleep(age);
    } else {
        // A single scan cannot age anything: do not flag CLOSE_WAIT by age.
        host_cfg.close_wait_age_alert = Duration::MAX;
    }
    let summary = match crate::kernel::scan::scan(kernel.method, ns, &host_cfg, &mut tracker) {
        Ok((s, _)) => s,
        Err(e) => {
            complain!("cannot read the TCP table: {e}");
            return EXIT_USAGE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(s) => say!("{s}"),
            Err(e) => {
                complain!("cannot encode JSON: {e}");
                return EXIT_UNHEALTHY;
            }
        }
    } else {
        say_raw!("{}", crate::sockets::render(&summary));
    }
    if !summary.suspicious.is_empty() || summary.time_wait_port_ratio >= args.max_time_wait_ratio {
        EXIT_UNHEALTHY
    } else {
        EXIT_OK
    }
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

type Handle = (Arc<std::sync::atomic::AtomicBool>, Arc<mio::Waker>);

/// SIGINT/SIGTERM close sessions and exit (a second one exits at once);
/// SIGHUP reloads the configuration when `reload` is given.
fn install_signal_handlers((stop, waker): Handle, reload: Option<Handle>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let wanted: &[i32] = if reload.is_some() {
        &[SIGINT, SIGTERM, SIGHUP]
    } else {
        &[SIGINT, SIGTERM]
    };
    let mut signals = match signal_hook::iterator::Signals::new(wanted) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot install signal handlers: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("sockpulse-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if let (SIGHUP, Some((flag, waker))) = (sig, &reload) {
                    log::info!("SIGHUP: reloading the configuration");
                    flag.store(true, Ordering::SeqCst);
                    let _ = waker.wake();
                    continue;
                }
                if stop.swap(true, Ordering::SeqCst) {
                    log::warn!("second signal: exiting now");
                    std::process::exit(128 + sig);
                }
                log::info!("signal {sig}: closing sessions");
                let _ = waker.wake();
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal thread: {e}");
    }
}

fn print_reports(reports: &[status::TargetReport], json: bool) -> u8 {
    if json {
        match serde_json::to_string_pretty(reports) {
            Ok(s) => say!("{s}"),
            Err(e) => {
                complain!("cannot encode JSON: {e}");
                return EXIT_UNHEALTHY;
            }
        }
    } else {
        say_raw!("{}", status::render_table(reports, unix_now()));
    }
    if reports.iter().all(|r| r.healthy) {
        EXIT_OK
    } else {
        EXIT_UNHEALTHY
    }
}

fn run_status(args: StatusArgs) -> u8 {
    if let Some(agent) = &args.agent {
        return match status::fetch_from_agent(agent, args.timeout) {
            Ok(reports) => print_reports(&reports, args.json),
            Err(status::AgentError::Usage(e)) => {
                complain!("{e}");
                EXIT_USAGE
            }
            Err(status::AgentError::Unreachable(e)) => {
                complain!("{e}");
                EXIT_UNHEALTHY
            }
        };
    }
    let cfg = match load(&args.targets) {
        Ok(c) => c,
        Err(e) => {
            complain_raw!("{e}");
            return EXIT_USAGE;
        }
    };
    if cfg.targets.is_empty() {
        complain!("no targets: give --target URL or --config FILE");
        return EXIT_USAGE;
    }
    // One session per target, probing at the status interval.
    let targets: Vec<_> = cfg
        .targets
        .iter()
        .map(|t| {
            let mut spec = (**t).clone();
            spec.connections = 1;
            if spec.timing.ping_interval.is_some() {
                spec.timing.ping_interval = Some(args.interval);
            }
            Arc::new(spec)
        })
        .collect();
    let observer = StatusObserver::new(&targets, args.pings);
    let mut driver = match Driver::new(&targets, Mode::OneShot { pings: args.pings }, observer) {
        Ok(d) => d,
        Err(e) => {
            complain!("cannot start the event loop: {e}");
            return EXIT_USAGE;
        }
    };
    install_signal_handlers(driver.stop_handle(), None);
    if let Err(e) = driver.run(Some(Instant::now() + args.timeout), Duration::from_secs(1)) {
        complain!("event loop failed: {e}");
        return EXIT_UNHEALTHY;
    }
    let reports = driver.into_observer().finish();
    print_reports(&reports, args.json)
}
