//! Session core tests, driven by a virtual clock: no sockets, no sleeping.

use super::spec::*;
use super::*;

pub(super) const MS: Duration = Duration::from_millis(1);

pub(super) struct Harness {
    pub(super) s: Session,
    pub(super) out: Outbox,
    pub(super) now: Instant,
}

impl Harness {
    pub(super) fn new(spec: TargetSpec, mode: Mode) -> Self {
        Harness {
            s: Session::new(Arc::new(spec), mode, 42),
            out: Outbox::default(),
            now: Instant::now(),
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Fires the timer if the core says it is due, the way the driver does.
    pub(super) fn tick(&mut self) {
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now, &mut self.out);
        }
    }

    pub(super) fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.out.events)
    }

    pub(super) fn take_io(&mut self) -> Vec<IoRequest> {
        std::mem::take(&mut self.out.io)
    }

    pub(super) fn take_wire(&mut self) -> Vec<u8> {
        let bytes = self.s.pending_output().to_vec();
        self.s.consume_output(bytes.len());
        bytes
    }

    pub(super) fn input(&mut self, bytes: &[u8]) {
        self.s.handle_input(bytes, self.now, &mut self.out);
    }

    /// Drives start → resolve → connect; returns the request bytes.
    pub(super) fn connect(&mut self) -> Vec<u8> {
        self.s.start(self.now, &mut self.out);
        assert_eq!(
            self.take_io(),
            vec![IoRequest::Resolve {
                host: "example.test".into(),
                port: 80
            }]
        );
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        self.s.handle_resolved(Ok(vec![addr]), self.now, &mut self.out);
        assert_eq!(self.take_io(), vec![IoRequest::Connect(addr)]);
        self.advance(MS);
        self.s.handle_connected(Ok(()), self.now, &mut self.out);
        self.take_wire()
    }

    /// Connects and completes the WebSocket upgrade.
    pub(super) fn open_ws(&mut self) {
        let request = self.connect();
        let key = request_key(&request);
        self.advance(MS);
        self.input(upgrade_response(&key).as_bytes());
        assert_eq!(self.s.phase(), Phase::Open);
        self.take_events();
    }

    /// The first connect failure among the events so far.
    pub(super) fn connect_failure(&mut self) -> (FailureReason, String) {
        self.take_events()
            .into_iter()
            .find_map(|e| match e {
                SessionEvent::ConnectFailed { reason, detail } => Some((reason, detail)),
                _ => None,
            })
            .expect("a connect failure")
    }

    pub(super) fn failures(&mut self) -> Vec<FailureReason> {
        self.take_events()
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::ConnectFailed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    pub(super) fn disconnects(&mut self) -> Vec<DisconnectReason> {
        self.take_events()
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::Disconnected { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn request_key(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("request has a key")
        .trim()
        .to_string()
}

pub(super) fn upgrade_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        handshake::accept_key(key)
    )
}

/// An unmasked server frame.
pub(super) fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Decodes the client's (masked) frames: (opcode, payload) each.
pub(super) fn client_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        assert!(bytes[1] & 0x80 != 0, "client frames must be masked");
        let (len, mut pos) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = [bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]];
        pos += 4;
        let payload = bytes[pos..pos + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        frames.push((opcode, payload));
        bytes = &bytes[pos + len..];
    }
    frames
}

pub(super) fn sent_ping_payload(h: &mut Harness) -> Vec<u8> {
    let frames = client_frames(&h.take_wire());
    let pings: Vec<_> = frames.into_iter().filter(|(op, _)| *op == 0x9).collect();
    assert_eq!(pings.len(), 1, "expected exactly one ping");
    pings[0].1.clone()
}

