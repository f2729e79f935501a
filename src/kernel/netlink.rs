//! The host's TCP table through netlink `sock_diag` (what `ss` uses): the
//! kernel fills binary records, so nothing formats or parses hex text,
//! and a state mask filters in the kernel. Our own network namespace only;
//! `/proc` serves the others and cross-checks this path in tests.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::table::SocketEntry;
use super::TcpState;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The original inet_diag request: it dumps IPv4 and IPv6 in one walk of
/// the kernel's socket hash (the per-family request walks it once per
/// family), and takes the same filter programs.
const TCPDIAG_GETSOCK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
const INET_DIAG_MSG: usize = 72;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// Every TCP state: bit n is state n.
pub const ALL_STATES: u32 = 0xfff << 1;

/// Only ESTABLISHED (state 1).
pub const ESTABLISHED: u32 = 1 << 1;
/// The `nlattr` type carrying a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
// Filter program operations (include/uapi/linux/inet_diag.h).
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const BC_D_GE: u8 = 4;
const BC_D_LE: u8 = 5;

/// Which port of a socket a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Local,
    Remote,
}

/// A kernel-side filter program accepting sockets whose `side` port equals
/// one of `ports` (what `ss '( sport = :P or dport = :Q )'` compiles to).
/// Each test is `port >= P && port <= P` (the comparisons every kernel
/// has), followed by a jump to the end (accept) that only the kernel's
/// validator walks into; a failed test falls through to the next, the
/// last one's to just past the end (reject).
pub fn port_filter(ports: &[(Side, u16)]) -> Vec<u8> {
    const TEST: usize = 20; // GE op + port, LE op + port, JMP op
    let len = ports.len() * TEST - 4;
    let mut bc = Vec::with_capacity(len);
    let op = |bc: &mut Vec<u8>, code: u8, yes: usize, no: usize| {
        bc.push(code);
        bc.push(yes as u8);
        bc.extend_from_slice(&(no as u16).to_ne_bytes());
    };
    for (i, (side, port)) in ports.iter().enumerate() {
        let start = i * TEST;
        let last = i + 1 == ports.len();
        // Where a failed test goes: the next test, or reject.
        let next = if last { len + 4 } else { start + TEST };
        let (ge, le) = match side {
            Side::Local => (BC_S_GE, BC_S_LE),
            Side::Remote => (BC_D_GE, BC_D_LE),
        };
        op(&mut bc, ge, 8, next - start);
        op(&mut bc, 0, 0, usize::from(*port));
        op(&mut bc, le, 8, next - (start + 8));
        op(&mut bc, 0, 0, usize::from(*port));
        if !last {
            // Always taken as `no` (to the end: accept); `yes` only
            // chains the validator on to the next test.
            op(&mut bc, BC_JMP, 4, len - (start + 16));
        }
    }
    bc
}

/// A dump request of `kind` whose body (`inet_diag_req` or
/// `inet_diag_req_v2`) is `body`, with an optional filter program.
fn dump_request(kind: u16, seq: u32, body: &[u8], filter: &[u8]) -> Vec<u8> {
    let attr = if filter.is_empty() { 0 } else { 4 + filter.len() };
    let len = NLMSG_HDR + body.len() + attr;
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&kind.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    req.extend_from_slice(body);
    if attr > 0 {
        req.extend_from_slice(&(attr as u16).to_ne_bytes());
        req.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        req.extend_from_slice(filter);
    }
    req
}

/// A `TCPDIAG_GETSOCK` dump request for TCP sockets of both families.
fn request_both_families(states: u32, filter: &[u8]) -> Vec<u8> {
    // inet_diag_req: family (ignored), two lengths, extensions, the socket
    // id (no filter), states, an unused word.
    let mut body = vec![0u8; 4 + 48];
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    dump_request(TCPDIAG_GETSOCK, 1, &body, filter)
}

