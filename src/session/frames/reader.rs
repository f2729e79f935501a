//! Decodes a server's frames (RFC 6455 section 5) as the bytes arrive,
//! without holding data payloads: a data frame comes out as ranges of the
//! input it was read from, as soon as any of its bytes are there, so a
//! message of any size costs the reader nothing. Text is validated as it
//! comes. Only headers and control payloads split between reads are kept.

use std::ops::Range;

use super::utf8::Utf8Stream;
use super::FrameError;

/// A control frame's payload (at most 125 bytes, section 5.5).
pub const MAX_CONTROL: usize = 125;
/// Longest header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Text,
    Binary,
}

/// What the bytes held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes of a data message: `input[range]` of the input just given;
    /// `end` with its last bytes (the range may then be empty).
    Data {
        kind: DataKind,
        range: Range<usize>,
        end: bool,
    },
    Ping(Payload),
    Pong(Payload),
    Close(Payload),
}

/// A control frame's payload: where it lies in the input just given, or,
/// when it came split between reads, the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    In(Range<usize>),
    Held(Box<Control>),
}

impl Payload {
    /// The payload's bytes; `input` is what the frame was read from.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self {
            Payload::In(range) => input.get(range.clone()).unwrap_or_default(),
            Payload::Held(control) => control.payload(),
        }
    }
}

/// A control frame's payload collected across reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Control {
    len: u8,
    bytes: [u8; MAX_CONTROL],
}

impl Control {
    fn new(payload: &[u8]) -> Control {
        let mut c = Control {
            len: 0,
            bytes: [0; MAX_CONTROL],
        };
        c.push(payload);
        c
    }

    fn push(&mut self, more: &[u8]) {
        let at = usize::from(self.len);
        let n = more.len().min(MAX_CONTROL - at);
        self.bytes[at..at + n].copy_from_slice(&more[..n]);
        self.len += n as u8;
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control({:?})", self.payload())
    }
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Current {
    opcode: u8,
    fin: bool,
    left: u64,
}

/// A data message that has begun.
#[derive(Debug, Clone, Copy)]
struct Message {
    kind: DataKind,
    utf8: Utf8Stream,
}

#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; MAX_HEADER],
    /// Header bytes collected of the next frame.
    have: u8,
    current: Option<Current>,
    message: Option<Message>,
    /// A control payload split between reads (rare: boxed).
    control: Option<Box<Control>>,
}