#[test]
fn tcp_session_opens_and_idle_timeout_fires_at_deadline_not_before() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Tcp), Mode::Persistent);
    h.connect();
    assert_eq!(h.s.phase(), Phase::Open);
    let opened = h.now;
    h.take_events();
    h.advance(Duration::from_secs(60) - MS);
    h.tick();
    assert_eq!(h.s.phase(), Phase::Open);
    // Data resets the idle clock.
    h.input(b"hello");
    h.advance(Duration::from_secs(59));
    h.tick();
    assert_eq!(h.s.phase(), Phase::Open);
    assert_eq!(
        h.s.poll_timeout(),
        Some(opened + Duration::from_secs(60) - MS + Duration::from_secs(60))
    );
    h.advance(Duration::from_secs(1));
    h.tick();
    assert_eq!(h.disconnects(), vec![DisconnectReason::IdleTimeout]);
    assert_eq!(h.s.phase(), Phase::Backoff);
    assert!(h.take_io().iter().any(|io| matches!(io, IoRequest::CloseSocket { .. })));
}

#[test]
fn ws_handshake_request_is_well_formed_and_keys_are_random() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    let req = String::from_utf8(h.connect()).unwrap();
    assert!(req.starts_with("GET / HTTP/1.1\r\nHost: example.test\r\n"), "{req}");
    let key = request_key(req.as_bytes());
    let mut other = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    other.s.rng = Rng::new(7);
    let other_key = request_key(&other.connect());
    assert_ne!(key, other_key);
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key)
            .unwrap()
            .len(),
        16
    );
}

#[test]
fn ping_pong_matching_measures_rtt_and_ignores_stray_pongs() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    // The first ping goes out as soon as the session opens.
    h.tick();
    let payload = sent_ping_payload(&mut h);
    assert_eq!(payload.len(), 8);
    h.advance(Duration::from_millis(3));
    h.input(&frame(true, 0xA, b"unsolicited"));
    assert_eq!(h.take_events(), vec![SessionEvent::StrayPong]);
    h.advance(Duration::from_millis(4));
    h.input(&frame(true, 0xA, &payload));
    assert_eq!(
        h.take_events(),
        vec![SessionEvent::Pong {
            rtt: Duration::from_millis(7),
            probe: ProbeKind::Ping,
        }]
    );
    // The second ping comes 5-10 s after the first (phase spread), then
    // every interval exactly, never before.
    let first = h.now - Duration::from_millis(7);
    let second_at = h.s.poll_timeout().unwrap();
    let gap = second_at - first;
    assert!(
        gap >= Duration::from_secs(5) && gap <= Duration::from_secs(10),
        "{gap:?}"
    );
    h.now = second_at - MS;
    h.tick();
    assert!(h.take_wire().is_empty());
    h.advance(MS);
    h.tick();
    let second = sent_ping_payload(&mut h);
    assert_ne!(second, payload, "each ping carries its own id");
    h.input(&frame(true, 0xA, &second));
    h.take_events();
    h.advance(Duration::from_secs(10) - MS);
    h.tick();
    assert!(h.take_wire().is_empty());
    h.advance(MS);
    h.tick();
    let _third = sent_ping_payload(&mut h);
}

#[test]
fn a_pong_split_over_reads_counts_once_it_is_whole() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.tick();
    let pong = frame(true, 0xA, &sent_ping_payload(&mut h));
    h.advance(MS);
    h.input(&pong[..3]);
    assert!(h.take_events().is_empty());
    h.advance(MS);
    h.input(&pong[3..]);
    assert_eq!(
        h.take_events(),
        vec![SessionEvent::Pong {
            rtt: 2 * MS,
            probe: ProbeKind::Ping
        }]
    );
}

#[test]
fn bytes_shaped_like_a_pong_inside_a_data_frame_are_data() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.tick();
    let pong = frame(true, 0xA, &sent_ping_payload(&mut h));
    // A binary message whose payload is exactly that pong, its header and
    // payload in separate reads: the second read alone looks like the pong.
    let message = frame(true, 0x2, &pong);
    h.advance(MS);
    h.input(&message[..2]);
    h.input(&message[2..]);
    assert_eq!(h.take_events(), vec![SessionEvent::Message { size: 10 }]);
    assert_eq!(h.s.stats.last_message, Some(h.now));
    // The real pong after it still counts.
    h.advance(MS);
    h.input(&pong);
    assert_eq!(
        h.take_events(),
        vec![SessionEvent::Pong {
            rtt: 2 * MS,
            probe: ProbeKind::Ping
        }]
    );
}