/// One `SOCK_DIAG_BY_FAMILY` dump request for TCP sockets of `family`.
fn request(family: u8, states: u32, seq: u32, filter: &[u8]) -> Vec<u8> {
    // inet_diag_req_v2: family, protocol, extensions, padding, states, the
    // socket id (no filter).
    let mut body = vec![family, libc::IPPROTO_TCP as u8, 0, 0];
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&[0u8; 48]);
    dump_request(SOCK_DIAG_BY_FAMILY, seq, &body, filter)
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr(family: u8, raw: &[u8], port_be: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([port_be[0], port_be[1]]);
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        AF_INET6 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&raw[..16]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// What one datagram of the dump held.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    More,
    Done,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses one datagram of netlink messages into `out`. Never panics on
/// malformed input: every length is checked before it is used.
pub fn parse_datagram(buf: &[u8], out: &mut Vec<SocketEntry>) -> io::Result<Chunk> {
    let mut off = 0;
    while off + NLMSG_HDR <= buf.len() {
        let len = u32_ne(buf, off) as usize;
        let kind = u16_ne(buf, off + 4);
        if len < NLMSG_HDR || off + len > buf.len() {
            return Err(invalid(format!(
                "netlink message length {len} at offset {off} is out of bounds"
            )));
        }
        let body = &buf[off + NLMSG_HDR..off + len];
        match kind {
            NLMSG_DONE => return Ok(Chunk::Done),
            NLMSG_ERROR => {
                // nlmsgerr.error is a negative errno; anything else is malformed
                // (and i32::MIN cannot even be negated).
                let error = if body.len() >= 4 { u32_ne(body, 0) as i32 } else { 0 };
                return Err(match error.checked_neg() {
                    Some(errno @ 1..=4095) => io::Error::from_raw_os_error(errno),
                    _ => invalid(format!("netlink error message with error field {error}")),
                });
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                if body.len() < INET_DIAG_MSG {
                    return Err(invalid("short inet_diag_msg"));
                }
                let family = body[0];
                let state =
                    TcpState::from_kernel(body[1]).ok_or_else(|| invalid(format!("unknown TCP state {}", body[1])))?;
                let local = addr(family, &body[8..24], &body[4..6]).ok_or_else(|| invalid("unknown family"))?;
                let remote = addr(family, &body[24..40], &body[6..8]).ok_or_else(|| invalid("unknown family"))?;
                let rqueue = u32_ne(body, 56);
                let wqueue = u32_ne(body, 60);
                out.push(SocketEntry {
                    local,
                    remote,
                    state,
                    // For LISTEN sockets the kernel reports the accept
                    // queue as rqueue and its limit (backlog) as wqueue.
                    tx_queue: if state == TcpState::Listen { 0 } else { wqueue },
                    rx_queue: rqueue,
                    inode: u64::from(u32_ne(body, 68)),
                    listen_backlog: (state == TcpState::Listen).then_some(wqueue),
                    retransmits: Some(body[3]),
                });
            }
            _ => {} // NLMSG_NOOP and friends
        }
        off += (len + 3) & !3;
    }
    Ok(Chunk::More)
}

fn dump(socket: &Socket, request: &[u8], buf: &mut [u8], out: &mut Vec<SocketEntry>) -> io::Result<()> {
    socket.send(request)?;
    loop {
        let n = match (&*socket).read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(invalid("netlink socket closed mid-dump"));
        }
        if parse_datagram(&buf[..n], out)? == Chunk::Done {
            return Ok(());
        }
    }
}

fn diag_socket() -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    // A dump never takes this long; a hang would be a kernel bug, not a wait.
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(socket)
}

/// Reads every TCP socket (IPv4 and IPv6) in `states` of our namespace.
pub fn read(states: u32) -> io::Result<Vec<SocketEntry>> {
    read_dumps(&[(states, &[])])
}

/// Reads the sockets of several dumps (IPv4 and IPv6 each), each a state
/// mask and a filter program (empty: none), on one netlink socket.
pub fn read_dumps(dumps: &[(u32, &[u8])]) -> io::Result<Vec<SocketEntry>> {
    let socket = diag_socket()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    for (states, filter) in dumps {
        for family in [AF_INET, AF_INET6] {
            dump(
                &socket,
                &request(family, *states, u32::from(family), filter),
                &mut buf,
                &mut out,
            )?;
        }
    }
    super::table::dedupe(&mut out);
    Ok(out)
}

