//! The host TCP table scan on its own thread, exported as metrics, so that
//! reading a table of 100k sockets never delays a ping on the session loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::KernelConfig;
use crate::kernel::host::{self, CloseWaitTracker, HostSummary};
use crate::kernel::owned::{self, Owned, OwnedRegistry};
use crate::kernel::scan::{self, Focus, ScanMethod};
use crate::kernel::snmp::{self, CurrEstab};
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
fn export_owned(
    m: &Metrics,
    registry: &OwnedRegistry,
    before: &HashMap<u64, Owned>,
    table: &[SocketEntry],
    own_listed: bool,
) {
    let names = registry.target_names();
    let view = owned::join(before, table, &names, own_listed);
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
        let mut reader = Reader::new(method, ns, cfg.watch_ports.clone());
        loop {
            let before = owned_src.as_ref().map(|r| r.snapshot());
            let started = Instant::now();
            let result = reader.read(before.as_ref()).map(|table| {
                let summary = host::summarize(
                    &table.entries,
                    table.unlisted_established,
                    &cfg,
                    &mut tracker,
                    Instant::now(),
                );
                (table, summary)
            });
            match result {
                Ok((table, summary)) => {
                    if failing {
                        log::info!("host TCP table readable again");
                        failing = false;
                    }
                    export(&metrics, &summary, started.elapsed(), table.method);
                    if let (Some(src), Some(before)) = (&owned_src, &before) {
                        export_owned(&metrics, src, before, &table.entries, table.own_listed);
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

/// Filtered scans list our own ESTABLISHED sockets once in this many: in
/// between, the agent's sockets that are not listed are ESTABLISHED, and
/// only a listing can tell one the kernel dropped (`Mismatch::Gone`, which
/// the loop itself sees at once from the socket in all but a race).
const OWN_LISTING_EVERY: u32 = 12;

/// Scans that try to calibrate `CurrEstab` before filtered reads are given
/// up (a host opening and closing connections all the time blurs it; the
/// agent's own connect storm at start does too).
const CALIBRATION_TRIES: u32 = 10;

/// How the scan thread reads the table: filtered where it can (`auto` or
/// `filtered` in our own namespace, once the kernel's counter is
/// calibrated), else as `scan::read_table` does.
struct Reader {
    method: ScanMethod,
    ns: Namespace,
    watch_ports: Vec<u16>,
    /// What `CurrEstab` counts, once known.
    counts: Option<CurrEstab>,
    /// Calibrations still to try (0: filtered reads are off).
    tries_left: u32,
    scans: u32,
}

impl Reader {
    fn new(method: ScanMethod, ns: Namespace, watch_ports: Vec<u16>) -> Reader {
        let wants_filtered = matches!(method, ScanMethod::Auto | ScanMethod::Filtered) && ns == Namespace::Own;
        Reader {
            method,
            ns,
            watch_ports,
            counts: None,
            tries_left: if wants_filtered { CALIBRATION_TRIES } else { 0 },
            scans: 0,
        }
    }

    /// What `CurrEstab` counts, calibrating (once per scan) until known.
    fn counts(&mut self) -> Option<CurrEstab> {
        if self.counts.is_none() && self.tries_left > 0 {
            self.tries_left -= 1;
            match snmp::calibrate() {
                Ok(counts) => self.counts = Some(counts),
                Err(e) if self.tries_left == 0 => {
                    log::info!("host scans list every socket: cannot tell what CurrEstab counts ({e})")
                }
                Err(e) => log::debug!("CurrEstab calibration: {e}; trying again next scan"),
            }
        }
        self.counts
    }

    fn read(&mut self, owned: Option<&HashMap<u64, Owned>>) -> std::io::Result<scan::Table> {
        if let Some(counts) = self.counts() {
            let list_own = self.scans % OWN_LISTING_EVERY == 0;
            self.scans = self.scans.wrapping_add(1);
            let owned = owned.filter(|_| list_own);
            let mut own_ports: Vec<u16> = owned.into_iter().flat_map(|o| o.values().map(|o| o.port)).collect();
            own_ports.sort_unstable();
            own_ports.dedup();
            let focus = Focus {
                watch_ports: self.watch_ports.clone(),
                own_ports,
            };
            match scan::read_filtered(&focus, counts) {
                Ok(table) => return Ok(table),
                // Auto falls back below; an explicit choice reports it.
                Err(e) if self.method == ScanMethod::Filtered => return Err(e),
                Err(e) => log::debug!("filtered scan failed ({e}); reading the whole table"),
            }
        }
        let (entries, method) = scan::read_table(self.method, self.ns)?;
        Ok(scan::Table {
            entries,
            method,
            unlisted_established: 0,
            own_listed: true,
        })
    }
}
