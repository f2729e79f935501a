//! Why a session failed, in the kernel's words: the agent knows *that* a
//! pong did not come; the socket's TCP state says whether the peer closed,
//! the peer's application hung, or the path died.

use super::{TcpSnapshot, TcpState};
use crate::labels::label_enum;
use crate::session::{DisconnectReason, FailureReason};

label_enum! {
    /// What caused a failure: mostly what the socket's TCP state says; the
    /// last values come from the pattern of the target's sessions instead.
    pub enum Diagnosis {
        /// ESTABLISHED and the peer's kernel acknowledges everything, yet the
        /// application does not answer: the peer process is hung or overloaded.
        PeerUnresponsive,
        /// Data sent and not acknowledged, retransmissions under way: the
        /// network path or the peer host is gone.
        PathDead,
        /// CLOSE_WAIT: the peer closed its side.
        PeerClosed,
        /// Still in SYN_SENT: the SYN was dropped (filtered), not refused.
        SynUnanswered,
        /// The kernel no longer has the connection (reset or closed).
        SocketGone,
        /// The target's sessions keep ending at one age: something on the
        /// path limits how long a connection may live (see
        /// `observer::lifetime`).
        LifetimeLimit,
        /// Ended after exactly as much silence as the path's idle timeout
        /// (found by idle discovery): the path closed it for being quiet.
        IdleKilled,
    }
}

/// The failures whose cause the TCP state can tell; for the others (DNS,
/// refused, TLS, a bad handshake answer, an application that said no)
/// the reason already says it all.
pub fn failure_wants_diagnosis(reason: FailureReason) -> bool {
    matches!(
        reason,
        FailureReason::ConnectTimeout
            | FailureReason::HandshakeTimeout
            | FailureReason::HandshakeEof
            | FailureReason::IoError
    )
}

/// Not where the peer said why (a close frame, an application error), we
/// closed, or the transport was healthy by definition (`message_timeout`).
pub fn disconnect_wants_diagnosis(reason: DisconnectReason) -> bool {
    !matches!(
        reason,
        DisconnectReason::LocalClose
            | DisconnectReason::ProtocolError
            | DisconnectReason::PeerClose
            | DisconnectReason::AppError
            | DisconnectReason::MessageTimeout
    )
}

/// Reads a snapshot taken when the session failed. `None` when the kernel
/// gives no clear answer.
pub fn diagnose(snapshot: &TcpSnapshot) -> Option<Diagnosis> {
    match snapshot.state {
        TcpState::SynSent => Some(Diagnosis::SynUnanswered),
        TcpState::CloseWait | TcpState::LastAck => Some(Diagnosis::PeerClosed),
        TcpState::Close => Some(Diagnosis::SocketGone),
        TcpState::Established => {
            let retransmitting = snapshot.retransmits > 0 || snapshot.backoff > 0 || snapshot.total_retrans > 0;
            // The peer's kernel acknowledged something after its application
            // last sent us data: it is alive, its application is not.
            let acks_still_flowing = snapshot.since_last_ack_recv < snapshot.since_last_data_recv;
            if snapshot.unacked > 0 && retransmitting {
                Some(Diagnosis::PathDead)
            } else if snapshot.unacked == 0 && snapshot.probes > 0 && !acks_still_flowing {
                // Our data cannot even leave (no route: the peer's host or
                // link is gone) and nothing has been heard since.
                Some(Diagnosis::PathDead)
            } else if snapshot.unacked == 0 {
                // Everything we sent was acknowledged (or the peer's window
                // is shut and it answers zero-window probes).
                Some(Diagnosis::PeerUnresponsive)
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap(state: TcpState, unacked: u32, retransmits: u8) -> TcpSnapshot {
        TcpSnapshot {
            state,
            unacked,
            retransmits,
            probes: 0,
            backoff: retransmits,
            total_retrans: u32::from(retransmits),
            rtt: Duration::from_micros(80),
            since_last_data_recv: Duration::from_secs(6),
            since_last_ack_recv: Duration::from_millis(4),
        }
    }

    #[test]
    fn kernel_states_map_to_diagnoses() {
        assert_eq!(
            diagnose(&snap(TcpState::Established, 0, 0)),
            Some(Diagnosis::PeerUnresponsive)
        );
        assert_eq!(diagnose(&snap(TcpState::Established, 2, 3)), Some(Diagnosis::PathDead));
        assert_eq!(
            diagnose(&snap(TcpState::Established, 1, 0)),
            None,
            "in flight, no retransmit yet"
        );
        assert_eq!(diagnose(&snap(TcpState::CloseWait, 0, 0)), Some(Diagnosis::PeerClosed));
        assert_eq!(diagnose(&snap(TcpState::SynSent, 0, 2)), Some(Diagnosis::SynUnanswered));
        assert_eq!(diagnose(&snap(TcpState::Close, 0, 0)), Some(Diagnosis::SocketGone));
        assert_eq!(diagnose(&snap(TcpState::FinWait1, 0, 0)), None);
    }

    #[test]
    fn a_vanished_route_is_path_dead_not_a_hung_peer() {
        // Seen when the peer's network namespace was deleted: the ping never
        // left (unacked 0), the kernel is probing, nothing heard since.
        let gone = TcpSnapshot {
            probes: 1,
            since_last_ack_recv: Duration::from_millis(820),
            since_last_data_recv: Duration::from_millis(820),
            ..snap(TcpState::Established, 0, 0)
        };
        assert_eq!(diagnose(&gone), Some(Diagnosis::PathDead));
        // A peer that only stopped reading answers zero-window probes.
        let not_reading = TcpSnapshot {
            probes: 3,
            since_last_ack_recv: Duration::from_millis(5),
            ..gone
        };
        assert_eq!(diagnose(&not_reading), Some(Diagnosis::PeerUnresponsive));
    }

    #[test]
    fn only_failures_the_kernel_can_explain_are_diagnosed() {
        assert!(failure_wants_diagnosis(FailureReason::ConnectTimeout));
        assert!(!failure_wants_diagnosis(FailureReason::Refused));
        assert!(!failure_wants_diagnosis(FailureReason::Tls));
        assert!(disconnect_wants_diagnosis(DisconnectReason::PongTimeout));
        assert!(disconnect_wants_diagnosis(DisconnectReason::Eof));
        assert!(!disconnect_wants_diagnosis(DisconnectReason::LocalClose));
        let labels: std::collections::HashSet<_> = Diagnosis::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels.len(), Diagnosis::ALL.len());
    }
}
