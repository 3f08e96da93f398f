//! One client's TLS session on the listener, sans-IO: TLS bytes from the socket go in, plaintext
//! comes out for the HTTP parser, plaintext answers go in and TLS records come out for the socket.
//! No socket, no clock: the engine moves the bytes.
//!
//! The ClientHello is read first (rustls `Acceptor`) so that a hello without SNI gets the
//! certificate of the identity the engine knows (CONNECT authority, reverse target, local
//! address); with SNI the worker's [`super::certs::Resolver`] picks it.

use std::sync::Arc;

use rustls::server::{Accepted, Acceptor};
use rustls::ServerConnection;

use super::certs::{Fixed, Identity};
use super::pump;
use super::WorkerTls;

/// Plaintext sealed into one record at most: rustls' record size, so what it queues is always
/// drained before the next piece and its buffer limit is never reached.
pub const RECORD_PLAINTEXT: usize = 16 * 1024;

/// Capacity past which a connection's emptied buffer of sealed records is given back: a large
/// body is sealed whole, and its records' memory should not stay with the connection after it.
pub const RECORDS_KEEP: usize = 64 * 1024;

/// Empties `records` once written, giving back a capacity past [`RECORDS_KEEP`].
pub fn recycle_records(records: &mut Vec<u8>) {
    records.clear();
    if records.capacity() > RECORDS_KEEP {
        *records = Vec::new();
    }
}

/// Why a TLS session failed; the engine logs it (`-v`: peer, SNI, reason), counts it and closes.
#[derive(Debug, thiserror::Error)]
pub enum TlsSessionError {
    /// The peer's TLS was refused (bad record, alert, no common version or cipher, …).
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    /// No certificate could be found or minted for the name the client asked for.
    #[error("no certificate for {0}")]
    NoCertificate(String),
    /// A TLS error after the handshake.
    #[error("TLS error: {0}")]
    Tls(rustls::Error),
    /// The peer closed the TCP connection without close_notify in the middle of a record.
    #[error("the client closed the connection in the middle of a TLS record")]
    Truncated,
}

enum State {
    /// Reading the ClientHello.
    Accepting(Box<Acceptor>),
    /// Handshaking or open.
    Open(Box<ServerConnection>),
    /// Failed: only the alert in `out` is left to send.
    Failed,
}

/// A TLS server session over the engine's buffers.
pub struct TlsSession {
    state: State,
    /// The identity for a ClientHello without SNI.
    fallback: Option<Identity>,
    /// TLS records queued for the socket (alerts written while accepting).
    alert: Vec<u8>,
    /// The client's close_notify has come (and all plaintext before it was read).
    peer_closed: bool,
    /// The SNI of the ClientHello, kept for the log line of a handshake that then fails.
    sni: Option<Box<str>>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session for a connection whose first bytes are TLS; `fallback` names the certificate for
    /// a ClientHello without SNI.
    pub fn new(fallback: Option<Identity>) -> TlsSession {
        TlsSession {
            state: State::Accepting(Box::default()),
            fallback,
            alert: Vec::new(),
            peer_closed: false,
            sni: None,
        }
    }

    /// Feeds TLS bytes read from the socket (an empty slice: the peer's end of stream); the
    /// plaintext they carry is appended to `plain` (more may follow from
    /// [`TlsSession::read_plaintext`]).
    pub fn receive(
        &mut self,
        tls: &WorkerTls,
        input: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), TlsSessionError> {
        let result = self.receive_inner(tls, input, plain);
        if result.is_err() {
            if let State::Open(conn) = &mut self.state {
                // Keep the alert rustls queued.
                pump::drain_tls(conn, &mut self.alert);
            }
            self.state = State::Failed;
        }
        result
    }

    fn receive_inner(
        &mut self,
        tls: &WorkerTls,
        input: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), TlsSessionError> {
        match &mut self.state {
            State::Failed => Ok(()),
            State::Open(conn) => {
                let handshaking = conn.is_handshaking();
                pump::feed(conn, input, plain).map_err(|e| {
                    if handshaking {
                        TlsSessionError::Handshake(e)
                    } else {
                        TlsSessionError::Tls(e)
                    }
                })
            }
            State::Accepting(acceptor) => {
                let mut rest = input;
                while !rest.is_empty() {
                    acceptor.read_tls(&mut rest).map_err(|e| {
                        TlsSessionError::Handshake(rustls::Error::General(e.to_string()))
                    })?;
                    match acceptor.accept() {
                        Ok(None) => {}
                        Ok(Some(accepted)) => {
                            let mut conn = self.open(tls, accepted)?;
                            // Bytes after the hello (an empty feed would mean end of stream).
                            let fed = if rest.is_empty() {
                                Ok(())
                            } else {
                                pump::feed(&mut conn, rest, plain)
                            };
                            self.state = State::Open(Box::new(conn));
                            return fed.map_err(TlsSessionError::Handshake);
                        }
                        Err((e, mut alert)) => {
                            let _ = alert.write_all(&mut self.alert);
                            return Err(TlsSessionError::Handshake(e));
                        }
                    }
                }
                if input.is_empty() {
                    return Err(TlsSessionError::Truncated);
                }
                Ok(())
            }
        }
    }

