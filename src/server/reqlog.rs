//! The `--log-json` driver: per-core batches of lines, one writer thread, the file.
//!
//! Each worker owns a [`CoreLog`]: it formats a sampled request's line
//! ([`crate::reqlog::write_record`]) into its current batch (a [`BATCH_BYTES`] buffer) and hands
//! a full batch to the writer thread over a bounded channel, taking an empty buffer back from
//! its own return channel. A quiet core's batch goes out on the worker's flush tick
//! ([`FLUSH_EVERY`], a timer of its event loop). Nothing per request beyond formatting: no lock,
//! no syscall, no allocation once the buffers exist (at most [`BUFFERS_PER_CORE`] per core,
//! recycled). When every buffer of a core is with the writer (it fell behind), the batch is
//! dropped and its lines are counted ([`Counters::log_dropped`]: `/metrics`, the summary, the
//! report). A write error is one sentence naming the file; logging stops, serving goes on. A
//! clean stop flushes every batch ([`CoreLog::finish`], then [`LogWriter::finish`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::clock;
use crate::exchange::Url;
use crate::reqlog::{self, Record};
use crate::stats::{Counters, Outcome};

/// A batch's size: a full one is one `write` of about a thousand 190-byte lines.
pub const BATCH_BYTES: usize = 192 * 1024;

/// A batch is handed over once it holds this much, so a line (a few hundred bytes, a long URL
/// a few KiB) rarely makes the buffer grow.
const BATCH_FULL: usize = BATCH_BYTES - 16 * 1024;

/// Buffers per core: the one being filled plus up to three queued for or being written by the
/// writer thread (768 KiB per core).
pub const BUFFERS_PER_CORE: usize = 4;

/// How often a worker hands over a batch that is not full (a quiet core's lines reach the file
/// within this).
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One answered request as a driver (HTTP/1, HTTP/2, over TLS or not) reports it.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The method, as sent.
    pub method: &'a [u8],
    /// The URL (`None`: no usable destination).
    pub url: Option<Url<'a>>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub http_version: &'static str,
    /// What happened (the same outcome as the `-v` line and the counters).
    pub outcome: Outcome,
    /// The recorded flow that answered.
    pub flow: Option<u32>,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// The clock reading of the turn that read the request.
    pub turn: SystemTime,
}

/// Microseconds from `a` to `b` (0 when `b` is earlier).
fn micros_between(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A batch on its way to the writer, with the way back for its buffer.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    back: SyncSender<Vec<u8>>,
}

/// What the writer thread reports, read by the main thread.
#[derive(Debug, Default)]
struct WriterStats {
    /// Lines written to the file.
    written: AtomicU64,
    /// A write failed: logging stopped.
    failed: AtomicBool,
}

/// The writer thread and its file, held by the server's handle.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    sample: u64,
    stats: Arc<WriterStats>,
    thread: Option<JoinHandle<()>>,
}

/// One worker's side of the log: its batch, its spare buffers, its sample count.
#[derive(Debug)]
pub struct CoreLog {
    /// The batch being filled.
    batch: Vec<u8>,
    /// Lines in `batch`.
    lines: u64,
    /// Full batches go here.
    to_writer: SyncSender<Batch>,
    /// The return channel's sending side, handed along with each batch.
    back: SyncSender<Vec<u8>>,
    /// Emptied buffers come back here.
    spare: Receiver<Vec<u8>>,
    /// Buffers this core has made so far (at most [`BUFFERS_PER_CORE`]).
    made: usize,
    /// One request in `sample` is logged.
    sample: u64,
    /// Requests seen, for the sampling.
    seen: u64,
    /// The writer is gone (a write failed): log nothing more.
    off: bool,
}

/// Opens `path` (truncating it) and starts the writer thread; returns it with one [`CoreLog`]
/// per worker. The error is one sentence naming the file.
pub fn start(path: &Path, sample: u64, cores: usize) -> Result<(LogWriter, Vec<CoreLog>), String> {
    let file = File::create(path).map_err(|e| {
        format!(
            "--log-json {}: cannot open the file for writing: {e}",
            path.display()
        )
    })?;
    let (to_writer, rx) = mpsc::sync_channel::<Batch>(cores.max(1) * BUFFERS_PER_CORE);
    let stats = Arc::new(WriterStats::default());
    let thread = {
        let stats = stats.clone();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("uringreplay-log".to_string())
            .spawn(move || write_batches(file, &path, rx, &stats))
            .map_err(|e| format!("cannot start the request log thread: {e}"))?
    };
    let logs = (0..cores)
        .map(|_| {
            let (back, spare) = mpsc::sync_channel(BUFFERS_PER_CORE);
            CoreLog {
                batch: Vec::with_capacity(BATCH_BYTES),
                lines: 0,
                to_writer: to_writer.clone(),
                back,
                spare,
                made: 1,
                sample: sample.max(1),
                seen: 0,
                off: false,
            }
        })
        .collect();
    Ok((
        LogWriter {
            path: path.to_path_buf(),
            sample,
            stats,
            thread: Some(thread),
        },
        logs,
    ))
}

