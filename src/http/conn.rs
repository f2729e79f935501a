//! One connection to the HTTP endpoint, advanced by the server's readiness
//! loop: a request head read within a deadline, an answer written (at once,
//! or when `/probe`'s check is done), then the next request on the same
//! connection or a close; or, after an upgrade at `/ws`, WebSocket echo.
//! Nothing here blocks: every read and write stops at `WouldBlock`.

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::net::TcpStream;

use super::tls::Transport;
use crate::clock::Instant;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::WebSocket;

use super::request::MAX_REQUEST_HEAD;
use super::stream::{nonblocking, StreamConn};

const ECHO_MAX_MESSAGE: usize = 64 * 1024;
/// What an echo client that stops reading may leave queued before it is
/// dropped.
const ECHO_MAX_QUEUED: usize = 256 * 1024;
/// A monitor pings every few seconds; 5 minutes of silence is abandonment.
const ECHO_IDLE: Duration = Duration::from_secs(300);

pub(super) enum Conn {
    Http(HttpConn),
    Echo(EchoConn),
    Stream(StreamConn),
}

impl Conn {
    /// The socket, for the poller.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Conn::Http(c) => c.stream.tcp(),
            Conn::Echo(e) => e.ws.get_mut().tcp(),
            Conn::Stream(s) => s.socket(),
        }
    }

    pub fn deadline(&self) -> Instant {
        match self {
            Conn::Http(c) => c.deadline,
            Conn::Echo(e) => e.deadline,
            Conn::Stream(s) => s.deadline(),
        }
    }
}

pub(super) enum Phase {
    /// Reading a request head.
    Head,
    /// Waiting for the agent's loop to finish a `/probe` check.
    Probe,
    /// Writing an answer, then doing `Then`.
    Write(Then),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Then {
    /// Read the next request.
    KeepAlive,
    Close,
    /// Hand the connection to the WebSocket echo.
    Echo,
    /// Hand the connection to the stream.
    Stream,
}

pub(super) enum ReadOutcome {
    Got,
    Blocked,
    Eof,
}

pub(super) struct HttpConn {
    pub stream: Transport,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    pub phase: Phase,
    /// When the current phase must be over.
    pub deadline: Instant,
    /// Since when it has been waiting for a request head: the oldest such
    /// connection is the one dropped when the endpoint is full.
    pub waiting_since: Instant,
    /// Requests answered on it so far.
    pub served: u32,
    /// Whether the request being answered lets the connection live on.
    pub keep_alive: bool,
    /// `/probe`'s answer should the agent's loop not give one in time.
    pub fallback: Option<crate::probe::Answer>,
}

impl HttpConn {
    pub fn new(stream: Transport, now: Instant, header_timeout: Duration) -> HttpConn {
        HttpConn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            written: 0,
            phase: Phase::Head,
            deadline: now + header_timeout,
            waiting_since: now,
            served: 0,
            keep_alive: false,
            fallback: None,
        }
    }

    pub fn inbuf(&self) -> &[u8] {
        &self.inbuf
    }

    /// Whether a request head has begun to arrive.
    pub fn head_started(&self) -> bool {
        matches!(self.phase, Phase::Head) && !self.inbuf.is_empty()
    }

    /// Reads one chunk of what has arrived. A connection idle between
    /// requests gets the header deadline from its request's first byte.
    pub fn read(&mut self, now: Instant, header_timeout: Duration) -> ReadOutcome {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => {
                if self.inbuf.is_empty() {
                    self.deadline = self.deadline.min(now + header_timeout);
                }
                self.inbuf.extend_from_slice(&chunk[..n]);
                debug_assert!(self.inbuf.len() < MAX_REQUEST_HEAD + chunk.len());
                ReadOutcome::Got
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Got,
            Err(e) => {
                log::debug!("http read failed: {e}");
                ReadOutcome::Eof
            }
        }
    }

    /// Drops a parsed request head; what follows it is the next request.
    pub fn consume(&mut self, head_len: usize) {
        self.inbuf.drain(..head_len.min(self.inbuf.len()));
    }