#[test]
fn sessions_opened_together_spread_their_ping_phase() {
    let mut seconds = Vec::new();
    for seed in 0..20 {
        let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
        h.s.rng = Rng::new(seed);
        h.open_ws();
        let opened = h.now;
        h.tick();
        let payload = sent_ping_payload(&mut h);
        h.input(&frame(true, 0xA, &payload)); // answered: the next deadline is the ping
        seconds.push(h.s.poll_timeout().unwrap() - opened);
    }
    seconds.sort();
    seconds.dedup();
    assert!(seconds.len() >= 18, "second pings clustered: {seconds:?}");
    assert!(seconds
        .iter()
        .all(|d| *d >= Duration::from_secs(5) && *d <= Duration::from_secs(10)));
}

#[test]
fn an_anchored_session_probes_on_its_phase_even_when_the_loop_runs_late() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    let anchor = h.now + Duration::from_millis(3_500);
    h.s.set_probe_anchor(anchor);
    h.open_ws();
    h.tick();
    let first = sent_ping_payload(&mut h);
    h.input(&frame(true, 0xA, &first));
    h.take_events();
    // The second ping is due on the anchor itself (3.5 s after opening, within
    // one interval), not at a random phase.
    assert_eq!(h.s.poll_timeout(), Some(anchor));
    // The loop gets to it 7 ms late; the one after is still on the phase.
    h.now = anchor + 7 * MS;
    h.tick();
    let second = sent_ping_payload(&mut h);
    h.advance(MS);
    h.input(&frame(true, 0xA, &second));
    h.take_events();
    let interval = Duration::from_secs(10);
    assert_eq!(h.s.poll_timeout(), Some(anchor + interval));
    // A loop stalled past a whole interval skips to the next instant on the phase.
    h.now = anchor + interval * 2 + 3 * MS;
    h.tick();
    let third = sent_ping_payload(&mut h);
    h.input(&frame(true, 0xA, &third));
    h.take_events();
    assert_eq!(h.s.poll_timeout(), Some(anchor + interval * 3));
}

#[test]
fn a_probe_due_while_the_last_is_unanswered_waits_for_the_next_round_on_its_phase() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    // Anchored just after the session opens: the second ping falls due while
    // the first is still in flight.
    let anchor = h.now + 4 * MS;
    h.s.set_probe_anchor(anchor);
    h.open_ws();
    h.tick();
    let first = sent_ping_payload(&mut h);
    h.now = anchor;
    h.tick();
    assert!(h.take_wire().is_empty(), "one probe in flight at a time");
    h.advance(MS);
    h.input(&frame(true, 0xA, &first));
    h.take_events();
    let interval = Duration::from_secs(10);
    assert_eq!(h.s.poll_timeout(), Some(anchor + interval));
}

#[test]
fn pong_timeout_fires_at_deadline_and_schedules_reconnect_within_backoff() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.tick();
    let _ = sent_ping_payload(&mut h);
    let sent = h.now;
    h.advance(Duration::from_secs(5) - MS);
    h.tick();
    assert_eq!(h.s.phase(), Phase::Open);
    h.advance(MS);
    h.tick();
    let events = h.take_events();
    assert!(events.contains(&SessionEvent::PongTimeout { probe: ProbeKind::Ping }));
    assert!(events.iter().any(|e| matches!(
        e,
        SessionEvent::Disconnected {
            reason: DisconnectReason::PongTimeout,
            ..
        }
    )));
    assert_eq!(h.s.phase(), Phase::Backoff);
    let retry = h.s.poll_timeout().unwrap() - (sent + Duration::from_secs(5));
    assert!(
        retry >= Duration::from_millis(500) && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    // After the backoff the session reconnects on its own.
    h.advance(retry);
    h.tick();
    assert_eq!(h.s.phase(), Phase::Resolving);
    assert!(matches!(
        h.take_io()[..],
        [IoRequest::CloseSocket { .. }, IoRequest::Resolve { .. }]
    ));
}

