//! Configuration: a TOML file and/or `--target` URLs, validated into
//! `TargetSpec`s. The TOML is walked by hand rather than through serde so
//! that every problem (unknown keys included) is reported at once, each
//! with the field it belongs to.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::{Table, Value};

use crate::kernel::host::{self, HostConfig};
use crate::kernel::scan::ScanMethod;
use crate::kernel::table::Namespace;
use crate::session::backoff::BackoffPolicy;
use crate::session::spec::{
    Keepalive, OpenMessage, Probe, Scheme, SocketOptions, TargetSpec, Timing, TlsSpec, WsOptions,
};
use crate::tls::{self, TlsOptions};

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9747";
/// Upper bound on sessions per target: each is a socket and a file descriptor.
pub const MAX_CONNECTIONS_PER_TARGET: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} has {} problem(s):", self.source_name, self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen_address: String,
    /// Serve the built-in WebSocket echo endpoint at `/ws`.
    pub echo_endpoint: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Arc<TargetSpec>>,
    pub web: WebConfig,
    pub kernel: KernelConfig,
}

/// The `[kernel]` section: the host-wide TCP table scan.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// `None` turns the host scan off.
    pub scan_interval: Option<Duration>,
    pub watch_ports: Vec<u16>,
    pub close_wait_age_alert: Duration,
    pub stuck_send_queue_bytes: u32,
    /// Read another process's network namespace instead of our own.
    pub netns_pid: Option<u32>,
    pub method: ScanMethod,
}

impl KernelConfig {
    /// What the table summary needs of this section.
    pub fn host_config(&self) -> HostConfig {
        HostConfig {
            watch_ports: self.watch_ports.clone(),
            close_wait_age_alert: self.close_wait_age_alert,
            stuck_send_queue_bytes: self.stuck_send_queue_bytes,
            ephemeral_range: host::ephemeral_range().unwrap_or(HostConfig::default().ephemeral_range),
        }
    }

    /// The network namespace whose table is read.
    pub fn namespace(&self) -> Namespace {
        self.netns_pid.map(Namespace::OfPid).unwrap_or_default()
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            scan_interval: Some(Duration::from_secs(5)),
            watch_ports: Vec::new(),
            close_wait_age_alert: Duration::from_secs(300),
            stuck_send_queue_bytes: 64 * 1024,
            netns_pid: None,
            method: ScanMethod::Auto,
        }
    }
}

/// Settings that `[defaults]` provides and each target may override.
#[derive(Debug, Clone)]
struct Defaults {
    connections: u32,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    idle_timeout: Option<Option<Duration>>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    close_timeout: Duration,
    backoff: BackoffPolicy,
    max_message_size: usize,
    max_frame_size: usize,
    keepalive: Option<Keepalive>,
    user_timeout: Option<Duration>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            connections: 1,
            ping_interval: Some(Duration::from_secs(10)),
            pong_timeout: Duration::from_secs(5),
            idle_timeout: None, // decided per target: see `idle_default`
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            backoff: BackoffPolicy {
                min: Duration::from_millis(500),
                max: Duration::from_secs(30),
                reset_after: Duration::from_secs(60),
            },
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            keepalive: None,
            user_timeout: None,
        }
    }
}

/// With pings on, 60 s of silence means something is wrong; a plain TCP
/// target without a probe may legitimately stay silent, so it has none.
fn idle_default(scheme: Scheme, has_probe: bool) -> Option<Duration> {
    match (scheme, has_probe) {
        (Scheme::Tcp, false) => None,
        _ => Some(Duration::from_secs(60)),
    }
}

const TOP_KEYS: &[&str] = &["defaults", "target", "web", "kernel"];
const DEFAULT_KEYS: &[&str] = &[
    "connections",
    "ping_interval",
    "pong_timeout",
    "idle_timeout",
    "connect_timeout",
    "handshake_timeout",
    "close_timeout",
    "backoff",
    "max_message_size",
    "max_frame_size",
    "tcp_keepalive",
    "tcp_user_timeout",
];
const TARGET_ONLY_KEYS: &[&str] = &["name", "url", "probe", "tls"];
/// Keys that only mean something for ws:// and wss:// targets.
const WS_ONLY_KEYS: &[&str] = &[
    "headers",
    "origin",
    "subprotocols",
    "require_subprotocol",
    "on_open",
    "on_open_binary_hex",
];
/// Request headers the handshake itself owns.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
];

