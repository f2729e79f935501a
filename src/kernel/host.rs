//! The host-wide view: counts by state and watched port, summed queues,
//! CLOSE_WAIT ages tracked across scans, TIME_WAIT pressure, accept queues.
//! Pure: a scan's table and the current `Instant` in, a summary out.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::table::SocketEntry;
use super::TcpState;
use crate::clock::Instant;

/// Where a socket is counted: a watched port, or everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortKey {
    Watched(u16),
    Other,
}

impl PortKey {
    pub fn label(self) -> String {
        match self {
            PortKey::Watched(p) => p.to_string(),
            PortKey::Other => "other".to_string(),
        }
    }
}

/// An accept queue this full against its backlog is saturated: listed as
/// suspicious, an event, a warning on the live page.
pub const ACCEPT_QUEUE_SATURATED: f64 = 0.9;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PortSummary {
    pub by_state: BTreeMap<&'static str, u64>,
    pub tx_queue_bytes: u64,
    pub rx_queue_bytes: u64,
    pub close_wait_oldest_seconds: f64,
    pub close_wait_over_age: u64,
    /// Connections waiting in LISTEN sockets' accept queues on this port.
    pub listen_queue: u64,
    /// The fullest accept queue on this port against its backlog (netlink only).
    pub listen_queue_ratio: Option<f64>,
}

/// One socket worth a look, for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suspicious {
    pub local: String,
    pub remote: String,
    pub state: &'static str,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSummary {
    pub total: u64,
    pub by_state: BTreeMap<&'static str, u64>,
    pub ports: BTreeMap<String, PortSummary>,
    pub time_wait: u64,
    pub ephemeral_ports: u64,
    pub time_wait_port_ratio: f64,
    pub suspicious: Vec<Suspicious>,
}

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub watch_ports: Vec<u16>,
    /// CLOSE_WAIT older than this is a leak suspect.
    pub close_wait_age_alert: Duration,
    /// A send queue at least this large is reported as stuck.
    pub stuck_send_queue_bytes: u32,
    /// `ip_local_port_range` as (low, high).
    pub ephemeral_range: (u16, u16),
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            watch_ports: Vec::new(),
            close_wait_age_alert: Duration::from_secs(300),
            stuck_send_queue_bytes: 64 * 1024,
            ephemeral_range: (32768, 60999),
        }
    }
}

/// Remembers when each CLOSE_WAIT socket (by inode) was first seen, so its
/// age is known across scans. Holds only sockets present in the last scan.
#[derive(Debug, Default)]
pub struct CloseWaitTracker {
    first_seen: HashMap<u64, Instant>,
}

impl CloseWaitTracker {
    /// Records this scan's CLOSE_WAIT sockets; forgets those gone.
    fn observe(&mut self, entries: &[SocketEntry], now: Instant) {
        let mut next = HashMap::with_capacity(self.first_seen.len());
        for e in entries
            .iter()
            .filter(|e| e.state == TcpState::CloseWait && e.inode != 0)
        {
            let seen = self.first_seen.get(&e.inode).copied().unwrap_or(now);
            next.insert(e.inode, seen);
        }
        self.first_seen = next;
    }

