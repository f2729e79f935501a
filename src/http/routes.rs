//! What each path of the HTTP endpoint answers.

use super::request::Request;
use super::stream::SUBPROTOCOL;
use super::HttpState;
use crate::probe::query_param;
use crate::session::handshake::accept_key;

pub(super) enum Reply {
    Answer(Response),
    /// `/probe`: a check on the agent's loop, answered when it is done.
    Probe,
    /// `/ws`: the answer to the upgrade, then WebSocket echo.
    Upgrade(String),
    /// `/api/v1/stream`: the answer to the upgrade, then the stream.
    Stream(String),
}

pub(super) struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn answer(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Answer(Response {
        status,
        content_type,
        body: body.into(),
    })
}

fn json<T: serde::Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => answer("200 OK", "application/json", body),
        Err(e) => answer("500 Internal Server Error", "text/plain", e.to_string()),
    }
}

pub(super) fn route(state: &HttpState, req: &Request) -> Reply {
    let path = req.path();
    if path == "/-/reload" && req.method == "POST" {
        return match &state.lifecycle {
            Some(handle) => {
                handle.reload();
                answer("202 Accepted", "text/plain", "reload requested\n")
            }
            None => answer(
                "403 Forbidden",
                "text/plain",
                "lifecycle API is not enabled (--web.enable-lifecycle)\n",
            ),
        };
    }
    if req.method != "GET" {
        return answer("405 Method Not Allowed", "text/plain", "only GET\n");
    }
    if path == state.telemetry_path {
        let in_flight = state.probe.in_flight.load(std::sync::atomic::Ordering::Relaxed);
        state.metrics.probes_in_flight.set(in_flight as i64);
        return answer("200 OK", prometheus::TEXT_FORMAT, state.metrics.encode());
    }
    match path {
        "/" => answer("200 OK", "text/html; charset=utf-8", landing_page(state)),
        "/healthz" => answer("200 OK", "text/plain", "ok\n"),
        "/probe" => Reply::Probe,
        "/api/v1/status" => json(&state.status.lock().map(|s| s.clone()).unwrap_or_default()),
        "/api/v1/probes" => json(&state.probe.recent()),
        "/api/v1/events" => events(state, req.query()),
        "/api/v1/host" => json(&state.host.lock().map(|h| h.clone()).unwrap_or(None)),
        "/ws" if state.echo_endpoint => match (req.upgrade_ws, &req.ws_key) {
            (true, Some(key)) => Reply::Upgrade(switching(key, None)),
            _ => answer("426 Upgrade Required", "text/plain", "WebSocket endpoint\n"),
        },
        "/api/v1/stream" => stream(req),
        _ => answer("404 Not Found", "text/plain", "not found\n"),
    }
}

/// The upgrade's answer, with the subprotocol chosen.
fn switching(key: &str, protocol: Option<&str>) -> String {
    let protocol = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        accept_key(key)
    )
}

/// `/api/v1/stream`: a WebSocket from this origin (or from no browser at
/// all) that speaks `sockpulse.v1` if it names subprotocols.
fn stream(req: &Request) -> Reply {
    let (true, Some(key)) = (req.upgrade_ws, &req.ws_key) else {
        return answer(
            "426 Upgrade Required",
            "text/plain",
            "WebSocket endpoint (sockpulse.v1)\n",
        );
    };
    if !same_origin(req.origin.as_deref(), req.host.as_deref()) {
        return answer("403 Forbidden", "text/plain", "cross-origin WebSocket refused\n");
    }
    let protocol = match req.ws_protocols.iter().find(|p| p.as_str() == SUBPROTOCOL) {
        Some(p) => Some(p.as_str()),
        None if req.ws_protocols.is_empty() => None,
        None => {
            return answer(
                "400 Bad Request",
                "text/plain",
                format!("unsupported subprotocol: this stream speaks {SUBPROTOCOL}\n"),
            )
        }
    };
    Reply::Stream(switching(key, protocol))
}

/// Whether a browser's `Origin` is the page's own (its host and port are
/// the `Host` it asked): a page elsewhere must not open the stream with
/// the user's credentials (cross-site WebSocket hijacking). No `Origin`:
/// not a browser, nothing to hijack.
pub(super) fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let authority = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    host.is_some_and(|h| !authority.is_empty() && authority.eq_ignore_ascii_case(h))
}

/// Events after `since` (default: all kept), of `target` if given, at
/// most `limit` (default and most: the whole ring), oldest first.
fn events(state: &HttpState, query: &str) -> Reply {
    let since = match query_param(query, "since").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return answer("400 Bad Request", "text/plain", "since must be an event number\n"),
    };
    let limit = match query_param(query, "limit").map(|v| v.parse::<usize>()) {
        None => crate::events::CAPACITY,
        Some(Ok(n)) => n.min(crate::events::CAPACITY),
        Some(Err(_)) => return answer("400 Bad Request", "text/plain", "limit must be a number\n"),
    };
    let target = query_param(query, "target");
    let events = match state.events.lock() {
        Ok(log) => log.since(since, target.as_deref(), limit),
        Err(_) => Vec::new(),
    };
    json(&events)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Lists the live targets from the metrics registry, so it follows reloads.
fn landing_page(state: &HttpState) -> String {
    use prometheus::core::Collector;
    let mut targets: Vec<(String, f64)> = state
        .metrics
        .target_up
        .collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .filter_map(|m| {
            let name = m.get_label().iter().find(|l| l.name() == "target")?.value().to_string();
            Some((name, m.get_gauge().value()))
        })
        .collect();
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: String = targets
        .iter()
        .map(|(name, up)| {
            format!(
                "<li><code>{}</code> &mdash; {}</li>",
                html_escape(name),
                if *up == 1.0 { "up" } else { "down" }
            )
        })
        .collect();
    format!(
        "<!doctype html><html><head><title>sockpulse</title></head><body>\
         <h1>sockpulse {}</h1><p>Connection-liveness monitor.</p>\
         <ul><li><a href=\"{}\">Metrics</a></li><li><a href=\"/healthz\">Health</a></li></ul>\
         <h2>Targets</h2><ul>{rows}</ul></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        html_escape(&state.telemetry_path)
    )
}
