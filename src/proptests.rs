//! Property tests: arbitrary event orders and timings for the session core,
//! arbitrary bytes for every parser that reads the network or a file.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use crate::clock::Instant;
use crate::session::backoff::BackoffPolicy;
use crate::session::spec::*;
use crate::session::{handshake, IoRequest, Mode, Outbox, Phase, Session, SessionEvent};

/// Short timers and small limits, so that arbitrary event orders reach them.
fn spec(scheme: Scheme) -> Arc<TargetSpec> {
    let base = TargetSpec::for_test(scheme);
    Arc::new(TargetSpec {
        timing: Timing {
            ping_interval: Some(Duration::from_secs(2)),
            pong_timeout: Duration::from_secs(1),
            idle_timeout: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            close_timeout: Duration::from_millis(500),
            backoff: BackoffPolicy {
                min: Duration::from_millis(200),
                max: Duration::from_secs(3),
                reset_after: Duration::from_secs(4),
            },
            message_timeout: None,
            first_probe_delay: None,
        },
        ws: WsOptions {
            max_message_size: 4096,
            ..base.ws.clone()
        },
        probe: (scheme == Scheme::Tcp).then(|| Probe {
            send: b"PING\r\n".to_vec(),
            expect: b"+PONG".to_vec(),
        }),
        ..base
    })
}

#[derive(Debug, Clone)]
enum Ev {
    Advance(u16),
    Resolved(bool),
    Connected(bool),
    /// Bytes from the peer: a valid 101, a pong/ping/close frame, or noise.
    Input(u8, Vec<u8>),
    Eof,
    Reset,
    Stop,
    EarlyTimeout,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (0u16..3000).prop_map(Ev::Advance),
        1 => any::<bool>().prop_map(Ev::Resolved),
        1 => any::<bool>().prop_map(Ev::Connected),
        4 => (0u8..6, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, b)| Ev::Input(k, b)),
        1 => Just(Ev::Eof),
        1 => Just(Ev::Reset),
        1 => Just(Ev::EarlyTimeout),
        1 => Just(Ev::Stop),
    ]
}

/// Event sequences; half start with a successful connect and handshake, so
/// the open phase is explored and not only the failures before it.
fn events() -> impl Strategy<Value = Vec<Ev>> {
    (any::<bool>(), proptest::collection::vec(ev(), 1..120)).prop_map(|(open_first, mut v)| {
        if open_first {
            v.splice(
                0..0,
                [Ev::Resolved(true), Ev::Connected(true), Ev::Input(0, Vec::new())],
            );
        }
        v
    })
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode, payload.len().min(125) as u8];
    f.extend_from_slice(&payload[..payload.len().min(125)]);
    f
}