    /// The connection for an accepted ClientHello: the worker's configuration when it has SNI,
    /// else one answering the fallback identity's certificate.
    fn open(
        &mut self,
        tls: &WorkerTls,
        accepted: Accepted,
    ) -> Result<ServerConnection, TlsSessionError> {
        self.sni = accepted.client_hello().server_name().map(Box::from);
        let has_sni = self.sni.is_some();
        let config = if has_sni {
            tls.config.clone()
        } else {
            let Some(identity) = &self.fallback else {
                return Err(TlsSessionError::NoCertificate(
                    "a client that sent no server name (SNI)".into(),
                ));
            };
            let cert = tls
                .resolver
                .certificate_for(identity)
                .ok_or_else(|| TlsSessionError::NoCertificate(format!("{identity:?}")))?;
            let mut config = (*tls.config).clone();
            config.cert_resolver = Arc::new(Fixed(cert));
            Arc::new(config)
        };
        accepted.into_connection(config).map_err(|(e, mut alert)| {
            let _ = alert.write_all(&mut self.alert);
            match e {
                rustls::Error::General(m) if m.contains("no server certificate") => {
                    TlsSessionError::NoCertificate(m)
                }
                e => TlsSessionError::Handshake(e),
            }
        })
    }

    /// Appends the decrypted plaintext to `out` (for the HTTP parser); returns how many bytes.
    /// After the client's close_notify it returns 0 and [`TlsSession::peer_closed`] is true.
    pub fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsSessionError> {
        let State::Open(conn) = &mut self.state else {
            return Ok(0);
        };
        match pump::take_plaintext(conn, out) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                self.peer_closed = true;
                Ok(0)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(TlsSessionError::Truncated)
            }
            Err(e) => Err(TlsSessionError::Tls(rustls::Error::General(e.to_string()))),
        }
    }

    /// Whether the client has ended its TLS stream with close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues plaintext (an answer) for encryption; before the handshake ends rustls buffers it.
    pub fn write_plaintext(&mut self, plaintext: &[u8]) -> Result<(), TlsSessionError> {
        match &mut self.state {
            State::Open(conn) => pump::send_plaintext(conn, plaintext)
                .map_err(|e| TlsSessionError::Tls(rustls::Error::General(e.to_string()))),
            _ => Err(TlsSessionError::Tls(rustls::Error::HandshakeNotComplete)),
        }
    }

    /// Encrypts `data` into `out`, one record per [`RECORD_PLAINTEXT`] bytes.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TlsSessionError> {
        for piece in data.chunks(RECORD_PLAINTEXT) {
            self.write_plaintext(piece)?;
            self.write_tls(out);
        }
        Ok(())
    }

    /// Takes `data`, one piece of an answer, into whole records: gathered in `stage` until a
    /// record is full (then sealed into `out`), a full record's worth straight from `data` when
    /// nothing is gathered. The small pieces of an answer (an HTTP/1 head and its body, HTTP/2
    /// frame headers and payloads) so go out as one record, not one record (one AEAD pass and 22
    /// bytes) each. What is left in `stage` goes out with [`TlsSession::seal_staged`].
    pub fn gather(
        &mut self,
        mut data: &[u8],
        stage: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsSessionError> {
        while !data.is_empty() {
            if stage.is_empty() && data.len() >= RECORD_PLAINTEXT {
                let whole = data.len() - data.len() % RECORD_PLAINTEXT;
                self.seal(&data[..whole], out)?;
                data = &data[whole..];
                continue;
            }
            let take = (RECORD_PLAINTEXT - stage.len()).min(data.len());
            stage.extend_from_slice(&data[..take]);
            data = &data[take..];
            if stage.len() == RECORD_PLAINTEXT {
                self.seal_staged(stage, out)?;
            }
        }
        Ok(())
    }

    /// Seals what `stage` gathered as one record into `out`, and empties it.
    pub fn seal_staged(
        &mut self,
        stage: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsSessionError> {
        let result = self.seal(stage, out);
        stage.clear();
        result
    }

    /// Appends the TLS records to send to `out` (handshake, answers, alerts); returns how many
    /// bytes.
    pub fn write_tls(&mut self, out: &mut Vec<u8>) -> usize {
        let mut n = self.alert.len();
        out.append(&mut self.alert);
        if let State::Open(conn) = &mut self.state {
            n += pump::drain_tls(conn, out);
        }
        n
    }

    /// Whether TLS records are waiting for [`TlsSession::write_tls`].
    pub fn wants_write(&self) -> bool {
        !self.alert.is_empty() || matches!(&self.state, State::Open(c) if c.wants_write())
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Open(conn) => conn.is_handshaking(),
            State::Accepting(_) => true,
            State::Failed => false,
        }
    }

    /// Whether the session failed (only [`TlsSession::write_tls`]'s alert is left; then close).
    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// The SNI the client sent, once its ClientHello is read (also after a failure).
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The ALPN protocol agreed (`http/1.1`, or `h2` when offered), after the handshake.
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.state {
            State::Open(conn) => conn.alpn_protocol(),
            _ => None,
        }
    }

    /// Queues a close_notify alert (the engine then sends [`TlsSession::write_tls`] and FIN).
    pub fn close_notify(&mut self) {
        if let State::Open(conn) = &mut self.state {
            conn.send_close_notify();
        }
    }
}
