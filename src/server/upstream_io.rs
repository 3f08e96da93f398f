//! Forwarding on a worker's loop: connecting upstream (timeout, TLS), the per-worker pool of idle
//! upstream connections, and one exchange relayed to the client as it arrives.
//!
//! The protocol work is in `crate::upstream` (sans-IO); this file moves bytes. Memory per forwarded
//! exchange is bounded: one read buffer of [`UPSTREAM_READ_BYTES`] (growing only while an incomplete
//! response head is pending, up to [`crate::upstream::MAX_RESPONSE_HEAD_BYTES`]) and one client write buffer holding
//! what one read produced.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::clock;
use super::resolve::Resolver;
use super::upstream_tls::{TlsFailure, TlsStream, UpstreamTls};
use crate::capture::{
    Endpoint, ForwardedExchange, Recorder, RequestParts, ResponseParts, MAX_SAVED_BODY,
};
use crate::flowfile::writer::ErrorParts;
use crate::upstream::{
    write_request, ForwardError, ForwardErrorKind, HostAction, Mode, Origin, Pool, PoolLimits,
    RelayOutcome, ResponseRelay, Route, Scheme, Via,
};

/// Bytes read from an upstream at a time (and so the most relayed to the client per write).
pub const UPSTREAM_READ_BYTES: usize = 16 * 1024;

/// Forwarding settings, shared by all workers.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// TLS client configuration for https upstreams.
    pub tls: UpstreamTls,
    /// Time allowed to connect (TCP and TLS handshake), and between two reads of the response.
    pub timeout: Duration,
    /// Bounds of each worker's idle-connection pool.
    pub pool: PoolLimits,
    /// Where requests go: each to its own destination, or all to the reverse target.
    pub mode: Mode,
    /// Reverse mode: keep the client's Host header (else it is rewritten to the target's).
    pub keep_host_header: bool,
    /// This process's `Via` entry, added to every forwarded request (loop detection).
    pub via: Via,
    /// `-w`: where forwarded exchanges are saved (shared by every worker).
    pub recorder: Option<Arc<Recorder>>,
    /// Upstream names are looked up here, off the workers' loops.
    pub resolver: Arc<Resolver>,
}

/// Counts of one worker's forwarding, for the per-run report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardCounters {
    /// Requests sent upstream whose response was relayed completely.
    pub forwarded: u64,
    /// Forwards that failed (answered 502/504, or cut off after the head).
    pub upstream_errors: u64,
    /// Upstream connections opened.
    pub connections_opened: u64,
    /// Requests sent on a pooled connection.
    pub connections_reused: u64,
}

/// The request to forward, with its route.
#[derive(Debug)]
pub struct Outbound<'a> {
    /// Method, as received.
    pub method: &'a str,
    /// Where it goes and the Host handling.
    pub route: Route<'a>,
    /// The client's header fields, in order.
    pub headers: &'a [httparse::Header<'a>],
    /// The complete, de-chunked body.
    pub body: &'a [u8],
    /// The client's HTTP/1.x minor version.
    pub client_minor: u8,
    /// The client wants to keep its connection.
    pub client_keep_alive: bool,
    /// The request target as the client sent it (what a saved flow records).
    pub target: &'a [u8],
    /// `-w`: the client's connection, for the saved flow (`None`: not saved).
    pub record: Option<ClientSide>,
}

/// The client side of a forwarded exchange that is saved (`-w`).
#[derive(Debug, Clone, Copy)]
pub struct ClientSide {
    /// The client's connection.
    pub endpoint: Endpoint,
    /// When the request was complete (Unix seconds).
    pub request_time: f64,
}

/// What the exchange saw of the upstream, for a saved flow.
#[derive(Debug, Clone, Copy)]
struct UpstreamSide {
    endpoint: Endpoint,
    response_start: f64,
}

/// A number for a connection, the same for every exchange on it while it is open: its two
/// addresses hashed.
pub fn connection_number(a: SocketAddr, b: SocketAddr) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one((a, b))
}

