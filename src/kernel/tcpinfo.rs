//! `TCP_INFO` for one socket: the kernel's own account of a connection,
//! read per fd at a cost independent of how many sockets the host has.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::TcpState;

/// The fields of `struct tcp_info` that diagnoses use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSnapshot {
    pub state: TcpState,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Consecutive retransmission timeouts of the current segment.
    pub retransmits: u8,
    /// Zero-window or keepalive probes sent without answer.
    pub probes: u8,
    pub backoff: u8,
    pub total_retrans: u32,
    /// The kernel's smoothed RTT.
    pub rtt: Duration,
    pub since_last_data_recv: Duration,
    pub since_last_ack_recv: Duration,
}

impl TcpSnapshot {
    /// A short human summary for log lines.
    pub fn summary(&self) -> String {
        format!(
            "kernel: {} unacked={} retransmits={} probes={} total_retrans={} srtt={:.1}ms last_ack={}ms last_data={}ms",
            self.state,
            self.unacked,
            self.retransmits,
            self.probes,
            self.total_retrans,
            self.rtt.as_secs_f64() * 1e3,
            self.since_last_ack_recv.as_millis(),
            self.since_last_data_recv.as_millis()
        )
    }
}

/// Reads `TCP_INFO` of a TCP socket.
pub fn read(socket: &impl AsRawFd) -> io::Result<TcpSnapshot> {
    // SAFETY: tcp_info is plain old data, so all-zero is a valid value;
    // getsockopt writes at most `len` bytes into it and reports how many.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let state = TcpState::from_kernel(info.tcpi_state)
        .ok_or_else(|| io::Error::other(format!("unknown TCP state {}", info.tcpi_state)))?;
    Ok(TcpSnapshot {
        state,
        unacked: info.tcpi_unacked,
        retransmits: info.tcpi_retransmits,
        probes: info.tcpi_probes,
        backoff: info.tcpi_backoff,
        total_retrans: info.tcpi_total_retrans,
        rtt: Duration::from_micros(u64::from(info.tcpi_rtt)),
        since_last_data_recv: Duration::from_millis(u64::from(info.tcpi_last_data_recv)),
        since_last_ack_recv: Duration::from_millis(u64::from(info.tcpi_last_ack_recv)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn reads_established_then_close_wait_on_a_real_socket_pair() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        let s = read(&client).unwrap();
        assert_eq!(s.state, TcpState::Established);
        assert!(s.rtt > Duration::ZERO && s.rtt < Duration::from_millis(200), "{s:?}");
        drop(server); // the peer closes: we are left in CLOSE_WAIT
        let mut got = None;
        for _ in 0..100 {
            got = Some(read(&client).unwrap().state);
            if got == Some(TcpState::CloseWait) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, Some(TcpState::CloseWait));
    }

    #[test]
    fn tcp_info_agrees_with_the_proc_table_for_the_same_socket() {
        use crate::kernel::owned::socket_inode;
        use crate::kernel::table::{self, Namespace};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        let inode = socket_inode(&client).unwrap();
        let row = table::read(Namespace::Own)
            .unwrap()
            .into_iter()
            .find(|e| e.inode == inode)
            .expect("in /proc");
        assert_eq!(read(&client).unwrap().state, row.state);
        assert_eq!(row.state, TcpState::CloseWait);
        let l_inode = socket_inode(&listener).unwrap();
        let l_row = table::read(Namespace::Own)
            .unwrap()
            .into_iter()
            .find(|e| e.inode == l_inode)
            .unwrap();
        assert_eq!(read(&listener).unwrap().state, l_row.state);
    }

    #[test]
    fn a_non_tcp_fd_is_an_error_not_a_panic() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(read(&file).is_err());
    }
}
