//! The sans-IO session core: one state machine per session, fed with events
//! and the current `Instant`, answering with I/O requests, bytes to send and
//! the next deadline. It never reads the clock and never touches a socket,
//! so every timeout is testable with a virtual clock.
//!
//! `Session` (here) owns the phases, backoff and the open connection;
//! `conn` the connection's bytes, `tls` the TLS pump, `ws` the WebSocket
//! upgrade and codec, `app` the liveness protocol that proves the peer
//! alive (RFC 6455 pings, TCP probes), `schedule` when it probes.

pub mod app;
pub mod backoff;
mod conn;
pub mod frames;
pub mod handshake;
pub mod ping;
pub mod proxy;
pub mod reason;
pub mod rng;
pub mod schedule;
pub mod secrets;
pub mod spec;
mod tls;
mod tls_conn;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Instant;
use crate::labels::label_enum;
pub use app::ProbeKind;
use app::{App, Ctx, Input, Report};
pub use conn::OutBuf;
use conn::{Codec, Conn};
use proxy::{ProxyHandshake, TunnelTo};
pub use reason::{DisconnectReason, FailureReason};
use rng::Rng;
use schedule::Probing;
use secrets::SecretFiles;
use spec::{Scheme, TargetSpec};

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
    /// Resolve, then answer with `handle_resolved`.
    Resolve { host: String, port: u16 },
    /// Start a non-blocking connect, then answer with `handle_connected`.
    Connect(SocketAddr),
    /// Send `farewell` best-effort, then close the socket.
    CloseSocket { farewell: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    PhaseChanged {
        from: Phase,
        to: Phase,
    },
    ConnectAttempt,
    /// The session is open; how long each step of getting there took.
    Opened {
        /// The TCP connect (to the proxy, when there is one).
        tcp: Duration,
        /// The proxy's tunnel, from its TCP connect to its yes.
        proxy: Option<Duration>,
        tls: Option<Duration>,
        /// The WebSocket upgrade.
        handshake: Option<Duration>,
        /// The application protocol's own handshake.
        app: Option<Duration>,
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
    /// A probe was answered.
    Pong {
        rtt: Duration,
        probe: ProbeKind,
    },
    /// A probe, or the heartbeat the peer owes, did not come in time.
    PongTimeout {
        probe: ProbeKind,
    },
    StrayPong,
    /// A WebSocket data message was received whole (its content was kept
    /// only as far as the liveness protocol needed it).
    Message {
        size: u64,
    },
    /// The TLS handshake completed, in full or resuming an earlier session.
    TlsHandshake {
        resumed: bool,
    },
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

/// One session to a target: a state machine that lives through many
/// connections (resolve → connect → TLS → upgrade → open → closing, or a
/// failure → backoff → resolve again).
///
/// # Calling contract
/// A session never touches a socket, never reads the clock and never
/// sleeps. Its driver:
/// - feeds it input: `start` once, then `handle_resolved` (the answer to an
///   `IoRequest::Resolve`), `handle_connected` (the connect an
///   `IoRequest::Connect` started finished or failed), `handle_input`
///   (bytes read), `handle_eof`, `handle_io_error`, `handle_timeout`, and
///   `stop` to close for good;
/// - after every call, drains the shared `Outbox`: carries out its
///   `IoRequest`s in order, reports its `SessionEvent`s, writes
///   `pending_output` to the socket and says how much went with
///   `consume_output`, then reads `poll_timeout` again;
/// - passes `now` into every call, from a monotonic clock. For
///   `handle_input` it is when the bytes reached the host (the kernel's
///   receive time), which may be earlier than the loop's clock: RTTs end
///   there.
///
/// `poll_timeout` is the earliest instant at which `handle_timeout` has
/// work: nothing changes by itself before it, and calling `handle_timeout`
/// early does nothing. `None` means nothing is due until input arrives.
/// Input that does not fit the current phase (a DNS answer after its
/// timeout) is ignored.
///
/// # Randomness
/// Backoff jitter, probe phases without an anchor and WebSocket keys come
/// from the session's seeded `Rng`, so tests replay exactly. Frame masks
/// come from the thread's CSPRNG: RFC 6455 §5.3
/// requires them unpredictable, and they change no behaviour.
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
    /// Where it goes when that is not simply the target's name: boxed, as
    /// most sessions have neither (and the hot part stays small).
    route: Option<Box<Route>>,
    conn: Option<Box<Conn>>,
    stop_requested: bool,
    /// Where probes fall in the ping interval (see `set_probe_anchor`).
    probing: Probing,
    /// The target's secret files as read for this attempt, if it has any.
    secrets: Option<Arc<SecretFiles>>,
    stats: SessionStats,
}

/// A session's route when it is not simply the target's name.
#[derive(Debug, Default)]
struct Route {
    /// With `endpoints = "all"`: the one address this session connects to.
    endpoint: Option<SocketAddr>,
    /// Through a proxy: where its tunnel goes (for `socks5://`, known once
    /// the target's name is resolved here, before the proxy's).
    tunnel_to: Option<TunnelTo>,
}

/// What handling some input decided for the session as a whole.
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
            route: None,
            conn: None,
            stop_requested: false,
            probing: Probing {
                anchor: None,
                spread: mode == Mode::Persistent,
            },
            secrets: None,
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
        self.conn.as_ref().map(|c| c.io.wire.out.as_slice()).unwrap_or(&[])
    }

    /// The driver wrote the first `n` bytes of `pending_output`.
    pub fn consume_output(&mut self, n: usize) {
        if let Some(c) = self.conn.as_mut() {
            let out = &mut c.io.wire.out;
            out.drain(..n.min(out.len()));
            if out.is_empty() && out.spilled() {
                // Idle sessions far outnumber busy ones: hold no spare capacity.
                *out = OutBuf::new();
            }
        }
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest = self.phase_deadline;
        if self.phase == Phase::Open {
            if let Some(c) = &self.conn {
                earliest = min_opt(earliest, c.app.poll_timeout(&self.spec));
            }
            if let (Some(idle), Some(last)) = (self.spec.timing.idle_timeout, self.stats.last_rx) {
                earliest = min_opt(earliest, Some(last + idle));
            }
            earliest = min_opt(earliest, self.message_deadline());
        }
        earliest
    }

    /// When `message_timeout` ends an open session that receives no data.
    fn message_deadline(&self) -> Option<Instant> {
        let timeout = self.spec.timing.message_timeout?;
        let last = self.stats.last_message.max(self.stats.opened_at)?;
        Some(last + timeout)
    }

    /// Pins the probe schedule of every connection of this session to
    /// `anchor` plus whole ping intervals. The driver gives neighbouring
    /// sessions neighbouring phases, so that the probes of one timer tick
    /// touch neighbouring session state, while the sessions of a target
    /// still spread evenly over the interval.
    pub fn set_probe_anchor(&mut self, anchor: Instant) {
        self.probing.anchor = Some(anchor);
    }

    /// Connects every attempt to `addr` instead of resolving the name (the
    /// name still goes in SNI and `Host:`).
    pub fn pin_endpoint(&mut self, addr: SocketAddr) {
        self.route.get_or_insert_with(Box::default).endpoint = Some(addr);
    }

    /// The address this session is pinned to, if any.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.route.as_ref().and_then(|r| r.endpoint)
    }

    /// Through a proxy: where its tunnel goes, once known.
    fn tunnel_to(&self) -> Option<&TunnelTo> {
        self.route.as_ref().and_then(|r| r.tunnel_to.as_ref())
    }

    fn set_tunnel_to(&mut self, to: Option<TunnelTo>) {
        if to.is_some() || self.route.is_some() {
            self.route.get_or_insert_with(Box::default).tunnel_to = to;
        }
    }

    #[cfg(test)]
    pub fn probe_anchor(&self) -> Option<Instant> {
        self.probing.anchor
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

    /// The target's secret files, read for this attempt (before
    /// `handle_resolved`); a file that cannot be read fails the attempt.
    pub fn handle_secrets(&mut self, result: Result<SecretFiles, String>, now: Instant, out: &mut Outbox) {
        if self.phase != Phase::Resolving {
            return;
        }
        match result {
            Ok(files) => self.secrets = Some(Arc::new(files)),
            Err(detail) => self.fail(FailureReason::AppHandshake, detail, now, out),
        }
    }

    pub fn handle_resolved(&mut self, result: io::Result<Vec<SocketAddr>>, now: Instant, out: &mut Outbox) {
        if self.phase != Phase::Resolving {
            return;
        }
        let Some(result) = self.through_proxy(result, out) else {
            return;
        };
        // The proxy's own name failing to resolve is the proxy's failure.
        let reason = if self.tunnel_to().is_some() {
            FailureReason::Proxy
        } else {
            FailureReason::Dns
        };
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                self.addrs = interleave_families(addrs);
                self.addrs.reverse(); // pop() then yields them in order
                self.set_phase(Phase::Connecting, out);
                self.connect_next(now, out, None);
            }
            Ok(_) => self.fail(reason, "no addresses".into(), now, out),
            Err(e) => self.fail(reason, e.to_string(), now, out),
        }
    }

    /// With a proxy, names resolve in two steps for `socks5://` (the
    /// target's here, then the proxy's) and in one for the others (the
    /// proxy's; the proxy resolves the target's). `None` once the target's
    /// name is resolved and the proxy's is asked for; then the proxy's
    /// answer, whose failure `handle_resolved` reports as `proxy`.
    fn through_proxy(
        &mut self,
        result: io::Result<Vec<SocketAddr>>,
        out: &mut Outbox,
    ) -> Option<io::Result<Vec<SocketAddr>>> {
        if self.spec.proxy.is_none() {
            return Some(result);
        }
        let spec = Arc::clone(&self.spec);
        let Some(proxy) = &spec.proxy else {
            return Some(result);
        };
        if self.tunnel_to().is_none() {
            if proxy.resolves_locally() {
                let addrs = match result {
                    Ok(addrs) if !addrs.is_empty() => addrs,
                    other => return Some(other),
                };
                let (host, port) = (proxy.host.clone(), proxy.port);
                self.set_tunnel_to(Some(TunnelTo::Addr(addrs[0])));
                out.io.push(IoRequest::Resolve { host, port });
                return None;
            }
            let to = TunnelTo::Name(self.spec.host.clone(), self.spec.port);
            self.set_tunnel_to(Some(to));
        }
        Some(match result {
            Ok(addrs) if addrs.is_empty() => Err(io::Error::other(format!("proxy {proxy}: no addresses"))),
            Ok(addrs) => Ok(addrs),
            Err(e) => Err(io::Error::other(format!("cannot resolve proxy {proxy}: {e}"))),
        })
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
        let mut conn = Box::new(Conn::new(started, now, Codec::AwaitTls));
        if let Some(proxy) = self.spec.proxy.as_ref() {
            // Connected to the proxy: ask it for the tunnel (still connecting).
            let to = self
                .tunnel_to()
                .cloned()
                .unwrap_or_else(|| TunnelTo::Name(self.spec.host.clone(), self.spec.port));
            let secrets = self.secrets.as_deref().unwrap_or(&secrets::NO_SECRETS);
            let started = ProxyHandshake::start(proxy, &to, secrets, &mut conn.io.wire.out);
            self.conn = Some(conn);
            match started {
                Ok(handshake) => {
                    if let Some(c) = self.conn.as_mut() {
                        c.io.codec = Codec::Proxy(Box::new(handshake));
                    }
                }
                Err(e) => self.fail(FailureReason::Proxy, format!("proxy {proxy}: {e}"), now, out),
            }
            return;
        }
        self.conn = Some(conn);
        self.transport_connected(now, out);
    }

    /// A byte stream to the target exists (TCP connected, or the proxy's
    /// tunnel up): its own protocol begins.
    fn transport_connected(&mut self, now: Instant, out: &mut Outbox) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match self.spec.scheme {
            Scheme::Tcp => {
                conn.io.codec = Codec::Tcp;
                let step = self.transport_up(now, out);
                self.apply(step, now, out);
            }
            Scheme::Ws | Scheme::Wss => {
                conn.io.codec = Codec::AwaitTls;
                self.set_phase(Phase::Handshaking, out);
                self.phase_deadline = Some(now + self.spec.timing.handshake_timeout);
                if self.spec.tls.is_some() {
                    if let Err(step) = self.start_tls() {
                        self.apply(step, now, out);
                    }
                } else {
                    self.send_upgrade_request();
                }
            }
        }
    }

    /// The proxy's answer: more to wait for, a refusal, or the tunnel up
    /// (and any of the target's bytes that came with it read on).
    fn proxy_input(&mut self, bytes: &[u8], now: Instant, out: &mut Outbox) -> Step {
        let Some(conn) = self.conn.as_deref_mut() else {
            return Step::Continue;
        };
        let Codec::Proxy(handshake) = &mut conn.io.codec else {
            return Step::Continue;
        };
        let proxy = self.spec.proxy.as_ref().map(|p| p.to_string()).unwrap_or_default();
        match handshake.input(bytes, &mut conn.io.wire.out) {
            Ok(None) => Step::Continue,
            Err(e) => Step::Fail(FailureReason::Proxy, format!("proxy {proxy}: {e}")),
            Ok(Some(rest)) => {
                conn.proxy_done_at = Some(now);
                self.transport_connected(now, out);
                if rest.is_empty() || self.conn.is_none() {
                    return Step::Continue;
                }
                match self.decrypt(&rest, now, out) {
                    Ok(plain) => self.feed_plaintext(&plain, now, out),
                    Err(step) => step,
                }
            }
        }
    }

    /// Whether the proxy is still being asked for the tunnel.
    fn awaiting_proxy(&self) -> bool {
        self.phase == Phase::Connecting && self.conn.is_some()
    }

    /// The proxy failed before the tunnel was up.
    fn proxy_failed(&self, what: &str) -> Step {
        let proxy = self.spec.proxy.as_ref().map(|p| p.to_string()).unwrap_or_default();
        Step::Fail(FailureReason::Proxy, format!("proxy {proxy}: {what}"))
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

    /// The peer closed its side (read returned 0).
    pub fn handle_eof(&mut self, now: Instant, out: &mut Outbox) {
        let step = match self.phase {
            Phase::Connecting if self.awaiting_proxy() => {
                self.proxy_failed("closed the connection before the tunnel was up")
            }
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
            // Every frame before it was read as it came: none was a close.
            Phase::Open => {
                let detail = match self.conn.as_ref().map(|c| &c.io.codec) {
                    Some(Codec::Ws(_)) => "peer closed the connection without a close frame",
                    _ => "peer closed the connection",
                };
                Step::Drop(DisconnectReason::Eof, detail.into(), None)
            }
            Phase::Closing => {
                self.finish_local_close(now, out);
                Step::Continue
            }
            _ => Step::Continue,
        };
        self.apply(step, now, out);
    }

    /// Reading or writing the socket failed.
    pub fn handle_io_error(&mut self, err: io::Error, now: Instant, out: &mut Outbox) {
        let step = match self.phase {
            Phase::Connecting if self.awaiting_proxy() => self.proxy_failed(&err.to_string()),
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
        if self.phase_deadline.is_some_and(|d| now >= d) {
            self.phase_deadline = None;
            return self.phase_deadline_passed(now, out);
        }
        if self.phase != Phase::Open {
            return;
        }
        let timing = &self.spec.timing;
        if let (Some(idle), Some(last)) = (timing.idle_timeout, self.stats.last_rx) {
            if now >= last + idle {
                let detail = format!("nothing received for {}", humantime::format_duration(idle));
                return self.apply(Step::Drop(DisconnectReason::IdleTimeout, detail, None), now, out);
            }
        }
        if self.message_deadline().is_some_and(|d| now >= d) {
            let detail = format!(
                "no data message for {}",
                humantime::format_duration(timing.message_timeout.unwrap_or_default())
            );
            return self.apply(Step::Drop(DisconnectReason::MessageTimeout, detail, None), now, out);
        }
        let step = self.call_app(now, out, |app, ctx| app.on_timeout(ctx));
        self.apply(step, now, out);
        self.check_backlog(now, out);
    }

    // ---- internals ----

    fn phase_deadline_passed(&mut self, now: Instant, out: &mut Outbox) {
        match self.phase {
            Phase::Backoff => self.begin_attempt(now, out),
            Phase::Resolving => self.fail(FailureReason::Dns, "resolution timed out".into(), now, out),
            Phase::Connecting if self.awaiting_proxy() => {
                let within = humantime::format_duration(self.spec.timing.connect_timeout);
                let step = self.proxy_failed(&format!("no tunnel within {within} of the attempt's start"));
                self.apply(step, now, out);
            }
            Phase::Connecting => self.fail(FailureReason::ConnectTimeout, "TCP connect timed out".into(), now, out),
            Phase::Handshaking => {
                let within = humantime::format_duration(self.spec.timing.handshake_timeout);
                let (reason, detail) = match self.conn.as_ref() {
                    Some(c) if c.io.wire.tls.is_some() && c.tls_done_at.is_none() => (
                        FailureReason::HandshakeTimeout,
                        format!("no answer to the TLS handshake within {within}"),
                    ),
                    Some(c) if c.app_handshake_started.is_some() => (
                        FailureReason::AppHandshake,
                        format!(
                            "no {} within {within} ({} handshake)",
                            c.app.awaiting().unwrap_or("answer"),
                            self.spec.protocol.name()
                        ),
                    ),
                    _ => (
                        FailureReason::HandshakeTimeout,
                        format!("no answer to the WebSocket upgrade within {within}"),
                    ),
                };
                self.fail(reason, detail, now, out);
            }
            Phase::Closing => self.finish_local_close(now, out),
            _ => {}
        }
    }

    fn check_backlog(&mut self, now: Instant, out: &mut Outbox) {
        let queued = self.pending_output().len();
        if self.phase == Phase::Open && queued > MAX_PENDING_OUTPUT {
            let detail = format!("{queued} bytes unsent: the peer is not reading");
            self.apply(Step::Drop(DisconnectReason::SendBacklog, detail, None), now, out);
        }
    }

    fn begin_attempt(&mut self, now: Instant, out: &mut Outbox) {
        if self.stop_requested {
            self.set_phase(Phase::Stopped, out);
            return;
        }
        self.attempt_started = Some(now);
        self.phase_deadline = Some(now + self.spec.timing.connect_timeout);
        self.set_phase(Phase::Resolving, out);
        out.events.push(SessionEvent::ConnectAttempt);
        self.set_tunnel_to(None);
        // The proxy resolves the target's name, except with socks5://.
        let (host, port) = match (&self.spec.proxy, self.endpoint()) {
            // A literal: the driver answers without a lookup.
            (_, Some(addr)) => (addr.ip().to_string(), addr.port()),
            (Some(p), None) if !p.resolves_locally() => (p.host.clone(), p.port),
            _ => (self.spec.host.clone(), self.spec.port),
        };
        out.io.push(IoRequest::Resolve { host, port });
    }

    fn connect_next(&mut self, now: Instant, out: &mut Outbox, last_err: Option<io::Error>) {
        match self.addrs.pop() {
            Some(addr) => out.io.push(IoRequest::Connect(addr)),
            None => {
                let (mut reason, mut detail) = match last_err {
                    Some(e) => (FailureReason::from_connect_error(&e), e.to_string()),
                    None => (FailureReason::IoError, "no address to connect to".into()),
                };
                if let Some(proxy) = &self.spec.proxy {
                    // Out of descriptors is ours; the rest is the proxy's.
                    if reason != FailureReason::FdLimit {
                        detail = format!("proxy {proxy}: {reason}: {detail}");
                        reason = FailureReason::Proxy;
                    }
                }
                self.fail(reason, detail, now, out);
            }
        }
    }

    /// The transport is up (TCP connected, or the WebSocket upgraded): the
    /// liveness protocol starts, and with it any application handshake,
    /// which keeps the session handshaking under a fresh handshake deadline.
    fn transport_up(&mut self, now: Instant, out: &mut Outbox) -> Step {
        let Some(conn) = self.conn.as_mut() else {
            return Step::Continue;
        };
        conn.upgraded_at = Some(now);
        conn.app = App::start(&self.spec, now);
        let step = self.call_app(now, out, |app, ctx| app.on_open(ctx));
        if self.phase == Phase::Handshaking {
            if let Some(conn) = self.conn.as_mut() {
                conn.app_handshake_started = Some(now);
            }
            self.phase_deadline = Some(now + self.spec.timing.handshake_timeout);
        }
        step
    }

    /// The connection is established and the application ready.
    fn open(&mut self, now: Instant, out: &mut Outbox) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let tcp = conn.tcp_connected_at.saturating_duration_since(conn.connect_started);
        let proxy = conn
            .proxy_done_at
            .map(|t| t.saturating_duration_since(conn.tcp_connected_at));
        let transport_at = conn.proxy_done_at.unwrap_or(conn.tcp_connected_at);
        let tls = conn.tls_done_at.map(|t| t.saturating_duration_since(transport_at));
        let upgraded = conn.upgraded_at.unwrap_or(now);
        let handshake = match conn.io.codec {
            Codec::Ws(_) => Some(upgraded.saturating_duration_since(conn.tls_done_at.unwrap_or(transport_at))),
            _ => None,
        };
        let app = conn.app_handshake_started.map(|t| now.saturating_duration_since(t));
        let probes = conn.app.probes();
        let ws = matches!(conn.io.codec, Codec::Ws(_));
        self.phase_deadline = None;
        self.addrs = Vec::new();
        self.stats.opened_at = Some(now);
        self.stats.last_rx = Some(now);
        self.set_phase(Phase::Open, out);
        out.events.push(SessionEvent::Opened {
            tcp,
            proxy,
            tls,
            handshake,
            app,
        });
        if ws {
            self.send_on_open_messages();
        }
        if matches!(self.mode, Mode::OneShot { .. }) && !probes {
            // Nothing to probe: connecting was the whole check.
            self.close_locally(now, out);
        }
    }

    /// Feeds input to the liveness protocol.
    fn app_input(&mut self, input: Input<'_>, now: Instant, out: &mut Outbox) -> Step {
        self.call_app(now, out, |app, ctx| app.on_input(input, ctx))
    }

    /// Calls the connection's liveness protocol and acts on its report.
    fn call_app(
        &mut self,
        now: Instant,
        out: &mut Outbox,
        call: impl FnOnce(&mut App, &mut Ctx<'_>) -> Report,
    ) -> Step {
        let Some(conn) = self.conn.as_deref_mut() else {
            return Step::Continue;
        };
        let (report, data) = {
            let mut ctx = Ctx {
                now,
                spec: &self.spec,
                probing: &self.probing,
                rng: &mut self.rng,
                io: &mut conn.io,
                secrets: self.secrets.as_deref().unwrap_or(&secrets::NO_SECRETS),
                data: false,
            };
            let report = call(&mut conn.app, &mut ctx);
            (report, ctx.data)
        };
        if data {
            self.stats.last_message = Some(now);
        }
        match report {
            Report::Quiet => Step::Continue,
            Report::Ready => {
                // Only an attempt in progress opens (TCP connects go
                // straight from connecting).
                if matches!(self.phase, Phase::Connecting | Phase::Handshaking) {
                    self.open(now, out);
                }
                Step::Continue
            }
            Report::Answered(rtt, probe) => {
                self.record_pong(rtt, probe, now, out);
                Step::Continue
            }
            Report::Stray => {
                out.events.push(SessionEvent::StrayPong);
                Step::Continue
            }
            Report::Unanswered(probe) => {
                out.events.push(SessionEvent::PongTimeout { probe });
                let timeout = humantime::format_duration(self.spec.timing.pong_timeout);
                match probe {
                    ProbeKind::Ping => {
                        Step::Drop(DisconnectReason::PongTimeout, format!("no pong within {timeout}"), None)
                    }
                    ProbeKind::App => Step::Drop(
                        DisconnectReason::AppTimeout,
                        format!("the {} heartbeat did not come in time", self.spec.protocol.name()),
                        None,
                    ),
                }
            }
            Report::Failed(f) => Step::Drop(f.reason, f.detail, f.close_code),
        }
    }

    fn feed_plaintext(&mut self, plain: &[u8], now: Instant, out: &mut Outbox) -> Step {
        match self.conn.as_ref().map(|c| &c.io.codec) {
            None | Some(Codec::AwaitTls) => Step::Continue,
            Some(Codec::Proxy(_)) => self.proxy_input(plain, now, out),
            Some(Codec::WsHandshake { .. }) => self.handshake_input(plain, now, out),
            Some(Codec::Ws(_)) => self.ws_input(plain, now, out),
            Some(Codec::Tcp) => self.app_input(Input::Bytes(plain), now, out),
        }
    }

    fn record_pong(&mut self, rtt: Duration, probe: ProbeKind, now: Instant, out: &mut Outbox) {
        self.stats.last_pong = Some(now);
        self.stats.pongs = self.stats.pongs.saturating_add(1);
        out.events.push(SessionEvent::Pong { rtt, probe });
        if let Mode::OneShot { pings } = self.mode {
            if self.stats.pongs >= pings {
                self.close_locally(now, out);
            }
        }
    }

    /// Our side ends the session: with a close frame where the protocol has
    /// one (then `Closing` until the answer or `close_timeout`).
    fn close_locally(&mut self, now: Instant, out: &mut Outbox) {
        if self.send_close_frame() {
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
        self.set_phase(Phase::Stopped, out);
    }

    fn apply(&mut self, step: Step, now: Instant, out: &mut Outbox) {
        match step {
            Step::Continue => {}
            Step::Fail(reason, detail) => self.fail(reason, detail, now, out),
            // Ended during the application handshake: it never opened.
            Step::Drop(reason, detail, _) if self.phase == Phase::Handshaking => {
                self.fail(reason.before_open(), detail, now, out)
            }
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
        let farewell = self.conn.take().map(|c| c.io.wire.out.into_vec()).unwrap_or_default();
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

/// Addresses in the order Happy Eyeballs tries them (RFC 8305 section 4):
/// the resolver's first family first, then alternating families, each in
/// the resolver's order.
pub fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut lead, mut other): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(lead.len() + other.len());
    lead.reverse();
    other.reverse();
    while let Some(a) = lead.pop() {
        out.push(a);
        if let Some(b) = other.pop() {
            out.push(b);
        }
    }
    out.extend(other.into_iter().rev());
    out
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
mod app_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod tests;
