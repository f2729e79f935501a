//! Tunnels through a proxy, sans-IO: an HTTP `CONNECT` (RFC 9110 9.3.6) or
//! a SOCKS5 `CONNECT` (RFC 1928, with RFC 1929 username/password), spoken
//! on the TCP connection to the proxy before anything of the target's own
//! protocol. Once the proxy says the tunnel is up, the bytes that follow are
//! the target's.

use std::fmt;
use std::net::SocketAddr;

use super::conn::OutBuf;
use super::secrets::SecretFiles;
use crate::labels::label_enum;

label_enum! {
    /// How the proxy is spoken to.
    pub enum ProxyKind {
        /// HTTP `CONNECT`; the proxy resolves the target's name.
        Http,
        /// SOCKS5, the target's name resolved here.
        Socks5,
        /// SOCKS5, the target's name resolved by the proxy.
        Socks5h,
    }
}

/// A proxy as configured. Credentials are templates: `${file:PATH}` in them
/// is read again for every connection attempt, like other secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySpec {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    pub auth: Option<ProxyAuth>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    pub user: String,
    pub password: String,
}

impl ProxySpec {
    /// Whether the target's name is resolved here (plain `socks5://`).
    pub fn resolves_locally(&self) -> bool {
        self.kind == ProxyKind::Socks5
    }
}

/// `kind://host:port`, credentials never shown: this is what logs print.
impl fmt::Display for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.auth.is_some() { "***@" } else { "" };
        if self.host.contains(':') {
            write!(f, "{}://{auth}[{}]:{}", self.kind, self.host, self.port)
        } else {
            write!(f, "{}://{auth}{}:{}", self.kind, self.host, self.port)
        }
    }
}

impl fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output feeds the target's fingerprint: the credentials'
        // templates change it, without being printed anywhere.
        let auth = self
            .auth
            .as_ref()
            .map(|a| (a.user.len(), fingerprint(&a.user, &a.password)));
        write!(f, "ProxySpec({self}, auth: {auth:?})")
    }
}

fn fingerprint(user: &str, password: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (user, password).hash(&mut h);
    h.finish()
}

/// What the tunnel should reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTo {
    /// A name (or address literal) the proxy resolves.
    Name(String, u16),
    /// An address resolved here.
    Addr(SocketAddr),
}

/// The longest proxy answer header kept while waiting for its end.
const MAX_REPLY: usize = 16 * 1024;

/// The proxy's side of the conversation so far.
#[derive(Debug)]
pub struct ProxyHandshake {
    stage: Stage,
    buf: Vec<u8>,
    /// SOCKS: sent after the method is chosen (and auth passed).
    request: Vec<u8>,
    /// SOCKS: the RFC 1929 message, if credentials are configured.
    auth: Option<Vec<u8>>,
    has_credentials: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    HttpReply,
    SocksMethod,
    SocksAuth,
    SocksReply,
}

/// Why the tunnel could not be made, for the `proxy` failure's detail.
pub type ProxyError = String;

