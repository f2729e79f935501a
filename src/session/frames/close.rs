//! Close frame payloads (RFC 6455 sections 5.5.1 and 7.4): a status code and
//! a UTF-8 reason, or nothing.

use super::FrameError;

/// A close frame's payload, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close<'a> {
    /// No status code (section 7.1.5: "1005").
    NoStatus,
    Status {
        code: u16,
        reason: &'a str,
    },
}

/// Reads a peer's close payload; a code that may not be sent, a one-byte
/// payload or a reason that is not UTF-8 is the peer's protocol error.
pub fn parse(payload: &[u8]) -> Result<Close<'_>, FrameError> {
    match payload {
        [] => Ok(Close::NoStatus),
        [_] => Err(FrameError::Protocol("close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !may_be_sent(code) {
                return Err(FrameError::Protocol(
                    "close frame with a code that may not be sent (RFC 6455 section 7.4)",
                ));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Close::Status { code, reason })
        }
    }
}

/// Codes an endpoint may put in a close frame: the defined ones except
/// 1004 (reserved), 1005, 1006 and 1015 (never on the wire), registered
/// 1012 and 1013, and the ranges for libraries and applications.
pub fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// The payload of a close frame with `code` and no reason.
pub fn payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_and_the_reason_must_be_utf8() {
        assert_eq!(parse(&[]), Ok(Close::NoStatus));
        assert_eq!(
            parse(&[0x03, 0xe8, b'o', b'k']),
            Ok(Close::Status {
                code: 1000,
                reason: "ok"
            })
        );
        assert!(matches!(parse(&[0x03]), Err(FrameError::Protocol(_))));
        assert_eq!(parse(&[0x03, 0xe8, 0xff]), Err(FrameError::InvalidUtf8));
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999,
        ] {
            assert!(may_be_sent(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!may_be_sent(bad), "{bad}");
            assert!(matches!(parse(&payload(bad)), Err(FrameError::Protocol(_))), "{bad}");
        }
    }
}
