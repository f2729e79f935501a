//! Closed sets of failure and disconnect reasons. They become metric label
//! values, so they must stay small and fixed: free text goes to logs only.

use std::io;

use crate::labels::label_enum;

label_enum! {
    /// Why a connection attempt never reached the open state.
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
        /// The application protocol refused or never completed its own
        /// handshake (Socket.IO namespace, GraphQL `connection_ack`, MQTT
        /// CONNACK, STOMP CONNECTED); its code is in the detail.
        AppHandshake,
        /// The proxy could not be reached or would not make the tunnel:
        /// its status line or SOCKS reply is in the detail.
        Proxy,
    }
}

impl FailureReason {
    /// Classifies a failed TCP connect (or socket creation).
    pub fn from_connect_error(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => return Self::Refused,
            io::ErrorKind::TimedOut => return Self::ConnectTimeout,
            _ => {}
        }
        match err.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EADDRNOTAVAIL) => Self::Unreachable,
            Some(e) if is_fd_exhaustion(e) => Self::FdLimit,
            _ => Self::IoError,
        }
    }
}

/// EMFILE or ENFILE: this process or the whole system is out of descriptors.
pub fn is_fd_exhaustion(errno: i32) -> bool {
    matches!(errno, libc::EMFILE | libc::ENFILE)
}

label_enum! {
    /// Why an open session ended.
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
        /// The application's own heartbeat or probe went unanswered.
        AppTimeout,
        /// The application ended the session (Socket.IO disconnect, GraphQL
        /// 44xx close, MQTT DISCONNECT, STOMP ERROR).
        AppError,
        /// No data message for `message_timeout` while everything else was
        /// healthy: the feed stopped publishing.
        MessageTimeout,
    }
}

impl DisconnectReason {
    /// What this ending means when it happens before the session opened
    /// (during an application handshake): the attempt failed.
    pub fn before_open(self) -> FailureReason {
        match self {
            Self::Eof | Self::Reset => FailureReason::HandshakeEof,
            Self::ProtocolError => FailureReason::ProtocolError,
            Self::IoError => FailureReason::IoError,
            _ => FailureReason::AppHandshake,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_classified() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(FailureReason::from_connect_error(&refused), FailureReason::Refused);
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(FailureReason::from_connect_error(&emfile), FailureReason::FdLimit);
        let unreach = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(FailureReason::from_connect_error(&unreach), FailureReason::Unreachable);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(DisconnectReason::from_io_error(&reset), DisconnectReason::Reset);
    }
}
