//! HTTP/2 towards clients: the driver of one [`http2::Conn`] over any [`Transport`] (h2c with
//! prior knowledge today; an ALPN `h2` TLS session calls the same [`serve`]).
//!
//! Per turn: feed what was read to the Conn, answer every complete request through the
//! protocol-neutral exchange (the same matching, consume cursors, refresh and unmatched policy
//! as HTTP/1), then write everything the Conn scheduled through the connection's [`Outbox`]
//! (frame bytes copied, large bodies referenced straight from the mapping, one vectored write).
//! A forwarded request runs as a future beside the connection's reads ([`read_beside`]): it
//! writes the upstream's HTTP/1.1 response into the stream's [`Pipe`] (bounded), and each turn
//! re-frames what the pipes hold as HEADERS + DATA within the stream's windows, so a slow
//! upstream holds up only its own stream. A stop sends
//! GOAWAY and finishes the open streams; the idle timeout and the SETTINGS acknowledgement
//! deadline use the worker's sweeper like HTTP/1's read deadlines.
//!
//! This is a child module of `worker` (declared there) so that it shares the worker's private
//! connection bookkeeping without widening it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};

use arc_swap::Cache;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf};
use monoio::io::AsyncWriteRent;
use smallvec::SmallVec;

use super::{linger_close, since_start, ticks_until, Answered, Leg, Slot, Worker};
use crate::exchange::{self, Answer, ReplyParts};
use crate::flowfile::Span;
use crate::http1::{self, request::MAX_HEADERS, ChunkedDecoder};
use crate::http2::{self, Conn, Event};
use crate::replay::date::WholeShift;
use crate::replay::{FlowId, Replayer, RequestFacts};
use crate::server::clock;
use crate::server::forward::{self, ClientSide, Forwarded, Forwarder};
use crate::server::outbox::Outbox;
use crate::server::transport::Transport;
use crate::stats::{self, Counters, Outcome};
use crate::upstream::{ForwardError, Origin};

/// Bytes a forward may leave in its [`Pipe`] before it waits for the driver to take them (it
/// writes at most one upstream read past this).
const PIPE_BYTES: usize = 64 * 1024;

/// Relayed body bytes a stream may have waiting for the client's window in the Conn before the
/// driver stops taking from its pipe: with [`PIPE_BYTES`], the memory bound of a forward.
const QUEUED_BYTES: usize = 256 * 1024;

/// A forward in flight, polled beside the connection's reads, with its stream.
type Task<'w> = (u32, Pin<Box<dyn Future<Output = ()> + 'w>>);

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
/// One HTTP/2 connection's serving state apart from its transport and its forwards in flight:
/// the Conn, and what answering its requests reuses. The direct ring ([`super::lane`]) serves a
/// session of a plain connection while every answer is made at once; monoio's [`resume`] takes
/// it over for a forward, a timer or the stop, and keeps it to the end.
pub(super) struct Session {
    peer: SocketAddr,
    /// TLS or not, and the CONNECT tunnel it came through: how its requests are routed.
    leg: Leg,
    conn: Conn<Body>,
    /// The replayer in force for this turn, shared with the bodies it pins (an `Rc` around the
    /// shared `Arc`: pinning a body is a plain increment, not an atomic one on a line that
    /// every worker touches).
    #[allow(clippy::redundant_allocation)]
    replayer: Rc<Arc<Replayer>>,
    /// Reused for refreshed heads.
    scratch: Vec<u8>,
    /// Reused for HTTP/1 answers re-framed as HTTP/2 (508, 400).
    http1: Vec<u8>,
    /// The last reply, reused while replies repeat.
    head: HeadCache,
    /// Reused for a request's split cookie fields joined.
    cookies: Vec<u8>,
    /// Forwards decided and not yet started (monoio's driver runs them).
    forwards: Vec<Forward>,
    /// GOAWAY has been queued.
    going_away: bool,
    /// The idle timeout's tick of the deadline last armed ([`Session::deadline`]; `u64::MAX`
    /// when it had none): the one a timer that fired went by, also after a hand-over.
    idle_tick: u64,
}

/// A forward [`Session::answer`] decided, to be started beside the connection's reads.
struct Forward {
    stream: u32,
    request: OwnedRequest,
    head_request: bool,
    /// The `-v` line's method and URL.
    line: Option<(Vec<u8>, String)>,
    logged: Option<LoggedForward>,
}

/// A [`Session`] served by monoio over a transport, with its forwards in flight.
struct Driver<'w, S> {
    worker: &'w Worker,
    stream: S,
    session: Session,
    outbox: Outbox,
    /// The forwards in flight.
    tasks: Vec<Task<'w>>,
    /// The forwarded streams being relayed, one per task (and a finished task's until its
    /// stream is done).
    relays: Vec<Relay>,
}

/// Serves one HTTP/2 connection whose first bytes (`input`, the client preface at least in
/// part) were already read, until it ends.
pub(super) async fn serve<S: Transport>(
    worker: &Worker,
    slot: &Slot,
    stream: S,
    peer: SocketAddr,
    leg: Leg,
    input: Vec<u8>,
) {
    let first = worker.shared.replayer.load_full();
    let session = Session::new(worker, peer, leg, first);
    resume(worker, slot, stream, session, input).await
}