/// How a forward ended.
#[derive(Debug)]
pub enum Forwarded {
    /// The upstream's response went to the client completely; `close`: close the client connection.
    Relayed {
        /// The final status.
        status: u16,
        /// The client connection must be closed.
        close: bool,
        /// Body bytes relayed (framing included when passed through).
        body_bytes: u64,
    },
    /// The forward failed. If `answered`, a 502/504 naming the upstream went to the client (and the
    /// connection may stay unless `close`); otherwise part of a response went out and the client
    /// connection must be closed.
    Failed {
        /// What failed.
        error: ForwardError,
        /// A 502/504 was written.
        answered: bool,
        /// The client connection must be closed.
        close: bool,
    },
    /// The request names no usable destination; a 400/501 went to the client and its connection
    /// must be closed. Nothing was sent upstream.
    Rejected {
        /// The status answered.
        status: u16,
    },
    /// Writing to the client failed; drop its connection.
    ClientGone,
}

/// A connection to an upstream, plain or TLS.
#[derive(Debug)]
enum UpstreamConn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl UpstreamConn {
    fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamConn::Plain(tcp) => tcp,
            UpstreamConn::Tls(tls) => tls.tcp(),
        }
    }

    /// Appends what arrives to `buf` (in its spare capacity); `Ok(0)` at the end of the stream.
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            UpstreamConn::Plain(tcp) => {
                let owned = std::mem::take(buf);
                let (len, cap) = (owned.len(), owned.capacity());
                let (res, slice) = tcp.read(owned.slice_mut(len..cap)).await;
                *buf = slice.into_inner();
                res
            }
            UpstreamConn::Tls(tls) => tls.read(buf).await,
        }
    }

    /// Sends all of `data`. On failure, hands `data` back if not one byte of it left (plain TCP
    /// only: with TLS that is never certain), so it can be sent elsewhere.
    async fn send(&mut self, data: Vec<u8>) -> Result<(), (io::Error, Option<Vec<u8>>)> {
        match self {
            UpstreamConn::Plain(tcp) => {
                let mut sent = 0;
                let mut data = data;
                while sent < data.len() {
                    let (res, slice) = tcp.write(monoio::buf::IoBuf::slice(data, sent..)).await;
                    data = slice.into_inner();
                    let unsent = |data| (sent == 0).then_some(data);
                    match res {
                        Ok(0) => return Err((io::ErrorKind::WriteZero.into(), unsent(data))),
                        Ok(n) => sent += n,
                        Err(e) => return Err((e, unsent(data))),
                    }
                }
                Ok(())
            }
            UpstreamConn::Tls(tls) => tls.write_all(&data).await.map_err(|e| (e, None)),
        }
    }

    /// Whether an idle connection is unusable: the upstream closed it, reset it, or sent something
    /// unasked (a TLS alert or ticket counts: such a connection is simply not reused).
    fn is_stale(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut byte = 0u8;
        // SAFETY: `fd` is the open socket this connection owns; `byte` is a live 1-byte buffer and
        // MSG_PEEK|MSG_DONTWAIT neither consumes data nor blocks.
        let n = unsafe {
            libc::recv(
                self.tcp().as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        !(n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock)
    }
}

/// Why an exchange stopped.
enum ExchangeError {
    Upstream(ForwardErrorKind),
    ClientGone,
}

impl From<ForwardErrorKind> for ExchangeError {
    fn from(kind: ForwardErrorKind) -> Self {
        ExchangeError::Upstream(kind)
    }
}

/// One worker's forwarding state: settings, the idle pool, counters.
#[derive(Debug)]
pub struct Forwarder {
    settings: Arc<ForwardSettings>,
    pool: RefCell<Pool<UpstreamConn>>,
    counters: Cell<ForwardCounters>,
}

impl Forwarder {
    /// A forwarder for one worker.
    pub fn new(settings: Arc<ForwardSettings>) -> Self {
        let pool = RefCell::new(Pool::new(settings.pool));
        Forwarder {
            settings,
            pool,
            counters: Cell::new(ForwardCounters::default()),
        }
    }

    /// The settings this forwarder uses.
    pub fn settings(&self) -> &ForwardSettings {
        &self.settings
    }

    /// This worker's counts so far.
    pub fn counters(&self) -> ForwardCounters {
        self.counters.get()
    }

    /// Idle pooled connections to `origin`.
    pub fn idle_connections(&self, origin: &Origin) -> usize {
        self.pool.borrow().idle_count(origin)
    }

    fn count(&self, f: impl FnOnce(&mut ForwardCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }

    /// Sends `request` upstream and relays the response to `client` as it arrives; on failure
    /// answers the client with a one-line 502/504 if no response head went out yet.
    pub async fn forward<W: AsyncWriteRent>(
        &self,
        request: &Outbound<'_>,
        client: &mut W,
    ) -> Forwarded {
        let mut bytes = Vec::with_capacity(512 + request.body.len());
        write_request(
            &mut bytes,
            request.method,
            &request.route,
            request.headers,
            request.body,
            &self.settings.via,
            request.client_minor,
        );
        let origin = &request.route.origin;
        let mut relay = ResponseRelay::new(
            request.method == "HEAD",
            request.client_minor,
            request.client_keep_alive,
        );
        let recorder = self.settings.recorder.as_deref().zip(request.record);
        if recorder.is_some() {
            relay = relay.capturing(MAX_SAVED_BODY);
        }
        let mut seen = None;
        let kind = match self
            .exchange(origin, bytes, &mut relay, client, &mut seen)
            .await
        {
            Ok(outcome) => {
                self.count(|c| c.forwarded += 1);
                if let (Some((recorder, side)), Some(seen)) = (recorder, seen) {
                    save(recorder, request, side, seen, &relay);
                }
                return Forwarded::Relayed {
                    status: outcome.status,
                    close: !outcome.client_keep_alive,
                    body_bytes: outcome.body_bytes,
                };
            }
            Err(ExchangeError::ClientGone) => return Forwarded::ClientGone,
            Err(ExchangeError::Upstream(kind)) => kind,
        };
        self.count(|c| c.upstream_errors += 1);
        let error = ForwardError {
            origin: origin.clone(),
            kind,
        };
        if let (Some((recorder, side)), false) = (recorder, relay.is_final_head_relayed()) {
            save_failed(recorder, request, side, &error);
        }
        if relay.is_final_head_relayed() {
            return Forwarded::Failed {
                error,
                answered: false,
                close: true,
            };
        }
        let mut answer = Vec::with_capacity(256);
        error.write_response(&mut answer, request.client_keep_alive);
        let (res, _) = client.write_all(answer).await;
        if res.is_err() {
            return Forwarded::ClientGone;
        }
        Forwarded::Failed {
            error,
            answered: true,
            close: !request.client_keep_alive,
        }
    }

    /// Sends `request` on a pooled or new connection and relays the response. When the relay is
    /// capturing (`-w`), `seen` gets the upstream connection and when the response head came.
    async fn exchange<W: AsyncWriteRent>(
        &self,
        origin: &Origin,
        request: Vec<u8>,
        relay: &mut ResponseRelay,
        client: &mut W,
        seen: &mut Option<UpstreamSide>,
    ) -> Result<RelayOutcome, ExchangeError> {
        let capturing = relay.captured().is_some();
        let opened = if capturing {
            clock::unix_seconds()
        } else {
            0.0
        };
        let (mut conn, mut reused) = self.checkout(origin).await?;
        if let Err((e, unsent)) = conn.send(request).await {
            match unsent {
                // The pooled connection took not one byte: the request provably never reached the
                // server, so one retry on a fresh connection is safe for any method.
                Some(again) if reused => {
                    conn = self.connect(origin).await?;
                    reused = false;
                    conn.send(again)
                        .await
                        .map_err(|(e, _)| ForwardErrorKind::Io(e))?;
                }
                _ => return Err(ForwardErrorKind::Io(e).into()),
            }
        }
        let mut upstream = None;
        if capturing {
            // A reused connection's own open time is not kept: the request's time stands in.
            let tcp = conn.tcp();
            if let (Ok(peer), Ok(local)) = (tcp.peer_addr(), tcp.local_addr()) {
                let now = clock::unix_seconds();
                upstream = Some(Endpoint {
                    connection: connection_number(local, peer),
                    peer,
                    local,
                    opened,
                    established: Some(if reused { opened } else { now }),
                });
            }
        }
        let mut response_start = None;

        let timeout = self.settings.timeout;
        let mut input: Vec<u8> = Vec::with_capacity(UPSTREAM_READ_BYTES);
        let mut out: Vec<u8> = Vec::with_capacity(UPSTREAM_READ_BYTES + 512);
        while relay.outcome().is_none() {
            if input.capacity() - input.len() < UPSTREAM_READ_BYTES / 4 {
                // Only an incomplete head is ever kept, and the relay refuses one longer than
                // MAX_RESPONSE_HEAD_BYTES: the buffer stays below that plus one read.
                input.reserve(UPSTREAM_READ_BYTES);
            }
            let n = match monoio::time::timeout(timeout, conn.read(&mut input)).await {
                Err(_) => return Err(ForwardErrorKind::ResponseTimeout(timeout).into()),
                Ok(Err(e)) => return Err(ForwardErrorKind::Io(e).into()),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                relay.handle_eof().map_err(ForwardErrorKind::from)?;
                break;
            }
            let used = relay
                .handle_bytes(&input, &mut out)
                .map_err(ForwardErrorKind::from)?;
            input.drain(..used);
            if capturing && response_start.is_none() && relay.is_final_head_relayed() {
                response_start = Some(clock::unix_seconds());
            }
            if !out.is_empty() {
                let (res, buf) = client.write_all(out).await;
                out = buf;
                out.clear();
                if res.is_err() {
                    return Err(ExchangeError::ClientGone);
                }
            }
        }
        let outcome = relay
            .outcome()
            .expect("invariant: the loop ends with a complete response");
        if let Some(endpoint) = upstream {
            *seen = Some(UpstreamSide {
                endpoint,
                response_start: response_start.unwrap_or_else(clock::unix_seconds),
            });
        }
        if outcome.upstream_reusable && input.is_empty() {
            let rejected = self.pool.borrow_mut().put(origin, conn, clock::instant());
            drop(rejected);
        }
        Ok(outcome)
    }

    /// A pooled connection to `origin` that still looks alive, else a new one; `true` if pooled.
    async fn checkout(&self, origin: &Origin) -> Result<(UpstreamConn, bool), ForwardErrorKind> {
        let now = clock::instant();
        loop {
            let taken = self.pool.borrow_mut().take(origin, now);
            match taken {
                Some(conn) if !conn.is_stale() => {
                    self.count(|c| c.connections_reused += 1);
                    return Ok((conn, true));
                }
                Some(_stale) => continue,
                None => break,
            }
        }
        Ok((self.connect(origin).await?, false))
    }

    /// Connects (TCP, then TLS for https) within the upstream timeout.
    async fn connect(&self, origin: &Origin) -> Result<UpstreamConn, ForwardErrorKind> {
        let timeout = self.settings.timeout;
        let conn = match monoio::time::timeout(timeout, self.connect_now(origin)).await {
            Err(_) => return Err(ForwardErrorKind::ConnectTimeout(timeout)),
            Ok(r) => r?,
        };
        self.count(|c| c.connections_opened += 1);
        Ok(conn)
    }

    async fn connect_now(&self, origin: &Origin) -> Result<UpstreamConn, ForwardErrorKind> {
        // On a resolver thread, so this worker goes on serving; IP literals need no lookup.
        let addrs: Vec<SocketAddr> = self
            .settings
            .resolver
            .resolve(origin.host.as_ref(), origin.port)
            .await
            .map_err(|e| ForwardErrorKind::Resolve(e.to_string()))?;
        let mut last_error = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_addr(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_error = Some((e, addr)),
            }
        }
        let tcp = match (tcp, last_error) {
            (Some(tcp), _) => tcp,
            (None, Some((e, addr))) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ForwardErrorKind::Refused(addr))
            }
            (None, Some((e, _))) => return Err(ForwardErrorKind::Connect(e)),
            (None, None) => {
                return Err(ForwardErrorKind::Resolve(
                    "the name has no address".to_string(),
                ))
            }
        };
        let _ = tcp.set_nodelay(true);
        match origin.scheme {
            Scheme::Http => Ok(UpstreamConn::Plain(tcp)),
            Scheme::Https => match self.settings.tls.connect(tcp, &origin.host).await {
                Ok(tls) => Ok(UpstreamConn::Tls(Box::new(tls))),
                Err(TlsFailure::Tls(msg)) => Err(ForwardErrorKind::Tls(msg)),
                Err(TlsFailure::Io(e)) => Err(ForwardErrorKind::Tls(format!(
                    "connection failed during the handshake: {e}"
                ))),
            },
        }
    }
}

