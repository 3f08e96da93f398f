//! One worker: a monoio loop on one thread with its own SO_REUSEPORT listener and connections.
//!
//! Per connection: read into the connection's input buffer, let [`http1::Conn`] find every
//! complete request in it (pipelining), answer each into one output buffer (recorded head, body
//! copied from the mapping, tail), then write that buffer with one send. The clock is read once
//! per turn. Forwarded requests go through [`forward::forward`] after earlier answers are flushed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, Cache};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncWriteRentExt, CancelableAsyncReadRent};
use monoio::io::{CancelHandle, Canceller};
use monoio::net::{TcpListener, TcpStream};

use super::client_tls::{ClientTls, HandshakeError};
use super::clock;
use super::forward::{self, ForwardSettings, Forwarded, Forwarder};
use super::outbox::Outbox;
use super::reqlog::{self, Answered, CoreLog};
use super::send_watch::{self, SendWatch};
use super::transport::Transport;
use crate::config::ServeOptions;
use crate::exchange::repeat::{self, RepeatCache};
use crate::exchange::{self, After, Answer};
use crate::http1::connect::Tunnel;
use crate::http1::{self, header_slots, Conn, Expiry, Limits, Step, Timeouts};
use crate::replay::{Replayer, RequestFacts};
use crate::stats::{self, Counters, Outcome};
use crate::tls::{detect, Detected, Identity, TlsServer, WorkerTls};
use crate::upstream::{Origin, Scheme};

// HTTP/2's driver: a child module so it shares this module's connection bookkeeping.
#[path = "h2.rs"]
mod h2;

// The direct ring for plain HTTP/1: a child module for the same reason.
#[path = "lane.rs"]
mod lane;

/// What every worker shares (read-only after start-up, except the stop flag and counters).
#[derive(Debug)]
pub struct Shared {
    /// Decides and renders replies; swapped whole by [`super::Handle::swap_recording`].
    pub replayer: ArcSwap<Replayer>,
    /// Serving options.
    pub serve: ServeOptions,
    /// The listener's TLS (CA, certificates, tickets); `None`: plain HTTP only.
    pub tls: Option<TlsServer>,
    /// Reverse mode's upstream, or `None` in regular mode.
    pub reverse: Option<Origin>,
    /// The Host value reverse mode writes into requests (empty in regular mode), computed once.
    pub reverse_host_header: Box<[u8]>,
    /// Forwarding settings (each worker keeps its own pool of upstream connections).
    pub forward: Arc<ForwardSettings>,
    /// Request limits.
    pub limits: Limits,
    /// Each connection's timers.
    pub timeouts: Timeouts,
    /// Set once on SIGINT/SIGTERM: stop accepting, finish in-flight answers, close.
    pub stop: AtomicBool,
    /// `--exit-when-done` and every flow replayed: the handle's owner stops the server.
    pub done: AtomicBool,
    /// One set of counters per worker.
    pub counters: Vec<Counters>,
    /// One liveness record per worker, read by the main thread.
    pub live: Vec<Liveness>,
    /// One log of recent misses per worker (written by its worker on the miss path only).
    pub misses: Vec<crate::replay::miss::MissLog>,
    /// When serving started (the origin of `fd_warning_at`).
    pub started: Instant,
    /// Milliseconds after `started` of the last out-of-descriptors warning plus one (0: never);
    /// shared so all workers together print at most one a second.
    pub fd_warning_at: AtomicU64,
}

/// What the main thread can see of a worker while it runs and stops. Each worker's record has
/// cache lines of its own (128 bytes: the adjacent-line prefetcher pairs 64-byte lines), so one
/// worker's accepts and closes never invalidate another worker's line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Liveness {
    /// Sweeper ticks so far: stops advancing when the worker's event loop is wedged.
    pub beats: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// A connection's first input buffer: a typical request head is a few hundred bytes (wrk's is 40,
/// a browser's 400-800), and a small first buffer keeps each connection's memory, and the cache
/// lines and pages a request touches, together (it grows when a request needs more).
const INPUT_FIRST: usize = 2 * 1024;
/// Input capacity past which an emptied buffer is given back (for one of [`INPUT_FIRST`]).
const INPUT_KEEP: usize = 64 * 1024;

/// What a connection does once a turn's answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Serves the next requests.
    Serve,
    /// Closes now.
    Close,
    /// Closes after lingering ([`linger_close`]), so bytes in flight cannot reset the answers.
    Linger,
}

impl Then {
    /// The turn's last `after`; `client_done`: the client asked to close; `rest`: input bytes
    /// no request took.
    fn of(after: After, client_done: bool, rest: usize) -> Then {
        match after {
            After::Continue => Then::Serve,
            After::Kill => Then::Close,
            // The client asked to close and sent nothing after its request: nothing can arrive
            // to reset the connection, so close at once (as nginx does); otherwise linger.
            After::Close if client_done && rest == 0 => Then::Close,
            After::Close => Then::Linger,
        }
    }
}

/// Drops the input a turn took (`..pos`); an emptied buffer that grew past [`INPUT_KEEP`]
/// starts small again.
fn take_input(input: &mut Vec<u8>, pos: usize) {
    if pos == input.len() {
        input.clear();
        if input.capacity() > INPUT_KEEP {
            *input = Vec::with_capacity(INPUT_FIRST);
        }
    } else if pos > 0 {
        input.drain(..pos);
    }
}

/// Free input space below which the buffer grows before a read (doubling).
const INPUT_SPARE_MIN: usize = 1024;

/// Granularity of connection deadlines: the sweeper's period.
const TICK: Duration = Duration::from_millis(250);

/// One open connection as the worker's sweeper sees it.
struct Slot {
    /// Tick at which its pending read expires (`u64::MAX`: no read pending).
    deadline: Cell<u64>,
    /// The sweeper ended its read because the deadline passed.
    expired: Cell<bool>,
    /// Cancels the connection's pending read when the worker stops or its deadline passes (its
    /// bytes stay unread in the socket, so nothing is lost and the read side is not shut: no
    /// reset on close).
    cancel: RefCell<Canceller>,
    /// The client socket (open while the slot is in [`Worker::open`]), for `--send-timeout`.
    fd: RawFd,
    /// `--send-timeout`: whether the client is taking what is sent.
    send: Cell<SendWatch>,
    /// The client's address (for the `-v` line of a send timeout).
    peer: SocketAddr,
}

