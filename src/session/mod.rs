//! The sans-IO session core: one state machine per session, fed with events
//! and the current `Instant`, answering with I/O requests, bytes to send and
//! the next deadline. It never reads the clock and never touches a socket,
//! so every timeout is testable with a virtual clock.

pub mod backoff;
pub mod boundary;
pub mod handshake;
pub mod memstream;
pub mod ping;
pub mod reason;
pub mod spec;

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::labels::label_enum;
use backoff::Rng;
use handshake::{Expectation, Progress};
use memstream::MemStream;
pub use reason::{DisconnectReason, FailureReason};
use spec::{OpenMessage, Scheme, TargetSpec};

label_enum! {
    /// Where a session is in its life; label values of the `state` label.
    pub enum Phase {
        Idle,
        Resolving,
        Connecting,
        Handshaking,
        Open,
        Closing,
        Backoff,
        Stopped,
    }
}

impl Phase {
    /// States exported as the `state` label (idle and stopped are not).
    pub const EXPORTED: [Phase; 6] = [
        Phase::Resolving,
        Phase::Connecting,
        Phase::Handshaking,
        Phase::Open,
        Phase::Closing,
        Phase::Backoff,
    ];
}

/// Persistent sessions reconnect forever; one-shot sessions (the `status`
/// command) stop after `pings` answered probes or the first failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Persistent,
    OneShot { pings: u32 },
}

/// Work the driver must do for a session.
#[derive(Debug, PartialEq, Eq)]
pub enum IoRequest {
    Resolve {
        host: String,
        port: u16,
    },
    Connect(SocketAddr),
    /// Send `farewell` best-effort, then close the socket.
    CloseSocket {
        farewell: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    PhaseChanged {
        from: Phase,
        to: Phase,
    },
    ConnectAttempt,
    Opened {
        tcp: Duration,
        tls: Option<Duration>,
        handshake: Option<Duration>,
    },
    ConnectFailed {
        reason: FailureReason,
        detail: String,
    },
    Disconnected {
        reason: DisconnectReason,
        detail: String,
        close_code: Option<u16>,
        open_for: Duration,
    },
    Pong {
        rtt: Duration,
    },
    PongTimeout,
    StrayPong,
    /// The peer certificate's notAfter, in Unix seconds.
    CertExpiry {
        not_after_unix: i64,
    },
}

/// Shared output buffers: sessions push here, the driver drains after each
/// call. Shared so that idle sessions carry no queues of their own.
#[derive(Debug, Default)]
pub struct Outbox {
    pub events: Vec<SessionEvent>,
    pub io: Vec<IoRequest>,
}

/// What the session remembers across connections, for gauges and reports.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    pub last_pong: Option<Instant>,
    pub last_rx: Option<Instant>,
    pub last_message: Option<Instant>,
    pub opened_at: Option<Instant>,
    pub pongs: u32,
}

/// Unsent output beyond this means the peer stopped reading: a probe
/// monitor never has this much to say.
pub const MAX_PENDING_OUTPUT: usize = 256 * 1024;
/// tungstenite's read buffer: reserved per session, so kept to a probe's size.
const WS_READ_CHUNK: usize = 256;
/// Bytes kept while searching a TCP probe's answer for its pattern.
const PROBE_WINDOW: usize = 4096;

// The WebSocket lives inline: `Conn` is boxed already, and keeping the codec
// in the connection's own allocation saves a cold pointer chase per probe
// (at thousands of sessions each probe touches memory nothing else has).
#[allow(clippy::large_enum_variant)]
enum Proto {
    /// TLS still handshaking: nothing to say yet.
    AwaitTls,
    WsHandshake {
        key: String,
        buf: Vec<u8>,
    },
    Ws(WebSocket<MemStream>),
    Tcp {
        window: Vec<u8>,
    },
}

struct Conn {
    tls: Option<Box<rustls::ClientConnection>>,
    proto: Proto,
    /// Bytes for the socket (ciphertext when TLS is on).
    wire_out: Vec<u8>,
    connect_started: Instant,
    tcp_connected_at: Instant,
    tls_done_at: Option<Instant>,
    next_ping: Option<Instant>,
    /// The probe in flight: its id (WebSocket ping payload) and send time.
    outstanding: Option<(u64, Instant)>,
    ping_seq: u64,
}

