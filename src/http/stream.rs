//! `/api/v1/stream`: the agent's state pushed over a WebSocket (subprotocol
//! `sockpulse.v1`), JSON text messages:
//!
//! - `{"type":"snapshot","targets":[…],"host":{…}|null,"events":[…]}` on
//!   connect;
//! - `{"type":"targets","targets":[…],"removed":[…]}`: the targets whose
//!   row changed, at most once a second (at once when it turned up or down);
//! - `{"type":"host","host":{…}}` when the host scan's summary changed;
//! - `{"type":"events","events":[…]}`: new events, within a quarter second.
//!
//! The hub builds each message once for every client. A client's queue is
//! bounded: one that does not keep up is closed with 1013 (try again
//! later) rather than let its backlog grow. The agent pings every client;
//! one silent for two ping intervals is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;

use super::tls::Transport;
use crate::clock::Instant;
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::HttpState;
use crate::observer::TargetReport;

pub const SUBPROTOCOL: &str = "sockpulse.v1";
/// How often the hub looks for news.
const TICK: Duration = Duration::from_millis(250);
/// A row (and the host summary) goes out at most this often.
const ROW_INTERVAL: Duration = Duration::from_secs(1);
/// Events a snapshot carries.
const SNAPSHOT_EVENTS: usize = 200;
/// What a client may have queued beyond the message being written.
const MAX_QUEUED_BYTES: usize = 256 * 1024;
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// After its close frame, a client gets this long to answer.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Clients only ever send control frames and small requests.
const MAX_CLIENT_MESSAGE: usize = 4096;

/// Builds the stream's messages, once for every client.
pub struct Hub {
    /// Each row as last sent, by target and endpoint.
    rows: BTreeMap<(String, Option<String>), SentRow>,
    host: Option<(String, Instant)>,
    last_seq: u64,
    next_tick: Instant,
}

impl Hub {
    pub fn new(now: Instant) -> Hub {
        Hub {
            rows: BTreeMap::new(),
            host: None,
            last_seq: 0,
            next_tick: now,
        }
    }

    /// When `tick` has something to do next.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// The snapshot a new client starts from: events up to the last the
    /// hub sent (call `catch_up_events` first), so none comes twice.
    pub fn snapshot(&self, state: &HttpState) -> Arc<str> {
        let targets = state.rows();
        let host = state.host_summary();
        let mut events = state.events_since(0, None, SNAPSHOT_EVENTS);
        events.retain(|e| e.seq <= self.last_seq);
        json!({"type": "snapshot", "targets": targets, "host": host, "events": events})
            .to_string()
            .into()
    }

    /// The messages due at `now`: new events, changed rows and host.
    pub fn tick(&mut self, state: &HttpState, now: Instant) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        if now < self.next_tick {
            return out;
        }
        self.next_tick = now + TICK;
        out.extend(self.catch_up_events(state));
        out.extend(self.row_changes(&state.rows(), now));
        if let Some(host) = state.host_summary() {
            let text = serde_json::to_string(&host).unwrap_or_default();
            let due = match &self.host {
                Some((sent, at)) => *sent != text && now >= *at + ROW_INTERVAL,
                None => true,
            };
            if due {
                out.push(format!(r#"{{"type":"host","host":{text}}}"#).into());
                self.host = Some((text, now));
            }
        }
        out
    }

    /// The events since the last sent, as one message.
    pub fn catch_up_events(&mut self, state: &HttpState) -> Option<Arc<str>> {
        let events = state.events_since(self.last_seq, None, usize::MAX);
        let last = events.last()?.seq;
        self.last_seq = last;
        Some(json!({"type": "events", "events": events}).to_string().into())
    }

    /// The rows that changed since they were last sent (a second ago or
    /// more: a change within the second waits for it), and those gone.
    fn row_changes(&mut self, targets: &[TargetReport], now: Instant) -> Option<Arc<str>> {
        let mut changed = Vec::new();
        let mut now_rows = BTreeMap::new();
        for r in targets {
            let key = (r.target.clone(), r.endpoint.clone());
            let text = serde_json::to_string(r).unwrap_or_default();
            let row = match self.rows.remove(&key) {
                // A row that turned up or down goes out at once.
                Some(sent) if sent.text == text || (now < sent.at + ROW_INTERVAL && sent.healthy == r.healthy) => sent,
                _ => {
                    changed.push(r);
                    SentRow {
                        text,
                        at: now,
                        healthy: r.healthy,
                    }
                }
            };
            now_rows.insert(key, row);
        }
        let removed: Vec<_> = self
            .rows
            .keys()
            .filter(|k| !now_rows.contains_key(*k))
            .map(|(target, endpoint)| json!({"target": target, "endpoint": endpoint}))
            .collect();
        self.rows = now_rows;
        if changed.is_empty() && removed.is_empty() {
            return None;
        }
        Some(
            json!({"type": "targets", "targets": changed, "removed": removed})
                .to_string()
                .into(),
        )
    }
}

struct SentRow {
    text: String,
    at: Instant,
    healthy: bool,
}

/// One stream client.
pub(super) struct StreamConn {
    ws: WebSocket<Transport>,
    /// Messages not yet handed to the WebSocket, and their bytes.
    queue: VecDeque<Arc<str>>,
    queued_bytes: usize,
    /// Whether the WebSocket's own buffer still holds unwritten bytes.
    writing: bool,
    last_heard: Instant,
    next_ping: Instant,
    /// Set once our close frame is queued: the connection ends by then.
    closing_by: Option<Instant>,
    /// Closed for falling behind (counted once by the server).
    too_slow: bool,
}

impl StreamConn {
    pub fn new(stream: Transport, leftover: Vec<u8>, snapshot: Arc<str>, now: Instant) -> StreamConn {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let mut conn = StreamConn {
            ws: WebSocket::from_partially_read(stream, leftover, Role::Server, Some(config)),
            queue: VecDeque::new(),
            queued_bytes: 0,
            writing: false,
            last_heard: now,
            next_ping: now + PING_INTERVAL,
            closing_by: None,
            too_slow: false,
        };
        conn.push(snapshot);
        conn
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        self.ws.get_mut().tcp()
    }