/// The writer thread: appends each batch with one `write_all`, sends its buffer back. A failed
/// write says so once and ends the thread (the workers then find the channel closed).
fn write_batches(mut file: File, path: &Path, rx: Receiver<Batch>, stats: &WriterStats) {
    while let Ok(Batch {
        mut bytes,
        lines,
        back,
    }) = rx.recv()
    {
        if let Err(e) = file.write_all(&bytes) {
            stats.failed.store(true, Ordering::Relaxed);
            eprintln!(
                "error: --log-json {}: cannot write to the file ({e}); request logging stops, \
                 serving goes on",
                path.display()
            );
            return;
        }
        stats.written.fetch_add(lines, Ordering::Relaxed);
        bytes.clear();
        // The core may be gone (its worker ended): the buffer is freed then.
        let _ = back.try_send(bytes);
    }
}

impl LogWriter {
    /// Waits for the writer to write everything queued (every [`CoreLog`] must be finished or
    /// dropped first) and returns the report line: `request log FILE: N lines written`, with
    /// the sampling, and the lines dropped among `dropped`.
    pub fn finish(mut self, dropped: u64) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.report(dropped)
    }

    /// The report line so far (without waiting for the writer).
    pub fn report(&self, dropped: u64) -> String {
        let written = self.stats.written.load(Ordering::Relaxed);
        let mut line = format!(
            "request log {}: {written} lines written",
            self.path.display()
        );
        if self.sample > 1 {
            line.push_str(&format!(" (one request in {})", self.sample));
        }
        if dropped > 0 {
            line.push_str(&format!(
                ", {dropped} dropped (the writer fell behind or failed)"
            ));
        }
        if self.stats.failed.load(Ordering::Relaxed) {
            line.push_str("; a write failed, logging stopped");
        }
        line
    }
}

impl CoreLog {
    /// Counts one request; true when it is the one in `sample` to log. The first request of
    /// each run of `sample` is logged, so a single request always is.
    #[inline]
    pub fn sampled(&mut self) -> bool {
        if self.off {
            return false;
        }
        let take = self.seen % self.sample == 0;
        self.seen += 1;
        take
    }