    fn age(&self, inode: u64, now: Instant) -> Duration {
        self.first_seen
            .get(&inode)
            .map(|t| now.saturating_duration_since(*t))
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

/// The watched port a socket belongs to: its local port (services we
/// guard) first, then its remote port (services we call).
fn port_key(e: &SocketEntry, watched: &[u16]) -> PortKey {
    if watched.contains(&e.local.port()) {
        PortKey::Watched(e.local.port())
    } else if watched.contains(&e.remote.port()) {
        PortKey::Watched(e.remote.port())
    } else {
        PortKey::Other
    }
}

/// Summarizes a scan: `entries` listed, plus `unlisted_established`
/// ESTABLISHED sockets only counted (a filtered read; none of them on a
/// watched port).
pub fn summarize(
    entries: &[SocketEntry],
    unlisted_established: u64,
    cfg: &HostConfig,
    tracker: &mut CloseWaitTracker,
    now: Instant,
) -> HostSummary {
    tracker.observe(entries, now);
    let mut s = HostSummary::default();
    let mut ports: BTreeMap<PortKey, PortSummary> = BTreeMap::new();
    for p in &cfg.watch_ports {
        ports.insert(PortKey::Watched(*p), PortSummary::default());
    }
    ports.insert(PortKey::Other, PortSummary::default());
    if unlisted_established > 0 {
        let established = TcpState::Established.as_str();
        s.total += unlisted_established;
        *s.by_state.entry(established).or_default() += unlisted_established;
        let other = ports.entry(PortKey::Other).or_default();
        *other.by_state.entry(established).or_default() += unlisted_established;
    }
    for e in entries {
        s.total += 1;
        *s.by_state.entry(e.state.as_str()).or_default() += 1;
        let key = port_key(e, &cfg.watch_ports);
        let p = ports.entry(key).or_default();
        *p.by_state.entry(e.state.as_str()).or_default() += 1;
        p.tx_queue_bytes += u64::from(e.tx_queue);
        match e.state {
            TcpState::Listen => {
                p.listen_queue += u64::from(e.rx_queue);
                if let Some(backlog) = e.listen_backlog.filter(|b| *b > 0) {
                    let ratio = f64::from(e.rx_queue) / f64::from(backlog);
                    p.listen_queue_ratio = Some(p.listen_queue_ratio.map_or(ratio, |r| r.max(ratio)));
                    if ratio >= ACCEPT_QUEUE_SATURATED {
                        s.suspicious.push(suspect(
                            e,
                            format!(
                                "accept queue {} of {backlog}: the application is not accepting",
                                e.rx_queue
                            ),
                        ));
                    }
                }
            }
            _ => p.rx_queue_bytes += u64::from(e.rx_queue),
        }
        match e.state {
            TcpState::TimeWait => s.time_wait += 1,
            TcpState::CloseWait => {
                let age = tracker.age(e.inode, now);
                p.close_wait_oldest_seconds = p.close_wait_oldest_seconds.max(age.as_secs_f64());
                if age >= cfg.close_wait_age_alert {
                    p.close_wait_over_age += 1;
                    s.suspicious.push(suspect(
                        e,
                        format!("CLOSE_WAIT for {}s: the application never closed it", age.as_secs()),
                    ));
                }
            }
            _ => {}
        }
        if e.tx_queue >= cfg.stuck_send_queue_bytes && e.state != TcpState::Listen {
            s.suspicious.push(suspect(
                e,
                format!(
                    "{} bytes unsent: the peer is not reading or the path is slow",
                    e.tx_queue
                ),
            ));
        }
    }
    let (lo, hi) = cfg.ephemeral_range;
    s.ephemeral_ports = u64::from(hi.saturating_sub(lo)) + 1;
    s.time_wait_port_ratio = s.time_wait as f64 / s.ephemeral_ports as f64;
    s.ports = ports.into_iter().map(|(k, v)| (k.label(), v)).collect();
    s
}

fn suspect(e: &SocketEntry, why: String) -> Suspicious {
    Suspicious {
        local: e.local.to_string(),
        remote: e.remote.to_string(),
        state: e.state.as_str(),
        why,
    }
}

/// Reads `ip_local_port_range` of our network namespace.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(local: &str, remote: &str, state: TcpState, inode: u64) -> SocketEntry {
        SocketEntry::for_test(local, remote, state, inode)
    }

    fn cfg() -> HostConfig {
        HostConfig {
            watch_ports: vec![8080],
            close_wait_age_alert: Duration::from_secs(60),
            ..Default::default()
        }
    }

