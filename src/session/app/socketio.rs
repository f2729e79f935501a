//! Socket.IO over Engine.IO v4 (Socket.IO 3 and later) and v3 (Socket.IO 2),
//! WebSocket transport only. The server's open packet gives the heartbeat
//! cadence; the session opens once the namespace connect is acknowledged.
//! In v4 the server pings and the client answers: a server that stops
//! pinging for `pingInterval + pingTimeout` is dead. In v3 the client pings
//! and times the server's pong.

use std::time::Duration;

use serde::Deserialize;

use super::{answer_in_flight, failed, run_probe, Ctx, Input, ProbeKind, Protocol, Report};
use crate::clock::Instant;
use crate::session::reason::DisconnectReason;
use crate::session::schedule::ProbeSchedule;
use crate::session::spec::{SocketIoOptions, TargetSpec, Timing};

/// An Engine.IO packet: over WebSocket, one per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0` and the handshake JSON.
    Open(&'a str),
    Close,
    Ping(&'a str),
    Pong(&'a str),
    /// `4` and a Socket.IO packet.
    Message(&'a str),
    Upgrade,
    Noop,
}

/// Parses one Engine.IO text packet.
pub fn parse_engine_packet(text: &str) -> Option<EnginePacket<'_>> {
    let kind = *text.as_bytes().first()?;
    // Not a char boundary when the first character is not ASCII (no type).
    let rest = text.get(1..)?;
    Some(match kind {
        b'0' => EnginePacket::Open(rest),
        b'1' => EnginePacket::Close,
        b'2' => EnginePacket::Ping(rest),
        b'3' => EnginePacket::Pong(rest),
        b'4' => EnginePacket::Message(rest),
        b'5' => EnginePacket::Upgrade,
        b'6' => EnginePacket::Noop,
        _ => return None,
    })
}

/// A Socket.IO packet: `<type>[<attachments>-][<namespace>,][<ack id>][<data>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPacket<'a> {
    pub kind: SocketKind,
    /// `/` when the packet names none.
    pub namespace: &'a str,
    /// The JSON payload, empty when there is none.
    pub data: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// Parses the Socket.IO packet inside an Engine.IO message.
pub fn parse_socket_packet(text: &str) -> Option<SocketPacket<'_>> {
    let kind = match *text.as_bytes().first()? {
        b'0' => SocketKind::Connect,
        b'1' => SocketKind::Disconnect,
        b'2' => SocketKind::Event,
        b'3' => SocketKind::Ack,
        b'4' => SocketKind::ConnectError,
        b'5' => SocketKind::BinaryEvent,
        b'6' => SocketKind::BinaryAck,
        _ => return None,
    };
    let mut rest = &text[1..];
    if matches!(kind, SocketKind::BinaryEvent | SocketKind::BinaryAck) {
        let dash = rest.find('-')?;
        rest = &rest[dash + 1..];
    }
    let mut namespace = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        namespace = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let data = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    Some(SocketPacket { kind, namespace, data })
}

/// The handshake fields of an open packet that matter here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenInfo {
    ping_interval: u64,
    ping_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitOpen,
    AwaitConnect,
    Connected,
}

pub struct SocketIo {
    eio: u8,
    namespace: String,
    auth: Option<String>,
    state: State,
    /// The server's cadence, from its open packet.
    cadence: Timing,
    /// v4: when the server last pinged (or the session opened); it must
    /// ping again within `pingInterval + pingTimeout`.
    last_server_ping: Instant,
    /// v3: our pings, timed.
    pings: ProbeSchedule,
}

impl SocketIo {
    pub fn new(o: &SocketIoOptions, now: Instant) -> SocketIo {
        SocketIo {
            eio: o.eio,
            namespace: o.namespace.clone(),
            auth: o.auth.clone(),
            state: State::AwaitOpen,
            cadence: Timing::default(),
            last_server_ping: now,
            pings: ProbeSchedule::default(),
        }
    }

