//! GraphQL over WebSocket, the `graphql-transport-ws` subprotocol (the
//! `graphql-ws` library's): `connection_init` answered by `connection_ack`
//! opens the session; protocol `ping`/`pong` messages are the probe; the
//! server's pings are answered; its 44xx close codes are its errors.

use serde::Deserialize;

use super::{answer_in_flight, run_probe, AppFailure, Ctx, Input, ProbeKind, Protocol, Report};
use crate::clock::Instant;
use crate::session::reason::DisconnectReason;
use crate::session::schedule::ProbeSchedule;
use crate::session::spec::{GraphqlWsOptions, TargetSpec};

/// What the protocol's close codes mean (graphql-ws `CloseCode`).
pub fn close_code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        4400 => "Bad Request",
        4401 => "Unauthorized",
        4403 => "Forbidden",
        4406 => "Subprotocol not acceptable",
        4408 => "Connection initialisation timeout",
        4409 => "Subscriber already exists",
        4429 => "Too many initialisation requests",
        4499 => "Terminated",
        4500 => "Internal server error",
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a str,
}

pub struct GraphqlWs {
    payload: Option<String>,
    acked: bool,
    pings: ProbeSchedule,
}

impl GraphqlWs {
    pub fn new(o: &GraphqlWsOptions) -> GraphqlWs {
        GraphqlWs {
            payload: o.payload.clone(),
            acked: false,
            pings: ProbeSchedule::default(),
        }
    }
}

impl Protocol for GraphqlWs {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let init = match &self.payload {
            Some(payload) => format!("{{\"type\":\"connection_init\",\"payload\":{payload}}}"),
            None => "{\"type\":\"connection_init\"}".to_string(),
        };
        ctx.io.send_text(&ctx.secrets.expand(&init));
        Report::Quiet
    }

    fn on_message(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        let Input::Text(text) = input else {
            ctx.data = true;
            return Report::Quiet;
        };
        let Ok(message) = serde_json::from_str::<Message<'_>>(text) else {
            ctx.data = true;
            return Report::Quiet;
        };
        match message.kind {
            "connection_ack" if !self.acked => {
                self.acked = true;
                self.pings = ProbeSchedule::starting(ctx.now, ctx.spec.timing.ping_interval);
                Report::Ready
            }
            "ping" => {
                ctx.io.send_text("{\"type\":\"pong\"}");
                Report::Quiet
            }
            "pong" => answer_in_flight(&mut self.pings, ctx.now, ProbeKind::App),
            "connection_ack" => Report::Quiet,
            _ => {
                ctx.data = true;
                Report::Quiet
            }
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        if !self.acked {
            return Report::Quiet;
        }
        let timing = &ctx.spec.timing;
        run_probe(&mut self.pings, timing, ProbeKind::App, ctx, |_, io| {
            io.send_text("{\"type\":\"ping\"}")
        })
    }

    fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        self.pings.poll_timeout(spec.timing.pong_timeout)
    }

    fn on_close(&self, code: Option<u16>, reason: &str) -> Option<AppFailure> {
        let code = code?;
        let name = close_code_name(code)?;
        let detail = match reason {
            "" => format!("GraphQL close {code} {name}"),
            r => format!("GraphQL close {code} {name}: {r}"),
        };
        Some(AppFailure::new(DisconnectReason::AppError, detail, Some(code)))
    }

    fn awaiting(&self) -> Option<&'static str> {
        (!self.acked).then_some("connection_ack")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_close_code_has_a_name() {
        for code in [4400, 4401, 4403, 4406, 4408, 4409, 4429, 4499, 4500] {
            assert!(close_code_name(code).is_some(), "{code}");
        }
        assert_eq!(close_code_name(1000), None);
        let f = GraphqlWs::new(&GraphqlWsOptions::default())
            .on_close(Some(4408), "Connection initialisation timeout")
            .expect("an application error");
        assert_eq!((f.reason, f.close_code), (DisconnectReason::AppError, Some(4408)));
        assert!(f.detail.contains("4408"), "{}", f.detail);
    }
}
