//! The agent-wide sections: `[web]` (the HTTP endpoint) and `[kernel]`
//! (the host-wide TCP table scan).

use std::time::Duration;

use toml::{Table, Value};

use super::walker::Walker;
use crate::kernel::host::{self, HostConfig};
use crate::kernel::scan::ScanMethod;
use crate::kernel::table::Namespace;

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9747";
/// Each watched port is a label value.
const MAX_WATCH_PORTS: usize = 64;

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen_address: String,
    /// Serve the built-in WebSocket echo endpoint at `/ws`.
    pub echo_endpoint: bool,
    /// Connections the HTTP endpoint holds at once.
    pub max_connections: usize,
    /// How long a request head may take to arrive.
    pub header_timeout: Duration,
    /// Clients of /api/v1/stream at once.
    pub max_stream_clients: usize,
    /// Clients of the `/ws` echo at once.
    pub max_echo_clients: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: DEFAULT_LISTEN_ADDRESS.to_string(),
            echo_endpoint: true,
            max_connections: 1024,
            header_timeout: Duration::from_secs(5),
            max_stream_clients: 512,
            max_echo_clients: 256,
        }
    }
}

/// The `[kernel]` section: the host-wide TCP table scan.
#[derive(Debug, Clone, PartialEq)]
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

pub(super) fn read_web(w: &mut Walker<'_>, t: &Table) -> WebConfig {
    let mut web = WebConfig::default();
    w.check_keys(
        t,
        "web",
        &[&[
            "listen_address",
            "echo_endpoint",
            "max_connections",
            "header_timeout",
            "max_stream_clients",
            "max_echo_clients",
        ]],
    );
    if let Some(a) = w.str(t, "web", "listen_address") {
        web.listen_address = a.to_string();
    }
    if let Some(b) = w.bool(t, "web", "echo_endpoint") {
        web.echo_endpoint = b;
    }
    if let Some(n) = w.int(t, "web", "max_connections", 1, 100_000) {
        web.max_connections = n as usize;
    }
    if let Some(d) = w.duration(t, "web", "header_timeout") {
        web.header_timeout = d;
    }
    if let Some(n) = w.int(t, "web", "max_stream_clients", 0, 100_000) {
        web.max_stream_clients = n as usize;
    }
    if let Some(n) = w.int(t, "web", "max_echo_clients", 0, 100_000) {
        web.max_echo_clients = n as usize;
    }
    web
}

pub(super) fn read_kernel(w: &mut Walker<'_>, t: &Table) -> KernelConfig {
    let mut kernel = KernelConfig::default();
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
            None => w.problem(
                "kernel.method",
                format!("{text:?} is not one of auto, filtered, netlink, procfs"),
            ),
        }
    }
    if matches!(kernel.method, ScanMethod::Netlink | ScanMethod::Filtered) && kernel.netns_pid.is_some() {
        w.problem(
            "kernel.method",
            "netlink reads only our own namespace: use \"procfs\" or \"auto\" with netns_pid",
        );
    }
    kernel.watch_ports = read_watch_ports(w, t);
    kernel
}

fn read_watch_ports(w: &mut Walker<'_>, t: &Table) -> Vec<u16> {
    let mut ports = Vec::new();
    match t.get("watch_ports") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_integer() {
                    Some(p) if (1..=65535).contains(&p) => ports.push(p as u16),
                    _ => w.problem(format!("kernel.watch_ports[{i}]"), "expected a port number 1..=65535"),
                }
            }
            if ports.len() > MAX_WATCH_PORTS {
                w.problem(
                    "kernel.watch_ports",
                    format!("at most {MAX_WATCH_PORTS} ports (each is a label value)"),
                );
            }
        }
        Some(other) => w.problem(
            "kernel.watch_ports",
            format!("expected an array of ports, found {}", other.type_str()),
        ),
    }
    ports
}
