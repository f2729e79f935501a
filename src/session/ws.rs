//! The WebSocket side of a session: the HTTP upgrade done by hand (exact
//! failure classes and timing), then tungstenite as the frame codec over an
//! in-memory stream, except for the commonest read, one bare pong, which is
//! matched without it. Messages go to the liveness protocol; close frames
//! end the session.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::app::Input;
use super::conn::Codec;
use super::handshake::{self, Expectation, Progress};
use super::memstream::MemStream;
use super::ping;
use super::secrets::NO_SECRETS;
use super::spec::OpenMessage;
use super::{DisconnectReason, Outbox, Phase, Session, Step};

/// tungstenite's read buffer: reserved per session, so kept to a probe's size.
const WS_READ_CHUNK: usize = 256;

impl Session {
    pub(super) fn send_upgrade_request(&mut self) {
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce);
        let key = handshake::encode_key(&nonce);
        let spec = &self.spec;
        let secrets = self.secrets.as_deref().unwrap_or(&NO_SECRETS);
        let headers: Vec<(String, String)> = spec
            .ws
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), secrets.expand(value)))
            .collect();
        let request = handshake::build_request(&handshake::RequestParams {
            host_header: &spec.host_header,
            path: &spec.ws.path,
            key: &key,
            origin: spec.ws.origin.as_deref(),
            subprotocols: &spec.ws.subprotocols,
            headers: &headers,
        });
        if let Some(conn) = self.conn.as_mut() {
            conn.io.codec = Codec::WsHandshake { key, buf: Vec::new() };
            conn.io.wire.write_plain(&request);
        }
    }

    /// Bytes of the upgrade answer: on a valid 101 the codec takes over and
    /// the session opens.
    pub(super) fn handshake_input(&mut self, plain: &[u8], now: Instant, out: &mut Outbox) -> Step {
        let Some(conn) = self.conn.as_mut() else {
            return Step::Continue;
        };
        let Codec::WsHandshake { key, buf } = &mut conn.io.codec else {
            return Step::Continue;
        };
        buf.extend_from_slice(plain);
        let spec = &self.spec;
        let want = Expectation {
            key,
            subprotocols: &spec.ws.subprotocols,
            require_subprotocol: spec.ws.require_subprotocol,
        };
        let accepted = match handshake::parse_response(buf, &want) {
            Ok(Progress::NeedMore) => return Step::Continue,
            Err(rejected) => return Step::Fail(rejected.reason, rejected.detail),
            Ok(Progress::Done(accepted)) => accepted,
        };
        // The core already holds received bytes; tungstenite only stages
        // them, so its eagerly reserved buffer stays small.
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_CHUNK)
            .write_buffer_size(0)
            .max_message_size(Some(spec.ws.max_message_size))
            .max_frame_size(Some(spec.ws.max_frame_size));
        let ws = WebSocket::from_partially_read(
            MemStream::after_handshake(&accepted.leftover),
            accepted.leftover,
            Role::Client,
            Some(config),
        );
        conn.io.codec = Codec::Ws(ws);
        let step = self.transport_up(now, out);
        if !matches!(step, Step::Continue) || !self.reading() {
            return step;
        }
        // Frames may have arrived together with the 101.
        self.drive_ws(now, out)
    }

    /// Bytes of an open WebSocket.
    pub(super) fn ws_input(&mut self, plain: &[u8], now: Instant, out: &mut Outbox) -> Step {
        if let Some(Codec::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.io.codec) {
            ws.get_mut().push_input(plain);
        }
        self.drive_ws(now, out)
    }

    /// The peer's EOF, for the codec to find a close frame before it;
    /// `None` when this is no WebSocket.
    pub(super) fn ws_eof(&mut self, now: Instant, out: &mut Outbox) -> Option<Step> {
        let Some(Codec::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.io.codec) else {
            return None;
        };
        ws.get_mut().set_eof();
        Some(self.drive_ws(now, out))
    }

    /// Sends a close frame (1001 when stopping, else 1000); returns whether
    /// one went out, so that the peer's answer is worth waiting for.
    pub(super) fn send_close_frame(&mut self) -> bool {
        let code = if self.stop_requested {
            CloseCode::Away
        } else {
            CloseCode::Normal
        };
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let Codec::Ws(ws) = &mut conn.io.codec else {
            return false;
        };
        let sent = ws
            .close(Some(CloseFrame {
                code,
                reason: "".into(),
            }))
            .is_ok();
        let _ = ws.flush();
        conn.io.flush_codec();
        sent
    }

    /// Whether received messages are still wanted: open, or in an
    /// application handshake.
    fn reading(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Handshaking)
    }

    /// The target's `on_open` messages, once the session is open.
    pub(super) fn send_on_open_messages(&mut self) {
        let spec = Arc::clone(&self.spec);
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Codec::Ws(ws) = &mut conn.io.codec {
            for m in &spec.ws.on_open {
                let msg = match m {
                    OpenMessage::Text(t) => Message::text(t.clone()),
                    OpenMessage::Binary(b) => Message::binary(b.clone()),
                };
                let _ = ws.write(msg);
            }
            let _ = ws.flush();
        }
        conn.io.flush_codec();
    }

    /// Reads every complete message tungstenite can decode from its input.
    fn drive_ws(&mut self, now: Instant, out: &mut Outbox) -> Step {
        let mut step = Step::Continue;
        while let Some(conn) = self.conn.as_mut() {
            let Codec::Ws(ws) = &mut conn.io.codec else {
                break;
            };
            match ws.read() {
                Ok(Message::Pong(payload)) => {
                    step = self.app_input(Input::Pong(&payload), now, out);
                    if !matches!(step, Step::Continue) || !self.reading() {
                        break; // e.g. a one-shot check is complete
                    }
                }
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                    if self.spec.ws.echo {
                        // Queued in tungstenite; the flush below sends it.
                        let _ = ws.write(msg.clone());
                    }
                    step = match &msg {
                        Message::Text(text) => self.app_input(Input::Text(text.as_str()), now, out),
                        Message::Binary(bytes) => self.app_input(Input::Binary(bytes), now, out),
                        _ => Step::Continue,
                    };
                    if !matches!(step, Step::Continue) || !self.reading() {
                        break;
                    }
                }
                Ok(Message::Ping(_)) | Ok(Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    if self.phase == Phase::Closing {
                        // The answer to our own close: done.
                        let _ = ws.flush();
                        conn.io.flush_codec();
                        self.finish_local_close(now, out);
                        break;
                    }
                    let _ = ws.flush(); // queue tungstenite's close reply
                    conn.io.flush_codec();
                    // The application may say what its close code means.
                    step = match &frame {
                        Some(f) => conn.app.on_close(Some(u16::from(f.code)), &f.reason),
                        None => conn.app.on_close(None, ""),
                    }
                    .map(|f| Step::Drop(f.reason, f.detail, f.close_code))
                    .unwrap_or_else(|| peer_close(frame));
                    break;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed)
                | Err(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
                    if self.phase == Phase::Closing {
                        self.finish_local_close(now, out);
                    } else {
                        step = Step::Drop(
                            DisconnectReason::Eof,
                            "peer closed the connection without a close frame".into(),
                            None,
                        );
                    }
                    break;
                }
                Err(tungstenite::Error::Io(e)) => {
                    step = Step::Drop(DisconnectReason::IoError, e.to_string(), None);
                    break;
                }
                Err(e) => {
                    // Protocol violations, oversized messages, bad UTF-8: say
                    // why in the close frame, then drop the connection.
                    let code = match e {
                        tungstenite::Error::Capacity(_) => CloseCode::Size,
                        tungstenite::Error::Utf8(_) => CloseCode::Invalid,
                        _ => CloseCode::Protocol,
                    };
                    let _ = ws.close(Some(CloseFrame {
                        code,
                        reason: "".into(),
                    }));
                    let _ = ws.flush();
                    conn.io.flush_codec();
                    step = Step::Drop(DisconnectReason::ProtocolError, e.to_string(), None);
                    break;
                }
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            if let Codec::Ws(ws) = &mut conn.io.codec {
                let _ = ws.flush(); // automatic pong replies to server pings
                ws.get_mut().compact();
            }
            conn.io.flush_codec();
        }
        step
    }

    /// The payload of `plain` when it is the common read at scale, one bare
    /// pong, and tungstenite holds no partial frame (so it cannot be the rest
    /// of one): then it is matched directly, not staged through tungstenite's
    /// buffers, whose cold memory was much of a probe's user-space cost at
    /// thousands of sessions.
    pub(super) fn codec_free_pong<'a>(&self, plain: &'a [u8]) -> Option<&'a [u8]> {
        match self.conn.as_deref().map(|c| &c.io.codec) {
            Some(Codec::Ws(ws)) if self.phase == Phase::Open && ws.get_ref().drained_at_frame_boundary() => {
                ping::bare_pong(plain)
            }
            _ => None,
        }
    }
}

/// The peer's close frame as a disconnect.
fn peer_close(frame: Option<CloseFrame>) -> Step {
    let Some(f) = frame else {
        return Step::Drop(DisconnectReason::PeerClose, "close frame without status".into(), None);
    };
    let code = u16::from(f.code);
    // tungstenite answers a close frame whose code may not be sent with
    // 1002 and hands us that instead of the original.
    if code == 1002 && f.reason == "Protocol violation" {
        return Step::Drop(
            DisconnectReason::ProtocolError,
            "close frame with a code that may not be sent (RFC 6455 section 7.4); answered 1002".into(),
            Some(code),
        );
    }
    Step::Drop(
        DisconnectReason::PeerClose,
        format!("close frame code {code} {:?}", f.reason.to_string()),
        Some(code),
    )
}
