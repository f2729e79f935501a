//! The session core after a successful upgrade, fed arbitrary server bytes
//! in arbitrary chunks with arbitrary time passing: the whole frame path
//! (the streaming reader, ping matching, close handling, what is kept of
//! messages).
//!
//! Input layout: byte 0 picks the chunk size, byte 1 the time step; the rest
//! is what the server sends after its 101.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sockpulse::clock::Instant;
use sockpulse::session::backoff::BackoffPolicy;
use sockpulse::session::handshake::accept_key;
use sockpulse::session::spec::{Scheme, TargetSpec, Timing, WsOptions};
use sockpulse::session::{IoRequest, Mode, Outbox, Phase, Session, MAX_PENDING_OUTPUT};

/// Short timers and small limits so the fuzzer reaches them.
fn spec() -> Arc<TargetSpec> {
    static SPEC: OnceLock<Arc<TargetSpec>> = OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let base = TargetSpec::for_test(Scheme::Ws);
        Arc::new(TargetSpec {
            timing: Timing {
                ping_interval: Some(Duration::from_millis(100)),
                pong_timeout: Duration::from_millis(50),
                idle_timeout: Some(Duration::from_secs(1)),
                connect_timeout: Duration::from_secs(1),
                handshake_timeout: Duration::from_secs(1),
                close_timeout: Duration::from_millis(200),
                backoff: BackoffPolicy {
                    min: Duration::from_millis(10),
                    max: Duration::from_millis(100),
                    reset_after: Duration::from_secs(1),
                },
                message_timeout: None,
                first_probe_delay: None,
            },
            ws: WsOptions {
                max_message_size: 65536,
                ..base.ws.clone()
            },
            ..base
        })
    });
    Arc::clone(spec)
}

fn request_key(request: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(request).ok()?;
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-key:"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fuzz_target!(|data: &[u8]| {
    let [chunk, step, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk).max(1);
    let step = Duration::from_millis(u64::from(*step) % 64);
    let mut now = Instant::now();
    let mut out = Outbox::default();
    let mut s = Session::new(spec(), Mode::Persistent, 7);
    s.start(now, &mut out);
    let addr: SocketAddr = "127.0.0.1:80".parse().expect("literal address");
    s.handle_resolved(Ok(vec![addr]), now, &mut out);
    s.handle_connected(Ok(()), now, &mut out);
    let key = request_key(s.pending_output()).expect("the core sends a key");
    let n = s.pending_output().len();
    s.consume_output(n);
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    s.handle_input(answer.as_bytes(), now, &mut out);
    assert_eq!(s.phase(), Phase::Open);

    for piece in rest.chunks(chunk) {
        now += step;
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now, &mut out);
        }
        s.handle_input(piece, now, &mut out);
        // The backlog guard holds whatever the peer sends.
        if s.phase() == Phase::Open {
            assert!(s.pending_output().len() <= MAX_PENDING_OUTPUT);
        }
        // A live session always has somewhere to be next.
        if s.phase() != Phase::Stopped {
            assert!(s.poll_timeout().is_some(), "no deadline in phase {:?}", s.phase());
        }
        out.events.clear();
        // Reconnects request I/O the fuzzer does not serve: stop feeding then.
        if out.io.iter().any(|r| matches!(r, IoRequest::Resolve { .. })) {
            break;
        }
        out.io.clear();
    }
    s.handle_eof(now, &mut out);
});
