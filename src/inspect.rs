//! `uringreplay inspect`: one line per HTTP flow (like `mitmdump -nr`), then a load summary; or
//! the same as JSON lines for tools. A driver: it reads the clock and writes to stdout/stderr.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::InspectArgs;
use crate::flowfile::{ErrorView, FlowView, LoadEvent, LoadOptions, LoadSummary, Recording};
use crate::server::heap;

/// A load that takes longer than this gets progress lines on stderr.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// At most one progress line per this long.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How a load went, beyond the recording's own summary.
#[derive(Debug, Clone, Copy)]
pub struct LoadCost {
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Heap bytes the load added (counting allocator), if it is installed.
    pub heap_bytes: Option<usize>,
}

/// When progress lines are due: the first once the load has run `first_after`, then at most one
/// per second. Takes the load's elapsed time, so it is tested without a clock.
#[derive(Debug, Clone, Copy)]
pub struct ProgressClock {
    next: Duration,
}

impl ProgressClock {
    /// The first line is due once loading has taken `first_after`.
    pub fn new(first_after: Duration) -> ProgressClock {
        ProgressClock { next: first_after }
    }

    /// Whether a line is due `elapsed` into the load (and if so, the next one is a period later).
    pub fn due(&mut self, elapsed: Duration) -> bool {
        if elapsed < self.next {
            return false;
        }
        self.next = elapsed + PROGRESS_EVERY;
        true
    }
}

/// `loading big.flows: 412.0 MB of 1.8 GB, 230000 flows`.
pub fn progress_line(file: &str, offset: u64, total: u64, flows: u64) -> String {
    format!(
        "loading {file}: {} of {}, {flows} flows",
        decimal_size(offset),
        decimal_size(total)
    )
}

/// Bytes in decimal units, as `ls -h --si` and disk sizes are given.
fn decimal_size(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n < 1e3 => format!("{n} B"),
        n if n < 1e6 => format!("{:.1} kB", n / 1e3),
        n if n < 1e9 => format!("{:.1} MB", n / 1e6),
        n => format!("{:.1} GB", n / 1e9),
    }
}

/// Physical memory in bytes: the bound on what a compressed file may decompress to.
pub(crate) fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration values.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| (pages as u64).saturating_mul(size as u64))
}

/// The first progress line's delay: [`PROGRESS_AFTER`], or `URINGREPLAY_PROGRESS_AFTER_MS`
/// (tests set it to 0 to see the line from a small recording).
fn progress_after() -> Duration {
    std::env::var("URINGREPLAY_PROGRESS_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(PROGRESS_AFTER, Duration::from_millis)
}

/// The file being read, for progress lines and the "no flows" warning.
#[derive(Default)]
struct Current {
    name: String,
    bytes: u64,
    flows: u64,
    started: bool,
}

impl Current {
    /// Warns when the file just read held no HTTP flow.
    fn finish(&self) {
        if !self.started || self.flows > 0 {
            return;
        }
        if self.bytes == 0 {
            eprintln!("warning: {}: no flows (the file is empty)", self.name);
        } else {
            eprintln!(
                "warning: {}: no flows to replay ({} bytes, none of them an HTTP flow)",
                self.name, self.bytes
            );
        }
    }
}

/// Loads `paths` as one recording, with progress lines on stderr when loading takes over a
/// second (at most one a second), a note for each compressed file, a warning for each file with
/// no flows, and one for each bad flow skipped. `observe` sees every load event too (the server
/// builds its index from them in the same pass). Used by `inspect` and `serve`.
#[allow(clippy::disallowed_methods)] // a driver: measures its own load time
pub fn load(
    paths: &[std::path::PathBuf],
    mut options: LoadOptions,
    observe: &mut dyn FnMut(&LoadEvent<'_>),
) -> Result<(Recording, LoadCost), crate::flowfile::LoadError> {
    let started = Instant::now();
    let heap_before = heap::live_bytes();
    if options.max_decompressed.is_none() {
        options.max_decompressed = physical_memory();
    }
    let mut progress = ProgressClock::new(progress_after());
    let mut current = Current::default();
    let mut flows = 0u64;
    let mut on_event = |event: LoadEvent<'_>| {
        observe(&event);
        match event {
            LoadEvent::FileStart { path, bytes } => {
                current.finish();
                current = Current {
                    name: path.display().to_string(),
                    bytes,
                    flows: 0,
                    started: true,
                };
            }
            LoadEvent::Decompressing {
                path,
                compression,
                bytes,
            } => eprintln!(
                "{}: {compression}-compressed ({}): decompressing it into memory once",
                path.display(),
                decimal_size(bytes)
            ),
            LoadEvent::Mapped { path, bytes } => eprintln!(
                "{}: {} is more than half this machine's memory, so it is served from a mapping \
                 of the file: to change it while serving, rename a new file over it (writing \
                 into it changes what is being served)",
                path.display(),
                decimal_size(bytes)
            ),
            LoadEvent::SkippedBadFlow { path, error } => {
                eprintln!("warning: {}: {error}; skipped", path.display());
            }
            // Every 4 MiB of a file and at its end: reading the clock here costs nothing
            // measurable.
            LoadEvent::Progress(offset) => {
                if progress.due(started.elapsed()) {
                    eprintln!(
                        "{}",
                        progress_line(&current.name, offset, current.bytes, flows)
                    );
                }
            }
            LoadEvent::HttpFlow { .. } => {
                flows += 1;
                current.flows += 1;
            }
        }
    };
    let recording = Recording::open(paths, options, &mut on_event)?;
    current.finish();
    let cost = LoadCost {
        elapsed: started.elapsed(),
        heap_bytes: heap::live_bytes()
            .zip(heap_before)
            .map(|(after, before)| after.saturating_sub(before)),
    };
    Ok((recording, cost))
}

/// The URL of a recorded request: `scheme://host[:port]path`, the port left out when it is the
/// scheme's default.
pub fn url(flow: &FlowView<'_>) -> String {
    let r = &flow.request;
    let scheme = String::from_utf8_lossy(r.scheme);
    let default_port = match r.scheme {
        b"https" => 443,
        _ => 80,
    };
    let host = String::from_utf8_lossy(r.host);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.into_owned()
    };
    let port = if r.port == default_port {
        String::new()
    } else {
        format!(":{}", r.port)
    };
    format!("{scheme}://{host}{port}{}", String::from_utf8_lossy(r.path))
}