#[test]
fn a_late_pong_after_the_deadline_does_not_count() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.tick();
    let payload = sent_ping_payload(&mut h);
    h.advance(Duration::from_secs(5));
    h.tick();
    h.take_events();
    h.input(&frame(true, 0xA, &payload));
    assert!(h.take_events().is_empty());
}

#[test]
fn server_pings_are_answered_with_the_same_payload() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.input(&frame(true, 0x9, b"srv-ping"));
    let frames = client_frames(&h.take_wire());
    assert!(frames.contains(&(0xA, b"srv-ping".to_vec())), "{frames:?}");
}

#[test]
fn data_messages_are_echoed_only_when_echo_is_set() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.input(&frame(true, 0x1, b"hello"));
    assert!(
        client_frames(&h.take_wire()).is_empty(),
        "a monitor stays silent by default"
    );

    let mut echoing = TargetSpec::for_test(Scheme::Ws);
    echoing.ws.echo = true;
    let mut h = Harness::new(echoing, Mode::Persistent);
    h.open_ws();
    let mut bytes = frame(false, 0x2, b"frag");
    bytes.extend(frame(true, 0x0, b"mented"));
    h.input(&frame(true, 0x1, b"hello"));
    h.input(&bytes);
    assert_eq!(
        client_frames(&h.take_wire()),
        vec![(0x1, b"hello".to_vec()), (0x2, b"fragmented".to_vec())]
    );
}

#[test]
fn pong_interleaved_in_a_fragmented_message_is_matched() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.tick();
    let payload = sent_ping_payload(&mut h);
    let big = vec![b'x'; 70_000];
    let mut bytes = frame(false, 0x1, &big);
    bytes.extend(frame(true, 0xA, &payload));
    bytes.extend(frame(true, 0x0, b"tail"));
    // Deliver in small pieces, as a slow network would.
    for chunk in bytes.chunks(1000) {
        h.input(chunk);
    }
    let events = h.take_events();
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::Pong { .. })),
        "{events:?}"
    );
    assert_eq!(h.s.stats.last_message, Some(h.now));
    assert_eq!(h.s.phase(), Phase::Open);
}

#[test]
fn peer_close_frame_reports_its_code_and_replies() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    h.input(&frame(true, 0x8, &payload));
    let events = h.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::Disconnected {
                reason: DisconnectReason::PeerClose,
                close_code: Some(1001),
                ..
            }
        )),
        "{events:?}"
    );
    let farewell = h.take_io().into_iter().find_map(|io| match io {
        IoRequest::CloseSocket { farewell } => Some(farewell),
        _ => None,
    });
    let frames = client_frames(&farewell.expect("socket closed"));
    assert_eq!(frames.first().map(|f| f.0), Some(0x8), "close reply sent");
}

#[test]
fn eof_without_close_frame_is_eof_and_reset_is_reset() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.s.handle_eof(h.now, &mut h.out);
    assert_eq!(h.disconnects(), vec![DisconnectReason::Eof]);

    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.s.handle_io_error(io::ErrorKind::ConnectionReset.into(), h.now, &mut h.out);
    assert_eq!(h.disconnects(), vec![DisconnectReason::Reset]);
}