/// This worker's state on its own thread.
struct Worker {
    shared: Arc<Shared>,
    index: usize,
    /// Open connections, so the sweeper can expire reads and a stop can end them.
    open: RefCell<HashMap<u64, Rc<Slot>>>,
    next_id: Cell<u64>,
    /// Coarse clock: ticks since the worker started, advanced by the sweeper.
    ticks: Cell<u64>,
    /// The listener's socket while the accept loop runs (the sweeper ends the accept on stop).
    listener_fd: Cell<Option<RawFd>>,
    /// This worker's forwarding: idle upstream connections and counts.
    forwarder: Forwarder,
    /// Set once the worker stops: every answer from now on closes its connection.
    stopping: Cell<bool>,
    /// This worker's TLS towards clients (its leaf cache), when the listener serves TLS.
    tls: Option<WorkerTls>,
    /// This worker's `--log-json` batch (`None`: no request log, or the worker has stopped).
    log: RefCell<Option<CoreLog>>,
    /// `--send-timeout` in ticks (`None`: 0, never).
    send_timeout: Option<u64>,
    /// The direct ring serving plain HTTP/1 connections (`None`: every connection is served
    /// through monoio's ops: epoll, TLS configured, `--no-direct-ring`, or no ring here).
    lane: RefCell<Option<lane::Lane>>,
    /// Requests answered by a replay, by their bytes, shared by the worker's HTTP/1
    /// connections ([`exchange::repeat`]).
    repeats: RefCell<RepeatCache>,
}

impl Worker {
    fn counters(&self) -> &Counters {
        &self.shared.counters[self.index]
    }

    fn live(&self) -> &Liveness {
        &self.shared.live[self.index]
    }

    /// `--log-json`: counts a request for the sampling; true when its line is to be written.
    #[inline]
    fn log_sampled(&self) -> bool {
        self.log.borrow_mut().as_mut().is_some_and(CoreLog::sampled)
    }

    /// Under what a turn's replayed requests may be answered from [`Worker::repeats`] and kept
    /// there, or `None` when it is off (`--no-repeat-cache`) or an answer depends on more than
    /// the request's bytes: a log or
    /// `-v` line is written, the answers say `Connection: close` (`stopping`),
    /// `--exit-when-done` watches the flows, the order has no stamp, or the connection is a
    /// CONNECT tunnel's (whose routing is its own).
    fn repeat_context(
        &self,
        replayer: &Replayer,
        routing: &exchange::Routing<'_>,
        tunnels: bool,
        in_tunnel: bool,
        stopping: bool,
    ) -> Option<repeat::Context> {
        let serve = &self.shared.serve;
        if !serve.repeat_cache
            || stopping
            || in_tunnel
            || serve.verbose
            || serve.exit_when_done
            || self.log.borrow().is_some()
        {
            return None;
        }
        Some(repeat::Context {
            stamp: replayer.repeat_stamp()?,
            tls: routing.tls,
            tunnels,
        })
    }

    /// Writes a sampled request's log line: the one hook of every protocol's driver, called
    /// once the request's outcome is known (answer rendered, or forward relayed).
    fn log_answer(&self, answered: &Answered<'_>) {
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.answered(answered, self.counters());
        }
    }

    /// Cancels the pending read of `slot` (it fails with ECANCELED), as the stop does: the
    /// read side stays open, so bytes that raced the deadline stay readable and are answered
    /// instead of turning the close into a reset.
    fn end_read(slot: &Slot) {
        let canceller = std::mem::take(&mut *slot.cancel.borrow_mut());
        *slot.cancel.borrow_mut() = canceller.cancel();
    }
}

/// The worker's coarse clock as the Conn sees it: time since the worker started, in ticks.
fn since_start(worker: &Worker) -> Duration {
    TICK.saturating_mul(u32::try_from(worker.ticks.get()).unwrap_or(u32::MAX))
}

/// The tick at which a deadline of the Conn's clock has passed: whole ticks covering it, plus one
/// so a deadline never fires early.
fn ticks_until(deadline: Duration) -> u64 {
    (deadline.as_millis() / TICK.as_millis()) as u64 + 1
}

/// Ticks between two `--send-timeout` checks of every connection: an eighth of the timeout
/// (a connection is ended between one timeout and one check period after its client stopped
/// taking bytes), at least one tick.
fn send_check_period(timeout: u64) -> u64 {
    (timeout / 8).max(1)
}

/// Ends each connection whose client has taken nothing of its queued bytes for `timeout` ticks
/// (one `getsockopt` per open connection).
fn check_sending(worker: &Worker, now: u64, timeout: u64) {
    for slot in worker.open.borrow().values() {
        let Some(state) = send_watch::send_state(slot.fd) else {
            continue;
        };
        let mut watch = slot.send.get();
        let stuck = watch.observe(now, state, timeout);
        slot.send.set(watch);
        if stuck {
            Counters::bump(&worker.counters().send_timeouts);
            send_watch::end(slot.fd);
            slot.send.set(SendWatch::IDLE);
            if worker.shared.serve.verbose {
                let secs = worker.shared.serve.send_timeout_secs;
                // A closed stdout must not stop the server: the line is dropped.
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "{}: connection reset: the client took none of its answer for {secs} s \
                     (--send-timeout)",
                    slot.peer
                );
            }
        }
    }
}

/// Expires connections whose read deadline passed: per-read timers cost a timer-wheel entry and
/// a clock read per request; this costs one Cell store per read and a scan every tick. Once the
/// stop flag is set it ends the pending accept, so the worker stops within one tick.
async fn sweep(worker: Rc<Worker>) {
    while !worker.shared.stop.load(Ordering::Relaxed) {
        monoio::time::sleep(TICK).await;
        let now = worker.ticks.get() + 1;
        worker.ticks.set(now);
        Counters::bump(&worker.live().beats);
        for slot in worker.open.borrow().values() {
            if slot.deadline.get() <= now && !slot.expired.get() {
                slot.expired.set(true);
                Worker::end_read(slot);
            }
        }
        if let Some(lane) = worker.lane.borrow_mut().as_mut() {
            lane.expire(&worker);
        }
        if let Some(timeout) = worker
            .send_timeout
            .filter(|t| now % send_check_period(*t) == 0)
        {
            check_sending(&worker, now, timeout);
        }
    }
    if let Some(fd) = worker.listener_fd.get() {
        // SAFETY: `listener_fd` is cleared on this thread before the listener is dropped, so the
        // fd is the open listener; shutdown makes the pending accept fail without closing it.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RD);
        }
    }
}

/// Hands the worker's `--log-json` batch to the writer every [`reqlog::FLUSH_EVERY`] (a quiet
/// core's lines reach the file within it), until the stop.
async fn flush_log(worker: Rc<Worker>) {
    while !worker.shared.stop.load(Ordering::Relaxed) {
        monoio::time::sleep(reqlog::FLUSH_EVERY).await;
        if let Some(log) = worker.log.borrow_mut().as_mut() {
            log.tick(worker.counters());
        }
    }
}

