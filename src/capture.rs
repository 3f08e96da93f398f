//! The recorder (`-w FILE`, `-w +FILE`, `uringreplay convert`): forwarded exchanges become
//! format-21 flows, the bytes mitmproxy 12 writes for them, appended to a file by one writer
//! thread fed through a bounded queue. A driver: it owns a thread, a file and the clock.
//!
//! The serving path calls [`Recorder::record`], which copies the exchange (the one owned copy,
//! made only for forwarded requests) and never blocks: when the queue is full the flow is
//! dropped and counted, with at most one warning a second. Each flow reaches the file with one
//! `write`, so a killed process leaves a file that loads up to the last complete flow.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use thiserror::Error;

use crate::flowfile::writer::{numbered_id, write_record, ConnRecord, FlowRecord, MessageRecord};
use crate::http1::{split_absolute, MAX_HEADERS};

/// Queue length used by the server: flows waiting for the writer thread.
pub const DEFAULT_QUEUE: usize = 4096;

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

/// A forwarded request and what the upstream answered, as the engine hands it over (borrowed;
/// [`Recorder::record`] copies it). Bodies are the decoded message bodies (de-chunked, Content-
/// Encoding kept), as mitmproxy stores them.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedExchange<'a> {
    /// The request head as sent to the upstream (Host rewritten in reverse mode, as mitmproxy
    /// stores it), request line to the blank line.
    pub request_head: &'a [u8],
    /// The request body.
    pub request_body: &'a [u8],
    /// The response head as received from the upstream, status line to the blank line.
    pub response_head: &'a [u8],
    /// The response body.
    pub response_body: &'a [u8],
    /// `http` or `https`: how the upstream was reached.
    pub scheme: &'a str,
    /// The upstream host the request went to.
    pub host: &'a str,
    /// The upstream port.
    pub port: u16,
    /// Request head fully received (Unix seconds).
    pub request_start: f64,
    /// Request body fully received.
    pub request_end: f64,
    /// Response head received.
    pub response_start: f64,
    /// Response body fully received.
    pub response_end: f64,
    /// The client's connection.
    pub client: Endpoint,
    /// The upstream connection.
    pub upstream: Endpoint,
}

/// What the writer thread is handed.
enum Job {
    /// A forwarded exchange, copied.
    Exchange(Box<Owned>),
    /// A flow already serialised (`convert`).
    Bytes(Vec<u8>),
}

/// An exchange copied for the writer thread.
struct Owned {
    heads_and_bodies: Vec<u8>,
    lens: [usize; 4],
    scheme: String,
    host: String,
    port: u16,
    times: [f64; 4],
    client: Endpoint,
    upstream: Endpoint,
}

/// What the writer thread did, counted.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    too_large: AtomicU64,
    /// Seconds since the recorder started at which the last "falling behind" line was printed,
    /// plus one (0: never).
    warned_at: AtomicU64,
}

/// Counts of a recorder's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Flows written to the file.
    pub written: u64,
    /// Flows dropped because the writer fell behind (queue full).
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

/// The recorder: a bounded queue in front of one writer thread appending flows to a file.
pub struct Recorder {
    queue: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
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
    /// `reverse:http://host:port`), `queue` bounds the flows waiting to be written.
    #[allow(clippy::disallowed_methods)] // a driver: reads the clock for ids and warnings
    pub fn start(
        target: &SaveTarget,
        proxy_mode: &str,
        queue: usize,
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
        Recorder::start_with(Box::new(file), &target.path, proxy_mode, queue)
    }