fn run(scheme: Scheme, mode: Mode, events: Vec<Ev>) -> Result<(), TestCaseError> {
    let mut s = Session::new(spec(scheme), mode, 9);
    let mut out = Outbox::default();
    let mut now = Instant::now();
    let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
    s.start(now, &mut out);
    out.events.clear();
    out.io.clear();
    let mut last_key: Option<String> = None;
    for e in events {
        let before = s.phase();
        match e {
            Ev::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms));
                while let Some(t) = s.poll_timeout() {
                    if t > now {
                        break;
                    }
                    s.handle_timeout(t.max(now), &mut out);
                }
            }
            Ev::Resolved(ok) => s.handle_resolved(
                if ok {
                    Ok(vec![addr])
                } else {
                    Err(io::Error::other("nx"))
                },
                now,
                &mut out,
            ),
            Ev::Connected(ok) => s.handle_connected(
                if ok {
                    Ok(())
                } else {
                    Err(io::ErrorKind::ConnectionRefused.into())
                },
                now,
                &mut out,
            ),
            Ev::Input(kind, bytes) => {
                let data = match kind {
                    0 => match &last_key {
                        Some(k) => format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                            handshake::accept_key(k)
                        )
                        .into_bytes(),
                        None => bytes,
                    },
                    1 => frame(0xA, &bytes),
                    2 => frame(0x9, &bytes),
                    3 => frame(0x8, &bytes),
                    4 => b"+PONG\r\n".to_vec(),
                    _ => bytes,
                };
                s.handle_input(&data, now, &mut out);
            }
            Ev::Eof => s.handle_eof(now, &mut out),
            Ev::Reset => s.handle_io_error(io::ErrorKind::ConnectionReset.into(), now, &mut out),
            Ev::Stop => s.stop(now, &mut out),
            Ev::EarlyTimeout => {
                if let Some(t) = s.poll_timeout() {
                    if t > now {
                        let phase = s.phase();
                        s.handle_timeout(now, &mut out);
                        prop_assert_eq!(s.phase(), phase, "a timeout before the deadline changed the phase");
                        prop_assert!(
                            out.events.is_empty(),
                            "a timeout before the deadline emitted {:?}",
                            out.events
                        );
                    }
                }
            }
        }
        // Remember the key of an upgrade request so a valid 101 can follow.
        let wire = s.pending_output().to_vec();
        s.consume_output(wire.len());
        if let Some(k) = String::from_utf8_lossy(&wire)
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        {
            last_key = Some(k.trim().to_string());
        }
        for ev in out.events.drain(..) {
            if let SessionEvent::PhaseChanged { to: Phase::Backoff, .. } = ev {
                let wait = s.poll_timeout().map(|t| t.saturating_duration_since(now));
                prop_assert!(
                    wait.is_some_and(|w| w >= Duration::from_millis(200)),
                    "reconnect sooner than backoff.min: {wait:?}"
                );
            }
        }
        out.io.retain(|io| !matches!(io, IoRequest::CloseSocket { .. }));
        out.io.clear();
        // A live session always has a deadline: without one it could hang.
        let live = !matches!(s.phase(), Phase::Idle | Phase::Stopped);
        prop_assert!(
            !live || s.poll_timeout().is_some(),
            "phase {:?} (from {before:?}) has no deadline",
            s.phase()
        );
        prop_assert!(s.pending_output().len() <= crate::session::MAX_PENDING_OUTPUT + 4096);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn ws_sessions_survive_any_event_order(events in events()) {
        run(Scheme::Ws, Mode::Persistent, events)?;
    }

    #[test]
    fn tcp_sessions_survive_any_event_order(events in events()) {
        run(Scheme::Tcp, Mode::Persistent, events)?;
    }

    #[test]
    fn one_shot_sessions_survive_any_event_order(events in events()) {
        run(Scheme::Ws, Mode::OneShot { pings: 2 }, events)?;
    }

    #[test]
    fn handshake_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let want = handshake::Expectation { key: "dGhlIHNhbXBsZSBub25jZQ==", subprotocols: &[], require_subprotocol: false };
        let _ = handshake::parse_response(&bytes, &want);
        let mut prefixed = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = handshake::parse_response(&prefixed, &want);
    }

    #[test]
    fn netlink_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = crate::kernel::netlink::parse_datagram(&bytes, &mut Vec::new());
    }

    #[test]
    fn proc_table_parser_never_panics(lines in proptest::collection::vec("[0-9A-Fa-f: ]{0,120}", 0..6)) {
        let text = format!("  sl  local_address rem_address   st\n{}", lines.join("\n"));
        let _ = crate::kernel::table::parse(text.as_bytes());
    }

    #[test]
    fn proxy_answers_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        kind in 0..3usize,
        auth in any::<bool>(),
    ) {
        use crate::session::proxy::{ProxyAuth, ProxyHandshake, ProxyKind, ProxySpec, TunnelTo};
        let proxy = ProxySpec {
            kind: ProxyKind::ALL[kind],
            host: "proxy.test".into(),
            port: 3128,
            auth: auth.then(|| ProxyAuth { user: "u".into(), password: "p".into() }),
        };
        let mut out = crate::session::OutBuf::new();
        let to = TunnelTo::Name("target.test".into(), 443);
        let mut hs = ProxyHandshake::start(&proxy, &to, &crate::session::secrets::SecretFiles::EMPTY, &mut out)
            .expect("valid credentials");
        for chunk in chunks {
            match hs.input(&chunk, &mut out) {
                Ok(None) => prop_assert!(out.len() < 4096, "a proxy must not make us say much"),
                Ok(Some(_)) | Err(_) => break,
            }
        }
    }

    #[test]
    fn dns_answers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(answer) = hickory_proto::op::Message::from_vec(&bytes) {
            let _ = crate::driver::srv::services(&answer);
        }
    }

    #[test]
    fn config_parser_never_panics(text in "[a-z_\\[\\]=\"{}., 0-9:/\\n]{0,300}") {
        let _ = crate::config::parse(&text, "fuzz", &[], &|_| None);
    }
}
