//! The HTTP endpoint: `/metrics`, a landing page, `/healthz`, `/probe`,
//! the status APIs and a WebSocket echo at `/ws` that gives a fresh
//! install something real to monitor.
//!
//! One readiness loop on a thread of its own serves every connection, so a
//! connection costs a buffer rather than a thread, and nothing a client
//! does reaches the probe loop. A request head must arrive within
//! `header_timeout`; when `max_connections` are open, a new connection
//! takes the place of the one that has waited longest for its request
//! head, so clients that trickle bytes cannot lock Prometheus out.

mod auth;
mod conn;
mod page;
pub mod request;
mod routes;
mod stream;
pub mod tls;

pub use auth::BasicAuth;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::clock::Instant;
use crate::driver::LoopHandle;
use crate::events::{Event, SharedEventLog};
use crate::kernel::host::HostSummary;
use crate::metrics::Metrics;
use crate::observer::TargetReport;
use crate::probe::{self, Answer, ProbeEndpoint, Started};
use conn::{Conn, HttpConn, Phase, ReadOutcome, Then};
use request::Parsed;
use routes::Reply;
use tls::Transport;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// An answer that cannot be written in this long goes with its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may sit between requests (Prometheus keeps its
/// scrape connection open between scrapes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// After EMFILE and friends, accepting waits this long rather than spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Why a connection was ended before its answer
/// (`sockpulse_http_connections_dropped_total`).
const DROP_REASONS: &[&str] = &[
    "header_timeout",
    "write_timeout",
    "evicted",
    "limit",
    "stream_limit",
    "echo_limit",
    "stream_too_slow",
];

/// What a reload may change on the HTTP side: `[web]`'s limits and echo,
/// and the web configuration file's TLS and users. Connections opened
/// after the change get it.
pub struct LiveWeb {
    pub limits: RwLock<WebLimits>,
    pub echo_endpoint: AtomicBool,
    pub tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    pub auth: RwLock<Option<Arc<BasicAuth>>>,
}

impl LiveWeb {
    pub fn new(limits: WebLimits, echo_endpoint: bool, security: WebSecurity) -> LiveWeb {
        LiveWeb {
            limits: RwLock::new(limits),
            echo_endpoint: AtomicBool::new(echo_endpoint),
            tls: RwLock::new(security.tls),
            auth: RwLock::new(security.auth),
        }
    }

    /// Applies a reloaded configuration.
    pub fn apply(&self, limits: WebLimits, echo_endpoint: bool, security: WebSecurity) {
        if let Ok(mut l) = self.limits.write() {
            *l = limits;
        }
        self.echo_endpoint.store(echo_endpoint, Ordering::Relaxed);
        let tls_was = self.tls.read().map(|t| t.is_some()).unwrap_or(false);
        if tls_was != security.tls.is_some() {
            log::warn!(
                "web: TLS is now {} for new connections",
                if security.tls.is_some() { "on" } else { "off" }
            );
        }
        if let Ok(mut t) = self.tls.write() {
            *t = security.tls;
        }
        if let Ok(mut a) = self.auth.write() {
            *a = security.auth;
        }
    }

    fn auth(&self) -> Option<Arc<BasicAuth>> {
        self.auth.read().ok().and_then(|a| a.clone())
    }
}

/// The web configuration file's settings, built.
#[derive(Default)]
pub struct WebSecurity {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub telemetry_path: String,
    /// Settings a reload changes.
    pub live: Arc<LiveWeb>,
    /// The event loop, when POST /-/reload is enabled.
    pub lifecycle: Option<LoopHandle>,
    /// The agent's live per-target state, served at /api/v1/status.
    pub status: Arc<Mutex<Vec<TargetReport>>>,
    /// Recent session and kernel events, served at /api/v1/events.
    pub events: SharedEventLog,
    /// The host scan's latest summary (none while the scan is off).
    pub host: Arc<Mutex<Option<HostSummary>>>,
    /// `/probe`.
    pub probe: ProbeEndpoint,
    /// Every path is under it (`/sockpulse`), or "" for none.
    pub prefix: String,
    /// `--web.external-url`'s origin: browsers there may open the stream.
    pub external_origin: Option<String>,
}

impl HttpState {
    /// The live rows, as the observer last published them.
    fn rows(&self) -> Vec<TargetReport> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The host scan's latest summary.
    fn host_summary(&self) -> Option<HostSummary> {
        self.host.lock().map(|h| h.clone()).unwrap_or(None)
    }