    /// Queues an answer with its head.
    pub fn answer(&mut self, status: &str, content_type: &str, body: &[u8], now: Instant, write_timeout: Duration) {
        self.answer_with(status, content_type, "", body, now, write_timeout);
    }

    /// Queues `/probe`'s answer.
    pub fn answer_probe(&mut self, a: &crate::probe::Answer, now: Instant, write_timeout: Duration) {
        self.answer(a.status, a.content_type, a.body.as_bytes(), now, write_timeout);
    }

    /// Queues an answer with more header lines (each ending in CRLF).
    pub fn answer_with(
        &mut self,
        status: &str,
        content_type: &str,
        headers: &str,
        body: &[u8],
        now: Instant,
        write_timeout: Duration,
    ) {
        let then = if self.keep_alive { Then::KeepAlive } else { Then::Close };
        let connection = if self.keep_alive { "keep-alive" } else { "close" };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\
             {headers}\r\n",
            body.len()
        );
        self.out.clear();
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(body);
        self.start_write(then, now, write_timeout);
    }

    /// Queues bytes as they are (the upgrade's answer).
    pub fn answer_raw(&mut self, raw: &[u8], then: Then, now: Instant, write_timeout: Duration) {
        self.out.clear();
        self.out.extend_from_slice(raw);
        self.start_write(then, now, write_timeout);
    }

    fn start_write(&mut self, then: Then, now: Instant, write_timeout: Duration) {
        self.written = 0;
        self.phase = Phase::Write(then);
        self.deadline = now + write_timeout;
    }

    /// Writes what is queued; true when all of it is out (through TLS:
    /// on the socket, not only in rustls's buffer).
    pub fn write(&mut self) -> io::Result<bool> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match self.stream.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        self.out = Vec::new();
        Ok(true)
    }

    /// After an answer on a connection that lives on: wait for the next
    /// request, idle for at most `idle_timeout`.
    pub fn await_next(&mut self, now: Instant, idle_timeout: Duration, header_timeout: Duration) {
        self.served += 1;
        self.phase = Phase::Head;
        self.waiting_since = now;
        self.deadline = if self.inbuf.is_empty() {
            now + idle_timeout
        } else {
            now + header_timeout
        };
    }

    /// Ends the connection after its last answer: a FIN, then what the
    /// client sent is read away so that closing does not reset the
    /// connection under an answer still in flight.
    pub fn finish(mut self) {
        self.stream.shutdown_write();
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match self.stream.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Becomes a stream client that starts from `snapshot`.
    pub fn into_stream(self, snapshot: std::sync::Arc<str>, now: Instant) -> StreamConn {
        StreamConn::new(self.stream, self.inbuf, snapshot, now)
    }

    /// Becomes a WebSocket echo, with the bytes read past the upgrade
    /// request.
    pub fn into_echo(self, now: Instant) -> EchoConn {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(ECHO_MAX_QUEUED)
            .max_message_size(Some(ECHO_MAX_MESSAGE))
            .max_frame_size(Some(ECHO_MAX_MESSAGE));
        EchoConn {
            ws: WebSocket::from_partially_read(self.stream, self.inbuf, Role::Server, Some(config)),
            deadline: now + ECHO_IDLE,
        }
    }
}

/// Echoes text and binary messages; tungstenite answers pings and closes.
pub(super) struct EchoConn {
    ws: WebSocket<Transport>,
    pub deadline: Instant,
}

impl EchoConn {
    /// Echoes what has arrived and sends what is queued; false when the
    /// connection is over.
    pub fn pump(&mut self, now: Instant) -> bool {
        loop {
            let msg = match nonblocking(self.ws.read(), "echo connection ended") {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(()) => return false,
            };
            self.deadline = now + ECHO_IDLE;
            if (msg.is_text() || msg.is_binary()) && nonblocking(self.ws.write(msg), "echo write failed").is_err() {
                return false;
            }
        }
        nonblocking(self.ws.flush(), "echo flush failed").is_ok()
    }
}
