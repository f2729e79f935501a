//! The WebSocket side of a session: the HTTP upgrade done by hand (exact
//! failure classes and timing), then the streaming frame codec (`frames`).
//! Data messages go to the liveness protocol only as far as it needs their
//! content (`Keep`): counted, whole up to a limit, or streamed; nothing of
//! a message outlives it. Control frames are answered here; close frames
//! end the session.

use std::sync::Arc;

use super::app::{Input, Keep};
use super::conn::{Codec, WsState};
use super::frames::close::{self, Close};
use super::frames::{DataKind, Frame, FrameError, OpCode};
use super::handshake::{self, Expectation, Progress};
use super::secrets::NO_SECRETS;
use super::spec::OpenMessage;
use super::{DisconnectReason, Outbox, Phase, Session, SessionEvent, Step};
use crate::clock::Instant;

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

    /// Bytes of the upgrade answer: on a valid 101 the frame codec takes
    /// over and the liveness protocol starts.
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
        conn.io.codec = Codec::Ws(WsState::default());
        let step = self.transport_up(now, out);
        if !matches!(step, Step::Continue) {
            return step;
        }
        // Frames may have arrived together with the 101.
        self.ws_input(&accepted.leftover, now, out)
    }

    /// Bytes of an open WebSocket: every frame in them, at once.
    pub(super) fn ws_input(&mut self, plain: &[u8], now: Instant, out: &mut Outbox) -> Step {
        if let Some(Codec::Ws(ws)) = self.conn.as_ref().map(|c| &c.io.codec) {
            if let Some(payload) = ws.reader.lone_pong(plain) {
                return match self.reading() {
                    true => self.app_input(Input::Pong(payload), now, out),
                    false => Step::Continue,
                };
            }
        }
        let mut pos = 0;
        loop {
            let Some(Codec::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.io.codec) else {
                return Step::Continue; // dropped, e.g. our close was answered
            };
            let frame = match ws.reader.next(plain, &mut pos) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Step::Continue,
                Err(e) => return self.ws_failed(e),
            };
            let step = match frame {
                Frame::Data { kind, range, end } => self.ws_data(kind, &plain[range], end, now, out),
                Frame::Pong(payload) if self.reading() => self.app_input(Input::Pong(payload.bytes(plain)), now, out),
                Frame::Pong(_) => Step::Continue,
                Frame::Ping(payload) => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.io.send_frame(OpCode::Pong, payload.bytes(plain));
                    }
                    Step::Continue
                }
                Frame::Close(payload) => self.ws_close_frame(payload.bytes(plain), now, out),
            };
            if !matches!(step, Step::Continue) {
                return step;
            }
        }
    }

    /// Bytes of a data message. Its size is counted; its content goes to
    /// whoever needs it, as far as they need it.
    fn ws_data(&mut self, kind: DataKind, chunk: &[u8], end: bool, now: Instant, out: &mut Outbox) -> Step {
        if !self.reading() {
            return Step::Continue; // closing: only the close answer matters
        }
        let echo = self.spec.ws.echo;
        let max_message_size = self.spec.ws.max_message_size;
        let Some(conn) = self.conn.as_mut() else {
            return Step::Continue;
        };
        // Echoing (the conformance client) needs every message whole.
        let keep = if echo {
            Keep::Whole(max_message_size)
        } else {
            conn.app.keeps(max_message_size)
        };
        let Codec::Ws(ws) = &mut conn.io.codec else {
            return Step::Continue;
        };
        ws.size += chunk.len() as u64;
        let step = match keep {
            Keep::Nothing => {
                if end {
                    self.app_input(Input::Skipped, now, out)
                } else {
                    Step::Continue
                }
            }
            Keep::Stream if chunk.is_empty() => Step::Continue,
            Keep::Stream => self.app_input(Input::Chunk(chunk), now, out),
            Keep::UpTo(limit) | Keep::Whole(limit) => {
                if ws.size > limit as u64 {
                    if matches!(keep, Keep::Whole(_)) {
                        return self.ws_failed(FrameError::TooBig);
                    }
                    ws.skipping = true;
                    ws.kept = Vec::new();
                } else if !(end && ws.kept.is_empty()) {
                    ws.kept.extend_from_slice(chunk);
                }
                if end {
                    let kept = std::mem::take(&mut ws.kept);
                    let skipped = std::mem::take(&mut ws.skipping);
                    // A message whole in one read is used where it lies.
                    let content = if kept.is_empty() { chunk } else { &kept[..] };
                    self.ws_message(kind, content, skipped, echo, now, out)
                } else {
                    Step::Continue
                }
            }
        };
        if end {
            if let Some(Codec::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.io.codec) {
                out.events.push(SessionEvent::Message { size: ws.size });
                ws.size = 0;
            }
        }
        step
    }

    /// A whole message for the liveness protocol (and the echo).
    fn ws_message(
        &mut self,
        kind: DataKind,
        content: &[u8],
        skipped: bool,
        echo: bool,
        now: Instant,
        out: &mut Outbox,
    ) -> Step {
        if skipped {
            return self.app_input(Input::Skipped, now, out);
        }
        if echo {
            if let Some(conn) = self.conn.as_mut() {
                let opcode = match kind {
                    DataKind::Text => OpCode::Text,
                    DataKind::Binary => OpCode::Binary,
                };
                conn.io.send_frame(opcode, content);
            }
        }
        match kind {
            DataKind::Binary => self.app_input(Input::Binary(content), now, out),
            // Validated as it arrived.
            DataKind::Text => match std::str::from_utf8(content) {
                Ok(text) => self.app_input(Input::Text(text), now, out),
                Err(_) => self.ws_failed(FrameError::InvalidUtf8),
            },
        }
    }

    /// The peer's close frame: the answer to ours, or its own close, which
    /// is answered with its code and ends the session.
    fn ws_close_frame(&mut self, payload: &[u8], now: Instant, out: &mut Outbox) -> Step {
        if self.phase == Phase::Closing {
            self.finish_local_close(now, out);
            return Step::Continue;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Step::Continue;
        };
        match close::parse(payload) {
            Err(e) => {
                conn.io.send_close(Some(e.close_code()));
                let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                Step::Drop(DisconnectReason::ProtocolError, e.to_string(), code)
            }
            Ok(Close::NoStatus) => {
                conn.io.send_close(None);
                conn.app
                    .on_close(None, "")
                    .map(|f| Step::Drop(f.reason, f.detail, f.close_code))
                    .unwrap_or_else(|| {
                        Step::Drop(DisconnectReason::PeerClose, "close frame without status".into(), None)
                    })
            }
            Ok(Close::Status { code, reason }) => {
                conn.io.send_close(Some(code));
                // The application may say what its close code means.
                conn.app
                    .on_close(Some(code), reason)
                    .map(|f| Step::Drop(f.reason, f.detail, f.close_code))
                    .unwrap_or_else(|| {
                        Step::Drop(
                            DisconnectReason::PeerClose,
                            format!("close frame code {code} {reason:?}"),
                            Some(code),
                        )
                    })
            }
        }
    }

    /// The peer broke the protocol: say why in a close frame (RFC 6455
    /// section 7.4.1), then drop the connection.
    fn ws_failed(&mut self, e: FrameError) -> Step {
        if let Some(conn) = self.conn.as_mut() {
            conn.io.send_close(Some(e.close_code()));
        }
        Step::Drop(DisconnectReason::ProtocolError, e.to_string(), None)
    }

    /// Sends a close frame (1001 when stopping, else 1000); returns whether
    /// one went out, so that the peer's answer is worth waiting for.
    pub(super) fn send_close_frame(&mut self) -> bool {
        let code = if self.stop_requested { 1001 } else { 1000 };
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match &conn.io.codec {
            Codec::Ws(ws) if !ws.close_sent => {
                conn.io.send_close(Some(code));
                true
            }
            _ => false,
        }
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
        for m in &spec.ws.on_open {
            match m {
                OpenMessage::Text(t) => conn.io.send_text(t),
                OpenMessage::Binary(b) => conn.io.send_binary(b),
            }
        }
    }
}