/// Runs `inspect`; returns the process exit code.
pub fn run(args: &InspectArgs) -> std::process::ExitCode {
    let options = LoadOptions {
        skip_bad_flows: args.skip_bad_flows,
        ..LoadOptions::default()
    };
    let (recording, cost) = match load(&args.files, options, &mut |_| {}) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = write_report(&mut out, &recording, cost, args).and_then(|()| out.flush());
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the listing: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn write_report(
    out: &mut dyn Write,
    recording: &Recording,
    cost: LoadCost,
    args: &InspectArgs,
) -> io::Result<()> {
    if !args.summary {
        for flow in recording.flows() {
            let error = recording.error(flow.id);
            if args.json {
                writeln!(out, "{}", flow_json(&flow, error))?;
            } else {
                writeln!(out, "{}", flow_line(&flow, error))?;
            }
        }
    }
    let summary = recording.summary();
    if args.json {
        writeln!(out, "{}", summary_json(recording, summary, cost))
    } else {
        write_summary(out, recording, summary, cost)
    }
}

/// `GET http://host/path << 200 OK 12b`, like `mitmdump -nr`; a flow without a response but
/// with an error shows the error's message, as mitmdump does (`<< [Errno 111] Connect call
/// failed ('127.0.0.1', 9)`).
pub fn flow_line(flow: &FlowView<'_>, error: Option<ErrorView<'_>>) -> String {
    let r = &flow.request;
    let mut line = format!("{} {}", String::from_utf8_lossy(r.method), url(flow));
    match &flow.response {
        Some(resp) => {
            let reason = String::from_utf8_lossy(resp.reason);
            let size = resp.content.map_or(0, <[u8]>::len);
            line.push_str(&format!(
                " << {} {} {}",
                resp.status_code,
                reason,
                human_size(size)
            ));
        }
        None => match error {
            Some(e) => {
                line.push_str(" << ");
                line.push_str(&String::from_utf8_lossy(e.msg));
            }
            None => line.push_str(" << no response"),
        },
    }
    line
}

fn flow_json(flow: &FlowView<'_>, error: Option<ErrorView<'_>>) -> serde_json::Value {
    let mut value = json!({
        "index": flow.id,
        "method": String::from_utf8_lossy(flow.request.method),
        "url": url(flow),
        "status": flow.response.as_ref().map(|r| r.status_code),
        "request_body_len": flow.request.content.map_or(0, <[u8]>::len),
        "response_body_len": flow.response.as_ref().map(|r| r.content.map_or(0, <[u8]>::len)),
    });
    if let Some(e) = error {
        value["error"] = json!({
            "msg": String::from_utf8_lossy(e.msg),
            "timestamp": e.timestamp,
        });
    }
    value
}

fn versions(summary: &LoadSummary) -> Vec<String> {
    summary.versions.iter().map(ToString::to_string).collect()
}

fn summary_json(recording: &Recording, summary: &LoadSummary, cost: LoadCost) -> serde_json::Value {
    json!({"summary": {
        "files": summary.files,
        "http_flows": summary.http_flows,
        "without_response": summary.without_response,
        "skipped": {
            "tcp": summary.skipped.tcp,
            "udp": summary.skipped.udp,
            "dns": summary.skipped.dns,
            "websocket": summary.skipped.websocket,
        },
        "bad_flows": summary.bad_flows,
        "format_versions": versions(summary),
        "bytes": summary.bytes,
        "decompressed_bytes": summary.decompressed_bytes,
        "har_bytes": summary.har_bytes,
        "load_seconds": cost.elapsed.as_secs_f64(),
        "heap_bytes": cost.heap_bytes,
        "heap_bytes_per_flow": heap_per_flow(cost, summary),
        "index_heap_bytes": recording.index_heap_bytes(),
    }})
}

/// Heap per flow, the decompressed copy of compressed files left out (it replaces a mapping).
fn heap_per_flow(cost: LoadCost, summary: &LoadSummary) -> Option<f64> {
    let flows = summary.http_flows.max(1) as f64;
    cost.heap_bytes
        .map(|h| (h as u64).saturating_sub(summary.in_memory_file_bytes()) as f64 / flows)
}

fn write_summary(
    out: &mut dyn Write,
    recording: &Recording,
    summary: &LoadSummary,
    cost: LoadCost,
) -> io::Result<()> {
    let s = &summary.skipped;
    writeln!(
        out,
        "{} HTTP flows ({} without response); skipped: {} tcp, {} udp, {} dns, {} websocket, {} bad",
        summary.http_flows, summary.without_response, s.tcp, s.udp, s.dns, s.websocket, summary.bad_flows
    )?;
    let versions = versions(summary);
    writeln!(
        out,
        "format versions: {}",
        if versions.is_empty() {
            "none".to_string()
        } else {
            versions.join(", ")
        }
    )?;
    let secs = cost.elapsed.as_secs_f64();
    writeln!(
        out,
        "{} file{}, {} bytes, loaded in {:.1} ms ({:.0} MB/s)",
        summary.files,
        if summary.files == 1 { "" } else { "s" },
        summary.bytes,
        secs * 1e3,
        summary.bytes as f64 / secs.max(1e-9) / 1e6
    )?;
    if summary.decompressed_bytes > 0 {
        writeln!(
            out,
            "decompressed into memory: {} bytes (served from there instead of a file mapping)",
            summary.decompressed_bytes
        )?;
    }
    match (cost.heap_bytes, heap_per_flow(cost, summary)) {
        (Some(heap), Some(per_flow)) => writeln!(
            out,
            "heap added by loading: {} bytes ({per_flow:.1} per flow; index {} bytes)",
            (heap as u64).saturating_sub(summary.in_memory_file_bytes()),
            recording.index_heap_bytes()
        ),
        _ => writeln!(out, "index heap: {} bytes", recording.index_heap_bytes()),
    }
}

fn human_size(n: usize) -> String {
    match n {
        n if n < 1024 => format!("{n}b"),
        n if n < 1024 * 1024 => format!("{:.1}k", n as f64 / 1024.0),
        n => format!("{:.1}m", n as f64 / 1024.0 / 1024.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_starts_after_the_threshold_then_comes_at_most_once_a_second() {
        let ms = Duration::from_millis;
        let mut clock = ProgressClock::new(PROGRESS_AFTER);
        assert!(!clock.due(ms(0)));
        assert!(!clock.due(ms(999)));
        assert!(clock.due(ms(1000)));
        assert!(!clock.due(ms(1000)));
        assert!(!clock.due(ms(1999)));
        assert!(clock.due(ms(2500)));
        assert!(!clock.due(ms(3400)));
        assert!(clock.due(ms(3500)));
        // A long stall between progress points gives one line, not a burst.
        assert!(clock.due(ms(9000)));
        assert!(!clock.due(ms(9001)));
    }

    #[test]
    fn the_progress_line_gives_bytes_of_the_file_and_flows_so_far() {
        assert_eq!(
            progress_line("big.flows", 412_000_000, 1_830_000_000, 230_000),
            "loading big.flows: 412.0 MB of 1.8 GB, 230000 flows"
        );
        assert_eq!(
            progress_line("a", 0, 999, 0),
            "loading a: 0 B of 999 B, 0 flows"
        );
    }
}
