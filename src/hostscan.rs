//! The host TCP table scan on its own thread, exported as metrics, so that
//! reading a table of 100k sockets never delays a ping on the session loop.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use crate::clock::Instant;
use crate::config::KernelConfig;
use crate::events::{self, Event, EventKind, SharedEventLog};
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

/// What the scan shares beyond metrics, with the HTTP side.
#[derive(Clone)]
pub struct ScanShare {
    /// The latest summary, its suspicious sockets cut to `SHARED_SUSPICIOUS`.
    pub host: Arc<Mutex<Option<HostSummary>>>,
    pub events: SharedEventLog,
}

/// Suspicious sockets the shared summary keeps (the metrics have counts).
const SHARED_SUSPICIOUS: usize = 50;

/// Ports leaking CLOSE_WAIT and ports whose accept queue is full, as of
/// the last scan: an event goes out when a port enters or leaves a set.
#[derive(Debug, Default)]
pub struct KernelFindings {
    leaking: BTreeSet<String>,
    saturated: BTreeSet<String>,
}

impl KernelFindings {
    /// The events `s` brings against the previous scan.
    pub fn update(&mut self, s: &HostSummary) -> Vec<Event> {
        let mut out = Vec::new();
        let leaking: BTreeSet<String> = s
            .ports
            .iter()
            .filter(|(_, p)| p.close_wait_over_age > 0)
            .map(|(k, _)| k.clone())
            .collect();
        let saturated: BTreeSet<String> = s
            .ports
            .iter()
            .filter(|(_, p)| p.listen_queue_ratio.is_some_and(|r| r >= host::ACCEPT_QUEUE_SATURATED))
            .map(|(k, _)| k.clone())
            .collect();
        for port in leaking.difference(&self.leaking) {
            let p = &s.ports[port];
            out.push(kernel_event(&format!(
                "port {port}: {} CLOSE_WAIT socket(s) past the age alert, the oldest {:.0}s (a process is not closing them)",
                p.close_wait_over_age, p.close_wait_oldest_seconds
            )));
        }
        for port in self.leaking.difference(&leaking) {
            out.push(kernel_event(&format!(
                "port {port}: no CLOSE_WAIT socket past the age alert any more"
            )));
        }
        for port in saturated.difference(&self.saturated) {
            let p = &s.ports[port];
            out.push(kernel_event(&format!(
                "port {port}: accept queue {:.0}% full ({} waiting): the server is not accepting fast enough",
                p.listen_queue_ratio.unwrap_or(0.0) * 100.0,
                p.listen_queue
            )));
        }
        for port in self.saturated.difference(&saturated) {
            out.push(kernel_event(&format!("port {port}: accept queue drained")));
        }
        self.leaking = leaking;
        self.saturated = saturated;
        out
    }
}

fn kernel_event(detail: &str) -> Event {
    Event::new(EventKind::Kernel, "").detail(detail)
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
    share: Option<&ScanShare>,
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
            let line = format!(
                "a session the agent thinks open is {} in the kernel (inode {inode})",
                kind.as_str()
            );
            log::warn!("target={name}: {line}");
            if let Some(share) = share {
                events::record(&share.events, Event::new(EventKind::Kernel, name).detail(&line));
            }
        }
    }
}

/// Scans every `interval` until the process ends.
/// Scans every `scan_interval` of `kernel` until the process ends; a
/// reload that changes `kernel` applies at the next scan (`off` pauses).
pub fn spawn(
    kernel: Arc<RwLock<KernelConfig>>,
    metrics: Arc<Metrics>,
    owned_src: Option<Arc<OwnedRegistry>>,
    share: Option<ScanShare>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let read_config = move || kernel.read().map(|k| k.clone()).ok();
    let Some(mut k) = read_config() else {
        return Err(std::io::Error::other("kernel configuration unavailable"));
    };
    thread::Builder::new().name("sockpulse-kernel".into()).spawn(move || {
        let mut cfg = k.host_config();
        let mut ns = k.namespace();
        let mut tracker = CloseWaitTracker::default();
        let mut findings = KernelFindings::default();
        let mut failing = false;
        let mut reader = Reader::new(k.method, ns, cfg.watch_ports.clone());
        loop {
            if let Some(now) = read_config().filter(|now| *now != k) {
                log::info!("kernel scan settings reloaded");
                k = now;
                cfg = k.host_config();
                ns = k.namespace();
                reader = Reader::new(k.method, ns, cfg.watch_ports.clone());
                tracker = CloseWaitTracker::default();
            }
            let Some(interval) = k.scan_interval else {
                thread::sleep(Duration::from_secs(1));
                continue;
            };
            // Our own sockets live in our namespace; another one's table has none.
            let owned = owned_src.as_ref().filter(|_| ns == Namespace::Own);
            let before = owned.map(|r| r.snapshot());
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
                    if let (Some(src), Some(before)) = (owned, &before) {
                        export_owned(&metrics, src, before, &table.entries, table.own_listed, share.as_ref());
                    }
                    if let Some(share) = &share {
                        for event in findings.update(&summary) {
                            events::record(&share.events, event);
                        }
                        let mut shared = summary;
                        shared.suspicious.truncate(SHARED_SUSPICIOUS);
                        if let Ok(mut host) = share.host.lock() {
                            *host = Some(shared);
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::host::PortSummary;

    fn summary(ports: &[(&str, u64, Option<f64>)]) -> HostSummary {
        let mut s = HostSummary::default();
        for (port, over_age, ratio) in ports {
            let p = PortSummary {
                close_wait_over_age: *over_age,
                close_wait_oldest_seconds: 400.0,
                listen_queue_ratio: *ratio,
                listen_queue: 7,
                ..PortSummary::default()
            };
            s.ports.insert(port.to_string(), p);
        }
        s
    }

    fn details(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.detail.as_str()).collect()
    }

    #[test]
    fn a_port_entering_or_leaving_a_finding_is_one_event_each_way() {
        let mut f = KernelFindings::default();
        assert!(f.update(&summary(&[("8080", 0, Some(0.1))])).is_empty());
        let events = f.update(&summary(&[("8080", 3, Some(0.95))]));
        assert_eq!(events.len(), 2, "{:?}", details(&events));
        assert!(events
            .iter()
            .all(|e| e.kind == EventKind::Kernel && e.target.is_empty()));
        assert!(details(&events)[0].starts_with("port 8080: 3 CLOSE_WAIT socket(s)"));
        assert!(details(&events)[1].contains("accept queue 95% full (7 waiting)"));
        // Still the same: nothing new.
        assert!(f.update(&summary(&[("8080", 4, Some(0.99))])).is_empty());
        let events = f.update(&summary(&[("8080", 0, None)]));
        assert_eq!(
            details(&events),
            [
                "port 8080: no CLOSE_WAIT socket past the age alert any more",
                "port 8080: accept queue drained"
            ]
        );
    }
}
