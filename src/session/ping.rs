//! The probe's own frame: a masked client ping carrying the probe's id.
//!
//! Built on the stack rather than through `frames::encode`'s growable
//! buffer: it is the one frame every session sends every interval.

/// Payload of a ping: the probe id, big-endian.
pub const ID_LEN: usize = 8;
/// Header (2), masking key (4), payload.
pub const FRAME_LEN: usize = 2 + 4 + ID_LEN;

/// A ping frame (RFC 6455 sections 5.2 and 5.5.2): FIN, opcode 0x9, masked
/// as every client frame must be. The mask must be unpredictable (section
/// 5.3): callers pass one from a CSPRNG (`random_mask`).
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

/// A fresh masking key from the thread's CSPRNG, drawn 64 at a time: one
/// pass through the generator per 64 frames instead of one per frame.
pub fn random_mask() -> [u8; 4] {
    thread_local! {
        static MASKS: std::cell::RefCell<([[u8; 4]; 64], usize)> =
            const { std::cell::RefCell::new(([[0; 4]; 64], 64)) };
    }
    MASKS.with_borrow_mut(|(masks, next)| {
        if *next == masks.len() {
            rand::fill(masks.as_flattened_mut());
            *next = 0;
        }
        let mask = masks[*next];
        *next += 1;
        mask
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::frames::{encode, OpCode};

    #[test]
    fn it_is_the_frame_the_general_encoder_builds() {
        for (id, mask) in [(1u64, [0, 0, 0, 0]), (0x0102_0304_0506_0708, [0xde, 0xad, 0xbe, 0xef])] {
            let mut general = Vec::new();
            encode(&mut general, OpCode::Ping, &id.to_be_bytes(), mask);
            assert_eq!(&frame(id, mask)[..], &general[..]);
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

    #[test]
    fn masks_stay_fresh_across_refills_of_the_batch() {
        // Three refills of the batch of 64: every key new (a collision among
        // 200 random 32-bit keys has a chance of about 5 in a million).
        let masks: std::collections::HashSet<[u8; 4]> = (0..200).map(|_| random_mask()).collect();
        assert_eq!(masks.len(), 200);
        assert!(!masks.contains(&[0; 4]), "the batch was used before it was filled");
    }
}