#[test]
fn a_large_message_is_counted_as_it_streams_and_nothing_of_it_is_kept() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.take_events();
    // 2 MiB of text (twice max_message_size) in 16 fragments, read 64 KiB
    // at a time: a plain session needs none of it.
    let body = vec![b'a'; 2 << 20];
    let mut wire = Vec::new();
    for (i, piece) in body.chunks(body.len() / 16).enumerate() {
        wire.extend(frame(i == 15, if i == 0 { 0x1 } else { 0x0 }, piece));
    }
    for read in wire.chunks(64 * 1024) {
        h.input(read);
        let Some(Codec::Ws(ws)) = h.s.conn.as_ref().map(|c| &c.io.codec) else {
            panic!("the session stays open");
        };
        assert_eq!(ws.kept.capacity(), 0, "nothing of the message is held");
    }
    assert_eq!(h.take_events(), vec![SessionEvent::Message { size: 2 << 20 }]);
    assert_eq!(h.s.phase(), Phase::Open);
    assert_eq!(h.s.stats.last_message, Some(h.now), "it is the feed flowing");
}

#[test]
fn hostile_frames_are_protocol_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved opcode", frame(true, 0x3, b"")),
        ("rsv bits", {
            let mut f = frame(true, 0x1, b"a");
            f[0] |= 0x40;
            f
        }),
        ("masked server frame", vec![0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1]),
        ("2^63 length", {
            let mut f = vec![0x82, 127];
            f.extend_from_slice(&(1u64 << 63).to_be_bytes());
            f
        }),
        ("control frame over 125 bytes", frame(true, 0x9, &[0u8; 200])),
        ("fragmented control frame", frame(false, 0x9, b"x")),
        ("invalid utf-8 text", frame(true, 0x1, &[0xff, 0xfe])),
        ("message over max", frame(true, 0x2, &vec![0u8; (1 << 20) + 1])),
    ];
    for (name, bytes) in cases {
        // Echoing holds whole messages: max_message_size applies.
        let mut spec = TargetSpec::for_test(Scheme::Ws);
        spec.ws.echo = true;
        let mut h = Harness::new(spec, Mode::Persistent);
        h.open_ws();
        h.input(&bytes);
        assert_eq!(h.disconnects(), vec![DisconnectReason::ProtocolError], "case {name}");
        assert_eq!(h.s.phase(), Phase::Backoff, "case {name}");
    }
}

#[test]
fn connect_phase_failures_are_classified_and_retried() {
    // DNS error.
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.s.start(h.now, &mut h.out);
    h.s.handle_resolved(Err(io::Error::other("no such host")), h.now, &mut h.out);
    assert_eq!(h.failures(), vec![FailureReason::Dns]);
    assert_eq!(h.s.phase(), Phase::Backoff);

    // Refused on every address: the last error decides.
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.s.start(h.now, &mut h.out);
    let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b: SocketAddr = "[::1]:1".parse().unwrap();
    h.s.handle_resolved(Ok(vec![a, b]), h.now, &mut h.out);
    h.take_io();
    h.s.handle_connected(Err(io::ErrorKind::ConnectionRefused.into()), h.now, &mut h.out);
    assert_eq!(
        h.take_io(),
        vec![IoRequest::Connect(b)],
        "falls through to the next address"
    );
    h.s.handle_connected(Err(io::ErrorKind::ConnectionRefused.into()), h.now, &mut h.out);
    assert_eq!(h.failures(), vec![FailureReason::Refused]);

    // Connect timeout at the deadline, not before.
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.s.start(h.now, &mut h.out);
    h.s.handle_resolved(Ok(vec![a]), h.now, &mut h.out);
    h.advance(Duration::from_secs(5) - MS);
    h.tick();
    assert!(h.failures().is_empty());
    h.advance(MS);
    h.tick();
    assert_eq!(h.failures(), vec![FailureReason::ConnectTimeout]);

    // Handshake timeout.
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.connect();
    h.take_events();
    h.advance(Duration::from_secs(5) - MS);
    h.tick();
    assert!(h.failures().is_empty());
    h.advance(MS);
    h.tick();
    assert_eq!(h.failures(), vec![FailureReason::HandshakeTimeout]);

    // Non-101 and a wrong accept key.
    for (resp, reason) in [
        (
            "HTTP/1.1 404 Not Found\r\n\r\n".to_string(),
            FailureReason::HandshakeStatus,
        ),
        (upgrade_response("not-the-key"), FailureReason::BadAccept),
    ] {
        let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
        h.connect();
        h.take_events();
        h.input(resp.as_bytes());
        assert_eq!(h.failures(), vec![reason]);
    }

    // Connection closed before the answer.
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.connect();
    h.take_events();
    h.s.handle_eof(h.now, &mut h.out);
    assert_eq!(h.failures(), vec![FailureReason::HandshakeEof]);
}

