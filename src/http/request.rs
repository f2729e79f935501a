//! An HTTP/1.x request head, parsed from whatever bytes have arrived.

/// A request head is refused (431) past this many bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// HTTP/1.1 without `Connection: close` and without a body: the
    /// connection may carry the next request.
    pub keep_alive: bool,
    pub upgrade_ws: bool,
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Protocol`, split.
    pub ws_protocols: Vec<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
    pub authorization: Option<String>,
    /// Prometheus's `X-Prometheus-Scrape-Timeout-Seconds`.
    pub scrape_timeout: Option<f64>,
    pub head_len: usize,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

pub enum Parsed {
    Complete(Request),
    /// More bytes are needed.
    Partial,
    Bad,
    TooLarge,
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Bad,
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    // A body is not read: such a connection ends after its answer, so the
    // body is never taken for the next request.
    let has_body = header("transfer-encoding").is_some()
        || header("content-length").is_some_and(|v| v.parse::<u64>().map_or(true, |n| n > 0));
    let keep_alive = req.version == Some(1) && !has_token("connection", "close") && !has_body;
    Parsed::Complete(Request {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("/").to_string(),
        keep_alive,
        upgrade_ws: has_token("upgrade", "websocket"),
        ws_key: header("sec-websocket-key"),
        ws_protocols: header("sec-websocket-protocol")
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        origin: header("origin"),
        host: header("host"),
        authorization: header("authorization"),
        scrape_timeout: header("x-prometheus-scrape-timeout-seconds").and_then(|v| v.parse().ok()),
        head_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> Request {
        match parse(raw) {
            Parsed::Complete(r) => r,
            _ => panic!("expected a complete head"),
        }
    }

    #[test]
    fn keep_alive_follows_version_connection_header_and_body() {
        assert!(complete(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!complete(b"POST /-/reload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").keep_alive);
        assert!(complete(b"POST /-/reload HTTP/1.1\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").keep_alive);
    }

    #[test]
    fn path_query_upgrade_and_scrape_timeout_are_read() {
        let raw: &[u8] = b"GET /probe?target=ws%3A%2F%2Fa&module=x HTTP/1.1\r\nUpgrade: WebSocket\r\n\
              Sec-WebSocket-Key: abc\r\nX-Prometheus-Scrape-Timeout-Seconds: 9.5\r\n\r\nrest";
        let r = complete(raw);
        assert_eq!(r.path(), "/probe");
        assert_eq!(r.query(), "target=ws%3A%2F%2Fa&module=x");
        assert!(r.upgrade_ws);
        assert_eq!(r.ws_key.as_deref(), Some("abc"));
        assert_eq!(r.scrape_timeout, Some(9.5));
        assert_eq!(r.head_len, raw.len() - 4);
    }

    #[test]
    fn partial_bad_and_oversized_heads_are_told_apart() {
        assert!(matches!(parse(b"GET /metrics HTTP/1.1\r\nHost:"), Parsed::Partial));
        assert!(matches!(parse(b"\x16\x03\x01 not http\r\n\r\n"), Parsed::Bad));
        let mut big = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        big.resize(MAX_REQUEST_HEAD + 1, b'a');
        assert!(matches!(parse(&big), Parsed::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many), Parsed::TooLarge));
    }
}
