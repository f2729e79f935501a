//! TLS inside the core: rustls is sans-IO too (`tls_conn`), so ciphertext
//! goes in, plaintext and records to send come out, here.

use std::borrow::Cow;
use std::sync::Arc;

use super::tls_conn::TlsConn;
use super::{DisconnectReason, FailureReason, Outbox, Phase, Session, SessionEvent, Step};
use crate::clock::Instant;

impl Session {
    /// Starts the TLS handshake of a wss:// connection.
    pub(super) fn start_tls(&mut self) -> Result<(), Step> {
        let (Some(tls), Some(conn)) = (&self.spec.tls, self.conn.as_mut()) else {
            return Ok(());
        };
        let client = TlsConn::start(Arc::clone(&tls.config), tls.server_name.clone(), &mut conn.io.wire.out)
            .map_err(|e| Step::Fail(FailureReason::Tls, e.to_string()))?;
        conn.io.wire.tls = Some(Box::new(client));
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
        let mut plain = Vec::new();
        // On an error rustls has queued its alert in `out`: it goes out
        // before the socket closes.
        let received = tls
            .receive(bytes, &mut plain, &mut wire.out)
            .map_err(|e| tls_step(self.phase, e.to_string()))?;
        let tls_just_done = conn.tls_done_at.is_none() && !tls.is_handshaking();
        if tls_just_done {
            conn.tls_done_at = Some(now);
            out.events.push(SessionEvent::TlsHandshake { resumed: tls.resumed() });
            if let Some(not_after_unix) = tls.peer_leaf_certificate().and_then(cert_not_after) {
                out.events.push(SessionEvent::CertExpiry { not_after_unix });
            }
            self.send_upgrade_request();
        }
        if received.peer_closed && plain.is_empty() {
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
