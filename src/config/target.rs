//! One `[[target]]` (or `--target` URL) read into a validated target, by
//! small readers for each group of keys: WebSocket options, the TCP probe
//! and the TLS settings. TLS configurations are built later (`resolve`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use toml::Table;

use super::defaults::{self, Defaults};
use super::protocol;
use super::proxy::{self, ProxySetting};
use super::tls::TlsOptions;
use super::url::{parse_target_url, ParsedUrl};
use super::walker::{join, Walker};
use crate::session::secrets;
use crate::session::spec::{Endpoints, DEFAULT_IDLE_DISCOVERY_MAX, DEFAULT_MAX_ENDPOINTS, DEFAULT_RESOLVE_INTERVAL};
use crate::session::spec::{OpenMessage, Probe, Protocol, Scheme, TargetSpec, WsOptions};

pub(super) const TARGET_ONLY_KEYS: &[&str] = &[
    "name",
    "url",
    "probe",
    "tls",
    "endpoints",
    "resolve_interval",
    "max_endpoints",
    "idle_discovery",
    "srv",
    "labels",
];
/// Label names Prometheus or the agent itself set on every series.
const RESERVED_LABELS: &[&str] = &["target", "instance", "job"];
const MAX_LABELS: usize = 16;
/// Defaults that only mean something for ws:// and wss:// targets.
const WS_ONLY_DEFAULTS: &[&str] = &["message_timeout"];
/// Keys that only mean something for ws:// and wss:// targets.
pub(super) const WS_ONLY_KEYS: &[&str] = &[
    "headers",
    "origin",
    "subprotocols",
    "require_subprotocol",
    "on_open",
    "on_open_binary_hex",
];
const TLS_KEYS: &[&str] = &[
    "ca_file",
    "client_cert",
    "client_key",
    "server_name",
    "insecure_skip_verify",
    "resumption",
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
/// Longest TCP probe answer pattern: the window the core searches is 4 KiB.
const MAX_EXPECT: usize = 1024;

/// A target as configured: validated, with its TLS settings as written.
#[derive(Debug)]
pub(super) struct PlainTarget {
    /// Where it came from (`target[2]`, `--target[0]`), for problems.
    pub field: String,
    /// Everything but `tls`, which `resolve` fills in.
    pub spec: TargetSpec,
    pub tls: Option<PlainTls>,
}

#[derive(Debug)]
pub(super) struct PlainTls {
    pub options: TlsOptions,
    /// The name to verify: `tls.server_name`, else the URL's host.
    pub server_name: String,
}

/// A `[[target]]` table at `path`.
pub(super) fn read(w: &mut Walker<'_>, table: &Table, path: &str, defaults: &Defaults) -> Option<PlainTarget> {
    w.check_keys(
        table,
        path,
        &[defaults::KEYS, TARGET_ONLY_KEYS, WS_ONLY_KEYS, protocol::KEYS],
    );
    let d = defaults::read(w, table, path, defaults);
    defaults::check(w, path, &d);
    let Some(url) = w.str(table, path, "url").map(str::to_string) else {
        if !table.contains_key("url") {
            w.problem(join(path, "url"), "missing (every target needs a url)");
        }
        return None;
    };
    let parsed = match parse_target_url(&url) {
        Ok(p) => p,
        Err(e) => {
            w.problem(join(path, "url"), e.to_string());
            return None;
        }
    };
    let name = w
        .str(table, path, "name")
        .map(str::to_string)
        .unwrap_or_else(|| url.clone());
    build(w, table, path, name, url, parsed, d)
}

/// A target from a `target_files` group: its URL with the group's labels,
/// the options of its module (a table of target keys) and the `[defaults]`.
pub(super) fn from_file(
    w: &mut Walker<'_>,
    path: &str,
    url: &str,
    labels: &[(String, String)],
    module: Table,
    defaults: &Defaults,
) -> Option<PlainTarget> {
    // The module's settings over the `[defaults]`, checked together.
    let d = if module.is_empty() {
        defaults.clone()
    } else {
        let d = defaults::read(w, &module, path, defaults);
        defaults::check(w, path, &d);
        d
    };
    let mut table = module;
    if !labels.is_empty() {
        let mut t = Table::new();
        for (k, v) in labels {
            t.insert(k.clone(), toml::Value::String(v.clone()));
        }
        table.insert("labels".into(), toml::Value::Table(t));
    }
    match parse_target_url(url) {
        Ok(parsed) => build(w, &table, path, url.to_string(), url.to_string(), parsed, d),
        Err(e) => {
            w.problem(path, e.to_string());
            None
        }
    }
}

/// A `--target URL`: the URL with the `[defaults]`.
pub(super) fn from_url(w: &mut Walker<'_>, path: &str, url: &str, defaults: &Defaults) -> Option<PlainTarget> {
    defaults::check(w, path, defaults);
    from_file(w, path, url, &[], Table::new(), defaults)
}

fn build(
    w: &mut Walker<'_>,
    table: &Table,
    path: &str,
    name: String,
    url: String,
    parsed: ParsedUrl,
    d: Defaults,
) -> Option<PlainTarget> {
    check_scheme_keys(w, table, path, parsed.scheme);
    let mut ws = read_ws_options(w, table, path, &parsed.path, &d);
    let is_ws = parsed.scheme != Scheme::Tcp;
    let protocol = if is_ws {
        protocol::read(w, table, path, &mut ws, d.connections)
    } else {
        Protocol::Ws
    };
    let (probe, app_probe) = match w.table(table, path, "probe") {
        None => (None, None),
        Some(p) if !is_ws => (read_probe(w, p, &join(path, "probe")), None),
        Some(p) if matches!(protocol, Protocol::Ws) => (None, protocol::read_probe(w, p, &join(path, "probe"))),
        Some(_) => {
            w.problem(
                join(path, "probe"),
                format!(
                    "{} has a heartbeat of its own: custom probes are for protocol = \"ws\"",
                    protocol.name()
                ),
            );
            (None, None)
        }
    };
    let tls = (parsed.scheme == Scheme::Wss).then(|| {
        let options = read_tls(w, table, path);
        let server_name = options.server_name.clone().unwrap_or_else(|| parsed.host.clone());
        PlainTls { options, server_name }
    });
    let probes = is_ws || probe.is_some();
    let mut timing = d.timing.clone();
    timing.idle_timeout = d.idle_timeout_for(parsed.scheme, probe.is_some());
    if !probes {
        timing.ping_interval = None;
    }
    if !is_ws {
        // From [defaults], it means nothing here; set on the target, it is
        // a problem (see `check_scheme_keys`).
        timing.message_timeout = None;
    }
    let proxy = match &d.proxy {
        ProxySetting::Off => None,
        ProxySetting::Fixed(p) => Some(p.clone()),
        ProxySetting::Env => {
            let env = |name: &str| w.env(name);
            match proxy::from_env(&env, parsed.scheme, &parsed.host) {
                Ok(p) => p,
                Err(e) => {
                    w.problem(join(path, "proxy"), e);
                    None
                }
            }
        }
    };
    let endpoints = read_endpoints(w, table, path, proxy.is_some());
    let idle_discovery = read_idle_discovery(w, table, path, &protocol, is_ws || probe.is_some());
    let mut secret_files = w.take_secret_files();
    // `[defaults]` credentials were read once, before any target.
    for auth in proxy.iter().filter_map(|p| p.auth.as_ref()) {
        for file in secrets::file_refs(&auth.user).chain(secrets::file_refs(&auth.password)) {
            let file = std::path::PathBuf::from(file);
            if !secret_files.contains(&file) {
                secret_files.push(file);
            }
        }
    }
    let labels = read_labels(w, table, path);
    // Labels change no session: a reload that only relabels keeps them.
    let fingerprint = {
        let mut unlabelled = table.clone();
        unlabelled.remove("labels");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            unlabelled.to_string(),
            &name,
            &url,
            format!("{d:?} {proxy:?}"),
            &ws.headers,
        )
            .hash(&mut h);
        h.finish()
    };
    let spec = TargetSpec {
        name,
        url,
        scheme: parsed.scheme,
        host: parsed.host,
        port: parsed.port,
        host_header: parsed.host_header,
        connections: d.connections,
        endpoints,
        idle_discovery,
        max_connecting: d.max_connecting,
        timing,
        ws,
        tls: None,
        probe,
        protocol,
        app_probe,
        socket: d.socket,
        labels,
        proxy,
        secret_files: secret_files.into(),
        fingerprint,
    };
    Some(PlainTarget {
        field: path.to_string(),
        spec,
        tls,
    })
}