#[test]
fn backoff_grows_while_failing_and_resets_after_a_healthy_session() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Tcp), Mode::Persistent);
    let mut caps = Vec::new();
    h.s.start(h.now, &mut h.out);
    for _ in 0..6 {
        h.s.handle_resolved(Err(io::Error::other("nx")), h.now, &mut h.out);
        let wait = h.s.poll_timeout().unwrap() - h.now;
        caps.push(wait);
        h.advance(wait);
        h.tick();
    }
    assert!(caps.iter().all(|d| *d >= Duration::from_millis(500)));
    assert!(caps[5] > Duration::from_secs(2), "backoff should grow: {caps:?}");

    // Now a session that stays healthy past reset_after, then drops.
    h.take_io();
    let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
    h.s.handle_resolved(Ok(vec![addr]), h.now, &mut h.out);
    h.s.handle_connected(Ok(()), h.now, &mut h.out);
    for _ in 0..7 {
        h.advance(Duration::from_secs(10));
        h.input(b"x");
    }
    h.s.handle_eof(h.now, &mut h.out);
    let wait = h.s.poll_timeout().unwrap() - h.now;
    assert!(wait <= Duration::from_secs(1), "streak reset: {wait:?}");
}

#[test]
fn tcp_probe_matches_expected_reply_split_across_reads() {
    let mut sp = TargetSpec::for_test(Scheme::Tcp);
    sp.probe = Some(Probe {
        send: b"PING\r\n".to_vec(),
        expect: b"+PONG".to_vec(),
    });
    let mut h = Harness::new(sp, Mode::Persistent);
    h.connect();
    h.take_events();
    h.tick();
    assert_eq!(h.take_wire(), b"PING\r\n");
    h.advance(Duration::from_millis(2));
    h.input(b"+PO");
    assert!(h.take_events().is_empty());
    h.input(b"NG\r\n");
    assert_eq!(
        h.take_events(),
        vec![SessionEvent::Pong {
            rtt: Duration::from_millis(2),
            probe: ProbeKind::Ping,
        }]
    );
    // A wrong answer never satisfies the probe: pong timeout.
    h.advance(Duration::from_secs(10));
    h.tick();
    assert_eq!(h.take_wire(), b"PING\r\n");
    h.input(b"-ERR\r\n");
    h.advance(Duration::from_secs(5));
    h.tick();
    assert!(h.disconnects().contains(&DisconnectReason::PongTimeout));
}

#[test]
fn pings_disabled_leaves_idle_timeout_as_the_only_liveness_check() {
    let mut sp = TargetSpec::for_test(Scheme::Ws);
    sp.timing.ping_interval = None;
    sp.timing.idle_timeout = Some(Duration::from_secs(3));
    let mut h = Harness::new(sp, Mode::Persistent);
    h.open_ws();
    h.advance(Duration::from_secs(2));
    h.tick();
    assert!(h.take_wire().is_empty(), "no pings");
    h.advance(Duration::from_secs(1));
    h.tick();
    assert_eq!(h.disconnects(), vec![DisconnectReason::IdleTimeout]);
}

