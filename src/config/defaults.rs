//! The settings `[defaults]` provides and each target may override: timers,
//! backoff, size limits and socket options, read and checked together.

use std::time::Duration;

use toml::Table;

use super::proxy::{self, ProxySetting};
use super::walker::{join, Walker};
use crate::session::spec::{Keepalive, Scheme, SocketOptions, Timing};

/// Upper bound on sessions per target: each is a socket and a file descriptor.
pub const MAX_CONNECTIONS_PER_TARGET: i64 = 10_000;

/// The keys of this module, valid in `[defaults]` and in every target.
pub(super) const KEYS: &[&str] = &[
    "connections",
    "max_connecting",
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
    "message_timeout",
    "close",
    "proxy",
];

#[derive(Debug, Clone)]
pub(super) struct Defaults {
    pub connections: u32,
    pub max_connecting: u32,
    /// Every timer but the idle timeout, which is `idle_timeout` below.
    pub timing: Timing,
    /// As configured (`Some(None)`: off); unset, each target decides (see
    /// `idle_timeout_for`).
    pub idle_timeout: Option<Option<Duration>>,
    pub max_message_size: usize,
    pub socket: SocketOptions,
    pub proxy: ProxySetting,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            connections: 1,
            max_connecting: crate::session::spec::DEFAULT_MAX_CONNECTING,
            timing: Timing::default(),
            idle_timeout: None,
            max_message_size: 1 << 20,
            socket: SocketOptions::default(),
            proxy: ProxySetting::Off,
        }
    }
}

impl Defaults {
    /// The idle timeout of a target: as configured, else 60 s when anything
    /// is probed, else none (a plain TCP target may legitimately stay silent).
    pub fn idle_timeout_for(&self, scheme: Scheme, has_probe: bool) -> Option<Duration> {
        self.idle_timeout.unwrap_or(match (scheme, has_probe) {
            (Scheme::Tcp, false) => None,
            _ => Timing::default().idle_timeout,
        })
    }
}

/// `base` with what `table` (at `path`) overrides.
pub(super) fn read(w: &mut Walker<'_>, table: &Table, path: &str, base: &Defaults) -> Defaults {
    let mut d = base.clone();
    if let Some(n) = w.int(table, path, "connections", 1, MAX_CONNECTIONS_PER_TARGET) {
        d.connections = n as u32;
    }
    if let Some(n) = w.int(table, path, "max_connecting", 1, MAX_CONNECTIONS_PER_TARGET) {
        d.max_connecting = n as u32;
    }
    if let Some(v) = w.optional_duration(table, path, "ping_interval") {
        d.timing.ping_interval = v;
    }
    if let Some(v) = w.duration(table, path, "pong_timeout") {
        d.timing.pong_timeout = v;
    }
    if let Some(v) = w.optional_duration(table, path, "idle_timeout") {
        d.idle_timeout = Some(v);
    }
    for (key, slot) in [
        ("connect_timeout", &mut d.timing.connect_timeout),
        ("handshake_timeout", &mut d.timing.handshake_timeout),
        ("close_timeout", &mut d.timing.close_timeout),
    ] {
        if let Some(v) = w.duration(table, path, key) {
            *slot = v;
        }
    }
    if let Some(b) = w.table(table, path, "backoff") {
        let bpath = join(path, "backoff");
        w.check_keys(b, &bpath, &[&["min", "max", "reset_after"]]);
        let backoff = &mut d.timing.backoff;
        for (key, slot) in [
            ("min", &mut backoff.min),
            ("max", &mut backoff.max),
            ("reset_after", &mut backoff.reset_after),
        ] {
            if let Some(v) = w.duration(b, &bpath, key) {
                *slot = v;
            }
        }
    }
    if let Some(n) = w.int(table, path, "max_message_size", 125, 1 << 30) {
        d.max_message_size = n as usize;
    }
    // Frames are streamed, whatever their size: the key has no effect.
    if w.int(table, path, "max_frame_size", 125, 1 << 30).is_some() {
        log::warn!(
            "{}: max_frame_size has no effect (frames are streamed, never held); remove it",
            join(path, "max_frame_size")
        );
    }
    if table.get("tcp_keepalive").is_some_and(|v| v.as_str() == Some("off")) {
        d.socket.keepalive = None;
    } else if let Some(k) = w.table(table, path, "tcp_keepalive") {
        let kpath = join(path, "tcp_keepalive");
        w.check_keys(k, &kpath, &[&["idle", "interval", "count"]]);
        let idle = w.duration(k, &kpath, "idle").unwrap_or(Duration::from_secs(30));
        let interval = w.duration(k, &kpath, "interval").unwrap_or(Duration::from_secs(10));
        let count = w.int(k, &kpath, "count", 1, 127).unwrap_or(3) as u32;
        d.socket.keepalive = Some(Keepalive { idle, interval, count });
    }
    if let Some(v) = w.optional_duration(table, path, "tcp_user_timeout") {
        d.socket.user_timeout = v;
    }
    if let Some(v) = w.optional_duration(table, path, "message_timeout") {
        d.timing.message_timeout = v;
    }
    if let Some(setting) = proxy::read(w, table, path) {
        d.proxy = setting;
    }
    match w.str(table, path, "close") {
        None => {}
        Some("clean") => d.socket.reset_on_close = false,
        Some("rst") => d.socket.reset_on_close = true,
        Some(other) => w.problem(
            join(path, "close"),
            format!("unknown close {other:?}: expected \"clean\" or \"rst\""),
        ),
    }
    d
}

/// Settings that contradict each other.
pub(super) fn check(w: &mut Walker<'_>, path: &str, d: &Defaults) {
    let t = &d.timing;
    if let Some(interval) = t.ping_interval {
        if t.pong_timeout >= interval {
            w.problem(
                join(path, "pong_timeout"),
                format!(
                    "pong_timeout ({}) must be shorter than ping_interval ({})",
                    humantime::format_duration(t.pong_timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
    }
    if t.backoff.min > t.backoff.max {
        w.problem(join(path, "backoff"), "backoff.min must not exceed backoff.max");
    }
}
