//! The recorder (`-w FILE`, `-w +FILE`, `uringreplay convert`): forwarded exchanges become
//! format-21 flows, the bytes mitmproxy 12 writes for them, appended to a file by one writer
//! thread. A driver: it owns a thread, a file and the clock.
//!
//! The serving path calls [`Recorder::record`], which encodes the flow straight from the
//! forwarded exchange's parts (borrowed: no copy of the exchange, no intermediate flow value)
//! into the pending batch, under a lock only forwarded requests take, and never waits for the
//! disk: when the batch would hold more than [`DEFAULT_PENDING_BYTES`] with it, the flow is
//! dropped and counted, with at most one warning a second. The writer thread is woken once per busy spell (the
//! first flow after it went idle); from then on it takes the batch every [`DRAIN_INTERVAL`] and
//! writes it with one `write` per [`MAX_WRITE_BYTES`] of whole flows, so a killed process leaves
//! a file that loads up to the last complete flow.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::flowfile::writer::{
    write_parts, write_record, Address, ConnParts, ErrorParts, FlowParts, FlowRecord, Id,
    MessageParts,
};
use crate::http1::{split_absolute, MAX_HEADERS};

/// Bytes of encoded flows the server lets wait for the writer thread; beyond, flows are
/// dropped and counted (the bound on the recorder's memory, plus one flow).
pub const DEFAULT_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// How long the writer lets flows gather during a busy spell before it takes them: at 10 ms a
/// load test's thousands of saved flows a second reach the file in about 100 writes a second,
/// while a flow waits at most that long in memory.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// The most one `write` carries (whole flows; a single larger flow goes alone): large writes
/// cost less per byte, and a kill cuts at most the flows of one write short.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;

/// The largest response body saved (`-w`): a forwarded response with a longer body is relayed
/// whole but not saved, and counted ([`CaptureStats::too_large`]); a copy of it would hold that
/// much memory per connection until the writer took it.
pub const MAX_SAVED_BODY: usize = 16 * 1024 * 1024;

/// Where flows go: mitmproxy's `save_stream_file` (`+FILE` appends, anything else truncates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveTarget {
    /// The file.
    pub path: PathBuf,
    /// Append to it instead of truncating it.
    pub append: bool,
}

impl SaveTarget {
    /// Reads `-w` / `--save-stream-file`'s value as mitmproxy does: a leading `+` appends.
    pub fn parse(value: &str) -> SaveTarget {
        match value.strip_prefix('+') {
            Some(path) => SaveTarget {
                path: PathBuf::from(path),
                append: true,
            },
            None => SaveTarget {
                path: PathBuf::from(value),
                append: false,
            },
        }
    }
}

/// Why recording could not start.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The file could not be opened or created.
    #[error("{path}: cannot open the file to save flows to: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the flow writer thread: {0}")]
    Thread(io::Error),
}

/// One connection end of a forwarded exchange.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// A number for the connection, the same for every exchange on it (it becomes the
    /// connection's id in the flow).
    pub connection: u64,
    /// The remote address.
    pub peer: SocketAddr,
    /// The local address.
    pub local: SocketAddr,
    /// When the connection was opened (Unix seconds).
    pub opened: f64,
    /// Upstream side: when the TCP handshake finished (mitmproxy's `timestamp_tcp_setup`).
    pub established: Option<f64>,
}

/// The forwarded request as the client sent it, borrowed from the connection's buffers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a [u8],
    /// The request target as sent (origin-form or absolute-form).
    pub target: &'a [u8],
    /// The client's HTTP/1.x minor version.
    pub version_minor: u8,
    /// The client's header fields, in order and spelling.
    pub headers: &'a [httparse::Header<'a>],
    /// The `Host` value stored instead of the client's, added when the client sent none
    /// (reverse mode rewrites it, as mitmproxy stores it); `None` keeps the client's.
    pub host: Option<&'a [u8]>,
    /// The body, de-chunked.
    pub body: &'a [u8],
    /// Request fully received (Unix seconds).
    pub start: f64,
    /// Request body fully received.
    pub end: f64,
}

/// What the upstream answered, borrowed from the relay's copy.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParts<'a> {
    /// The response head as received, status line to the blank line.
    pub head: &'a [u8],
    /// The body, de-chunked, Content-Encoding kept (as mitmproxy stores it).
    pub body: &'a [u8],
    /// Response head received (Unix seconds).
    pub start: f64,
    /// Response body fully received.
    pub end: f64,
}

/// A forwarded request and what came of it, as the engine hands it over (borrowed; [`Recorder::record`]
/// encodes it at once).
#[derive(Debug, Clone, Copy)]
pub struct ForwardedExchange<'a> {
    /// The request.
    pub request: RequestParts<'a>,
    /// The response; `None` when the forward failed before one arrived (then `error` says why).
    pub response: Option<ResponseParts<'a>>,
    /// Why the forward failed, worded as mitmproxy words it, and when.
    pub error: Option<ErrorParts<'a>>,
    /// `http` or `https`: how the upstream was reached.
    pub scheme: &'a str,
    /// The upstream host the request went to.
    pub host: &'a str,
    /// The upstream port.
    pub port: u16,
    /// The client's connection.
    pub client: Endpoint,
    /// The upstream connection; `None` when none was made.
    pub upstream: Option<Endpoint>,
}