/// Runs worker `index` on `listener` until a stop, then waits (bounded) for its connections;
/// `log` is its `--log-json` batch, flushed at the end.
pub async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    index: usize,
    log: Option<CoreLog>,
    driver: super::runtime::Driver,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: worker {index}: cannot register its listener: {e}");
            return;
        }
    };
    let forwarder = Forwarder::new(shared.forward.clone());
    let tls = shared.tls.as_ref().and_then(|t| match t.worker() {
        Ok(tls) => Some(tls),
        Err(e) => {
            eprintln!("warning: worker {index}: no TLS towards clients: {e}");
            None
        }
    });
    let send_timeout = match shared.serve.send_timeout_secs {
        0 => None,
        secs => Some(ticks_until(Duration::from_secs(secs))),
    };
    let worker = Rc::new(Worker {
        tls,
        shared,
        index,
        open: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
        ticks: Cell::new(0),
        listener_fd: Cell::new(Some(listener.as_raw_fd())),
        forwarder,
        stopping: Cell::new(false),
        log: RefCell::new(log),
        send_timeout,
        lane: RefCell::new(None),
        repeats: RefCell::new(RepeatCache::new()),
    });
    // The direct ring: plain HTTP/1 on io_uring only (a TLS ClientHello is handed to monoio).
    if matches!(driver, super::runtime::Driver::Uring { .. }) && worker.shared.serve.direct_ring {
        match lane::Lane::new() {
            Ok((ring, wake)) => {
                *worker.lane.borrow_mut() = Some(ring);
                monoio::spawn(lane::drive(worker.clone(), wake));
            }
            Err(e) => eprintln!(
                "warning: worker {index}: no direct ring ({e}): plain HTTP/1 goes through \
                 monoio's ops"
            ),
        }
    }
    monoio::spawn(sweep(worker.clone()));
    if worker.log.borrow().is_some() {
        monoio::spawn(flush_log(worker.clone()));
    }
    loop {
        let accepted = listener.accept().await;
        if worker.shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                Counters::bump(&worker.counters().connections);
                Counters::bump(&worker.live().open);
                let id = worker.next_id.get();
                worker.next_id.set(id + 1);
                let slot = Rc::new(Slot {
                    deadline: Cell::new(u64::MAX),
                    expired: Cell::new(false),
                    cancel: RefCell::new(Canceller::new()),
                    fd: stream.as_raw_fd(),
                    send: Cell::new(SendWatch::IDLE),
                    peer,
                });
                worker.open.borrow_mut().insert(id, slot.clone());
                let stream = match worker.lane.borrow_mut().as_mut() {
                    Some(lane) => match lane.adopt(&worker, stream, id, slot.clone()) {
                        Ok(()) => continue,
                        Err(stream) => stream,
                    },
                    None => stream,
                };
                let w = worker.clone();
                monoio::spawn(async move {
                    opened(&w, &slot, stream, peer).await;
                    closed(&w, id);
                });
            }
            Err(e) => {
                // Out of descriptors, or a connection reset before accept: pause briefly, go
                // on (the pending connections wait in the backlog).
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    warn_out_of_descriptors(&worker.shared, &e);
                }
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    worker.listener_fd.set(None);
    drop(listener);
    // From here every answer closes its connection. Cancel every pending read: a connection
    // that was waiting then answers what has already arrived and closes with a FIN; one busy
    // answering sees `stopping` when it is done. The main thread stops waiting for us after the
    // grace period, so this wait has the same bound.
    worker.stopping.set(true);
    for slot in worker.open.borrow().values() {
        let canceller = std::mem::take(&mut *slot.cancel.borrow_mut());
        drop(canceller.cancel());
    }
    if let Some(lane) = worker.lane.borrow_mut().as_mut() {
        lane.stop(&worker);
    }
    let grace = Duration::from_secs(worker.shared.serve.shutdown_timeout_secs);
    let started = clock::instant();
    while !worker.open.borrow().is_empty() && clock::since(started) < grace {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    // monoio queues the close of a dropped socket (the listener's, the last connections') on its
    // ring and submits it when the loop next parks. Park once, so they are closed before the
    // thread ends: an unsubmitted close kept the listener in the port's group, where the kernel
    // still queued connections that no one would accept. (Before the log's last batch, so what
    // is answered meanwhile is in it.)
    monoio::time::sleep(Duration::from_millis(1)).await;
    let log = worker.log.borrow_mut().take();
    if let Some(log) = log {
        log.finish(worker.counters());
    }
}

