//! TLS towards a client as a [`Transport`]: a [`TlsSession`] (sans-IO rustls) driven over any
//! inner transport (the client's TCP stream). The handshake runs first ([`ClientTls::handshake`],
//! so the worker can pick the protocol from the agreed ALPN); after it, reads hand out decrypted
//! plaintext and writes (plain or gathered) go out encrypted in one send per call.

use std::io;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::BufResult;

use super::transport::Transport;
use crate::tls::{
    CaOrigin, Identity, TlsOptions, TlsServer, TlsSession, TlsSessionError, WorkerTls,
};

/// TLS bytes read from the client at a time (one record is at most 16 KiB plus overhead).
const TLS_READ_BYTES: usize = 17 * 1024;

/// Why a client's TLS handshake failed (the `-v` line's reason).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The TLS layer refused the client.
    #[error(transparent)]
    Tls(#[from] TlsSessionError),
    /// The client closed the connection before the handshake ended.
    #[error("the client closed the connection during the handshake")]
    Closed,
    /// The handshake did not end before the header timeout (or the server stopped).
    #[error("the handshake did not finish in time")]
    Cancelled,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(io::Error),
}

/// The listener's TLS at start-up: the CA loaded from the confdir (or created there, said on
/// stderr) and the `--certs` files read. A bad file in a confdir or `--certs` the user gave stops
/// start-up with a sentence naming it; when the default `~/.mitmproxy` cannot be used, a warning
/// says so and only plain HTTP is served.
pub fn setup(options: &TlsOptions, offer_h2: bool) -> Result<Option<TlsServer>, String> {
    match TlsServer::new(options, offer_h2) {
        Ok(server) => {
            if server.ca_origin() == CaOrigin::Created {
                eprintln!("{}", server.ca_line());
            }
            Ok(Some(server))
        }
        Err(e) if options.confdir.is_none() && options.certs.is_empty() => {
            eprintln!("warning: {e}; TLS clients will not be served (see --set confdir)");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A client connection speaking TLS over `inner`.
pub struct ClientTls<'w, S> {
    inner: S,
    session: TlsSession,
    tls: &'w WorkerTls,
    /// TLS bytes read from `inner`.
    raw: Vec<u8>,
    /// Decrypted plaintext not yet handed to the reader (from `taken` on).
    plain: Vec<u8>,
    taken: usize,
    /// TLS records to send.
    out: Vec<u8>,
    /// Plaintext of one write gathered into whole records: the small pieces of an answer (an
    /// HTTP/1 head and its body, HTTP/2 frame headers and payloads) go out as one record, not one
    /// record (one AEAD pass and 22 bytes) each.
    stage: Vec<u8>,
    /// The inner stream ended (or the client sent close_notify).
    eof: bool,
}

impl<S> std::fmt::Debug for ClientTls<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl<'w, S: Transport> ClientTls<'w, S> {
    /// A TLS server side over `inner`; `fallback` names the certificate for a ClientHello
    /// without SNI.
    pub fn new(inner: S, tls: &'w WorkerTls, fallback: Option<Identity>) -> ClientTls<'w, S> {
        ClientTls::resume(inner, tls, TlsSession::new(fallback))
    }

    /// Goes on with `session` over `inner`: a fresh one, or one the worker's direct ring ran (its
    /// handshake done, every record it queued so far sent, its plaintext taken).
    pub fn resume(inner: S, tls: &'w WorkerTls, session: TlsSession) -> ClientTls<'w, S> {
        // A close_notify the ring already read ends reading here too.
        let eof = session.peer_closed();
        ClientTls {
            inner,
            session,
            tls,
            raw: Vec::with_capacity(TLS_READ_BYTES),
            plain: Vec::new(),
            taken: 0,
            out: Vec::new(),
            stage: Vec::new(),
            eof,
        }
    }

    /// The SNI the client sent.
    pub fn sni(&self) -> Option<&str> {
        self.session.sni()
    }

    /// The ALPN protocol agreed in the handshake.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.session.alpn()
    }

    /// Runs the handshake: `first` holds the bytes already read from the client (its
    /// ClientHello's start); reads are cancelled through `cancel` (the connection's timer).
    /// On failure the alert (if any) has been sent.
    pub async fn handshake(
        &mut self,
        first: &[u8],
        cancel: CancelHandle,
    ) -> Result<(), HandshakeError> {
        let mut fed = self.receive_bytes(Some(first));
        loop {
            let sent = self.send_pending().await;
            fed?;
            sent.map_err(HandshakeError::Io)?;
            if !self.session.is_handshaking() {
                return Ok(());
            }
            if self.eof {
                return Err(HandshakeError::Closed);
            }
            let mut raw = std::mem::take(&mut self.raw);
            raw.clear();
            let (res, slice) = self
                .inner
                .cancelable_read(raw.slice_mut(0..TLS_READ_BYTES), cancel.clone())
                .await;
            self.raw = slice.into_inner();
            match res {
                Ok(0) => {
                    self.eof = true;
                    return Err(HandshakeError::Closed);
                }
                Ok(_) => fed = self.receive_bytes(None),
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                    return Err(HandshakeError::Cancelled)
                }
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
    }

    /// Feeds `first` (or `raw`) to the session, its plaintext to `plain`.
    fn receive_bytes(&mut self, first: Option<&[u8]>) -> Result<(), HandshakeError> {
        let input = first.unwrap_or(&self.raw);
        if self.taken == self.plain.len() {
            self.plain.clear();
            self.taken = 0;
        }
        self.session.receive(self.tls, input, &mut self.plain)?;
        self.session.read_plaintext(&mut self.plain)?;
        if self.session.peer_closed() {
            self.eof = true;
        }
        Ok(())
    }

    /// Sends every TLS record the session has queued (handshake, alerts, tickets).
    async fn send_pending(&mut self) -> io::Result<()> {
        if !self.session.wants_write() {
            return Ok(());
        }
        self.session.write_tls(&mut self.out);
        self.send_out().await
    }

    /// Reads until plaintext is available (or the end); `cancel`: the read is cancelable.
    async fn fill(&mut self, cancel: Option<CancelHandle>) -> io::Result<()> {
        while self.taken == self.plain.len() && !self.eof {
            let mut raw = std::mem::take(&mut self.raw);
            raw.clear();
            let slice = raw.slice_mut(0..TLS_READ_BYTES);
            let (res, slice) = match &cancel {
                Some(c) => self.inner.cancelable_read(slice, c.clone()).await,
                None => self.inner.read(slice).await,
            };
            self.raw = slice.into_inner();
            let n = res?;
            if n == 0 {
                self.eof = true;
                // Tells rustls the stream ended; a missing close_notify is just the end here.
                let _ = self.receive_bytes(Some(&[]));
                return Ok(());
            }
            let fed = self.receive_bytes(None);
            // Alerts, key updates: sent at once.
            self.send_pending().await?;
            fed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(())
    }

    /// Copies pending plaintext into `buf`.
    fn hand_out<T: IoBufMut>(&mut self, buf: &mut T) -> usize {
        let pending = &self.plain[self.taken..];
        let n = pending.len().min(buf.bytes_total());
        // SAFETY: `buf` has room for `bytes_total()` bytes at `write_ptr()`; `n` is at most that,
        // and `pending` is our own buffer, which cannot overlap the caller's.
        unsafe {
            std::ptr::copy_nonoverlapping(pending.as_ptr(), buf.write_ptr(), n);
            buf.set_init(n);
        }
        self.taken += n;
        n
    }

    /// Encrypts `data` into `out`, one record per [`crate::tls::RECORD_PLAINTEXT`] bytes.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        self.session.seal(data, &mut self.out).map_err(invalid)
    }

    /// Takes `data` into whole records ([`TlsSession::gather`]).
    fn gather(&mut self, data: &[u8]) -> io::Result<()> {
        self.session
            .gather(data, &mut self.stage, &mut self.out)
            .map_err(invalid)
    }

    /// Encrypts what `stage` holds as one record.
    fn encrypt_staged(&mut self) -> io::Result<()> {
        self.session
            .seal_staged(&mut self.stage, &mut self.out)
            .map_err(invalid)
    }

    /// Sends `out` whole.
    async fn send_out(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let (res, mut out) = self.inner.write_all(out).await;
        crate::tls::session::recycle_records(&mut out);
        self.out = out;
        res.map(drop)
    }
}

/// A TLS error as the I/O error the transport reports.
fn invalid(e: TlsSessionError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: Transport> AsyncReadRent for ClientTls<'_, S> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if let Err(e) = self.fill(None).await {
            return (Err(e), buf);
        }
        let n = self.hand_out(&mut buf);
        (Ok(n), buf)
    }

    async fn readv<T: monoio::buf::IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // The driver never reads vectored from a client.
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }
}

impl<S: Transport> CancelableAsyncReadRent for ClientTls<'_, S> {
    async fn cancelable_read<T: IoBufMut>(
        &mut self,
        mut buf: T,
        c: CancelHandle,
    ) -> BufResult<usize, T> {
        if let Err(e) = self.fill(Some(c)).await {
            return (Err(e), buf);
        }
        let n = self.hand_out(&mut buf);
        (Ok(n), buf)
    }

    async fn cancelable_readv<T: monoio::buf::IoVecBufMut>(
        &mut self,
        buf: T,
        _c: CancelHandle,
    ) -> BufResult<usize, T> {
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }
}

