//! HTTP/2 towards clients: the driver of one [`http2::Conn`] over any [`Transport`] (h2c with
//! prior knowledge today; an ALPN `h2` TLS session calls the same [`serve`]).
//!
//! Per turn: feed what was read to the Conn, answer every complete request through the
//! protocol-neutral exchange (the same matching, consume cursors, refresh and unmatched policy
//! as HTTP/1), then write everything the Conn scheduled through the connection's [`Outbox`]
//! (frame bytes copied, large bodies referenced straight from the mapping, one vectored write).
//! A forwarded request is relayed from the HTTP/1.1 upstream into a buffer (bounded), then
//! re-framed as HEADERS + DATA; other streams of the connection wait meanwhile. A stop sends
//! GOAWAY and finishes the open streams; the idle timeout and the SETTINGS acknowledgement
//! deadline use the worker's sweeper like HTTP/1's read deadlines.
//!
//! This is a child module of `worker` (declared there) so that it shares the worker's private
//! connection bookkeeping without widening it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::Cache;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf};
use monoio::io::AsyncWriteRent;
use smallvec::SmallVec;

use super::{linger_close, since_start, ticks_until, Answered, Leg, Slot, Worker};
use crate::exchange::{self, Answer};
use crate::flowfile::Span;
use crate::http1::{self, request::MAX_HEADERS, ChunkedDecoder};
use crate::http2::{self, Conn, Event};
use crate::replay::{Replayer, RequestFacts};
use crate::server::clock;
use crate::server::forward::{self, Forwarded};
use crate::server::outbox::Outbox;
use crate::server::transport::Transport;
use crate::stats::{self, Counters, Outcome};

/// The largest forwarded response (head and body) relayed to an HTTP/2 client: it is buffered
/// whole before it is re-framed. Larger responses reset the stream.
const MAX_RELAYED: usize = 64 * 1024 * 1024;

/// A reply body as the Conn holds it until its DATA frames are written.
#[derive(Debug, Clone)]
pub enum Body {
    /// A slice of the recording's mapping, kept alive by the replayer (a connection-local `Rc`,
    /// so a clone is not an atomic operation shared with other workers).
    #[allow(clippy::redundant_allocation)] // deliberate, see above
    Mapped(Rc<Arc<Replayer>>, Span),
    /// A body made for this answer (a forwarded response, an error text).
    Owned(Rc<[u8]>),
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        match self {
            Body::Mapped(owner, span) => owner.recording().bytes(*span),
            Body::Owned(bytes) => bytes,
        }
    }
}

/// The HTTP/2 limits of a connection, from the server's request limits.
fn limits(limits: &http1::Limits) -> http2::Limits {
    http2::Limits {
        max_body: limits.max_body,
        ..http2::Limits::default()
    }
}

/// One HTTP/2 connection's state in its driver.
struct Driver<'w, S> {
    worker: &'w Worker,
    stream: S,
    peer: SocketAddr,
    /// TLS or not, and the CONNECT tunnel it came through: how its requests are routed.
    leg: Leg,
    conn: Conn<Body>,
    outbox: Outbox,
    /// The replayer in force for this turn, shared with the bodies it pins (an `Rc` around the
    /// shared `Arc`: pinning a body is a plain increment, not an atomic one on a line that
    /// every worker touches).
    #[allow(clippy::redundant_allocation)]
    replayer: Rc<Arc<Replayer>>,
    /// Reused for refreshed heads.
    scratch: Vec<u8>,
    /// Reused for HTTP/1 answers re-framed as HTTP/2 (forwards, 508, 400).
    http1: Vec<u8>,
    /// GOAWAY has been queued.
    going_away: bool,
}

