//! An in-memory duplex stream: tungstenite reads what the driver received
//! and writes into a buffer the driver sends. This keeps the session core
//! free of sockets while still using tungstenite as the frame codec.

use std::io::{self, Read, Write};

use super::boundary::FrameBoundary;

#[derive(Debug, Default)]
pub struct MemStream {
    input: Vec<u8>,
    input_pos: usize,
    eof: bool,
    /// Frame ends in everything tungstenite was given, this stream's input
    /// and the bytes that came with the handshake answer.
    frames: FrameBoundary,
    pub output: Vec<u8>,
}

impl MemStream {
    /// A stream for a codec that starts with `leftover` already in hand.
    pub fn after_handshake(leftover: &[u8]) -> Self {
        let mut stream = MemStream::default();
        stream.frames.feed(leftover);
        stream
    }

    pub fn push_input(&mut self, bytes: &[u8]) {
        if self.input_pos == self.input.len() {
            self.input.clear();
            self.input_pos = 0;
        }
        self.frames.feed(bytes);
        self.input.extend_from_slice(bytes);
    }

    /// True when the codec has read all input and every frame in it was
    /// whole: after it has been driven until it would block, it then holds
    /// no bytes of its own.
    pub fn drained_at_frame_boundary(&self) -> bool {
        self.input_pos == self.input.len() && self.frames.at_boundary()
    }

    pub fn set_eof(&mut self) {
        self.eof = true;
    }

    /// Frees fully consumed input: idle sessions far outnumber busy ones,
    /// so none should keep the buffer of its last read.
    pub fn compact(&mut self) {
        if self.input_pos == self.input.len() {
            self.input = Vec::new();
            self.input_pos = 0;
        }
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.input[self.input_pos..];
        if available.is_empty() {
            // Zero means EOF to tungstenite; until the peer really closed,
            // an empty buffer is "no data yet".
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.input_pos += n;
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_would_block_until_eof() {
        let mut s = MemStream::default();
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        s.push_input(b"abcdef");
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"abcd");
        s.push_input(b"gh");
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"efgh");
        s.set_eof();
        assert_eq!(s.read(&mut buf).unwrap(), 0);
    }
}
