//! Building the rustls client configuration of a wss:// target from its
//! `tls` settings: roots, client certificate, server name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::tickets::TicketPool;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// `resumption = false`: every handshake is a full one.
    pub no_resumption: bool,
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// System roots, loaded once per process; the bundled Mozilla roots when
/// the system has none (minimal container images).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(loaded.certs);
        if added == 0 {
            log::info!("no system CA certificates found; using the bundled Mozilla roots");
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        Arc::new(store)
    }))
}

/// Why a target's TLS settings cannot be built.
#[derive(Debug)]
pub enum TlsError {
    ServerName {
        name: String,
        reason: String,
    },
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A PEM file that does not hold what it should.
    Pem {
        path: PathBuf,
        reason: String,
    },
    /// A certificate rustls refused, or a client certificate and key that
    /// do not go together.
    Certificate {
        what: String,
        reason: String,
    },
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::ServerName { name, reason } => write!(f, "{name:?} is not a valid TLS server name: {reason}"),
            TlsError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            TlsError::Pem { path, reason } => write!(f, "{}: {reason}", path.display()),
            TlsError::Certificate { what, reason } => write!(f, "{what}: {reason}"),
            TlsError::Rustls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TlsError {}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn pem_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read_file(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| pem_error(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no PEM certificates found"));
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read_file(path)?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| pem_error(path, format!("bad PEM: {e}")))?
        .ok_or_else(|| pem_error(path, "no private key found"))
}

/// The certificates of a CA file, as trust anchors.
pub(crate) fn roots_from(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(path)? {
        store.add(cert).map_err(|e| TlsError::Certificate {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// A client config and the name to verify for one target holding
/// `sessions` sessions (they share its resumption tickets).
pub fn build(
    opts: &TlsOptions,
    server_name: &str,
    sessions: usize,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| TlsError::ServerName {
        name: server_name.to_string(),
        reason: e.to_string(),
    })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let builder = if opts.insecure_skip_verify {
        log::warn!(
            "TLS certificate verification is DISABLED for {server_name} (insecure_skip_verify = true): \
             this session cannot detect an impostor"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let roots = match &opts.ca_file {
            Some(path) => Arc::new(roots_from(path)?),
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (&opts.client_cert, &opts.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| TlsError::Certificate {
                what: "client certificate".into(),
                reason: e.to_string(),
            })?,
        _ => builder.with_no_client_auth(),
    };
    config.resumption = if opts.no_resumption {
        Resumption::disabled()
    } else {
        Resumption::store(Arc::new(TicketPool::new(sessions)))
    };
    // Offer HTTP/1.1 only: the upgrade does not exist in HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), name))
}

/// Accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
