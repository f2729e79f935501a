//! The plug-in point for liveness protocols: what proves, once a session
//! is open, that the peer is alive. Each protocol is sans-IO like the rest
//! of the core: fed decoded input and `now`, it writes what it sends
//! through the connection's `ConnIo`, exposes its next deadline, and answers
//! each call with a `Report` the session acts on (an RTT, a missed answer, ...).
//!
//! One variant per protocol, dispatched by `match` rather than through a
//! trait object: this runs on every probe of every session.

mod tcp_probe;
mod ws_ping;

use std::time::{Duration, Instant};

use super::conn::ConnIo;
use super::rng::Rng;
use super::schedule::Probing;
use super::spec::{Scheme, TargetSpec};
use tcp_probe::TcpProbe;
use ws_ping::WsPing;

/// What a protocol is fed.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A complete WebSocket text message.
    Text(&'a str),
    /// A complete WebSocket binary message.
    Binary(&'a [u8]),
    /// The payload of a WebSocket pong.
    Pong(&'a [u8]),
    /// Bytes of a plain TCP stream, as they arrive.
    Bytes(&'a [u8]),
}

/// What a call found that the session must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing the session needs to know.
    Quiet,
    /// A probe was answered after this long.
    Answered(Duration),
    /// An answer that matches no probe in flight: not liveness.
    Stray,
    /// The probe in flight was not answered in time.
    Unanswered,
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
}

/// The liveness protocol of one open connection.
pub enum App {
    /// Nothing to send: liveness rests on the idle timeout and the kernel.
    Silent,
    /// RFC 6455 ping frames answered by pongs carrying the same id.
    WsPing(WsPing),
    /// A TCP target's `probe`: bytes sent, a pattern expected back. Boxed:
    /// its search window would otherwise widen every session's connection.
    TcpProbe(Box<TcpProbe>),
}

impl App {
    /// The protocol for `spec`, starting at `now` (the first probe is due
    /// at once).
    pub fn start(spec: &TargetSpec, now: Instant) -> App {
        let interval = spec.timing.ping_interval;
        match (spec.scheme, &spec.probe) {
            (Scheme::Ws | Scheme::Wss, _) => App::WsPing(WsPing::start(now, interval)),
            (Scheme::Tcp, Some(_)) => App::TcpProbe(Box::new(TcpProbe::start(now, interval))),
            (Scheme::Tcp, None) => App::Silent,
        }
    }

    /// Whether it sends probes at all (a one-shot check of a target that
    /// probes nothing ends once connected).
    pub fn probes(&self) -> bool {
        match self {
            App::Silent => false,
            App::WsPing(p) => p.probes(),
            App::TcpProbe(p) => p.probes(),
        }
    }

    /// Its next deadline.
    pub fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        match self {
            App::Silent => None,
            App::WsPing(p) => p.poll_timeout(spec),
            App::TcpProbe(p) => p.poll_timeout(spec),
        }
    }

    /// Its deadline came (or an earlier one of the session's).
    pub fn on_timeout(&mut self, ctx: Ctx<'_>) -> Report {
        match self {
            App::Silent => Report::Quiet,
            App::WsPing(p) => p.on_timeout(ctx),
            App::TcpProbe(p) => p.on_timeout(ctx),
        }
    }

    /// Something arrived.
    pub fn on_input(&mut self, input: Input<'_>, ctx: Ctx<'_>) -> Report {
        match self {
            App::Silent => Report::Quiet,
            App::WsPing(p) => p.on_input(input, ctx),
            App::TcpProbe(p) => p.on_input(input, ctx),
        }
    }
}
