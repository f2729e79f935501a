//! The application protocols behind the session core, each fed arbitrary
//! messages from the server after the upgrade, with time passing: their
//! parsers (Engine.IO and Socket.IO packets, GraphQL messages, custom-probe
//! matching) and their state machines.
//!
//! Input layout: byte 0 picks the protocol, byte 1 the time step; the rest
//! is split at newlines into text messages the server sends.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sockpulse::clock::Instant;
use sockpulse::session::app::{parse_engine_packet, parse_socket_packet};
use sockpulse::session::handshake::accept_key;
use sockpulse::session::spec::{
    AppProbe, GraphqlWsOptions, ProbeAnswer, ProbeMessage, Protocol, Scheme, SocketIoOptions, TargetSpec,
};
use sockpulse::session::{IoRequest, Mode, Outbox, Phase, Session, MAX_PENDING_OUTPUT};

fn spec(which: u8) -> (TargetSpec, Option<&'static str>) {
    let mut spec = TargetSpec::for_test(Scheme::Ws);
    spec.timing.ping_interval = Some(Duration::from_millis(100));
    spec.timing.pong_timeout = Duration::from_millis(50);
    spec.timing.message_timeout = Some(Duration::from_millis(300));
    let mut subprotocol = None;
    match which % 4 {
        0 | 1 => {
            spec.protocol = Protocol::SocketIo(SocketIoOptions {
                eio: if which % 4 == 0 { 4 } else { 3 },
                namespace: "/admin".into(),
                auth: None,
            })
        }
        2 => {
            spec.protocol = Protocol::GraphqlWs(GraphqlWsOptions::default());
            spec.ws.subprotocols = vec!["graphql-transport-ws".into()];
            spec.ws.require_subprotocol = true;
            subprotocol = Some("graphql-transport-ws");
        }
        _ => {
            spec.app_probe = Some(AppProbe {
                send: ProbeMessage::Text("ping ${seq}".into()),
                expect: ProbeAnswer::text("pong ${seq}").expect("valid pattern"),
            });
        }
    }
    (spec, subprotocol)
}

/// An unmasked server text frame.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n => {
            f.push(126);
            f.extend_from_slice(&(n.min(65535) as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&payload[..payload.len().min(65535)]);
    f
}

fuzz_target!(|data: &[u8]| {
    let [which, step, rest @ ..] = data else {
        return;
    };
    // The pure parsers see every line as it is.
    for line in rest.split(|b| *b == b'\n') {
        if let Ok(text) = std::str::from_utf8(line) {
            if let Some(sockpulse::session::app::EnginePacket::Message(m)) = parse_engine_packet(text) {
                let _ = parse_socket_packet(m);
            }
        }
    }
    let (spec, subprotocol) = spec(*which);
    let step = Duration::from_millis(u64::from(*step) % 64);
    let mut now = Instant::now();
    let mut out = Outbox::default();
    let mut s = Session::new(Arc::new(spec), Mode::Persistent, 7);
    s.start(now, &mut out);
    let addr: SocketAddr = "127.0.0.1:80".parse().expect("literal address");
    s.handle_resolved(Ok(vec![addr]), now, &mut out);
    s.handle_connected(Ok(()), now, &mut out);
    let request = String::from_utf8_lossy(s.pending_output()).to_string();
    let Some(key) = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .map(|k| k.trim().to_string())
    else {
        return;
    };
    let n = s.pending_output().len();
    s.consume_output(n);
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(&key)
    );
    if let Some(p) = subprotocol {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    answer.push_str("\r\n");
    s.handle_input(answer.as_bytes(), now, &mut out);
    for line in rest.split(|b| *b == b'\n') {
        now += step;
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now, &mut out);
        }
        s.handle_input(&text_frame(line), now, &mut out);
        if matches!(s.phase(), Phase::Open | Phase::Handshaking) {
            assert!(s.pending_output().len() <= MAX_PENDING_OUTPUT);
        }
        // A live session always has somewhere to be next.
        if s.phase() != Phase::Stopped {
            assert!(s.poll_timeout().is_some(), "no deadline in phase {:?}", s.phase());
        }
        let n = s.pending_output().len();
        s.consume_output(n);
        out.events.clear();
        if out.io.iter().any(|r| matches!(r, IoRequest::Resolve { .. })) {
            break;
        }
        out.io.clear();
    }
    s.handle_eof(now, &mut out);
});
