//! STOMP 1.2 (and 1.1) over WebSocket: CONNECT answered by CONNECTED opens
//! the session, with heart-beats negotiated, sent and expected (a broker
//! silent past its rate is `app_timeout`); a RECEIPT round trip (an empty
//! transaction begun with a receipt, then aborted) is the timed probe; an
//! ERROR frame is the broker's error. Frames are read as a stream; only
//! their command and headers are kept, never a MESSAGE body.

use std::time::Duration;

use super::{failed, most_telling, run_probe, Ctx, Input, Keep, ProbeKind, Protocol, Report};
use crate::clock::Instant;
use crate::session::min_opt;
use crate::session::reason::DisconnectReason;
use crate::session::schedule::ProbeSchedule;
use crate::session::spec::{StompOptions, TargetSpec};

/// Command and headers of a frame larger than this are not kept.
const MAX_HEAD: usize = 8192;
/// The start of an ERROR frame's body is kept for the log (brokers put
/// the details there); no other body is.
const MAX_ERROR_BODY: usize = 256;

/// One frame as read: command and headers (values unescaped); the body
/// only for ERROR frames, cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        // STOMP: the first of repeated headers counts.
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads frames from text in any chunking; heart-beats (bare EOLs) are
/// counted too.
#[derive(Debug, Default)]
pub struct FrameReader {
    head: Vec<u8>,
    /// Past the blank line: reading the body to its NUL.
    in_body: bool,
    /// The start of an ERROR frame's body.
    error_body: Option<Vec<u8>>,
    /// The head grew past `MAX_HEAD`: the frame is dropped whole.
    oversized: bool,
}

/// What a chunk of the stream held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub frames: Vec<Frame>,
    pub heartbeats: usize,
}

impl FrameReader {
    pub fn feed(&mut self, bytes: &[u8]) -> Read {
        let mut read = Read::default();
        for &b in bytes {
            if self.in_body {
                if b == 0 {
                    self.in_body = false;
                    let body = self.error_body.take().unwrap_or_default();
                    if !self.oversized {
                        if let Some(mut frame) = parse_head(&self.head) {
                            frame.body = String::from_utf8_lossy(&body).trim().to_string();
                            read.frames.push(frame);
                        }
                    }
                    self.head.clear();
                    self.oversized = false;
                } else if let Some(body) = self.error_body.as_mut().filter(|b| b.len() < MAX_ERROR_BODY) {
                    body.push(b);
                }
                continue;
            }
            // Between frames a bare EOL is a heart-beat.
            if self.head.is_empty() && (b == b'\n' || b == b'\r') {
                if b == b'\n' {
                    read.heartbeats += 1;
                }
                continue;
            }
            if b == 0 {
                // A frame without a blank line: drop it.
                self.head.clear();
                continue;
            }
            if self.head.len() < MAX_HEAD {
                self.head.push(b);
            } else {
                self.oversized = true;
            }
            if self.head.ends_with(b"\n\n") || self.head.ends_with(b"\r\n\r\n") {
                self.in_body = true;
                self.error_body = self.head.starts_with(b"ERROR").then(Vec::new);
            }
        }
        read
    }
}

fn parse_head(head: &[u8]) -> Option<Frame> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let command = lines.next()?.to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((unescape(k), unescape(v)))
        })
        .collect();
    Some(Frame {
        command,
        headers,
        body: String::new(),
    })
}

/// STOMP 1.2 header escapes.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace(':', "\\c")
}

/// The CONNECT frame (its headers are not escaped, per the spec).
pub fn connect_frame(o: &StompOptions, heart_beat_ms: u64) -> String {
    let mut f = format!(
        "CONNECT\naccept-version:1.2,1.1\nhost:{}\nheart-beat:{heart_beat_ms},{heart_beat_ms}\n",
        o.host
    );
    if let Some(login) = &o.login {
        f.push_str(&format!("login:{login}\n"));
    }
    if let Some(passcode) = &o.passcode {
        f.push_str(&format!("passcode:{passcode}\n"));
    }
    f.push_str("\n\0");
    f
}

/// The negotiated heart-beat periods: (ours to send, the broker's to expect)
/// from what we offered (`ours` both ways) and the CONNECTED `heart-beat`.
pub fn negotiate(ours: u64, theirs: Option<&str>) -> (Option<Duration>, Option<Duration>) {
    let (sx, sy) = theirs
        .and_then(|h| {
            let (a, b) = h.split_once(',')?;
            Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
        })
        .unwrap_or((0, 0));
    let period = |a: u64, b: u64| (a > 0 && b > 0).then(|| Duration::from_millis(a.max(b)));
    (period(ours, sy), period(sx, ours))
}

pub struct Stomp {
    options: StompOptions,
    connected: bool,
    reader: FrameReader,
    /// Ours to send, and when next.
    send_every: Option<Duration>,
    next_heartbeat: Option<Instant>,
    /// The broker's, and when anything last came from it.
    expect_every: Option<Duration>,
    last_heard: Instant,
    receipts: ProbeSchedule,
}

impl Stomp {
    pub fn new(o: &StompOptions, now: Instant) -> Stomp {
        Stomp {
            options: o.clone(),
            connected: false,
            reader: FrameReader::default(),
            send_every: None,
            next_heartbeat: None,
            expect_every: None,
            last_heard: now,
            receipts: ProbeSchedule::default(),
        }
    }

    /// The broker is dead once silent for its heart-beat period and a pong
    /// timeout of grace.
    fn heard_by(&self, spec: &TargetSpec) -> Option<Instant> {
        Some(self.last_heard + self.expect_every? + spec.timing.pong_timeout)
    }