impl<S: Transport> AsyncWriteRent for ClientTls<'_, S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `buf` holds `bytes_init()` initialised bytes at `read_ptr()`, alive while we
        // own it (all of this call).
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = data.len();
        if let Err(e) = self.encrypt(data) {
            return (Err(e), buf);
        }
        match self.send_out().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let mut total = 0;
        for i in 0..buf.read_iovec_len() {
            // SAFETY: `buf` holds `read_iovec_len()` iovecs at `read_iovec_ptr()`, each naming
            // initialised bytes alive while we own `buf` (all of this call).
            let data = unsafe {
                let iov = &*buf.read_iovec_ptr().add(i);
                std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len)
            };
            if let Err(e) = self.gather(data) {
                self.stage.clear();
                return (Err(e), buf);
            }
            total += data.len();
        }
        if let Err(e) = self.encrypt_staged() {
            return (Err(e), buf);
        }
        match self.send_out().await {
            Ok(()) => (Ok(total), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.close_notify();
        self.session.write_tls(&mut self.out);
        let sent = self.send_out().await;
        let shut = self.inner.shutdown().await;
        sent.and(shut)
    }
}

impl<S: Transport> Transport for ClientTls<'_, S> {
    fn drain_arrived(&mut self, input: &mut Vec<u8>) -> usize {
        let start = input.len();
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        if self.inner.drain_arrived(&mut raw) > 0 {
            self.raw = raw;
            // A TLS error here just ends what can be taken; the close follows.
            let _ = self.receive_bytes(None);
        } else {
            self.raw = raw;
        }
        input.extend_from_slice(&self.plain[self.taken..]);
        self.taken = self.plain.len();
        input.len() - start
    }

    fn addresses(&self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        self.inner.addresses()
    }
}