impl ProxyHandshake {
    /// Starts the conversation: its first bytes go to `out`.
    pub fn start(
        proxy: &ProxySpec,
        to: &TunnelTo,
        secrets: &SecretFiles,
        out: &mut OutBuf,
    ) -> Result<ProxyHandshake, ProxyError> {
        let creds = proxy
            .auth
            .as_ref()
            .map(|a| (secrets.expand(&a.user), secrets.expand(&a.password)));
        match proxy.kind {
            ProxyKind::Http => {
                let authority = match to {
                    TunnelTo::Name(host, port) if host.contains(':') => format!("[{host}]:{port}"),
                    TunnelTo::Name(host, port) => format!("{host}:{port}"),
                    TunnelTo::Addr(addr) => addr.to_string(),
                };
                out.extend_from_slice(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").as_bytes());
                if let Some((user, password)) = creds {
                    let token = base64_encode(format!("{user}:{password}").as_bytes());
                    out.extend_from_slice(format!("Proxy-Authorization: Basic {token}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                Ok(ProxyHandshake {
                    stage: Stage::HttpReply,
                    buf: Vec::new(),
                    request: Vec::new(),
                    auth: None,
                    has_credentials: proxy.auth.is_some(),
                })
            }
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                let auth = creds.map(|(user, password)| socks_auth(&user, &password)).transpose()?;
                // Offer username/password only when we have them.
                out.extend_from_slice(if auth.is_some() { &[5, 1, 2] } else { &[5, 1, 0] });
                Ok(ProxyHandshake {
                    stage: Stage::SocksMethod,
                    buf: Vec::new(),
                    request: socks_request(to)?,
                    auth,
                    has_credentials: proxy.auth.is_some(),
                })
            }
        }
    }

    /// Takes the proxy's bytes. `Ok(Some(rest))` when the tunnel is up
    /// (`rest`: the target's bytes that came with the answer); `Ok(None)`
    /// while more is needed (anything to send goes to `out`).
    pub fn input(&mut self, bytes: &[u8], out: &mut OutBuf) -> Result<Option<Vec<u8>>, ProxyError> {
        self.buf.extend_from_slice(bytes);
        loop {
            let progress = match self.stage {
                Stage::HttpReply => self.http_reply()?,
                Stage::SocksMethod => self.socks_method(out)?,
                Stage::SocksAuth => self.socks_auth_reply(out)?,
                Stage::SocksReply => self.socks_reply()?,
            };
            match progress {
                Progress::NeedMore => {
                    if self.buf.len() > MAX_REPLY {
                        return Err(format!("answer longer than {MAX_REPLY} bytes without ending"));
                    }
                    return Ok(None);
                }
                Progress::Next(used) => {
                    self.buf.drain(..used);
                }
                Progress::Up(used) => {
                    self.buf.drain(..used);
                    return Ok(Some(std::mem::take(&mut self.buf)));
                }
            }
        }
    }

    fn http_reply(&mut self) -> Result<Progress, ProxyError> {
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(Progress::NeedMore);
        };
        let head = &self.buf[..end];
        let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
        let status_line = printable(status_line);
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or_default();
        let code = parts.next().and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(200..=299) if version.starts_with("HTTP/1.") => Ok(Progress::Up(end + 4)),
            Some(407) if !self.has_credentials => Err(format!(
                "answered CONNECT with {status_line:?} (no proxy credentials configured)"
            )),
            Some(_) if version.starts_with("HTTP/") => Err(format!("answered CONNECT with {status_line:?}")),
            _ => Err(format!("answered CONNECT with something not HTTP: {status_line:?}")),
        }
    }

    fn socks_method(&mut self, out: &mut OutBuf) -> Result<Progress, ProxyError> {
        let [version, method, ..] = self.buf[..] else {
            return Ok(Progress::NeedMore);
        };
        if version != 5 {
            return Err(format!("not a SOCKS5 proxy (answered version {version})"));
        }
        match (method, self.auth.take()) {
            (0, _) => {
                out.extend_from_slice(&self.request);
                self.stage = Stage::SocksReply;
            }
            (2, Some(auth)) => {
                out.extend_from_slice(&auth);
                self.stage = Stage::SocksAuth;
            }
            (0xff, _) if !self.has_credentials => {
                return Err("SOCKS5 proxy requires authentication (no proxy credentials configured)".into())
            }
            (0xff, _) => return Err("SOCKS5 proxy accepts no username/password authentication".into()),
            (m, _) => return Err(format!("SOCKS5 proxy chose method {m}, which was not offered")),
        }
        Ok(Progress::Next(2))
    }

    fn socks_auth_reply(&mut self, out: &mut OutBuf) -> Result<Progress, ProxyError> {
        let [_, status, ..] = self.buf[..] else {
            return Ok(Progress::NeedMore);
        };
        if status != 0 {
            return Err(format!("SOCKS5 proxy rejected the credentials (status {status})"));
        }
        out.extend_from_slice(&self.request);
        self.stage = Stage::SocksReply;
        Ok(Progress::Next(2))
    }

    fn socks_reply(&mut self) -> Result<Progress, ProxyError> {
        let [version, reply, _, atyp, ..] = self.buf[..] else {
            return Ok(Progress::NeedMore);
        };
        if version != 5 {
            return Err(format!("not a SOCKS5 answer (version {version})"));
        }
        if reply != 0 {
            return Err(format!("SOCKS5 proxy replied {reply} ({})", socks_reply_text(reply)));
        }
        let addr_len = match atyp {
            1 => 4,
            4 => 16,
            3 => match self.buf.get(4) {
                Some(&n) => 1 + usize::from(n),
                None => return Ok(Progress::NeedMore),
            },
            other => return Err(format!("SOCKS5 answer with unknown address type {other}")),
        };
        let len = 4 + addr_len + 2;
        if self.buf.len() < len {
            return Ok(Progress::NeedMore);
        }
        Ok(Progress::Up(len))
    }
}

enum Progress {
    NeedMore,
    /// This many bytes were one step's answer; read on.
    Next(usize),
    /// This many bytes ended the conversation: the tunnel is up.
    Up(usize),
}