pub struct Session {
    spec: Arc<TargetSpec>,
    mode: Mode,
    phase: Phase,
    rng: Rng,
    failures: u32,
    /// Deadline of the current phase: connect, handshake, close or backoff.
    phase_deadline: Option<Instant>,
    attempt_started: Option<Instant>,
    addrs: Vec<SocketAddr>,
    conn: Option<Box<Conn>>,
    closing_after_local: bool,
    stop_requested: bool,
    /// Probes go out at instants congruent to this modulo the ping interval
    /// (see `set_probe_anchor`); without it, at a random phase.
    probe_anchor: Option<Instant>,
    stats: SessionStats,
}

enum Step {
    Continue,
    Fail(FailureReason, String),
    Drop(DisconnectReason, String, Option<u16>),
}

impl Session {
    pub fn new(spec: Arc<TargetSpec>, mode: Mode, seed: u64) -> Self {
        Session {
            spec,
            mode,
            phase: Phase::Idle,
            rng: Rng::new(seed),
            failures: 0,
            phase_deadline: None,
            attempt_started: None,
            addrs: Vec::new(),
            conn: None,
            closing_after_local: false,
            stop_requested: false,
            probe_anchor: None,
            stats: SessionStats::default(),
        }
    }

    pub fn spec(&self) -> &Arc<TargetSpec> {
        &self.spec
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What the session remembers across connections.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Bytes waiting for the socket.
    pub fn pending_output(&self) -> &[u8] {
        self.conn.as_ref().map(|c| c.wire_out.as_slice()).unwrap_or(&[])
    }

    pub fn consume_output(&mut self, n: usize) {
        if let Some(c) = self.conn.as_mut() {
            c.wire_out.drain(..n.min(c.wire_out.len()));
            if c.wire_out.is_empty() {
                // Idle sessions far outnumber busy ones: hold no spare capacity.
                c.wire_out = Vec::new();
            }
        }
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest = self.phase_deadline;
        if self.phase == Phase::Open {
            let timing = &self.spec.timing;
            if let Some(c) = &self.conn {
                earliest = min_opt(earliest, c.next_ping);
                if let Some((_, sent)) = c.outstanding {
                    earliest = min_opt(earliest, Some(sent + timing.pong_timeout));
                }
            }
            if let (Some(idle), Some(last)) = (timing.idle_timeout, self.stats.last_rx) {
                earliest = min_opt(earliest, Some(last + idle));
            }
        }
        earliest
    }

    /// Pins the probe schedule of every connection of this session to
    /// `anchor` plus whole ping intervals. The driver gives neighbouring
    /// sessions neighbouring phases, so that the probes of one timer tick
    /// touch neighbouring session state (the cost of a probe at thousands
    /// of sessions is mostly cache and TLB misses), while the sessions of a
    /// target still spread evenly over the interval.
    pub fn set_probe_anchor(&mut self, anchor: Instant) {
        self.probe_anchor = Some(anchor);
    }

    #[cfg(test)]
    pub fn probe_anchor(&self) -> Option<Instant> {
        self.probe_anchor
    }

    /// Begins the first connection attempt.
    pub fn start(&mut self, now: Instant, out: &mut Outbox) {
        if self.phase == Phase::Idle {
            self.begin_attempt(now, out);
        }
    }

    /// Closes the session for good (shutdown): a close frame for open
    /// WebSocket sessions, then the socket.
    pub fn stop(&mut self, now: Instant, out: &mut Outbox) {
        self.stop_requested = true;
        match self.phase {
            Phase::Open => self.close_locally(now, out),
            Phase::Closing | Phase::Stopped => {}
            _ => {
                self.drop_conn(out);
                self.set_phase(Phase::Stopped, out);
                self.phase_deadline = None;
            }
        }
    }

    pub fn handle_resolved(&mut self, result: io::Result<Vec<SocketAddr>>, now: Instant, out: &mut Outbox) {
        if self.phase != Phase::Resolving {
            return;
        }
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                self.addrs = addrs;
                self.addrs.reverse(); // pop() then yields them in resolver order
                self.set_phase(Phase::Connecting, out);
                self.connect_next(now, out, None);
            }
            Ok(_) => self.fail(FailureReason::Dns, "no addresses".into(), now, out),
            Err(e) => self.fail(FailureReason::Dns, e.to_string(), now, out),
        }
    }

    /// The non-blocking connect finished (writable with no socket error) or failed.
    pub fn handle_connected(&mut self, result: io::Result<()>, now: Instant, out: &mut Outbox) {
        if self.phase != Phase::Connecting {
            return;
        }
        if let Err(e) = result {
            self.connect_next(now, out, Some(e));
            return;
        }
        let started = self.attempt_started.unwrap_or(now);
        let mut conn = Box::new(Conn {
            tls: None,
            proto: Proto::AwaitTls,
            wire_out: Vec::new(),
            connect_started: started,
            tcp_connected_at: now,
            tls_done_at: None,
            next_ping: None,
            outstanding: None,
            ping_seq: 0,
        });
        let spec = Arc::clone(&self.spec);
        match spec.scheme {
            Scheme::Tcp => {
                conn.proto = Proto::Tcp { window: Vec::new() };
                self.conn = Some(conn);
                self.open(now, out);
            }
            Scheme::Ws | Scheme::Wss => {
                self.set_phase(Phase::Handshaking, out);
                self.phase_deadline = Some(now + spec.timing.handshake_timeout);
                if let Some(tls) = &spec.tls {
                    match rustls::ClientConnection::new(Arc::clone(&tls.config), tls.server_name.clone()) {
                        Ok(c) => conn.tls = Some(Box::new(c)),
                        Err(e) => {
                            self.conn = Some(conn);
                            return self.fail(FailureReason::Tls, e.to_string(), now, out);
                        }
                    }
                    self.conn = Some(conn);
                    self.pump_tls_out();
                } else {
                    self.conn = Some(conn);
                    self.send_upgrade_request();
                }
            }
        }
    }

    /// Bytes arrived on the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant, out: &mut Outbox) {
        if self.conn.is_none() || bytes.is_empty() {
            return;
        }
        self.stats.last_rx = Some(now);
        let step = match self.decrypt(bytes, now, out) {
            Ok(plain) => self.feed_plaintext(&plain, now, out),
            Err(step) => step,
        };
        self.apply(step, now, out);
        self.check_backlog(now, out);
    }

    fn check_backlog(&mut self, now: Instant, out: &mut Outbox) {
        let queued = self.pending_output().len();
        if self.phase == Phase::Open && queued > MAX_PENDING_OUTPUT {
            let detail = format!("{queued} bytes unsent: the peer is not reading");
            self.apply(Step::Drop(DisconnectReason::SendBacklog, detail, None), now, out);
        }
    }

    /// The peer closed its side (read returned 0).
    pub fn handle_eof(&mut self, now: Instant, out: &mut Outbox) {
        let step = match self.phase {
            Phase::Handshaking => {
                let after_tls = self.conn.as_ref().is_some_and(|c| c.tls_done_at.is_some());
                let detail = if after_tls {
                    "connection closed after the TLS handshake, before the upgrade answer \
                     (servers that reject a missing or unknown client certificate do this)"
                } else {
                    "connection closed during handshake"
                };
                Step::Fail(FailureReason::HandshakeEof, detail.into())
            }
            Phase::Open => {
                // Let tungstenite see the EOF: a close frame may still be buffered.
                if let Some(Proto::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.proto) {
                    ws.get_mut().set_eof();
                    self.drive_ws(now, out)
                } else {
                    Step::Drop(DisconnectReason::Eof, "peer closed the connection".into(), None)
                }
            }
            Phase::Closing => {
                self.finish_local_close(now, out);
                Step::Continue
            }
            _ => Step::Continue,
        };
        // An EOF that the protocol did not turn into a close is a plain EOF.
        let step = match step {
            Step::Continue if self.phase == Phase::Open => Step::Drop(
                DisconnectReason::Eof,
                "peer closed the connection without a close frame".into(),
                None,
            ),
            s => s,
        };
        self.apply(step, now, out);
    }

    /// Reading or writing the socket failed.
    pub fn handle_io_error(&mut self, err: io::Error, now: Instant, out: &mut Outbox) {
        let step = match self.phase {
            Phase::Handshaking => {
                let reason = if DisconnectReason::from_io_error(&err) == DisconnectReason::Reset {
                    FailureReason::HandshakeEof
                } else {
                    FailureReason::IoError
                };
                Step::Fail(reason, err.to_string())
            }
            Phase::Open => Step::Drop(DisconnectReason::from_io_error(&err), err.to_string(), None),
            Phase::Closing => {
                self.finish_local_close(now, out);
                Step::Continue
            }
            _ => Step::Continue,
        };
        self.apply(step, now, out);
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let timing = self.spec.timing.clone();
        if let Some(deadline) = self.phase_deadline {
            if now >= deadline {
                self.phase_deadline = None;
                match self.phase {
                    Phase::Backoff => return self.begin_attempt(now, out),
                    Phase::Resolving => return self.fail(FailureReason::Dns, "resolution timed out".into(), now, out),
                    Phase::Connecting => {
                        return self.fail(FailureReason::ConnectTimeout, "TCP connect timed out".into(), now, out)
                    }
                    Phase::Handshaking => {
                        let during = match self.conn.as_ref() {
                            Some(c) if c.tls.is_some() && c.tls_done_at.is_none() => "TLS handshake",
                            _ => "WebSocket upgrade",
                        };
                        return self.fail(
                            FailureReason::HandshakeTimeout,
                            format!(
                                "no answer to the {during} within {}",
                                humantime::format_duration(timing.handshake_timeout)
                            ),
                            now,
                            out,
                        );
                    }
                    Phase::Closing => return self.finish_local_close(now, out),
                    _ => {}
                }
            }
        }
        if self.phase != Phase::Open {
            return;
        }
        if let (Some(idle), Some(last)) = (timing.idle_timeout, self.stats.last_rx) {
            if now >= last + idle {
                let detail = format!("nothing received for {}", humantime::format_duration(idle));
                return self.apply(Step::Drop(DisconnectReason::IdleTimeout, detail, None), now, out);
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Some((_, sent)) = conn.outstanding {
            if now >= sent + timing.pong_timeout {
                out.events.push(SessionEvent::PongTimeout);
                let detail = format!("no pong within {}", humantime::format_duration(timing.pong_timeout));
                return self.apply(Step::Drop(DisconnectReason::PongTimeout, detail, None), now, out);
            }
        }
        if let Some(at) = conn.next_ping {
            if now >= at && conn.outstanding.is_none() {
                let step = self.send_probe(now);
                self.apply(step, now, out);
                self.check_backlog(now, out);
            } else if now >= at {
                // Still waiting for the previous answer: skip this round.
                conn.next_ping = timing.ping_interval.map(|i| next_in_phase(at, i, now));
            }
        }
    }

    // ---- internals ----

    fn begin_attempt(&mut self, now: Instant, out: &mut Outbox) {
        if self.stop_requested {
            self.set_phase(Phase::Stopped, out);
            return;
        }
        self.attempt_started = Some(now);
        self.phase_deadline = Some(now + self.spec.timing.connect_timeout);
        self.set_phase(Phase::Resolving, out);
        out.events.push(SessionEvent::ConnectAttempt);
        out.io.push(IoRequest::Resolve {
            host: self.spec.host.clone(),
            port: self.spec.port,
        });
    }

    fn connect_next(&mut self, now: Instant, out: &mut Outbox, last_err: Option<io::Error>) {
        match self.addrs.pop() {
            Some(addr) => out.io.push(IoRequest::Connect(addr)),
            None => {
                let (reason, detail) = match last_err {
                    Some(e) => (FailureReason::from_connect_error(&e), e.to_string()),
                    None => (FailureReason::IoError, "no address to connect to".into()),
                };
                self.fail(reason, detail, now, out);
            }
        }
    }

    fn open(&mut self, now: Instant, out: &mut Outbox) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let tcp = conn.tcp_connected_at.saturating_duration_since(conn.connect_started);
        let tls = conn
            .tls_done_at
            .map(|t| t.saturating_duration_since(conn.tcp_connected_at));
        let handshake = match conn.proto {
            Proto::Ws(_) => Some(now.saturating_duration_since(conn.tls_done_at.unwrap_or(conn.tcp_connected_at))),
            _ => None,
        };
        let probes = matches!(conn.proto, Proto::Ws(_)) || self.spec.probe.is_some();
        // The first probe goes out at once so RTT is known from the start.
        conn.next_ping = if probes && self.spec.timing.ping_interval.is_some() {
            Some(now)
        } else {
            None
        };
        self.phase_deadline = None;
        self.addrs = Vec::new();
        self.stats.opened_at = Some(now);
        self.stats.last_rx = Some(now);
        self.set_phase(Phase::Open, out);
        out.events.push(SessionEvent::Opened { tcp, tls, handshake });
        if matches!(self.mode, Mode::OneShot { .. }) && self.conn.as_ref().is_some_and(|c| c.next_ping.is_none()) {
            // Nothing to probe: connecting was the whole check.
            self.close_locally(now, out);
        }
    }

    fn send_upgrade_request(&mut self) {
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce);
        let key = handshake::encode_key(&nonce);
        let spec = &self.spec;
        let request = handshake::build_request(&handshake::RequestParams {
            host_header: &spec.host_header,
            path: &spec.ws.path,
            key: &key,
            origin: spec.ws.origin.as_deref(),
            subprotocols: &spec.ws.subprotocols,
            headers: &spec.ws.headers,
        });
        if let Some(conn) = self.conn.as_mut() {
            conn.proto = Proto::WsHandshake { key, buf: Vec::new() };
            conn.write_plain(&request);
        }
    }

    /// Runs received bytes through TLS when it is on; returns the plaintext.
    fn decrypt<'b>(&mut self, bytes: &'b [u8], now: Instant, out: &mut Outbox) -> Result<Cow<'b, [u8]>, Step> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Cow::Borrowed(&[]));
        };
        let Some(tls) = conn.tls.as_mut() else {
            return Ok(Cow::Borrowed(bytes));
        };
        let mut rest = bytes;
        let mut plain = Vec::new();
        let mut peer_closed = false;
        while !rest.is_empty() {
            if let Err(e) = tls.read_tls(&mut rest) {
                return Err(tls_step(self.phase, e.to_string()));
            }
            if let Err(e) = tls.process_new_packets() {
                // Send the alert rustls queued, then give up on the session.
                let _ = tls.write_tls(&mut conn.wire_out);
                return Err(tls_step(self.phase, e.to_string()));
            }
            let mut chunk = [0u8; 4096];
            loop {
                match tls.reader().read(&mut chunk) {
                    Ok(0) => {
                        peer_closed = true;
                        break;
                    }
                    Ok(n) => plain.extend_from_slice(&chunk[..n]),
                    Err(_) => break, // WouldBlock: no more plaintext for now
                }
            }
        }
        let tls_just_done = conn.tls_done_at.is_none() && !tls.is_handshaking();
        if tls_just_done {
            conn.tls_done_at = Some(now);
            if let Some(not_after_unix) = tls
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| cert_not_after(der.as_ref()))
            {
                out.events.push(SessionEvent::CertExpiry { not_after_unix });
            }
        }
        self.pump_tls_out();
        if tls_just_done {
            self.send_upgrade_request();
        }
        if peer_closed && plain.is_empty() {
            return Err(match self.phase {
                Phase::Handshaking => {
                    Step::Fail(FailureReason::HandshakeEof, "TLS close_notify during handshake".into())
                }
                _ => Step::Drop(DisconnectReason::Eof, "TLS close_notify".into(), None),
            });
        }
        Ok(Cow::Owned(plain))
    }

    fn pump_tls_out(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.flush_tls();
        }
    }

    fn feed_plaintext(&mut self, plain: &[u8], now: Instant, out: &mut Outbox) -> Step {
        if let Some(payload) = self.codec_free_pong(plain) {
            self.take_pong(payload, now, out);
            return Step::Continue;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Step::Continue;
        };
        match &mut conn.proto {
            Proto::AwaitTls => Step::Continue,
            Proto::WsHandshake { key, buf } => {
                buf.extend_from_slice(plain);
                let spec = &self.spec;
                let want = Expectation {
                    key,
                    subprotocols: &spec.ws.subprotocols,
                    require_subprotocol: spec.ws.require_subprotocol,
                };
                match handshake::parse_response(buf, &want) {
                    Ok(Progress::NeedMore) => Step::Continue,
                    Err(rejected) => Step::Fail(rejected.reason, rejected.detail),
                    Ok(Progress::Done(accepted)) => {
                        // The core already holds received bytes; tungstenite only
                        // stages them, so its eagerly reserved buffer stays small.
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
                        conn.proto = Proto::Ws(ws);
                        self.open(now, out);
                        if self.phase != Phase::Open {
                            return Step::Continue;
                        }
                        self.send_on_open_messages();
                        // Frames may have arrived together with the 101.
                        self.drive_ws(now, out)
                    }
                }
            }
            Proto::Ws(ws) => {
                ws.get_mut().push_input(plain);
                self.drive_ws(now, out)
            }
            Proto::Tcp { window } => {
                let Some(probe) = &self.spec.probe else {
                    return Step::Continue;
                };
                let Some((_, sent)) = conn.outstanding else {
                    return Step::Continue;
                };
                window.extend_from_slice(plain);
                if contains(window, &probe.expect) {
                    window.clear();
                    conn.outstanding = None;
                    self.record_pong(now.saturating_duration_since(sent), now, out);
                } else if window.len() > PROBE_WINDOW {
                    // Keep only a tail long enough to hold a split match.
                    let keep = probe.expect.len().saturating_sub(1);
                    let cut = window.len() - keep;
                    window.drain(..cut);
                }
                Step::Continue
            }
        }
    }

    fn send_on_open_messages(&mut self) {
        let spec = Arc::clone(&self.spec);
        if let Some(Proto::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.proto) {
            for m in &spec.ws.on_open {
                let msg = match m {
                    OpenMessage::Text(t) => Message::text(t.clone()),
                    OpenMessage::Binary(b) => Message::binary(b.clone()),
                };
                let _ = ws.write(msg);
            }
            let _ = ws.flush();
        }
        self.flush_ws_output();
    }

    /// Reads every complete message tungstenite can decode from its input.
    fn drive_ws(&mut self, now: Instant, out: &mut Outbox) -> Step {
        let mut step = Step::Continue;
        while let Some(conn) = self.conn.as_mut() {
            let Proto::Ws(ws) = &mut conn.proto else {
                break;
            };
            match ws.read() {
                Ok(Message::Pong(payload)) => {
                    if self.take_pong(&payload, now, out) && self.phase != Phase::Open {
                        break;
                    }
                }
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                    self.stats.last_message = Some(now);
                    if self.spec.ws.echo {
                        // Queued in tungstenite; the flush below sends it.
                        let _ = ws.write(msg);
                    }
                }
                Ok(Message::Ping(_)) | Ok(Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    if self.phase == Phase::Closing {
                        // The answer to our own close: done.
                        let _ = ws.flush();
                        self.flush_ws_output();
                        self.finish_local_close(now, out);
                        break;
                    }
                    let (code, text) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                        None => (None, String::new()),
                    };
                    let _ = ws.flush(); // queue tungstenite's close reply
                    self.flush_ws_output();
                    // tungstenite answers a close frame whose code may not be
                    // sent with 1002 and hands us that instead of the original.
                    let rewritten = code == Some(1002) && text == "Protocol violation";
                    step = match code {
                        Some(_) if rewritten => Step::Drop(
                            DisconnectReason::ProtocolError,
                            "close frame with a code that may not be sent (RFC 6455 section 7.4); answered 1002".into(),
                            code,
                        ),
                        Some(c) => Step::Drop(
                            DisconnectReason::PeerClose,
                            format!("close frame code {c} {text:?}"),
                            code,
                        ),
                        None => Step::Drop(DisconnectReason::PeerClose, "close frame without status".into(), None),
                    };
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
                    self.flush_ws_output();
                    step = Step::Drop(DisconnectReason::ProtocolError, e.to_string(), None);
                    break;
                }
            }
        }
        if let Some(Proto::Ws(ws)) = self.conn.as_mut().map(|c| &mut c.proto) {
            let _ = ws.flush(); // automatic pong replies to server pings
            ws.get_mut().compact();
        }
        self.flush_ws_output();
        step
    }

    /// The payload of `plain` when it is the common read at scale, one bare
    /// pong, and tungstenite holds no partial frame (so it cannot be the rest
    /// of one): then it is matched directly, not staged through tungstenite's
    /// buffers, whose cold memory was much of a probe's user-space cost at
    /// thousands of sessions.
    fn codec_free_pong<'a>(&self, plain: &'a [u8]) -> Option<&'a [u8]> {
        match self.conn.as_deref().map(|c| &c.proto) {
            Some(Proto::Ws(ws)) if self.phase == Phase::Open && ws.get_ref().drained_at_frame_boundary() => {
                ping::bare_pong(plain)
            }
            _ => None,
        }
    }

    /// A pong counts only when it carries the id of the probe in flight;
    /// returns whether it did.
    fn take_pong(&mut self, payload: &[u8], now: Instant, out: &mut Outbox) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.outstanding {
            Some((id, sent)) if payload == id.to_be_bytes() => {
                conn.outstanding = None;
                self.record_pong(now.saturating_duration_since(sent), now, out);
                true
            }
            _ => {
                out.events.push(SessionEvent::StrayPong);
                false
            }
        }
    }

    /// Moves what tungstenite wrote into the wire buffer (through TLS if on).
    fn flush_ws_output(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Proto::Ws(ws) = &mut conn.proto else {
            return;
        };
        let bytes = std::mem::take(&mut ws.get_mut().output);
        if bytes.is_empty() {
            return;
        }
        if conn.tls.is_none() && conn.wire_out.is_empty() {
            conn.wire_out = bytes; // the common case: hand the buffer over, no copy
        } else {
            conn.write_plain(&bytes);
        }
    }

    fn send_probe(&mut self, now: Instant) -> Step {
        let spec = Arc::clone(&self.spec);
        let first = self.conn.as_ref().is_some_and(|c| c.ping_seq == 0);
        let due = self.conn.as_ref().and_then(|c| c.next_ping).unwrap_or(now);
        let next = spec.timing.ping_interval.map(|interval| {
            if first && self.mode == Mode::Persistent {
                // Sessions opened together would otherwise ping together
                // forever. Move this one to its phase: its anchor, or a random
                // one. At most an interval later, so the detection bound holds.
                match self.probe_anchor {
                    Some(anchor) => next_in_phase(anchor, interval, now),
                    None => {
                        let half = interval.as_micros() as u64 / 2;
                        now + Duration::from_micros(half + self.rng.below_inclusive(half))
                    }
                }
            } else {
                // From when it was due, not when the loop got to it, so the
                // phase does not drift by the timer grid's lateness.
                next_in_phase(due, interval, now)
            }
        });
        let Some(conn) = self.conn.as_mut() else {
            return Step::Continue;
        };
        conn.ping_seq = conn.ping_seq.wrapping_add(1);
        let id = conn.ping_seq;
        conn.outstanding = Some((id, now));
        conn.next_ping = next;
        match &mut conn.proto {
            Proto::Ws(_) => {
                // Whole frames only reach the wire buffer (tungstenite's
                // output is moved there after every call), so the ping never
                // lands inside another frame.
                self.flush_ws_output();
                if let Some(conn) = self.conn.as_mut() {
                    conn.write_plain(&ping::frame(id, ping::random_mask()));
                }
            }
            Proto::Tcp { window } => {
                window.clear();
                if let Some(p) = &spec.probe {
                    conn.write_plain(&p.send);
                }
            }
            _ => {}
        }
        Step::Continue
    }

    fn record_pong(&mut self, rtt: Duration, now: Instant, out: &mut Outbox) {
        self.stats.last_pong = Some(now);
        self.stats.pongs = self.stats.pongs.saturating_add(1);
        out.events.push(SessionEvent::Pong { rtt });
        if let Mode::OneShot { pings } = self.mode {
            if self.stats.pongs >= pings {
                self.close_locally(now, out);
            }
        }
    }

    fn close_locally(&mut self, now: Instant, out: &mut Outbox) {
        let mut waits_for_peer = false;
        if let Some(conn) = self.conn.as_mut() {
            if let Proto::Ws(ws) = &mut conn.proto {
                let code = if self.stop_requested {
                    CloseCode::Away
                } else {
                    CloseCode::Normal
                };
                waits_for_peer = ws
                    .close(Some(CloseFrame {
                        code,
                        reason: "".into(),
                    }))
                    .is_ok();
                let _ = ws.flush();
            }
        }
        self.flush_ws_output();
        self.closing_after_local = true;
        if waits_for_peer {
            self.phase_deadline = Some(now + self.spec.timing.close_timeout);
            self.set_phase(Phase::Closing, out);
        } else {
            self.finish_local_close(now, out);
        }
    }

    fn finish_local_close(&mut self, now: Instant, out: &mut Outbox) {
        let open_for = self.open_for(now);
        out.events.push(SessionEvent::Disconnected {
            reason: DisconnectReason::LocalClose,
            detail: "closed by sockpulse".into(),
            close_code: None,
            open_for,
        });
        self.drop_conn(out);
        self.phase_deadline = None;
        self.closing_after_local = false;
        self.set_phase(Phase::Stopped, out);
    }

    fn apply(&mut self, step: Step, now: Instant, out: &mut Outbox) {
        match step {
            Step::Continue => {}
            Step::Fail(reason, detail) => self.fail(reason, detail, now, out),
            Step::Drop(reason, detail, close_code) => self.disconnect(reason, detail, close_code, now, out),
        }
    }

    fn fail(&mut self, reason: FailureReason, detail: String, now: Instant, out: &mut Outbox) {
        out.events.push(SessionEvent::ConnectFailed { reason, detail });
        self.drop_conn(out);
        self.failures = self.failures.saturating_add(1);
        self.after_loss(now, out);
    }

    fn disconnect(
        &mut self,
        reason: DisconnectReason,
        detail: String,
        close_code: Option<u16>,
        now: Instant,
        out: &mut Outbox,
    ) {
        let open_for = self.open_for(now);
        out.events.push(SessionEvent::Disconnected {
            reason,
            detail,
            close_code,
            open_for,
        });
        self.drop_conn(out);
        if open_for >= self.spec.timing.backoff.reset_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.after_loss(now, out);
    }

    fn after_loss(&mut self, now: Instant, out: &mut Outbox) {
        self.stats.opened_at = None;
        if self.stop_requested || matches!(self.mode, Mode::OneShot { .. }) {
            self.phase_deadline = None;
            self.set_phase(Phase::Stopped, out);
            return;
        }
        let delay = self.spec.timing.backoff.delay(self.failures, &mut self.rng);
        self.phase_deadline = Some(now + delay);
        self.set_phase(Phase::Backoff, out);
    }

    fn open_for(&self, now: Instant) -> Duration {
        self.stats
            .opened_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default()
    }

    fn drop_conn(&mut self, out: &mut Outbox) {
        let had_socket = matches!(
            self.phase,
            Phase::Connecting | Phase::Handshaking | Phase::Open | Phase::Closing
        );
        let farewell = self.conn.take().map(|c| c.wire_out).unwrap_or_default();
        self.addrs.clear();
        if had_socket {
            out.io.push(IoRequest::CloseSocket { farewell });
        }
    }

    fn set_phase(&mut self, to: Phase, out: &mut Outbox) {
        if self.phase != to {
            out.events.push(SessionEvent::PhaseChanged { from: self.phase, to });
            self.phase = to;
        }
    }
}

