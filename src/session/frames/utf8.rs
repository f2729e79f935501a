//! UTF-8 validation of a text message that arrives in pieces: invalid bytes
//! are found as soon as they arrive (RFC 6455 section 8.1 lets an endpoint
//! fail fast), and a code point split between pieces is carried over.

/// The incomplete code point at the end of what was fed so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Stream {
    carry: [u8; 4],
    carried: u8,
}

/// The bytes are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Stream {
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carried > 0 {
            let have = usize::from(self.carried);
            let take = (sequence_len(self.carry[0]) - have).min(bytes.len());
            self.carry[have..have + take].copy_from_slice(&bytes[..take]);
            self.carried += take as u8;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.carry[..usize::from(self.carried)]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => return Ok(()), // still incomplete: `bytes` is empty
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A valid start of a code point, cut off by the piece's end.
                let tail = &bytes[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carried = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The message ended: a code point still incomplete is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.carried == 0;
        *self = Utf8Stream::default();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// How long the sequence that `lead` starts is; only called on the lead
/// byte of a valid incomplete sequence, so 2 to 4.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Stream::default();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.finish()
    }

    #[test]
    fn a_code_point_split_anywhere_is_valid_and_a_bad_byte_fails_on_arrival() {
        let text = "κόσμε €𝄞".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(in_pieces(text, &[cut]), Ok(()), "cut at {cut}");
        }
        // Fail fast: the piece holding the bad byte fails, not the end.
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(&[0xce, 0xba]), Ok(()));
        assert_eq!(v.feed(&[0xe1]), Ok(()));
        assert_eq!(v.feed(&[0x80, 0x28]), Err(InvalidUtf8));
        // An impossible continuation of a carried start fails at once.
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(&[0xf0]), Ok(()));
        assert_eq!(v.feed(&[0x28]), Err(InvalidUtf8));
        // A surrogate (ED A0 80) is caught from its second byte.
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(&[0xed]), Ok(()));
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8));
        // A message that ends inside a code point.
        assert_eq!(in_pieces(&[b'a', 0xe2, 0x82], &[2]), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn pieces_agree_with_validating_the_whole(bytes in proptest::collection::vec(any::<u8>(), 0..40),
                                                   cuts in proptest::collection::vec(0usize..40, 0..5)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let whole = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(in_pieces(&bytes, &cuts).is_ok(), whole);
        }

        #[test]
        fn valid_text_in_any_pieces_is_valid(text in "\\PC{0,20}", cuts in proptest::collection::vec(0usize..80, 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(in_pieces(text.as_bytes(), &cuts), Ok(()));
        }
    }
}
