//! The `proxy` setting: a proxy URL (`http://`, `socks5://`, `socks5h://`,
//! credentials optional), `env` to follow the proxy environment variables
//! as curl does, or `off`.

use std::net::IpAddr;

use super::walker::{join, Walker};
use crate::session::proxy::{ProxyAuth, ProxyKind, ProxySpec};
use crate::session::spec::Scheme;

/// As configured in `[defaults]` or on a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum ProxySetting {
    #[default]
    Off,
    /// Decided per target from `https_proxy`, `http_proxy`, `all_proxy`
    /// and `no_proxy` (either case).
    Env,
    Fixed(ProxySpec),
}

/// curl's default port when a proxy URL names none.
const DEFAULT_PORT: u16 = 1080;

/// Reads `value` (from `field`): `${VAR}` expanded now, `${file:PATH}` in
/// the credentials kept for every attempt.
pub(super) fn read_setting(w: &mut Walker<'_>, field: &str, value: &str) -> Option<ProxySetting> {
    match value {
        "off" | "" => Some(ProxySetting::Off),
        "env" => Some(ProxySetting::Env),
        _ => {
            let expanded = w.expand_env(field, value);
            match parse_url(&expanded) {
                Ok(spec) => Some(ProxySetting::Fixed(spec)),
                Err(e) => {
                    w.problem(field, e);
                    None
                }
            }
        }
    }
}

/// The `proxy` key of a table, if set.
pub(super) fn read(w: &mut Walker<'_>, table: &toml::Table, path: &str) -> Option<ProxySetting> {
    let value = w.str(table, path, "proxy")?;
    read_setting(w, &join(path, "proxy"), value)
}

/// `scheme://[user[:password]@]host[:port][/]`. Parsed by hand rather than
/// with `url`, which would percent-encode the braces of `${file:PATH}`.
pub(super) fn parse_url(text: &str) -> Result<ProxySpec, String> {
    let shown = redact(text);
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!(
            "{shown:?} is not a proxy URL (http://, socks5:// or socks5h://host:port, or \"env\" or \"off\")"
        ));
    };
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "http" => ProxyKind::Http,
        "socks5" => ProxyKind::Socks5,
        "socks5h" => ProxyKind::Socks5h,
        "https" => {
            return Err(format!(
                "{shown:?}: TLS to the proxy (https://) is not supported; use http://"
            ))
        }
        other => {
            return Err(format!(
                "{shown:?}: unsupported proxy scheme {other:?} (http, socks5, socks5h)"
            ))
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if hostport.contains(['/', '?', '#']) {
        return Err(format!("{shown:?}: a proxy URL has no path"));
    }
    let (host, port) = split_host_port(hostport).ok_or_else(|| format!("{shown:?}: bad host or port"))?;
    if host.is_empty() {
        return Err(format!("{shown:?} has no host"));
    }
    let auth = userinfo.map(|u| {
        let (user, password) = u.split_once(':').unwrap_or((u, ""));
        ProxyAuth {
            user: percent_decode(user),
            password: percent_decode(password),
        }
    });
    if auth.as_ref().is_some_and(|a| a.user.is_empty()) {
        return Err(format!("{shown:?}: empty proxy user name"));
    }
    Ok(ProxySpec {
        kind,
        host,
        port: port.unwrap_or(DEFAULT_PORT),
        auth,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host.to_string(), port))
}

