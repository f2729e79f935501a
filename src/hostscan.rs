//! The host TCP table scan on its own thread, exported as metrics, so that
//! reading a table of 100k sockets never delays a ping on the session loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::KernelConfig;
use crate::kernel::host::{self, CloseWaitTracker, HostSummary};
use crate::kernel::owned::{self, Owned, OwnedRegistry};
use crate::kernel::scan::{self, ScanMethod};
use crate::kernel::table::{Namespace, SocketEntry};
use crate::kernel::TcpState;
use crate::metrics::{Metrics, Queue};

pub fn export(m: &Metrics, s: &HostSummary, elapsed: Duration, method: ScanMethod) {
    m.kernel_scan_duration
        .with_label_values(&[method.as_str()])
        .observe(elapsed.as_secs_f64());
    for (port, p) in &s.ports {
        // Every state, so a state that emptied reads 0 rather than its last value.
        for state in TcpState::ALL {
            let n = p.by_state.get(state.as_str()).copied().unwrap_or(0);
            m.tcp_sockets.with_label_values(&[state.as_str(), port]).set(n as i64);
        }
        m.tcp_queue_bytes
            .with_label_values(&[port, Queue::Send.as_str()])
            .set(p.tx_queue_bytes as i64);
        m.tcp_queue_bytes
            .with_label_values(&[port, Queue::Receive.as_str()])
            .set(p.rx_queue_bytes as i64);
        m.tcp_listen_queue.with_label_values(&[port]).set(p.listen_queue as i64);
        match p.listen_queue_ratio {
            Some(r) => m.tcp_listen_queue_ratio.with_label_values(&[port]).set(r),
            None => {
                let _ = m.tcp_listen_queue_ratio.remove_label_values(&[port]);
            }
        }
        m.tcp_close_wait_oldest_age
            .with_label_values(&[port])
            .set(p.close_wait_oldest_seconds);
        m.tcp_close_wait_over_age
            .with_label_values(&[port])
            .set(p.close_wait_over_age as i64);
    }
    m.tcp_time_wait_port_ratio.set(s.time_wait_port_ratio);
}

/// Joins the agent's sockets with the table and exports the result. Only
/// counts a disagreement the registry still confirms after the table was
/// read, so a session closing mid-scan is not mistaken for a lost socket.
fn export_owned(m: &Metrics, registry: &OwnedRegistry, before: &HashMap<u64, Owned>, table: &[SocketEntry]) {
    let names = registry.target_names();
    let view = owned::join(before, table, &names);
    for (id, states) in &view.by_target {
        let Some(name) = names.get(*id) else { continue };
        for state in TcpState::ALL {
            let n = states.get(&state).copied().unwrap_or(0);
            m.session_kernel_state
                .with_label_values(&[name, state.as_str()])
                .set(n as i64);
        }
    }
    for (target, inode, kind) in view.mismatches {
        let Some(name) = names.get(target) else { continue };
        if registry.get(inode).is_some_and(|o| o.open) {
            m.kernel_mismatches.with_label_values(&[name, kind.as_str()]).inc();
            log::warn!(
                "target={name}: a session the agent thinks open is {} in the kernel (inode {inode})",
                kind.as_str()
            );
        }
    }
}

/// Scans every `interval` until the process ends.
pub fn spawn(
    k: &KernelConfig,
    interval: Duration,
    metrics: Arc<Metrics>,
    owned_src: Option<Arc<OwnedRegistry>>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let cfg = k.host_config();
    let ns = k.namespace();
    let method = k.method;
    // Our own sockets live in our namespace; another one's table has none.
    let owned_src = owned_src.filter(|_| ns == Namespace::Own);
    thread::Builder::new().name("sockpulse-kernel".into()).spawn(move || {
        let mut tracker = CloseWaitTracker::default();
        let mut failing = false;
        loop {
            let before = owned_src.as_ref().map(|r| r.snapshot());
            let started = Instant::now();
            let result = scan::read_table(method, ns).map(|(entries, used)| {
                let summary = host::summarize(&entries, &cfg, &mut tracker, Instant::now());
                (entries, summary, used)
            });
            match result {
                Ok((entries, summary, used)) => {
                    if failing {
                        log::info!("host TCP table readable again");
                        failing = false;
                    }
                    export(&metrics, &summary, started.elapsed(), used);
                    if let (Some(src), Some(before)) = (&owned_src, &before) {
                        export_owned(&metrics, src, before, &entries);
                    }
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
