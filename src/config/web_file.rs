//! `--web.config.file`: the Prometheus exporter-toolkit's web configuration
//! (YAML), so a file written for node_exporter or Prometheus works here:
//! TLS with a certificate and key (re-read when they change), client
//! certificates verified against a CA (mTLS), and users with bcrypt
//! password hashes for HTTP basic authentication. Relative paths are
//! relative to the file's folder, as the toolkit reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Problem};

/// What the web configuration asks for; the default is plain HTTP, open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebSecurity {
    pub tls: Option<TlsServer>,
    /// User name → bcrypt hash.
    pub users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsServer {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    /// TLS 1.3 only (`min_version: TLS13`); else 1.2 and 1.3.
    pub tls13_only: bool,
}

/// The toolkit's `client_auth_type` values this agent supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    /// A certificate is checked against `client_ca_file` when given.
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    http_server_config: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility: the agent speaks HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
}

/// Reads and checks the file at `path`: every problem at once, as the
/// main configuration does.
pub fn load(path: &Path) -> Result<WebSecurity, ConfigError> {
    let name = path.display().to_string();
    let fail = |field: &str, message: String| ConfigError {
        source_name: name.clone(),
        problems: vec![Problem {
            field: field.into(),
            message,
        }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail("(file)", format!("cannot read: {e}")))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")), &name)
}

pub fn parse(text: &str, base: &Path, name: &str) -> Result<WebSecurity, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: field.into(),
            message,
        })
    };
    // An empty file is a valid (open, plain) configuration.
    let raw: RawFile = if text.trim().is_empty() {
        RawFile {
            tls_server_config: None,
            basic_auth_users: None,
            http_server_config: None,
        }
    } else {
        match serde_norway::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                return Err(ConfigError {
                    source_name: name.into(),
                    problems: vec![Problem {
                        field: "(yaml)".into(),
                        message: e.to_string(),
                    }],
                })
            }
        }
    };
    let _ = raw.http_server_config;
    let path_of = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let tls = raw.tls_server_config.and_then(|t| {
        let cert_file = t.cert_file.as_deref().map(path_of);
        let key_file = t.key_file.as_deref().map(path_of);
        if cert_file.is_none() {
            problem("tls_server_config.cert_file", "is required".into());
        }
        if key_file.is_none() {
            problem("tls_server_config.key_file", "is required".into());
        }
        let client_auth = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
            "NoClientCert" => ClientAuth::NoClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                problem(
                    "tls_server_config.client_auth_type",
                    format!(
                        "{other:?} is not supported: NoClientCert, VerifyClientCertIfGiven or \
                         RequireAndVerifyClientCert"
                    ),
                );
                ClientAuth::NoClientCert
            }
        };
        let client_ca_file = t.client_ca_file.as_deref().map(path_of);
        if client_auth != ClientAuth::NoClientCert && client_ca_file.is_none() {
            problem(
                "tls_server_config.client_ca_file",
                "is required to verify client certificates".into(),
            );
        }
        let tls13_only = match t.min_version.as_deref() {
            None | Some("TLS12") => false,
            Some("TLS13") => true,
            Some(other) => {
                problem(
                    "tls_server_config.min_version",
                    format!("{other:?}: TLS12 or TLS13 (older versions are not offered)"),
                );
                false
            }
        };
        if let Some(max) = t.max_version.as_deref().filter(|v| *v != "TLS13") {
            problem(
                "tls_server_config.max_version",
                format!("{max:?}: only TLS13 (the default) is supported"),
            );
        }
        Some(TlsServer {
            cert_file: cert_file?,
            key_file: key_file?,
            client_auth,
            client_ca_file,
            tls13_only,
        })
    });
    let users = raw.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        if user.contains(':') || user.is_empty() {
            problem(
                "basic_auth_users",
                format!("{user:?}: a user name must be non-empty, without ':'"),
            );
        }
        if bcrypt_hash_valid(hash).is_err() {
            problem(
                &format!("basic_auth_users.{user}"),
                "is not a bcrypt hash ($2a$, $2b$ or $2y$ and 53 more characters; \
                 make one with `htpasswd -nBC 10 USER`)"
                    .into(),
            );
        }
    }
    if problems.is_empty() {
        Ok(WebSecurity { tls, users })
    } else {
        Err(ConfigError {
            source_name: name.into(),
            problems,
        })
    }
}

fn bcrypt_hash_valid(hash: &str) -> Result<(), ()> {
    // By bytes: a file's text may put a multi-byte character anywhere.
    let b = hash.as_bytes();
    let ok = b.len() == 60
        && ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
        && b[4..6].iter().all(u8::is_ascii_digit)
        && b[6] == b'$'
        && hash.is_ascii();
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W";

    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("/etc/sockpulse"), "web.yml") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_toolkit_file_reads_with_paths_relative_to_its_folder() {
        let text = format!(
            "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: /keys/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n\
             basic_auth_users:\n  prometheus: {HASH}\nhttp_server_config:\n  http2: false\n"
        );
        let w = parse(&text, Path::new("/etc/sockpulse"), "web.yml").unwrap();
        let tls = w.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/sockpulse/tls/server.pem"));
        assert_eq!(tls.key_file, Path::new("/keys/server.key"));
        assert_eq!(tls.client_ca_file.as_deref(), Some(Path::new("/etc/sockpulse/ca.pem")));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert!(tls.tls13_only);
        assert_eq!(w.users["prometheus"], HASH);
        assert_eq!(parse("", Path::new("."), "e").unwrap(), WebSecurity::default());
    }

    #[test]
    fn every_problem_is_named() {
        let p = problems(
            "tls_server_config:\n  client_auth_type: RequestClientCert\n  min_version: TLS10\n\
             basic_auth_users:\n  a: plaintext\n",
        );
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p
            .iter()
            .any(|p| p.starts_with("tls_server_config.cert_file: is required")));
        assert!(p.iter().any(|p| p.contains("\"RequestClientCert\" is not supported")));
        assert!(p.iter().any(|p| p.contains("TLS10")));
        assert!(p
            .iter()
            .any(|p| p.starts_with("basic_auth_users.a: is not a bcrypt hash")));
        // Multi-byte characters where the cost digits go: an error, not a panic.
        let odd = format!("basic_auth_users:\n  a: '$2y$€{}'\n", "a".repeat(53));
        assert_eq!(odd.split('\'').nth(1).map(str::len), Some(60));
        assert_eq!(problems(&odd).len(), 1, "{:?}", problems(&odd));
        let unknown = problems("tls_server_config:\n  cipher_suites: [x]\n");
        assert!(unknown[0].contains("unknown field `cipher_suites`"), "{unknown:?}");
        let mtls = problems(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
        );
        assert!(mtls[0].contains("client_ca_file: is required"), "{mtls:?}");
    }
}
