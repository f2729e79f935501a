//! Client side of the RFC 6455 opening handshake, done by hand so that each
//! way it can fail gets its own reason; the frame codec (`frames`) takes
//! the bytes that follow.

use base64::Engine;
use sha1::{Digest, Sha1};

use super::reason::FailureReason;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A server's response header section larger than this is hostile or broken.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// `Sec-WebSocket-Accept` for a given `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

pub fn encode_key(nonce: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

pub struct RequestParams<'a> {
    pub host_header: &'a str,
    pub path: &'a str,
    pub key: &'a str,
    pub origin: Option<&'a str>,
    pub subprotocols: &'a [String],
    pub headers: &'a [(String, String)],
}

pub fn build_request(p: &RequestParams<'_>) -> Vec<u8> {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: sockpulse/{}\r\n",
        p.path,
        p.host_header,
        p.key,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(origin) = p.origin {
        req.push_str(&format!("Origin: {origin}\r\n"));
    }
    if !p.subprotocols.is_empty() {
        req.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", p.subprotocols.join(", ")));
    }
    for (name, value) in p.headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Bytes after the header section: the start of the first frames.
    pub leftover: Vec<u8>,
    pub subprotocol: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: FailureReason,
    pub detail: String,
}

fn reject(reason: FailureReason, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// What `parse_response` found in the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(Accepted),
}

pub struct Expectation<'a> {
    pub key: &'a str,
    pub subprotocols: &'a [String],
    pub require_subprotocol: bool,
}