impl Conn {
    fn write_plain(&mut self, bytes: &[u8]) {
        match self.tls.as_mut() {
            Some(tls) => {
                let _ = tls.writer().write_all(bytes);
                self.flush_tls();
            }
            None => self.wire_out.extend_from_slice(bytes),
        }
    }

    fn flush_tls(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            while tls.wants_write() {
                if tls.write_tls(&mut self.wire_out).is_err() {
                    break;
                }
            }
        }
    }
}

fn tls_step(phase: Phase, detail: String) -> Step {
    if phase == Phase::Handshaking {
        Step::Fail(FailureReason::Tls, detail)
    } else {
        Step::Drop(DisconnectReason::ProtocolError, format!("TLS: {detail}"), None)
    }
}

fn cert_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The first instant after `now` that lies a whole number of intervals from
/// `anchor` (before or after it).
fn next_in_phase(anchor: Instant, interval: Duration, now: Instant) -> Instant {
    let period = interval.as_nanos().max(1);
    let wait = match anchor.checked_duration_since(now) {
        Some(ahead) => match ahead.as_nanos() % period {
            0 => period,
            rest => rest,
        },
        None => period - now.duration_since(anchor).as_nanos() % period,
    };
    now + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

/// The earlier of two optional instants.
pub(crate) fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests;