/// The URL without its password, for error messages.
fn redact(text: &str) -> String {
    match (text.split_once("://"), text.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://***@{host}")
        }
        _ => text.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The proxy curl would use for `scheme://host`: `https_proxy` for wss,
/// `http_proxy` for ws (lower case first; curl reads only the lower-case
/// `http_proxy`, other tools the upper-case one too), then `all_proxy`,
/// unless `no_proxy` names the host. `Err` names the variable whose value
/// is not a proxy URL.
pub(super) fn from_env(
    env: &dyn Fn(&str) -> Option<String>,
    scheme: Scheme,
    host: &str,
) -> Result<Option<ProxySpec>, String> {
    let get = |name: &str| {
        [name.to_ascii_lowercase(), name.to_string()]
            .into_iter()
            .find_map(|n| env(&n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
    };
    if get("NO_PROXY").is_some_and(|(_, list)| no_proxy_matches(&list, host)) {
        return Ok(None);
    }
    let specific = match scheme {
        Scheme::Wss => get("HTTPS_PROXY"),
        Scheme::Ws => get("HTTP_PROXY"),
        Scheme::Tcp => None,
    };
    let Some((name, value)) = specific.or_else(|| get("ALL_PROXY")) else {
        return Ok(None);
    };
    // curl takes a bare host:port as an HTTP proxy.
    let value = if value.contains("://") {
        value
    } else {
        format!("http://{value}")
    };
    parse_url(value.trim()).map(Some).map_err(|e| format!("{name}: {e}"))
}

/// curl's `NO_PROXY`: comma-separated names (each also matching its
/// subdomains, a leading dot ignored), IP addresses, CIDR ranges, or `*`.
pub(super) fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches('[').trim_end_matches(']');
        if let Some(ip) = host_ip {
            return match entry.split_once('/') {
                Some((net, bits)) => in_cidr(ip, net, bits),
                None => entry.parse::<IpAddr>().is_ok_and(|e| e == ip),
            };
        }
        let entry = entry.trim_start_matches('.').to_ascii_lowercase();
        host == entry || host.ends_with(&format!(".{entry}"))
    })
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_defaults_credentials_and_ipv6() {
        let p = parse_url("http://proxy.corp:3128").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port, p.auth.is_none()),
            (ProxyKind::Http, "proxy.corp", 3128, true)
        );
        let p = parse_url("socks5h://al%40x:p%3Ass@[::1]:1081/").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (ProxyKind::Socks5h, "::1", 1081));
        let auth = p.auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.password.as_str()), ("al@x", "p:ss"));
        assert_eq!(parse_url("socks5://10.0.0.1").unwrap().port, 1080);
        let p = parse_url("http://bot:${file:/run/pw}@h:8080").unwrap();
        assert_eq!(p.auth.unwrap().password, "${file:/run/pw}");
    }

    #[test]
    fn bad_proxy_urls_are_explained_without_their_password() {
        for (url, needle) in [
            ("proxy.corp:3128", "not a proxy URL"),
            ("https://h:1", "not supported"),
            ("ftp://h:1", "unsupported proxy scheme"),
            ("http://h:99999", "bad host or port"),
            ("http://h:0", "bad host or port"),
            ("http://:8080", "no host"),
            ("http://h:1/path", "no path"),
            ("http://:secret@h:1", "empty proxy user name"),
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn env_follows_the_scheme_then_all_proxy_unless_no_proxy_names_the_host() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let env = vars(&[
            ("HTTPS_PROXY", "http://tls-proxy:3128"),
            ("http_proxy", "plain-proxy:8080"),
            ("ALL_PROXY", "socks5h://socks:1080"),
            ("no_proxy", "internal.corp, .local,10.0.0.0/8,::1"),
        ]);
        let host_of = |scheme, host| from_env(&env, scheme, host).unwrap().map(|p| p.to_string());
        assert_eq!(
            host_of(Scheme::Wss, "example.com"),
            Some("http://tls-proxy:3128".into())
        );
        assert_eq!(
            host_of(Scheme::Ws, "example.com"),
            Some("http://plain-proxy:8080".into())
        );
        assert_eq!(host_of(Scheme::Tcp, "example.com"), Some("socks5h://socks:1080".into()));
        for direct in ["api.internal.corp", "internal.corp", "printer.local", "10.1.2.3", "::1"] {
            assert_eq!(host_of(Scheme::Wss, direct), None, "{direct}");
        }
        assert_eq!(
            host_of(Scheme::Wss, "notinternal.corp"),
            Some("http://tls-proxy:3128".into())
        );
        assert_eq!(host_of(Scheme::Wss, "11.0.0.1"), Some("http://tls-proxy:3128".into()));
        let none = vars(&[]);
        assert_eq!(from_env(&none, Scheme::Ws, "h").unwrap(), None);
        let star = vars(&[("ALL_PROXY", "socks5://s:1"), ("NO_PROXY", "*")]);
        assert_eq!(from_env(&star, Scheme::Ws, "h").unwrap(), None);
        let bad = vars(&[("HTTPS_PROXY", "ftp://x")]);
        assert!(from_env(&bad, Scheme::Wss, "h")
            .unwrap_err()
            .starts_with("HTTPS_PROXY: "));
    }
}