    /// The namespace connect packet: `40`, `40/admin,`, with auth in v4.
    fn connect_packet(&self) -> String {
        let mut packet = String::from("40");
        if self.namespace != "/" {
            packet.push_str(&self.namespace);
            packet.push(',');
        }
        if self.eio >= 4 {
            if let Some(auth) = &self.auth {
                packet.push_str(auth);
            }
        }
        packet
    }

    fn on_open_packet(&mut self, json: &str, ctx: &mut Ctx<'_>) -> Report {
        let info: OpenInfo = match serde_json::from_str(json) {
            Ok(info) => info,
            Err(e) => {
                return failed(
                    DisconnectReason::AppError,
                    format!("bad Engine.IO open packet: {e}"),
                    None,
                )
            }
        };
        self.cadence.ping_interval = Some(Duration::from_millis(info.ping_interval.max(1)));
        self.cadence.pong_timeout = Duration::from_millis(info.ping_timeout.max(1));
        self.last_server_ping = ctx.now;
        self.state = State::AwaitConnect;
        // Socket.IO 2 connects the default namespace by itself.
        if self.eio >= 4 || self.namespace != "/" {
            ctx.io.send_text(&ctx.secrets.expand(&self.connect_packet()));
        }
        Report::Quiet
    }

    fn on_socket_packet(&mut self, text: &str, ctx: &mut Ctx<'_>) -> Report {
        let Some(p) = parse_socket_packet(text) else {
            return Report::Quiet;
        };
        if p.namespace != self.namespace {
            ctx.data = true;
            return Report::Quiet;
        }
        match p.kind {
            SocketKind::Connect if self.state == State::AwaitConnect => {
                self.state = State::Connected;
                self.last_server_ping = ctx.now;
                if self.eio < 4 {
                    self.pings = ProbeSchedule::starting(ctx.now, self.cadence.ping_interval);
                }
                Report::Ready
            }
            SocketKind::Connect => Report::Quiet,
            SocketKind::ConnectError => failed(
                DisconnectReason::AppError,
                format!("namespace {} refused: {}", self.namespace, error_message(p.data)),
                None,
            ),
            SocketKind::Disconnect => failed(
                DisconnectReason::AppError,
                format!("the server disconnected namespace {}", self.namespace),
                None,
            ),
            _ => {
                ctx.data = true;
                Report::Quiet
            }
        }
    }
}

/// A connect error's message: v4 sends `{"message": …}`, v3 a JSON string.
fn error_message(data: &str) -> String {
    #[derive(Deserialize)]
    struct WithMessage {
        message: String,
    }
    if let Ok(m) = serde_json::from_str::<WithMessage>(data) {
        return m.message;
    }
    serde_json::from_str::<String>(data).unwrap_or_else(|_| data.chars().take(200).collect())
}

impl Protocol for SocketIo {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        // Waiting for the server's open packet; the handshake deadline runs.
        self.last_server_ping = ctx.now;
        Report::Quiet
    }

    fn on_message(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        let Input::Text(text) = input else {
            // Binary attachments of binary events.
            ctx.data = true;
            return Report::Quiet;
        };
        match (parse_engine_packet(text), self.state) {
            (Some(EnginePacket::Open(json)), State::AwaitOpen) => self.on_open_packet(json, ctx),
            (Some(EnginePacket::Ping(payload)), _) => {
                // v4 heartbeat (v3 servers only answer probes with it).
                self.last_server_ping = ctx.now;
                ctx.io.send_text(&format!("3{payload}"));
                Report::Quiet
            }
            (Some(EnginePacket::Pong(_)), State::Connected) if self.eio < 4 => {
                answer_in_flight(&mut self.pings, ctx.now, ProbeKind::App)
            }
            (Some(EnginePacket::Message(packet)), State::AwaitConnect | State::Connected) => {
                self.on_socket_packet(packet, ctx)
            }
            (Some(EnginePacket::Close), _) => failed(
                DisconnectReason::AppError,
                "the server closed the Engine.IO session",
                None,
            ),
            _ => Report::Quiet,
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        if self.state != State::Connected {
            return Report::Quiet;
        }
        if self.eio >= 4 {
            return match self.heartbeat_deadline() {
                Some(deadline) if ctx.now >= deadline => Report::Unanswered(ProbeKind::App),
                _ => Report::Quiet,
            };
        }
        run_probe(&mut self.pings, &self.cadence, ProbeKind::App, ctx, |_, io| {
            io.send_text("2")
        })
    }

    fn poll_timeout(&self, _spec: &TargetSpec) -> Option<Instant> {
        match (self.state, self.eio) {
            (State::Connected, 4..) => self.heartbeat_deadline(),
            (State::Connected, _) => self.pings.poll_timeout(self.cadence.pong_timeout),
            _ => None,
        }
    }

    fn awaiting(&self) -> Option<&'static str> {
        match self.state {
            State::AwaitOpen => Some("the Engine.IO open packet"),
            State::AwaitConnect => Some("the namespace connect"),
            State::Connected => None,
        }
    }
}