    /// When `pump` must run even without readiness.
    pub fn deadline(&self) -> Instant {
        match self.closing_by {
            Some(t) => t,
            None => self.next_ping.min(self.last_heard + 2 * PING_INTERVAL),
        }
    }

    /// Queues a message; a client that is too far behind is told to go.
    pub fn push(&mut self, message: Arc<str>) {
        if self.closing_by.is_some() {
            return;
        }
        // The first message always fits, whatever its size (a snapshot).
        if !self.queue.is_empty() && self.queued_bytes + message.len() > MAX_QUEUED_BYTES {
            log::debug!(
                "stream client too slow ({} bytes queued): closing it",
                self.queued_bytes
            );
            self.queue.clear();
            self.queued_bytes = 0;
            self.close(CloseCode::Again, "too slow: reconnect for a fresh snapshot");
            self.too_slow = true;
            return;
        }
        self.queued_bytes += message.len();
        self.queue.push_back(message);
    }

    /// True once, right after the client was closed for falling behind.
    pub fn too_slow(&mut self) -> bool {
        std::mem::take(&mut self.too_slow)
    }

    fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame));
        self.writing = true;
        self.closing_by = Some(self.last_heard.max(Instant::now()) + CLOSE_GRACE);
    }

    /// Reads what the client sent (control frames, mostly), sends what is
    /// queued; false when the connection is over.
    pub fn pump(&mut self, now: Instant) -> bool {
        if self.closing_by.is_some_and(|t| now >= t) {
            return false;
        }
        if self.closing_by.is_none() && now >= self.last_heard + 2 * PING_INTERVAL {
            log::debug!("stream client silent for {:?}: dropping it", 2 * PING_INTERVAL);
            return false;
        }
        loop {
            match nonblocking(self.ws.read(), "stream client ended") {
                Ok(Some(_)) => self.last_heard = now,
                Ok(None) => break,
                Err(()) => return false,
            }
        }
        if self.closing_by.is_none() && now >= self.next_ping {
            self.next_ping = now + PING_INTERVAL;
            if !self.send(Message::Ping(Default::default())) {
                return false;
            }
        }
        self.drain()
    }

    /// Hands queued messages over one at a time, each once the previous
    /// one is written out, so the WebSocket's buffer holds at most one.
    fn drain(&mut self) -> bool {
        loop {
            if self.writing {
                match nonblocking(self.ws.flush(), "stream write failed") {
                    Ok(Some(())) => self.writing = false,
                    Ok(None) => return true,
                    Err(()) => return false,
                }
            }
            if self.closing_by.is_some() {
                return true;
            }
            let Some(message) = self.queue.pop_front() else {
                return true;
            };
            self.queued_bytes -= message.len();
            if !self.send(Message::text(&*message)) {
                return false;
            }
        }
    }

    /// Hands `message` to the WebSocket (queued there if the socket is
    /// full); false when the connection is over.
    fn send(&mut self, message: Message) -> bool {
        self.writing = true;
        nonblocking(self.ws.write(message), "stream write failed").is_ok()
    }
}

/// A tungstenite call on a non-blocking socket: `Ok(Some(_))` done,
/// `Ok(None)` it would block, `Err(())` the connection is over (logged at
/// debug with `what`, unless it closed cleanly).
pub(super) fn nonblocking<T>(result: tungstenite::Result<T>, what: &str) -> Result<Option<T>, ()> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Err(()),
        Err(e) => {
            log::debug!("{what}: {e}");
            Err(())
        }
    }
}