/// A connection's end, however it was served: it leaves the worker's open set.
fn closed(worker: &Worker, id: u64) {
    worker.open.borrow_mut().remove(&id);
    let open = &worker.live().open;
    open.store(open.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
}

/// Says, at most once a second across all workers, that accepting waits for free descriptors.
fn warn_out_of_descriptors(shared: &Shared, e: &std::io::Error) {
    let now = clock::since(shared.started).as_millis() as u64 + 1;
    let last = shared.fd_warning_at.load(Ordering::Relaxed);
    if (last != 0 && now < last + 1000)
        || shared
            .fd_warning_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let limit = descriptor_limit().map_or_else(String::new, |n| format!(" (now {n})"));
    eprintln!(
        "warning: out of file descriptors ({e}): new connections wait until some close; \
         raise the limit with `ulimit -n`{limit}"
    );
}

/// The process's soft limit on open descriptors (`ulimit -n`), if it can be read.
fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// How a connection's requests reach us: over TLS or not, and inside which CONNECT tunnel (whose
/// destination gives them scheme, host and port, as mitmproxy records them).
#[derive(Debug, Default)]
struct Leg {
    /// The client speaks TLS to us.
    tls: bool,
    /// The CONNECT tunnel's destination (scheme from the tunnel's first bytes).
    tunnel: Option<Origin>,
}

impl Leg {
    /// How this connection's requests are routed, for either protocol. Inside a CONNECT tunnel
    /// requests route as reverse mode to the tunnel's destination with their Host kept (scheme,
    /// host and port as mitmproxy records them; the Host's host matches).
    fn routing<'a>(&'a self, shared: &'a Shared) -> exchange::Routing<'a> {
        match &self.tunnel {
            Some(origin) => exchange::Routing {
                reverse: Some((origin, &[][..])),
                keep_host_header: true,
                tls: self.tls,
            },
            None => exchange::Routing {
                reverse: shared
                    .reverse
                    .as_ref()
                    .map(|o| (o, &*shared.reverse_host_header)),
                keep_host_header: shared.serve.keep_host_header,
                tls: self.tls,
            },
        }
    }
}

/// Where a connection's HTTP/1 serving starts: the bytes read so far and the parse state (fresh,
/// or the direct ring's when it hands the connection over).
struct Resume {
    conn: Conn,
    input: Vec<u8>,
    /// The chunked body decoded so far: `conn` counts the input it came from as consumed.
    scratch: Vec<u8>,
    /// The first bytes were already told from an h2c preface.
    told: bool,
}

impl Resume {
    /// A connection whose serving starts now with `input` read.
    fn fresh(worker: &Worker, input: Vec<u8>) -> Resume {
        let shared = &worker.shared;
        Resume {
            conn: Conn::with_timeouts(shared.limits, shared.timeouts, since_start(worker)),
            input,
            scratch: Vec::new(),
            told: false,
        }
    }
}

/// A new client connection: without TLS configured it is served as plain HTTP at once; else its
/// first bytes decide, as mitmproxy decides, between TLS and plain HTTP on the same port.
async fn opened(worker: &Worker, slot: &Slot, stream: TcpStream, peer: SocketAddr) {
    let input = Vec::with_capacity(INPUT_FIRST);
    if worker.tls.is_none() {
        let start = Resume::fresh(worker, input);
        return connection(worker, slot, stream, peer, Leg::default(), start).await;
    }
    // Boxed, as every rare path of a connection: a task is as large as its largest path, and
    // this one (TLS session, handshake, HTTP/2) is many times the plain connection's (18 560
    // bytes against 1 632), whose state each request touches: keeping it small keeps it dense.
    Box::pin(sniffed(worker, slot, stream, peer, input)).await
}

/// [`opened`] with TLS configured: the first bytes tell TLS from plain HTTP.
async fn sniffed(
    worker: &Worker,
    slot: &Slot,
    mut stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
) {
    // A connection that sends nothing gets the idle timeout, as it would waiting for a request.
    let idle = since_start(worker) + worker.shared.timeouts.idle;
    let Some(input) = first_bytes(worker, slot, &mut stream, input, idle).await else {
        return;
    };
    detected(worker, slot, stream, peer, None, input).await
}

/// Reads until `input` holds enough to tell TLS from plain HTTP (or the client closes, or the
/// deadline passes or the worker stops: `None`, close).
async fn first_bytes(
    worker: &Worker,
    slot: &Slot,
    stream: &mut TcpStream,
    mut input: Vec<u8>,
    deadline: Duration,
) -> Option<Vec<u8>> {
    let cancel = slot.cancel.borrow().handle();
    while detect(&input) == Detected::NeedMore {
        if worker.stopping.get() || slot.expired.get() {
            // A stop still answers what has already arrived (with a close), as for any
            // connection waiting to read.
            if worker.stopping.get() && stream.drain_arrived(&mut input) > 0 {
                continue;
            }
            return None;
        }
        slot.deadline.set(ticks_until(deadline));
        let (len, cap) = (input.len(), input.capacity());
        let (res, slice) = stream
            .cancelable_read(input.slice_mut(len..cap), cancel.clone())
            .await;
        slot.deadline.set(u64::MAX);
        input = slice.into_inner();
        match res {
            Ok(n) if n > 0 => {}
            // Cancelled by the stop: the loop's top takes what has arrived.
            Err(_) if worker.stopping.get() => {}
            _ => return None,
        }
    }
    Some(input)
}

/// Serves a connection (or a tunnel's inside) whose first bytes are in `input`: a TLS
/// ClientHello gets the TLS handshake (a certificate for the SNI, else for the tunnel's host, the
/// reverse target or the address connected to), then HTTP inside it; anything else is plain HTTP.
async fn detected(
    worker: &Worker,
    slot: &Slot,
    stream: TcpStream,
    peer: SocketAddr,
    tunnel: Option<(String, u16)>,
    input: Vec<u8>,
) {
    let shared: &Shared = &worker.shared;
    let Some(tls) = worker
        .tls
        .as_ref()
        .filter(|_| detect(&input) == Detected::Tls)
    else {
        let tunnel = tunnel.map(|(host, port)| Origin {
            scheme: Scheme::Http,
            host: host.into(),
            port,
        });
        let leg = Leg { tls: false, tunnel };
        let start = Resume::fresh(worker, input);
        return connection(worker, slot, stream, peer, leg, start).await;
    };
    let fallback = fallback_identity(
        shared,
        tunnel.as_ref().map(|(host, _)| host.as_str()),
        stream.local_addr().ok(),
    );
    let mut stream = ClientTls::new(stream, tls, fallback);
    // The handshake must end within the header timeout.
    slot.deadline
        .set(ticks_until(since_start(worker) + shared.timeouts.head));
    let cancel = slot.cancel.borrow().handle();
    let done = stream.handshake(&input, cancel).await;
    slot.deadline.set(u64::MAX);
    if let Err(error) = done {
        return handshake_failed(worker, peer, stream.sni(), &error);
    }
    let tunnel = tunnel.map(|(host, port)| Origin {
        scheme: Scheme::Https,
        host: host.into(),
        port,
    });
    let leg = Leg { tls: true, tunnel };
    // The one protocol dispatch after the handshake, on the agreed ALPN (`h2` is offered unless
    // `--no-http2`).
    if stream.alpn() == Some(b"h2") {
        return h2::serve(worker, slot, stream, peer, leg, input_buffer(input)).await;
    }
    let start = Resume::fresh(worker, input_buffer(input));
    connection(worker, slot, stream, peer, leg, start).await
}

/// A client's TLS handshake failed: counted and, with `-v`, told (not when the stop ended it:
/// that is not the client's failure).
fn handshake_failed(worker: &Worker, peer: SocketAddr, sni: Option<&str>, error: &HandshakeError) {
    if worker.stopping.get() {
        return;
    }
    Counters::bump(&worker.counters().tls_failed);
    if worker.shared.serve.verbose {
        let sni = sni.unwrap_or("none");
        // A closed stdout must not stop the server: the line is dropped.
        let _ = writeln!(
            std::io::stdout().lock(),
            "{peer}: TLS handshake failed (SNI {sni}): {error}"
        );
    }
}

/// The identity whose certificate answers a ClientHello without SNI on a connection to
/// `local` (`tunnel`: the host a CONNECT named): the tunnel's host, else the reverse target,
/// else the address connected to.
fn fallback_identity(
    shared: &Shared,
    tunnel: Option<&str>,
    local: Option<SocketAddr>,
) -> Option<Identity> {
    match (tunnel, &shared.reverse) {
        (Some(host), _) => Identity::from_host(host),
        (None, Some(origin)) => Identity::from_host(&origin.host),
        (None, None) => None,
    }
    .or_else(|| local.map(|a| Identity::Ip(a.ip())))
}

/// The input buffer for the HTTP inside a TLS connection (the ClientHello's buffer, emptied).
fn input_buffer(mut input: Vec<u8>) -> Vec<u8> {
    input.clear();
    input
}

/// Answers a CONNECT (its earlier answers are written) with mitmproxy's `200 Connection
/// established`, then serves the tunnel: `rest` holds what the client sent after the CONNECT.
async fn tunnel(
    worker: &Worker,
    slot: &Slot,
    mut stream: TcpStream,
    peer: SocketAddr,
    tunnel: Tunnel,
    rest: Vec<u8>,
) {
    let mut answer = Vec::with_capacity(64);
    tunnel.write_established(&mut answer);
    let (res, _) = stream.write_all(answer).await;
    if res.is_err() {
        return;
    }
    let idle = since_start(worker) + worker.shared.timeouts.idle;
    let Some(input) = first_bytes(worker, slot, &mut stream, rest, idle).await else {
        return;
    };
    detected(
        worker,
        slot,
        stream,
        peer,
        Some((tunnel.host, tunnel.port)),
        input,
    )
    .await
}

/// Serves one client connection over any [`Transport`] (plain TCP or TLS): read, let the Conn
/// find the requests, answer each through the exchange, write, until close. `start` holds bytes
/// already read (the ones that told TLS from plain HTTP, or the direct ring's).
async fn connection<S: Transport>(
    worker: &Worker,
    slot: &Slot,
    mut stream: S,
    peer: SocketAddr,
    leg: Leg,
    start: Resume,
) {
    let shared: &Shared = &worker.shared;
    let counters = worker.counters();
    // The replayer in force, re-read (one atomic load, no count change) at each turn; each
    // connection keeps the one its pending answers came from alive until they are written.
    let mut current = Cache::new(&shared.replayer);
    let Resume {
        mut conn,
        mut input,
        mut scratch,
        told,
    } = start;
    let mut outbox = Outbox::new(current.load().clone());
    let cancel: CancelHandle = slot.cancel.borrow().handle();
    let routing = leg.routing(shared);
    // A CONNECT opens a tunnel in regular mode, on plain TCP only (not inside TLS or a tunnel).
    let tunnels = S::TUNNELS && shared.reverse.is_none() && leg.tunnel.is_none();
    let mut connect: Option<Tunnel> = None;
    // Until the first bytes tell HTTP/1 from h2c with prior knowledge (its client preface), on
    // a plain connection outside a tunnel, unless `--no-http2`.
    let mut sniff = !told && !leg.tls && leg.tunnel.is_none() && shared.serve.http2;
    loop {
        if sniff {
            match crate::http2::preface(&input) {
                crate::http2::Preface::Yes => {
                    return Box::pin(h2::serve(worker, slot, stream, peer, leg, input)).await
                }
                crate::http2::Preface::No => sniff = false,
                crate::http2::Preface::NeedMore => {}
            }
        }
        // Answer every complete request in the input, in order, into the outbox. Once the
        // worker stops (or this connection's timer expired), each answer says `Connection:
        // close` and the connection closes after.
        let replayer: &Arc<Replayer> = current.load();
        // Every answer of a turn comes from one replayer; the outbox is empty here.
        outbox.serve_from(replayer);
        let stopping = worker.stopping.get() || slot.expired.get();
        let turn = Turn {
            worker,
            replayer,
            routing,
            peer,
            now: clock::now(),
            stopping,
            keep_alive: replayer.keep_alive(),
            tunnels,
            hands_off: false,
            repeats: worker.repeat_context(
                replayer,
                &routing,
                tunnels,
                leg.tunnel.is_some(),
                stopping,
            ),
        };
        // The outbox took as many answers as one write does: write, then parse on unread.
        let mut full = false;
        let mut pos = 0;
        let mut after = After::Continue;
        // The last request answered asked to close the connection.
        let mut client_done = false;
        let mut answered = 0;
        loop {
            // A partial preface: parse nothing, read more.
            if sniff {
                break;
            }
            let next = turn.next(&mut conn, &input, &mut pos, &mut outbox, &mut scratch);
            let (then, done) = match next {
                Next::NeedMore => break,
                Next::Flush => {
                    full = true;
                    break;
                }
                Next::Close => {
                    after = After::Close;
                    break;
                }
                Next::Connect(t) => {
                    connect = Some(t);
                    break;
                }
                // Only the direct ring's turns hand off.
                Next::HandOff => break,
                Next::Answered { after, client_done } => (after, client_done),
                Next::Forward(forwarding) => {
                    if outbox.flush(&mut stream).await.is_err() {
                        return;
                    }
                    conn.flushed();
                    let forwarded = Box::pin(turn.forward(
                        forwarding,
                        &mut stream,
                        leg.tunnel.as_ref(),
                        leg.tls,
                    ));
                    match forwarded.await {
                        Some(answered) => answered,
                        None => return,
                    }
                }
            };
            answered += 1;
            after = then;
            client_done = done;
            if !matches!(after, After::Continue) {
                break;
            }
        }
        let now = turn.now;
        // A stopping turn that answered closes after its answers; one that answered nothing
        // (the direct ring handed over a connection whose timer expired, or the stop came) goes
        // on to the stop's path below: bytes that raced it are answered, a partial request gets
        // its 408.
        if turn.stopping && answered > 0 && matches!(after, After::Continue) {
            after = After::Close;
        }
        super::admin::served(counters, answered, now);
        if !outbox.is_empty() && outbox.flush(&mut stream).await.is_err() {
            return;
        }
        conn.flushed();
        if let Some(t) = connect.take() {
            input.drain(..pos);
            if let Some(tcp) = stream.into_tcp() {
                // Boxed: a tunnel's inside is served by this function again.
                let inside: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> =
                    Box::pin(tunnel(worker, slot, tcp, peer, t, input));
                inside.await;
            }
            return;
        }
        match Then::of(after, client_done, input.len() - pos) {
            Then::Serve => {}
            Then::Close => return,
            Then::Linger => return Box::pin(linger_close(stream, input)).await,
        }
        take_input(&mut input, pos);
        if full {
            continue;
        }
        if worker.stopping.get() || slot.expired.get() {
            // The stop (or this connection's deadline) came while it was busy: answer what has
            // arrived, then close.
            if stream.drain_arrived(&mut input) > 0 {
                continue;
            }
            if slot.expired.get() && !input.is_empty() {
                let timed_out = request_timeout(&mut conn, &mut outbox, stream, input, counters);
                return Box::pin(timed_out).await;
            }
            return Box::pin(linger_close(stream, input)).await;
        }
        // Read more.
        if input.capacity() - input.len() < INPUT_SPARE_MIN {
            input.reserve(input.capacity().max(INPUT_FIRST));
        }
        // The Conn's timer: a started head must arrive whole within the header timeout (counted
        // from its first bytes, so a trickle cannot hold the connection), a body must keep
        // arriving, an idle connection gets the idle timeout.
        conn.wait(since_start(worker), input.len());
        slot.deadline.set(ticks_until(conn.poll_timeout()));
        let (len, cap) = (input.len(), input.capacity());
        // A plain recv, on purpose: it is submitted only after the answer's send completed, so
        // under load it usually finds the next request already there and is served inline.
        // Measured with a patched monoio: IORING_RECVSEND_POLL_FIRST here cost ≈3 % CPU per
        // request at 64 connections; registered (fixed) files for the sockets changed nothing.
        let (res, slice) = stream
            .cancelable_read(input.slice_mut(len..cap), cancel.clone())
            .await;
        slot.deadline.set(u64::MAX);
        input = slice.into_inner();
        match res {
            Ok(n) if n > 0 => {}
            // The worker stopped, or the deadline passed, while this read waited (its read was
            // cancelled, not shut, so a request racing it is still in the socket): take what
            // has arrived and answer it, closing.
            Err(_) if worker.stopping.get() || slot.expired.get() => {
                if stream.drain_arrived(&mut input) == 0 {
                    if slot.expired.get() && !input.is_empty() {
                        let timed_out =
                            request_timeout(&mut conn, &mut outbox, stream, input, counters);
                        return Box::pin(timed_out).await;
                    }
                    if worker.stopping.get() {
                        return Box::pin(linger_close(stream, input)).await;
                    }
                    return;
                }
            }
            Ok(_) | Err(_) => return,
        }
    }
}

/// A request to forward, as the parse gave it, with its own copy of the header fields (so the
/// parse's header slots need not live across the forward's awaits).
struct ToForward<'b> {
    /// The request target.
    target: &'b [u8],
    /// The header fields (`Host` already rewritten by the exchange in reverse mode).
    headers: Vec<httparse::Header<'b>>,
    /// The (decoded) body.
    body: &'b [u8],
    /// [`http1::Request::wants_close`].
    wants_close: bool,
    /// [`http1::Request::http10_keep_alive`].
    http10_keep_alive: bool,
    /// [`http1::Request::is_head`].
    is_head: bool,
    /// [`http1::Request::len`].
    len: usize,
}