impl FrameReader {
    /// The next frame, or the next bytes of a data frame, in
    /// `input[*pos..]`; advances `pos` past what it read. `None` once
    /// everything was read and more is needed.
    pub fn next(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(current) = self.current {
                match self.payload(current, input, pos)? {
                    Step::Frame(frame) => return Ok(Some(frame)),
                    Step::NeedMore => return Ok(None),
                    Step::Again => continue,
                }
            }
            if !self.header(input, pos)? {
                return Ok(None);
            }
        }
    }

    /// The payload of `input` when it is exactly one whole pong and no
    /// frame is partly read: the commonest read at scale, matched without
    /// the general path (which costs several times more per probe). The
    /// reader's state is what it would be after reading it.
    pub fn lone_pong<'a>(&self, input: &'a [u8]) -> Option<&'a [u8]> {
        match input {
            [0x8a, len @ 0..=125, payload @ ..] if usize::from(*len) == payload.len() && self.at_frame_boundary() => {
                Some(payload)
            }
            _ => None,
        }
    }

    /// Whether no frame is partly read: the next byte starts a frame.
    pub fn at_frame_boundary(&self) -> bool {
        self.have == 0 && self.current.is_none()
    }

    /// Collects the next header; true when it is complete and checked.
    fn header(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, FrameError> {
        let rest = &input[*pos..];
        if self.have == 0 && rest.len() >= 2 && rest.len() >= header_len(&rest[..2]) {
            // The common case: the whole header in this read.
            let len = header_len(&rest[..2]);
            *pos += len;
            return self.start_frame(&rest[..len]).map(|()| true);
        }
        loop {
            let have = usize::from(self.have);
            let want = header_len(&self.header[..have]);
            if have == want {
                break;
            }
            let n = (want - have).min(input.len() - *pos);
            if n == 0 {
                return Ok(false);
            }
            self.header[have..have + n].copy_from_slice(&input[*pos..*pos + n]);
            self.have += n as u8;
            *pos += n;
        }
        let header = self.header;
        let have = usize::from(self.have);
        self.have = 0;
        self.start_frame(&header[..have])?;
        Ok(true)
    }

    /// Checks a complete header and starts reading its frame.
    fn start_frame(&mut self, h: &[u8]) -> Result<(), FrameError> {
        let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
        if h[0] & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set without an extension"));
        }
        if h[1] & 0x80 != 0 {
            return Err(FrameError::Protocol(
                "masked frame from the server (RFC 6455 section 5.1)",
            ));
        }
        let left = payload_len(h);
        if left > i64::MAX as u64 {
            return Err(FrameError::Protocol("frame length with the most significant bit set"));
        }
        match opcode {
            0x0 if self.message.is_none() => {
                return Err(FrameError::Protocol("continuation frame without a message to continue"))
            }
            0x0 => {}
            0x1 | 0x2 if self.message.is_some() => {
                return Err(FrameError::Protocol("new data frame inside a fragmented message"))
            }
            0x1 | 0x2 => {
                let kind = if opcode == 0x1 {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                self.message = Some(Message {
                    kind,
                    utf8: Utf8Stream::default(),
                });
            }
            0x8..=0xa if !fin => return Err(FrameError::Protocol("fragmented control frame")),
            0x8..=0xa if left > MAX_CONTROL as u64 => {
                return Err(FrameError::Protocol("control frame longer than 125 bytes"))
            }
            0x8..=0xa => {}
            _ => return Err(FrameError::Protocol("reserved opcode")),
        }
        self.current = Some(Current { opcode, fin, left });
        Ok(())
    }

    fn payload(&mut self, mut current: Current, input: &[u8], pos: &mut usize) -> Result<Step, FrameError> {
        let available = input.len() - *pos;
        let n = usize::try_from(current.left).map_or(available, |left| left.min(available));
        let range = *pos..*pos + n;
        *pos += n;
        current.left -= n as u64;
        let done = current.left == 0;
        self.current = if done { None } else { Some(current) };
        if current.opcode >= 0x8 {
            return Ok(self.control(current.opcode, input, range, done));
        }
        let Some(message) = self.message.as_mut() else {
            return Err(FrameError::Protocol("data frame outside a message")); // unreachable by construction
        };
        let kind = message.kind;
        if kind == DataKind::Text {
            message
                .utf8
                .feed(&input[range.clone()])
                .map_err(|_| FrameError::InvalidUtf8)?;
        }
        let end = done && current.fin;
        if end {
            let utf8 = message.utf8.finish();
            self.message = None;
            utf8.map_err(|_| FrameError::InvalidUtf8)?;
        }
        Ok(match (range.is_empty(), end, done) {
            (true, false, false) => Step::NeedMore,
            (true, false, true) => Step::Again, // an empty non-final frame
            _ => Step::Frame(Frame::Data { kind, range, end }),
        })
    }

    fn control(&mut self, opcode: u8, input: &[u8], range: Range<usize>, done: bool) -> Step {
        if !done {
            if !range.is_empty() {
                self.control
                    .get_or_insert_with(|| Box::new(Control::new(&[])))
                    .push(&input[range]);
            }
            return Step::NeedMore;
        }
        let payload = match self.control.take() {
            Some(mut earlier) => {
                earlier.push(&input[range]);
                Payload::Held(earlier)
            }
            None => Payload::In(range),
        };
        Step::Frame(match opcode {
            0x8 => Frame::Close(payload),
            0x9 => Frame::Ping(payload),
            _ => Frame::Pong(payload),
        })
    }
}

enum Step {
    Frame(Frame),
    NeedMore,
    /// Nothing to report from this frame: read on.
    Again,
}

/// The length of a header whose first bytes are `seen`: 2 until the second
/// byte tells the rest (section 5.2).
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