/// The request as saved with its exchange: as the client sent it, `Host` as routed.
fn saved_request<'a>(request: &'a Outbound<'a>, client: &ClientSide) -> RequestParts<'a> {
    RequestParts {
        method: request.method.as_bytes(),
        target: request.target,
        version_minor: request.client_minor,
        headers: request.headers,
        host: match &request.route.host {
            HostAction::Keep => None,
            HostAction::Set(value) => Some(value.as_bytes()),
        },
        body: request.body,
        start: client.request_time,
        end: client.request_time,
    }
}

fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

/// Hands a completed exchange to the recorder, which encodes it straight from these borrowed
/// parts, or counts it as too large to save.
fn save(
    recorder: &Recorder,
    request: &Outbound<'_>,
    client: ClientSide,
    seen: UpstreamSide,
    relay: &ResponseRelay,
) {
    let Some(captured) = relay.captured() else {
        return;
    };
    let origin = &request.route.origin;
    if captured.over_limit() {
        recorder.skip_too_large(request.method, &origin.host_header(), request.target);
        return;
    }
    recorder.record(&ForwardedExchange {
        request: saved_request(request, &client),
        response: Some(ResponseParts {
            head: &captured.head,
            body: &captured.body,
            start: seen.response_start,
            end: clock::unix_seconds(),
        }),
        error: None,
        scheme: scheme_name(origin.scheme),
        host: &origin.host,
        port: origin.port,
        client: client.endpoint,
        upstream: Some(seen.endpoint),
    });
}

