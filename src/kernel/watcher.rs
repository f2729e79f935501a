//! The host scan on its own thread, so that reading a table of 100k sockets
//! never delays a ping on the session loop.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::host::{self, CloseWaitTracker, HostConfig, HostSummary};
use super::table::{self, Namespace};
use super::TcpState;
use crate::config::KernelConfig;
use crate::metrics::Metrics;

pub const METHOD_PROCFS: &str = "procfs";

pub fn host_config(k: &KernelConfig) -> HostConfig {
    HostConfig {
        watch_ports: k.watch_ports.clone(),
        close_wait_age_alert: k.close_wait_age_alert,
        stuck_send_queue_bytes: k.stuck_send_queue_bytes,
        ephemeral_range: host::ephemeral_range().unwrap_or(HostConfig::default().ephemeral_range),
    }
}

pub fn namespace(k: &KernelConfig) -> Namespace {
    k.netns_pid.map(Namespace::OfPid).unwrap_or_default()
}

/// One scan: read, summarize. Separate from the thread so `sockets` reuses it.
pub fn scan(
    ns: Namespace,
    cfg: &HostConfig,
    tracker: &mut CloseWaitTracker,
) -> std::io::Result<(HostSummary, Duration)> {
    let started = Instant::now();
    let entries = table::read(ns)?;
    let summary = host::summarize(&entries, cfg, tracker, Instant::now());
    Ok((summary, started.elapsed()))
}

pub fn export(m: &Metrics, s: &HostSummary, elapsed: Duration) {
    m.kernel_scan_duration
        .with_label_values(&[METHOD_PROCFS])
        .observe(elapsed.as_secs_f64());
    for (port, p) in &s.ports {
        // Every state, so a state that emptied reads 0 rather than its last value.
        for state in TcpState::ALL {
            let n = p.by_state.get(state.as_str()).copied().unwrap_or(0);
            m.tcp_sockets.with_label_values(&[state.as_str(), port]).set(n as i64);
        }
        m.tcp_queue_bytes
            .with_label_values(&[port, "send"])
            .set(p.tx_queue_bytes as i64);
        m.tcp_queue_bytes
            .with_label_values(&[port, "receive"])
            .set(p.rx_queue_bytes as i64);
        m.tcp_listen_queue.with_label_values(&[port]).set(p.listen_queue as i64);
        m.tcp_close_wait_oldest_age
            .with_label_values(&[port])
            .set(p.close_wait_oldest_seconds);
        m.tcp_close_wait_over_age
            .with_label_values(&[port])
            .set(p.close_wait_over_age as i64);
    }
    m.tcp_time_wait_port_ratio.set(s.time_wait_port_ratio);
}

/// Scans every `interval` until the process ends.
pub fn spawn(k: &KernelConfig, interval: Duration, metrics: Arc<Metrics>) -> std::io::Result<thread::JoinHandle<()>> {
    let cfg = host_config(k);
    let ns = namespace(k);
    thread::Builder::new().name("sockpulse-kernel".into()).spawn(move || {
        let mut tracker = CloseWaitTracker::default();
        let mut failing = false;
        loop {
            match scan(ns, &cfg, &mut tracker) {
                Ok((summary, elapsed)) => {
                    if failing {
                        log::info!("host TCP table readable again");
                        failing = false;
                    }
                    export(&metrics, &summary, elapsed);
                }
                Err(e) => {
                    metrics.kernel_scan_errors.inc();
                    if !failing {
                        log::warn!("cannot read the host TCP table ({ns:?}): {e}");
                        failing = true;
                    }
                }
            }
            thread::sleep(interval);
        }
    })
}
