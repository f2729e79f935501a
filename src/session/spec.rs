//! A target as the session core needs it: validated, resolved from config,
//! shared read-only by every session of the target.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::BackoffPolicy;
use super::proxy::ProxySpec;
use crate::labels::label_enum;

label_enum! {
    /// The transport a target URL names.
    pub enum Scheme {
        Ws,
        Wss,
        Tcp,
    }
}

#[derive(Debug, Clone)]
pub struct Timing {
    /// `None` disables pings (and TCP probes): liveness then rests on the
    /// idle timeout and on kernel keepalive.
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    /// Covers DNS and the TCP connect.
    pub connect_timeout: Duration,
    /// Covers TLS and the HTTP upgrade.
    pub handshake_timeout: Duration,
    /// How long a local close waits for the peer's close frame.
    pub close_timeout: Duration,
    pub backoff: BackoffPolicy,
    /// Opt-in: no data message for this long while everything else is
    /// healthy ends the session (`message_timeout`: the feed stopped).
    pub message_timeout: Option<Duration>,
    /// The first probe waits this long after the open (idle discovery's
    /// silent sessions); otherwise it goes out at once.
    pub first_probe_delay: Option<Duration>,
}

impl Default for Timing {
    /// What a target gets when its configuration says nothing.
    fn default() -> Self {
        Timing {
            ping_interval: Some(Duration::from_secs(10)),
            pong_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            backoff: BackoffPolicy {
                min: Duration::from_millis(500),
                max: Duration::from_secs(30),
                reset_after: Duration::from_secs(60),
            },
            message_timeout: None,
            first_probe_delay: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum OpenMessage {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, Default)]
pub struct WsOptions {
    pub path: String,
    pub origin: Option<String>,
    pub subprotocols: Vec<String>,
    pub require_subprotocol: bool,
    /// Extra request headers; values may hold secrets and are never logged.
    pub headers: Vec<(String, String)>,
    pub on_open: Vec<OpenMessage>,
    /// The most of one message held for whoever needs it whole.
    pub max_message_size: usize,
    /// Send every received data message back (conformance runs against
    /// Autobahn's fuzzingserver); never set from config.
    pub echo: bool,
}

/// The application protocol spoken over the WebSocket, with its options.
#[derive(Debug, Clone, Default)]
pub enum Protocol {
    /// RFC 6455 only: pings are the liveness probe.
    #[default]
    Ws,
    SocketIo(SocketIoOptions),
    GraphqlWs(GraphqlWsOptions),
    Mqtt(MqttOptions),
    Stomp(StompOptions),
}

impl Protocol {
    /// The name `protocol = "…"` uses in config and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Ws => "ws",
            Protocol::SocketIo(_) => "socketio",
            Protocol::GraphqlWs(_) => "graphql-ws",
            Protocol::Mqtt(_) => "mqtt",
            Protocol::Stomp(_) => "stomp",
        }
    }
}

/// Socket.IO over Engine.IO v3 or v4, WebSocket transport only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketIoOptions {
    /// The Engine.IO protocol revision: 4 (Socket.IO 3 and later) or 3
    /// (Socket.IO 2), from the URL's `EIO=`.
    pub eio: u8,
    /// The namespace to connect to, `/` by default.
    pub namespace: String,
    /// JSON sent with the namespace connect (EIO 4 only); may hold secrets.
    pub auth: Option<String>,
}

/// GraphQL over WebSocket, the `graphql-transport-ws` subprotocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphqlWsOptions {
    /// JSON sent as the `connection_init` payload; may hold secrets.
    pub payload: Option<String>,
}

/// MQTT over WebSocket (subprotocol `mqtt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttOptions {
    pub version: MqttVersion,
    /// The client identifier; empty: `sockpulse-` and a random suffix, new
    /// at every connect (brokers disconnect an older session with the same
    /// identifier).
    pub client_id: String,
    /// May hold secrets.
    pub username: Option<String>,
    pub password: Option<String>,
    pub clean_session: bool,
    /// Subscribed at QoS 0 once connected: its messages are the feed
    /// `message_timeout` watches.
    pub topic: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

impl MqttVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            MqttVersion::V311 => 4,
            MqttVersion::V5 => 5,
        }
    }
}

/// STOMP 1.2 or 1.1 over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompOptions {
    /// The virtual host of CONNECT.
    pub host: String,
    /// May hold secrets.
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// A destination subscribed once connected: its messages are the feed.
    pub subscribe: Option<String>,
    /// Time a RECEIPT round trip every ping interval.
    pub receipt: bool,
}

/// A custom application probe on a plain WebSocket target: a message sent
/// every ping interval and the answer that matches it.
#[derive(Debug, Clone)]
pub struct AppProbe {
    pub send: ProbeMessage,
    pub expect: ProbeAnswer,
}

/// What a custom probe sends; `${seq}` in text is the probe's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// How a custom probe's answer is recognised.
#[derive(Debug, Clone)]
pub enum ProbeAnswer {
    /// A text message this matches, every `${seq}` group (a capture of
    /// digits) equal to the probe's number.
    Text { pattern: regex::Regex, seq_groups: usize },
    /// A binary message holding these bytes.
    Binary(Vec<u8>),
}

