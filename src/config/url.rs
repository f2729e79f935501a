//! Target URLs: `ws://`, `wss://` and `tcp://host:port`, split into what a
//! session needs, or the reason they cannot name a target.

use std::fmt;

use crate::session::spec::Scheme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// `Host:` header value (host, plus port when not the scheme default).
    pub host_header: String,
    /// Path and query, as the request line carries them.
    pub path: String,
}

/// Why a URL names no target; each says it with the URL in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    Invalid { url: String, reason: String },
    UnsupportedScheme { url: String, scheme: String },
    NoHost(String),
    Credentials(String),
    PortZero(String),
    TcpWithoutPort(String),
    TcpWithPath(String),
    Fragment(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Invalid { url, reason } => write!(f, "{url:?} is not a valid URL: {reason}"),
            UrlError::UnsupportedScheme { url, scheme } => {
                write!(
                    f,
                    "unsupported scheme {scheme:?} in {url:?} (use ws://, wss:// or tcp://)"
                )
            }
            UrlError::NoHost(url) => write!(f, "{url:?} has no host"),
            UrlError::Credentials(url) => write!(f, "{url:?}: put credentials in headers, not in the URL"),
            UrlError::PortZero(url) => write!(f, "{url:?}: port 0 is not connectable"),
            UrlError::TcpWithoutPort(url) => write!(f, "{url:?}: tcp:// targets need a port"),
            UrlError::TcpWithPath(url) => write!(f, "{url:?}: tcp:// targets take no path"),
            UrlError::Fragment(url) => write!(f, "{url:?}: URL fragments are not allowed in WebSocket URLs"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses `ws://`, `wss://` and `tcp://host:port` URLs.
pub fn parse_target_url(text: &str) -> Result<ParsedUrl, UrlError> {
    let owned = || text.to_string();
    let url = url::Url::parse(text).map_err(|e| UrlError::Invalid {
        url: owned(),
        reason: e.to_string(),
    })?;
    let scheme = Scheme::from_label(url.scheme()).ok_or_else(|| UrlError::UnsupportedScheme {
        url: owned(),
        scheme: url.scheme().to_string(),
    })?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(UrlError::NoHost(owned())),
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials(owned()));
    }
    let default_port = match scheme {
        Scheme::Ws => Some(80),
        Scheme::Wss => Some(443),
        Scheme::Tcp => None,
    };
    let port = match url.port().or(default_port) {
        Some(p) if p != 0 => p,
        Some(_) => return Err(UrlError::PortZero(owned())),
        None => return Err(UrlError::TcpWithoutPort(owned())),
    };
    if scheme == Scheme::Tcp && !(url.path().is_empty() || url.path() == "/") {
        return Err(UrlError::TcpWithPath(owned()));
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment(owned()));
    }
    let host_for_header = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.clone(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host_for_header}:{p}"),
        None => host_for_header,
    };
    let mut path = if url.path().is_empty() {
        "/".to_string()
    } else {
        url.path().to_string()
    };
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(ParsedUrl {
        scheme,
        host,
        port,
        host_header,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_explained() {
        for (url, needle) in [
            ("ftp://x/", "unsupported scheme"),
            ("ws://", "not a valid URL"),
            ("tcp://h", "need a port"),
            ("tcp://h:1/path", "no path"),
            ("ws://u:p@h/", "credentials"),
            ("ws://h:0/", "port 0"),
            ("ws://h/#frag", "fragments"),
            ("not a url", "not a valid URL"),
        ] {
            let err = parse_target_url(url).expect_err(url).to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