impl SocketIo {
    /// v4: the instant by which the server owes its next ping.
    fn heartbeat_deadline(&self) -> Option<Instant> {
        let interval = self.cadence.ping_interval?;
        Some(self.last_server_ping + interval + self.cadence.pong_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_and_socket_packets_parse() {
        assert_eq!(parse_engine_packet("0{\"a\":1}"), Some(EnginePacket::Open("{\"a\":1}")));
        assert_eq!(parse_engine_packet("2"), Some(EnginePacket::Ping("")));
        assert_eq!(parse_engine_packet("3probe"), Some(EnginePacket::Pong("probe")));
        assert_eq!(parse_engine_packet("9"), None);
        assert_eq!(parse_engine_packet(""), None);
        // Found by fuzzing: a multi-byte first character is no packet type.
        assert_eq!(parse_engine_packet("ʚ"), None);
        assert_eq!(parse_socket_packet("ʚ0"), None);
        let p = parse_socket_packet("0/admin,{\"sid\":\"x\"}").expect("connect");
        assert_eq!(
            (p.kind, p.namespace, p.data),
            (SocketKind::Connect, "/admin", "{\"sid\":\"x\"}")
        );
        let p = parse_socket_packet("0{\"sid\":\"x\"}").expect("connect");
        assert_eq!((p.kind, p.namespace), (SocketKind::Connect, "/"));
        let p = parse_socket_packet("4/admin,\"Not authorized\"").expect("error");
        assert_eq!(
            (p.kind, p.namespace, error_message(p.data).as_str()),
            (SocketKind::ConnectError, "/admin", "Not authorized")
        );
        let p = parse_socket_packet("51-/chat,12[\"ev\",{}]").expect("binary event");
        assert_eq!(
            (p.kind, p.namespace, p.data),
            (SocketKind::BinaryEvent, "/chat", "[\"ev\",{}]")
        );
        assert_eq!(parse_socket_packet("0/admin").map(|p| p.namespace), Some("/admin"));
        assert_eq!(error_message("{\"message\":\"nope\"}"), "nope");
    }

    #[test]
    fn the_connect_packet_names_the_namespace_and_carries_auth_in_v4_only() {
        let now = Instant::now();
        let opts = |eio, namespace: &str, auth: Option<&str>| SocketIoOptions {
            eio,
            namespace: namespace.into(),
            auth: auth.map(Into::into),
        };
        assert_eq!(SocketIo::new(&opts(4, "/", None), now).connect_packet(), "40");
        assert_eq!(
            SocketIo::new(&opts(4, "/admin", Some("{\"t\":1}")), now).connect_packet(),
            "40/admin,{\"t\":1}"
        );
        assert_eq!(
            SocketIo::new(&opts(3, "/admin", Some("{\"t\":1}")), now).connect_packet(),
            "40/admin,"
        );
    }
}
