//! One connection of a session: the bytes for the socket (through TLS when
//! on), the codec that frames them, the liveness protocol, and the timings
//! of how it was established.

use super::app::App;
use super::frames::{self, close, FrameReader, OpCode};
use super::ping;
use super::proxy::ProxyHandshake;
use super::tls_conn::TlsConn;
use crate::clock::Instant;

/// How received plaintext is read, by connection stage.
pub enum Codec {
    /// Asking the proxy for a tunnel to the target.
    Proxy(Box<ProxyHandshake>),
    /// TLS still handshaking: nothing to say yet.
    AwaitTls,
    /// The HTTP upgrade: the key sent and the answer so far.
    WsHandshake {
        key: String,
        buf: Vec<u8>,
    },
    Ws(WsState),
    /// A plain TCP stream: bytes go to the liveness protocol as they come.
    Tcp,
}

/// An open WebSocket: where the reader is in the server's frames, and what
/// is kept of the data message in progress (only what its consumer needs).
#[derive(Debug, Default)]
pub struct WsState {
    pub reader: FrameReader,
    /// The message in progress, while its consumer wants it whole.
    pub kept: Vec<u8>,
    /// Its size so far.
    pub size: u64,
    /// It outgrew what its consumer takes: only counted from here on.
    pub skipping: bool,
    /// Our close frame went out: nothing may follow it (RFC 6455 5.5.1).
    pub close_sent: bool,
}

/// Bytes on their way to the socket.
#[derive(Default)]
pub struct Wire {
    pub tls: Option<Box<TlsConn>>,
    /// Ciphertext when TLS is on.
    pub out: OutBuf,
}

/// Bytes waiting to be written. A plain ping frame (14 bytes) fits inline,
/// so the probe every session sends allocates nothing; the type is as
/// large as a `Vec`.
pub type OutBuf = smallvec::SmallVec<[u8; 16]>;

impl Wire {
    /// Queues plaintext: encrypted first when TLS is on (the session
    /// writes only once the TLS handshake is done).
    pub fn write_plain(&mut self, bytes: &[u8]) {
        match self.tls.as_mut() {
            Some(tls) => {
                if !tls.send(bytes, &mut self.out) {
                    log::debug!("TLS not writable: {} bytes not sent", bytes.len());
                }
            }
            None => self.out.extend_from_slice(bytes),
        }
    }

    /// Queues one WebSocket frame, framed straight into the output when
    /// there is no TLS.
    fn write_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = ping::random_mask();
        if self.tls.is_none() {
            frames::encode(&mut self.out, opcode, payload, mask);
        } else {
            let mut frame = Vec::new();
            frames::encode(&mut frame, opcode, payload, mask);
            self.write_plain(&frame);
        }
    }
}

pub struct Conn {
    pub io: ConnIo,
    /// `App::Silent` until the connection opens.
    pub app: App,
    pub connect_started: Instant,
    pub tcp_connected_at: Instant,
    /// When the proxy's tunnel was up, if there is a proxy.
    pub proxy_done_at: Option<Instant>,
    pub tls_done_at: Option<Instant>,
    /// When the transport was up: the WebSocket upgraded, or TCP connected.
    pub upgraded_at: Option<Instant>,
    /// When an application handshake began, if the protocol has one.
    pub app_handshake_started: Option<Instant>,
}

impl Conn {
    pub fn new(connect_started: Instant, tcp_connected_at: Instant, codec: Codec) -> Conn {
        Conn {
            io: ConnIo {
                wire: Wire::default(),
                codec,
            },
            app: App::Silent,
            connect_started,
            tcp_connected_at,
            proxy_done_at: None,
            tls_done_at: None,
            upgraded_at: None,
            app_handshake_started: None,
        }
    }
}

/// The connection's bytes and their framing: what a liveness protocol
/// writes through.
pub struct ConnIo {
    pub wire: Wire,
    pub codec: Codec,
}

impl ConnIo {
    /// Whether frames may still be sent: a WebSocket whose close has not
    /// gone out.
    fn may_send_frames(&self) -> bool {
        matches!(&self.codec, Codec::Ws(ws) if !ws.close_sent)
    }

    /// A WebSocket ping carrying `id`, framed here: it is the one frame
    /// every session sends every interval (see `ping`).
    pub fn send_ping(&mut self, id: u64) {
        if self.may_send_frames() {
            self.wire.write_plain(&ping::frame(id, ping::random_mask()));
        }
    }

    /// Raw bytes on a plain TCP stream.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.wire.write_plain(bytes);
    }

    /// A WebSocket text message.
    pub fn send_text(&mut self, text: &str) {
        self.send_frame(OpCode::Text, text.as_bytes());
    }

    /// A WebSocket binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send_frame(OpCode::Binary, bytes);
    }

    /// One WebSocket frame, unless our close went out already.
    pub fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        if self.may_send_frames() {
            self.wire.write_frame(opcode, payload);
        }
    }

    /// Our close frame, with `code` or without a status; the last frame.
    pub fn send_close(&mut self, code: Option<u16>) {
        match code {
            Some(code) => self.send_frame(OpCode::Close, &close::payload(code)),
            None => self.send_frame(OpCode::Close, &[]),
        }
        if let Codec::Ws(ws) = &mut self.codec {
            ws.close_sent = true;
        }
    }
}
