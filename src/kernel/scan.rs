//! One read of the host TCP table by the configured method, and one
//! summarised scan of it.

use std::io;
use std::time::{Duration, Instant};

use super::host::{self, CloseWaitTracker, HostConfig, HostSummary};
use super::netlink;
use super::table::{self, Namespace, SocketEntry};
use crate::labels::label_enum;

label_enum! {
    /// How the table is read; the `method` label names the one that answered.
    pub enum ScanMethod {
        /// Netlink for our own namespace, /proc when netlink fails or for another's.
        Auto,
        Netlink,
        Procfs,
    }
}

/// Reads the table by `method`; returns the entries and which method
/// answered (never `Auto`). `Auto` prefers netlink (our own namespace only)
/// and falls back to /proc.
pub fn read_table(method: ScanMethod, ns: Namespace) -> io::Result<(Vec<SocketEntry>, ScanMethod)> {
    match (method, ns) {
        (ScanMethod::Procfs, _) | (ScanMethod::Auto, Namespace::OfPid(_)) => Ok((table::read(ns)?, ScanMethod::Procfs)),
        (ScanMethod::Netlink, Namespace::OfPid(_)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "netlink reads only our own network namespace; use method = \"procfs\" with netns_pid",
        )),
        (ScanMethod::Netlink, Namespace::Own) => Ok((netlink::read(netlink::ALL_STATES)?, ScanMethod::Netlink)),
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
    let (entries, _) = read_table(method, ns)?;
    let summary = host::summarize(&entries, cfg, tracker, Instant::now());
    Ok((summary, started.elapsed()))
}