/// Serves one HTTP/2 connection whose first bytes (`input`, the client preface at least in
/// part) were already read, until it ends.
pub(super) async fn serve<S: Transport>(
    worker: &Worker,
    slot: &Slot,
    stream: S,
    peer: SocketAddr,
    leg: Leg,
    mut input: Vec<u8>,
) {
    let shared = &*worker.shared;
    let mut current = Cache::new(&shared.replayer);
    let first = current.load().clone();
    let mut d = Driver {
        worker,
        stream,
        peer,
        leg,
        conn: Conn::new(limits(&shared.limits), clock::instant()),
        outbox: Outbox::new(first.clone()),
        replayer: Rc::new(first),
        scratch: Vec::new(),
        http1: Vec::new(),
        going_away: false,
    };
    loop {
        let latest = current.load();
        if !Arc::ptr_eq(latest, &d.replayer) {
            d.replayer = Rc::new(latest.clone());
        }
        d.outbox.serve_from(&d.replayer);
        let used = d.conn.recv(&input, clock::instant());
        input.drain(..used);
        let wall = clock::now();
        let mut answered = 0;
        while let Some(event) = d.conn.poll_event() {
            match event {
                Event::Request(id) => {
                    answered += 1;
                    d.answer(id, wall).await;
                }
                Event::Cancelled(_) => {}
                Event::StreamReset { .. } | Event::Error(_) => {
                    Counters::bump(&worker.counters().rejected);
                }
            }
        }
        super::super::admin::served(worker.counters(), answered, wall);
        if d.flush().await.is_err() {
            return;
        }
        if d.conn.is_done() {
            return linger_close(d.stream, input).await;
        }
        if worker.stopping.get() && !d.going_away {
            d.conn.go_away();
            d.going_away = true;
            continue;
        }
        if used > 0 && !input.is_empty() {
            // Whole frames may be left (the Conn stops taking input while output is queued).
            continue;
        }
        // Read more: the idle timeout, or the SETTINGS deadline when it comes first.
        if input.capacity() - input.len() < http2::MIN_READ_BUFFER {
            input.reserve(http2::MIN_READ_BUFFER);
        }
        let now = clock::instant();
        let base = since_start(worker);
        let idle_tick = ticks_until(base + shared.timeouts.idle);
        let settings_tick = d
            .conn
            .poll_timeout()
            .map(|at| ticks_until(base + at.saturating_duration_since(now)));
        slot.deadline
            .set(settings_tick.map_or(idle_tick, |s| s.min(idle_tick)));
        let cancel = slot.cancel.borrow().handle();
        let (len, cap) = (input.len(), input.capacity());
        let (res, slice) = monoio::io::CancelableAsyncReadRent::cancelable_read(
            &mut d.stream,
            input.slice_mut(len..cap),
            cancel,
        )
        .await;
        slot.deadline.set(u64::MAX);
        input = slice.into_inner();
        match res {
            Ok(n) if n > 0 => {}
            Err(_) if slot.expired.get() => {
                slot.expired.set(false);
                d.stream.drain_arrived(&mut input);
                d.conn.handle_timeout(clock::instant());
                if worker.ticks.get() >= idle_tick {
                    // Idle: say goodbye; streams still open (a client that stopped sending or
                    // reading) end with the connection.
                    d.conn.go_away();
                    d.going_away = true;
                    if d.conn.open_streams() > 0 {
                        let _ = d.flush().await;
                        return linger_close(d.stream, input).await;
                    }
                }
            }
            // The worker stops: take what has arrived; the next turn sends GOAWAY.
            Err(_) if worker.stopping.get() => {
                d.stream.drain_arrived(&mut input);
            }
            Ok(_) | Err(_) => return,
        }
    }
}

