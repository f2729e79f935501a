//! The command-line arguments, as clap parses them; validated further by
//! the commands that use them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Sources;

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
    /// Proxy for the --target URLs: http://[user:pass@]host:port, socks5://…, socks5h://… (the proxy
    /// resolves names), env (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY as curl reads them) or off.
    #[arg(long, value_name = "PROXY", requires = "targets")]
    pub proxy: Option<String>,
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
    /// TLS, client certificates and basic auth, in the Prometheus exporter-toolkit's web configuration
    /// format (YAML); re-read on reload, certificates when their files change.
    #[arg(long = "web.config.file", env = "SOCKPULSE_WEB_CONFIG", value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    /// The URL users reach the agent at (behind a reverse proxy): its origin may open the stream, its path is
    /// the default route prefix.
    #[arg(long = "web.external-url", value_name = "URL")]
    pub external_url: Option<String>,
    /// Serve every endpoint under this path (default: the path of --web.external-url, else /).
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub route_prefix: Option<String>,
    /// Diagnostics: append every RTT sample to FILE as `unix_ms target rtt_us read_delay_us`
    /// (read delay: how long the pong waited in the kernel before the loop read it; `-` if unknown).
    #[arg(long = "rtt-log", value_name = "FILE")]
    pub rtt_log: Option<PathBuf>,
    /// Hold only this share of the targets: INDEX/COUNT (from 0), by a fixed hash of each target's name, so
    /// COUNT agents with one configuration monitor every target exactly once.
    #[arg(long, env = "SOCKPULSE_SHARD", value_name = "INDEX/COUNT", value_parser = clap::value_parser!(crate::shard::Shard))]
    pub shard: Option<crate::shard::Shard>,
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
    /// With --agent: redraw the report every second until interrupted.
    #[arg(long, requires = "agent", conflicts_with = "json")]
    pub watch: bool,
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
    /// How to read the table: netlink sock_diag (our namespace), /proc, auto (netlink, else /proc), or
    /// filtered (netlink dumps of every socket not ESTABLISHED and of the watched ports, the rest counted).
    #[arg(long, value_parser = ["auto", "filtered", "netlink", "procfs"])]
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

impl From<&TargetArgs> for Sources {
    fn from(args: &TargetArgs) -> Sources {
        Sources {
            file: args.config.clone(),
            urls: args.targets.clone(),
            proxy: args.proxy.clone(),
        }
    }
}
