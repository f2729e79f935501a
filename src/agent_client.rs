//! A client for a running agent's HTTP API: what `status --agent` asks.

use std::fmt;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::events::Event;
use crate::observer::TargetReport;
use crate::probe::ProbeResult;

/// Why a running agent's status could not be had.
#[derive(Debug)]
pub enum FetchError {
    /// The agent URL itself is wrong.
    BadUrl(String),
    /// The agent did not answer, or not properly.
    Unreachable(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUrl(msg) | FetchError::Unreachable(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for FetchError {}

/// Asks a running agent for its live per-target state (GET /api/v1/status).
pub fn fetch_status(base: &str, timeout: Duration) -> Result<Vec<TargetReport>, FetchError> {
    fetch_json(base, "/api/v1/status", timeout)?
        .ok_or_else(|| FetchError::Unreachable(format!("agent {base}: answered 404 for /api/v1/status")))
}

/// The agent's last `/probe` checks (GET /api/v1/probes); none from an
/// agent too old to have them.
pub fn fetch_probes(base: &str, timeout: Duration) -> Result<Vec<ProbeResult>, FetchError> {
    Ok(fetch_json(base, "/api/v1/probes", timeout)?.unwrap_or_default())
}

/// The agent's last `per_target` events of each target (and of the host),
/// oldest first; none from an agent too old to keep them.
pub fn fetch_events(base: &str, timeout: Duration) -> Result<Vec<Event>, FetchError> {
    Ok(fetch_json(base, "/api/v1/events", timeout)?.unwrap_or_default())
}

/// GETs `path` from the agent at `base` as JSON; `None` on a 404.
fn fetch_json<T: serde::de::DeserializeOwned>(
    base: &str,
    path: &str,
    timeout: Duration,
) -> Result<Option<T>, FetchError> {
    let url = url::Url::parse(base).map_err(|e| FetchError::BadUrl(format!("--agent {base:?}: {e}")))?;
    if url.scheme() != "http" {
        return Err(FetchError::BadUrl(format!(
            "--agent {base:?}: only http:// is supported"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::BadUrl(format!("--agent {base:?} has no host")))?;
    let port = url.port().unwrap_or(80);
    let unreachable = |e: String| FetchError::Unreachable(format!("agent {base}: {e}"));
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| unreachable("no address".into()))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| unreachable(e.to_string()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| unreachable(e.to_string()))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| unreachable(e.to_string()))?;
    let mut resp = Vec::new();
    // A status answer is small; refuse to buffer a hostile endless one.
    s.take(16 << 20)
        .read_to_end(&mut resp)
        .map_err(|e| unreachable(e.to_string()))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| unreachable("malformed HTTP answer".into()))?;
    let status_line = head.lines().next().unwrap_or("");
    match status_line.split_whitespace().nth(1) {
        Some("200") => {}
        Some("404") => return Ok(None),
        _ => return Err(unreachable(format!("answered {status_line:?} for {path}"))),
    }
    serde_json::from_str(body)
        .map(Some)
        .map_err(|e| unreachable(format!("bad JSON from {path}: {e}")))
}