#[test]
fn one_shot_closes_after_its_pings_and_stops() {
    let mut sp = TargetSpec::for_test(Scheme::Ws);
    sp.timing.ping_interval = Some(Duration::from_millis(100));
    sp.timing.pong_timeout = Duration::from_millis(50);
    let mut h = Harness::new(sp, Mode::OneShot { pings: 2 });
    h.open_ws();
    for _ in 0..2 {
        h.tick();
        let p = sent_ping_payload(&mut h);
        h.advance(MS);
        h.input(&frame(true, 0xA, &p));
        h.advance(Duration::from_millis(99));
    }
    assert_eq!(h.s.phase(), Phase::Closing);
    let frames = client_frames(&h.take_wire());
    assert_eq!(
        frames.last().map(|f| (f.0, f.1[..2].to_vec())),
        Some((0x8, 1000u16.to_be_bytes().to_vec()))
    );
    h.input(&frame(true, 0x8, &1000u16.to_be_bytes()));
    assert_eq!(h.s.phase(), Phase::Stopped);
    assert!(h.disconnects().contains(&DisconnectReason::LocalClose));
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn one_shot_failure_stops_without_retry() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::OneShot { pings: 1 });
    h.s.start(h.now, &mut h.out);
    h.s.handle_resolved(Err(io::Error::other("nx")), h.now, &mut h.out);
    assert_eq!(h.s.phase(), Phase::Stopped);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn stop_sends_going_away_and_gives_up_after_close_timeout() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.tick();
    h.take_wire();
    h.s.stop(h.now, &mut h.out);
    let frames = client_frames(&h.take_wire());
    assert_eq!(
        frames.last().map(|f| f.1[..2].to_vec()),
        Some(1001u16.to_be_bytes().to_vec())
    );
    h.advance(Duration::from_secs(2));
    h.tick();
    assert_eq!(h.s.phase(), Phase::Stopped);
    assert!(h.take_io().iter().any(|io| matches!(io, IoRequest::CloseSocket { .. })));
}

#[test]
fn stale_callbacks_in_other_phases_are_ignored() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
    h.s.handle_resolved(Ok(vec![addr]), h.now, &mut h.out);
    h.s.handle_connected(Err(io::ErrorKind::ConnectionRefused.into()), h.now, &mut h.out);
    assert_eq!(h.s.phase(), Phase::Open);
    assert!(h.take_events().is_empty() && h.take_io().is_empty());
}

#[test]
fn output_backlog_from_a_peer_that_never_reads_is_bounded() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    // Pings with distinct payloads; the driver never drains the output.
    let mut dropped = false;
    for i in 0..200_000u32 {
        h.input(&frame(true, 0x9, &i.to_be_bytes()));
        if h.s.phase() != Phase::Open {
            dropped = true;
            break;
        }
        assert!(h.s.pending_output().len() <= MAX_PENDING_OUTPUT + 64);
    }
    assert!(dropped, "session should give up on a peer that does not read");
    assert_eq!(h.disconnects(), vec![DisconnectReason::SendBacklog]);
}

#[test]
fn close_codes_out_of_range_are_protocol_errors_and_valid_ones_peer_close() {
    for (code, expected) in [
        (999u16, DisconnectReason::ProtocolError), // below the assigned range
        (1005, DisconnectReason::ProtocolError),   // reserved: never sent on the wire
        (1016, DisconnectReason::ProtocolError),   // unassigned
        (5000, DisconnectReason::ProtocolError),   // above the range
        (1000, DisconnectReason::PeerClose),
        (4000, DisconnectReason::PeerClose), // private use
    ] {
        let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
        h.open_ws();
        h.input(&frame(true, 0x8, &code.to_be_bytes()));
        assert_eq!(h.disconnects(), vec![expected], "close code {code}");
    }
    // A one-byte close payload is malformed too.
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    h.input(&frame(true, 0x8, &[3]));
    assert_eq!(h.disconnects(), vec![DisconnectReason::ProtocolError]);
}

#[test]
fn a_handshake_answer_dripping_one_byte_at_a_time_times_out() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    let key = request_key(&h.connect());
    h.take_events();
    let answer = upgrade_response(&key);
    // One byte a second: 5 bytes in, the 5 s handshake deadline passes.
    for b in answer.as_bytes().iter().take(5) {
        h.input(&[*b]);
        h.advance(Duration::from_secs(1));
        h.tick();
    }
    assert_eq!(h.failures(), vec![FailureReason::HandshakeTimeout]);
}