/// One turn of an HTTP/1 connection: what the requests answered from one read share (the
/// replayer in force, one clock reading, the routing), and the steps that take a request as far
/// as it goes without waiting ([`Turn::next`]) or through its forward ([`Turn::forward`]).
struct Turn<'t> {
    worker: &'t Worker,
    /// Every answer of the turn comes from this replayer.
    replayer: &'t Arc<Replayer>,
    routing: exchange::Routing<'t>,
    peer: SocketAddr,
    /// The clock, read once for the turn.
    now: SystemTime,
    /// The worker stops or the connection's timer expired: answers say `Connection: close`.
    stopping: bool,
    /// `--keep-alive`.
    keep_alive: bool,
    /// A CONNECT opens a tunnel here.
    tunnels: bool,
    /// The direct ring's turn ([`super::lane`]): a request that needs waiting (a forward, a
    /// CONNECT) is left unparsed and uncounted ([`Next::HandOff`]), for monoio's
    /// [`connection`] to take from its first byte.
    hands_off: bool,
    /// The turn answers repeated requests from [`Worker::repeats`] and keeps what it replays
    /// there ([`Worker::repeat_context`]).
    repeats: Option<repeat::Context>,
}

/// The next request of a turn, as far as [`Turn::next`] took it.
enum Next<'b> {
    /// No complete request in the input: read more.
    NeedMore,
    /// The outbox holds as many answers as one write takes: write, then go on.
    Flush,
    /// The input cannot be served (its 4xx is in the outbox): close after writing.
    Close,
    /// A CONNECT to answer once what is pending is written.
    Connect(Tunnel),
    /// Answered into the outbox: what the connection does next, and whether the request asked
    /// to close.
    Answered { after: After, client_done: bool },
    /// Unmatched and to be forwarded ([`Turn::forward`]), after what is pending is written
    /// (boxed: the rare path, kept out of the connection's state).
    Forward(Box<Forwarding<'b>>),
    /// [`Turn::hands_off`]: the request at `pos` (not advanced, nothing counted) is a forward or
    /// a CONNECT, for monoio's [`connection`] once what is pending is written.
    HandOff,
}

