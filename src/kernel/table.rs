//! The host's TCP table from `/proc/net/tcp` and `/proc/net/tcp6` (through
//! the procfs crate), for our own network namespace or another process's.

use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;

use procfs::net::TcpNetEntries;
use procfs::FromBufReadSI;

use super::TcpState;

/// One socket of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// Bytes queued to send (for LISTEN: 0).
    pub tx_queue: u32,
    /// Bytes received and not read (for LISTEN: the accept queue length).
    pub rx_queue: u32,
    pub inode: u64,
    /// LISTEN sockets: the accept queue's limit (netlink only; `/proc` lacks it).
    pub listen_backlog: Option<u32>,
    /// Unrecovered retransmission timeouts (netlink only).
    pub retransmits: Option<u8>,
}

#[cfg(test)]
impl SocketEntry {
    /// An entry with empty queues, for tests.
    pub(crate) fn for_test(local: &str, remote: &str, state: TcpState, inode: u64) -> SocketEntry {
        SocketEntry {
            local: local.parse().expect("test address"),
            remote: remote.parse().expect("test address"),
            state,
            tx_queue: 0,
            rx_queue: 0,
            inode,
            listen_backlog: None,
            retransmits: None,
        }
    }
}

/// Whose network namespace to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Namespace {
    /// The one this process runs in (a sidecar's: the pod's).
    #[default]
    Own,
    /// The one process `pid` runs in (a host daemon looking into a pod).
    OfPid(u32),
}

impl Namespace {
    fn dir(self) -> PathBuf {
        match self {
            Namespace::Own => PathBuf::from("/proc/self/net"),
            Namespace::OfPid(pid) => PathBuf::from(format!("/proc/{pid}/net")),
        }
    }
}

fn state_of(s: procfs::net::TcpState) -> TcpState {
    use procfs::net::TcpState as P;
    match s {
        P::Established => TcpState::Established,
        P::SynSent => TcpState::SynSent,
        P::SynRecv => TcpState::SynRecv,
        P::FinWait1 => TcpState::FinWait1,
        P::FinWait2 => TcpState::FinWait2,
        P::TimeWait => TcpState::TimeWait,
        P::Close => TcpState::Close,
        P::CloseWait => TcpState::CloseWait,
        P::LastAck => TcpState::LastAck,
        P::Listen => TcpState::Listen,
        P::Closing => TcpState::Closing,
        P::NewSynRecv => TcpState::NewSynRecv,
    }
}

/// Parses the text of a `/proc/net/tcp` or `tcp6` file.
pub fn parse(text: &[u8]) -> io::Result<Vec<SocketEntry>> {
    let entries = TcpNetEntries::from_buf_read(BufReader::new(text), procfs::current_system_info())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(entries
        .0
        .into_iter()
        .map(|e| SocketEntry {
            local: e.local_address,
            remote: e.remote_address,
            state: state_of(e.state),
            tx_queue: e.tx_queue,
            rx_queue: e.rx_queue,
            inode: e.inode,
            listen_backlog: None,
            retransmits: None,
        })
        .collect())
}

/// Drops repeated entries. The kernel produces both /proc/net/tcp and
/// netlink dumps in chunks; when the table changes between chunks a
/// socket can be listed twice (seen in CI with tests opening sockets in
/// parallel). Sockets with an inode are keyed by it; TIME_WAIT and other
/// inode-less entries by addresses and state.
pub fn dedupe(entries: &mut Vec<SocketEntry>) {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries.retain(|e| {
        let key = if e.inode != 0 {
            (e.inode, None)
        } else {
            (0, Some((e.local, e.remote, e.state)))
        };
        seen.insert(key)
    });
}

/// Reads IPv4 and IPv6 tables of a namespace. A missing `tcp6` (IPv6
/// disabled) is an empty table, not an error.
pub fn read(ns: Namespace) -> io::Result<Vec<SocketEntry>> {
    let dir = ns.dir();
    let mut all = parse(&std::fs::read(dir.join("tcp"))?)?;
    match std::fs::read(dir.join("tcp6")) {
        Ok(text) => all.extend(parse(&text)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    dedupe(&mut all);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_ipv4_table() {
        let text = include_bytes!("../../tests/fixtures/proc_net_tcp.txt");
        let t = parse(text).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[0].state, TcpState::Listen);
        assert_eq!(t[0].local, "127.0.0.1:34637".parse().unwrap());
        assert_eq!(t[0].rx_queue, 3, "accept queue length of a LISTEN socket");
        assert_eq!(t[1].state, TcpState::Established);
        assert_eq!((t[1].local.port(), t[1].remote.port()), (45046, 8080));
        assert_eq!(t[1].tx_queue, 0x1a2b);
        assert_eq!(t[2].state, TcpState::CloseWait);
        assert_eq!(t[2].inode, 987654);
        assert_eq!(t[3].state, TcpState::TimeWait);
        assert_eq!(t[3].inode, 0, "TIME_WAIT sockets have no inode");
        assert_eq!(t[4].state, TcpState::SynSent);
        assert_eq!(t[4].remote, "10.231.7.2:80".parse().unwrap());
    }

    #[test]
    fn parses_ipv6_and_v4_mapped_addresses() {
        let text = include_bytes!("../../tests/fixtures/proc_net_tcp6.txt");
        let t = parse(text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].local, "[::]:9747".parse().unwrap());
        assert_eq!(t[0].state, TcpState::Listen);
        assert_eq!(t[1].local, "[::1]:9747".parse().unwrap());
        assert_eq!(t[1].remote, "[::1]:52100".parse().unwrap());
        assert_eq!(t[2].local, "[::ffff:127.0.0.1]:9747".parse().unwrap(), "IPv4-mapped");
        assert_eq!(t[2].state, TcpState::CloseWait);
    }

    #[test]
    fn a_socket_listed_twice_by_a_chunked_read_counts_once() {
        let text = include_bytes!("../../tests/fixtures/proc_net_tcp.txt");
        let mut t = parse(text).unwrap();
        let repeated = t.clone();
        t.extend(repeated); // every entry twice, TIME_WAIT (inode 0) included
        dedupe(&mut t);
        assert_eq!(t, parse(text).unwrap());
        // Two distinct TIME_WAIT sockets (inode 0) both stay.
        let mut tw = parse(text)
            .unwrap()
            .into_iter()
            .filter(|e| e.inode == 0)
            .collect::<Vec<_>>();
        let mut other = tw[0];
        other.local.set_port(other.local.port() + 1);
        tw.push(other);
        dedupe(&mut tw);
        assert_eq!(tw.len(), 2);
    }

    #[test]
    fn header_only_is_empty_and_garbage_is_an_error() {
        assert!(parse(b"  sl  local_address rem_address   st\n").unwrap().is_empty());
        assert!(parse(b"header\n   0: zz:zz 00000000:0000 0A\n").is_err());
        assert!(parse(b"header\n   0: 0100007F:874D\n").is_err(), "truncated line");
    }

    #[test]
    fn reads_the_live_table_and_finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = read(Namespace::Own).unwrap();
        assert!(t.iter().any(|e| e.state == TcpState::Listen && e.local.port() == port));
        let pid = std::process::id();
        assert!(read(Namespace::OfPid(pid))
            .unwrap()
            .iter()
            .any(|e| e.local.port() == port));
        assert!(read(Namespace::OfPid(u32::MAX)).is_err(), "no such process");
    }
}