    /// Up to `limit` events after `since` (of `target` when given).
    fn events_since(&self, since: u64, target: Option<&str>, limit: usize) -> Vec<Event> {
        self.events
            .lock()
            .map(|log| log.since(since, target, limit))
            .unwrap_or_default()
    }
}

/// How many connections, and how long a request head may take.
#[derive(Debug, Clone, Copy)]
pub struct WebLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Stream clients at once (within `max_connections`).
    pub max_stream_clients: usize,
    /// Echo clients at once (within `max_connections`): they cannot be
    /// evicted, so without a cap of their own they could take every
    /// connection and leave none for a scrape.
    pub max_echo_clients: usize,
}

pub fn spawn(listener: std::net::TcpListener, state: Arc<HttpState>) -> io::Result<thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let mut server = Server::new(TcpListener::from_std(listener), state)?;
    thread::Builder::new()
        .name("sockpulse-http".into())
        .spawn(move || server.run())
}

fn keep_if(alive: bool) -> Next {
    if alive {
        Next::Keep
    } else {
        Next::Close
    }
}

/// A `/probe` answer the agent's loop finished, for connection `slot`.
struct Finished {
    slot: usize,
    id: u64,
    answer: Answer,
}

struct Slot {
    /// Tells a connection from a later one in the same slot.
    id: u64,
    conn: Conn,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    open: usize,
    next_id: u64,
    state: Arc<HttpState>,
    limits: WebLimits,
    finished: Arc<Mutex<Vec<Finished>>>,
    waker: Arc<Waker>,
    accept_paused_until: Option<Instant>,
    hub: stream::Hub,
    /// Connections that are stream clients.
    streams: usize,
    echoes: usize,
}

enum Next {
    Keep,
    Close,
    /// Become what the answer's `Then` said.
    Upgrade(Then),
}