/// What the writer thread did, counted.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    too_large: AtomicU64,
    writes: AtomicU64,
    /// Seconds since the recorder started at which the last "falling behind" line was printed,
    /// plus one (0: never).
    warned_at: AtomicU64,
}

/// Counts of a recorder's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Flows written to the file.
    pub written: u64,
    /// Flows dropped because the writer fell behind (pending batch full).
    pub dropped: u64,
    /// Flows that could not be written (unreadable head, write error).
    pub failed: u64,
    /// Flows not saved because the response body was over [`MAX_SAVED_BODY`].
    pub too_large: u64,
}

impl std::fmt::Display for CaptureStats {
    /// `12 forwarded flows saved, 0 dropped (the writer fell behind), …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} forwarded flow{} saved, {} dropped (the writer fell behind), {} not written \
             (write error or unreadable head), {} not saved (response body over {} MiB)",
            self.written,
            if self.written == 1 { "" } else { "s" },
            self.dropped,
            self.failed,
            self.too_large,
            MAX_SAVED_BODY >> 20
        )
    }
}

thread_local! {
    /// The flow being recorded on this thread, encoded before it joins the batch.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Capacity of a thread's encoding buffer kept between flows.
const ENCODED_KEPT: usize = 1 << 20;

/// The batch the serving threads append to and the writer takes.
#[derive(Debug, Default)]
struct Pending {
    /// Encoded flows, whole, in the order they joined the batch.
    bytes: Vec<u8>,
    /// The writer is waiting for a first flow: the next flow wakes it.
    parked: bool,
    /// No more flows: the writer writes what is pending and ends.
    closed: bool,
}

/// What the recorder and its writer thread share.
#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the first flow of a busy spell arrives, and at close.
    wake: Condvar,
    /// Signalled when the writer has taken the batch (room for `convert`, which waits).
    room: Condvar,
    counters: Counters,
    /// Bytes of flows that may wait.
    limit: usize,
    /// `proxy_mode` of every flow's client connection.
    proxy_mode: String,
    /// High half of every id this recorder makes (fresh per run).
    seed: u64,
    /// Flows numbered so far (their ids).
    numbered: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A writer thread that panicked leaves the batch as it was: whole flows.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The recorder: a bounded batch of encoded flows in front of one writer thread appending them
/// to a file.
pub struct Recorder {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    started: Instant,
    path: PathBuf,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

impl Recorder {
    /// Opens (truncates, or with `append` appends to) the file and starts the writer thread;
    /// `proxy_mode` is recorded in every flow's client connection (`regular`,
    /// `reverse:http://host:port`), `pending_bytes` bounds the encoded flows waiting to be written.
    pub fn start(
        target: &SaveTarget,
        proxy_mode: &str,
        pending_bytes: usize,
    ) -> Result<Recorder, CaptureError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(target.append)
            .truncate(!target.append)
            .open(&target.path)
            .map_err(|source| CaptureError::Open {
                path: target.path.clone(),
                source,
            })?;
        Recorder::start_with(Box::new(file), &target.path, proxy_mode, pending_bytes)
    }

    /// Starts the writer thread on any sink (`path` names it in messages).
    #[allow(clippy::disallowed_methods)] // a driver: reads the clock for ids and warnings
    fn start_with(
        file: Box<dyn Write + Send>,
        path: &std::path::Path,
        proxy_mode: &str,
        pending_bytes: usize,
    ) -> Result<Recorder, CaptureError> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
            counters: Counters::default(),
            limit: pending_bytes.max(1),
            proxy_mode: proxy_mode.to_string(),
            seed,
            numbered: AtomicU64::new(0),
        });
        let writer = Writer {
            file,
            path: path.to_path_buf(),
            shared: Arc::clone(&shared),
        };
        let handle = std::thread::Builder::new()
            .name("flow-writer".to_string())
            .spawn(move || writer.run())
            .map_err(CaptureError::Thread)?;
        Ok(Recorder {
            shared,
            writer: Some(handle),
            started: Instant::now(),
            path: path.to_path_buf(),
        })
    }

    /// Encodes the exchange into the pending batch; never waits for the disk. When the writer
    /// has fallen behind (batch full) the flow is dropped and counted, with a warning at most
    /// once a second; an unreadable response head is counted as failed.
    pub fn record(&self, exchange: &ForwardedExchange<'_>) {
        let shared = &*self.shared;
        let pending = shared.lock();
        if pending.closed {
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if pending.bytes.len() >= shared.limit {
            drop(pending);
            let dropped = shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.warn_dropped(dropped);
            return;
        }
        drop(pending);
        // Encoded outside the lock, into this thread's own buffer, so that one thread's large
        // flow does not stall the others' `record`; only the append is under the lock.
        let number = shared.numbered.fetch_add(1, Ordering::Relaxed) + 1;
        ENCODED.with_borrow_mut(|encoded| {
            encoded.clear();
            if encode(encoded, exchange, shared, number).is_none() {
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut pending = shared.lock();
            if pending.closed {
                drop(pending);
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Checked again with the flow's size: other threads may have appended while this
            // one encoded, and a flow goes past the bound only into an empty batch (else one
            // larger than the bound could never be written).
            if !pending.bytes.is_empty() && pending.bytes.len() + encoded.len() > shared.limit {
                drop(pending);
                let dropped = shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.warn_dropped(dropped);
                return;
            }
            pending.bytes.extend_from_slice(encoded);
            self.added(pending);
            // A rare very large flow does not keep its buffer's size on this thread.
            if encoded.capacity() > ENCODED_KEPT {
                *encoded = Vec::new();
            }
        });
    }

    /// Queues a flow made elsewhere (HAR or flow-file input of `convert`), waiting for room.
    pub fn write_record_waiting(&self, record: &FlowRecord) {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        while pending.bytes.len() >= shared.limit && !pending.closed {
            pending = shared.room.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        if pending.closed {
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        write_record(&mut pending.bytes, record);
        self.added(pending);
    }

    /// One more flow is in the batch: wake the writer if this starts a busy spell.
    fn added(&self, mut pending: MutexGuard<'_, Pending>) {
        let wake = std::mem::replace(&mut pending.parked, false);
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Counts a forwarded exchange not saved because its response body was over
    /// [`MAX_SAVED_BODY`]; the first one gets a warning line naming the request.
    pub fn skip_too_large(&self, method: &str, host: &str, target: &[u8]) {
        if self
            .shared
            .counters
            .too_large
            .fetch_add(1, Ordering::Relaxed)
            == 0
        {
            eprintln!(
                "warning: {}: {method} {host}{}: the response body is over {} MiB, so this \
                 flow is not saved (it was relayed whole); such flows are counted at exit",
                self.path.display(),
                String::from_utf8_lossy(target),
                MAX_SAVED_BODY >> 20
            );
        }
    }

    /// The file flows are saved to.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    #[allow(clippy::disallowed_methods)] // only on the drop path
    fn warn_dropped(&self, dropped: u64) {
        let counters = &self.shared.counters;
        let now = self.started.elapsed().as_secs() + 1;
        let last = counters.warned_at.load(Ordering::Relaxed);
        if now > last
            && counters
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            eprintln!(
                "warning: {}: the flow writer is falling behind; {dropped} forwarded flows not \
                 saved so far (answers are not held up)",
                self.path.display()
            );
        }
    }

    /// What has been done so far.
    pub fn stats(&self) -> CaptureStats {
        let c = &self.shared.counters;
        CaptureStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            too_large: c.too_large.load(Ordering::Relaxed),
        }
    }

    /// `write` calls made so far (each carries up to [`MAX_WRITE_BYTES`] of whole flows).
    pub fn writes(&self) -> u64 {
        self.shared.counters.writes.load(Ordering::Relaxed)
    }

    /// Writes what is pending, stops the writer thread and returns the final counts.
    pub fn finish(mut self) -> CaptureStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        self.shared.room.notify_all();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every worker may share one recorder (`Arc<Recorder>`).
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Recorder>();
};

/// A request's fields as saved: the client's, in order, with `Host` replaced (or added) when
/// the request says so.
#[derive(Debug, Clone)]
struct SavedFields<'a> {
    fields: std::slice::Iter<'a, httparse::Header<'a>>,
    host: Option<&'a [u8]>,
    host_seen: bool,
}

impl<'a> SavedFields<'a> {
    fn new(fields: &'a [httparse::Header<'a>], host: Option<&'a [u8]>) -> Self {
        SavedFields {
            fields: fields.iter(),
            host,
            host_seen: false,
        }
    }
}

impl<'a> Iterator for SavedFields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self.fields.next() {
            Some(h) if h.name.eq_ignore_ascii_case("host") => {
                self.host_seen = true;
                Some((h.name.as_bytes(), self.host.unwrap_or(h.value)))
            }
            Some(h) => Some((h.name.as_bytes(), h.value)),
            None if !self.host_seen => {
                self.host_seen = true;
                self.host.map(|v| (&b"Host"[..], v))
            }
            None => None,
        }
    }
}

