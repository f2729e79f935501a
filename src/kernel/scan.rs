//! One read of the host TCP table by the configured method, and one
//! summarised scan of it.

use std::io;
use std::time::Duration;

use super::host::{self, CloseWaitTracker, HostConfig, HostSummary};
use super::netlink::{self, Side};
use super::snmp::{self, CurrEstab};
use super::table::{self, Namespace, SocketEntry};
use super::TcpState;
use crate::clock::Instant;
use crate::labels::label_enum;

label_enum! {
    /// How the table is read; the `method` label names the one that answered.
    pub enum ScanMethod {
        /// The agent: filtered netlink dumps for our own namespace (full
        /// dumps where the counter cannot be calibrated), /proc when netlink
        /// fails or for another namespace. `sockets`: a full dump.
        Auto,
        /// Every socket not ESTABLISHED, the ESTABLISHED ones on watched
        /// ports and our own, and the rest counted by the kernel's counter.
        Filtered,
        Netlink,
        Procfs,
    }
}

/// What a filtered scan lists besides every socket not ESTABLISHED.
#[derive(Debug, Clone, Default)]
pub struct Focus {
    /// Sockets with one of these as local or remote port.
    pub watch_ports: Vec<u16>,
    /// The agent's own sockets: their remote ports (the targets').
    pub own_ports: Vec<u16>,
}

/// A program longer than this many port tests is not worth it: list all.
const MAX_FILTER_PORTS: usize = 1000;

/// One read of the table.
#[derive(Debug)]
pub struct Table {
    pub entries: Vec<SocketEntry>,
    /// Which method answered (never `Auto`).
    pub method: ScanMethod,
    /// ESTABLISHED sockets counted by the kernel but not listed (filtered
    /// reads): none of them is on a watched port.
    pub unlisted_established: u64,
    /// Whether our own ESTABLISHED sockets were listed (else they are
    /// among the unlisted).
    pub own_listed: bool,
}

/// A filtered read of our own namespace: two netlink dumps (every state
/// but ESTABLISHED; ESTABLISHED on the focus ports) and `CurrEstab`, so the
/// cost follows the sockets that need a look rather than the host's total.
pub fn read_filtered(focus: &Focus, counts: CurrEstab) -> io::Result<Table> {
    let mut ports: Vec<(Side, u16)> = focus
        .watch_ports
        .iter()
        .flat_map(|p| [(Side::Local, *p), (Side::Remote, *p)])
        .chain(focus.own_ports.iter().map(|p| (Side::Remote, *p)))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.len() > MAX_FILTER_PORTS {
        return Ok(Table {
            entries: netlink::read(netlink::ALL_STATES)?,
            method: ScanMethod::Netlink,
            unlisted_established: 0,
            own_listed: true,
        });
    }
    let filter = if ports.is_empty() {
        Vec::new()
    } else {
        netlink::port_filter(&ports)
    };
    let mut dumps = vec![(netlink::ALL_STATES & !netlink::ESTABLISHED, &[][..])];
    if !ports.is_empty() {
        dumps.push((netlink::ESTABLISHED, &filter[..]));
    }
    let entries = netlink::read_dumps_in_one_walk(&dumps)?;
    let curr_estab = snmp::curr_estab()?;
    let count = |state| entries.iter().filter(|e| e.state == state).count() as u64;
    let established = counts.established(curr_estab, count(TcpState::CloseWait));
    Ok(Table {
        unlisted_established: established.saturating_sub(count(TcpState::Established)),
        entries,
        method: ScanMethod::Filtered,
        own_listed: !focus.own_ports.is_empty(),
    })
}

/// Reads the table by `method`; returns the entries and which method
/// answered (never `Auto`). `Auto` prefers netlink (our own namespace only)
/// and falls back to /proc.
pub fn read_table(method: ScanMethod, ns: Namespace) -> io::Result<(Vec<SocketEntry>, ScanMethod)> {
    match (method, ns) {
        (ScanMethod::Procfs, _) | (ScanMethod::Auto, Namespace::OfPid(_)) => Ok((table::read(ns)?, ScanMethod::Procfs)),
        (ScanMethod::Netlink | ScanMethod::Filtered, Namespace::OfPid(_)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "netlink reads only our own network namespace; use method = \"procfs\" with netns_pid",
        )),
        // What a filtered read falls back to.
        (ScanMethod::Netlink | ScanMethod::Filtered, Namespace::Own) => {
            Ok((netlink::read(netlink::ALL_STATES)?, ScanMethod::Netlink))
        }
        (ScanMethod::Auto, Namespace::Own) => match netlink::read(netlink::ALL_STATES) {
            Ok(entries) => Ok((entries, ScanMethod::Netlink)),
            Err(e) => {
                log::debug!("netlink sock_diag failed ({e}); reading /proc instead");
                Ok((table::read(ns)?, ScanMethod::Procfs))
            }
        },
    }
}

/// One scan: read, summarize; with how long it took.
pub fn scan(
    method: ScanMethod,
    ns: Namespace,
    cfg: &HostConfig,
    tracker: &mut CloseWaitTracker,
) -> io::Result<(HostSummary, Duration)> {
    let started = Instant::now();
    let calibrated = match (method, ns) {
        (ScanMethod::Filtered, Namespace::Own) => snmp::calibrate()
            .map_err(|e| log::warn!("listing every socket: cannot tell what CurrEstab counts ({e})"))
            .ok(),
        _ => None,
    };
    let table = if let Some(counts) = calibrated {
        let focus = Focus {
            watch_ports: cfg.watch_ports.clone(),
            own_ports: Vec::new(),
        };
        read_filtered(&focus, counts)?
    } else {
        let (entries, method) = read_table(method, ns)?;
        Table {
            entries,
            method,
            unlisted_established: 0,
            own_listed: true,
        }
    };
    let summary = host::summarize(&table.entries, table.unlisted_established, cfg, tracker, Instant::now());
    Ok((summary, started.elapsed()))
}
