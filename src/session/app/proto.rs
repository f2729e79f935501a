//! An application protocol over WebSocket with RFC 6455 pings beside it:
//! the protocol's handshake decides when the session opens, then both its
//! own heartbeat and the pings prove the peer alive.

use super::custom::CustomProbe;
use super::graphql_ws::GraphqlWs;
use super::mqtt::Mqtt;
use super::socketio::SocketIo;
use super::stomp::Stomp;
use super::ws_ping::WsPing;
use super::{AppFailure, Ctx, Input, Keep, Protocol, Report};
use crate::clock::Instant;
use crate::session::min_opt;
use crate::session::spec::{Protocol as ProtocolSpec, TargetSpec};

enum Kind {
    SocketIo(SocketIo),
    GraphqlWs(GraphqlWs),
    Mqtt(Mqtt),
    Stomp(Stomp),
    Custom(CustomProbe),
}

pub struct Proto {
    kind: Kind,
    /// RFC 6455 pings, started once the application is ready.
    pings: Option<WsPing>,
}

impl Proto {
    /// The application protocol of `spec`; `None` for plain RFC 6455.
    pub fn new(spec: &TargetSpec, now: Instant) -> Option<Proto> {
        let kind = match (&spec.protocol, &spec.app_probe) {
            (ProtocolSpec::SocketIo(o), _) => Kind::SocketIo(SocketIo::new(o, now)),
            (ProtocolSpec::GraphqlWs(o), _) => Kind::GraphqlWs(GraphqlWs::new(o)),
            (ProtocolSpec::Mqtt(o), _) => Kind::Mqtt(Mqtt::new(o)),
            (ProtocolSpec::Stomp(o), _) => Kind::Stomp(Stomp::new(o, now)),
            (ProtocolSpec::Ws, Some(probe)) => Kind::Custom(CustomProbe::new(probe)),
            (ProtocolSpec::Ws, None) => return None,
        };
        Some(Proto { kind, pings: None })
    }

    fn protocol(&mut self) -> &mut dyn Protocol {
        match &mut self.kind {
            Kind::SocketIo(p) => p,
            Kind::GraphqlWs(p) => p,
            Kind::Mqtt(p) => p,
            Kind::Stomp(p) => p,
            Kind::Custom(p) => p,
        }
    }

    fn protocol_ref(&self) -> &dyn Protocol {
        match &self.kind {
            Kind::SocketIo(p) => p,
            Kind::GraphqlWs(p) => p,
            Kind::Mqtt(p) => p,
            Kind::Stomp(p) => p,
            Kind::Custom(p) => p,
        }
    }

    /// Pings start when the application is ready, not at the upgrade.
    fn note(&mut self, report: Report, ctx: &Ctx<'_>) -> Report {
        if report == Report::Ready && self.pings.is_none() {
            self.pings = Some(WsPing::start(ctx.now, ctx.spec.timing.ping_interval));
        }
        report
    }

    pub fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let report = self.protocol().on_open(ctx);
        self.note(report, ctx)
    }

    pub fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        let pings = self.pings.as_ref().and_then(|p| p.poll_timeout(spec));
        min_opt(pings, self.protocol_ref().poll_timeout(spec))
    }

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        if let Some(pings) = self.pings.as_mut() {
            let report = pings.on_timeout(ctx);
            if report != Report::Quiet {
                return report;
            }
        }
        let report = self.protocol().on_timeout(ctx);
        self.note(report, ctx)
    }

    pub fn on_input(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        match input {
            Input::Pong(_) => match self.pings.as_mut() {
                Some(pings) => pings.on_input(input, ctx),
                None => Report::Stray,
            },
            Input::Text(_) | Input::Binary(_) | Input::Chunk(_) => {
                let report = self.protocol().on_message(input, ctx);
                self.note(report, ctx)
            }
            // Larger than the protocol reads: its payload traffic.
            Input::Skipped => {
                ctx.data = true;
                Report::Quiet
            }
            Input::Bytes(_) => Report::Quiet,
        }
    }

    pub fn keeps(&self) -> Keep {
        self.protocol_ref().keeps()
    }

    pub fn on_close(&self, code: Option<u16>, reason: &str) -> Option<AppFailure> {
        self.protocol_ref().on_close(code, reason)
    }

    pub fn awaiting(&self) -> Option<&'static str> {
        self.protocol_ref().awaiting()
    }
}