/// RFC 1929: version 1, then length-prefixed user and password.
fn socks_auth(user: &str, password: &str) -> Result<Vec<u8>, ProxyError> {
    let (u, p) = (user.as_bytes(), password.as_bytes());
    if u.is_empty() || u.len() > 255 || p.len() > 255 {
        return Err("SOCKS5 user name must be 1 to 255 bytes and the password at most 255".into());
    }
    let mut msg = vec![1, u.len() as u8];
    msg.extend_from_slice(u);
    msg.push(p.len() as u8);
    msg.extend_from_slice(p);
    Ok(msg)
}

/// `CONNECT` to a name (the proxy resolves it) or an address.
fn socks_request(to: &TunnelTo) -> Result<Vec<u8>, ProxyError> {
    let mut msg = vec![5, 1, 0];
    let port = match to {
        TunnelTo::Addr(SocketAddr::V4(a)) => {
            msg.push(1);
            msg.extend_from_slice(&a.ip().octets());
            a.port()
        }
        TunnelTo::Addr(SocketAddr::V6(a)) => {
            msg.push(4);
            msg.extend_from_slice(&a.ip().octets());
            a.port()
        }
        TunnelTo::Name(host, port) => {
            match host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => {
                    msg.push(1);
                    msg.extend_from_slice(&ip.octets());
                }
                Ok(std::net::IpAddr::V6(ip)) => {
                    msg.push(4);
                    msg.extend_from_slice(&ip.octets());
                }
                Err(_) => {
                    let name = host.as_bytes();
                    if name.is_empty() || name.len() > 255 {
                        return Err(format!("host name {host:?} is too long for SOCKS5"));
                    }
                    msg.push(3);
                    msg.push(name.len() as u8);
                    msg.extend_from_slice(name);
                }
            }
            *port
        }
    };
    msg.extend_from_slice(&port.to_be_bytes());
    Ok(msg)
}

/// RFC 1928 section 6.
fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned",
    }
}

