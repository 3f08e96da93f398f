//! TLS to upstreams: the rustls client configuration and a TLS stream over a monoio `TcpStream`.
//!
//! The client side of rustls (the listener's side is `crate::tls`). rustls is driven over
//! in-memory buffers through `crate::tls::pump`: socket bytes go in with `read_tls`/`process_new_packets`, plaintext comes out
//! of `reader()`; plaintext goes in with `writer()` and TLS records come out with `write_tls`.
//! Certificates are checked against the webpki roots (plus `--upstream-ca`) unless `--ssl-insecure`;
//! a self-signed `CA:TRUE` certificate given with `--upstream-ca` that is the server's own
//! certificate (what `openssl req -x509` makes) is trusted as that end entity, as curl and
//! mitmproxy do. The SNI is the upstream host; ALPN offers `http/1.1`.

use std::io::{self, Write};
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::tls::pump;

/// Bytes read from the socket at a time (one TLS record is at most 16 KiB plus overhead).
const TLS_READ_BYTES: usize = 17 * 1024;

/// A TLS client configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The `--upstream-ca` file holds no usable certificate.
    #[error("no usable PEM certificate in the upstream CA file")]
    NoCertificate,
    /// The `--upstream-ca` file is not valid PEM.
    #[error("cannot read the upstream CA file as PEM: {0}")]
    Pem(rustls::pki_types::pem::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for upstream TLS, built once and shared by all workers.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// Verifies against the webpki roots plus the certificates in `extra_ca_pem` (the contents of
    /// `--upstream-ca`), or accepts any certificate if `insecure` (`--ssl-insecure`).
    pub fn new(extra_ca_pem: Option<&[u8]>, insecure: bool) -> Result<Self, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let mut given = Vec::new();
            if let Some(pem) = extra_ca_pem {
                given = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(TlsConfigError::Pem)?;
                let (added, _ignored) = roots.add_parsable_certificates(given.iter().cloned());
                if added == 0 {
                    return Err(TlsConfigError::NoCertificate);
                }
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsConfigError::Rustls(rustls::Error::General(e.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(TrustGivenEndEntities { webpki, given }))
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            config: Arc::new(config),
        })
    }

    /// Runs the TLS handshake over `tcp` with `host` as SNI and verified name.
    pub async fn connect(&self, tcp: TcpStream, host: &str) -> Result<TlsStream, TlsFailure> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsFailure::Tls(format!("{host:?} is not a valid TLS server name")))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| TlsFailure::Tls(e.to_string()))?;
        let mut stream = TlsStream {
            tcp,
            conn,
            buf: Vec::with_capacity(TLS_READ_BYTES),
            out: Vec::with_capacity(TLS_READ_BYTES),
            early: Vec::new(),
        };
        while stream.conn.is_handshaking() {
            if stream.conn.wants_write() {
                stream.flush().await.map_err(TlsFailure::Io)?;
            } else if stream.fill(None).await? == 0 {
                return Err(TlsFailure::Tls(
                    "the upstream closed the connection during the handshake".into(),
                ));
            }
        }
        // TLS 1.3: the client Finished may still be queued.
        stream.flush().await.map_err(TlsFailure::Io)?;
        Ok(stream)
    }
}

/// Why a TLS exchange failed.
#[derive(Debug)]
pub enum TlsFailure {
    /// The TLS layer failed (certificate, alert, protocol); the message says how.
    Tls(String),
    /// The socket failed.
    Io(io::Error),
}

/// A client TLS connection over a monoio TCP stream.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ClientConnection,
    /// TLS bytes read from the socket.
    buf: Vec<u8>,
    /// TLS records to send.
    out: Vec<u8>,
    /// Plaintext that arrived with the handshake's last records (read before anything else).
    early: Vec<u8>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").finish_non_exhaustive()
    }
}