impl Server {
    fn new(mut listener: TcpListener, state: Arc<HttpState>) -> io::Result<Server> {
        // A poisoned lock still holds the last limits written.
        let limits = *state
            .live
            .limits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        for reason in DROP_REASONS {
            state.metrics.http_dropped.with_label_values(&[reason]);
        }
        Ok(Server {
            poll,
            listener,
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            next_id: 0,
            state,
            limits,
            finished: Arc::new(Mutex::new(Vec::new())),
            waker,
            accept_paused_until: None,
            hub: stream::Hub::new(Instant::now()),
            streams: 0,
            echoes: 0,
        })
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let hub_tick = (self.streams > 0).then(|| self.hub.next_tick());
            let wake_at = [next_deadline, self.accept_paused_until, hub_tick]
                .into_iter()
                .flatten()
                .min();
            // Nothing due: sleep until a connection or the waker.
            let timeout = wake_at.map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("http poll failed: {e}");
                    thread::sleep(ACCEPT_PAUSE);
                }
                continue;
            }
            let now = Instant::now();
            if let Ok(limits) = self.state.live.limits.read() {
                self.limits = *limits;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    Token(i) => self.advance(i, now),
                }
            }
            self.deliver_finished(now);
            if self.streams > 0 && now >= self.hub.next_tick() {
                self.broadcast(now);
            }
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            next_deadline = self.expire(now);
            self.state.metrics.http_connections.set(self.open as i64);
            self.state.metrics.stream_clients.set(self.streams as i64);
        }
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE and friends: the connection stays queued.
                    log::warn!("http accept failed: {e}");
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Instant) {
        if self.open >= self.limits.max_connections {
            match self.longest_waiting_for_head() {
                Some(victim) => {
                    self.close(victim);
                    self.dropped("evicted");
                }
                None => {
                    // Through TLS a plain answer would be noise: just close.
                    let tls = self.state.live.tls.read().map(|t| t.is_some()).unwrap_or(false);
                    if !tls {
                        let _ = stream.write(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                    self.dropped("limit");
                    return;
                }
            }
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("cannot watch an http connection: {e}");
            self.free.push(i);
            return;
        }
        let tls = self.state.live.tls.read().ok().and_then(|t| t.clone());
        let transport = match tls {
            Some(config) => match rustls::ServerConnection::new(config) {
                Ok(tls) => Transport::Tls(Box::new(rustls::StreamOwned::new(tls, stream))),
                Err(e) => {
                    log::warn!("cannot start TLS on an http connection: {e}");
                    let _ = self.poll.registry().deregister(&mut stream);
                    self.free.push(i);
                    return;
                }
            },
            None => Transport::Plain(stream),
        };
        self.next_id += 1;
        self.slots[i] = Some(Slot {
            id: self.next_id,
            conn: Conn::Http(HttpConn::new(transport, now, self.limits.header_timeout)),
        });
        self.open += 1;
        self.advance(i, now);
    }

    /// The connection that has waited longest for a request head.
    fn longest_waiting_for_head(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some(Slot {
                    conn: Conn::Http(c), ..
                }) if matches!(c.phase, Phase::Head) => Some((c.waiting_since, i)),
                _ => None,
            })
            .min()
            .map(|(_, i)| i)
    }

    fn close(&mut self, i: usize) {
        if let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(slot.conn.socket());
            self.release(i, &slot.conn);
        }
    }

    /// Frees slot `i`, whose connection `conn` is gone.
    fn release(&mut self, i: usize, conn: &Conn) {
        match conn {
            Conn::Stream(_) => self.streams -= 1,
            Conn::Echo(_) => self.echoes -= 1,
            Conn::Http(_) => {}
        }
        self.free.push(i);
        self.open -= 1;
    }

    /// Hands the stream's due messages to every stream client.
    fn broadcast(&mut self, now: Instant) {
        let messages = self.hub.tick(&self.state, now);
        self.push_to_streams(&messages, now);
    }

    fn push_to_streams(&mut self, messages: &[std::sync::Arc<str>], now: Instant) {
        if messages.is_empty() {
            return;
        }
        for i in 0..self.slots.len() {
            let Some(Slot {
                conn: Conn::Stream(s), ..
            }) = self.slots[i].as_mut()
            else {
                continue;
            };
            for m in messages {
                s.push(std::sync::Arc::clone(m));
            }
            if s.too_slow() {
                self.dropped("stream_too_slow");
            }
            self.advance(i, now);
        }
    }

    fn dropped(&self, reason: &'static str) {
        debug_assert!(DROP_REASONS.contains(&reason));
        self.state.metrics.http_dropped.with_label_values(&[reason]).inc();
    }

    /// Moves connection `i` on as far as it can go without blocking.
    fn advance(&mut self, i: usize, now: Instant) {
        let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        let next = match &mut slot.conn {
            Conn::Http(c) => self.drive_http(i, slot.id, c, now),
            Conn::Echo(e) => keep_if(e.pump(now)),
            Conn::Stream(s) => keep_if(s.pump(now)),
        };
        match next {
            Next::Keep => self.slots[i] = Some(slot),
            Next::Upgrade(then) => {
                let Conn::Http(c) = slot.conn else { return };
                let (conn, alive) = if then == Then::Stream {
                    // The others get the events before the snapshot, which
                    // then holds them too: no event missed or repeated.
                    let pending: Vec<_> = self.hub.catch_up_events(&self.state).into_iter().collect();
                    self.push_to_streams(&pending, now);
                    let mut s = c.into_stream(self.hub.snapshot(&self.state), now);
                    let alive = s.pump(now);
                    self.streams += 1;
                    (Conn::Stream(s), alive)
                } else {
                    let mut e = c.into_echo(now);
                    let alive = e.pump(now);
                    self.echoes += 1;
                    (Conn::Echo(e), alive)
                };
                if alive {
                    self.slots[i] = Some(Slot { id: slot.id, conn });
                } else {
                    self.release(i, &conn);
                }
            }
            Next::Close => {
                self.release(i, &slot.conn);
                if let Conn::Http(c) = slot.conn {
                    c.finish();
                }
            }
        }
    }

    fn drive_http(&self, i: usize, id: u64, c: &mut HttpConn, now: Instant) -> Next {
        let header_timeout = self.limits.header_timeout;
        loop {
            match c.phase {
                Phase::Probe => return Next::Keep,
                Phase::Write(then) => match c.write() {
                    Ok(false) => return Next::Keep,
                    Err(e) => {
                        log::debug!("http write failed: {e}");
                        return Next::Close;
                    }
                    Ok(true) => match then {
                        Then::KeepAlive => c.await_next(now, IDLE_TIMEOUT, header_timeout),
                        Then::Close => return Next::Close,
                        Then::Echo | Then::Stream => return Next::Upgrade(then),
                    },
                },
                Phase::Head => match request::parse(c.inbuf()) {
                    Parsed::Partial => match c.read(now, header_timeout) {
                        ReadOutcome::Got => {}
                        ReadOutcome::Blocked => return Next::Keep,
                        ReadOutcome::Eof => return Next::Close,
                    },
                    Parsed::Bad => {
                        c.keep_alive = false;
                        c.answer("400 Bad Request", "text/plain", b"bad request\n", now, WRITE_TIMEOUT);
                    }
                    Parsed::TooLarge => {
                        c.keep_alive = false;
                        c.answer(
                            "431 Request Header Fields Too Large",
                            "text/plain",
                            b"request head too large\n",
                            now,
                            WRITE_TIMEOUT,
                        );
                    }
                    Parsed::Complete(req) => {
                        c.consume(req.head_len);
                        c.keep_alive = req.keep_alive;
                        self.serve(i, id, c, &req, now);
                    }
                },
            }
        }
    }

    /// A 503 for an upgrade over its kind's cap, counted as `reason`.
    fn refuse_upgrade(&self, c: &mut HttpConn, reason: &'static str, why: &str, now: Instant) {
        self.dropped(reason);
        c.keep_alive = false;
        c.answer(
            "503 Service Unavailable",
            "text/plain",
            why.as_bytes(),
            now,
            WRITE_TIMEOUT,
        );
    }

    fn serve(&self, i: usize, id: u64, c: &mut HttpConn, req: &request::Request, now: Instant) {
        match routes::route(&self.state, req, now) {
            Reply::Answer(r) => c.answer_with(r.status, r.content_type, &r.headers, &r.body, now, WRITE_TIMEOUT),
            Reply::Upgrade { then: Then::Stream, .. } if self.streams >= self.limits.max_stream_clients => {
                self.refuse_upgrade(
                    c,
                    "stream_limit",
                    "too many stream clients ([web] max_stream_clients)\n",
                    now,
                );
            }
            Reply::Upgrade { then: Then::Echo, .. } if self.echoes >= self.limits.max_echo_clients => {
                self.refuse_upgrade(c, "echo_limit", "too many echo clients ([web] max_echo_clients)\n", now);
            }
            Reply::Upgrade { head, then } => c.answer_raw(head.as_bytes(), then, now, WRITE_TIMEOUT),
            Reply::Probe => {
                let finished = Arc::clone(&self.finished);
                let waker = Arc::clone(&self.waker);
                let done = move |answer: Answer| {
                    if let Ok(mut f) = finished.lock() {
                        f.push(Finished { slot: i, id, answer });
                    }
                    let _ = waker.wake();
                };
                match probe::start(&self.state.probe, req.query(), req.scrape_timeout, done) {
                    Started::Now(a) => c.answer_probe(&a, now, WRITE_TIMEOUT),
                    Started::Running { deadline, fallback } => {
                        c.phase = Phase::Probe;
                        c.deadline = deadline;
                        c.fallback = Some(fallback);
                    }
                }
            }
        }
    }

    /// Writes the `/probe` answers the agent's loop finished.
    fn deliver_finished(&mut self, now: Instant) {
        let finished = match self.finished.lock() {
            Ok(mut f) if !f.is_empty() => std::mem::take(&mut *f),
            _ => return,
        };
        for f in finished {
            if let Some(Slot {
                id,
                conn: Conn::Http(c),
            }) = self.slots.get_mut(f.slot).and_then(Option::as_mut)
            {
                if *id == f.id && matches!(c.phase, Phase::Probe) {
                    c.fallback = None;
                    c.answer_probe(&f.answer, now, WRITE_TIMEOUT);
                    self.advance(f.slot, now);
                }
            }
        }
    }

    /// Ends what is past its deadline; returns the next deadline.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_mut() else { continue };
            let deadline = slot.conn.deadline();
            if deadline > now {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            match &mut slot.conn {
                Conn::Http(c) if matches!(c.phase, Phase::Probe) => {
                    if let Some(a) = c.fallback.take() {
                        c.answer_probe(&a, now, WRITE_TIMEOUT);
                    }
                    self.advance(i, now);
                    if let Some(s) = &self.slots[i] {
                        let d = s.conn.deadline();
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                    continue;
                }
                Conn::Http(c) if matches!(c.phase, Phase::Head) && (c.head_started() || c.served == 0) => {
                    self.dropped("header_timeout");
                }
                Conn::Http(c) if matches!(c.phase, Phase::Write(_)) => self.dropped("write_timeout"),
                _ => {}
            }
            self.close(i);
        }
        next
    }
}
