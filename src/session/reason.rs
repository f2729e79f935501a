//! Closed sets of failure and disconnect reasons. They become metric label
//! values, so they must stay small and fixed: free text goes to logs only.

use std::fmt;
use std::io;

/// Why a connection attempt never reached the open state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Dns,
    Refused,
    Unreachable,
    ConnectTimeout,
    Tls,
    HandshakeTimeout,
    HandshakeStatus,
    BadAccept,
    ProtocolError,
    /// The connection ended (EOF or reset) before the handshake finished.
    HandshakeEof,
    /// The local process ran out of file descriptors (EMFILE/ENFILE).
    FdLimit,
    IoError,
}

impl FailureReason {
    pub const ALL: [FailureReason; 12] = [
        Self::Dns,
        Self::Refused,
        Self::Unreachable,
        Self::ConnectTimeout,
        Self::Tls,
        Self::HandshakeTimeout,
        Self::HandshakeStatus,
        Self::BadAccept,
        Self::ProtocolError,
        Self::HandshakeEof,
        Self::FdLimit,
        Self::IoError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::ConnectTimeout => "connect_timeout",
            Self::Tls => "tls",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::HandshakeStatus => "handshake_status",
            Self::BadAccept => "bad_accept",
            Self::ProtocolError => "protocol_error",
            Self::HandshakeEof => "handshake_eof",
            Self::FdLimit => "fd_limit",
            Self::IoError => "io_error",
        }
    }

    /// Classifies a failed TCP connect (or socket creation).
    pub fn from_connect_error(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => return Self::Refused,
            io::ErrorKind::TimedOut => return Self::ConnectTimeout,
            _ => {}
        }
        match err.raw_os_error() {
            Some(libc_errno::EHOSTUNREACH | libc_errno::ENETUNREACH | libc_errno::EADDRNOTAVAIL) => Self::Unreachable,
            Some(libc_errno::EMFILE | libc_errno::ENFILE) => Self::FdLimit,
            _ => Self::IoError,
        }
    }
}

/// Why an open session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    IdleTimeout,
    PongTimeout,
    PeerClose,
    Eof,
    Reset,
    ProtocolError,
    IoError,
    /// Our unsent output passed its cap: the peer stopped reading.
    SendBacklog,
    /// We closed it: shutdown, or a one-shot status check finished.
    LocalClose,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 9] = [
        Self::IdleTimeout,
        Self::PongTimeout,
        Self::PeerClose,
        Self::Eof,
        Self::Reset,
        Self::ProtocolError,
        Self::IoError,
        Self::SendBacklog,
        Self::LocalClose,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdleTimeout => "idle_timeout",
            Self::PongTimeout => "pong_timeout",
            Self::PeerClose => "peer_close",
            Self::Eof => "eof",
            Self::Reset => "reset",
            Self::ProtocolError => "protocol_error",
            Self::IoError => "io_error",
            Self::SendBacklog => "send_backlog",
            Self::LocalClose => "local_close",
        }
    }

    pub fn from_io_error(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
                Self::Reset
            }
            _ => Self::IoError,
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The few errno values we classify on; spelled out to avoid a libc dependency.
mod libc_errno {
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const EADDRNOTAVAIL: i32 = 99;
    pub const ENETUNREACH: i32 = 101;
    pub const EHOSTUNREACH: i32 = 113;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in FailureReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {r}");
            assert!(r.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        let mut seen = std::collections::HashSet::new();
        for r in DisconnectReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {r}");
        }
    }

    #[test]
    fn connect_errors_are_classified() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(FailureReason::from_connect_error(&refused), FailureReason::Refused);
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(FailureReason::from_connect_error(&emfile), FailureReason::FdLimit);
        let unreach = io::Error::from_raw_os_error(113);
        assert_eq!(FailureReason::from_connect_error(&unreach), FailureReason::Unreachable);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(DisconnectReason::from_io_error(&reset), DisconnectReason::Reset);
    }
}