impl TlsStream {
    /// The TCP stream underneath (for liveness checks).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads plaintext into the spare capacity of `into` (appending); `Ok(0)` at the end of the
    /// stream (close_notify, or the peer closing the TCP connection without one).
    pub async fn read(&mut self, into: &mut Vec<u8>) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = self.early.len();
            into.append(&mut self.early);
            return Ok(n);
        }
        let mut tcp_closed = false;
        loop {
            match pump::take_plaintext(&mut self.conn, into) {
                Ok(Some(0)) if tcp_closed => return Ok(0),
                Ok(Some(0)) => {}
                Ok(Some(n)) => return Ok(n),
                // close_notify.
                Ok(None) => return Ok(0),
                // The peer closed TCP without close_notify: servers do; treat it as the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let before = into.len();
            match self.fill(Some(&mut *into)).await {
                Ok(0) => tcp_closed = true,
                Ok(_) if into.len() > before => return Ok(into.len() - before),
                Ok(_) => {}
                Err(TlsFailure::Io(e)) => return Err(e),
                Err(TlsFailure::Tls(msg)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg))
                }
            }
        }
    }

    /// Encrypts and sends all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            data = &data[n..];
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends every TLS record rustls has queued.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            pump::drain_tls(&mut self.conn, &mut out);
            let (res, out) = monoio::io::AsyncWriteRentExt::write_all(&mut self.tcp, out).await;
            self.out = out;
            res?;
        }
        Ok(())
    }

    /// Reads TLS bytes from the socket and processes them, appending their plaintext to `plain`
    /// (or to `early` during the handshake); returns the bytes read (0: TCP EOF).
    async fn fill(&mut self, plain: Option<&mut Vec<u8>>) -> Result<usize, TlsFailure> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(TLS_READ_BYTES);
        }
        let cap = buf.capacity();
        let (res, slice) = self.tcp.read(buf.slice_mut(0..cap)).await;
        self.buf = slice.into_inner();
        let n = res.map_err(TlsFailure::Io)?;
        // n == 0 tells rustls the stream ended, so a missing close_notify is known.
        let plain = plain.unwrap_or(&mut self.early);
        if let Err(e) = pump::feed(&mut self.conn, &self.buf[..n], plain) {
            // Send the alert rustls queued, then fail.
            let _ = self.flush().await;
            return Err(TlsFailure::Tls(e.to_string()));
        }
        if n == 0 {
            return Ok(0);
        }
        if self.conn.wants_write() {
            self.flush().await.map_err(TlsFailure::Io)?;
        }
        Ok(n)
    }

    /// Shuts the TLS and TCP sides down (best effort).
    pub async fn shutdown(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush().await;
        let _ = self.tcp.shutdown().await;
    }
}

/// webpki verification, plus: a server certificate that webpki refuses only because it is a CA
/// (`CaUsedAsEndEntity`) is trusted when it is byte for byte one of the `--upstream-ca`
/// certificates, valid now and for the server name (curl and mitmproxy trust such a
/// self-signed `openssl req -x509` certificate).
#[derive(Debug)]
struct TrustGivenEndEntities {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// The certificates of `--upstream-ca`, as given.
    given: Vec<CertificateDer<'static>>,
}

impl TrustGivenEndEntities {
    /// Whether `end_entity` (one of the given certificates) is valid for `name` now.
    fn given_end_entity(
        &self,
        end_entity: &CertificateDer<'_>,
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::from(rustls::CertificateError::BadEncoding))?;
        let validity = cert.validity();
        let now = now.as_secs() as i64;
        if now < validity.not_before.timestamp() {
            return Err(rustls::CertificateError::NotValidYet.into());
        }
        if now > validity.not_after.timestamp() {
            return Err(rustls::CertificateError::Expired.into());
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, name)?;
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for TrustGivenEndEntities {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)))
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) && self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                self.given_end_entity(end_entity, server_name, now)
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `--ssl-insecure`: accepts every certificate and signature.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let err = UpstreamTls::new(Some(b"not a certificate\n"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no usable PEM certificate in the upstream CA file"
        );
    }

    #[test]
    fn a_generated_ca_is_accepted_and_offers_http11() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let tls = UpstreamTls::new(Some(ca.pem().as_bytes()), false).unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let insecure = UpstreamTls::new(None, true).unwrap();
        assert_eq!(insecure.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