/// `labels = { team = "payments" }`: Prometheus label names and values,
/// `${VAR}` expanded; sorted by name.
fn read_labels(w: &mut Walker<'_>, table: &Table, path: &str) -> Vec<(String, String)> {
    let Some(t) = w.table(table, path, "labels") else {
        return Vec::new();
    };
    let lpath = join(path, "labels");
    if t.len() > MAX_LABELS {
        w.problem(&lpath, format!("at most {MAX_LABELS} labels"));
    }
    let mut labels = Vec::new();
    for (name, value) in t {
        let field = join(&lpath, name);
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || name.starts_with("__") {
            w.problem(
                &field,
                "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
            );
            continue;
        }
        if RESERVED_LABELS.contains(&name.as_str()) {
            w.problem(&field, format!("{name:?} is set by Prometheus or the agent itself"));
            continue;
        }
        let Some(raw) = value.as_str() else {
            w.problem(&field, format!("expected a string, found {}", value.type_str()));
            continue;
        };
        let value = w.expand_env(&field, raw);
        if value.len() > 256 || value.contains("${file:") {
            w.problem(&field, "label values are plain strings of at most 256 bytes");
            continue;
        }
        labels.push((name.clone(), value));
    }
    labels.sort();
    labels
}

/// `idle_discovery = { max }`: only where a session can be silent and then
/// probed (plain RFC 6455, or TCP with a probe).
fn read_idle_discovery(
    w: &mut Walker<'_>,
    table: &Table,
    path: &str,
    protocol: &Protocol,
    probes: bool,
) -> Option<Duration> {
    let t = w.table(table, path, "idle_discovery")?;
    let field = join(path, "idle_discovery");
    w.check_keys(t, &field, &[&["max"]]);
    let max = w.duration(t, &field, "max").unwrap_or(DEFAULT_IDLE_DISCOVERY_MAX);
    if !matches!(protocol, Protocol::Ws) {
        w.problem(
            &field,
            format!(
                "{} sends heartbeats of its own: its sessions are never silent",
                protocol.name()
            ),
        );
        return None;
    }
    if !probes {
        w.problem(
            &field,
            "a tcp target needs a probe to tell a silently forgotten connection",
        );
        return None;
    }
    Some(max)
}

