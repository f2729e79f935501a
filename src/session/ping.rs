//! The probe's own frame: a masked client ping carrying the probe's id.
//!
//! Built here rather than by tungstenite's writer because it is the one frame
//! every session sends every interval: the writer's path (a payload
//! allocation, its frame buffer, then the session's output buffer) costs
//! more than the rest of a probe together. Likewise its answer, when a read
//! holds exactly one bare pong (see `bare_pong`). Everything else stays with
//! tungstenite.

/// Payload of a ping: the probe id, big-endian.
pub const ID_LEN: usize = 8;
/// Header (2), masking key (4), payload.
pub const FRAME_LEN: usize = 2 + 4 + ID_LEN;

/// A ping frame (RFC 6455 sections 5.2 and 5.5.2): FIN, opcode 0x9, masked
/// as every client frame must be. The mask must be unpredictable (section
/// 5.3): callers pass one from a CSPRNG, the same source tungstenite uses.
pub fn frame(id: u64, mask: [u8; 4]) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0] = 0x80 | 0x9;
    f[1] = 0x80 | ID_LEN as u8;
    f[2..6].copy_from_slice(&mask);
    for (i, b) in id.to_be_bytes().into_iter().enumerate() {
        f[6 + i] = b ^ mask[i % 4];
    }
    f
}

/// The payload of `bytes` if they are exactly one pong frame carrying a
/// probe id as a server sends it: FIN, no extension bits, unmasked (RFC
/// 6455 section 5.1), 8 bytes long. Anything else goes to tungstenite.
pub fn bare_pong(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        [0x8a, len, payload @ ..] if usize::from(*len) == ID_LEN && payload.len() == ID_LEN => Some(payload),
        _ => None,
    }
}

/// A fresh masking key from the thread's CSPRNG.
pub fn random_mask() -> [u8; 4] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::memstream::MemStream;
    use tungstenite::protocol::Role;
    use tungstenite::{Message, WebSocket};

    #[test]
    fn tungstenite_as_a_server_reads_it_as_a_ping_with_the_id() {
        for (id, mask) in [(1u64, [0, 0, 0, 0]), (0x0102_0304_0506_0708, [0xde, 0xad, 0xbe, 0xef])] {
            let mut stream = MemStream::default();
            stream.push_input(&frame(id, mask));
            let mut server = WebSocket::from_raw_socket(stream, Role::Server, None);
            match server.read() {
                Ok(Message::Ping(p)) => assert_eq!(&p[..], &id.to_be_bytes()),
                other => panic!("not a ping: {other:?}"),
            }
        }
    }

    #[test]
    fn the_payload_is_masked_on_the_wire() {
        let f = frame(0, [1, 2, 3, 4]);
        assert_eq!(&f[..2], &[0x89, 0x88]);
        assert_eq!(&f[6..], &[1, 2, 3, 4, 1, 2, 3, 4]);
        assert_ne!(
            random_mask(),
            random_mask(),
            "masks must vary (a 2^-32 chance of a false alarm)"
        );
    }
}