/// Serves `session` over `stream` from the unread `input` on, until the connection ends (a
/// fresh one from [`serve`], or one the direct ring hands over).
pub(super) async fn resume<S: Transport>(
    worker: &Worker,
    slot: &Slot,
    stream: S,
    session: Session,
    mut input: Vec<u8>,
) {
    let shared = &*worker.shared;
    let mut current = Cache::new(&shared.replayer);
    let mut d = Driver {
        worker,
        stream,
        outbox: Outbox::new(session.replayer().clone()),
        session,
        tasks: Vec::new(),
        relays: Vec::new(),
    };
    loop {
        d.session.follow(current.load());
        d.outbox.serve_from(d.session.replayer());
        let wall = clock::now();
        let (used, answered) = d.session.take(worker, &input, wall);
        input.drain(..used);
        d.start_forwards();
        super::super::admin::served(worker.counters(), answered, wall);
        // What the forwards wrote, as their streams' windows allow, then every stream's frames.
        loop {
            let moved = d.pump();
            if d.flush().await.is_err() {
                return;
            }
            if !moved {
                break;
            }
        }
        if d.session.conn.is_done() {
            return linger_close(d.stream, input).await;
        }
        if worker.stopping.get() && !d.session.going_away {
            d.session.go_away();
            continue;
        }
        if used > 0 && !input.is_empty() {
            // Whole frames may be left (the Conn stops taking input while output is queued).
            continue;
        }
        if d.relays.iter().any(|r| r.pipe.fresh.get()) {
            continue;
        }
        // Read more: the idle timeout, or the SETTINGS deadline when it comes first. Not while
        // a forward waits for its upstream (the upstream timeout bounds that); but when every
        // forward waits for the client's window instead, nothing else would end a client that
        // stopped granting it, so the idle timeout counts then too.
        if input.capacity() - input.len() < http2::MIN_READ_BUFFER {
            input.reserve(http2::MIN_READ_BUFFER);
        }
        // A timer that fired before this driver took the connection over (the direct ring
        // hands a connection over when its slot expires) is handled without a read, by the
        // deadline the ring armed.
        let handed_over_expired = slot.expired.get();
        if !handed_over_expired {
            let idle = d.relays.iter().all(|r| r.waits_for_client(&d.session.conn));
            slot.deadline.set(d.session.deadline(worker, idle));
        }
        let mut woken = false;
        let res = if handed_over_expired {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            let cancel = slot.cancel.borrow().handle();
            let (len, cap) = (input.len(), input.capacity());
            let read = monoio::io::CancelableAsyncReadRent::cancelable_read(
                &mut d.stream,
                input.slice_mut(len..cap),
                cancel,
            );
            let (res, slice) = read_beside(read, &mut d.tasks, &d.relays, slot, &mut woken).await;
            input = slice.into_inner();
            res
        };
        slot.deadline.set(u64::MAX);
        match res {
            Ok(n) if n > 0 => {}
            Err(_) if slot.expired.get() => {
                slot.expired.set(false);
                d.stream.drain_arrived(&mut input);
                if d.session.expired(worker) {
                    // Idle with streams still open (a client that stopped sending or reading):
                    // they end with the connection.
                    let _ = d.flush().await;
                    return linger_close(d.stream, input).await;
                }
            }
            // The worker stops: take what has arrived; the next turn sends GOAWAY. Or a forward
            // has something for its stream: take what has arrived, then relay it.
            Err(_) if worker.stopping.get() || woken => {
                d.stream.drain_arrived(&mut input);
            }
            Ok(_) | Err(_) => return,
        }
    }
}

impl Session {
    /// A session for a connection from `peer` whose client preface is still to be read.
    pub(super) fn new(
        worker: &Worker,
        peer: SocketAddr,
        leg: Leg,
        replayer: Arc<Replayer>,
    ) -> Session {
        Session {
            peer,
            leg,
            conn: Conn::new(limits(&worker.shared.limits), clock::instant()),
            replayer: Rc::new(replayer),
            scratch: Vec::new(),
            http1: Vec::new(),
            head: HeadCache::default(),
            cookies: Vec::new(),
            forwards: Vec::new(),
            going_away: false,
            idle_tick: u64::MAX,
        }
    }

    /// Answers later requests from `latest` when that is not the replayer in force here (a
    /// reload swapped it).
    pub(super) fn follow(&mut self, latest: &Arc<Replayer>) {
        if !Arc::ptr_eq(latest, &self.replayer) {
            self.replayer = Rc::new(latest.clone());
            self.head.clear();
        }
    }

    /// The replayer this session's answers come from.
    pub(super) fn replayer(&self) -> &Arc<Replayer> {
        &self.replayer
    }