fn version(minor: u8) -> &'static [u8] {
    match minor {
        0 => b"HTTP/1.0",
        _ => b"HTTP/1.1",
    }
}

/// Appends the flow mitmproxy would write for the exchange; `None` (with `out` partly
/// written: the caller truncates) when the response head does not parse.
fn encode(
    out: &mut Vec<u8>,
    e: &ForwardedExchange<'_>,
    shared: &Shared,
    number: u64,
) -> Option<()> {
    let r = &e.request;
    let (authority, path) = match split_absolute(r.target) {
        Some((_, authority, path)) => (authority, path),
        None => (&b""[..], r.target),
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let response = match &e.response {
        Some(resp) => {
            let mut head = httparse::Response::new(&mut slots);
            head.parse(resp.head).ok()?.is_complete().then_some(())?;
            let status = head.code?;
            let reason = head.reason.unwrap_or("").as_bytes();
            let http_version = version(head.version?);
            Some((
                status,
                reason,
                MessageParts {
                    http_version,
                    headers: SavedFields::new(head.headers, None),
                    content: Some(resp.body),
                    trailers: None,
                    timestamp_start: resp.start,
                    timestamp_end: Some(resp.end),
                },
            ))
        }
        None => None,
    };
    let seed = shared.seed;
    let socket = |a: SocketAddr| Some(Address::Socket(a));
    let server_conn = match &e.upstream {
        Some(u) => ConnParts {
            id: Id::Numbered(seed, 2 << 56 | u.connection),
            peername: socket(u.peer),
            sockname: socket(u.local),
            timestamp_start: Some(u.opened),
            timestamp_end: None,
            address: Some(Address::Named(e.host, e.port)),
            timestamp_tcp_setup: u.established,
            proxy_mode: "",
        },
        // No connection was made: mitmproxy keeps only the address asked for.
        None => ConnParts {
            id: Id::Numbered(seed, 3 << 56 | number),
            peername: None,
            sockname: None,
            timestamp_start: None,
            timestamp_end: None,
            address: Some(Address::Named(e.host, e.port)),
            timestamp_tcp_setup: None,
            proxy_mode: "",
        },
    };
    write_parts(
        out,
        &FlowParts {
            id: Id::Numbered(seed, number),
            method: r.method,
            scheme: e.scheme.as_bytes(),
            authority,
            host: e.host,
            port: e.port,
            path,
            request: MessageParts {
                http_version: version(r.version_minor),
                headers: SavedFields::new(r.headers, r.host),
                content: Some(r.body),
                trailers: None,
                timestamp_start: r.start,
                timestamp_end: Some(r.end),
            },
            response,
            error: e.error,
            client_conn: ConnParts {
                id: Id::Numbered(seed, 1 << 56 | e.client.connection),
                peername: socket(e.client.peer),
                sockname: socket(e.client.local),
                timestamp_start: Some(e.client.opened),
                timestamp_end: None,
                address: None,
                timestamp_tcp_setup: None,
                proxy_mode: &shared.proxy_mode,
            },
            server_conn,
            timestamp_created: r.start,
        },
    );
    Some(())
}

/// The writer thread's state.
struct Writer {
    file: Box<dyn Write + Send>,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl Writer {
    /// Parks until a busy spell starts, then takes the batch every [`DRAIN_INTERVAL`] and
    /// writes it, until the spell ends (nothing arrived in an interval) or the recorder closes.
    #[allow(clippy::disallowed_methods)] // the writer thread's own pacing
    fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let mut spare = Vec::new();
        let mut reported = false;
        loop {
            let mut pending = shared.lock();
            if pending.bytes.is_empty() {
                if pending.closed {
                    return;
                }
                pending.parked = true;
                while pending.parked && !pending.closed {
                    pending = shared.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
                }
                pending.parked = false;
            }
            if !pending.closed {
                // Let the spell's flows gather (the serving threads append meanwhile).
                drop(pending);
                std::thread::sleep(DRAIN_INTERVAL);
                pending = shared.lock();
            }
            let batch = std::mem::replace(&mut pending.bytes, std::mem::take(&mut spare));
            drop(pending);
            shared.room.notify_all();
            self.write_batch(&batch, &mut reported);
            spare = batch;
            spare.clear();
            if spare.capacity() > 4 * MAX_WRITE_BYTES {
                // One burst of large flows should not pin its memory for the whole run.
                spare = Vec::new();
            }
        }
    }

    /// Writes whole flows in `write`s of at most [`MAX_WRITE_BYTES`] (a larger flow alone).
    fn write_batch(&mut self, batch: &[u8], reported: &mut bool) {
        let counters = &self.shared.counters;
        let mut pos = 0;
        while pos < batch.len() {
            let start = pos;
            let mut flows = 0;
            while pos < batch.len() {
                let end = pos + framed_len(&batch[pos..]);
                if end - start > MAX_WRITE_BYTES && flows > 0 {
                    break;
                }
                pos = end;
                flows += 1;
            }
            if *reported {
                // A failed write may have left part of a flow at the end of the file: nothing
                // goes after it (the flows behind it could not be read), as the error said.
                counters.failed.fetch_add(flows, Ordering::Relaxed);
                continue;
            }
            counters.writes.fetch_add(1, Ordering::Relaxed);
            match self.file.write_all(&batch[start..pos]) {
                Ok(()) => {
                    counters.written.fetch_add(flows, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(flows, Ordering::Relaxed);
                    if !*reported {
                        *reported = true;
                        eprintln!(
                            "error: {}: cannot save flows: {e}; forwarded flows are no longer saved",
                            self.path.display()
                        );
                    }
                }
            }
        }
    }
}

/// The length of the tnetstring value at the start of `bytes` (prefix, payload and tag): a flow
/// this module encoded, so the prefix is well formed.
fn framed_len(bytes: &[u8]) -> usize {
    let mut len = 0usize;
    let mut digits = 0;
    for &b in bytes {
        if b == b':' {
            break;
        }
        len = len * 10 + usize::from(b - b'0');
        digits += 1;
    }
    (digits + 1 + len + 1).min(bytes.len())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read fixture files
mod tests {
    use super::*;
    use crate::flowfile::tnetstring::{parse_value, Tag, Value};
    use crate::flowfile::{LoadOptions, Recording};

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn endpoint(connection: u64, peer: &str, local: &str, opened: f64) -> Endpoint {
        Endpoint {
            connection,
            peer: peer.parse().unwrap(),
            local: local.parse().unwrap(),
            opened,
            established: None,
        }
    }

    const GET_HEAD: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-B: 1\r\nx-a: 2\r\n\r\n";
    const OK_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n";

    /// A request head parsed as the connection parses it (leaked: tests only).
    fn parsed(head: &'static [u8]) -> RequestParts<'static> {
        let slots = Box::leak(Box::new([httparse::EMPTY_HEADER; MAX_HEADERS]));
        let mut req = httparse::Request::new(slots);
        assert!(req.parse(head).unwrap().is_complete());
        let headers: &'static [httparse::Header<'static>] = Box::leak(req.headers.to_vec().into());
        RequestParts {
            method: req.method.unwrap().as_bytes(),
            target: req.path.unwrap().as_bytes(),
            version_minor: req.version.unwrap(),
            headers,
            host: None,
            body: b"",
            start: 1_795_737_600.25,
            end: 1_795_737_600.5,
        }
    }

    fn exchange(request: RequestParts<'static>, body: &'static [u8]) -> ForwardedExchange<'static> {
        ForwardedExchange {
            request,
            response: Some(ResponseParts {
                head: OK_HEAD,
                body,
                start: 1_795_737_601.0,
                end: 1_795_737_601.5,
            }),
            error: None,
            scheme: "http",
            host: "127.0.0.1",
            port: 9,
            client: endpoint(7, "127.0.0.1:40000", "127.0.0.1:8080", 1_795_737_600.0),
            upstream: Some(Endpoint {
                established: Some(1_795_737_600.125),
                ..endpoint(3, "127.0.0.1:9", "127.0.0.1:50000", 1_795_737_600.062_5)
            }),
        }
    }

    fn load(path: &std::path::Path) -> Recording {
        Recording::open(&[path.to_path_buf()], LoadOptions::default(), &mut |_| {}).unwrap()
    }

    fn bodies(rec: &Recording) -> Vec<Vec<u8>> {
        rec.flows()
            .map(|f| f.response.unwrap().content.unwrap().to_vec())
            .collect()
    }

    #[test]
    fn recorded_exchanges_load_with_every_field_in_wire_order() {
        let dir = tempfile::tempdir().unwrap();
        let target = SaveTarget::parse(dir.path().join("x.flows").to_str().unwrap());
        let recorder = Recorder::start(&target, "reverse:http://127.0.0.1:9", 1 << 20).unwrap();
        recorder.record(&exchange(parsed(GET_HEAD), b"hello"));
        recorder.record(&exchange(
            parsed(b"GET http://127.0.0.1:9/abs HTTP/1.0\r\n\r\n"),
            b"world",
        ));
        let rewritten = RequestParts {
            host: Some(b"up.test:9"),
            ..parsed(GET_HEAD)
        };
        recorder.record(&exchange(rewritten, b"three"));
        let added = RequestParts {
            host: Some(b"up.test:9"),
            ..parsed(b"GET /no-host HTTP/1.0\r\nX: 1\r\n\r\n")
        };
        recorder.record(&exchange(added, b"four"));
        let stats = recorder.finish();
        assert_eq!(
            stats,
            CaptureStats {
                written: 4,
                dropped: 0,
                failed: 0,
                too_large: 0
            }
        );
        let rec = load(&target.path);
        assert_eq!(rec.len(), 4);
        let f = rec.flow(0);
        assert_eq!(f.request.method, b"GET");
        assert_eq!(f.request.path, b"/a?x=1");
        assert_eq!((f.request.host, f.request.port), (&b"127.0.0.1"[..], 9));
        let headers: Vec<_> = f.request.headers.iter().collect();
        assert_eq!(
            headers,
            [
                (&b"Host"[..], &b"127.0.0.1:9"[..]),
                (b"X-B", b"1"),
                (b"x-a", b"2")
            ]
        );
        assert_eq!(f.request.timestamp_start, 1_795_737_600.25);
        assert_eq!(f.request.timestamp_end, Some(1_795_737_600.5));
        let resp = f.response.unwrap();
        assert_eq!((resp.status_code, resp.reason), (200, &b"OK"[..]));
        assert_eq!(resp.content, Some(&b"hello"[..]));
        assert_eq!(resp.timestamp_end, Some(1_795_737_601.5));
        let g = rec.flow(1);
        assert_eq!(
            (g.request.path, g.request.authority),
            (&b"/abs"[..], &b"127.0.0.1:9"[..])
        );
        assert_eq!(g.request.http_version, b"HTTP/1.0");
        let fields = |id| -> Vec<(Vec<u8>, Vec<u8>)> {
            rec.flow(id)
                .request
                .headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect()
        };
        assert_eq!(fields(2)[0], (b"Host".to_vec(), b"up.test:9".to_vec()));
        assert_eq!(
            fields(3),
            [
                (b"X".to_vec(), b"1".to_vec()),
                (b"Host".to_vec(), b"up.test:9".to_vec())
            ]
        );
    }

    /// Serving threads record at once (each encodes on its own, outside the lock): every flow
    /// lands whole, none lost or interleaved.
    #[test]
    fn flows_recorded_by_several_threads_at_once_all_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.flows");
        let target = SaveTarget::parse(path.to_str().unwrap());
        let recorder = Recorder::start(&target, "regular", 64 << 20).unwrap();
        // `exchange` borrows its body for 'static.
        let bodies_sent: &'static [Vec<u8>] = Vec::leak(
            (0..4)
                .flat_map(|t| {
                    (0..50).map(move |i| format!("t{t}-{i}-{}", "x".repeat(i * 97)).into_bytes())
                })
                .collect(),
        );
        std::thread::scope(|scope| {
            for t in 0..4 {
                let recorder = &recorder;
                scope.spawn(move || {
                    for body in &bodies_sent[t * 50..(t + 1) * 50] {
                        recorder.record(&exchange(parsed(GET_HEAD), body));
                    }
                });
            }
        });
        assert_eq!(recorder.finish().written, 200);
        let mut got = bodies(&load(&path));
        let mut want = bodies_sent.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_plus_appends_and_a_plain_name_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.flows");
        let name = path.to_str().unwrap().to_string();
        let write = |spec: &str, body: &'static [u8]| {
            let r = Recorder::start(&SaveTarget::parse(spec), "regular", 1 << 20).unwrap();
            r.record(&exchange(parsed(GET_HEAD), body));
            assert_eq!(r.finish().written, 1);
        };
        write(&name, b"one");
        write(&format!("+{name}"), b"two");
        assert_eq!(bodies(&load(&path)), [b"one".to_vec(), b"two".to_vec()]);
        write(&name, b"three");
        assert_eq!(bodies(&load(&path)), [b"three".to_vec()]);
    }

    /// A sink whose first write waits until the test lets it go; it keeps each write apart.
    struct Stalled {
        entered: std::sync::mpsc::SyncSender<()>,
        release: std::sync::mpsc::Receiver<()>,
        writes: Writes,
        first: bool,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.first {
                self.first = false;
                self.entered.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a [`Stalled`] sink was given, one entry per write.
    type Writes = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A recorder on a [`Stalled`] sink, and the handles to drive it: flow 0 is recorded and
    /// the writer is stuck in its write when this returns.
    fn stalled(limit: usize) -> (Recorder, std::sync::mpsc::SyncSender<()>, Writes) {
        let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::sync_channel(1);
        let writes = Arc::new(Mutex::new(Vec::new()));
        let sink = Stalled {
            entered: entered_tx,
            release: release_rx,
            writes: Arc::clone(&writes),
            first: true,
        };
        let recorder = Recorder::start_with(
            Box::new(sink),
            std::path::Path::new("stalled"),
            "regular",
            limit,
        )
        .unwrap();
        recorder.record(&exchange(parsed(GET_HEAD), b"0"));
        // The writer holds flow 0 inside its (stalled) write: the batch is empty again.
        entered.recv().unwrap();
        (recorder, release, writes)
    }

    fn loaded(bytes: Vec<u8>) -> Recording {
        Recording::from_bytes(vec![("s".into(), bytes)], LoadOptions::default()).unwrap()
    }

    #[test]
    fn a_flow_that_would_take_the_batch_past_its_bound_is_dropped() {
        // Room for one and a half flows: the second would take the batch past it.
        let probe = Recorder::start_with(
            Box::new(io::sink()),
            std::path::Path::new("probe"),
            "regular",
            1,
        )
        .unwrap();
        let mut one = Vec::new();
        encode(
            &mut one,
            &exchange(parsed(GET_HEAD), b"1"),
            &probe.shared,
            1,
        )
        .unwrap();
        probe.finish();
        let (recorder, release, writes) = stalled(one.len() * 3 / 2);
        for body in [b"1", b"2", b"3"] {
            recorder.record(&exchange(parsed(GET_HEAD), body));
        }
        assert_eq!(recorder.stats().dropped, 2);
        release.send(()).unwrap();
        let stats = recorder.finish();
        assert_eq!((stats.written, stats.dropped), (2, 2));
        let bytes = writes.lock().unwrap().concat();
        assert_eq!(loaded(bytes).len(), 2);
    }

    #[test]
    fn a_full_batch_drops_and_counts_without_blocking() {
        // Room for one flow: the first one fills the batch.
        let (recorder, release, writes) = stalled(1);
        for body in [b"1", b"2", b"3", b"4", b"5"] {
            recorder.record(&exchange(parsed(GET_HEAD), body));
        }
        assert_eq!(recorder.stats().dropped, 4);
        release.send(()).unwrap();
        let stats = recorder.finish();
        assert_eq!(
            stats,
            CaptureStats {
                written: 2,
                dropped: 4,
                failed: 0,
                too_large: 0
            }
        );
        let bytes = writes.lock().unwrap().concat();
        assert_eq!(bodies(&loaded(bytes)), [b"0".to_vec(), b"1".to_vec()]);
    }

    /// A sink that takes half of its first write, fails the second (the disk is full, and says
    /// so on `failed`), then takes everything (space came back).
    struct FillsUp {
        calls: usize,
        failed: std::sync::mpsc::SyncSender<()>,
        writes: Writes,
    }

    impl Write for FillsUp {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            match self.calls {
                1 => {
                    self.writes
                        .lock()
                        .unwrap()
                        .push(buf[..buf.len() / 2].to_vec());
                    Ok(buf.len() / 2)
                }
                2 => {
                    let _ = self.failed.send(());
                    Err(io::Error::from_raw_os_error(libc::ENOSPC))
                }
                _ => {
                    self.writes.lock().unwrap().push(buf.to_vec());
                    Ok(buf.len())
                }
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_a_failed_write_nothing_more_is_written_behind_the_part_of_a_flow_it_left() {
        let (failed_tx, failed) = std::sync::mpsc::sync_channel(1);
        let writes = Arc::new(Mutex::new(Vec::new()));
        let sink = FillsUp {
            calls: 0,
            failed: failed_tx,
            writes: Arc::clone(&writes),
        };
        let recorder = Recorder::start_with(
            Box::new(sink),
            std::path::Path::new("full"),
            "regular",
            1 << 20,
        )
        .unwrap();
        recorder.record(&exchange(parsed(GET_HEAD), b"0"));
        failed.recv().unwrap();
        // Space is back, but the file ends in half a flow: later flows are counted as failed.
        recorder.record(&exchange(parsed(GET_HEAD), b"1"));
        let stats = recorder.finish();
        assert_eq!((stats.written, stats.failed), (0, 2));
        assert_eq!(
            writes.lock().unwrap().len(),
            1,
            "only the half flow of the failed write"
        );
    }

    #[test]
    fn a_busy_spell_is_written_in_writes_of_at_most_a_mebibyte_of_whole_flows() {
        let (recorder, release, writes) = stalled(64 << 20);
        // 3000 flows of about 1.3 KB gathered while the writer is stuck: about 4 MiB.
        let body: &'static [u8] = Box::leak(vec![b'x'; 1000].into_boxed_slice());
        for _ in 0..3000 {
            recorder.record(&exchange(parsed(GET_HEAD), body));
        }
        release.send(()).unwrap();
        let stats = recorder.finish();
        assert_eq!(stats.written, 3001);
        let writes = writes.lock().unwrap().clone();
        let total: usize = writes.iter().map(Vec::len).sum();
        // Flow 0 alone, then the batch in as few writes as the bound allows.
        assert_eq!(
            writes.len(),
            1 + total.div_ceil(MAX_WRITE_BYTES),
            "{total} bytes"
        );
        let mut flows = 0;
        for w in &writes {
            assert!(w.len() <= MAX_WRITE_BYTES, "{}", w.len());
            // Each write is whole flows.
            flows += loaded(w.clone()).len();
        }
        assert_eq!(flows, 3001);
    }

    #[test]
    fn an_unreadable_response_head_is_counted_as_failed_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = SaveTarget::parse(dir.path().join("x.flows").to_str().unwrap());
        let recorder = Recorder::start(&target, "regular", 1 << 20).unwrap();
        let mut bad = exchange(parsed(GET_HEAD), b"");
        bad.response = Some(ResponseParts {
            head: b"not http\r\n\r\n",
            ..bad.response.unwrap()
        });
        recorder.record(&bad);
        recorder.record(&exchange(parsed(GET_HEAD), b"ok"));
        assert_eq!(
            recorder.finish(),
            CaptureStats {
                written: 1,
                dropped: 0,
                failed: 1,
                too_large: 0
            }
        );
        assert_eq!(bodies(&load(&target.path)), [b"ok".to_vec()]);
    }

    /// The value with connection and flow ids and `timestamp_created` blanked (they are fresh
    /// per run), everything else, key order included, as written.
    fn skeleton(v: Value<'_>, key: &str, out: &mut String) {
        use std::fmt::Write as _;
        match v.tag {
            Tag::Dict => {
                out.push('{');
                for entry in v.entries() {
                    let (k, v) = entry.unwrap();
                    let k = std::str::from_utf8(k.payload).unwrap();
                    let _ = write!(out, "{k}=");
                    skeleton(v, k, out);
                    out.push(',');
                }
                out.push('}');
            }
            Tag::List => {
                out.push('[');
                for item in v.items() {
                    skeleton(item.unwrap(), "", out);
                    out.push(',');
                }
                out.push(']');
            }
            _ if key == "id" || key == "timestamp_created" => out.push('*'),
            tag => {
                let _ = write!(out, "{:?}:{}", tag, String::from_utf8_lossy(v.payload));
            }
        }
    }

    fn get<'v>(d: Value<'v>, path: &[&str]) -> Value<'v> {
        path.iter().fold(d, |v, k| v.get(k).unwrap().unwrap())
    }

    fn addr(flow: Value<'_>, path: &[&str]) -> SocketAddr {
        let mut items = get(flow, path).items();
        let host = items.next().unwrap().unwrap().as_str().unwrap().to_string();
        let port = items.next().unwrap().unwrap().as_i64().unwrap();
        format!("{host}:{port}").parse().unwrap()
    }

    /// The request of a recorded flow as the connection would hand it over.
    fn request_of(flow: &crate::flowfile::FlowView<'static>) -> RequestParts<'static> {
        let r = &flow.request;
        let headers: Vec<httparse::Header<'static>> = r
            .headers
            .iter()
            .map(|(n, v)| httparse::Header {
                name: std::str::from_utf8(n).unwrap(),
                value: v,
            })
            .collect();
        RequestParts {
            method: r.method,
            target: r.path,
            version_minor: 1,
            headers: Box::leak(headers.into_boxed_slice()),
            host: None,
            body: r.content.unwrap(),
            start: r.timestamp_start,
            end: r.timestamp_end.unwrap(),
        }
    }

    /// Flows mitmdump wrote, and what we write for the same exchanges: equal skeletons.
    fn assert_laid_out_as(theirs: &'static [u8], proxy_mode: &str, port: u16) {
        let recording: &'static Recording = Box::leak(Box::new(loaded(theirs.to_vec())));
        let dir = tempfile::tempdir().unwrap();
        let target = SaveTarget::parse(dir.path().join("ours.flows").to_str().unwrap());
        let recorder = Recorder::start(&target, proxy_mode, 1 << 20).unwrap();
        let mut offset = 0;
        let mut expected = Vec::new();
        for id in 0..recording.len() {
            let (flow, used) = parse_value(&theirs[offset..], 0, "file").unwrap();
            offset += used;
            let f = recording.flow(id);
            let response_head: &'static [u8] = match &f.response {
                Some(resp) => {
                    let mut head = format!(
                        "HTTP/1.1 {} {}\r\n",
                        resp.status_code,
                        String::from_utf8_lossy(resp.reason)
                    )
                    .into_bytes();
                    for (n, v) in resp.headers.iter() {
                        head.extend_from_slice(&[n, b": ", v, b"\r\n"].concat());
                    }
                    head.extend_from_slice(b"\r\n");
                    Box::leak(head.into_boxed_slice())
                }
                None => b"",
            };
            let error = match get(flow, &[]).get("error").unwrap() {
                Some(e) if !e.is_null() => Some(ErrorParts {
                    msg: Box::leak(
                        get(e, &["msg"])
                            .as_str()
                            .unwrap()
                            .to_string()
                            .into_boxed_str(),
                    ),
                    timestamp: get(e, &["timestamp"]).as_f64().unwrap(),
                }),
                _ => None,
            };
            let upstream = f.response.as_ref().map(|_| Endpoint {
                connection: id as u64,
                peer: addr(flow, &["server_conn", "peername"]),
                local: addr(flow, &["server_conn", "sockname"]),
                opened: get(flow, &["server_conn", "timestamp_start"])
                    .as_f64()
                    .unwrap(),
                established: Some(
                    get(flow, &["server_conn", "timestamp_tcp_setup"])
                        .as_f64()
                        .unwrap(),
                ),
            });
            recorder.record(&ForwardedExchange {
                request: request_of(&f),
                response: f.response.as_ref().map(|resp| ResponseParts {
                    head: response_head,
                    body: resp.content.unwrap(),
                    start: resp.timestamp_start,
                    end: resp.timestamp_end.unwrap(),
                }),
                error,
                scheme: "http",
                host: "127.0.0.1",
                port,
                client: Endpoint {
                    connection: id as u64,
                    peer: addr(flow, &["client_conn", "peername"]),
                    local: addr(flow, &["client_conn", "sockname"]),
                    opened: get(flow, &["client_conn", "timestamp_start"])
                        .as_f64()
                        .unwrap(),
                    established: None,
                },
                upstream,
            });
            let mut s = String::new();
            skeleton(flow, "", &mut s);
            expected.push(s);
        }
        assert_eq!(recorder.finish().written, recording.len() as u64);
        let ours = std::fs::read(&target.path).unwrap();
        let mut offset = 0;
        for want in expected {
            let (flow, used) = parse_value(&ours[offset..], 0, "file").unwrap();
            offset += used;
            let mut got = String::new();
            skeleton(flow, "", &mut got);
            assert_eq!(got, want);
        }
        assert_eq!(offset, ours.len());
    }

    #[test]
    fn a_recorded_flow_is_laid_out_as_mitmproxy_12_writes_the_same_exchange() {
        // Two exchanges mitmdump 12.3.1 saved in reverse mode in front of a Python origin.
        let theirs = std::fs::read(fixture("mitm-12.3.1-reverse-recorded.flows")).unwrap();
        assert_laid_out_as(
            Box::leak(theirs.into_boxed_slice()),
            "reverse:http://127.0.0.1:29555",
            29555,
        );
    }

    #[test]
    fn a_refused_forward_is_laid_out_as_mitmdump_saves_one_with_its_error_and_no_response() {
        // mitmdump 11.0.2 -w in reverse mode (connection_strategy=lazy) in front of a closed
        // port, one curl request: the flow has `error` and no response.
        let theirs = std::fs::read(fixture("mitm-11.0.2-reverse-refused.flows")).unwrap();
        assert_laid_out_as(
            Box::leak(theirs.into_boxed_slice()),
            "reverse:http://127.0.0.1:37885",
            37885,
        );
    }
}