/// `endpoints = "all"` with its `resolve_interval` and `max_endpoints`.
fn read_endpoints(w: &mut Walker<'_>, table: &Table, path: &str, proxied: bool) -> Endpoints {
    let srv = w.str(table, path, "srv").map(str::to_string);
    if let Some(name) = &srv {
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            w.problem(
                join(path, "srv"),
                format!("{name:?} is not a DNS name like \"_ws._tcp.example.internal\""),
            );
        }
    }
    let all = match w.str(table, path, "endpoints") {
        // An SRV name stands for many endpoints.
        None => srv.is_some(),
        Some("first") if srv.is_some() => {
            w.problem(join(path, "srv"), "an SRV name means endpoints = \"all\"");
            false
        }
        Some("first") => false,
        Some("all") => true,
        Some(other) => {
            w.problem(
                join(path, "endpoints"),
                format!("unknown endpoints {other:?}: expected \"first\" or \"all\""),
            );
            false
        }
    };
    let interval = w.duration(table, path, "resolve_interval");
    let max = w.int(table, path, "max_endpoints", 1, 1024);
    if !all {
        for key in ["resolve_interval", "max_endpoints"] {
            if table.contains_key(key) {
                w.problem(join(path, key), "only applies with endpoints = \"all\"");
            }
        }
        return Endpoints::First;
    }
    if proxied {
        w.problem(
            join(path, "endpoints"),
            "endpoints = \"all\" resolves the name here: not with a proxy, which reaches the name itself",
        );
    }
    Endpoints::All {
        resolve_interval: interval.unwrap_or(DEFAULT_RESOLVE_INTERVAL),
        max_endpoints: max.map(|n| n as usize).unwrap_or(DEFAULT_MAX_ENDPOINTS),
        srv: srv.map(Arc::from),
    }
}

fn check_scheme_keys(w: &mut Walker<'_>, table: &Table, path: &str, scheme: Scheme) {
    if scheme == Scheme::Tcp {
        for &key in WS_ONLY_KEYS.iter().chain(WS_ONLY_DEFAULTS).chain(protocol::KEYS) {
            if table.contains_key(key) {
                w.problem(join(path, key), "only applies to ws:// and wss:// targets");
            }
        }
    }
    if scheme != Scheme::Wss && table.contains_key("tls") {
        w.problem(join(path, "tls"), "only applies to wss:// targets");
    }
}