    /// Takes what the Conn accepts of `input` and answers every request that completes (a
    /// forward is only decided: see [`Session::has_forwards`]): the bytes taken, and the
    /// requests answered.
    pub(super) fn take(
        &mut self,
        worker: &Worker,
        input: &[u8],
        wall: std::time::SystemTime,
    ) -> (usize, u64) {
        let used = self.conn.recv(input, clock::instant());
        let mut answered = 0;
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Request(id) => {
                    answered += 1;
                    self.answer(worker, id, wall);
                }
                Event::Cancelled(_) => {}
                Event::StreamReset { .. } | Event::Error(_) => {
                    Counters::bump(&worker.counters().rejected);
                }
            }
        }
        (used, answered)
    }

    /// Forwards were decided that only monoio's driver can run.
    pub(super) fn has_forwards(&self) -> bool {
        !self.forwards.is_empty()
    }

    /// Output is queued that [`Session::stage`] would move.
    pub(super) fn has_output(&self) -> bool {
        self.conn.pending_bytes() > 0
    }

    /// Nothing more is to be done: the connection closes (lingering) once its output is written.
    pub(super) fn is_done(&self) -> bool {
        self.conn.is_done()
    }

    /// Moves the output the Conn has scheduled into `outbox`: frame bytes are copied and large
    /// recorded bodies referenced (see [`Outbox::push_body`]), so the Conn may reuse its room at
    /// once (and schedule more DATA within the windows).
    pub(super) fn stage(&mut self, outbox: &mut Outbox) {
        let mut n = 0;
        for piece in self.conn.transmit() {
            outbox.push_body(piece);
            n += piece.len();
        }
        self.conn.advance(n);
    }

    /// The tick at which the connection's timer fires: the SETTINGS acknowledgement's deadline,
    /// and the idle timeout when `idle` (nothing but the client is waited for), whose tick the
    /// session keeps for [`Session::expired`].
    pub(super) fn deadline(&mut self, worker: &Worker, idle: bool) -> u64 {
        let base = since_start(worker);
        let idle_tick = if idle {
            ticks_until(base + worker.shared.timeouts.idle)
        } else {
            u64::MAX
        };
        let settings_tick = self.conn.poll_timeout().map(|at| {
            let now = clock::instant();
            ticks_until(base + at.saturating_duration_since(now))
        });
        self.idle_tick = idle_tick;
        settings_tick.map_or(idle_tick, |s| s.min(idle_tick))
    }

    /// The connection's timer fired: the Conn's own deadlines, then the idle timeout of the
    /// deadline last armed (here or on the direct ring), which says goodbye. True when streams
    /// are still open then: the connection ends once its output is written.
    fn expired(&mut self, worker: &Worker) -> bool {
        self.conn.handle_timeout(clock::instant());
        if worker.ticks.get() < self.idle_tick {
            return false;
        }
        self.go_away();
        self.conn.open_streams() > 0
    }

    /// Queues GOAWAY: open streams are finished, new ones ignored.
    fn go_away(&mut self) {
        self.conn.go_away();
        self.going_away = true;
    }

    /// Answers the complete request on stream `id` through the exchange.
    fn answer(&mut self, worker: &Worker, id: u32, now: std::time::SystemTime) {
        let shared = &*worker.shared;
        let counters = worker.counters();
        let verbose = shared.serve.verbose;
        let replayer: &Replayer = &self.replayer;
        let Some(req) = self.conn.request(id) else {
            return;
        };
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let n = fill_headers(&req, &mut self.cookies, &mut slots);
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
        let outcome = match ex.answer {
            Answer::Replay(_) | Answer::Status(_) => {
                let outcome;
                let key = HeadKey::of(ex.answer, replayer, now);
                let known = key.is_some_and(|k| self.head.holds(k))
                    || match ex.describe(replayer, now, &mut self.scratch) {
                        Some(parts) => {
                            let body = (!parts.body.is_empty())
                                .then(|| body_of(&self.replayer, parts.body));
                            self.head.fill(key, &parts, body);
                            true
                        }
                        None => false,
                    };
                if known {
                    let head = &self.head;
                    outcome = ex.answered(Some(head.status));
                    let trailers: SmallVec<[(&[u8], &[u8]); 4]> = match ex.answer {
                        Answer::Replay(flow) => replayer
                            .trailers(flow)
                            .map(|t| t.iter().collect())
                            .unwrap_or_default(),
                        _ => SmallVec::new(),
                    };
                    let body = if facts.is_head {
                        None
                    } else {
                        head.body.clone()
                    };
                    if log {
                        let bytes = body.as_ref().map_or(0, |b| b.as_ref().len() as u64);
                        log_answer(worker, self.peer, &ex, method, outcome, bytes, now);
                    }
                    let _ = self.conn.answer_block(id, &head.block, body, &trailers);
                } else {
                    // No reply description (a recorded head without a status code): the stream
                    // must still end.
                    outcome = Outcome::Killed;
                    if log {
                        log_answer(worker, self.peer, &ex, method, outcome, 0, now);
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
                let request = OwnedRequest {
                    method: method.to_vec(),
                    target: req.path.to_vec(),
                    fields: headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    body: req.body.to_vec(),
                    tunnel: self.leg.tunnel.clone(),
                    tls: self.leg.tls,
                };
                let logged = log.then(|| LoggedForward::new(method, ex.url(method), now));
                self.forwards.push(Forward {
                    stream: id,
                    request,
                    head_request: facts.is_head,
                    line,
                    logged,
                });
                return;
            }
        };
        if let Some((method, url)) = line {
            print_line(&self.peer, &method, &url, outcome, None);
        }
    }
}

impl<S: Transport> Driver<'_, S> {
    /// Writes everything the Conn has scheduled (DATA within the peer's windows included).
    async fn flush(&mut self) -> std::io::Result<()> {
        while self.session.has_output() {
            self.session.stage(&mut self.outbox);
            self.outbox.flush(&mut self.stream).await?;
        }
        Ok(())
    }

    /// Starts the forwards the session decided, each relayed into its stream.
    fn start_forwards(&mut self) {
        let worker = self.worker;
        for f in self.session.forwards.drain(..) {
            let record = forward::saved_side(&worker.forwarder, &self.stream);
            let pipe = Rc::new(Pipe::default());
            let task = relay_forward(&worker.forwarder, f.request, record, PipeSink(pipe.clone()));
            self.tasks.push((f.stream, Box::pin(task)));
            self.relays.push(Relay {
                stream: f.stream,
                pipe,
                head_request: f.head_request,
                body: None,
                line: f.line,
                logged: f.logged,
            });
        }
    }

    /// Moves what the forwards wrote into their streams (at most [`QUEUED_BYTES`] waiting per
    /// stream) and ends the relays whose forward returned. True when something moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut i = 0;
        while i < self.relays.len() {
            let (progress, state) = self.relays[i].step(&mut self.session.conn);
            moved |= progress;
            if state == RelayState::Going {
                i += 1;
                continue;
            }
            let relay = self.relays.swap_remove(i);
            // A dropped forward stops where it is (its upstream connection is closed).
            self.tasks.retain(|(id, _)| *id != relay.stream);
            if state == RelayState::Broken {
                let _ = self.session.conn.kill(relay.stream);
            }
            self.finish(relay);
            moved = true;
        }
        moved
    }

    /// Counts and logs a relay that ended.
    fn finish(&mut self, relay: Relay) {
        let counters = self.worker.counters();
        let verbose = self.worker.shared.serve.verbose;
        let mut failure = None;
        let mut body_bytes = 0;
        let outcome = match relay.pipe.result.borrow_mut().take() {
            Some(Forwarded::Relayed {
                status,
                body_bytes: relayed,
                ..
            }) => {
                body_bytes = relayed;
                Outcome::Forwarded(status)
            }
            Some(Forwarded::Failed {
                error, answered, ..
            }) => {
                Counters::bump(&counters.upstream_errors);
                let outcome = Outcome::UpstreamFailed(answered.then(|| error.status()));
                if verbose {
                    failure = Some(error);
                }
                outcome
            }
            Some(Forwarded::Rejected { status }) => {
                Counters::take_back(&counters.forwarded);
                Counters::bump(&counters.rejected);
                Outcome::Refused(status)
            }
            Some(Forwarded::ClientGone) => {
                Counters::bump(&counters.upstream_errors);
                Outcome::UpstreamFailed(None)
            }
            // The client reset the stream while it was forwarded.
            None => return,
        };
        if let Some(logged) = &relay.logged {
            logged.write(self.worker, self.session.peer, outcome, body_bytes);
        }
        if let Some((method, url)) = relay.line {
            print_line(&self.session.peer, &method, &url, outcome, failure);
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
        flow: ex.replayed_flow(),
        body_bytes,
        turn,
    });
}