#[test]
fn invalid_utf8_in_a_close_reason_is_a_protocol_error() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.open_ws();
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    h.input(&frame(true, 0x8, &payload));
    assert_eq!(h.disconnects(), vec![DisconnectReason::ProtocolError]);
    assert_eq!(h.s.phase(), Phase::Backoff, "and it reconnects after backoff");
}

#[test]
fn addresses_are_tried_with_families_interleaved_and_a_refusal_moves_on_to_the_next() {
    let v = |s: &[&str]| s.iter().map(|a| a.parse::<SocketAddr>().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        interleave_families(v(&["[::1]:1", "[::2]:1", "[::3]:1", "10.0.0.1:1", "10.0.0.2:1"])),
        v(&["[::1]:1", "10.0.0.1:1", "[::2]:1", "10.0.0.2:1", "[::3]:1"])
    );
    assert_eq!(
        interleave_families(v(&["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "[::1]:1"])),
        v(&["10.0.0.1:1", "[::1]:1", "10.0.0.2:1", "10.0.0.3:1"])
    );
    assert_eq!(interleave_families(Vec::new()), Vec::<SocketAddr>::new());

    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.s.start(h.now, &mut h.out);
    h.take_io();
    let addrs = v(&["127.0.0.2:80", "127.0.0.3:80", "[::1]:80"]);
    h.s.handle_resolved(Ok(addrs.clone()), h.now, &mut h.out);
    assert_eq!(h.take_io(), vec![IoRequest::Connect(addrs[0])]);
    let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
    h.s.handle_connected(Err(refused()), h.now, &mut h.out);
    assert_eq!(h.take_io(), vec![IoRequest::Connect(addrs[2])], "IPv6 next");
    h.s.handle_connected(Err(refused()), h.now, &mut h.out);
    assert_eq!(h.take_io(), vec![IoRequest::Connect(addrs[1])]);
    h.s.handle_connected(Ok(()), h.now, &mut h.out);
    assert_eq!(h.s.phase(), Phase::Handshaking);
}

#[test]
fn a_pinned_endpoint_is_connected_to_without_resolving_the_name() {
    let mut h = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h.s.pin_endpoint("127.0.0.4:8080".parse().unwrap());
    h.s.start(h.now, &mut h.out);
    assert_eq!(
        h.take_io(),
        vec![IoRequest::Resolve {
            host: "127.0.0.4".into(),
            port: 8080
        }]
    );
    h.s.handle_resolved(Ok(vec!["127.0.0.4:8080".parse().unwrap()]), h.now, &mut h.out);
    assert_eq!(h.take_io(), vec![IoRequest::Connect("127.0.0.4:8080".parse().unwrap())]);
    h.s.handle_connected(Ok(()), h.now, &mut h.out);
    // The name, not the address, is what the server is asked for.
    let request = String::from_utf8(h.take_wire()).unwrap();
    assert!(request.contains("\r\nHost: example.test\r\n"), "{request}");
}

#[test]
fn a_delayed_first_probe_leaves_the_session_silent_until_then() {
    let hold = Duration::from_secs(5);
    let mut spec = TargetSpec::for_test(Scheme::Ws);
    spec.timing.ping_interval = Some(hold);
    spec.timing.first_probe_delay = Some(hold);
    spec.timing.idle_timeout = None;
    let mut h = Harness::new(spec, Mode::OneShot { pings: 1 });
    h.open_ws();
    assert_eq!(h.s.poll_timeout(), Some(h.now + hold));
    h.advance(hold - MS);
    h.tick();
    assert!(h.take_wire().is_empty(), "silent until the hold is over");
    h.advance(MS);
    h.tick();
    let frames = client_frames(&h.take_wire());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0x9, "then one ping");
}