fn read_ws_options(w: &mut Walker<'_>, table: &Table, path: &str, url_path: &str, d: &Defaults) -> WsOptions {
    let headers = read_headers(w, table, path);
    let origin = w.str(table, path, "origin").map(str::to_string);
    let subprotocols = w.strings(table, path, "subprotocols").unwrap_or_default();
    for (i, sp) in subprotocols.iter().enumerate() {
        if !is_token(sp) {
            w.problem(
                format!("{}[{i}]", join(path, "subprotocols")),
                "not a valid subprotocol token",
            );
        }
    }
    let require_subprotocol = w
        .bool(table, path, "require_subprotocol")
        .unwrap_or(!subprotocols.is_empty());
    WsOptions {
        path: url_path.to_string(),
        origin,
        subprotocols,
        require_subprotocol,
        headers,
        on_open: read_on_open(w, table, path),
        max_message_size: d.max_message_size,
        echo: false,
    }
}

/// Extra upgrade request headers, `${VAR}` expanded.
fn read_headers(w: &mut Walker<'_>, table: &Table, path: &str) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let Some(h) = w.table(table, path, "headers") else {
        return headers;
    };
    let hpath = join(path, "headers");
    for (hname, value) in h {
        let field = join(&hpath, hname);
        if !is_token(hname) {
            w.problem(&field, "not a valid HTTP header name");
            continue;
        }
        if RESERVED_HEADERS.contains(&hname.to_ascii_lowercase().as_str()) {
            w.problem(
                &field,
                "set by the handshake itself (use origin / subprotocols for those)",
            );
            continue;
        }
        let Some(raw) = value.as_str() else {
            w.problem(&field, format!("expected a string, found {}", value.type_str()));
            continue;
        };
        let expanded = w.expand_env(&field, raw);
        if expanded.contains(['\r', '\n']) {
            w.problem(&field, "header values must not contain line breaks");
            continue;
        }
        headers.push((hname.clone(), expanded));
    }
    headers
}

/// Text messages, then binary (hex) ones, sent right after the upgrade.
fn read_on_open(w: &mut Walker<'_>, table: &Table, path: &str) -> Vec<OpenMessage> {
    let mut on_open: Vec<OpenMessage> = w
        .strings(table, path, "on_open")
        .unwrap_or_default()
        .into_iter()
        .map(OpenMessage::Text)
        .collect();
    if let Some(hexes) = w.strings(table, path, "on_open_binary_hex") {
        for (i, h) in hexes.iter().enumerate() {
            match protocol::decode_hex(h) {
                Some(bytes) => on_open.push(OpenMessage::Binary(bytes)),
                None => w.problem(
                    format!("{}[{i}]", join(path, "on_open_binary_hex")),
                    "not an even-length hex string",
                ),
            }
        }
    }
    on_open
}

/// A TCP target's probe: bytes sent, bytes expected back.
fn read_probe(w: &mut Walker<'_>, p: &Table, ppath: &str) -> Option<Probe> {
    w.check_keys(p, ppath, &[&["send", "expect"]]);
    let send = w.str(p, ppath, "send").map(|s| s.as_bytes().to_vec());
    let expect = w.str(p, ppath, "expect").map(|s| s.as_bytes().to_vec());
    match (send, expect) {
        (Some(send), Some(expect)) if !send.is_empty() && !expect.is_empty() => {
            if expect.len() > MAX_EXPECT {
                w.problem(join(ppath, "expect"), format!("longer than {MAX_EXPECT} bytes"));
            }
            Some(Probe { send, expect })
        }
        _ => {
            w.problem(ppath, "needs non-empty send and expect strings");
            None
        }
    }
}

fn read_tls(w: &mut Walker<'_>, table: &Table, path: &str) -> TlsOptions {
    let mut opts = TlsOptions::default();
    let Some(t) = w.table(table, path, "tls") else {
        return opts;
    };
    let tpath = join(path, "tls");
    w.check_keys(t, &tpath, &[TLS_KEYS]);
    opts.ca_file = w.str(t, &tpath, "ca_file").map(Into::into);
    opts.client_cert = w.str(t, &tpath, "client_cert").map(Into::into);
    opts.client_key = w.str(t, &tpath, "client_key").map(Into::into);
    opts.server_name = w.str(t, &tpath, "server_name").map(str::to_string);
    opts.insecure_skip_verify = w.bool(t, &tpath, "insecure_skip_verify").unwrap_or(false);
    opts.no_resumption = !w.bool(t, &tpath, "resumption").unwrap_or(true);
    if opts.client_cert.is_some() != opts.client_key.is_some() {
        w.problem(&tpath, "client_cert and client_key go together");
    }
    opts
}

/// RFC 7230 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
