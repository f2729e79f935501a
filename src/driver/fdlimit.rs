//! The file-descriptor budget: sessions may use the process's limit minus a
//! reserve, so a full fd table never takes the metrics endpoint, DNS or the
//! kernel scan down with it.

use std::io;

/// Descriptors kept, beyond the HTTP endpoint's connections, for its
/// listener and poller, the loop's poller, resolver threads, the netlink
/// socket, logs and files.
pub const RESERVED_FDS: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit, as the Go runtime does;
/// returns the limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// How many sockets sessions may hold under `limit`, with up to
/// `http_connections` open to the HTTP endpoint.
pub fn session_budget(limit: u64, http_connections: usize) -> usize {
    let kept = RESERVED_FDS.saturating_add(http_connections as u64);
    usize::try_from(limit.saturating_sub(kept)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_budget_keeps_a_reserve() {
        let limit = raise_nofile().unwrap();
        assert!(limit >= 1024);
        assert_eq!(session_budget(limit, 0), (limit - RESERVED_FDS) as usize);
        assert_eq!(session_budget(limit, 100), (limit - RESERVED_FDS - 100) as usize);
        assert_eq!(session_budget(50, 1024), 0);
    }
}
