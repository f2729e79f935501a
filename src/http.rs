//! The HTTP endpoint, on threads of its own: `/metrics`, a landing page,
//! `/healthz`, and a WebSocket echo at `/ws` that gives a fresh install
//! something real to monitor.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::driver::LoopHandle;
use crate::metrics::Metrics;
use crate::observer::TargetReport;
use crate::session::handshake::accept_key;

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const MAX_CONNECTIONS: usize = 64;
const ECHO_MAX_MESSAGE: usize = 64 * 1024;

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub telemetry_path: String,
    pub echo_endpoint: bool,
    /// The event loop, when POST /-/reload is enabled.
    pub lifecycle: Option<LoopHandle>,
    /// The agent's live per-target state, served at /api/v1/status.
    pub status: Arc<std::sync::Mutex<Vec<TargetReport>>>,
    /// `/probe`.
    pub probe: crate::probe::ProbeEndpoint,
}

pub fn spawn(listener: TcpListener, state: Arc<HttpState>) -> io::Result<thread::JoinHandle<()>> {
    let active = Arc::new(AtomicUsize::new(0));
    thread::Builder::new().name("sockpulse-http".into()).spawn(move || {
        for conn in listener.incoming() {
            let mut stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("http accept failed: {e}");
                    // EMFILE and friends: do not spin on a full fd table.
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            let state = Arc::clone(&state);
            let active_c = Arc::clone(&active);
            let spawned = thread::Builder::new()
                .name("sockpulse-http-conn".into())
                .spawn(move || {
                    if let Err(e) = serve(stream, &state) {
                        log::debug!("http connection ended: {e}");
                    }
                    active_c.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    })
}

struct Request {
    method: String,
    path: String,
    upgrade_ws: bool,
    ws_key: Option<String>,
    /// Prometheus's `X-Prometheus-Scrape-Timeout-Seconds`.
    scrape_timeout: Option<f64>,
    head_len: usize,
}

fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Request>> {
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                };
                let upgrade_ws = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
                return Ok(Some(Request {
                    method: req.method.unwrap_or("").to_string(),
                    path: req.path.unwrap_or("/").to_string(),
                    upgrade_ws,
                    ws_key: header("sec-websocket-key"),
                    scrape_timeout: header("x-prometheus-scrape-timeout-seconds").and_then(|v| v.parse().ok()),
                    head_len,
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => {}
            _ => return Ok(None),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn serve(mut stream: TcpStream, state: &HttpState) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let Some(req) = read_head(&mut stream, &mut buf)? else {
        return respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n");
    };
    let path = req.path.split('?').next().unwrap_or("/");
    if path == "/-/reload" && req.method == "POST" {
        return match &state.lifecycle {
            Some(handle) => {
                handle.reload();
                respond(&mut stream, "202 Accepted", "text/plain", b"reload requested\n")
            }
            None => respond(
                &mut stream,
                "403 Forbidden",
                "text/plain",
                b"lifecycle API is not enabled (--web.enable-lifecycle)\n",
            ),
        };
    }
    if req.method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET\n");
    }
    if path == state.telemetry_path {
        let body = state.metrics.encode();
        return respond(&mut stream, "200 OK", prometheus::TEXT_FORMAT, &body);
    }
    match path {
        "/" => respond(
            &mut stream,
            "200 OK",
            "text/html; charset=utf-8",
            landing_page(state).as_bytes(),
        ),
        "/healthz" => respond(&mut stream, "200 OK", "text/plain", b"ok\n"),
        "/probe" => {
            let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
            let answer = crate::probe::handle(&state.probe, query, req.scrape_timeout);
            // The check may take up to the scrape timeout: writing must not.
            stream.set_write_timeout(Some(Duration::from_secs(10)))?;
            respond(&mut stream, answer.status, answer.content_type, answer.body.as_bytes())
        }
        "/api/v1/status" => {
            let snapshot = state.status.lock().map(|s| s.clone()).unwrap_or_default();
            match serde_json::to_vec(&snapshot) {
                Ok(body) => respond(&mut stream, "200 OK", "application/json", &body),
                Err(e) => respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "text/plain",
                    e.to_string().as_bytes(),
                ),
            }
        }
        "/ws" if state.echo_endpoint => match (req.upgrade_ws, req.ws_key) {
            (true, Some(key)) => echo(stream, &key, buf.split_off(req.head_len)),
            _ => respond(
                &mut stream,
                "426 Upgrade Required",
                "text/plain",
                b"WebSocket endpoint\n",
            ),
        },
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n"),
    }
}

/// Echoes text and binary messages; tungstenite answers pings itself.
fn echo(mut stream: TcpStream, key: &str, leftover: Vec<u8>) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    stream.write_all(head.as_bytes())?;
    // A monitor pings every few seconds; 5 minutes of silence is abandonment.
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(ECHO_MAX_MESSAGE))
        .max_frame_size(Some(ECHO_MAX_MESSAGE));
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(config));
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.send(msg).map_err(io::Error::other)?,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
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