/// A decided request, with what its answer's log and `-v` lines need.
struct Asked<'b> {
    ex: exchange::Exchange<'b>,
    method: &'b [u8],
    version_minor: u8,
    /// The connection closes after the answer (the request or the keep-alive rule says so).
    wants_close: bool,
    /// `--log-json` samples this request.
    log: bool,
}

/// A decided request whose answer comes from its forward.
struct Forwarding<'b> {
    asked: Asked<'b>,
    request: ToForward<'b>,
}

impl<'t> Turn<'t> {
    /// Parses the next request at `input[*pos..]` (advancing `pos` past it), decides it and,
    /// unless it is forwarded, answers it into `outbox`.
    fn next<'b>(
        &self,
        conn: &mut Conn,
        input: &'b [u8],
        pos: &mut usize,
        outbox: &mut Outbox,
        scratch: &'b mut Vec<u8>,
    ) -> Next<'b>
    where
        't: 'b,
    {
        let worker = self.worker;
        let counters = worker.counters();
        if let Some(context) = self.repeats {
            if let Some(next) = self.repeat(conn, &input[*pos..], pos, outbox, context) {
                return next;
            }
        }
        let via = &worker.forwarder.settings().via;
        // The header slots are a stack local here, never kept across an await: a forward takes
        // its own copy of the fields (the rare path), so the connection's future does not carry
        // 100 slots (3 200 bytes) in the state every request touches.
        let mut headers = header_slots();
        let out = &mut outbox.bytes;
        let req = match conn.poll_request(&input[*pos..], &mut headers, scratch, out) {
            Step::NeedMore => return Next::NeedMore,
            Step::Flush => return Next::Flush,
            Step::Reject(e) => {
                Counters::bump(&counters.rejected);
                http1::write_error(e, out);
                return Next::Close;
            }
            Step::Request(req) => req,
        };
        let start = *pos;
        // The body lies in the request's bytes (not de-chunked into `scratch`).
        let body_in_bytes =
            req.body.is_empty() || input[start..].as_ptr_range().contains(&req.body.as_ptr());
        if self.tunnels && http1::connect::is_connect(req.method) {
            if self.hands_off {
                return Next::HandOff;
            }
            *pos += req.len;
            return match Tunnel::parse(req.target, req.version_minor) {
                Ok(t) => Next::Connect(t),
                Err(e) => {
                    Counters::bump(&counters.rejected);
                    http1::write_plain(400, "Bad Request", &e.to_string(), true, out);
                    Next::Close
                }
            };
        }
        let wants_close = http1::keep_alive::client_closes(
            req.wants_close,
            req.http10_keep_alive,
            self.keep_alive,
        );
        let len = req.len;
        let facts = RequestFacts {
            is_head: req.is_head,
            wants_close,
            http10_keep_alive: req.http10_keep_alive,
        };
        let replayer = self.replayer;
        let ex = exchange::decide(
            replayer,
            self.routing,
            via,
            exchange::Request {
                method: req.method,
                target: req.target,
                headers: &mut *req.headers,
                body: req.body,
                facts,
            },
        );
        if self.hands_off && ex.answer == Answer::Forward {
            // Deciding a miss changes nothing: monoio's connection decides it again, counts it
            // and forwards it.
            return Next::HandOff;
        }
        *pos += len;
        ex.count(counters);
        if let Some(live) = ex.missed(req.method, req.headers, req.body) {
            super::admin::missed(&worker.shared, worker.index, replayer, &live, self.now);
        }
        let asked = Asked {
            ex,
            method: req.method,
            version_minor: req.version_minor,
            wants_close,
            log: worker.log_sampled(),
        };
        if asked.ex.answer == Answer::Forward {
            let request = ToForward {
                target: req.target,
                headers: req.headers.to_vec(),
                body: req.body,
                wants_close: req.wants_close,
                http10_keep_alive: req.http10_keep_alive,
                is_head: req.is_head,
                len: req.len,
            };
            return Next::Forward(Box::new(Forwarding { asked, request }));
        }
        let ex = &asked.ex;
        let rendered = exchange::render_http1(ex, replayer, via, self.now, self.stopping, outbox);
        if let (Some(context), Answer::Replay(flow)) = (self.repeats, ex.answer) {
            worker.repeats.borrow_mut().keep(
                &input[start..start + len],
                body_in_bytes,
                context,
                flow,
                ex.facts,
            );
        }
        let shared = &worker.shared;
        if shared.serve.exit_when_done
            && matches!(ex.answer, Answer::Replay(_))
            && replayer.remaining() == 0
        {
            shared.done.store(true, Ordering::Relaxed);
        }
        let outcome = ex.answered(rendered.status);
        let (after, client_done) =
            self.finish(&asked, outcome, rendered.body_bytes, None, rendered.after);
        Next::Answered { after, client_done }
    }

    /// Answers the request `input` starts with from [`Worker::repeats`] when it is a repeat
    /// (advancing `pos` past it); `None` when it is not, or when the outbox is full.
    fn repeat<'b>(
        &self,
        conn: &mut Conn,
        input: &[u8],
        pos: &mut usize,
        outbox: &mut Outbox,
        context: repeat::Context,
    ) -> Option<Next<'b>> {
        let mut cache = self.worker.repeats.borrow_mut();
        let found = cache.find(input, context)?;
        if !conn.take_repeat(outbox.bytes.len()) {
            return None;
        }
        let repeated = cache.render(found, self.replayer, self.now, outbox);
        *pos += found.len;
        let counters = self.worker.counters();
        Counters::bump(&counters.replayed);
        Counters::bump(&counters.repeats);
        Some(Next::Answered {
            after: repeated.rendered.after,
            client_done: repeated.client_done,
        })
    }

    /// Forwards a request [`Turn::next`] gave back (what was pending is written), relaying the
    /// answer to `stream`: what the connection does next and whether the request asked to close,
    /// or `None` when the client went away.
    async fn forward<S: Transport>(
        &self,
        forwarding: Box<Forwarding<'_>>,
        stream: &mut S,
        tunnel: Option<&Origin>,
        tls: bool,
    ) -> Option<(After, bool)> {
        let worker = self.worker;
        let counters = worker.counters();
        let Forwarding {
            asked,
            request: mut f,
        } = *forwarding;
        let req = http1::Request {
            method: asked.method,
            target: f.target,
            version_minor: asked.version_minor,
            headers: &mut f.headers,
            body: f.body,
            wants_close: f.wants_close,
            http10_keep_alive: f.http10_keep_alive,
            is_head: f.is_head,
            len: f.len,
        };
        let mut after = After::Continue;
        let mut failure = None;
        let mut body_bytes = 0;
        let outcome = match forward::forward(&worker.forwarder, &req, stream, tunnel, tls).await {
            Forwarded::Relayed {
                status,
                close,
                body_bytes: relayed,
            } => {
                if close {
                    after = After::Close;
                }
                body_bytes = relayed;
                Outcome::Forwarded(status)
            }
            Forwarded::Failed {
                error,
                answered,
                close,
            } => {
                Counters::bump(&counters.upstream_errors);
                if close {
                    after = After::Close;
                }
                let outcome = Outcome::UpstreamFailed(answered.then(|| error.status()));
                if worker.shared.serve.verbose {
                    failure = Some(error);
                }
                outcome
            }
            Forwarded::Rejected { status } => {
                // Refused before any upstream (a CONNECT, no usable destination): rejected, not
                // forwarded.
                Counters::take_back(&counters.forwarded);
                Counters::bump(&counters.rejected);
                after = After::Close;
                Outcome::Refused(status)
            }
            Forwarded::ClientGone => {
                if asked.log {
                    let outcome = Outcome::UpstreamFailed(None);
                    worker.log_answer(&self.line(&asked, outcome, 0));
                }
                return None;
            }
        };
        Some(self.finish(&asked, outcome, body_bytes, failure, after))
    }

    /// The log line parts of a request.
    fn line<'a>(&self, asked: &'a Asked<'_>, outcome: Outcome, body_bytes: u64) -> Answered<'a> {
        Answered {
            peer: self.peer,
            method: asked.method,
            url: asked.ex.url(asked.method),
            http_version: if asked.version_minor == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            outcome,
            flow: asked.ex.replayed_flow(),
            body_bytes,
            turn: self.now,
        }
    }

    /// Ends an answered request: its log line (when sampled) and `-v` line, and whether the
    /// connection goes on after it.
    fn finish(
        &self,
        asked: &Asked<'_>,
        outcome: Outcome,
        body_bytes: u64,
        failure: Option<crate::upstream::ForwardError>,
        mut after: After,
    ) -> (After, bool) {
        if asked.log {
            self.worker
                .log_answer(&self.line(asked, outcome, body_bytes));
        }
        // The no-host answer has no route and no -v line.
        if let (true, Some(url)) = (self.worker.shared.serve.verbose, asked.ex.url(asked.method)) {
            // A closed stdout must not stop the server: the line is dropped.
            let line = stats::request_line(&self.peer, asked.method, &url, outcome);
            let _ = match failure {
                Some(error) => writeln!(std::io::stdout().lock(), "{line}: {error}"),
                None => writeln!(std::io::stdout().lock(), "{line}"),
            };
        }
        let client_done = asked.wants_close;
        if client_done && matches!(after, After::Continue) {
            after = After::Close;
        }
        (after, client_done)
    }
}