/// As `read_dumps`, with one walk of the kernel's table per dump for both
/// families; per family where the kernel refuses the older request.
pub fn read_dumps_in_one_walk(dumps: &[(u32, &[u8])]) -> io::Result<Vec<SocketEntry>> {
    read_dumps_both_families(dumps).or_else(|e| {
        log::debug!("TCPDIAG_GETSOCK dump failed ({e}); dumping per family");
        read_dumps(dumps)
    })
}

fn read_dumps_both_families(dumps: &[(u32, &[u8])]) -> io::Result<Vec<SocketEntry>> {
    let socket = diag_socket()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    for (states, filter) in dumps {
        dump(&socket, &request_both_families(*states, filter), &mut buf, &mut out)?;
    }
    super::table::dedupe(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic SOCK_DIAG_BY_FAMILY record, as the kernel lays it out.
    fn record(family: u8, state: u8, sport: u16, dport: u16, rq: u32, wq: u32, inode: u32) -> Vec<u8> {
        let mut body = vec![family, state, 0, 2];
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&dport.to_be_bytes());
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[127, 0, 0, 1]);
        dst[..4].copy_from_slice(&[10, 0, 0, 9]);
        body.extend_from_slice(&src);
        body.extend_from_slice(&dst);
        body.extend_from_slice(&[0u8; 12]); // interface, cookie
        for v in [0u32, rq, wq, 0, inode] {
            body.extend_from_slice(&v.to_ne_bytes());
        }
        let mut msg = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    fn done() -> Vec<u8> {
        let mut m = (NLMSG_HDR as u32 + 4).to_ne_bytes().to_vec();
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0u8; 14]);
        m
    }

    #[test]
    fn parses_records_listen_backlog_and_done() {
        let mut dgram = record(AF_INET, 10, 8080, 0, 3, 128, 77);
        dgram.extend(record(AF_INET, 1, 8080, 5000, 10, 20, 78));
        let mut out = Vec::new();
        assert_eq!(parse_datagram(&dgram, &mut out).unwrap(), Chunk::More);
        assert_eq!(parse_datagram(&done(), &mut out).unwrap(), Chunk::Done);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].state, TcpState::Listen);
        assert_eq!(out[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((out[0].rx_queue, out[0].listen_backlog), (3, Some(128)));
        assert_eq!(out[1].remote, "10.0.0.9:5000".parse().unwrap());
        assert_eq!((out[1].rx_queue, out[1].tx_queue, out[1].inode), (10, 20, 78));
        assert_eq!(out[1].retransmits, Some(2));
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let good = record(AF_INET, 1, 1, 2, 0, 0, 1);
        for cut in 0..good.len() {
            let mut out = Vec::new();
            let _ = parse_datagram(&good[..cut], &mut out); // must not panic
        }
        let mut bad_len = good.clone();
        bad_len[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_datagram(&bad_len, &mut Vec::new()).is_err());
        let mut tiny = good.clone();
        tiny[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_datagram(&tiny, &mut Vec::new()).is_err());
        let mut bad_state = good.clone();
        bad_state[NLMSG_HDR + 1] = 99;
        assert!(parse_datagram(&bad_state, &mut Vec::new()).is_err());
        let mut err = (NLMSG_HDR as u32 + 4).to_ne_bytes().to_vec();
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0u8; 10]);
        err.extend_from_slice(&(-13i32).to_ne_bytes());
        assert_eq!(
            parse_datagram(&err, &mut Vec::new()).unwrap_err().raw_os_error(),
            Some(13)
        );
    }

    /// Found by the netlink_dump fuzz target: an error field of i32::MIN
    /// overflowed when negated into an errno.
    #[test]
    fn fuzz_found_error_message_with_i32_min_errno_is_malformed_not_overflow() {
        for field in [i32::MIN, 0, 13, -5000] {
            let mut err = (NLMSG_HDR as u32 + 4).to_ne_bytes().to_vec();
            err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            err.extend_from_slice(&[0u8; 10]);
            err.extend_from_slice(&field.to_ne_bytes());
            let e = parse_datagram(&err, &mut Vec::new()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "error field {field}: {e}");
        }
    }

    #[test]
    fn live_dump_agrees_with_proc_for_sockets_we_made() {
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _s = l.accept().unwrap();
        let l6 = TcpListener::bind("[::1]:0").ok();
        let ours = |t: &[SocketEntry]| {
            let mut v: Vec<(u64, TcpState, SocketAddr, SocketAddr, u32)> = t
                .iter()
                .filter(|e| {
                    e.local.port() == port
                        || e.remote.port() == port
                        || l6
                            .as_ref()
                            .is_some_and(|l| l.local_addr().is_ok_and(|a| a.port() == e.local.port()))
                })
                .map(|e| (e.inode, e.state, e.local, e.remote, e.rx_queue))
                .collect();
            v.sort();
            v
        };
        let via_netlink = read(ALL_STATES).unwrap();
        let via_proc = super::super::table::read(super::super::table::Namespace::Own).unwrap();
        let a = ours(&via_netlink);
        assert_eq!(a.len(), 3 + usize::from(l6.is_some()), "{a:?}");
        assert_eq!(a, ours(&via_proc));
        let listener = via_netlink
            .iter()
            .find(|e| e.state == TcpState::Listen && e.local.port() == port)
            .unwrap();
        assert_eq!(listener.listen_backlog, Some(128), "std's listen backlog");
        // The in-kernel state filter.
        let only_listen = read(1 << 10).unwrap();
        assert!(only_listen.iter().all(|e| e.state == TcpState::Listen));
        assert!(only_listen.iter().any(|e| e.local.port() == port));
    }

    #[test]
    fn port_filter_jumps_land_on_the_programs_own_boundaries() {
        let bc = port_filter(&[(Side::Local, 8080), (Side::Remote, 443)]);
        assert_eq!(bc.len(), 36);
        let op = |at: usize| (bc[at], bc[at + 1], u16::from_ne_bytes([bc[at + 2], bc[at + 3]]));
        assert_eq!(op(0), (BC_S_GE, 8, 20), "fails over to the second test");
        assert_eq!(op(4).2, 8080);
        assert_eq!(op(8), (BC_S_LE, 8, 12));
        assert_eq!(op(16), (BC_JMP, 4, 20), "to the end: accept");
        assert_eq!(op(20), (BC_D_GE, 8, 20), "past the end: reject");
        assert_eq!(op(28), (BC_D_LE, 8, 12));
        assert_eq!(op(24).2, 443);
    }

    #[test]
    fn the_kernel_runs_the_port_filter() {
        use std::net::{TcpListener, TcpStream};
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut keep = Vec::new();
        for (l, n) in [(&a, 3), (&b, 2), (&other, 4)] {
            for _ in 0..n {
                keep.push(TcpStream::connect(l.local_addr().unwrap()).unwrap());
                keep.push(l.accept().unwrap().0);
            }
        }
        let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        let count = |ports: &[(Side, u16)]| {
            let filter = port_filter(ports);
            let got = read_dumps(&[(ESTABLISHED, &filter)]).expect("a filtered dump");
            assert!(got.iter().all(|e| e.state == TcpState::Established));
            let mut one_walk = read_dumps_both_families(&[(ESTABLISHED, &filter)]).expect("one walk");
            let mut per_family = got.clone();
            one_walk.sort_by_key(|e| e.inode);
            per_family.sort_by_key(|e| e.inode);
            assert_eq!(one_walk, per_family, "both requests list the same sockets");
            got.len()
        };
        assert_eq!(count(&[(Side::Local, pa)]), 3, "the accepted ends");
        assert_eq!(count(&[(Side::Remote, pa)]), 3, "the connecting ends");
        assert_eq!(count(&[(Side::Local, pa), (Side::Remote, pa), (Side::Remote, pb)]), 8);
        assert_eq!(count(&[(Side::Local, pb), (Side::Remote, pb)]), 4);
        drop(keep);
    }
}