impl<S: Transport> Driver<'_, S> {
    /// Writes everything the Conn has scheduled (DATA within the peer's windows included).
    async fn flush(&mut self) -> std::io::Result<()> {
        while self.conn.pending_bytes() > 0 {
            let mut n = 0;
            for piece in self.conn.transmit() {
                self.outbox.push_body(piece);
                n += piece.len();
            }
            self.outbox.flush(&mut self.stream).await?;
            self.conn.advance(n);
        }
        Ok(())
    }

    /// Answers the complete request on stream `id` through the exchange.
    async fn answer(&mut self, id: u32, now: std::time::SystemTime) {
        let worker = self.worker;
        let shared = &*worker.shared;
        let counters = worker.counters();
        let verbose = shared.serve.verbose;
        let replayer: &Replayer = &self.replayer;
        let Some(req) = self.conn.request(id) else {
            return;
        };
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let n = fill_headers(&req, &mut slots);
        let facts = RequestFacts {
            is_head: req.method == b"HEAD",
            wants_close: false,
            http10_keep_alive: false,
        };
        let routing = self.leg.routing(shared);
        let via = &worker.forwarder.settings().via;
        let ex = exchange::decide(
            replayer,
            routing,
            via,
            exchange::Request {
                method: req.method,
                target: req.path,
                headers: &mut slots[..n],
                body: req.body,
                facts,
            },
        );
        ex.count(counters);
        let log = worker.log_sampled();
        let headers = &slots[..n];
        if let Some(live) = ex.missed(req.method, headers, req.body) {
            super::super::admin::missed(shared, worker.index, replayer, &live, now);
        }
        // The `-v` line's method and URL, copied (the request is gone once it is answered).
        let line = if verbose {
            ex.url(req.method)
                .map(|u| (req.method.to_vec(), u.to_string()))
        } else {
            None
        };
        let method = req.method;
        let replay = matches!(ex.answer, Answer::Replay(_));
        let mut failure = None;
        let outcome = match ex.answer {
            Answer::Replay(_) | Answer::Status(_) => {
                let mut outcome = ex.answered(None);
                if let Some(parts) = ex.describe(replayer, now, &mut self.scratch) {
                    outcome = ex.answered(Some(parts.status));
                    let fields: SmallVec<[(&[u8], &[u8]); 32]> = match parts.headers {
                        Some(h) => h.iter().collect(),
                        None => [(&b"content-length"[..], &b"0"[..])].into_iter().collect(),
                    };
                    let trailers: SmallVec<[(&[u8], &[u8]); 4]> = parts
                        .trailers
                        .map(|t| t.iter().collect())
                        .unwrap_or_default();
                    let body = if facts.is_head || parts.body.is_empty() {
                        None
                    } else {
                        Some(body_of(&self.replayer, parts.body))
                    };
                    if log {
                        let bytes = body.as_ref().map_or(0, |b| b.as_ref().len() as u64);
                        log_answer(worker, self.peer, &ex, method, outcome, bytes, now);
                    }
                    let _ = self.conn.answer(id, parts.status, &fields, body, &trailers);
                } else {
                    // No reply description (a recorded head without a status code): the stream
                    // must still end.
                    if log {
                        log_answer(worker, self.peer, &ex, method, Outcome::Killed, 0, now);
                    }
                    let _ = self.conn.kill(id);
                }
                if shared.serve.exit_when_done && replay && replayer.remaining() == 0 {
                    shared.done.store(true, Ordering::Relaxed);
                }
                outcome
            }
            Answer::Kill => {
                if log {
                    log_answer(worker, self.peer, &ex, method, Outcome::Killed, 0, now);
                }
                let _ = self.conn.kill(id);
                Outcome::Killed
            }
            Answer::LoopDetected | Answer::NoHost => {
                self.http1.clear();
                let rendered =
                    exchange::render_http1(&ex, replayer, via, now, false, &mut self.http1);
                let outcome = ex.answered(rendered.status);
                if log {
                    log_answer(worker, self.peer, &ex, method, outcome, 0, now);
                }
                answer_http1(&mut self.conn, id, &self.http1, false);
                outcome
            }
            Answer::Forward => {
                let parts = forward::Parts {
                    method,
                    target: req.path,
                    headers,
                    body: req.body,
                    version_minor: 1,
                    wants_close: false,
                    tunnel: self.leg.tunnel.as_ref(),
                    tls: self.leg.tls,
                };
                let record = forward::saved_side(&worker.forwarder, &self.stream);
                let mut capture = Capture {
                    bytes: std::mem::take(&mut self.http1),
                };
                capture.bytes.clear();
                let forwarded =
                    forward::forward_parts(&worker.forwarder, &parts, record, &mut capture).await;
                self.http1 = capture.bytes;
                let mut body_bytes = 0;
                let (outcome, complete) = match forwarded {
                    Forwarded::Relayed {
                        status,
                        body_bytes: relayed,
                        ..
                    } => {
                        body_bytes = relayed;
                        (Outcome::Forwarded(status), true)
                    }
                    Forwarded::Failed {
                        error, answered, ..
                    } => {
                        Counters::bump(&counters.upstream_errors);
                        let outcome = Outcome::UpstreamFailed(answered.then(|| error.status()));
                        if verbose {
                            failure = Some(error);
                        }
                        (outcome, answered)
                    }
                    Forwarded::Rejected { status } => {
                        Counters::take_back(&counters.forwarded);
                        Counters::bump(&counters.rejected);
                        (Outcome::Refused(status), true)
                    }
                    // Only the capture's limit makes it fail.
                    Forwarded::ClientGone => {
                        Counters::bump(&counters.upstream_errors);
                        (Outcome::UpstreamFailed(None), false)
                    }
                };
                if log {
                    log_answer(worker, self.peer, &ex, method, outcome, body_bytes, now);
                }
                if !complete || !answer_http1(&mut self.conn, id, &self.http1, facts.is_head) {
                    let _ = self.conn.kill(id);
                }
                outcome
            }
        };
        if let Some((method, url)) = line {
            let line = stats::request_line(&self.peer, &method, &url, outcome);
            let _ = match failure {
                Some(error) => std::io::Write::write_fmt(
                    &mut std::io::stdout().lock(),
                    format_args!("{line}: {error}\n"),
                ),
                None => std::io::Write::write_fmt(
                    &mut std::io::stdout().lock(),
                    format_args!("{line}\n"),
                ),
            };
        }
    }
}

/// Writes a sampled HTTP/2 request's `--log-json` line (before its stream is answered: the
/// request's bytes live in the Conn until then).
fn log_answer(
    worker: &Worker,
    peer: SocketAddr,
    ex: &exchange::Exchange<'_>,
    method: &[u8],
    outcome: Outcome,
    body_bytes: u64,
    turn: std::time::SystemTime,
) {
    worker.log_answer(&Answered {
        peer,
        method,
        url: ex.url(method),
        http_version: "HTTP/2.0",
        outcome,
        flow: match ex.answer {
            Answer::Replay(flow) => Some(flow.0),
            _ => None,
        },
        body_bytes,
        turn,
    });
}

