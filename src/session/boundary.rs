//! Where frames end in the bytes handed to tungstenite, without buffering
//! them: only headers are collected, payloads are counted past.
//!
//! It lets the core recognise the common read, one bare pong, and match it
//! without staging it through tungstenite's buffers, but only when the
//! codec holds no partial frame: then those bytes cannot be the rest of an
//! earlier frame.

/// Longest header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;

#[derive(Debug, Default, Clone)]
pub struct FrameBoundary {
    header: [u8; MAX_HEADER],
    /// Header bytes collected of the frame being read.
    have: usize,
    /// Payload bytes still to come of the frame being read.
    payload_left: u64,
}

impl FrameBoundary {
    /// True when every byte seen so far belongs to a complete frame.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left).map_or(bytes.len(), |left| left.min(bytes.len()));
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let want = header_len(&self.header[..self.have]);
            let n = (want - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == header_len(&self.header[..self.have]) {
                self.payload_left = payload_len(&self.header[..self.have]);
                self.have = 0;
            }
        }
    }
}

/// The length of a header whose first bytes are `seen`: 2 until the second
/// byte tells the rest (RFC 6455 section 5.2).
fn header_len(seen: &[u8]) -> usize {
    match seen.get(1) {
        None => 2,
        Some(b) => {
            let extended = match b & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if b & 0x80 != 0 { 4 } else { 0 };
            2 + extended + mask
        }
    }
}

fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(len)
        }
        short => u64::from(short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(chunks: &[&[u8]]) -> Vec<bool> {
        let mut b = FrameBoundary::default();
        chunks
            .iter()
            .map(|c| {
                b.feed(c);
                b.at_boundary()
            })
            .collect()
    }

    #[test]
    fn boundaries_are_found_across_every_header_form_and_split() {
        // A bare pong, an empty close, then a 300-byte binary frame (16-bit
        // length) and a masked 5-byte text frame.
        let mut long = vec![0x82, 126, 0x01, 0x2c];
        long.extend([7u8; 300]);
        let masked = [0x81, 0x85, 1, 2, 3, 4, b'h', b'e', b'l', b'l', b'o'];
        assert_eq!(after(&[&[0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 1]]), [true]);
        assert_eq!(after(&[&[0x88, 0]]), [true]);
        assert_eq!(
            after(&[&long[..1], &long[1..3], &long[3..100], &long[100..]]),
            [false, false, false, true]
        );
        assert_eq!(after(&[&masked[..6], &masked[6..]]), [false, true]);
        let both: Vec<u8> = long.iter().chain(masked.iter()).copied().collect();
        assert_eq!(after(&[&both[..304], &both[304..]]), [true, true]);
        // A 64-bit length keeps counting past many reads.
        let mut huge = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        huge.extend([0u8; 10]);
        assert_eq!(after(&[&huge]), [false]);
    }

    #[test]
    fn a_pong_shaped_payload_inside_a_frame_is_not_at_a_boundary() {
        let header: &[u8] = &[0x82, 10];
        let looks_like_pong: &[u8] = &[0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(after(&[header, looks_like_pong]), [false, true]);
    }
}