    /// Appends the line of a sampled request (one clock reading, for its service time).
    pub fn answered(&mut self, a: &Answered<'_>, counters: &Counters) {
        let unix_micros = match a.turn.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        };
        let record = Record {
            unix_micros,
            peer: a.peer,
            method: a.method,
            url: a.url,
            http_version: a.http_version,
            outcome: a.outcome.label(),
            flow: a.flow,
            status: a.outcome.status(),
            bytes: a.body_bytes,
            service_micros: micros_between(a.turn, clock::now()),
        };
        self.push(&record, counters);
    }

    /// Appends `record`'s line; hands the batch over when it is full.
    pub fn push(&mut self, record: &Record<'_>, counters: &Counters) {
        reqlog::write_record(record, &mut self.batch);
        self.lines += 1;
        if self.batch.len() >= BATCH_FULL {
            self.hand_over(counters);
        }
    }

    /// The flush tick: hands over a batch that has lines.
    pub fn tick(&mut self, counters: &Counters) {
        if self.lines > 0 {
            self.hand_over(counters);
        }
    }

    /// Sends the batch to the writer with an empty buffer in its place, or, when no buffer is
    /// free (the writer is behind) or the writer is gone, drops its lines and counts them.
    fn hand_over(&mut self, counters: &Counters) {
        let next = match self.spare.try_recv() {
            Ok(buffer) => Some(buffer),
            Err(_) if self.made < BUFFERS_PER_CORE => {
                self.made += 1;
                Some(Vec::with_capacity(BATCH_BYTES))
            }
            Err(_) => None,
        };
        let Some(next) = next else {
            self.drop_batch(counters);
            return;
        };
        let batch = Batch {
            bytes: std::mem::replace(&mut self.batch, next),
            lines: std::mem::take(&mut self.lines),
            back: self.back.clone(),
        };
        match self.to_writer.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch)) => {
                // Not reached while the channel holds every core's buffers; kept safe anyway.
                self.batch = batch.bytes;
                self.lines = batch.lines;
                self.drop_batch(counters);
            }
            Err(TrySendError::Disconnected(batch)) => {
                self.batch = batch.bytes;
                self.lines = batch.lines;
                self.drop_batch(counters);
                self.off = true;
            }
        }
    }

    fn drop_batch(&mut self, counters: &Counters) {
        let field = &counters.log_dropped;
        field.store(
            field.load(Ordering::Relaxed) + std::mem::take(&mut self.lines),
            Ordering::Relaxed,
        );
        self.batch.clear();
    }

    /// At the worker's stop: hands the last batch over, waiting for room if the writer is
    /// behind (nothing is dropped at a clean stop unless the writer failed).
    pub fn finish(mut self, counters: &Counters) {
        if self.lines == 0 || self.off {
            return;
        }
        let batch = Batch {
            bytes: std::mem::take(&mut self.batch),
            lines: std::mem::take(&mut self.lines),
            back: self.back.clone(),
        };
        if let Err(mpsc::SendError(batch)) = self.to_writer.send(batch) {
            self.lines = batch.lines;
            self.drop_batch(counters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Destination;

    fn record<'a>(route: &'a Destination<'a>) -> Record<'a> {
        Record {
            unix_micros: 1_796_236_362_123_456,
            peer: "127.0.0.1:1".parse().unwrap(),
            method: b"GET",
            url: Some(Url {
                route,
                connect: false,
            }),
            http_version: "HTTP/1.1",
            outcome: "replayed",
            flow: Some(0),
            status: Some(200),
            bytes: 3,
            service_micros: 1,
        }
    }

    #[test]
    fn batches_reach_the_file_in_order_and_a_stop_flushes_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let (writer, mut logs) = start(&path, 1, 2).unwrap();
        let counters = Counters::default();
        let route = Destination {
            scheme: b"http",
            host: b"h",
            port: 80,
            target: b"/",
        };
        let mut total = 0;
        for (core, log) in logs.iter_mut().enumerate() {
            // Several full batches from core 0, a partial one from core 1.
            let n = if core == 0 { 3000 } else { 7 };
            for _ in 0..n {
                assert!(log.sampled());
                log.push(&record(&route), &counters);
            }
            total += n;
        }
        for log in logs {
            log.finish(&counters);
        }
        let line = writer.finish(0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), total);
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["outcome"], "replayed");
        }
        assert_eq!(counters.log_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(
            line,
            format!("request log {}: {total} lines written", path.display())
        );
    }

    #[test]
    fn one_request_in_n_is_sampled_per_core_starting_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, mut logs) = start(&dir.path().join("l"), 10, 1).unwrap();
        let taken: Vec<usize> = (0..35).filter(|_| logs[0].sampled()).collect();
        assert_eq!(taken.len(), 4);
        let mut log = logs.pop().unwrap();
        let picks: Vec<bool> = (0..11).map(|_| log.sampled()).collect();
        // 35 seen so far: the 41st (seen 40, index 5 here) is the next one taken.
        assert_eq!(picks.iter().position(|&p| p), Some(5));
    }

    #[test]
    fn a_writer_that_is_behind_makes_the_core_drop_and_count_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, mut logs) = start(&dir.path().join("l"), 1, 1).unwrap();
        let counters = Counters::default();
        let log = &mut logs[0];
        // Every buffer is out: none made, none returned.
        log.made = BUFFERS_PER_CORE;
        while log.spare.try_recv().is_ok() {}
        let route = Destination {
            scheme: b"http",
            host: b"h",
            port: 80,
            target: b"/",
        };
        for _ in 0..5 {
            log.push(&record(&route), &counters);
        }
        log.tick(&counters);
        assert_eq!(counters.log_dropped.load(Ordering::Relaxed), 5);
        assert!(log.batch.is_empty() && log.batch.capacity() >= BATCH_BYTES);
        drop(logs);
        assert!(writer
            .finish(5)
            .ends_with(": 0 lines written, 5 dropped (the writer fell behind or failed)"));
    }
}
