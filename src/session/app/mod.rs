//! The plug-in point for liveness protocols: what proves, once a session
//! is open, that the peer is alive. Each protocol is sans-IO like the rest
//! of the core: fed decoded input and `now`, it writes what it sends
//! through the connection's `ConnIo`, exposes its next deadline, and
//! answers each call with a `Report` the session acts on (the application
//! handshake done, an RTT, a missed answer, the application's own error).
//!
//! `App` is matched rather than a trait object for the protocols that run
//! on every probe of every session (RFC 6455 pings, TCP probes); the
//! application protocols (`Protocol` implementations, one file each) sit
//! behind one box that also keeps RFC 6455 pings going beside them.

mod custom;
mod graphql_ws;
pub mod mqtt;
mod proto;
mod socketio;
pub mod stomp;
mod tcp_probe;
mod ws_ping;

use std::time::Duration;

use super::conn::ConnIo;
use super::reason::DisconnectReason;
use super::rng::Rng;
use super::schedule::{Due, ProbeSchedule, Probing};
use super::secrets::SecretFiles;
use super::spec::{Scheme, TargetSpec, Timing};
use crate::clock::Instant;
use crate::labels::label_enum;
use proto::Proto;
use tcp_probe::TcpProbe;
use ws_ping::WsPing;

pub use custom::{seq_group, SEQ as PROBE_SEQ};
pub use graphql_ws::close_code_name as graphql_close_code_name;
pub use socketio::{parse_engine_packet, parse_socket_packet, EnginePacket, SocketPacket};

label_enum! {
    /// What measured a round trip: values of the `probe` label.
    pub enum ProbeKind {
        /// The transport's own probe: an RFC 6455 ping, or a TCP target's
        /// send/expect probe.
        Ping,
        /// The application protocol's heartbeat or probe.
        App,
    }
}

/// What a protocol is fed.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A complete WebSocket text message (within what the protocol keeps).
    Text(&'a str),
    /// A complete WebSocket binary message (within what the protocol keeps).
    Binary(&'a [u8]),
    /// A WebSocket data message whose content was not kept: the protocol
    /// keeps none, or it was larger than the protocol takes.
    Skipped,
    /// The next bytes of WebSocket data messages, for a protocol that reads
    /// them as one stream (`Keep::Stream`).
    Chunk(&'a [u8]),
    /// The payload of a WebSocket pong.
    Pong(&'a [u8]),
    /// Bytes of a plain TCP stream, as they arrive.
    Bytes(&'a [u8]),
}

/// How much of each WebSocket data message a protocol needs: messages
/// are never held further than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing but that one arrived (`Input::Skipped`).
    Nothing,
    /// Messages up to this many bytes whole; larger ones only counted.
    UpTo(usize),
    /// Every byte as it arrives (`Input::Chunk`), across message
    /// boundaries: for protocols with a streaming parser of their own.
    Stream,
    /// Whole messages up to this many bytes; a larger one is the peer's
    /// error (the conformance client's echo).
    Whole(usize),
}

/// The most an application protocol keeps of one message: its own control
/// messages are far smaller, and larger ones are its payload traffic.
pub const APP_MESSAGE_LIMIT: usize = 16 * 1024;

/// The application ended or refused the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFailure {
    /// `AppError` once open; before, the attempt fails with `app_handshake`.
    pub reason: DisconnectReason,
    /// The application's own words and code, for logs and `status`.
    pub detail: String,
    /// A WebSocket close code, when the application closed with one.
    pub close_code: Option<u16>,
}

/// What a call found that the session must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing the session needs to know (protocol chatter included).
    Quiet,
    /// The application handshake completed: the session is open.
    Ready,
    /// A probe was answered after this long.
    Answered(Duration, ProbeKind),
    /// An answer that matches no probe in flight: not liveness.
    Stray,
    /// The probe in flight, or the heartbeat the peer owes, did not come in
    /// time.
    Unanswered(ProbeKind),
    Failed(AppFailure),
}

/// Everything a protocol call may use besides its own state: references
/// only, as it is built for every call.
pub struct Ctx<'a> {
    pub now: Instant,
    pub spec: &'a TargetSpec,
    pub probing: &'a Probing,
    pub rng: &'a mut Rng,
    /// Where what it sends goes.
    pub io: &'a mut ConnIo,
    /// For `${file:PATH}` in credentials and payloads.
    pub secrets: &'a SecretFiles,
    /// Set by the protocol when the input held application data (the feed
    /// `message_timeout` watches), whatever else it reports.
    pub data: bool,
}

/// The liveness protocol of one connection.
pub enum App {
    /// Nothing to send: liveness rests on the idle timeout and the kernel.
    Silent,
    /// RFC 6455 ping frames answered by pongs carrying the same id.
    WsPing(WsPing),
    /// A TCP target's `probe`: bytes sent, a pattern expected back. Boxed:
    /// its search window would otherwise widen every session's connection.
    TcpProbe(Box<TcpProbe>),
    /// An application protocol over WebSocket, with RFC 6455 pings beside it.
    Proto(Box<Proto>),
}

impl App {
    /// The protocol for `spec`, starting at `now`, the moment the transport
    /// is up (TCP connected or WebSocket upgraded).
    pub fn start(spec: &TargetSpec, now: Instant) -> App {
        let interval = spec.timing.ping_interval;
        // The transport's probing starts then: the first probe at once,
        // unless delayed.
        let first_probe = now + spec.timing.first_probe_delay.unwrap_or_default();
        match spec.scheme {
            Scheme::Tcp if spec.probe.is_some() => App::TcpProbe(Box::new(TcpProbe::start(first_probe, interval))),
            Scheme::Tcp => App::Silent,
            Scheme::Ws | Scheme::Wss => match Proto::new(spec, now) {
                Some(proto) => App::Proto(Box::new(proto)),
                None => App::WsPing(WsPing::start(first_probe, interval)),
            },
        }
    }

