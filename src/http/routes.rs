//! What each path of the HTTP endpoint answers.

use super::auth::Verdict;
use super::conn::Then;
use super::page;
use super::request::Request;
use super::stream::SUBPROTOCOL;
use super::HttpState;
use crate::probe::query_param;
use crate::session::handshake::accept_key;

pub(super) enum Reply {
    Answer(Response),
    /// `/probe`: a check on the agent's loop, answered when it is done.
    Probe,
    /// A WebSocket upgrade's answer (`head`), then the echo (`/ws`) or
    /// the stream (`/api/v1/stream`).
    Upgrade {
        head: String,
        then: Then,
    },
}

pub(super) struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    /// Header lines beyond the usual, each ending in CRLF.
    pub headers: String,
    pub body: Vec<u8>,
}

/// The page's script, style and stream come from here only; nothing may
/// frame it.
const PAGE_HEADERS: &str = "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data:; frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\n\
     Referrer-Policy: no-referrer\r\nCache-Control: no-store\r\n";
const ASSET_HEADERS: &str = "X-Content-Type-Options: nosniff\r\nCache-Control: max-age=300\r\n";

fn with_headers(reply: Reply, headers: impl Into<String>) -> Reply {
    match reply {
        Reply::Answer(r) => Reply::Answer(Response {
            headers: headers.into(),
            ..r
        }),
        other => other,
    }
}

fn answer(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Answer(Response {
        status,
        content_type,
        headers: String::new(),
        body: body.into(),
    })
}

fn json<T: serde::Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => answer("200 OK", "application/json", body),
        Err(e) => answer("500 Internal Server Error", "text/plain", e.to_string()),
    }
}

pub(super) fn route(state: &HttpState, req: &Request, now: crate::clock::Instant) -> Reply {
    let Some(path) = under_prefix(req.path(), &state.prefix) else {
        if !state.prefix.is_empty() && req.path() == state.prefix {
            let location = format!("Location: {}/\r\n", state.prefix);
            return with_headers(
                answer("302 Found", "text/plain", "see the page under the prefix\n"),
                location,
            );
        }
        return answer("404 Not Found", "text/plain", "not found\n");
    };
    // Liveness probes and the echo stay open: they show nothing.
    if let (Some(auth), false) = (state.live.auth(), matches!(path, "/healthz" | "/ws")) {
        match auth.check(req.authorization.as_deref(), now) {
            Verdict::Allowed => {}
            Verdict::Denied => {
                return with_headers(
                    answer("401 Unauthorized", "text/plain", "authentication required\n"),
                    "WWW-Authenticate: Basic realm=\"sockpulse\", charset=\"UTF-8\"\r\n",
                )
            }
            Verdict::Busy => {
                return with_headers(
                    answer(
                        "429 Too Many Requests",
                        "text/plain",
                        "too many unknown credentials: retry\n",
                    ),
                    "Retry-After: 1\r\n",
                )
            }
        }
    }
    let origin_ok = same_origin(
        req.origin.as_deref(),
        req.host.as_deref(),
        state.external_origin.as_deref(),
    );
    if path == "/-/reload" && req.method == "POST" {
        if !origin_ok {
            return answer("403 Forbidden", "text/plain", "cross-origin request refused\n");
        }
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
        "/" => {
            let target = query_param(req.query(), "target").filter(|t| !t.is_empty());
            let now_ms = crate::wallclock::unix_now_ms();
            with_headers(
                answer(
                    "200 OK",
                    "text/html; charset=utf-8",
                    page::render(state, target.as_deref(), now_ms),
                ),
                PAGE_HEADERS,
            )
        }
        "/assets/app.js" => with_headers(
            answer("200 OK", "text/javascript; charset=utf-8", page::APP_JS),
            ASSET_HEADERS,
        ),
        "/assets/style.css" => with_headers(
            answer("200 OK", "text/css; charset=utf-8", page::STYLE_CSS),
            ASSET_HEADERS,
        ),
        "/healthz" => answer("200 OK", "text/plain", "ok\n"),
        "/probe" => Reply::Probe,
        "/api/v1/status" => json(&state.rows()),
        "/api/v1/probes" => json(&state.probe.recent()),
        "/api/v1/events" => events(state, req.query()),
        "/api/v1/host" => json(&state.host_summary()),
        "/ws" if state.live.echo_endpoint.load(std::sync::atomic::Ordering::Relaxed) => {
            match (req.upgrade_ws, &req.ws_key) {
                (true, Some(key)) => Reply::Upgrade {
                    head: switching(key, None),
                    then: Then::Echo,
                },
                _ => answer("426 Upgrade Required", "text/plain", "WebSocket endpoint\n"),
            }
        }
        "/api/v1/stream" if !origin_ok => answer("403 Forbidden", "text/plain", "cross-origin WebSocket refused\n"),
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
    Reply::Upgrade {
        head: switching(key, protocol),
        then: Then::Stream,
    }
}

/// `path` under the route prefix, as the routes below know it.
fn under_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(path);
    }
    path.strip_prefix(prefix).filter(|rest| rest.starts_with('/'))
}

/// Whether a browser's `Origin` is the page's own (its host and port are
/// the `Host` it asked, or it is `--web.external-url`'s): a page elsewhere
/// must not open the stream or reload the agent with the user's
/// credentials (cross-site request forgery, WebSocket hijacking). No
/// `Origin`: not a browser, nothing to hijack.
pub(super) fn same_origin(origin: Option<&str>, host: Option<&str>, external: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if external.is_some_and(|e| e.eq_ignore_ascii_case(origin.trim_end_matches('/'))) {
        return true;
    }
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
    json(&state.events_since(since, target.as_deref(), limit))
}
