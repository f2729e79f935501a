//! Kernel receive timestamps (`SO_TIMESTAMPNS`) on TCP reads.
//!
//! The kernel stamps each segment when it arrives; `recvmsg` hands back the
//! stamp of the last segment read. The driver uses it two ways: a pong's RTT
//! ends when the pong reached this host, not when the loop got round to
//! reading it, and the gap between that and the loop's wake is its own read
//! delay, exported so that a stalled loop shows instead of hiding in RTTs.
//!
//! Stamps are on the wall clock and deadlines on the monotonic one: both are
//! read once per wake (`WakeClock`), and a stamp becomes an instant by their
//! offset, so a read costs no clock read of its own.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Instant;

/// Room for one `SCM_TIMESTAMPNS` message (a cmsghdr and a timespec), and
/// aligned for cmsghdr.
type ControlBuf = [u64; 8];

/// Asks the kernel to stamp received segments on this socket.
pub fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads into `buf` like `read(2)`; also returns when the last byte read
/// arrived, if the kernel said (it does once `enable` was called).
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut control = MaybeUninit::<ControlBuf>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<ControlBuf>() as _;
    // SAFETY: iov points into `buf` with its length, msg_control into
    // `control` with its size; both outlive the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, timestamp(&msg)))
}

fn timestamp(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `msg` was filled by recvmsg: CMSG_FIRSTHDR/CMSG_NXTHDR walk
    // only within msg_controllen and return null past its end; CMSG_DATA of
    // an SCM_TIMESTAMPNS message holds a timespec, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let want = libc::CMSG_LEN(size_of::<libc::timespec>() as u32) as usize;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS && c.cmsg_len as usize >= want {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                let (secs, nanos) = (u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?);
                return UNIX_EPOCH.checked_add(Duration::new(secs, nanos.min(999_999_999)));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Both clocks, read together at a wake.
#[derive(Debug, Clone, Copy)]
pub struct WakeClock {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl WakeClock {
    pub fn now() -> WakeClock {
        WakeClock {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// When data stamped `stamp` (wall clock) arrived, on the monotonic
    /// clock. Data read in this wake may have arrived after the clocks were
    /// read. `None` when the stamp is further than `MAX_PLAUSIBLE_DELAY`
    /// either way: the wall clock stepped (NTP, suspend) between stamp and
    /// reading, and the stamp says nothing about the loop.
    pub fn arrival(&self, stamp: SystemTime) -> Option<Instant> {
        match self.wall.duration_since(stamp) {
            Ok(before) if before <= MAX_PLAUSIBLE_DELAY => self.mono.checked_sub(before),
            Ok(_) => None,
            Err(e) if e.duration() <= MAX_PLAUSIBLE_DELAY => self.mono.checked_add(e.duration()),
            Err(_) => None,
        }
    }
}

/// Longer than any loop stall worth measuring.
const MAX_PLAUSIBLE_DELAY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn stamps_say_when_bytes_arrived_not_when_they_were_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        enable(&client).unwrap();
        let mut buf = [0u8; 16];
        // The kernel turns stamping on globally through deferred work, so the
        // very first segments after the first `enable` may go unstamped.
        let (before, read_at, stamp) = (0..20)
            .find_map(|_| {
                let before = SystemTime::now();
                server.write_all(b"pong").unwrap();
                std::thread::sleep(Duration::from_millis(50));
                let (n, stamp) = recv(&client, &mut buf).unwrap();
                assert_eq!(&buf[..n], b"pong");
                Some((before, SystemTime::now(), stamp?))
            })
            .expect("the kernel stamps segments once enabled");
        assert!(
            stamp >= before - Duration::from_millis(1),
            "{stamp:?} before the write {before:?}"
        );
        let waited = read_at.duration_since(stamp).unwrap();
        assert!(
            waited >= Duration::from_millis(45),
            "waited {waited:?}: the stamp is the arrival"
        );

        // Not enabled: bytes, no stamp.
        let plain = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut s2, _) = listener.accept().unwrap();
        s2.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(recv(&plain, &mut buf).unwrap(), (1, None));
    }

    #[test]
    fn stamps_become_instants_by_the_offset_of_the_clocks_read_at_the_wake() {
        let mono = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = WakeClock { mono, wall };
        let ms = Duration::from_millis;
        // Arrived 3 ms before the wake.
        assert_eq!(clock.arrival(wall - ms(3)), Some(mono - ms(3)));
        // Arrived while the wake was being handled, and read in it.
        assert_eq!(clock.arrival(wall + ms(2)), Some(mono + ms(2)));
        // The wall clock stepped between the stamp and the wake: no instant.
        assert_eq!(clock.arrival(wall - Duration::from_secs(60)), None);
        assert_eq!(clock.arrival(wall + Duration::from_secs(60)), None);
    }
}
