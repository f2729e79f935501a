//! One connection of a session: the bytes for the socket (through TLS when
//! on), the codec that frames them, the liveness protocol, and the timings
//! of how it was established.

use std::io::Write;
use std::time::Instant;

use tungstenite::{Message, WebSocket};

use super::app::App;
use super::memstream::MemStream;
use super::ping;

/// How received plaintext is read, by connection stage.
// The WebSocket lives inline: `Conn` is boxed already, and keeping the codec
// in the connection's own allocation saves a cold pointer chase per probe.
#[allow(clippy::large_enum_variant)]
pub enum Codec {
    /// TLS still handshaking: nothing to say yet.
    AwaitTls,
    /// The HTTP upgrade: the key sent and the answer so far.
    WsHandshake {
        key: String,
        buf: Vec<u8>,
    },
    Ws(WebSocket<MemStream>),
    /// A plain TCP stream: bytes go to the liveness protocol as they come.
    Tcp,
}

/// Bytes on their way to the socket.
#[derive(Default)]
pub struct Wire {
    pub tls: Option<Box<rustls::ClientConnection>>,
    /// Ciphertext when TLS is on.
    pub out: Vec<u8>,
}

impl Wire {
    /// Queues plaintext: encrypted first when TLS is on.
    pub fn write_plain(&mut self, bytes: &[u8]) {
        match self.tls.as_mut() {
            Some(tls) => {
                let _ = tls.writer().write_all(bytes);
                self.flush_tls();
            }
            None => self.out.extend_from_slice(bytes),
        }
    }

    /// Moves what rustls has to send (records, alerts) into `out`.
    pub fn flush_tls(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            while tls.wants_write() {
                if tls.write_tls(&mut self.out).is_err() {
                    break;
                }
            }
        }
    }

    /// Moves what the codec wrote into `out`. Whole frames only reach the
    /// wire this way, so bytes written directly never land inside a frame.
    pub fn take_codec_output(&mut self, ws: &mut WebSocket<MemStream>) {
        let bytes = std::mem::take(&mut ws.get_mut().output);
        if bytes.is_empty() {
            return;
        }
        if self.tls.is_none() && self.out.is_empty() {
            self.out = bytes; // the common case: hand the buffer over, no copy
        } else {
            self.write_plain(&bytes);
        }
    }
}

pub struct Conn {
    pub io: ConnIo,
    /// `App::Silent` until the connection opens.
    pub app: App,
    pub connect_started: Instant,
    pub tcp_connected_at: Instant,
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
    /// The codec's output moved to the wire (see `Wire::take_codec_output`).
    pub fn flush_codec(&mut self) {
        if let Codec::Ws(ws) = &mut self.codec {
            self.wire.take_codec_output(ws);
        }
    }

    /// A WebSocket ping carrying `id`, framed here: it is the one frame
    /// every session sends every interval (see `ping`).
    pub fn send_ping(&mut self, id: u64) {
        self.flush_codec();
        self.wire.write_plain(&ping::frame(id, ping::random_mask()));
    }

    /// Raw bytes on a plain TCP stream.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.wire.write_plain(bytes);
    }

    /// A WebSocket text message.
    pub fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text));
    }

    /// A WebSocket binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send_message(Message::binary(bytes.to_vec()));
    }

    fn send_message(&mut self, message: Message) {
        if let Codec::Ws(ws) = &mut self.codec {
            // Written whole (no write buffer): errors only on a closed codec.
            let _ = ws.write(message);
            let _ = ws.flush();
            self.wire.take_codec_output(ws);
        }
    }
}
