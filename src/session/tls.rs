//! TLS inside the core: rustls's `ClientConnection` is sans-IO too, so
//! ciphertext goes in, plaintext and records to send come out, here.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use super::{DisconnectReason, FailureReason, Outbox, Phase, Session, SessionEvent, Step};

impl Session {
    /// Starts the TLS handshake of a wss:// connection.
    pub(super) fn start_tls(&mut self) -> Result<(), Step> {
        let (Some(tls), Some(conn)) = (&self.spec.tls, self.conn.as_mut()) else {
            return Ok(());
        };
        let client = rustls::ClientConnection::new(Arc::clone(&tls.config), tls.server_name.clone())
            .map_err(|e| Step::Fail(FailureReason::Tls, e.to_string()))?;
        conn.io.wire.tls = Some(Box::new(client));
        conn.io.wire.flush_tls();
        Ok(())
    }

    /// Runs received bytes through TLS when it is on; returns the plaintext.
    /// When the TLS handshake completes, reports the certificate's expiry
    /// and sends the WebSocket upgrade.
    pub(super) fn decrypt<'b>(
        &mut self,
        bytes: &'b [u8],
        now: Instant,
        out: &mut Outbox,
    ) -> Result<Cow<'b, [u8]>, Step> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Cow::Borrowed(&[]));
        };
        let wire = &mut conn.io.wire;
        let Some(tls) = wire.tls.as_mut() else {
            return Ok(Cow::Borrowed(bytes));
        };
        let mut rest = bytes;
        let mut plain = Vec::new();
        let mut peer_closed = false;
        while !rest.is_empty() {
            if let Err(e) = tls.read_tls(&mut rest) {
                return Err(tls_step(self.phase, e.to_string()));
            }
            if let Err(e) = tls.process_new_packets() {
                // Send the alert rustls queued, then give up on the session.
                let _ = tls.write_tls(&mut wire.out);
                return Err(tls_step(self.phase, e.to_string()));
            }
            let mut chunk = [0u8; 4096];
            loop {
                match tls.reader().read(&mut chunk) {
                    Ok(0) => {
                        peer_closed = true;
                        break;
                    }
                    Ok(n) => plain.extend_from_slice(&chunk[..n]),
                    Err(_) => break, // WouldBlock: no more plaintext for now
                }
            }
        }
        let tls_just_done = conn.tls_done_at.is_none() && !tls.is_handshaking();
        if tls_just_done {
            conn.tls_done_at = Some(now);
            if let Some(not_after_unix) = tls
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| cert_not_after(der.as_ref()))
            {
                out.events.push(SessionEvent::CertExpiry { not_after_unix });
            }
        }
        wire.flush_tls();
        if tls_just_done {
            self.send_upgrade_request();
        }
        if peer_closed && plain.is_empty() {
            return Err(match self.phase {
                Phase::Handshaking => {
                    Step::Fail(FailureReason::HandshakeEof, "TLS close_notify during handshake".into())
                }
                _ => Step::Drop(DisconnectReason::Eof, "TLS close_notify".into(), None),
            });
        }
        Ok(Cow::Owned(plain))
    }
}

/// A TLS error fails the attempt during the handshake and ends an open
/// session as a protocol error.
fn tls_step(phase: Phase, detail: String) -> Step {
    if phase == Phase::Handshaking {
        Step::Fail(FailureReason::Tls, detail)
    } else {
        Step::Drop(DisconnectReason::ProtocolError, format!("TLS: {detail}"), None)
    }
}

fn cert_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}