/// Answers a request that stopped arriving with 408 (an idle connection just closes), then
/// closes.
async fn request_timeout<S: Transport>(
    conn: &mut Conn,
    outbox: &mut Outbox,
    mut stream: S,
    input: Vec<u8>,
    counters: &Counters,
) {
    if conn.expiry() == Expiry::RequestTimeout {
        Counters::bump(&counters.rejected);
        http1::write_timeout(&mut outbox.bytes);
        if outbox.flush(&mut stream).await.is_err() {
            return;
        }
    }
    linger_close(stream, input).await;
}

/// How long a closing connection waits for the client's FIN, at most.
const LINGER: Duration = Duration::from_secs(2);

/// Closes after a final answer without losing it to a reset: shut the write side (FIN), then read
/// and drop what the client still sends until its FIN (bounded: 1 MiB, [`LINGER`]).
async fn linger_close<S: Transport>(mut stream: S, buf: Vec<u8>) {
    let _ = stream.shutdown().await;
    let _ = monoio::time::timeout(LINGER, drain_until_eof(stream, buf)).await;
}

async fn drain_until_eof<S: Transport>(mut stream: S, mut buf: Vec<u8>) {
    let mut drained = 0usize;
    while drained < 1024 * 1024 {
        buf.clear();
        if buf.capacity() < 4096 {
            buf.reserve(4096);
        }
        let cap = buf.capacity();
        match monoio::time::timeout(Duration::from_secs(1), stream.read(buf.slice_mut(0..cap)))
            .await
        {
            Ok((Ok(n), slice)) if n > 0 => {
                drained += n;
                buf = slice.into_inner();
            }
            _ => return,
        }
    }
}

