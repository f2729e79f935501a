//! The WebSocket frame codec (RFC 6455 section 5), sans-IO and streaming:
//! `reader` turns a server's bytes into frames without holding data
//! payloads, `writer` builds the client's masked frames, `close` reads and
//! checks close payloads, `utf8` validates text as it arrives.

pub mod close;
pub mod reader;
pub mod utf8;
pub mod writer;

#[cfg(test)]
mod tests;

pub use reader::{DataKind, Frame, FrameReader, Payload};
pub use writer::{encode, OpCode};

/// Why the server's bytes are not a WebSocket: the close code to send back
/// comes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A framing rule broken (1002).
    Protocol(&'static str),
    /// Text or a close reason that is not UTF-8 (1007).
    InvalidUtf8,
    /// A message larger than what may be held of it (1009).
    TooBig,
}

impl FrameError {
    /// The close code that says why (section 7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::InvalidUtf8 => 1007,
            FrameError::TooBig => 1009,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Protocol(what) => write!(f, "WebSocket protocol error: {what}"),
            FrameError::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message or close reason"),
            FrameError::TooBig => f.write_str("message larger than max_message_size"),
        }
    }
}