/// The proxy's words for a log line: printable ASCII, at most 200 chars.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(200)
        .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '?' })
        .collect::<String>()
        .trim()
        .to_string()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(kind: ProxyKind, auth: Option<(&str, &str)>) -> ProxySpec {
        ProxySpec {
            kind,
            host: "proxy.test".into(),
            port: 3128,
            auth: auth.map(|(u, p)| ProxyAuth {
                user: u.into(),
                password: p.into(),
            }),
        }
    }

    fn start(p: &ProxySpec, to: TunnelTo) -> (ProxyHandshake, Vec<u8>) {
        let mut out = OutBuf::new();
        let hs = ProxyHandshake::start(p, &to, &SecretFiles::EMPTY, &mut out).unwrap();
        (hs, out.into_vec())
    }

    #[test]
    fn http_connect_carries_basic_auth_and_passes_on_what_follows_the_answer() {
        let p = proxy(ProxyKind::Http, Some(("al", "s3cret")));
        let (mut hs, out) = start(&p, TunnelTo::Name("example.test".into(), 443));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\
             Proxy-Authorization: Basic YWw6czNjcmV0\r\n\r\n"
        );
        let mut out = OutBuf::new();
        assert_eq!(hs.input(b"HTTP/1.1 200 Connection established\r\n", &mut out), Ok(None));
        assert_eq!(hs.input(b"\r\nbanner", &mut out), Ok(Some(b"banner".to_vec())));
        assert!(out.is_empty());
        let (_, v6) = start(&p, TunnelTo::Name("::1".into(), 80));
        assert!(String::from_utf8(v6)
            .unwrap()
            .starts_with("CONNECT [::1]:80 HTTP/1.1\r\n"));
    }

    #[test]
    fn http_refusals_quote_the_status_line() {
        let (mut hs, _) = start(&proxy(ProxyKind::Http, None), TunnelTo::Name("h".into(), 1));
        let err = hs
            .input(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nX: y\r\n\r\n",
                &mut OutBuf::new(),
            )
            .unwrap_err();
        assert!(err.contains("\"HTTP/1.1 407 Proxy Authentication Required\""), "{err}");
        assert!(err.contains("no proxy credentials"), "{err}");
        let (mut hs, _) = start(&proxy(ProxyKind::Http, None), TunnelTo::Name("h".into(), 1));
        let err = hs
            .input(b"HTTP/1.0 403 Access violation\r\n\r\n", &mut OutBuf::new())
            .unwrap_err();
        assert_eq!(err, "answered CONNECT with \"HTTP/1.0 403 Access violation\"");
        let (mut hs, _) = start(&proxy(ProxyKind::Http, None), TunnelTo::Name("h".into(), 1));
        let err = hs.input(b"\x05\x00garbage\r\n\r\n", &mut OutBuf::new()).unwrap_err();
        assert!(err.contains("not HTTP"), "{err}");
        let (mut hs, _) = start(&proxy(ProxyKind::Http, None), TunnelTo::Name("h".into(), 1));
        let err = hs.input(&vec![b'a'; MAX_REPLY + 1], &mut OutBuf::new()).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn socks5_with_credentials_authenticates_then_connects_to_a_name() {
        let p = proxy(ProxyKind::Socks5h, Some(("u", "pw")));
        let (mut hs, out) = start(&p, TunnelTo::Name("ws.test".into(), 8080));
        assert_eq!(out, [5, 1, 2]);
        let mut out = OutBuf::new();
        assert_eq!(hs.input(&[5], &mut out), Ok(None));
        assert_eq!(hs.input(&[2], &mut out), Ok(None));
        assert_eq!(out[..], [1, 1, b'u', 2, b'p', b'w']);
        out.clear();
        assert_eq!(hs.input(&[1, 0], &mut out), Ok(None));
        assert_eq!(
            out[..],
            [5, 1, 0, 3, 7, b'w', b's', b'.', b't', b'e', b's', b't', 0x1f, 0x90]
        );
        // Bound address: a domain of 3 bytes, split across reads.
        assert_eq!(hs.input(&[5, 0, 0, 3, 3, b'a'], &mut OutBuf::new()), Ok(None));
        assert_eq!(
            hs.input(&[b'b', b'c', 0, 1, 0xAA], &mut OutBuf::new()),
            Ok(Some(vec![0xAA]))
        );
    }

    #[test]
    fn socks5_connects_to_an_address_and_reports_reply_codes() {
        let p = proxy(ProxyKind::Socks5, None);
        let to = TunnelTo::Addr("127.0.0.2:9".parse().unwrap());
        let (mut hs, out) = start(&p, to.clone());
        assert_eq!(out, [5, 1, 0]);
        let mut out = OutBuf::new();
        assert_eq!(hs.input(&[5, 0], &mut out), Ok(None));
        assert_eq!(out[..], [5, 1, 0, 1, 127, 0, 0, 2, 0, 9]);
        let err = hs
            .input(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0], &mut OutBuf::new())
            .unwrap_err();
        assert_eq!(err, "SOCKS5 proxy replied 5 (connection refused)");

        let (mut hs, _) = start(&p, to.clone());
        let err = hs.input(&[5, 0xff], &mut OutBuf::new()).unwrap_err();
        assert!(err.contains("requires authentication"), "{err}");
        let (mut hs, _) = start(&p, to);
        let err = hs
            .input(b"HTTP/1.1 400 Bad Request\r\n", &mut OutBuf::new())
            .unwrap_err();
        assert!(err.contains("not a SOCKS5 proxy"), "{err}");
        let (mut hs, _) = start(
            &proxy(ProxyKind::Socks5, Some(("u", "bad"))),
            TunnelTo::Name("h".into(), 1),
        );
        hs.input(&[5, 2], &mut OutBuf::new()).unwrap();
        let err = hs.input(&[1, 1], &mut OutBuf::new()).unwrap_err();
        assert!(err.contains("rejected the credentials"), "{err}");
    }

    #[test]
    fn credentials_never_show_in_display_or_debug() {
        let p = proxy(ProxyKind::Http, Some(("alice", "hunter2")));
        let shown = format!("{p} {p:?}");
        assert!(!shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("http://***@proxy.test:3128"), "{shown}");
        let other = proxy(ProxyKind::Http, Some(("alice", "hunter3")));
        assert_ne!(
            format!("{p:?}"),
            format!("{other:?}"),
            "a new password must change the fingerprint"
        );
    }

    #[test]
    fn secret_files_fill_in_credentials_at_every_attempt() {
        let p = proxy(ProxyKind::Http, Some(("bot", "${file:/run/pw}")));
        let files = SecretFiles::new(vec![("/run/pw".into(), "rotated\n".into())]);
        let mut out = OutBuf::new();
        ProxyHandshake::start(&p, &TunnelTo::Name("h".into(), 1), &files, &mut out).unwrap();
        let expected = base64_encode(b"bot:rotated");
        assert!(String::from_utf8(out.into_vec()).unwrap().contains(&expected));
    }
}
