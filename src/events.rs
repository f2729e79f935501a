//! The event history: a bounded ring of recent session and kernel events
//! (opened, disconnected, connect failed, summaries of failure streaks,
//! targets added and removed, kernel findings), numbered so that a reader
//! can ask for what came after the last one it saw. Written by the
//! observer and the host scan, read by the HTTP side (`/api/v1/events`,
//! the stream, `status --agent`).
//!
//! At scale it follows the log's digest: the first failure of a streak and
//! its summaries are recorded, not every session's attempt, so a thousand
//! sessions failing together do not push everything else out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Events kept; the oldest go first.
pub const CAPACITY: usize = 2048;
/// A detail longer than this is cut (details come from peers).
const MAX_DETAIL: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Disconnected,
    ConnectFailed,
    /// A digest line: a failure streak summed up, or its recovery.
    Summary,
    TargetAdded,
    TargetRemoved,
    /// Something the kernel's TCP table shows (CLOSE_WAIT leaks, full
    /// accept queues).
    Kernel,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Disconnected => "disconnected",
            EventKind::ConnectFailed => "connect_failed",
            EventKind::Summary => "summary",
            EventKind::TargetAdded => "target_added",
            EventKind::TargetRemoved => "target_removed",
            EventKind::Kernel => "kernel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing from 1; never reused while the agent runs.
    pub seq: u64,
    pub unix_ms: u64,
    pub kind: EventKind,
    /// Empty for host-wide kernel events.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// How long the session had been open, for `disconnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_for_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Event {
    /// An event of `kind` for `target`, numbered and stamped when pushed.
    pub fn new(kind: EventKind, target: &str) -> Event {
        Event {
            seq: 0,
            unix_ms: 0,
            kind,
            target: target.to_string(),
            session: None,
            endpoint: None,
            reason: None,
            diagnosis: None,
            close_code: None,
            open_for_seconds: None,
            detail: String::new(),
        }
    }

    pub fn detail(mut self, detail: &str) -> Event {
        self.detail = cut(detail, MAX_DETAIL);
        self
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[derive(Debug)]
pub struct EventLog {
    ring: VecDeque<Event>,
    capacity: usize,
    last_seq: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            ring: VecDeque::with_capacity(capacity.min(CAPACITY)),
            capacity: capacity.max(1),
            last_seq: 0,
        }
    }

    /// Numbers and keeps `event`, stamped `unix_ms`.
    pub fn push(&mut self, mut event: Event, unix_ms: u64) {
        self.last_seq += 1;
        event.seq = self.last_seq;
        event.unix_ms = unix_ms;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(event);
    }

    /// Up to `limit` events after `since`, oldest first, of `target` when
    /// given; the newest ones when more match.
    pub fn since(&self, since: u64, target: Option<&str>, limit: usize) -> Vec<Event> {
        // Numbers are consecutive in the ring: skip straight to `since`.
        let first = self.ring.front().map_or(0, |e| e.seq);
        let skip = usize::try_from(since.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let matching: Vec<&Event> = self
            .ring
            .iter()
            .skip(skip)
            .filter(|e| target.map_or(true, |t| e.target == t))
            .collect();
        let from = matching.len().saturating_sub(limit);
        matching[from..].iter().map(|e| (*e).clone()).collect()
    }
}

/// The log as the observer, the host scan and the HTTP side share it.
pub type SharedEventLog = Arc<Mutex<EventLog>>;

pub fn shared() -> SharedEventLog {
    Arc::new(Mutex::new(EventLog::new(CAPACITY)))
}

/// Records `event` now; a poisoned lock loses the event, nothing more.
pub fn record(log: &SharedEventLog, event: Event) {
    if let Ok(mut log) = log.lock() {
        log.push(event, crate::wallclock::unix_now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: u64, capacity: usize) -> EventLog {
        let mut log = EventLog::new(capacity);
        for i in 1..=n {
            let target = if i % 2 == 0 { "even" } else { "odd" };
            log.push(Event::new(EventKind::Opened, target), 1000 + i);
        }
        log
    }

    #[test]
    fn events_are_numbered_and_the_oldest_go_at_capacity() {
        let log = log_with(10, 4);
        let all = log.since(0, None, 100);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 8, 9, 10]);
        assert_eq!(all[0].unix_ms, 1007);
    }

    #[test]
    fn since_target_and_limit_select_the_newest_matching() {
        let log = log_with(20, 100);
        let after = log.since(15, None, 100);
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [16, 17, 18, 19, 20]);
        let even = log.since(10, Some("even"), 2);
        assert_eq!(even.iter().map(|e| e.seq).collect::<Vec<_>>(), [18, 20]);
        assert!(log.since(20, None, 100).is_empty());
        assert!(log.since(u64::MAX, None, 100).is_empty());
        assert_eq!(log.since(0, Some("none"), 100), Vec::<Event>::new());
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        for kind in [
            EventKind::Opened,
            EventKind::Disconnected,
            EventKind::ConnectFailed,
            EventKind::Summary,
            EventKind::TargetAdded,
            EventKind::TargetRemoved,
            EventKind::Kernel,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        let e = Event::new(EventKind::Disconnected, "t").detail(&"é".repeat(400));
        assert!(e.detail.len() <= MAX_DETAIL + '…'.len_utf8());
        assert!(e.detail.ends_with('…'));
    }
}