    fn on_frame(&mut self, frame: &Frame, ctx: &mut Ctx<'_>) -> Report {
        match frame.command.as_str() {
            "CONNECTED" if !self.connected => {
                self.connected = true;
                let ours = heart_beat_ms(ctx.spec);
                (self.send_every, self.expect_every) = negotiate(ours, frame.header("heart-beat"));
                self.next_heartbeat = self.send_every.map(|p| ctx.now + p);
                if let Some(destination) = &self.options.subscribe {
                    let sub = format!("SUBSCRIBE\nid:0\ndestination:{}\nack:auto\n\n\0", escape(destination));
                    ctx.io.send_text(&sub);
                }
                if self.options.receipt {
                    self.receipts = ProbeSchedule::starting(ctx.now, ctx.spec.timing.ping_interval);
                }
                Report::Ready
            }
            "RECEIPT" => {
                let id = frame
                    .header("receipt-id")
                    .and_then(|r| r.strip_prefix("sockpulse-"))
                    .and_then(|n| n.parse::<u64>().ok());
                match id.and_then(|id| self.receipts.answer(id, ctx.now)) {
                    Some(rtt) => Report::Answered(rtt, ProbeKind::App),
                    None => Report::Stray,
                }
            }
            "MESSAGE" => {
                ctx.data = true;
                Report::Quiet
            }
            "ERROR" => {
                let message = frame.header("message").unwrap_or("(no message header)");
                let detail = match frame.body.lines().next() {
                    Some(first) if !first.is_empty() => format!("STOMP ERROR: {message}: {first}"),
                    _ => format!("STOMP ERROR: {message}"),
                };
                failed(DisconnectReason::AppError, detail, None)
            }
            _ => Report::Quiet,
        }
    }
}

/// The heart-beat period we offer: the probe interval (0: none).
fn heart_beat_ms(spec: &TargetSpec) -> u64 {
    spec.timing
        .ping_interval
        .map_or(0, |i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX))
}

impl Protocol for Stomp {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let mut options = self.options.clone();
        options.login = options.login.map(|l| ctx.secrets.expand(&l));
        options.passcode = options.passcode.map(|p| ctx.secrets.expand(&p));
        ctx.io.send_text(&connect_frame(&options, heart_beat_ms(ctx.spec)));
        Report::Quiet
    }

    fn on_message(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        let bytes = match input {
            Input::Text(t) => t.as_bytes(),
            Input::Binary(b) | Input::Chunk(b) => b,
            _ => return Report::Quiet,
        };
        self.last_heard = ctx.now;
        let read = self.reader.feed(bytes);
        most_telling(read.frames.iter().map(|f| self.on_frame(f, ctx)))
    }

    fn keeps(&self) -> Keep {
        Keep::Stream
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        if !self.connected {
            return Report::Quiet;
        }
        if self.heard_by(ctx.spec).is_some_and(|t| ctx.now >= t) {
            return Report::Unanswered(ProbeKind::App);
        }
        if let (Some(at), Some(every)) = (self.next_heartbeat, self.send_every) {
            if ctx.now >= at {
                ctx.io.send_text("\n");
                self.next_heartbeat = Some(ctx.now + every);
            }
        }
        let timing = &ctx.spec.timing;
        run_probe(&mut self.receipts, timing, ProbeKind::App, ctx, |id, io| {
            // An empty transaction begun with a receipt, then aborted: a
            // round trip that changes nothing on the broker.
            io.send_text(&format!(
                "BEGIN\ntransaction:sockpulse-{id}\nreceipt:sockpulse-{id}\n\n\0\
                 ABORT\ntransaction:sockpulse-{id}\n\n\0"
            ))
        })
    }

    fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        if !self.connected {
            return None;
        }
        let probes = self.receipts.poll_timeout(spec.timing.pong_timeout);
        min_opt(min_opt(probes, self.next_heartbeat), self.heard_by(spec))
    }

    fn awaiting(&self) -> Option<&'static str> {
        (!self.connected).then_some("CONNECTED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_heartbeats_are_read_in_any_chunking_without_keeping_bodies() {
        let stream = b"\nCONNECTED\nversion:1.2\nheart-beat:500,1000\n\n\0\n\nMESSAGE\ndestination:/topic/a\\cb\n\nbig body\0RECEIPT\nreceipt-id:sockpulse-3\n\n\0";
        for split in 1..stream.len() {
            let mut r = FrameReader::default();
            let mut a = r.feed(&stream[..split]);
            let b = r.feed(&stream[split..]);
            a.frames.extend(b.frames);
            a.heartbeats += b.heartbeats;
            let commands: Vec<&str> = a.frames.iter().map(|f| f.command.as_str()).collect();
            assert_eq!(commands, ["CONNECTED", "MESSAGE", "RECEIPT"], "split at {split}");
            assert_eq!(a.heartbeats, 3, "split at {split}");
            assert_eq!(a.frames[1].header("destination"), Some("/topic/a:b"));
        }
    }

    #[test]
    fn heart_beats_negotiate_as_the_spec_says() {
        let s = Duration::from_millis;
        assert_eq!(negotiate(1000, Some("500,2000")), (Some(s(2000)), Some(s(1000))));
        assert_eq!(negotiate(1000, Some("0,0")), (None, None));
        assert_eq!(negotiate(0, Some("500,500")), (None, None));
        assert_eq!(negotiate(1000, None), (None, None));
        let connect = connect_frame(
            &StompOptions {
                host: "/".into(),
                login: Some("guest".into()),
                passcode: Some("guest".into()),
                subscribe: None,
                receipt: true,
            },
            1000,
        );
        assert_eq!(
            connect,
            "CONNECT\naccept-version:1.2,1.1\nhost:/\nheart-beat:1000,1000\nlogin:guest\npasscode:guest\n\n\0"
        );
    }
}