    /// Starts the writer thread on any sink (`path` names it in messages).
    #[allow(clippy::disallowed_methods)] // a driver: reads the clock for ids and warnings
    fn start_with(
        file: Box<dyn Write + Send>,
        path: &std::path::Path,
        proxy_mode: &str,
        queue: usize,
    ) -> Result<Recorder, CaptureError> {
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let counters = Arc::new(Counters::default());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        let writer = Writer {
            file,
            path: path.to_path_buf(),
            proxy_mode: proxy_mode.to_string(),
            seed,
            flows: 0,
            counters: Arc::clone(&counters),
            buffer: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("flow-writer".to_string())
            .spawn(move || writer.run(rx))
            .map_err(CaptureError::Thread)?;
        Ok(Recorder {
            queue: Some(tx),
            writer: Some(handle),
            counters,
            started: Instant::now(),
            path: path.to_path_buf(),
        })
    }

    /// Queues the exchange for writing, copying it; never blocks. When the writer has fallen
    /// behind (queue full) the flow is dropped and counted, with a warning at most once a second.
    pub fn record(&self, exchange: &ForwardedExchange<'_>) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(Job::Exchange(Box::new(own(exchange)))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.warn_dropped(dropped);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues the exchange, waiting for room (`convert`: nothing may be dropped).
    pub fn record_waiting(&self, exchange: &ForwardedExchange<'_>) {
        let Some(queue) = &self.queue else { return };
        if queue.send(Job::Exchange(Box::new(own(exchange)))).is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a flow made elsewhere (HAR or flow-file input of `convert`), waiting for room.
    pub fn write_record_waiting(&self, record: FlowRecord) {
        let Some(queue) = &self.queue else { return };
        let mut bytes = Vec::new();
        write_record(&mut bytes, &record);
        if queue.send(Job::Bytes(bytes)).is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a forwarded exchange not saved because its response body was over
    /// [`MAX_SAVED_BODY`]; the first one gets a warning line naming the request.
    pub fn skip_too_large(&self, method: &str, host: &str, target: &[u8]) {
        if self.counters.too_large.fetch_add(1, Ordering::Relaxed) == 0 {
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
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.counters.warned_at.load(Ordering::Relaxed);
        if now > last
            && self
                .counters
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
        CaptureStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            too_large: self.counters.too_large.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued, stops the writer thread and returns the final counts.
    pub fn finish(mut self) -> CaptureStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.queue = None;
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

fn own(e: &ForwardedExchange<'_>) -> Owned {
    let parts = [
        e.request_head,
        e.request_body,
        e.response_head,
        e.response_body,
    ];
    let mut heads_and_bodies = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        heads_and_bodies.extend_from_slice(p);
    }
    Owned {
        heads_and_bodies,
        lens: parts.map(<[u8]>::len),
        scheme: e.scheme.to_string(),
        host: e.host.to_string(),
        port: e.port,
        times: [
            e.request_start,
            e.request_end,
            e.response_start,
            e.response_end,
        ],
        client: e.client,
        upstream: e.upstream,
    }
}

/// The writer thread's state.
struct Writer {
    file: Box<dyn Write + Send>,
    path: PathBuf,
    proxy_mode: String,
    seed: u64,
    flows: u64,
    counters: Arc<Counters>,
    buffer: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        let mut reported = false;
        for job in rx {
            self.buffer.clear();
            match job {
                Job::Bytes(bytes) => self.buffer = bytes,
                Job::Exchange(flow) => match self.make_record(&flow) {
                    Some(record) => write_record(&mut self.buffer, &record),
                    None => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                },
            }
            // One write per flow: a killed process leaves whole flows only.
            match self.file.write_all(&self.buffer) {
                Ok(()) => {
                    self.counters.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    if !reported {
                        reported = true;
                        eprintln!(
                            "error: {}: cannot save flows: {e}; forwarded flows are no longer saved",
                            self.path.display()
                        );
                    }
                }
            }
        }
    }

    fn id(&self, kind: u64, n: u64) -> String {
        numbered_id(self.seed, kind << 56 | n)
    }

    /// The flow mitmproxy would write for the exchange, or `None` if a head does not parse.
    fn make_record(&mut self, f: &Owned) -> Option<FlowRecord> {
        let [a, b, c, d] = f.lens;
        let all = &f.heads_and_bodies;
        let (request_head, rest) = all.split_at(a);
        let (request_body, rest) = rest.split_at(b);
        let (response_head, response_body) = rest.split_at(c);
        debug_assert_eq!(response_body.len(), d);

        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        req.parse(request_head).ok()?.is_complete().then_some(())?;
        let method = req.method?.as_bytes().to_vec();
        let target = req.path?.as_bytes();
        let (authority, path) = match split_absolute(target) {
            Some((_, authority, path)) => (authority.to_vec(), path.to_vec()),
            None => (Vec::new(), target.to_vec()),
        };
        let request_version = version(req.version?);
        let request_headers = fields(req.headers);

        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        resp.parse(response_head)
            .ok()?
            .is_complete()
            .then_some(())?;
        let status = resp.code?;
        let reason = resp.reason.unwrap_or("").as_bytes().to_vec();
        let response_version = version(resp.version?);
        let response_headers = fields(resp.headers);

        let [request_start, request_end, response_start, response_end] = f.times;
        self.flows += 1;
        let addr = |a: SocketAddr| Some((a.ip().to_string(), a.port()));
        Some(FlowRecord {
            id: self.id(0, self.flows),
            method,
            scheme: f.scheme.as_bytes().to_vec(),
            authority,
            host: f.host.clone(),
            port: f.port,
            path,
            request: MessageRecord {
                http_version: request_version,
                headers: request_headers,
                content: Some(request_body.to_vec()),
                trailers: None,
                timestamp_start: request_start,
                timestamp_end: Some(request_end),
            },
            response: Some((
                status,
                reason,
                MessageRecord {
                    http_version: response_version,
                    headers: response_headers,
                    content: Some(response_body.to_vec()),
                    trailers: None,
                    timestamp_start: response_start,
                    timestamp_end: Some(response_end),
                },
            )),
            client_conn: ConnRecord {
                id: self.id(1, f.client.connection),
                peername: addr(f.client.peer),
                sockname: addr(f.client.local),
                timestamp_start: Some(f.client.opened),
                proxy_mode: self.proxy_mode.clone(),
                ..ConnRecord::default()
            },
            server_conn: ConnRecord {
                id: self.id(2, f.upstream.connection),
                peername: addr(f.upstream.peer),
                sockname: addr(f.upstream.local),
                timestamp_start: Some(f.upstream.opened),
                address: Some((f.host.clone(), f.port)),
                timestamp_tcp_setup: f.upstream.established,
                ..ConnRecord::default()
            },
            timestamp_created: request_start,
        })
    }
}

fn version(minor: u8) -> Vec<u8> {
    format!("HTTP/1.{minor}").into_bytes()
}

fn fields(headers: &[httparse::Header<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
        .collect()
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

    fn exchange<'a>(request_head: &'a [u8], body: &'a [u8]) -> ForwardedExchange<'a> {
        ForwardedExchange {
            request_head,
            request_body: b"",
            response_head: OK_HEAD,
            response_body: body,
            scheme: "http",
            host: "127.0.0.1",
            port: 9,
            request_start: 1_795_737_600.25,
            request_end: 1_795_737_600.5,
            response_start: 1_795_737_601.0,
            response_end: 1_795_737_601.5,
            client: endpoint(7, "127.0.0.1:40000", "127.0.0.1:8080", 1_795_737_600.0),
            upstream: Endpoint {
                established: Some(1_795_737_600.125),
                ..endpoint(3, "127.0.0.1:9", "127.0.0.1:50000", 1_795_737_600.062_5)
            },
        }
    }

    fn load(path: &std::path::Path) -> Recording {
        Recording::open(&[path.to_path_buf()], LoadOptions::default(), &mut |_| {}).unwrap()
    }

    #[test]
    fn recorded_exchanges_load_with_every_field_in_wire_order() {
        let dir = tempfile::tempdir().unwrap();
        let target = SaveTarget::parse(dir.path().join("x.flows").to_str().unwrap());
        let recorder = Recorder::start(&target, "reverse:http://127.0.0.1:9", 8).unwrap();
        recorder.record(&exchange(GET_HEAD, b"hello"));
        recorder.record(&exchange(
            b"GET http://127.0.0.1:9/abs HTTP/1.0\r\n\r\n",
            b"world",
        ));
        let stats = recorder.finish();
        assert_eq!(
            stats,
            CaptureStats {
                written: 2,
                dropped: 0,
                failed: 0,
                too_large: 0
            }
        );
        let rec = load(&target.path);
        assert_eq!(rec.len(), 2);
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
    }

    #[test]
    fn a_plus_appends_and_a_plain_name_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.flows");
        let name = path.to_str().unwrap().to_string();
        let write = |spec: &str, body: &[u8]| {
            let r = Recorder::start(&SaveTarget::parse(spec), "regular", 4).unwrap();
            r.record(&exchange(GET_HEAD, body));
            assert_eq!(r.finish().written, 1);
        };
        write(&name, b"one");
        write(&format!("+{name}"), b"two");
        let bodies = |rec: &Recording| -> Vec<Vec<u8>> {
            rec.flows()
                .map(|f| f.response.unwrap().content.unwrap().to_vec())
                .collect()
        };
        assert_eq!(bodies(&load(&path)), [b"one".to_vec(), b"two".to_vec()]);
        write(&name, b"three");
        assert_eq!(bodies(&load(&path)), [b"three".to_vec()]);
    }

    /// A sink whose first write waits until the test lets it go.
    struct Stalled {
        entered: mpsc::SyncSender<()>,
        release: Receiver<()>,
        out: Arc<std::sync::Mutex<Vec<u8>>>,
        first: bool,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.first {
                self.first = false;
                self.entered.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let (release, release_rx) = mpsc::sync_channel(1);
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Stalled {
            entered: entered_tx,
            release: release_rx,
            out: Arc::clone(&out),
            first: true,
        };
        let recorder = Recorder::start_with(
            Box::new(sink),
            std::path::Path::new("stalled"),
            "regular",
            2,
        )
        .unwrap();
        recorder.record(&exchange(GET_HEAD, b"0"));
        // The writer holds flow 0 inside its (stalled) write: the queue is empty again.
        entered.recv().unwrap();
        for body in [b"1", b"2", b"3", b"4", b"5"] {
            recorder.record(&exchange(GET_HEAD, body));
        }
        assert_eq!(recorder.stats().dropped, 3);
        release.send(()).unwrap();
        let stats = recorder.finish();
        assert_eq!(
            stats,
            CaptureStats {
                written: 3,
                dropped: 3,
                failed: 0,
                too_large: 0
            }
        );
        let bytes = out.lock().unwrap().clone();
        let rec = Recording::from_bytes(vec![("s".into(), bytes)], LoadOptions::default()).unwrap();
        let bodies: Vec<_> = rec
            .flows()
            .map(|f| f.response.unwrap().content.unwrap().to_vec())
            .collect();
        assert_eq!(bodies, [b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
    }

    #[test]
    fn an_unreadable_head_is_counted_as_failed_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = SaveTarget::parse(dir.path().join("x.flows").to_str().unwrap());
        let recorder = Recorder::start(&target, "regular", 4).unwrap();
        recorder.record(&exchange(b"not http\r\n\r\n", b""));
        recorder.record(&exchange(GET_HEAD, b"ok"));
        assert_eq!(
            recorder.finish(),
            CaptureStats {
                written: 1,
                dropped: 0,
                failed: 1,
                too_large: 0
            }
        );
        assert_eq!(load(&target.path).len(), 1);
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

    #[test]
    fn a_recorded_flow_is_laid_out_as_mitmproxy_12_writes_the_same_exchange() {
        // Two exchanges mitmdump 12.3.1 saved in reverse mode in front of a Python origin.
        let theirs = std::fs::read(fixture("mitm-12.3.1-reverse-recorded.flows")).unwrap();
        let recording =
            Recording::from_bytes(vec![("m".into(), theirs.clone())], LoadOptions::default())
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = SaveTarget::parse(dir.path().join("ours.flows").to_str().unwrap());
        let recorder = Recorder::start(&target, "reverse:http://127.0.0.1:29555", 8).unwrap();
        let mut offset = 0;
        let mut expected = Vec::new();
        for id in 0..recording.len() {
            let (flow, used) = parse_value(&theirs[offset..], 0, "file").unwrap();
            offset += used;
            let f = recording.flow(id);
            fn get<'v>(d: Value<'v>, path: &[&str]) -> Value<'v> {
                path.iter().fold(d, |v, k| v.get(k).unwrap().unwrap())
            }
            let f64_at = |path: &[&str]| get(flow, path).as_f64().unwrap();
            let addr = |path: &[&str]| -> SocketAddr {
                let mut items = get(flow, path).items();
                let host = items.next().unwrap().unwrap().as_str().unwrap().to_string();
                let port = items.next().unwrap().unwrap().as_i64().unwrap();
                format!("{host}:{port}").parse().unwrap()
            };
            let r = &f.request;
            let mut request_head = format!(
                "{} {} HTTP/1.1\r\n",
                String::from_utf8_lossy(r.method),
                String::from_utf8_lossy(r.path)
            )
            .into_bytes();
            for (n, v) in r.headers.iter() {
                request_head.extend_from_slice(&[n, b": ", v, b"\r\n"].concat());
            }
            request_head.extend_from_slice(b"\r\n");
            let resp = f.response.as_ref().unwrap();
            let mut response_head = format!(
                "HTTP/1.1 {} {}\r\n",
                resp.status_code,
                String::from_utf8_lossy(resp.reason)
            )
            .into_bytes();
            for (n, v) in resp.headers.iter() {
                response_head.extend_from_slice(&[n, b": ", v, b"\r\n"].concat());
            }
            response_head.extend_from_slice(b"\r\n");
            recorder.record(&ForwardedExchange {
                request_head: &request_head,
                request_body: r.content.unwrap(),
                response_head: &response_head,
                response_body: resp.content.unwrap(),
                scheme: "http",
                host: "127.0.0.1",
                port: 29555,
                request_start: r.timestamp_start,
                request_end: r.timestamp_end.unwrap(),
                response_start: resp.timestamp_start,
                response_end: resp.timestamp_end.unwrap(),
                client: Endpoint {
                    connection: id as u64,
                    peer: addr(&["client_conn", "peername"]),
                    local: addr(&["client_conn", "sockname"]),
                    opened: f64_at(&["client_conn", "timestamp_start"]),
                    established: None,
                },
                upstream: Endpoint {
                    connection: id as u64,
                    peer: addr(&["server_conn", "peername"]),
                    local: addr(&["server_conn", "sockname"]),
                    opened: f64_at(&["server_conn", "timestamp_start"]),
                    established: Some(f64_at(&["server_conn", "timestamp_tcp_setup"])),
                },
            });
            let mut s = String::new();
            skeleton(flow, "", &mut s);
            expected.push(s);
        }
        assert_eq!(recorder.finish().written, 2);
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
}