/// Prints a `-v` line.
fn print_line(
    peer: &SocketAddr,
    method: &[u8],
    url: &str,
    outcome: Outcome,
    failure: Option<ForwardError>,
) {
    let line = stats::request_line(peer, method, &url, outcome);
    let _ = match failure {
        Some(error) => std::io::Write::write_fmt(
            &mut std::io::stdout().lock(),
            format_args!("{line}: {error}\n"),
        ),
        None => std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!("{line}\n")),
    };
}

/// Waits for `read` while polling the forwards in `tasks`: once a relay has something new for
/// the connection (bytes, or its forward's result), the read is cancelled through the slot's
/// canceller, as a stop cancels it (the unread bytes stay in the socket), and `woken` is set.
async fn read_beside<F: Future>(
    read: F,
    tasks: &mut Vec<Task<'_>>,
    relays: &[Relay],
    slot: &Slot,
    woken: &mut bool,
) -> F::Output {
    let mut read = std::pin::pin!(read);
    std::future::poll_fn(|cx| {
        tasks.retain_mut(|(_, task)| task.as_mut().poll(cx).is_pending());
        if !*woken && relays.iter().any(|r| r.pipe.fresh.get()) {
            *woken = true;
            let canceller = std::mem::take(&mut *slot.cancel.borrow_mut());
            *slot.cancel.borrow_mut() = canceller.cancel();
        }
        read.as_mut().poll(cx)
    })
    .await
}

/// What a connection's last reply head was derived from: a replayed flow with the whole-second
/// shift of its refreshed dates ([`Replayer::head_shift`]), or a status answer. Equal keys (for
/// one replayer) give byte-identical heads, bodies and statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadKey {
    /// A replayed flow and the shift of its dates (`None`: its head does not move with the
    /// clock).
    Replay(FlowId, Option<WholeShift>),
    /// A status answer (no recorded head: `content-length: 0`).
    Status(u16),
}

impl HeadKey {
    /// The key of an answer at `now`; `None` for answers that are not recorded replies.
    fn of(answer: Answer, replayer: &Replayer, now: std::time::SystemTime) -> Option<HeadKey> {
        match answer {
            Answer::Replay(flow) => Some(HeadKey::Replay(flow, replayer.head_shift(flow, now))),
            Answer::Status(code) => Some(HeadKey::Status(code)),
            _ => None,
        }
    }
}

/// The last reply a connection described, ready to send again: a load test asks for the same
/// flow again and again, and within one second of refreshed dates its head is the same, so the
/// reply goes out as the same HPACK block without rendering, parsing or encoding its head. The
/// encoding is stateless ([`reply::encode_head`]), so the block is valid on any stream. The
/// cache must be cleared when the replayer changes (a flow of the next one is another reply).
#[derive(Default)]
struct HeadCache {
    /// What the reply was derived from; `None`: nothing to reuse.
    key: Option<HeadKey>,
    /// Its status code.
    status: u16,
    /// Its body (`None`: empty).
    body: Option<Body>,
    /// Its head as an HPACK block.
    block: Vec<u8>,
}

impl HeadCache {
    /// Whether the cached reply is the one `key` describes.
    fn holds(&self, key: HeadKey) -> bool {
        self.key == Some(key)
    }

    /// Forgets the cached reply (the replayer changed).
    fn clear(&mut self) {
        self.key = None;
        self.body = None;
    }

    /// Caches the reply `parts` describe under `key` (`None`: encoded, never reused), its head
    /// encoded as a block and `body` as the Conn holds it.
    fn fill(&mut self, key: Option<HeadKey>, parts: &ReplyParts<'_>, body: Option<Body>) {
        let fields: SmallVec<[(&[u8], &[u8]); 32]> = match &parts.headers {
            Some(h) => h.iter().collect(),
            None => [(&b"content-length"[..], &b"0"[..])].into_iter().collect(),
        };
        self.block.clear();
        http2::reply::encode_head(&mut self.block, parts.status, &fields);
        self.key = key;
        self.status = parts.status;
        self.body = body;
    }
}

