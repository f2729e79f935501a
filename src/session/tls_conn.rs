//! One connection's TLS on rustls's unbuffered API: the caller owns every
//! buffer, so an idle session holds no TLS buffer at all (the buffered
//! `ClientConnection` keeps a read buffer of at least 4 KiB per
//! connection, more than the rest of a session). Received ciphertext is
//! decrypted in a scratch buffer shared by the thread; only a record cut
//! by a read is kept until the rest arrives.

use std::cell::RefCell;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use super::conn::OutBuf;

/// What a read held besides plaintext.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The peer sent close_notify: no more data will come.
    pub peer_closed: bool,
}

pub struct TlsConn {
    conn: UnbufferedClientConnection,
    /// Ciphertext of a record cut by a read (usually empty).
    partial: Vec<u8>,
}

thread_local! {
    /// Where received ciphertext is decrypted (rustls decrypts in place).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl TlsConn {
    /// A client connection to `name`; its ClientHello goes into `out`.
    pub fn start(
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        out: &mut OutBuf,
    ) -> Result<TlsConn, rustls::Error> {
        let mut tls = TlsConn {
            conn: UnbufferedClientConnection::new(config, name)?,
            partial: Vec::new(),
        };
        tls.process(&mut [], &mut Vec::new(), out)?;
        Ok(tls)
    }

    /// Ciphertext from the peer: plaintext is appended to `plain`,
    /// handshake records and alerts to send to `out`.
    pub fn receive(&mut self, bytes: &[u8], plain: &mut Vec<u8>, out: &mut OutBuf) -> Result<Received, rustls::Error> {
        if !self.partial.is_empty() {
            // The rest of a cut record: complete it in its own buffer.
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(bytes);
            let (used, received) = self.process(&mut buf, plain, out)?;
            buf.drain(..used);
            if !buf.is_empty() {
                self.partial = buf;
            }
            return Ok(received);
        }
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.extend_from_slice(bytes);
            let (used, received) = self.process(&mut buf, plain, out)?;
            if used < buf.len() {
                self.partial = buf[used..].to_vec();
            }
            Ok(received)
        })
    }

    /// Encrypts application data into `out`; false before the handshake
    /// is done or after the connection closed.
    pub fn send(&mut self, plain: &[u8], out: &mut OutBuf) -> bool {
        // rustls expects what it has not used up of a cut record at the
        // front of every buffer it is given.
        let mut partial = std::mem::take(&mut self.partial);
        let sent = loop {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut partial);
            match state {
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    break append(out, plain.len() + 64, |buf| write.encrypt(plain, buf)).is_ok();
                }
                // A key update or other record rustls owes the peer first.
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Err(Unwritten::Failed(_)) = append(out, 1024, |b| encode.encode(b)) {
                        break false;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => break false,
            }
        };
        self.partial = partial;
        sent
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    pub fn peer_leaf_certificate(&self) -> Option<&[u8]> {
        self.conn.peer_certificates()?.first().map(|c| c.as_ref())
    }

    /// Drives rustls over `buf` until it needs more bytes; returns how many
    /// of them it used up.
    fn process(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut OutBuf,
    ) -> Result<(usize, Received), rustls::Error> {
        let mut used = 0;
        let mut received = Received::default();
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(&mut buf[used..]);
            match state? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => match append(out, 1024, |b| encode.encode(b)) {
                    Ok(()) | Err(Unwritten::AlreadyEncoded) => {}
                    Err(Unwritten::Failed(e)) => return Err(e),
                },
                // Handshake records are in `out`, which the driver sends.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => received.peer_closed = true,
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) | ConnectionState::Closed => {
                    used += discard;
                    return Ok((used, received));
                }
                // Early data is a server's; anything newer: stop here.
                _ => {
                    used += discard;
                    return Ok((used, received));
                }
            }
            used += discard;
        }
    }
}

/// Why `append` wrote nothing.
enum Unwritten {
    AlreadyEncoded,
    Failed(rustls::Error),
}

/// Runs an encoder that writes into a slice, on the end of `out`, growing
/// it until the encoder has room.
fn append<E: IntoUnwritten>(
    out: &mut OutBuf,
    first_guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<(), Unwritten> {
    let start = out.len();
    let mut room = first_guess;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]).map_err(IntoUnwritten::into_unwritten) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Ok(required)) if required > room => room = required,
            Err(Ok(_)) => room *= 2,
            Err(Err(e)) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

/// The encoders' errors: "give me this much room", or a real failure.
trait IntoUnwritten {
    fn into_unwritten(self) -> Result<usize, Unwritten>;
}

impl IntoUnwritten for EncodeError {
    fn into_unwritten(self) -> Result<usize, Unwritten> {
        match self {
            EncodeError::InsufficientSize(s) => Ok(s.required_size),
            EncodeError::AlreadyEncoded => Err(Unwritten::AlreadyEncoded),
        }
    }
}

impl IntoUnwritten for EncryptError {
    fn into_unwritten(self) -> Result<usize, Unwritten> {
        match self {
            EncryptError::InsufficientSize(s) => Ok(s.required_size),
            _ => Err(Unwritten::Failed(rustls::Error::General(self.to_string()))),
        }
    }
}