    #[test]
    fn counts_by_state_and_watched_port() {
        let mut listen = entry("0.0.0.0:8080", "0.0.0.0:0", TcpState::Listen, 1);
        listen.rx_queue = 7;
        let mut busy = entry("10.0.0.1:8080", "10.0.0.9:5000", TcpState::Established, 2);
        busy.tx_queue = 100;
        busy.rx_queue = 5;
        let table = vec![
            listen,
            busy,
            entry("10.0.0.1:41000", "10.0.0.7:8080", TcpState::Established, 3), // we call :8080
            entry("10.0.0.1:22", "10.0.0.9:6000", TcpState::Established, 4),
            entry("10.0.0.1:41001", "10.0.0.9:443", TcpState::TimeWait, 0),
        ];
        let now = Instant::now();
        let s = summarize(&table, 0, &cfg(), &mut CloseWaitTracker::default(), now);
        assert_eq!(s.total, 5);
        assert_eq!(s.by_state["established"], 3);
        let p = &s.ports["8080"];
        assert_eq!(p.by_state["established"], 2);
        assert_eq!(p.by_state["listen"], 1);
        assert_eq!((p.tx_queue_bytes, p.rx_queue_bytes, p.listen_queue), (100, 5, 7));
        assert_eq!(s.ports["other"].by_state["established"], 1);
        assert_eq!(s.ports["other"].by_state["time_wait"], 1);
        assert_eq!(s.time_wait, 1);
        assert_eq!(s.ephemeral_ports, 28232);
        assert!((s.time_wait_port_ratio - 1.0 / 28232.0).abs() < 1e-12);
    }

    #[test]
    fn close_wait_age_is_tracked_across_scans_by_inode() {
        let mut tracker = CloseWaitTracker::default();
        let t0 = Instant::now();
        let leak = entry("10.0.0.1:8080", "10.0.0.9:5000", TcpState::CloseWait, 42);
        let fresh = entry("10.0.0.1:8080", "10.0.0.9:5001", TcpState::CloseWait, 43);
        let s = summarize(&[leak], 0, &cfg(), &mut tracker, t0);
        assert_eq!(s.ports["8080"].close_wait_oldest_seconds, 0.0);
        let s = summarize(&[leak, fresh], 0, &cfg(), &mut tracker, t0 + Duration::from_secs(59));
        assert_eq!(s.ports["8080"].close_wait_oldest_seconds, 59.0);
        assert_eq!(s.ports["8080"].close_wait_over_age, 0);
        let s = summarize(&[leak, fresh], 0, &cfg(), &mut tracker, t0 + Duration::from_secs(61));
        assert_eq!(s.ports["8080"].close_wait_over_age, 1, "only the old one");
        assert_eq!(s.suspicious.len(), 1);
        assert!(s.suspicious[0].why.contains("CLOSE_WAIT for 61s"));
        // Closed at last: forgotten, so the tracker does not grow.
        let s = summarize(&[fresh], 0, &cfg(), &mut tracker, t0 + Duration::from_secs(70));
        assert_eq!(tracker.len(), 1);
        assert_eq!(s.ports["8080"].close_wait_oldest_seconds, 11.0);
        // A new socket reusing the inode number later starts from zero.
        summarize(&[], 0, &cfg(), &mut tracker, t0 + Duration::from_secs(80));
        let s = summarize(&[leak], 0, &cfg(), &mut tracker, t0 + Duration::from_secs(90));
        assert_eq!(s.ports["8080"].close_wait_oldest_seconds, 0.0);
    }

    #[test]
    fn accept_queue_saturation_needs_the_backlog() {
        let mut l = entry("0.0.0.0:8080", "0.0.0.0:0", TcpState::Listen, 1);
        l.rx_queue = 120;
        let s = summarize(&[l], 0, &cfg(), &mut CloseWaitTracker::default(), Instant::now());
        assert_eq!(s.ports["8080"].listen_queue_ratio, None, "/proc has no backlog");
        l.listen_backlog = Some(128);
        let s = summarize(&[l], 0, &cfg(), &mut CloseWaitTracker::default(), Instant::now());
        assert_eq!(s.ports["8080"].listen_queue_ratio, Some(120.0 / 128.0));
        assert!(s.suspicious[0].why.contains("accept queue 120 of 128"));
    }

    #[test]
    fn stuck_send_queues_are_suspicious() {
        let mut e = entry("10.0.0.1:41000", "10.0.0.7:9000", TcpState::Established, 9);
        e.tx_queue = 1 << 20;
        let s = summarize(&[e], 0, &cfg(), &mut CloseWaitTracker::default(), Instant::now());
        assert_eq!(s.suspicious.len(), 1);
        assert!(s.suspicious[0].why.contains("1048576 bytes unsent"));
    }

    #[test]
    fn the_live_port_range_is_readable() {
        let (lo, hi) = ephemeral_range().expect("ip_local_port_range");
        assert!(lo > 0 && lo <= hi);
    }
}