/// Fills `slots` with the request's fields as the exchange and the forwarder see them, as
/// mitmproxy converts an HTTP/2 request to HTTP/1 (`_http1.py`): `host: <:authority>` first
/// unless the client sent a Host itself, then the regular fields, with several `cookie` fields
/// joined into one with `"; "` at the first one's place (RFC 9113 §8.2.3: before the request
/// reaches an HTTP/1.1 context). `cookies` holds the joined value. Returns how many slots are
/// used; fields past [`MAX_HEADERS`] are not seen.
fn fill_headers<'r>(
    req: &http2::Request<'r>,
    cookies: &'r mut Vec<u8>,
    slots: &mut [httparse::Header<'r>; MAX_HEADERS],
) -> usize {
    cookies.clear();
    let mut split = 0;
    let mut has_host = false;
    for (name, value) in req.headers() {
        has_host |= name == b"host";
        if name == b"cookie" {
            if split > 0 {
                cookies.extend_from_slice(b"; ");
            }
            cookies.extend_from_slice(value);
            split += 1;
        }
    }
    let joined: &'r [u8] = cookies;
    let mut n = 0;
    if !has_host && !req.authority.is_empty() {
        slots[n] = httparse::Header {
            name: "host",
            value: req.authority,
        };
        n += 1;
    }
    let mut cookie_placed = false;
    for (name, value) in req.headers() {
        if n == MAX_HEADERS {
            break;
        }
        // The Conn accepts only lowercase token names: ASCII.
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let value = if split > 1 && name == "cookie" {
            if std::mem::replace(&mut cookie_placed, true) {
                continue;
            }
            joined
        } else {
            value
        };
        slots[n] = httparse::Header { name, value };
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
    let answered = with_final_head(bytes, head_request, |status, fields, framing, len| {
        let rest = &bytes[len..];
        let body: Rc<[u8]> = match framing {
            Framing::Done => Rc::from(&b""[..]),
            Framing::Chunked(mut decoder) => {
                let mut decoded = Vec::with_capacity(rest.len());
                if decoder
                    .feed(rest, |d| decoded.extend_from_slice(d))
                    .is_err()
                    || !decoder.is_done()
                {
                    return false;
                }
                Rc::from(decoded)
            }
            Framing::Length(_) | Framing::Eof => Rc::from(rest),
        };
        let body = (!body.is_empty()).then_some(Body::Owned(body));
        let _ = conn.answer(id, status, fields, body, &[]);
        true
    });
    matches!(answered, Ok(Some(true)))
}

/// A forwarded request, owned: its forward outlives the turn that took it.
struct OwnedRequest {
    method: Vec<u8>,
    target: Vec<u8>,
    /// The header fields as [`fill_headers`] gave them (cookies joined, Host added).
    fields: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    tunnel: Option<Origin>,
    tls: bool,
}

/// Forwards `req`, writing the upstream's response (HTTP/1.1 bytes) into `sink`'s pipe, then
/// its result.
async fn relay_forward(
    forwarder: &Forwarder,
    req: OwnedRequest,
    record: Option<ClientSide>,
    mut sink: PipeSink,
) {
    let headers: Vec<httparse::Header<'_>> = req
        .fields
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect();
    let parts = forward::Parts {
        method: &req.method,
        target: &req.target,
        headers: &headers,
        body: &req.body,
        version_minor: 1,
        wants_close: false,
        tunnel: req.tunnel.as_ref(),
        tls: req.tls,
    };
    let forwarded = forward::forward_parts(forwarder, &parts, record, &mut sink).await;
    *sink.0.result.borrow_mut() = Some(forwarded);
    sink.0.fresh.set(true);
}

/// What a forward hands its HTTP/2 stream, shared by the forward's future and the driver.
#[derive(Default)]
struct Pipe {
    /// The upstream's response as HTTP/1.1 bytes, written and not yet taken.
    bytes: RefCell<Vec<u8>>,
    /// The forward's result, once it returned.
    result: RefCell<Option<Forwarded>>,
    /// Bytes or the result arrived since the driver last took from the pipe.
    fresh: Cell<bool>,
    /// The forward, waiting for room.
    waiter: RefCell<Option<Waker>>,
}

/// The forwarder's client for an HTTP/2 stream: writes into the stream's [`Pipe`], waiting
/// while it holds [`PIPE_BYTES`].
struct PipeSink(Rc<Pipe>);

impl PipeSink {
    async fn take(&mut self, part: &[u8]) -> usize {
        let pipe = &self.0;
        std::future::poll_fn(|cx| {
            if pipe.bytes.borrow().len() < PIPE_BYTES {
                Poll::Ready(())
            } else {
                *pipe.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        pipe.bytes.borrow_mut().extend_from_slice(part);
        pipe.fresh.set(true);
        part.len()
    }
}

impl AsyncWriteRent for PipeSink {
    async fn write<T: IoBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        // SAFETY: an IoBuf's first `bytes_init()` bytes at `read_ptr()` are initialised and
        // stay valid while we hold the buffer (until we return it).
        let part = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = self.take(part).await;
        (Ok(n), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        let mut total = 0;
        // SAFETY: an IoVecBuf points at `read_iovec_len()` iovecs, each naming initialised
        // memory that stays valid while we hold the buffer (until we return it).
        let iovecs =
            unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
        for iov in iovecs {
            // SAFETY: as above, each iovec names `iov_len` readable bytes.
            let part =
                unsafe { std::slice::from_raw_parts(iov.iov_base as *const u8, iov.iov_len) };
            total += self.take(part).await;
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

/// How a relayed response body is delimited in the pipe.
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked: decoded as it arrives.
    Chunked(ChunkedDecoder),
    /// Until the forward returns (a close-delimited upstream body).
    Eof,
    /// The response has ended on the stream.
    Done,
}

/// Where a relay stands after a [`Relay::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayState {
    /// More to come.
    Going,
    /// The response ended on its stream and the forward returned.
    Complete,
    /// The response cannot end well (the forward failed mid-body, the client reset the stream,
    /// the upstream's framing broke): reset the stream.
    Broken,
}

/// A forwarded stream being relayed: its pipe, and how far its response is re-framed.
struct Relay {
    stream: u32,
    pipe: Rc<Pipe>,
    /// The request was HEAD: the response has no body whatever its head says.
    head_request: bool,
    /// `None` until the response head is sent.
    body: Option<Framing>,
    /// The `-v` line's method and URL.
    line: Option<(Vec<u8>, String)>,
    /// A sampled request's `--log-json` facts, written when the forward ends.
    logged: Option<LoggedForward>,
}

/// What a sampled forward's `--log-json` line needs once the forward ends, when the request's
/// bytes are gone from the Conn: its method and destination, copied.
struct LoggedForward {
    method: Vec<u8>,
    /// The destination's parts (`None`: no usable destination).
    url: Option<OwnedUrl>,
    /// The clock reading of the turn that read the request.
    turn: std::time::SystemTime,
}

/// An [`exchange::Url`] with its destination's bytes owned.
struct OwnedUrl {
    scheme: Vec<u8>,
    host: Vec<u8>,
    port: u16,
    target: Vec<u8>,
    connect: bool,
}

impl LoggedForward {
    fn new(method: &[u8], url: Option<exchange::Url<'_>>, turn: std::time::SystemTime) -> Self {
        LoggedForward {
            method: method.to_vec(),
            url: url.map(|u| OwnedUrl {
                scheme: u.route.scheme.to_vec(),
                host: u.route.host.to_vec(),
                port: u.route.port,
                target: u.route.target.to_vec(),
                connect: u.connect,
            }),
            turn,
        }
    }

    /// Writes the line for the forward's `outcome`.
    fn write(&self, worker: &Worker, peer: SocketAddr, outcome: Outcome, body_bytes: u64) {
        let route = self.url.as_ref().map(|u| crate::upstream::Destination {
            scheme: &u.scheme,
            host: &u.host,
            port: u.port,
            target: &u.target,
        });
        worker.log_answer(&Answered {
            peer,
            method: &self.method,
            url: route.as_ref().map(|route| exchange::Url {
                route,
                connect: self.url.as_ref().is_some_and(|u| u.connect),
            }),
            http_version: "HTTP/2.0",
            outcome,
            flow: None,
            body_bytes,
            turn: self.turn,
        });
    }
}

impl Relay {
    /// Re-frames what the pipe holds onto the stream: the head (interim 1xx heads skipped),
    /// then body bytes while fewer than [`QUEUED_BYTES`] wait in the Conn. Returns whether
    /// bytes were taken, and where the relay stands.
    /// True while the relay cannot go on until the client grants window: body bytes wait in
    /// the Conn for it (the pipe, and then the upstream, wait behind them).
    fn waits_for_client(&self, conn: &Conn<Body>) -> bool {
        conn.unsent(self.stream).is_some_and(|n| n > 0)
    }

    fn step(&mut self, conn: &mut Conn<Body>) -> (bool, RelayState) {
        self.pipe.fresh.set(false);
        let ended = self.pipe.result.borrow().is_some();
        let relayed = matches!(*self.pipe.result.borrow(), Some(Forwarded::Relayed { .. }));
        let mut bytes = self.pipe.bytes.borrow_mut();
        let before = bytes.len();
        let id = self.stream;
        if !matches!(self.body, Some(Framing::Done)) && conn.unsent(id).is_none() {
            return (false, RelayState::Broken);
        }
        if self.body.is_none() {
            match relay_head(conn, id, &bytes, self.head_request) {
                Ok(Some((used, framing))) => {
                    bytes.drain(..used);
                    self.body = Some(framing);
                }
                // A head (interim 1xx heads included) that fills the pipe never ends: the
                // forward waits for room that only its end would make.
                Ok(None) if bytes.len() >= PIPE_BYTES => return (false, RelayState::Broken),
                Ok(None) => {}
                Err(()) => return (false, RelayState::Broken),
            }
        }
        if let Some(framing) = &mut self.body {
            let budget = QUEUED_BYTES.saturating_sub(conn.unsent(id).unwrap_or(0));
            let n = budget.min(bytes.len());
            let data = |conn: &mut Conn<Body>, piece: &[u8]| {
                if !piece.is_empty() {
                    let _ = conn.send_data(id, Body::Owned(Rc::from(piece)));
                }
            };
            let done = match framing {
                Framing::Length(left) => {
                    let k = n.min(usize::try_from(*left).unwrap_or(usize::MAX));
                    data(conn, &bytes[..k]);
                    bytes.drain(..k);
                    *left -= k as u64;
                    *left == 0
                }
                Framing::Chunked(decoder) => {
                    let mut decoded = Vec::new();
                    let Ok(used) = decoder.feed(&bytes[..n], |d| decoded.extend_from_slice(d))
                    else {
                        return (true, RelayState::Broken);
                    };
                    data(conn, &decoded);
                    bytes.drain(..used);
                    decoder.is_done()
                }
                Framing::Eof => {
                    data(conn, &bytes[..n]);
                    bytes.drain(..n);
                    // The upstream's close ends the body only when the forward completed: a
                    // failed one (a read timeout midway) cut it short, and the stream is reset.
                    if ended && bytes.is_empty() && !relayed {
                        return (true, RelayState::Broken);
                    }
                    ended && bytes.is_empty()
                }
                Framing::Done => {
                    bytes.clear();
                    false
                }
            };
            if done {
                let _ = conn.send_end(id, &[]);
                *framing = Framing::Done;
            }
        }
        let moved = bytes.len() != before;
        if moved {
            if let Some(waiter) = self.pipe.waiter.borrow_mut().take() {
                waiter.wake();
            }
        }
        let state = match &self.body {
            Some(Framing::Done) if ended => RelayState::Complete,
            _ if !ended => RelayState::Going,
            // The forward returned: an incomplete head, or a body whose bytes ran out, cannot
            // end the response.
            None => RelayState::Broken,
            Some(_) if bytes.is_empty() => RelayState::Broken,
            // Body bytes still wait for room on the stream.
            Some(_) => RelayState::Going,
        };
        (moved, state)
    }
}

/// Sends the response head at the start of `bytes` on `stream` (interim 1xx heads skipped):
/// how many bytes it took and how its body is delimited, `None` while the head is incomplete,
/// `Err` when it is not HTTP/1.1.
fn relay_head(
    conn: &mut Conn<Body>,
    stream: u32,
    bytes: &[u8],
    head_request: bool,
) -> Result<Option<(usize, Framing)>, ()> {
    with_final_head(bytes, head_request, |status, fields, framing, len| {
        let end = matches!(framing, Framing::Done);
        let _ = conn.send_head(stream, status, fields, end);
        (len, framing)
    })
}

/// Reads the final HTTP/1.1 response head at the start of `bytes` (interim 1xx heads skipped)
/// and gives `on_head` its status, its fields as HTTP/2 sends them (no `Content-Length` beside
/// a chunked body, which is re-framed), its body's framing and the bytes up to the body: the
/// one reading of a relayed or rendered HTTP/1 answer. `None` while the head is incomplete,
/// `Err` when it is not HTTP/1.1.
fn with_final_head<R>(
    bytes: &[u8],
    head_request: bool,
    on_head: impl FnOnce(u16, &[(&[u8], &[u8])], Framing, usize) -> R,
) -> Result<Option<R>, ()> {
    let mut at = 0;
    loop {
        // As many fields as the relay lets through.
        let mut slots = [httparse::EMPTY_HEADER; crate::upstream::MAX_RESPONSE_FIELDS];
        let mut response = httparse::Response::new(&mut slots);
        let len = match response.parse(&bytes[at..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(()),
        };
        let status = response.code.unwrap_or(502);
        if (100..200).contains(&status) {
            at += len;
            continue;
        }
        let framing = framing_of(response.headers, status, head_request)?;
        let chunked = matches!(framing, Framing::Chunked(_));
        let fields: SmallVec<[(&[u8], &[u8]); 32]> = response
            .headers
            .iter()
            .filter(|h| !(chunked && h.name.eq_ignore_ascii_case("content-length")))
            .map(|h| (h.name.as_bytes(), h.value))
            .collect();
        return Ok(Some(on_head(status, &fields, framing, at + len)));
    }
}

/// How the body of an HTTP/1.1 response with these fields is delimited (RFC 9112 §6.3).
fn framing_of(
    headers: &[httparse::Header<'_>],
    status: u16,
    head_request: bool,
) -> Result<Framing, ()> {
    if head_request || matches!(status, 204 | 304) {
        return Ok(Framing::Done);
    }
    let chunked = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    });
    if chunked {
        return Ok(Framing::Chunked(ChunkedDecoder::new(u64::MAX)));
    }
    // The relay's own reading of the field (a list of equal lengths is one length).
    let mut length = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        length = Some(crate::upstream::content_length_value(h.value, length).map_err(drop)?);
    }
    Ok(match length {
        Some(0) => Framing::Done,
        Some(n) => Framing::Length(n),
        None => Framing::Eof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection past the preface with stream 1 (`GET /`) delivered, output drained.
    fn with_stream_one() -> Conn<Body> {
        let now = clock::instant();
        let mut conn: Conn<Body> = Conn::new(http2::Limits::default(), now);
        let mut input = http2::PREFACE.to_vec();
        input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let mut block = Vec::new();
        for (n, v) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", "/"),
        ] {
            block.extend_from_slice(&[0, n.len() as u8]);
            block.extend_from_slice(n.as_bytes());
            block.push(v.len() as u8);
            block.extend_from_slice(v.as_bytes());
        }
        // HEADERS, END_STREAM | END_HEADERS, stream 1.
        input.extend_from_slice(&[0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]);
        input.extend_from_slice(&block);
        assert_eq!(conn.recv(&input, now), input.len());
        assert_eq!(conn.poll_event(), Some(Event::Request(1)));
        let n = conn.pending_bytes();
        conn.advance(n);
        conn
    }

    fn relay(bytes: &[u8]) -> Relay {
        let pipe = Rc::new(Pipe::default());
        pipe.bytes.borrow_mut().extend_from_slice(bytes);
        Relay {
            stream: 1,
            pipe,
            head_request: false,
            body: None,
            line: None,
            logged: None,
        }
    }

    fn output(conn: &mut Conn<Body>) -> Vec<u8> {
        let out: Vec<u8> = conn.transmit().flatten().copied().collect();
        conn.advance(out.len());
        out
    }

    #[test]
    fn a_relayed_chunked_response_ends_its_stream_once_the_forward_returns() {
        let mut conn = with_stream_one();
        let mut r = relay(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
        assert_eq!(r.step(&mut conn), (true, RelayState::Going));
        r.pipe
            .bytes
            .borrow_mut()
            .extend_from_slice(b"lo\r\n0\r\n\r\n");
        assert_eq!(r.step(&mut conn), (true, RelayState::Going));
        let out = output(&mut conn);
        // HEADERS, then DATA "hel", DATA "lo", and an empty DATA with END_STREAM.
        assert_eq!(out[3], 1, "HEADERS first");
        assert!(out.windows(3).any(|w| w == b"hel"));
        assert!(out.ends_with(&[0, 0, 0, 0, 1, 0, 0, 0, 1]), "{out:?}");
        assert_eq!(conn.open_streams(), 0);
        // The stream is done; the relay ends with the forward's result.
        *r.pipe.result.borrow_mut() = Some(Forwarded::Relayed {
            status: 200,
            close: false,
            body_bytes: 5,
        });
        assert_eq!(r.step(&mut conn), (false, RelayState::Complete));
    }

    #[test]
    fn a_relay_whose_forward_returns_before_the_body_ends_is_broken() {
        let mut conn = with_stream_one();
        let mut r = relay(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        *r.pipe.result.borrow_mut() = Some(Forwarded::Relayed {
            status: 200,
            close: false,
            body_bytes: 5,
        });
        assert_eq!(r.step(&mut conn), (true, RelayState::Broken));
        // An incomplete head is broken as well.
        let mut conn = with_stream_one();
        let mut r = relay(b"HTTP/1.1 200 OK\r\nContent-Le");
        *r.pipe.result.borrow_mut() = Some(Forwarded::ClientGone);
        assert_eq!(r.step(&mut conn), (false, RelayState::Broken));
    }

    #[test]
    fn a_head_the_upstream_relay_accepts_is_relayed_over_http2_too() {
        // 120 fields (more than a request may have) and a Content-Length list of equal values.
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n".to_vec();
        for i in 0..119 {
            head.extend_from_slice(format!("x-f{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\nhello");
        let mut conn = with_stream_one();
        let mut r = relay(&head);
        *r.pipe.result.borrow_mut() = Some(Forwarded::Relayed {
            status: 200,
            close: false,
            body_bytes: 5,
        });
        assert_eq!(r.step(&mut conn), (true, RelayState::Complete));
        assert!(output(&mut conn).windows(5).any(|w| w == b"hello"));
        // Different lengths are not a framing.
        let mut conn = with_stream_one();
        let mut r = relay(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello");
        assert_eq!(r.step(&mut conn), (false, RelayState::Broken));
    }

    #[test]
    fn interim_heads_that_fill_the_pipe_before_a_final_head_break_the_relay() {
        let mut hints = b"HTTP/1.1 103 Early Hints\r\nlink: <".to_vec();
        hints.resize(40 * 1024, b'x');
        hints.extend_from_slice(b">\r\n\r\n");
        // One such head and the start of the final one: waiting for the rest is right.
        let mut conn = with_stream_one();
        let mut r = relay(&hints);
        r.pipe
            .bytes
            .borrow_mut()
            .extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(r.step(&mut conn), (false, RelayState::Going));
        // Two fill the pipe, which the forward then waits on for good: broken.
        let mut conn = with_stream_one();
        let mut r = relay(&hints.repeat(2));
        assert_eq!(r.step(&mut conn), (false, RelayState::Broken));
    }

    #[test]
    fn a_close_delimited_body_ends_its_stream_only_when_the_forward_completed() {
        // The upstream closed after "hello": a complete body when the forward returned Relayed.
        let mut conn = with_stream_one();
        let mut r = relay(b"HTTP/1.1 200 OK\r\n\r\nhello");
        *r.pipe.result.borrow_mut() = Some(Forwarded::Relayed {
            status: 200,
            close: true,
            body_bytes: 5,
        });
        assert_eq!(r.step(&mut conn), (true, RelayState::Complete));
        // The same bytes from a forward that did not complete: cut short, so reset.
        let mut conn = with_stream_one();
        let mut r = relay(b"HTTP/1.1 200 OK\r\n\r\nhello");
        *r.pipe.result.borrow_mut() = Some(Forwarded::ClientGone);
        assert_eq!(r.step(&mut conn), (true, RelayState::Broken));
    }

    #[test]
    fn a_relay_takes_no_more_than_its_queue_allows_while_the_window_is_shut() {
        let mut conn = with_stream_one();
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        head.resize(head.len() + 1_000_000, b'x');
        let mut r = relay(&head);
        while r.step(&mut conn) == (true, RelayState::Going) {}
        // The client's 65,535-byte window is scheduled; of the rest, QUEUED_BYTES wait in the
        // Conn and the remainder stays in the pipe (the forward waits while it is full).
        assert_eq!(conn.unsent(1), Some(QUEUED_BYTES));
        assert_eq!(
            r.pipe.bytes.borrow().len(),
            1_000_000 - QUEUED_BYTES - 65_535
        );
        assert_eq!(r.step(&mut conn), (false, RelayState::Going));
    }

    #[test]
    fn the_head_cache_holds_one_key_until_filled_again_or_cleared() {
        let lines = b"content-length: 5\r\ndate: x\r\n";
        let parts = ReplyParts {
            status: 200,
            headers: Some(exchange::ReplyFields::Rendered(lines)),
            refresh_delta: None,
            body: b"hello",
            trailers: None,
            close: false,
        };
        let shift = Some(WholeShift::of(3.5));
        let key = HeadKey::Replay(FlowId(3), shift);
        let mut cache = HeadCache::default();
        assert!(!cache.holds(key));
        cache.fill(
            Some(key),
            &parts,
            Some(Body::Owned(Rc::from(&b"hello"[..]))),
        );
        let pairs: Vec<(&[u8], &[u8])> = parts.headers.unwrap().iter().collect();
        let mut expected = Vec::new();
        http2::reply::encode_head(&mut expected, 200, &pairs);
        assert_eq!(cache.block, expected);
        assert_eq!(cache.status, 200);
        assert!(cache.holds(key));
        assert!(!cache.holds(HeadKey::Replay(FlowId(4), shift)));
        assert!(!cache.holds(HeadKey::Replay(FlowId(3), Some(WholeShift::of(4.5)))));
        assert!(!cache.holds(HeadKey::Replay(FlowId(3), None)));
        assert!(!cache.holds(HeadKey::Status(200)));
        // A status answer: `content-length: 0` and no body.
        let status = ReplyParts {
            status: 404,
            headers: None,
            body: b"",
            ..parts
        };
        cache.fill(Some(HeadKey::Status(404)), &status, None);
        expected.clear();
        http2::reply::encode_head(&mut expected, 404, &[(b"content-length", b"0")]);
        assert_eq!(cache.block, expected);
        assert!(cache.holds(HeadKey::Status(404)));
        assert!(!cache.holds(key));
        // Filled without a key: encoded, never reused; cleared: nothing is held.
        cache.fill(None, &parts, None);
        assert!(!cache.holds(key));
        cache.fill(Some(key), &parts, None);
        cache.clear();
        assert!(!cache.holds(key));
    }

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