impl ProbeAnswer {
    /// `expect` as a regular expression in which each `${seq}` matches the
    /// probe's number.
    pub fn text(expect: &str) -> Result<ProbeAnswer, String> {
        use super::app::{seq_group, PROBE_SEQ};
        let pieces: Vec<&str> = expect.split(PROBE_SEQ).collect();
        let mut pattern = String::new();
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                pattern.push_str(&format!("(?P<{}>[0-9]+)", seq_group(i - 1)));
            }
            pattern.push_str(piece);
        }
        let regex = regex::Regex::new(&pattern).map_err(|e| format!("not a regular expression: {e}"))?;
        Ok(ProbeAnswer::Text {
            pattern: regex,
            seq_groups: pieces.len() - 1,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub send: Vec<u8>,
    pub expect: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

#[derive(Debug, Clone, Default)]
pub struct SocketOptions {
    pub keepalive: Option<Keepalive>,
    pub user_timeout: Option<Duration>,
    /// `close = "rst"`: SO_LINGER 0, so closing sends a reset and leaves
    /// no TIME_WAIT on this host.
    pub reset_on_close: bool,
}

#[derive(Clone)]
pub struct TlsSpec {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSpec")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Which of the addresses behind the target's name get sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Endpoints {
    /// `connections` sessions to the name: each attempt tries its
    /// addresses in turn until one answers.
    #[default]
    First,
    /// `connections` sessions to every address the name resolves to,
    /// re-resolved every `resolve_interval`, at most `max_endpoints`.
    All {
        resolve_interval: Duration,
        max_endpoints: usize,
        /// The endpoints are an SRV name's targets (each with its port)
        /// instead of the URL host's addresses.
        srv: Option<Arc<str>>,
    },
}

pub const DEFAULT_IDLE_DISCOVERY_MAX: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_ENDPOINTS: usize = 64;

/// Below the accept-queue length of common servers (Linux caps a backlog at
/// `somaxconn`, 4096 since 5.4; Node and nginx ask for 511).
pub const DEFAULT_MAX_CONNECTING: u32 = 256;

#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// The `target` label value.
    pub name: String,
    pub url: String,
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// `Host:` header value (host, plus port when not the scheme default).
    pub host_header: String,
    /// Sessions to the target, or to each of its endpoints.
    pub connections: u32,
    pub endpoints: Endpoints,
    /// `idle_discovery = { max }`: trial sessions find the path's idle
    /// timeout, searching up to this silence.
    pub idle_discovery: Option<Duration>,
    /// At most this many of the target's sessions resolve, connect or
    /// handshake at once: a connect storm queues here rather than in the
    /// server's accept queue.
    pub max_connecting: u32,
    pub timing: Timing,
    pub ws: WsOptions,
    pub tls: Option<TlsSpec>,
    /// TCP targets: the send/expect probe.
    pub probe: Option<Probe>,
    /// WebSocket targets: the application protocol.
    pub protocol: Protocol,
    /// WebSocket targets speaking plain RFC 6455: a custom probe.
    pub app_probe: Option<AppProbe>,
    pub socket: SocketOptions,
    /// Its own labels (`labels = { team = "…" }`), exported only on
    /// `sockpulse_target_info`; sorted by name.
    pub labels: Vec<(String, String)>,
    /// Connect through this proxy.
    pub proxy: Option<ProxySpec>,
    /// Files that `${file:PATH}` in its headers, payloads and credentials
    /// refer to, read again for every connection attempt.
    pub secret_files: Arc<[PathBuf]>,
    /// Changes when anything that configures this target changes: a reload
    /// keeps the sessions of targets whose fingerprint is unchanged.
    pub fingerprint: u64,
}

impl TargetSpec {
    /// Whether an application protocol or custom probe measures RTTs of its
    /// own beside the transport's probe.
    pub fn has_app_probe(&self) -> bool {
        !matches!(self.protocol, Protocol::Ws) || self.app_probe.is_some()
    }

    /// A target for tests and fuzzing: `scheme` to `example.test` (port 80,
    /// path `/`) with the default timers and 1 MiB limits, no TLS, no probe.
    /// Change what a test needs with struct update syntax.
    #[doc(hidden)]
    pub fn for_test(scheme: Scheme) -> TargetSpec {
        TargetSpec {
            name: "t".into(),
            url: format!("{scheme}://example.test/"),
            scheme,
            host: "example.test".into(),
            port: 80,
            host_header: "example.test".into(),
            connections: 1,
            endpoints: Endpoints::First,
            idle_discovery: None,
            max_connecting: DEFAULT_MAX_CONNECTING,
            timing: Timing::default(),
            ws: WsOptions {
                path: "/".into(),
                max_message_size: 1 << 20,
                ..Default::default()
            },
            tls: None,
            probe: None,
            protocol: Protocol::Ws,
            app_probe: None,
            socket: SocketOptions::default(),
            labels: Vec::new(),
            proxy: None,
            secret_files: Arc::new([]),
            fingerprint: 0,
        }
    }
}