/// Saves a forward that failed before any response head reached the client as mitmproxy saves
/// one: the request, no response, and `error` (its message and time). The upstream connection
/// is not recorded (mitmproxy keeps only the address asked for when it could not connect).
fn save_failed(
    recorder: &Recorder,
    request: &Outbound<'_>,
    client: ClientSide,
    error: &ForwardError,
) {
    let origin = &request.route.origin;
    let msg = error.flow_message();
    recorder.record(&ForwardedExchange {
        request: saved_request(request, &client),
        response: None,
        error: Some(ErrorParts {
            msg: &msg,
            timestamp: clock::unix_seconds(),
        }),
        scheme: scheme_name(origin.scheme),
        host: &origin.host,
        port: origin.port,
        client: client.endpoint,
        upstream: None,
    });
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread;

    use super::*;
    use crate::server::runtime::run_for_test as run;

    fn settings(tls: UpstreamTls, timeout: Duration) -> Arc<ForwardSettings> {
        Arc::new(ForwardSettings {
            tls,
            timeout,
            pool: PoolLimits::default(),
            mode: Mode::Regular,
            keep_host_header: false,
            via: Via::new(1),
            recorder: None,
            resolver: Arc::default(),
        })
    }

    fn plain_forwarder() -> Forwarder {
        Forwarder::new(settings(
            UpstreamTls::new(None, false).unwrap(),
            Duration::from_secs(5),
        ))
    }

    /// A loopback upstream: accepts connections and runs `handler` on each in its own thread.
    fn upstream<S: Read + Write>(
        wrap: impl Fn(std::net::TcpStream) -> Option<S> + Send + Sync + 'static,
        handler: impl Fn(&mut S) + Send + Sync + 'static,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let wrap = Arc::new(wrap);
        let handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (wrap, handler) = (wrap.clone(), handler.clone());
                thread::spawn(move || {
                    if let Some(mut s) = wrap(conn) {
                        handler(&mut s);
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn plain_upstream(
        handler: impl Fn(&mut std::net::TcpStream) + Send + Sync + 'static,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        upstream(Some, handler)
    }

    /// Reads one request (head and Content-Length body); `None` at EOF.
    fn read_request(s: &mut impl Read) -> Option<(String, Vec<u8>)> {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8(head).unwrap();
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        s.read_exact(&mut body).ok()?;
        Some((head, body))
    }

    /// Answers every request on the connection with its request line and body, keep-alive.
    fn echo(s: &mut impl ReadWrite) {
        while let Some((head, body)) = read_request(s) {
            let line = head.lines().next().unwrap().to_string();
            let host = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("host:"))
                .unwrap_or("no host")
                .to_string();
            let text = format!("{line}|{host}|{}", String::from_utf8_lossy(&body));
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            if s.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }

    trait ReadWrite: Read + Write {}
    impl<T: Read + Write> ReadWrite for T {}

    /// A client connection: the server end as a monoio stream, and a thread collecting what the
    /// client receives until the server end is dropped.
    fn client_conn() -> (TcpStream, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_end, _) = listener.accept().unwrap();
        server_end.set_nonblocking(true).unwrap();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            let _ = peer.read_to_end(&mut got);
            got
        });
        (TcpStream::from_std(server_end).unwrap(), reader)
    }

    /// Closes the server end (shutdown, so io_uring's deferred close cannot hold the reader) and
    /// returns everything the client received.
    async fn finish(mut client: TcpStream, reader: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
        let _ = client.shutdown().await;
        drop(client);
        reader.join().unwrap()
    }

    fn origin(scheme: Scheme, host: &str, port: u16) -> Origin {
        Origin {
            scheme,
            host: host.into(),
            port,
        }
    }

    fn get<'a>(origin: &Origin, path: &'a [u8]) -> Outbound<'a> {
        Outbound {
            method: "GET",
            route: Route {
                origin: origin.clone(),
                path,
                host: HostAction::Set(origin.host_header()),
            },
            headers: &[],
            body: b"",
            client_minor: 1,
            client_keep_alive: true,
            target: path,
            record: None,
        }
    }

    #[test]
    fn requests_are_relayed_over_one_pooled_connection() {
        let (addr, accepted) = plain_upstream(echo);
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let fwd = plain_forwarder();
        let (got, counters) = run(async {
            let (mut client, reader) = client_conn();
            for i in 0..4 {
                let path = format!("/get/{i}");
                let r = fwd.forward(&get(&up, path.as_bytes()), &mut client).await;
                assert!(
                    matches!(
                        r,
                        Forwarded::Relayed {
                            status: 200,
                            close: false,
                            ..
                        }
                    ),
                    "{r:?}"
                );
            }
            let headers = [httparse::Header {
                name: "Content-Length",
                value: b"5",
            }];
            let mut post = get(&up, b"/post");
            post.method = "POST";
            post.headers = &headers;
            post.body = b"hello";
            let r = fwd.forward(&post, &mut client).await;
            assert!(
                matches!(
                    r,
                    Forwarded::Relayed {
                        status: 200,
                        close: false,
                        ..
                    }
                ),
                "{r:?}"
            );
            assert_eq!(fwd.idle_connections(&up), 1);
            (finish(client, reader).await, fwd.counters())
        });
        let got = String::from_utf8(got).unwrap();
        let host = format!("Host: 127.0.0.1:{}", addr.port());
        for i in 0..4 {
            assert!(
                got.contains(&format!("GET /get/{i} HTTP/1.1|{host}|")),
                "{got}"
            );
        }
        assert!(
            got.ends_with(&format!("POST /post HTTP/1.1|{host}|hello")),
            "{got}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(
            counters,
            ForwardCounters {
                forwarded: 5,
                upstream_errors: 0,
                connections_opened: 1,
                connections_reused: 4,
            }
        );
    }

    #[test]
    fn chunked_and_until_close_responses_are_relayed() {
        let (addr, _) = plain_upstream(|s| {
            if let Some((head, _)) = read_request(s) {
                if head.starts_with("GET /chunked") {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                    );
                    let _ = s.write_all(b"2\r\nde\r\n0\r\n\r\n");
                    echo(s);
                } else {
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil-eof");
                }
            }
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let fwd = plain_forwarder();
        let got = run(async {
            let (mut client, reader) = client_conn();
            let r = fwd.forward(&get(&up, b"/chunked"), &mut client).await;
            assert!(
                matches!(
                    r,
                    Forwarded::Relayed {
                        status: 200,
                        close: false,
                        ..
                    }
                ),
                "{r:?}"
            );
            assert_eq!(fwd.idle_connections(&up), 1);
            let r = fwd.forward(&get(&up, b"/next"), &mut client).await;
            assert!(
                matches!(
                    r,
                    Forwarded::Relayed {
                        status: 200,
                        close: false,
                        ..
                    }
                ),
                "{r:?}"
            );
            let first = finish(client, reader).await;
            let (mut client2, reader2) = client_conn();
            let fresh = plain_forwarder();
            let r = fresh.forward(&get(&up, b"/eof"), &mut client2).await;
            assert!(
                matches!(
                    r,
                    Forwarded::Relayed {
                        status: 200,
                        close: true,
                        ..
                    }
                ),
                "{r:?}"
            );
            assert_eq!(fresh.idle_connections(&up), 0);
            (first, finish(client2, reader2).await)
        });
        let first = String::from_utf8(got.0).unwrap();
        assert!(first.starts_with(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"
        ), "{first}");
        assert_eq!(
            String::from_utf8(got.1).unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: close\r\n\r\nuntil-eof"
        );
    }

    #[test]
    fn a_ten_mib_response_is_streamed_through() {
        const TOTAL: usize = 10 * 1024 * 1024;
        let (addr, _) = plain_upstream(|s| {
            if read_request(s).is_some() {
                let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n").as_bytes(),
                );
                let block = vec![b'z'; 64 * 1024];
                for _ in 0..TOTAL / block.len() {
                    if s.write_all(&block).is_err() {
                        return;
                    }
                }
            }
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let fwd = plain_forwarder();
        let got = run(async {
            let (mut client, reader) = client_conn();
            let r = fwd.forward(&get(&up, b"/big"), &mut client).await;
            assert!(
                matches!(
                    r,
                    Forwarded::Relayed {
                        status: 200,
                        close: false,
                        ..
                    }
                ),
                "{r:?}"
            );
            finish(client, reader).await
        });
        let head_len = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(got.len() - head_len, TOTAL);
        assert!(got[head_len..].iter().all(|&b| b == b'z'));
    }

    /// Runs one forward to `up` and returns the result and what the client received.
    fn forward_once(fwd: &Forwarder, up: &Origin) -> (Forwarded, String) {
        run(async {
            let (mut client, reader) = client_conn();
            let r = fwd.forward(&get(up, b"/x"), &mut client).await;
            (r, String::from_utf8(finish(client, reader).await).unwrap())
        })
    }

    fn assert_answered(r: &Forwarded, got: &str, status: &str, reason: &str) {
        assert!(
            matches!(
                r,
                Forwarded::Failed {
                    answered: true,
                    close: false,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(got.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{got}");
        assert!(!got.contains("connection: close"), "{got}");
        assert!(got.ends_with(&format!("{reason}\n")), "{got}");
    }

    #[test]
    fn a_refused_connection_is_a_502_naming_the_upstream() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let up = origin(Scheme::Http, "127.0.0.1", port);
        let fwd = plain_forwarder();
        let (r, got) = forward_once(&fwd, &up);
        assert_answered(
            &r,
            &got,
            "502 Bad Gateway",
            &format!("upstream 127.0.0.1:{port}: connection refused"),
        );
        assert_eq!(fwd.counters().upstream_errors, 1);
    }

    #[test]
    fn a_silent_upstream_is_a_504() {
        let (release, wait) = mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let (addr, _) = plain_upstream(move |s| {
            let _ = read_request(s);
            let _ = wait.lock().unwrap().recv();
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let fwd = Forwarder::new(settings(
            UpstreamTls::new(None, false).unwrap(),
            Duration::from_millis(200),
        ));
        let (r, got) = forward_once(&fwd, &up);
        drop(release);
        assert_answered(
            &r,
            &got,
            "504 Gateway Timeout",
            &format!(
                "upstream 127.0.0.1:{}: no response within 0.2s",
                addr.port()
            ),
        );
    }

    #[test]
    fn bad_and_missing_responses_are_502() {
        let (addr, _) = plain_upstream(|s| {
            if let Some((head, _)) = read_request(s) {
                if head.starts_with("GET /x") {
                    let _ = s.write_all(b"SSH-2.0-nonsense\r\n\r\n");
                }
            }
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let (r, got) = forward_once(&plain_forwarder(), &up);
        assert_answered(
            &r,
            &got,
            "502 Bad Gateway",
            &format!(
                "upstream 127.0.0.1:{}: bad response: malformed response head (invalid HTTP version)",
                addr.port()
            ),
        );

        let (addr, _) = plain_upstream(|s| {
            let _ = read_request(s);
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let (r, got) = forward_once(&plain_forwarder(), &up);
        assert_answered(
            &r,
            &got,
            "502 Bad Gateway",
            &format!(
                "upstream 127.0.0.1:{}: bad response: connection closed without a response",
                addr.port()
            ),
        );
    }

    #[test]
    fn a_body_cut_short_closes_the_client() {
        let (addr, _) = plain_upstream(|s| {
            let _ = read_request(s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let (r, got) = forward_once(&plain_forwarder(), &up);
        assert!(
            matches!(
                r,
                Forwarded::Failed {
                    answered: false,
                    close: true,
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(got, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    }

    #[test]
    fn an_idle_connection_the_upstream_closed_is_not_reused() {
        let (closed_tx, closed_rx) = mpsc::channel::<()>();
        let closed_tx = std::sync::Mutex::new(closed_tx);
        let (addr, accepted) = plain_upstream(move |s| {
            let _ = read_request(s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = s.shutdown(std::net::Shutdown::Both);
            let _ = closed_tx.lock().unwrap().send(());
        });
        let up = origin(Scheme::Http, "127.0.0.1", addr.port());
        let fwd = plain_forwarder();
        run(async {
            let (mut client, _reader) = client_conn();
            let r = fwd.forward(&get(&up, b"/1"), &mut client).await;
            assert!(matches!(r, Forwarded::Relayed { status: 200, .. }), "{r:?}");
            assert_eq!(fwd.idle_connections(&up), 1);
            closed_rx.recv().unwrap();
            let r = fwd.forward(&get(&up, b"/2"), &mut client).await;
            assert!(matches!(r, Forwarded::Relayed { status: 200, .. }), "{r:?}");
        });
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(fwd.counters().connections_reused, 0);
    }

    mod tls {
        use super::*;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

        /// A CA (PEM) and a rustls server config whose leaf for `localhost` it signed.
        fn ca_and_server() -> (String, Arc<rustls::ServerConfig>) {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &ca, &ca_key)
                .unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
            (ca.pem(), Arc::new(config))
        }

        fn tls_upstream(config: Arc<rustls::ServerConfig>) -> (SocketAddr, Arc<AtomicUsize>) {
            upstream(
                move |tcp| {
                    let conn = rustls::ServerConnection::new(config.clone()).ok()?;
                    Some(rustls::StreamOwned::new(conn, tcp))
                },
                echo,
            )
        }

        fn tls_forwarder(ca: Option<&str>, insecure: bool) -> Forwarder {
            Forwarder::new(settings(
                UpstreamTls::new(ca.map(str::as_bytes), insecure).unwrap(),
                Duration::from_secs(5),
            ))
        }

        #[test]
        fn https_upstreams_verify_against_the_given_ca_and_are_pooled() {
            let (ca, config) = ca_and_server();
            let (addr, accepted) = tls_upstream(config);
            let up = origin(Scheme::Https, "localhost", addr.port());
            let fwd = tls_forwarder(Some(&ca), false);
            let got = run(async {
                let (mut client, reader) = client_conn();
                for _ in 0..3 {
                    let r = fwd.forward(&get(&up, b"/tls"), &mut client).await;
                    assert!(
                        matches!(
                            r,
                            Forwarded::Relayed {
                                status: 200,
                                close: false,
                                ..
                            }
                        ),
                        "{r:?}"
                    );
                }
                finish(client, reader).await
            });
            let got = String::from_utf8(got).unwrap();
            let want = format!("GET /tls HTTP/1.1|Host: localhost:{}|", addr.port());
            assert_eq!(got.matches(&want).count(), 3, "{got}");
            assert_eq!(accepted.load(Ordering::SeqCst), 1);
        }

        #[test]
        fn an_unknown_issuer_is_a_502_unless_insecure() {
            let (_, config) = ca_and_server();
            let (addr, _) = tls_upstream(config);
            let up = origin(Scheme::Https, "localhost", addr.port());
            let (r, got) = forward_once(&tls_forwarder(None, false), &up);
            assert!(
                matches!(r, Forwarded::Failed { answered: true, .. }),
                "{r:?}"
            );
            assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
            assert!(
                got.contains(&format!(
                    "upstream localhost:{}: TLS handshake failed: invalid peer certificate",
                    addr.port()
                )),
                "{got}"
            );
            let (r, got) = forward_once(&tls_forwarder(None, true), &up);
            assert!(matches!(r, Forwarded::Relayed { status: 200, .. }), "{r:?}");
            assert!(got.contains("GET /x HTTP/1.1"), "{got}");
        }

        #[test]
        fn a_plain_http_server_on_an_https_upstream_is_a_502() {
            let (addr, _) = plain_upstream(|s| {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            });
            let up = origin(Scheme::Https, "localhost", addr.port());
            let (r, got) = forward_once(&tls_forwarder(None, true), &up);
            assert!(
                matches!(r, Forwarded::Failed { answered: true, .. }),
                "{r:?}"
            );
            assert!(got.contains("TLS handshake failed"), "{got}");
        }

        #[test]
        fn a_handshake_that_never_finishes_is_a_504() {
            let (release, wait) = mpsc::channel::<()>();
            let wait = std::sync::Mutex::new(wait);
            let (addr, _) = plain_upstream(move |_| {
                let _ = wait.lock().unwrap().recv();
            });
            let up = origin(Scheme::Https, "localhost", addr.port());
            let fwd = Forwarder::new(settings(
                UpstreamTls::new(None, true).unwrap(),
                Duration::from_millis(200),
            ));
            let (r, got) = forward_once(&fwd, &up);
            drop(release);
            assert!(
                matches!(r, Forwarded::Failed { answered: true, .. }),
                "{r:?}"
            );
            assert!(got.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{got}");
            assert!(got.contains("no connection within 0.2s"), "{got}");
        }
    }
}