/// Fills `slots` with the request's fields as the exchange and the forwarder see them: the
/// regular fields, then `host: <:authority>` unless the client sent a Host itself (what
/// mitmproxy's HTTP/2 → HTTP/1 conversion does). Returns how many slots are used; fields past
/// [`MAX_HEADERS`] are not seen.
fn fill_headers<'r>(
    req: &http2::Request<'r>,
    slots: &mut [httparse::Header<'r>; MAX_HEADERS],
) -> usize {
    let mut n = 0;
    let mut has_host = false;
    for (name, value) in req.headers() {
        if n == MAX_HEADERS - 1 {
            break;
        }
        // The Conn accepts only lowercase token names: ASCII.
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        has_host |= name == "host";
        slots[n] = httparse::Header { name, value };
        n += 1;
    }
    if !has_host && !req.authority.is_empty() {
        slots[n] = httparse::Header {
            name: "host",
            value: req.authority,
        };
        n += 1;
    }
    n
}

/// A body of the recording as the Conn holds it: referenced when it lies in the mapping,
/// copied otherwise.
#[allow(clippy::redundant_allocation)]
fn body_of(replayer: &Rc<Arc<Replayer>>, body: &[u8]) -> Body {
    match replayer.recording().span_of(body) {
        Some(span) => Body::Mapped(replayer.clone(), span),
        None => Body::Owned(Rc::from(body)),
    }
}

/// Answers stream `id` with an HTTP/1.1 response in `bytes` (interim 1xx heads skipped, a
/// chunked body decoded): what the forwarder relays and the HTTP/1 renderer writes. False when
/// `bytes` is not a complete response.
fn answer_http1(conn: &mut Conn<Body>, id: u32, bytes: &[u8], head_request: bool) -> bool {
    let mut at = 0;
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = response.parse(&bytes[at..]) else {
            return false;
        };
        let status = response.code.unwrap_or(502);
        if (100..200).contains(&status) {
            at += len;
            continue;
        }
        let rest = &bytes[at + len..];
        let chunked = response.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && h.value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        });
        let body: Rc<[u8]> = if head_request || matches!(status, 204 | 304) {
            Rc::from(&b""[..])
        } else if chunked {
            let mut decoded = Vec::with_capacity(rest.len());
            let mut decoder = ChunkedDecoder::new(u64::MAX);
            if decoder
                .feed(rest, |d| decoded.extend_from_slice(d))
                .is_err()
                || !decoder.is_done()
            {
                return false;
            }
            Rc::from(decoded)
        } else {
            Rc::from(rest)
        };
        let fields: SmallVec<[(&[u8], &[u8]); 32]> = response
            .headers
            .iter()
            .filter(|h| !(chunked && h.name.eq_ignore_ascii_case("content-length")))
            .map(|h| (h.name.as_bytes(), h.value))
            .collect();
        let body = (!body.is_empty()).then_some(Body::Owned(body));
        let _ = conn.answer(id, status, &fields, body, &[]);
        return true;
    }
}

/// The forwarder's client while an HTTP/2 stream is forwarded: collects the HTTP/1.1 response
/// (at most [`MAX_RELAYED`] bytes; past that, writes fail and the stream is reset).
struct Capture {
    bytes: Vec<u8>,
}

impl Capture {
    fn take(&mut self, part: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + part.len() > MAX_RELAYED {
            return Err(std::io::Error::other(
                "the forwarded response is too large to relay over HTTP/2",
            ));
        }
        self.bytes.extend_from_slice(part);
        Ok(part.len())
    }
}

impl AsyncWriteRent for Capture {
    async fn write<T: IoBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        // SAFETY: an IoBuf's first `bytes_init()` bytes at `read_ptr()` are initialised and
        // stay valid while we hold the buffer.
        let part = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        (self.take(part), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        let mut total = 0;
        // SAFETY: an IoVecBuf points at `read_iovec_len()` iovecs, each naming initialised
        // memory that stays valid while we hold the buffer.
        let iovecs =
            unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
        for iov in iovecs {
            // SAFETY: as above, each iovec names `iov_len` readable bytes.
            let part =
                unsafe { std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len) };
            match self.take(part) {
                Ok(n) => total += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(total), buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_http1_response_becomes_one_h2_answer_without_framing_fields() {
        let now = clock::instant();
        let mut conn: Conn<Body> = Conn::new(http2::Limits::default(), now);
        // Not a stream the Conn knows: the answer is dropped, the parse still succeeds.
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(answer_http1(&mut conn, 1, bytes, false));
        assert!(!answer_http1(&mut conn, 1, b"HTTP/1.1 200 OK\r\n", false));
        assert!(!answer_http1(
            &mut conn,
            1,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab",
            false
        ));
    }
}
