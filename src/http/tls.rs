//! TLS for the HTTP endpoint (`--web.config.file`): a rustls server
//! configuration whose certificate is re-read when its files change (as
//! the exporter-toolkit does, so a renewed certificate needs no restart),
//! optional client-certificate verification, and the byte stream every
//! connection speaks, plain or TLS, without blocking.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mio::net::TcpStream;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::clock::Instant;
use crate::config::tls::{provider, read_certs, read_key, roots_from, TlsError};
use crate::config::web_file::{ClientAuth, TlsServer};

/// How often the certificate files' modification times are looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A connection's bytes: plain, or through TLS.
pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Transport {
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &mut s.sock,
        }
    }

    pub fn shutdown_write(&mut self) {
        if let Transport::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => match s.read(buf) {
                // A client that goes without close_notify has still gone.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    /// Plain: nothing is buffered. TLS: writes out the records rustls
    /// holds; `WouldBlock` until they are all on the socket.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// The server configuration of `tls`; fails at start on files that do not
/// hold a usable certificate, key or CA.
pub fn server_config(tls: &TlsServer) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = ReloadingCert::new(&tls.cert_file, &tls.key_file)?;
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(TlsError::Rustls)?;
    let builder = match (&tls.client_ca_file, tls.client_auth) {
        (Some(ca), auth) if auth != ClientAuth::NoClientCert => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots_from(ca)?), provider);
            let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::Certificate {
                what: ca.display().to_string(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate and key, read again when either file changes.
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Certificate {
            what: key_file.display().to_string(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| TlsError::Certificate {
        what: format!("{} and {}", cert_file.display(), key_file.display()),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

impl ReloadingCert {
    fn new(cert_file: &Path, key_file: &Path) -> Result<ReloadingCert, TlsError> {
        let stamps = (modified(cert_file), modified(key_file));
        let key = load(cert_file, key_file)?;
        Ok(ReloadingCert {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            state: Mutex::new(Loaded {
                key,
                stamps,
                checked: Instant::now(),
            }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut s = self.state.lock().ok()?;
        if s.checked.elapsed() >= RELOAD_CHECK {
            s.checked = Instant::now();
            let stamps = (modified(&self.cert_file), modified(&self.key_file));
            // A failed load is tried again at the next check: the files
            // may have been caught half written.
            if stamps != s.stamps {
                match load(&self.cert_file, &self.key_file) {
                    Ok(key) => {
                        s.key = key;
                        s.stamps = stamps;
                        log::info!("web: certificate {} reloaded", self.cert_file.display());
                    }
                    Err(e) => log::warn!("web: keeping the current certificate, the new one does not load: {e}"),
                }
            }
        }
        Some(Arc::clone(&s.key))
    }
}