/// Collects problems while walking the document.
struct Walker<'e> {
    problems: Vec<Problem>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Walker<'_> {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn check_keys(&mut self, table: &Table, path: &str, allowed: &[&[&str]]) {
        for key in table.keys() {
            if !allowed.iter().any(|set| set.contains(&key.as_str())) {
                let mut known: Vec<&str> = allowed.iter().flat_map(|s| s.iter().copied()).collect();
                known.sort_unstable();
                self.problem(join(path, key), format!("unknown key (known: {})", known.join(", ")));
            }
        }
    }

    fn str<'v>(&mut self, table: &'v Table, path: &str, key: &str) -> Option<&'v str> {
        match table.get(key)? {
            Value::String(s) => Some(s),
            other => {
                self.problem(
                    join(path, key),
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn bool(&mut self, table: &Table, path: &str, key: &str) -> Option<bool> {
        match table.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.problem(
                    join(path, key),
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn int(&mut self, table: &Table, path: &str, key: &str, min: i64, max: i64) -> Option<i64> {
        match table.get(key)? {
            Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            Value::Integer(i) => {
                self.problem(join(path, key), format!("{i} is out of range {min}..={max}"));
                None
            }
            other => {
                self.problem(
                    join(path, key),
                    format!("expected an integer, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn table<'v>(&mut self, table: &'v Table, path: &str, key: &str) -> Option<&'v Table> {
        match table.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.problem(join(path, key), format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    fn strings(&mut self, table: &Table, path: &str, key: &str) -> Option<Vec<String>> {
        let field = join(path, key);
        match table.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.problem(
                            format!("{field}[{i}]"),
                            format!("expected a string, found {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    field,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A positive duration such as "10s" or "1m30s".
    fn duration(&mut self, table: &Table, path: &str, key: &str) -> Option<Duration> {
        match self.optional_duration(table, path, key)? {
            Some(d) => Some(d),
            None => {
                self.problem(join(path, key), "cannot be turned off");
                None
            }
        }
    }

    /// A duration, or "off" (also "0s") to disable. Outer `None`: not set.
    fn optional_duration(&mut self, table: &Table, path: &str, key: &str) -> Option<Option<Duration>> {
        let text = self.str(table, path, key)?;
        if text.eq_ignore_ascii_case("off") {
            return Some(None);
        }
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Some(None),
            Ok(d) => Some(Some(d)),
            Err(e) => {
                self.problem(
                    join(path, key),
                    format!("{text:?} is not a duration like \"10s\" or \"1m30s\" ({e})"),
                );
                None
            }
        }
    }

    fn expand_env(&mut self, field: &str, value: &str) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match (self.env)(name) {
                        Some(v) => out.push_str(&v),
                        None => self.problem(field, format!("environment variable {name} is not set")),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    self.problem(field, "unterminated ${ in value");
                    return out;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn read_defaults(&mut self, table: &Table, path: &str, base: &Defaults) -> Defaults {
        let mut d = base.clone();
        if let Some(n) = self.int(table, path, "connections", 1, MAX_CONNECTIONS_PER_TARGET) {
            d.connections = n as u32;
        }
        if let Some(v) = self.optional_duration(table, path, "ping_interval") {
            d.ping_interval = v;
        }
        if let Some(v) = self.duration(table, path, "pong_timeout") {
            d.pong_timeout = v;
        }
        if let Some(v) = self.optional_duration(table, path, "idle_timeout") {
            d.idle_timeout = Some(v);
        }
        for (key, slot) in [
            ("connect_timeout", &mut d.connect_timeout),
            ("handshake_timeout", &mut d.handshake_timeout),
            ("close_timeout", &mut d.close_timeout),
        ] {
            if let Some(v) = self.duration(table, path, key) {
                *slot = v;
            }
        }
        if let Some(b) = self.table(table, path, "backoff") {
            let bpath = join(path, "backoff");
            self.check_keys(b, &bpath, &[&["min", "max", "reset_after"]]);
            if let Some(v) = self.duration(b, &bpath, "min") {
                d.backoff.min = v;
            }
            if let Some(v) = self.duration(b, &bpath, "max") {
                d.backoff.max = v;
            }
            if let Some(v) = self.duration(b, &bpath, "reset_after") {
                d.backoff.reset_after = v;
            }
        }
        if let Some(n) = self.int(table, path, "max_message_size", 125, 1 << 30) {
            d.max_message_size = n as usize;
        }
        if let Some(n) = self.int(table, path, "max_frame_size", 125, 1 << 30) {
            d.max_frame_size = n as usize;
        }
        if table.get("tcp_keepalive").is_some_and(|v| v.as_str() == Some("off")) {
            d.keepalive = None;
        } else if let Some(k) = self.table(table, path, "tcp_keepalive") {
            let kpath = join(path, "tcp_keepalive");
            self.check_keys(k, &kpath, &[&["idle", "interval", "count"]]);
            let idle = self.duration(k, &kpath, "idle").unwrap_or(Duration::from_secs(30));
            let interval = self.duration(k, &kpath, "interval").unwrap_or(Duration::from_secs(10));
            let count = self.int(k, &kpath, "count", 1, 127).unwrap_or(3) as u32;
            d.keepalive = Some(Keepalive { idle, interval, count });
        }
        if let Some(v) = self.optional_duration(table, path, "tcp_user_timeout") {
            d.user_timeout = v;
        }
        d
    }

    fn check_timing(&mut self, path: &str, d: &Defaults) {
        if let Some(interval) = d.ping_interval {
            if d.pong_timeout >= interval {
                self.problem(
                    join(path, "pong_timeout"),
                    format!(
                        "pong_timeout ({}) must be shorter than ping_interval ({})",
                        humantime::format_duration(d.pong_timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
        if d.backoff.min > d.backoff.max {
            self.problem(join(path, "backoff"), "backoff.min must not exceed backoff.max");
        }
        if d.max_frame_size > d.max_message_size {
            self.problem(
                join(path, "max_frame_size"),
                "max_frame_size must not exceed max_message_size",
            );
        }
    }

    fn read_target(&mut self, table: &Table, path: &str, defaults: &Defaults) -> Option<TargetSpec> {
        self.check_keys(table, path, &[DEFAULT_KEYS, TARGET_ONLY_KEYS, WS_ONLY_KEYS]);
        let d = self.read_defaults(table, path, defaults);
        self.check_timing(path, &d);
        let url_text = match self.str(table, path, "url") {
            Some(u) => u.to_string(),
            None => {
                if !table.contains_key("url") {
                    self.problem(join(path, "url"), "missing (every target needs a url)");
                }
                return None;
            }
        };
        let parsed = match parse_target_url(&url_text) {
            Ok(p) => p,
            Err(msg) => {
                self.problem(join(path, "url"), msg);
                return None;
            }
        };
        let name = self
            .str(table, path, "name")
            .map(str::to_string)
            .unwrap_or_else(|| url_text.clone());
        self.target_from_parts(table, path, name, url_text, parsed, d)
    }

    fn target_from_parts(
        &mut self,
        table: &Table,
        path: &str,
        name: String,
        url: String,
        parsed: ParsedUrl,
        d: Defaults,
    ) -> Option<TargetSpec> {
        let is_ws = parsed.scheme != Scheme::Tcp;
        if !is_ws {
            for &key in WS_ONLY_KEYS {
                if table.contains_key(key) {
                    self.problem(join(path, key), "only applies to ws:// and wss:// targets");
                }
            }
        }
        if parsed.scheme != Scheme::Wss && table.contains_key("tls") {
            self.problem(join(path, "tls"), "only applies to wss:// targets");
        }
        if parsed.scheme != Scheme::Tcp && table.contains_key("probe") {
            self.problem(
                join(path, "probe"),
                "only applies to tcp:// targets (WebSocket targets use ping frames)",
            );
        }

        let mut headers = Vec::new();
        if let Some(h) = self.table(table, path, "headers") {
            let hpath = join(path, "headers");
            for (hname, value) in h {
                let field = join(&hpath, hname);
                if !is_token(hname) {
                    self.problem(&field, "not a valid HTTP header name");
                    continue;
                }
                if RESERVED_HEADERS.contains(&hname.to_ascii_lowercase().as_str()) {
                    self.problem(
                        &field,
                        "set by the handshake itself (use origin / subprotocols for those)",
                    );
                    continue;
                }
                let Some(raw) = value.as_str() else {
                    self.problem(&field, format!("expected a string, found {}", value.type_str()));
                    continue;
                };
                let expanded = self.expand_env(&field, raw);
                if expanded.contains(['\r', '\n']) {
                    self.problem(&field, "header values must not contain line breaks");
                    continue;
                }
                headers.push((hname.clone(), expanded));
            }
        }
        let origin = self.str(table, path, "origin").map(str::to_string);
        let subprotocols = self.strings(table, path, "subprotocols").unwrap_or_default();
        for (i, sp) in subprotocols.iter().enumerate() {
            if !is_token(sp) {
                self.problem(
                    format!("{}[{i}]", join(path, "subprotocols")),
                    "not a valid subprotocol token",
                );
            }
        }
        let require_subprotocol = self
            .bool(table, path, "require_subprotocol")
            .unwrap_or(!subprotocols.is_empty());
        let mut on_open: Vec<OpenMessage> = self
            .strings(table, path, "on_open")
            .unwrap_or_default()
            .into_iter()
            .map(OpenMessage::Text)
            .collect();
        if let Some(hexes) = self.strings(table, path, "on_open_binary_hex") {
            for (i, h) in hexes.iter().enumerate() {
                match decode_hex(h) {
                    Some(bytes) => on_open.push(OpenMessage::Binary(bytes)),
                    None => self.problem(
                        format!("{}[{i}]", join(path, "on_open_binary_hex")),
                        "not an even-length hex string",
                    ),
                }
            }
        }

        let mut probe = None;
        if let Some(p) = self.table(table, path, "probe") {
            let ppath = join(path, "probe");
            self.check_keys(p, &ppath, &[&["send", "expect"]]);
            let send = self.str(p, &ppath, "send").map(|s| s.as_bytes().to_vec());
            let expect = self.str(p, &ppath, "expect").map(|s| s.as_bytes().to_vec());
            match (send, expect) {
                (Some(send), Some(expect)) if !send.is_empty() && !expect.is_empty() => {
                    if expect.len() > 1024 {
                        self.problem(join(&ppath, "expect"), "longer than 1024 bytes");
                    }
                    probe = Some(Probe { send, expect });
                }
                _ => self.problem(&ppath, "needs non-empty send and expect strings"),
            }
        }

        let mut tls_spec = None;
        if parsed.scheme == Scheme::Wss {
            let mut opts = TlsOptions::default();
            if let Some(t) = self.table(table, path, "tls") {
                let tpath = join(path, "tls");
                self.check_keys(
                    t,
                    &tpath,
                    &[&[
                        "ca_file",
                        "client_cert",
                        "client_key",
                        "server_name",
                        "insecure_skip_verify",
                    ]],
                );
                opts.ca_file = self.str(t, &tpath, "ca_file").map(Into::into);
                opts.client_cert = self.str(t, &tpath, "client_cert").map(Into::into);
                opts.client_key = self.str(t, &tpath, "client_key").map(Into::into);
                opts.server_name = self.str(t, &tpath, "server_name").map(str::to_string);
                opts.insecure_skip_verify = self.bool(t, &tpath, "insecure_skip_verify").unwrap_or(false);
                if opts.client_cert.is_some() != opts.client_key.is_some() {
                    self.problem(&tpath, "client_cert and client_key go together");
                }
            }
            let server_name = opts.server_name.clone().unwrap_or_else(|| parsed.host.clone());
            match tls::build(&opts, &server_name) {
                Ok(spec) => {
                    tls_spec = Some(TlsSpec {
                        config: spec.0,
                        server_name: spec.1,
                    })
                }
                Err(msg) => self.problem(join(path, "tls"), msg),
            }
        }

        let has_probe = probe.is_some();
        let idle_timeout = d.idle_timeout.unwrap_or_else(|| idle_default(parsed.scheme, has_probe));
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (table.to_string(), &name, &url, format!("{d:?}"), &headers).hash(&mut h);
            h.finish()
        };
        Some(TargetSpec {
            name,
            url,
            scheme: parsed.scheme,
            host: parsed.host,
            port: parsed.port,
            host_header: parsed.host_header,
            connections: d.connections,
            timing: Timing {
                ping_interval: if is_ws || has_probe { d.ping_interval } else { None },
                pong_timeout: d.pong_timeout,
                idle_timeout,
                connect_timeout: d.connect_timeout,
                handshake_timeout: d.handshake_timeout,
                close_timeout: d.close_timeout,
                backoff: d.backoff,
            },
            ws: WsOptions {
                path: parsed.path,
                origin,
                subprotocols,
                require_subprotocol,
                headers,
                on_open,
                max_message_size: d.max_message_size,
                max_frame_size: d.max_frame_size,
                echo: false,
            },
            tls: tls_spec,
            probe,
            socket: SocketOptions {
                keepalive: d.keepalive,
                user_timeout: d.user_timeout,
            },
            fingerprint,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub host_header: String,
    pub path: String,
}

/// Parses `ws://`, `wss://` and `tcp://host:port` URLs.
pub fn parse_target_url(text: &str) -> Result<ParsedUrl, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a valid URL: {e}"))?;
    let scheme = match url.scheme() {
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        "tcp" => Scheme::Tcp,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in {text:?} (use ws://, wss:// or tcp://)"
            ))
        }
    };
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(format!("{text:?} has no host")),
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?}: put credentials in headers, not in the URL"));
    }
    let default_port = match scheme {
        Scheme::Ws => Some(80),
        Scheme::Wss => Some(443),
        Scheme::Tcp => None,
    };
    let port = match url.port().or(default_port) {
        Some(p) if p != 0 => p,
        Some(_) => return Err(format!("{text:?}: port 0 is not connectable")),
        None => return Err(format!("{text:?}: tcp:// targets need a port")),
    };
    if scheme == Scheme::Tcp && !(url.path().is_empty() || url.path() == "/") {
        return Err(format!("{text:?}: tcp:// targets take no path"));
    }
    if url.fragment().is_some() {
        return Err(format!("{text:?}: URL fragments are not allowed in WebSocket URLs"));
    }
    let host_for_header = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.clone(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host_for_header}:{p}"),
        None => host_for_header,
    };
    let mut path = if url.path().is_empty() {
        "/".to_string()
    } else {
        url.path().to_string()
    };
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(ParsedUrl {
        scheme,
        host,
        port,
        host_header,
        path,
    })
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        problems: vec![Problem {
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(&text, &name, &[], &|k| std::env::var(k).ok())
}

/// Validates config text plus extra `--target` URLs.
pub fn parse(
    text: &str,
    source_name: &str,
    extra_urls: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        source_name: source_name.to_string(),
        problems,
    };
    let doc: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            let field = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(syntax)".into());
            return Err(fail(vec![Problem {
                field,
                message: e.message().to_string(),
            }]));
        }
    };
    let mut w = Walker {
        problems: Vec::new(),
        env,
    };
    w.check_keys(&doc, "", &[TOP_KEYS]);

    let mut defaults = Defaults::default();
    if let Some(t) = w.table(&doc, "", "defaults") {
        w.check_keys(t, "defaults", &[DEFAULT_KEYS]);
        defaults = w.read_defaults(t, "defaults", &defaults);
        w.check_timing("defaults", &defaults);
    }

    let mut web = WebConfig {
        listen_address: DEFAULT_LISTEN_ADDRESS.to_string(),
        echo_endpoint: true,
    };
    if let Some(t) = w.table(&doc, "", "web") {
        w.check_keys(t, "web", &[&["listen_address", "echo_endpoint"]]);
        if let Some(a) = w.str(t, "web", "listen_address") {
            web.listen_address = a.to_string();
        }
        if let Some(b) = w.bool(t, "web", "echo_endpoint") {
            web.echo_endpoint = b;
        }
    }

    let mut kernel = KernelConfig::default();
    if let Some(t) = w.table(&doc, "", "kernel") {
        w.check_keys(
            t,
            "kernel",
            &[&[
                "scan_interval",
                "watch_ports",
                "close_wait_age_alert",
                "stuck_send_queue_bytes",
                "netns_pid",
                "method",
            ]],
        );
        if let Some(v) = w.optional_duration(t, "kernel", "scan_interval") {
            kernel.scan_interval = v;
        }
        if let Some(v) = w.duration(t, "kernel", "close_wait_age_alert") {
            kernel.close_wait_age_alert = v;
        }
        if let Some(n) = w.int(t, "kernel", "stuck_send_queue_bytes", 1, i64::from(u32::MAX)) {
            kernel.stuck_send_queue_bytes = n as u32;
        }
        if let Some(n) = w.int(t, "kernel", "netns_pid", 1, i64::from(u32::MAX)) {
            kernel.netns_pid = Some(n as u32);
        }
        if let Some(text) = w.str(t, "kernel", "method") {
            match ScanMethod::from_label(text) {
                Some(m) => kernel.method = m,
                None => w.problem("kernel.method", format!("{text:?} is not one of auto, netlink, procfs")),
            }
        }
        if kernel.method == ScanMethod::Netlink && kernel.netns_pid.is_some() {
            w.problem(
                "kernel.method",
                "netlink reads only our own namespace: use \"procfs\" or \"auto\" with netns_pid",
            );
        }
        match t.get("watch_ports") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_integer() {
                        Some(p) if (1..=65535).contains(&p) => kernel.watch_ports.push(p as u16),
                        _ => w.problem(format!("kernel.watch_ports[{i}]"), "expected a port number 1..=65535"),
                    }
                }
                if kernel.watch_ports.len() > 64 {
                    w.problem("kernel.watch_ports", "at most 64 ports (each is a label value)");
                }
            }
            Some(other) => w.problem(
                "kernel.watch_ports",
                format!("expected an array of ports, found {}", other.type_str()),
            ),
        }
    }

    let mut targets = Vec::new();
    match doc.get("target") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("target[{i}]");
                match item {
                    Value::Table(t) => {
                        if let Some(spec) = w.read_target(t, &path, &defaults) {
                            targets.push(spec);
                        }
                    }
                    other => w.problem(path, format!("expected a table, found {}", other.type_str())),
                }
            }
        }
        Some(other) => w.problem(
            "target",
            format!("expected [[target]] tables, found {}", other.type_str()),
        ),
    }
    let empty = Table::new();
    for (i, url) in extra_urls.iter().enumerate() {
        let path = format!("--target[{i}]");
        match parse_target_url(url) {
            Ok(parsed) => {
                w.check_timing(&path, &defaults);
                if let Some(spec) =
                    w.target_from_parts(&empty, &path, url.clone(), url.clone(), parsed, defaults.clone())
                {
                    targets.push(spec);
                }
            }
            Err(msg) => w.problem(path, msg),
        }
    }

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        if let Some(first) = seen.insert(t.name.as_str(), i) {
            w.problem(
                format!("target[{i}].name"),
                format!("{:?} is already used by target[{first}]", t.name),
            );
        }
    }

    if w.problems.is_empty() {
        Ok(Config {
            targets: targets.into_iter().map(Arc::new).collect(),
            web,
            kernel,
        })
    } else {
        Err(fail(w.problems))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// RFC 7230 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(text: &str) -> Config {
        parse(text, "test.toml", &[], &no_env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<Problem> {
        parse(text, "test.toml", &[], &no_env)
            .expect_err("should fail")
            .problems
    }

    fn fields(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn full_example_parses_with_defaults_and_overrides() {
        let cfg = parse(
            r#"
            [defaults]
            ping_interval = "2s"
            pong_timeout = "1s"
            backoff = { min = "100ms", max = "5s" }

            [[target]]
            name = "quotes"
            url = "ws://[::1]:8080/stream?x=1"
            connections = 4
            headers = { Authorization = "Bearer ${TOKEN}" }
            origin = "https://example.net"
            subprotocols = ["v2"]
            on_open = ['{"op":"subscribe"}']
            idle_timeout = "off"

            [[target]]
            url = "tcp://127.0.0.1:6379"
            probe = { send = "PING\r\n", expect = "+PONG" }
            "#,
            "t",
            &["ws://localhost:9/".into()],
            &|k| (k == "TOKEN").then(|| "s3cret".to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.targets.len(), 3);
        let q = &cfg.targets[0];
        assert_eq!(q.name, "quotes");
        assert_eq!(
            (q.host.as_str(), q.port, q.host_header.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        assert_eq!(q.ws.path, "/stream?x=1");
        assert_eq!(q.connections, 4);
        assert_eq!(
            q.ws.headers,
            vec![("Authorization".to_string(), "Bearer s3cret".to_string())]
        );
        assert!(q.ws.require_subprotocol);
        assert_eq!(q.timing.ping_interval, Some(Duration::from_secs(2)));
        assert_eq!(q.timing.idle_timeout, None);
        assert_eq!(q.timing.backoff.max, Duration::from_secs(5));
        let r = &cfg.targets[1];
        assert_eq!(r.name, "tcp://127.0.0.1:6379");
        assert_eq!(r.probe.as_ref().map(|p| p.send.clone()), Some(b"PING\r\n".to_vec()));
        assert_eq!(r.timing.idle_timeout, Some(Duration::from_secs(60)));
        let extra = &cfg.targets[2];
        assert_eq!((extra.port, extra.timing.pong_timeout), (9, Duration::from_secs(1)));
    }

    #[test]
    fn tcp_without_probe_has_no_pings_and_no_idle_timeout_by_default() {
        let cfg = parse_ok("[[target]]\nurl = \"tcp://db:5432\"\n");
        assert_eq!(cfg.targets[0].timing.ping_interval, None);
        assert_eq!(cfg.targets[0].timing.idle_timeout, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let f = fields(
            r#"
            bogus = 1
            [defaults]
            ping_interval = "5s"
            pong_timeout = "5s"
            [[target]]
            url = "http://x/"
            [[target]]
            url = "ws://ok/"
            idle_timeout = "soon"
            colour = "red"
            connections = 0
            headers = { Host = "x", "Bad Name" = "y" }
            [[target]]
            name = "no url"
            [[target]]
            url = "tcp://h"
            "#,
        );
        for expected in [
            "bogus",
            "defaults.pong_timeout",
            "target[0].url",
            "target[1].idle_timeout",
            "target[1].colour",
            "target[1].connections",
            "target[1].headers.Host",
            "target[1].headers.Bad Name",
            "target[2].url",
            "target[3].url",
        ] {
            assert!(f.contains(&expected.to_string()), "missing {expected} in {f:?}");
        }
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, needle) in [
            ("ftp://x/", "unsupported scheme"),
            ("ws://", "not a valid URL"),
            ("tcp://h", "need a port"),
            ("tcp://h:1/path", "no path"),
            ("ws://u:p@h/", "credentials"),
            ("ws://h:0/", "port 0"),
            ("ws://h/#frag", "fragments"),
            ("not a url", "not a valid URL"),
        ] {
            let err = parse_target_url(url).expect_err(url);
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn scheme_specific_keys_are_rejected_elsewhere() {
        let f = fields("[[target]]\nurl = \"tcp://h:1\"\nsubprotocols = [\"x\"]\ntls = {}\n[[target]]\nurl = \"ws://h/\"\nprobe = { send = \"a\", expect = \"b\" }\n");
        assert_eq!(f, vec!["target[0].subprotocols", "target[0].tls", "target[1].probe"]);
    }

    #[test]
    fn missing_env_var_and_duplicate_names_are_problems() {
        let p = problems(
            "[[target]]\nurl = \"ws://h/\"\nheaders = { X-Token = \"${NOPE}\" }\n[[target]]\nurl = \"ws://h/\"\n",
        );
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("target[0].headers.X-Token") && t.contains("NOPE")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.starts_with("target[1].name")), "{text:?}");
    }

    #[test]
    fn kernel_section_is_validated() {
        let cfg =
            parse_ok("[kernel]\nscan_interval = \"2s\"\nwatch_ports = [8080, 6379]\nclose_wait_age_alert = \"1m\"\n");
        assert_eq!(cfg.kernel.scan_interval, Some(Duration::from_secs(2)));
        assert_eq!(cfg.kernel.watch_ports, vec![8080, 6379]);
        assert_eq!(cfg.kernel.close_wait_age_alert, Duration::from_secs(60));
        assert_eq!(
            parse_ok("[kernel]\nscan_interval = \"off\"\n").kernel.scan_interval,
            None
        );
        let f = fields("[kernel]\nwatch_ports = [0, 70000, \"x\"]\nnetns_pid = -1\nbogus = 1\n");
        assert_eq!(
            f,
            vec![
                "kernel.bogus",
                "kernel.netns_pid",
                "kernel.watch_ports[0]",
                "kernel.watch_ports[1]",
                "kernel.watch_ports[2]"
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = problems("[defaults]\nping_interval = \n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "line 2");
    }

    #[test]
    fn wss_with_missing_ca_file_is_a_problem() {
        let p = problems("[[target]]\nurl = \"wss://h/\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n");
        assert_eq!(p[0].field, "target[0].tls");
        assert!(p[0].message.contains("/nonexistent/ca.pem"), "{}", p[0].message);
    }
}