/// The connection driver over a transport that is not TCP: proof that it is generic.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use monoio::net::UnixStream;

    use super::*;
    use crate::config::ReplayOptions;
    use crate::flowfile::writer::{write_flow, FlowSpec, ResponseSpec};
    use crate::flowfile::{LoadOptions, Recording};
    use crate::replay::miss::MissLog;

    /// A test-only transport: one end of a Unix socket pair (no TCP, no addresses).
    impl Transport for UnixStream {
        fn drain_arrived(&mut self, _input: &mut Vec<u8>) -> usize {
            0
        }

        fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
            None
        }
    }

    fn flow(n: u8, path: &str, body: &[u8]) -> FlowSpec {
        FlowSpec {
            id: format!("00000000-0000-4000-8000-00000000000{n}"),
            method: b"GET".to_vec(),
            scheme: b"http".to_vec(),
            host: "example.com".to_string(),
            port: 80,
            path: path.as_bytes().to_vec(),
            http_version: b"HTTP/1.1".to_vec(),
            headers: vec![(b"Host".to_vec(), b"example.com".to_vec())],
            content: Some(Vec::new()),
            timestamp_start: 946_681_200.0,
            response: Some(ResponseSpec {
                status_code: 200,
                reason: b"OK".to_vec(),
                http_version: b"HTTP/1.1".to_vec(),
                headers: vec![(
                    b"content-length".to_vec(),
                    body.len().to_string().into_bytes(),
                )],
                content: Some(body.to_vec()),
                timestamp_start: 946_681_202.0,
            }),
        }
    }

    /// A worker without a listener or sweeper, serving a three-flow recording.
    fn worker() -> Worker {
        let mut bytes = Vec::new();
        for (n, path, body) in [
            (1, "/a", &b"one"[..]),
            (2, "/b", b"two"),
            (3, "/c", b"three"),
        ] {
            write_flow(&mut bytes, &flow(n, path, body));
        }
        let mut post = flow(4, "/p", b"posted");
        post.method = b"POST".to_vec();
        post.content = Some(b"hello world".to_vec());
        write_flow(&mut bytes, &post);
        let recording = Recording::from_bytes(
            vec![(PathBuf::from("test.flows"), bytes)],
            LoadOptions::default(),
        )
        .unwrap();
        let replayer = Replayer::new(Arc::new(recording), &ReplayOptions::default());
        let serve = ServeOptions::default();
        let forward = forward::settings(&serve).unwrap();
        let shared = Arc::new(Shared {
            replayer: ArcSwap::from_pointee(replayer),
            reverse: None,
            reverse_host_header: Box::default(),
            forward: forward.clone(),
            tls: None,
            limits: Limits::default(),
            timeouts: Timeouts {
                head: Duration::from_secs(30),
                body_progress: Duration::from_secs(30),
                idle: Duration::from_secs(30),
            },
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
            counters: vec![Counters::default()],
            live: vec![Liveness::default()],
            misses: vec![MissLog::new()],
            started: clock::instant(),
            fd_warning_at: AtomicU64::new(0),
            serve,
        });
        Worker {
            shared,
            index: 0,
            open: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            ticks: Cell::new(0),
            listener_fd: Cell::new(None),
            forwarder: Forwarder::new(forward),
            stopping: Cell::new(false),
            tls: None,
            log: RefCell::new(None),
            send_timeout: None,
            lane: RefCell::new(None),
            repeats: RefCell::new(RepeatCache::new()),
        }
    }

    /// Reads from `client` into `got` until `done(got)` or end of stream, within 10 s.
    async fn read_until(client: &mut UnixStream, got: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
        let deadline = Duration::from_secs(10);
        let mut buf = vec![0u8; 4096];
        for _ in 0..1000 {
            if done(got) {
                return;
            }
            let (res, b) = monoio::time::timeout(deadline, client.read(buf))
                .await
                .expect("the driver answered within 10 s");
            buf = b;
            match res.expect("read from the driver") {
                0 => return,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Runs `task` to its end on a monoio runtime with timers.
    fn block_on<F: std::future::Future>(task: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(task)
    }

    /// A connection's peer address and slot, for a driver with no socket of its own.
    fn slot() -> (SocketAddr, Slot) {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let slot = Slot {
            deadline: Cell::new(u64::MAX),
            expired: Cell::new(false),
            cancel: RefCell::new(Canceller::new()),
            fd: -1,
            send: Cell::new(SendWatch::IDLE),
            peer,
        };
        (peer, slot)
    }

    #[test]
    fn the_connection_driver_serves_a_replay_and_a_pipelined_pair_over_a_unix_socket() {
        let worker = worker();
        let (peer, slot) = slot();
        block_on(async {
            // Created inside the runtime: monoio registers both ends with its driver.
            let (server, mut client) = UnixStream::pair().unwrap();
            let client_side = async {
                // One request, answered before the next is sent.
                let (res, _) = client
                    .write_all(b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec())
                    .await;
                res.unwrap();
                let mut first = Vec::new();
                read_until(&mut client, &mut first, |g| g.ends_with(b"\r\n\r\none")).await;
                assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"), "{first:?}");
                assert!(first.ends_with(b"\r\n\r\none"), "{first:?}");
                // A pipelined pair in one write; the second closes the connection.
                let pair = b"GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n\
                                 GET /c HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n";
                let (res, _) = client.write_all(pair.to_vec()).await;
                res.unwrap();
                let mut rest = Vec::new();
                read_until(&mut client, &mut rest, |_| false).await;
                let text = String::from_utf8_lossy(&rest);
                assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
                let two = text.find("\r\n\r\ntwo").expect("the /b answer");
                let three = text.find("\r\n\r\nthree").expect("the /c answer");
                assert!(two < three, "answers in request order: {text}");
                assert!(text.ends_with("\r\n\r\nthree"), "{text}");
                // Our end closes too, so the driver's linger ends at once.
                drop(client);
            };
            let start = Resume::fresh(&worker, Vec::new());
            let driver = connection(&worker, &slot, server, peer, Leg::default(), start);
            monoio::join!(driver, client_side);
        });
        let counters = &worker.shared.counters[0];
        assert_eq!(counters.replayed.load(Ordering::Relaxed), 3);
    }

    /// A chunked body half decoded by the direct ring when it hands the connection over: the
    /// driver goes on from the ring's parse state and decoded bytes, so the body is whole.
    #[test]
    fn a_connection_resumed_mid_chunked_body_replays_the_whole_body() {
        let worker = worker();
        let (peer, slot) = slot();
        // What the ring had read and parsed: the head and the first chunk.
        let mut start = Resume::fresh(&worker, Vec::new());
        start.input.extend_from_slice(
            b"POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\nhello \r\n",
        );
        let mut headers = header_slots();
        let mut out = Vec::new();
        let step =
            start
                .conn
                .poll_request(&start.input, &mut headers, &mut start.scratch, &mut out);
        assert!(matches!(step, Step::NeedMore));
        assert_eq!(start.scratch, b"hello ", "the first chunk is decoded");
        block_on(async {
            let (server, mut client) = UnixStream::pair().unwrap();
            let client_side = async {
                let rest = b"5\r\nworld\r\n0\r\n\r\n".to_vec();
                let (res, _) = client.write_all(rest).await;
                res.unwrap();
                let mut got = Vec::new();
                read_until(&mut client, &mut got, |g| g.ends_with(b"posted")).await;
                let text = String::from_utf8_lossy(&got);
                assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
                drop(client);
            };
            let driver = connection(&worker, &slot, server, peer, Leg::default(), start);
            monoio::join!(driver, client_side);
        });
        let counters = &worker.shared.counters[0];
        assert_eq!(counters.replayed.load(Ordering::Relaxed), 1);
    }
}