    /// The transport is up: sends the application handshake, if any.
    /// Reports `Ready` when the session is open at once.
    pub fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        match self {
            App::Proto(p) => p.on_open(ctx),
            _ => Report::Ready,
        }
    }

    /// How much of each data message it needs, at most `max_message_size`.
    pub fn keeps(&self, max_message_size: usize) -> Keep {
        match self {
            App::Silent | App::WsPing(_) | App::TcpProbe(_) => Keep::Nothing,
            App::Proto(p) => match p.keeps() {
                Keep::UpTo(limit) => Keep::UpTo(limit.min(max_message_size)),
                keep => keep,
            },
        }
    }

    /// Whether it sends probes at all (a one-shot check of a target that
    /// probes nothing ends once connected).
    pub fn probes(&self) -> bool {
        match self {
            App::Silent => false,
            App::WsPing(p) => p.probes(),
            App::TcpProbe(p) => p.probes(),
            App::Proto(_) => true,
        }
    }

    /// Its next deadline.
    pub fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        match self {
            App::Silent => None,
            App::WsPing(p) => p.poll_timeout(spec),
            App::TcpProbe(p) => p.poll_timeout(spec),
            App::Proto(p) => p.poll_timeout(spec),
        }
    }

    /// Its deadline came (or an earlier one of the session's).
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        match self {
            App::Silent => Report::Quiet,
            App::WsPing(p) => p.on_timeout(ctx),
            App::TcpProbe(p) => p.on_timeout(ctx),
            App::Proto(p) => p.on_timeout(ctx),
        }
    }

    /// Something arrived.
    pub fn on_input(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        match self {
            App::Silent => Report::Quiet,
            App::WsPing(p) => p.on_input(input, ctx),
            App::TcpProbe(p) => p.on_input(input, ctx),
            App::Proto(p) => p.on_input(input, ctx),
        }
    }

    /// What a close frame means to the application (its own codes), as the
    /// session should report it; `None` leaves it a plain `peer_close`.
    pub fn on_close(&self, code: Option<u16>, reason: &str) -> Option<AppFailure> {
        match self {
            App::Proto(p) => p.on_close(code, reason),
            _ => None,
        }
    }

    /// What the session is waiting for while the application handshake runs,
    /// for a timeout's message.
    pub fn awaiting(&self) -> Option<&'static str> {
        match self {
            App::Proto(p) => p.awaiting(),
            _ => None,
        }
    }
}

/// An application protocol over WebSocket: one implementation per file.
/// `Proto` keeps RFC 6455 pings going beside it once it is ready.
pub trait Protocol {
    /// The WebSocket is upgraded: send the handshake. `Ready` when there
    /// is none.
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report;
    /// A text or binary message, or its bytes (`keeps`).
    fn on_message(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report;
    /// How much of each message it reads.
    fn keeps(&self) -> Keep {
        Keep::UpTo(APP_MESSAGE_LIMIT)
    }
    /// Its deadline came.
    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report;
    fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant>;
    /// What the peer's close frame means in this protocol.
    fn on_close(&self, _code: Option<u16>, _reason: &str) -> Option<AppFailure> {
        None
    }
    /// What the handshake is waiting for (e.g. "connection_ack"), while it is.
    fn awaiting(&self) -> Option<&'static str>;
}

impl AppFailure {
    pub fn new(reason: DisconnectReason, detail: impl Into<String>, close_code: Option<u16>) -> AppFailure {
        AppFailure {
            reason,
            detail: detail.into(),
            close_code,
        }
    }
}

/// Runs a probe schedule's deadline: gives up on the probe in flight
/// (`Unanswered(kind)`), or sends probe `id` with `send`. `timing` gives the
/// cadence (the target's, or one the server announced).
#[inline]
fn run_probe(
    pings: &mut ProbeSchedule,
    timing: &Timing,
    kind: ProbeKind,
    ctx: &mut Ctx<'_>,
    send: impl FnOnce(u64, &mut ConnIo),
) -> Report {
    match pings.on_timeout(ctx.now, timing, ctx.probing, &mut *ctx.rng) {
        Due::Nothing => Report::Quiet,
        Due::Unanswered => Report::Unanswered(kind),
        Due::Probe(id) => {
            send(id, ctx.io);
            Report::Quiet
        }
    }
}

/// An answer that carries no id answers the probe in flight, if any.
#[inline]
fn answer_in_flight(pings: &mut ProbeSchedule, now: Instant, kind: ProbeKind) -> Report {
    match pings.in_flight().and_then(|id| pings.answer(id, now)) {
        Some(rtt) => Report::Answered(rtt, kind),
        None => Report::Stray,
    }
}

/// The most telling of the reports of several packets or frames in one
/// message: a failure or the handshake's end at once (later ones are not
/// looked at), else the last one that is not quiet.
fn most_telling(reports: impl IntoIterator<Item = Report>) -> Report {
    let mut telling = Report::Quiet;
    for report in reports {
        match report {
            Report::Quiet => {}
            r @ (Report::Failed(_) | Report::Ready) => return r,
            r => telling = r,
        }
    }
    telling
}

/// A failure report with the application's words.
pub fn failed(reason: DisconnectReason, detail: impl Into<String>, close_code: Option<u16>) -> Report {
    Report::Failed(AppFailure::new(reason, detail, close_code))
}
