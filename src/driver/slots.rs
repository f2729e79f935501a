//! A session's place in the driver: its socket, the token that names it in
//! readiness events, and the bookkeeping around both.

use mio::Token;

use crate::session::Session;
use crate::targets::TargetId;

/// The loop's own waker; session tokens never collide with it.
pub const WAKER: Token = Token(usize::MAX);

pub struct Slot {
    pub session: Session,
    pub target: TargetId,
    /// Numbers the sessions of one target from 0, for log lines.
    pub ordinal: u32,
    pub socket: Option<mio::net::TcpStream>,
    /// Bumped whenever the socket changes, so stale events are ignored.
    pub generation: u32,
    pub connecting: bool,
    pub wants_write: bool,
    /// Matches a DNS answer to the request it answers.
    pub resolve_seq: u64,
    /// The socket's inode, when the kernel view is on.
    pub inode: Option<u64>,
    /// Its target was removed by a reload (or it is an idle-discovery
    /// trial): once stopped, the slot may be reused.
    pub retired: bool,
    /// An idle-discovery trial session: its events go to the search only.
    pub trial: bool,
    /// A `/probe` check: its events go to its report only.
    pub probe: bool,
}

impl Slot {
    pub fn new(session: Session, target: TargetId, ordinal: u32) -> Slot {
        Slot {
            session,
            target,
            ordinal,
            socket: None,
            generation: 0,
            connecting: false,
            wants_write: false,
            resolve_seq: 0,
            inode: None,
            retired: false,
            trial: false,
            probe: false,
        }
    }

    /// The token for readiness events of this slot's current socket.
    pub fn token(&self, index: usize) -> Token {
        token(index, self.generation)
    }
}

/// Slot index in the low 32 bits, socket generation in the high ones.
pub fn token(slot: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | slot)
}

pub fn untoken(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_slot_and_generation() {
        for (slot, generation) in [(0, 0), (9_000, 1), (123_456, u32::MAX)] {
            assert_eq!(untoken(token(slot, generation)), (slot, generation));
        }
        assert_ne!(token(0, 0), WAKER);
    }
}