/// Parses the server's answer. `buf` holds everything received so far.
pub fn parse_response(buf: &[u8], want: &Expectation<'_>) -> Result<Progress, Rejected> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err(reject(
                    FailureReason::ProtocolError,
                    format!("response header section exceeds {MAX_RESPONSE_HEAD} bytes"),
                ));
            }
            return Ok(Progress::NeedMore);
        }
        Err(e) => {
            return Err(reject(
                FailureReason::ProtocolError,
                format!("malformed HTTP response: {e}"),
            ))
        }
    };
    if head_len > MAX_RESPONSE_HEAD {
        return Err(reject(
            FailureReason::ProtocolError,
            format!("response header section exceeds {MAX_RESPONSE_HEAD} bytes"),
        ));
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(reject(
            FailureReason::HandshakeStatus,
            format!("HTTP {code} {}", resp.reason.unwrap_or("")),
        ));
    }
    let header = |name: &str| -> Option<String> {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    match header("upgrade") {
        Some(v) if v.eq_ignore_ascii_case("websocket") => {}
        other => {
            return Err(reject(
                FailureReason::ProtocolError,
                format!("101 without Upgrade: websocket (got {other:?})"),
            ))
        }
    }
    let connection_ok = header("connection")
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        .unwrap_or(false);
    if !connection_ok {
        return Err(reject(FailureReason::ProtocolError, "101 without Connection: upgrade"));
    }
    let expected = accept_key(want.key);
    match header("sec-websocket-accept") {
        Some(got) if got == expected => {}
        Some(got) => {
            return Err(reject(
                FailureReason::BadAccept,
                format!("Sec-WebSocket-Accept {got:?}, expected {expected:?}"),
            ))
        }
        None => return Err(reject(FailureReason::BadAccept, "missing Sec-WebSocket-Accept")),
    }
    if let Some(ext) = header("sec-websocket-extensions") {
        if !ext.is_empty() {
            return Err(reject(
                FailureReason::ProtocolError,
                format!("server selected extension {ext:?} that was not offered"),
            ));
        }
    }
    let subprotocol = header("sec-websocket-protocol").filter(|s| !s.is_empty());
    match &subprotocol {
        Some(sp) if !want.subprotocols.iter().any(|w| w == sp) => {
            return Err(reject(
                FailureReason::ProtocolError,
                format!("server selected subprotocol {sp:?} that was not offered"),
            ))
        }
        None if want.require_subprotocol && !want.subprotocols.is_empty() => {
            return Err(reject(
                FailureReason::ProtocolError,
                "server selected none of the requested subprotocols",
            ))
        }
        _ => {}
    }
    Ok(Progress::Done(Accepted {
        leftover: buf[head_len..].to_vec(),
        subprotocol,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn want() -> Expectation<'static> {
        Expectation {
            key: KEY,
            subprotocols: &[],
            require_subprotocol: false,
        }
    }

    fn ok_response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        )
    }

    #[test]
    fn rfc6455_example_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn request_carries_required_headers() {
        let headers = vec![("Authorization".to_string(), "Bearer x".to_string())];
        let subs = vec!["chat".to_string(), "v2".to_string()];
        let req = build_request(&RequestParams {
            host_header: "example.net:8080",
            path: "/stream?x=1",
            key: KEY,
            origin: Some("https://example.net"),
            subprotocols: &subs,
            headers: &headers,
        });
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("GET /stream?x=1 HTTP/1.1\r\nHost: example.net:8080\r\n"));
        for line in [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Origin: https://example.net",
            "Sec-WebSocket-Protocol: chat, v2",
            "Authorization: Bearer x",
        ] {
            assert!(text.contains(&format!("\r\n{line}\r\n")), "missing {line}");
        }
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn accepts_valid_response_and_keeps_leftover_frame_bytes() {
        let mut resp = ok_response("").into_bytes();
        resp.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        let got = parse_response(&resp, &want()).unwrap();
        assert_eq!(
            got,
            Progress::Done(Accepted {
                leftover: vec![0x81, 0x02, b'h', b'i'],
                subprotocol: None
            })
        );
    }

    #[test]
    fn partial_response_needs_more() {
        let resp = ok_response("");
        assert_eq!(parse_response(&resp.as_bytes()[..20], &want()), Ok(Progress::NeedMore));
    }

    #[test]
    fn failures_are_classified() {
        let cases: Vec<(String, FailureReason)> = vec![
            ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(), FailureReason::HandshakeStatus),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n".into(), FailureReason::BadAccept),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(), FailureReason::BadAccept),
            ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".into(), FailureReason::ProtocolError),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".into(), FailureReason::ProtocolError),
            (ok_response("Sec-WebSocket-Extensions: permessage-deflate\r\n"), FailureReason::ProtocolError),
            (ok_response("Sec-WebSocket-Protocol: evil\r\n"), FailureReason::ProtocolError),
            ("\x00\x01garbage\r\n\r\n".into(), FailureReason::ProtocolError),
        ];
        for (resp, reason) in cases {
            let err = parse_response(resp.as_bytes(), &want()).unwrap_err();
            assert_eq!(err.reason, reason, "for {resp:?}: {}", err.detail);
        }
    }

    #[test]
    fn oversized_header_section_is_rejected() {
        let mut resp = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        while resp.len() <= MAX_RESPONSE_HEAD {
            resp.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let err = parse_response(&resp, &want()).unwrap_err();
        assert_eq!(err.reason, FailureReason::ProtocolError);
    }

    #[test]
    fn subprotocol_requirements() {
        let subs = vec!["chat".to_string()];
        let w = Expectation {
            key: KEY,
            subprotocols: &subs,
            require_subprotocol: true,
        };
        let err = parse_response(ok_response("").as_bytes(), &w).unwrap_err();
        assert_eq!(err.reason, FailureReason::ProtocolError);
        let ok = parse_response(ok_response("Sec-WebSocket-Protocol: chat\r\n").as_bytes(), &w).unwrap();
        match ok {
            Progress::Done(a) => assert_eq!(a.subprotocol.as_deref(), Some("chat")),
            Progress::NeedMore => panic!("expected done"),
        }
        let lenient = Expectation {
            require_subprotocol: false,
            ..w
        };
        assert!(matches!(
            parse_response(ok_response("").as_bytes(), &lenient),
            Ok(Progress::Done(_))
        ));
    }
}
