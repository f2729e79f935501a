//! The kernel's own TCP counter of established connections
//! (`Tcp: CurrEstab` in `/proc/net/snmp`, IPv4 and IPv6 together), so the
//! host scan can count ESTABLISHED sockets without listing them.
//!
//! What it counts depends on the kernel: RFC 1213 says ESTABLISHED and
//! CLOSE_WAIT, Linux counted ESTABLISHED only until 2024 (and stable
//! kernels took the change at different versions), so `calibrate` finds
//! out on the running kernel instead of guessing from its version.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Which sockets `CurrEstab` counts on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrEstab {
    EstablishedOnly,
    EstablishedAndCloseWait,
}

impl CurrEstab {
    /// ESTABLISHED sockets, from the counter and the CLOSE_WAIT sockets a
    /// dump found.
    pub fn established(self, curr_estab: u64, close_wait: u64) -> u64 {
        match self {
            CurrEstab::EstablishedOnly => curr_estab,
            CurrEstab::EstablishedAndCloseWait => curr_estab.saturating_sub(close_wait),
        }
    }
}

/// `CurrEstab` out of `/proc/net/snmp`'s text: the `Tcp:` header line
/// names the fields of the `Tcp:` line after it.
pub fn parse_curr_estab(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?;
    let values = tcp.next()?;
    let at = names.split_whitespace().position(|n| n == "CurrEstab")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Reads `CurrEstab` of our network namespace.
pub fn curr_estab() -> io::Result<u64> {
    let mut text = String::new();
    std::fs::File::open("/proc/net/snmp")?.read_to_string(&mut text)?;
    parse_curr_estab(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Tcp: CurrEstab in /proc/net/snmp"))
}

/// Connections put into CLOSE_WAIT per trial: the two readings of the
/// counter differ by this many or by twice as many, give or take what the
/// rest of the host opened and closed in between.
const PAIRS: usize = 64;

/// Finds out what `CurrEstab` counts: opens loopback connections, then
/// closes one end of each, which moves that end out of ESTABLISHED and the
/// other into CLOSE_WAIT. If CLOSE_WAIT counts, the counter drops by one
/// per connection, else by two. Other connections of the host opening or
/// closing in between blur a trial, so up to nine trials run until one
/// answer leads by two.
pub fn calibrate() -> io::Result<CurrEstab> {
    let (mut only, mut with_close_wait) = (0u32, 0u32);
    for _ in 0..9 {
        match trial()? {
            Some(CurrEstab::EstablishedOnly) => only += 1,
            Some(CurrEstab::EstablishedAndCloseWait) => with_close_wait += 1,
            None => {}
        }
        if only >= with_close_wait + 2 {
            return Ok(CurrEstab::EstablishedOnly);
        }
        if with_close_wait >= only + 2 {
            return Ok(CurrEstab::EstablishedAndCloseWait);
        }
    }
    Err(io::Error::other("CurrEstab moved inconsistently (a busy host?)"))
}

fn trial() -> io::Result<Option<CurrEstab>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut clients = Vec::with_capacity(PAIRS);
    let mut servers = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        clients.push(TcpStream::connect(listener.local_addr()?)?);
        servers.push(listener.accept()?.0);
    }
    let before = curr_estab()?;
    drop(servers);
    // The FINs are delivered on loopback before close returns; a read
    // that sees the end confirms each client is in CLOSE_WAIT.
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(1)))?;
        let _ = c.read(&mut [0u8; 1]);
        let _ = c.flush();
    }
    let after = curr_estab()?;
    // Reset rather than close: no TIME_WAIT left behind by a calibration.
    for c in &clients {
        let _ = socket2::SockRef::from(c).set_linger(Some(Duration::ZERO));
    }
    drop(clients);
    // Nearer which of the two, by a clear margin.
    let drop_by = before as i64 - after as i64;
    let pairs = PAIRS as i64;
    Ok(if (drop_by - pairs).abs() < pairs / 4 {
        Some(CurrEstab::EstablishedAndCloseWait)
    } else if (drop_by - 2 * pairs).abs() < pairs / 4 {
        Some(CurrEstab::EstablishedOnly)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curr_estab_is_found_by_its_header() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens CurrEstab InSegs\n\
                    Tcp: 1 200 120000 -1 697943 218 15470977\n\
                    Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(parse_curr_estab(text), Some(218));
        assert_eq!(parse_curr_estab("Tcp: CurrEstab\n"), None, "no values line");
        assert_eq!(parse_curr_estab("Tcp: A B\nTcp: 1 2\n"), None);
        assert_eq!(parse_curr_estab("Tcp: CurrEstab\nTcp: -1\n"), None, "never negative");
        assert_eq!(parse_curr_estab(""), None);
    }

    #[test]
    fn established_follows_what_the_counter_counts() {
        assert_eq!(CurrEstab::EstablishedOnly.established(100, 7), 100);
        assert_eq!(CurrEstab::EstablishedAndCloseWait.established(100, 7), 93);
        assert_eq!(
            CurrEstab::EstablishedAndCloseWait.established(3, 7),
            0,
            "a race never underflows"
        );
    }

    #[test]
    fn the_running_kernel_is_calibrated_and_agrees_with_a_full_dump() {
        let counts = calibrate().expect("calibrated");
        // Sockets in both states, then the counter against a dump.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut keep = Vec::new();
        for i in 0..10 {
            let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let s = listener.accept().unwrap().0;
            if i < 4 {
                drop(s); // c goes to CLOSE_WAIT
            } else {
                keep.push(s);
            }
            keep.push(c);
        }
        std::thread::sleep(Duration::from_millis(50));
        // Other tests open and close sockets meanwhile: retry until a dump
        // and the counter agree, which they must on a quiet moment.
        let agree = (0..50).any(|_| {
            let table = super::super::netlink::read(super::super::netlink::ALL_STATES).unwrap();
            let count = |s| table.iter().filter(|e| e.state == s).count() as u64;
            let est = count(super::super::TcpState::Established);
            let cw = count(super::super::TcpState::CloseWait);
            let derived = counts.established(curr_estab().unwrap(), cw);
            derived == est || {
                std::thread::sleep(Duration::from_millis(20));
                false
            }
        });
        assert!(agree, "CurrEstab ({counts:?}) never agreed with a dump");
    }
}
