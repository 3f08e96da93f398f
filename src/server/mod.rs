//! The I/O drivers: everything that touches sockets, rings, threads, clocks and the allocator.
//!
//! Nothing in the core (`flowfile`, `replay`, `http1`, `upstream`) imports this module.
//! [`run`] binds one SO_REUSEPORT listener per worker ([`listen`]: refused when the port is in
//! use, and a reverse target that is our own address is refused), starts the workers on the
//! chosen driver, prints a summary every few seconds and, on SIGINT/SIGTERM, stops them
//! gracefully: at most `--shutdown-timeout` seconds, or until a second signal, then it exits
//! whatever is still open.

pub mod admin;
pub mod client_tls;
pub mod clock;
pub mod forward;
pub mod heap;
pub mod listen;
pub mod outbox;
pub mod reqlog;
pub mod resolve;
pub mod runtime;
pub mod send_watch;
pub mod transport;
pub mod upstream_io;
pub mod upstream_tls;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{IoDriver, ProxyMode, ServeOptions, Unmatched};
use crate::http1::{Limits, Timeouts};
use crate::replay::miss::MissLog;
use crate::replay::Replayer;
use crate::stats::{Counters, Summary, Totals};
use crate::upstream::Origin;
use arc_swap::ArcSwap;
use worker::{Liveness, Shared};

/// How often the one-line summary is printed while serving.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// How often the main thread looks at the workers while serving.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long a worker's sweeper may miss its ticks (every 250 ms) before the main thread says so.
const STALL: Duration = Duration::from_secs(10);

/// Notices workers whose event loop stopped turning: an io_uring ring that fails at run time
/// makes monoio spin without ever running its timers, so the sweeper's beat count stops.
#[derive(Debug)]
struct Watchdog {
    /// Per worker: the last beat count seen, when it last changed, and whether it was reported.
    seen: Vec<(u64, Duration, bool)>,
}

impl Watchdog {
    fn new(workers: usize) -> Watchdog {
        Watchdog {
            seen: vec![(0, Duration::ZERO, false); workers],
        }
    }

    /// Takes each worker's beat count at `now` (time since serving began); returns the workers
    /// that have just been still for [`STALL`] (each reported once until it beats again).
    fn check(&mut self, beats: impl Iterator<Item = u64>, now: Duration) -> Vec<usize> {
        let mut stalled = Vec::new();
        for (index, (beat, seen)) in beats.zip(self.seen.iter_mut()).enumerate() {
            if beat != seen.0 {
                *seen = (beat, now, false);
            } else if !seen.2 && now.saturating_sub(seen.1) >= STALL {
                seen.2 = true;
                stalled.push(index);
            }
        }
        stalled
    }
}

/// Refuses a reverse target that is our own listen address: every unmatched request would be
/// forwarded to ourselves, again and again (regular mode is left to the run-time `Via` check).
fn refuse_forwarding_to_self(
    target: &Origin,
    bound: std::net::SocketAddr,
    first: &std::net::TcpListener,
) -> Result<(), String> {
    let dual_stack = listen::is_dual_stack(first);
    if !listen::reaches_us(
        &target.host,
        target.port,
        bound,
        dual_stack,
        listen::is_local_address,
    ) {
        return Ok(());
    }
    Err(format!(
        "unmatched requests would be forwarded to {}, which is this server itself (it \
         listens on {bound}): listen on another port (-p OTHER_PORT), name the real server \
         (--mode reverse:http://HOST:PORT), or answer unmatched requests without forwarding \
         (--extra 404, or -k to close)",
        target.url()
    ))
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpu` (best effort: a refusal leaves it unpinned).
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data, initialised by zeroing and CPU_SET with an index below
    // CPU_SETSIZE (it comes from allowed_cpus); pid 0 means the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it fully.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Waits up to `timeout` for SIGINT/SIGTERM (blocked in every thread); true if one came.
fn wait_for_stop(set: &libc::sigset_t, timeout: Duration) -> bool {
    matches!(
        wait_for_signal(set, timeout),
        Some(libc::SIGINT | libc::SIGTERM)
    )
}

/// Waits up to `timeout` for one of the signals of `set` (blocked in every thread); which came.
fn wait_for_signal(set: &libc::sigset_t, timeout: Duration) -> Option<libc::c_int> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is initialised, `ts` valid; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// How often the main thread looks for a stop that did not come by signal (`--exit-when-done`).
const DONE_EVERY: Duration = Duration::from_millis(50);

/// Starts servers: binds the listeners and starts the workers ([`Server::start`]).
#[derive(Debug)]
pub struct Server;

/// A running server, seen from the thread that started it: its address and counts, the recording
/// swap, and the stop.
#[derive(Debug)]
pub struct Handle {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    bound: std::net::SocketAddr,
    driver: runtime::Driver,
    pinned: bool,
    /// The `--log-json` writer thread, until [`Handle::take_log`].
    log: Option<reqlog::LogWriter>,
}

impl Server {
    /// Binds the listeners (one per worker) and starts the workers serving `replayer`; returns at
    /// once. The caller should block SIGINT/SIGTERM first if it waits for them (as [`run`]
    /// does). Errors are one sentence for the user.
    pub fn start(options: ServeOptions, replayer: Arc<Replayer>) -> Result<Handle, String> {
        let (driver, note) = runtime::choose(options.io)?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        let reverse = match &options.mode {
            ProxyMode::Regular => None,
            ProxyMode::Reverse(t) => Some(t.clone()),
        };
        // Before binding, so a bad --upstream-ca is reported without serving. Nothing connects
        // upstream here: connections are opened lazily, only for forwarded requests.
        let forward = forward::settings(&options)?;
        let tls = client_tls::setup(&options.tls, options.http2)?;
        let (bound, listeners) = listen::bind_all(&options).map_err(|e| e.to_string())?;
        // After binding, so a port in use does not truncate the log of the server using it.
        let (log, mut core_logs) = match &options.log_json {
            Some(path) => {
                let (writer, cores) = reqlog::start(path, options.log_sample, options.threads)?;
                (Some(writer), cores.into_iter().map(Some).collect())
            }
            None => (None, Vec::new()),
        };
        core_logs.resize_with(options.threads, || None);
        if let Some(target) = reverse.as_ref() {
            if replayer.unmatched() == Unmatched::Forward {
                refuse_forwarding_to_self(target, bound, &listeners[0])?;
            }
        }
        let shared = Arc::new(Shared {
            replayer: ArcSwap::new(replayer),
            reverse_host_header: reverse
                .as_ref()
                .map_or_else(Box::default, |t| t.host_header().into_bytes().into()),
            reverse,
            forward,
            tls,
            limits: Limits {
                max_body: options.max_body,
                ..Limits::default()
            },
            timeouts: Timeouts {
                head: Duration::from_secs(options.header_timeout_secs),
                // A body must keep arriving: each gap may last as long as a whole head may take.
                body_progress: Duration::from_secs(options.header_timeout_secs),
                idle: Duration::from_secs(options.idle_timeout_secs),
            },
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
            counters: (0..options.threads).map(|_| Counters::default()).collect(),
            live: (0..options.threads).map(|_| Liveness::default()).collect(),
            misses: (0..options.threads).map(|_| MissLog::new()).collect(),
            started: clock::instant(),
            fd_warning_at: AtomicU64::new(0),
            serve: options.clone(),
        });
        let may_fall_back = options.io == IoDriver::Auto;
        // One worker per core: with no more workers than allowed CPUs, worker i stays on the i-th.
        let cpus = allowed_cpus();
        let pinned = options.threads <= cpus.len();
        let mut workers = Vec::with_capacity(listeners.len());
        for (index, l) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            let cpu = cpus.get(index).copied().filter(|_| pinned);
            let core_log = core_logs[index].take();
            let handle = std::thread::Builder::new()
                .name(format!("uringreplay-{index}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    runtime::block_on(driver, may_fall_back, |on| {
                        worker::serve(l, shared, index, core_log, on)
                    })
                })
                .map_err(|e| format!("cannot start worker thread: {e}"))?;
            workers.push(handle);
        }
        Ok(Handle {
            shared,
            workers,
            bound,
            driver,
            pinned,
            log,
        })
    }
}

impl Handle {
    /// The address the listeners are bound to (the real port when 0 was asked for).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.bound
    }

    /// The counts so far, summed over the workers.
    pub fn totals(&self) -> Totals {
        Totals::sum(
            self.shared.counters.iter(),
            self.shared.replayer.load().remaining(),
        )
    }

    /// Serves `new` from now on and returns the replayer it replaces. Each connection takes the
    /// new one at its next request; an answer being sent keeps its own recording (and mapping)
    /// alive until it is written, so a swap never cuts or corrupts a body.
    pub fn swap_recording(&self, new: Arc<Replayer>) -> Arc<Replayer> {
        self.shared.done.store(false, Ordering::SeqCst);
        self.shared.replayer.swap(new)
    }

    /// `--exit-when-done` and every recorded flow has been replayed: the owner should stop.
    pub fn is_done(&self) -> bool {
        self.shared.done.load(Ordering::Relaxed)
    }

    /// The `--log-json` writer (once): finish it after [`Handle::stop`] to flush the log.
    pub fn take_log(&mut self) -> Option<reqlog::LogWriter> {
        self.log.take()
    }

    /// The engine as the admin endpoints see it; it stays valid after [`Handle::stop`].
    pub fn engine(&self) -> admin::Engine {
        admin::Engine(self.shared.clone())
    }

    /// Connections open now, over all workers.
    pub fn open_connections(&self) -> u64 {
        self.shared
            .live
            .iter()
            .map(|l| l.open.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops gracefully: no new connections, answers in flight finished (each closing). Waits for
    /// the workers at most `grace`, or until `cut(left)` (asked every few milliseconds, `left` the
    /// time still allowed) says to give up. Returns the final counts and, when it gave up, why
    /// (`cut`'s reason or the grace period) and how many connections were still open.
    pub fn stop(
        self,
        grace: Duration,
        mut cut: impl FnMut(Duration) -> Option<String>,
    ) -> (Totals, Option<(String, u64)>) {
        // Each worker's sweeper sees the flag within a tick and ends its own pending accept.
        // The caller does not depend on the workers to exit: it waits for them at most `grace`.
        self.shared.stop.store(true, Ordering::SeqCst);
        let began = clock::instant();
        let why = loop {
            if self.workers.iter().all(|w| w.is_finished()) {
                break None;
            }
            let left = grace.saturating_sub(clock::since(began));
            if left.is_zero() {
                break Some(format!(
                    "the {} s grace period (--shutdown-timeout) is over",
                    grace.as_secs()
                ));
            }
            if let Some(why) = cut(left.min(Duration::from_millis(20))) {
                break Some(why);
            }
        };
        let gave_up = match why {
            None => {
                let Handle {
                    shared, workers, ..
                } = self;
                for w in workers {
                    match w.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            eprintln!("error: a worker could not start its event loop: {e}")
                        }
                        Err(_) => eprintln!("error: a worker thread panicked"),
                    }
                }
                return (
                    Totals::sum(shared.counters.iter(), shared.replayer.load().remaining()),
                    None,
                );
            }
            Some(why) => (why, self.open_connections()),
        };
        (self.totals(), Some(gave_up))
    }
}

/// Serves `replayer` until SIGINT/SIGTERM (or, with `--exit-when-done`, until every flow is
/// replayed), reloading from `reloader` on SIGHUP and serving `--admin`; returns the final
/// counts and the report's admin lines ([`crate::admin::report_lines`]). Errors are one sentence.
pub fn run(
    options: ServeOptions,
    replayer: Arc<Replayer>,
    reloader: crate::admin::reload::Reloader,
) -> Result<(Totals, String), String> {
    let signals = stop_signals();
    // SAFETY: blocking signals in this thread before spawning makes every worker inherit the
    // mask, so SIGINT/SIGTERM are only taken by sigtimedwait below.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
    }
    let mut handle = Server::start(options.clone(), replayer.clone())?;
    let log = handle.take_log();
    let bound = handle.local_addr();
    let engine = handle.engine();
    let admin = Arc::new(crate::admin::Admin::new(reloader));
    if let Some(spec) = &options.admin {
        let at = admin::start(spec, admin.clone(), engine.clone())?;
        eprintln!(
            "admin on http://{at} (GET /metrics /status /misses /unused, POST /reset /reload)"
        );
    }
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on http://{bound}");
        let _ = stdout.flush();
    }
    // The nearest-flow index of the miss analysis, built off the serving threads so the first
    // miss does not pay for it; the allocation count below starts once it is built.
    let indexing = {
        let replayer = replayer.clone();
        std::thread::Builder::new()
            .name("uringreplay-miss-index".to_string())
            .spawn(move || {
                replayer.miss_index();
            })
            .ok()
    };
    let reverse = match &options.mode {
        ProxyMode::Regular => None,
        ProxyMode::Reverse(t) => Some(t),
    };
    // The heap figure is the loader's (main.rs): one figure, printed once.
    eprintln!(
        "serving {} flows with {} worker thread{}{} on {}; {}",
        replayer.recording().len(),
        options.threads,
        if options.threads == 1 { "" } else { "s" },
        if handle.pinned { " (one per core)" } else { "" },
        handle.driver,
        match reverse {
            Some(t) => format!("reverse proxy for {}", t.url()),
            None => "regular proxy mode".to_string(),
        }
    );
    if let Some(save) = &options.save {
        let path = save.path.display();
        let how = if save.append { "appending" } else { "writing" };
        match replayer.unmatched() {
            Unmatched::Forward => eprintln!(
                "recording: every forwarded exchange is saved to {path} ({how}; replayed \
                 requests are not)"
            ),
            Unmatched::Kill | Unmatched::Status(_) => eprintln!(
                "warning: -w {path}: unmatched requests are {}, so nothing is forwarded and \
                 nothing will be saved; drop -k/--extra to record the misses",
                if replayer.unmatched() == Unmatched::Kill {
                    "killed (-k)"
                } else {
                    "answered with a status (--extra)"
                }
            ),
        }
    }
    drop(replayer);
    let mut allocations_at_start = heap::allocations();
    let mut indexing = indexing.filter(|t| !t.is_finished());
    let mut last = handle.totals();
    let mut last_at = clock::instant();
    let mut watched_at = clock::instant();
    let mut watchdog = Watchdog::new(options.threads);
    while !handle.is_done() {
        match wait_for_signal(&signals, DONE_EVERY) {
            Some(libc::SIGHUP) => admin::reload_in_background(admin.clone(), engine.clone()),
            Some(_) => break,
            None => {}
        }
        if indexing.as_ref().is_some_and(|t| t.is_finished()) {
            indexing = None;
            allocations_at_start = heap::allocations();
        }
        if clock::since(watched_at) < WATCH_EVERY {
            continue;
        }
        watched_at = clock::instant();
        let beats = handle
            .shared
            .live
            .iter()
            .map(|l| l.beats.load(Ordering::Relaxed));
        for index in watchdog.check(beats, clock::since(handle.shared.started)) {
            eprintln!(
                "warning: worker {index}'s event loop has not turned for {} s (an io_uring ring \
                 failing at run time does this; --io epoll avoids it); SIGTERM still stops the \
                 process",
                STALL.as_secs()
            );
        }
        // Every period, idle or not: a load test's log shows the server alive and its counts.
        let elapsed = clock::since(last_at);
        if elapsed < SUMMARY_EVERY {
            continue;
        }
        let now = handle.totals();
        if !options.quiet {
            let rate = now.requests().saturating_sub(last.requests()) as f64
                / elapsed.as_secs_f64().max(1e-3);
            let summary = Summary {
                now,
                rate,
                open_connections: handle.open_connections(),
            };
            eprintln!("{summary}{}", crate::admin::summary_suffix(&engine, &now));
        }
        last = now;
        last_at = clock::instant();
    }
    // Design rule: no heap allocation per request on the replay path; this line lets anyone
    // check (it counts only when the binary's counting allocator is installed).
    let allocations = heap::allocations() - allocations_at_start;
    let grace = Duration::from_secs(options.shutdown_timeout_secs);
    eprintln!(
        "stopping: no new connections; finishing answers in flight (at most {} s, \
         --shutdown-timeout; a second SIGINT/SIGTERM exits at once)",
        grace.as_secs()
    );
    eprintln!(
        "heap allocations while serving: {allocations} (replayed requests make none, two over \
         TLS; connections, forwarding and -v lines do)"
    );
    let recorder = handle.shared.forward.recorder.clone();
    let (totals, gave_up) = handle.stop(grace, |wait| {
        wait_for_stop(&signals, wait).then(|| "a second stop signal came".to_string())
    });
    if let Some(log) = log {
        // Every worker handed its last batch over when it ended; one still running (the stop
        // gave up on it) may be writing, so then the figure is the one so far.
        let line = match gave_up {
            None => log.finish(totals.log_dropped),
            Some(_) => log.report(totals.log_dropped),
        };
        eprintln!("{line}");
    }
    if let Some((why, open)) = gave_up {
        eprintln!(
            "exiting: {why}; {open} connection{} still open {} closed without waiting for {}",
            if open == 1 { "" } else { "s" },
            if open == 1 { "is" } else { "are" },
            if open == 1 {
                "its answer"
            } else {
                "their answers"
            },
        );
    }
    if let Some(recorder) = recorder {
        // With every worker gone this is the last owner: finishing writes what is queued.
        let path = recorder.path().display().to_string();
        let stats = match Arc::try_unwrap(recorder) {
            Ok(recorder) => recorder.finish(),
            Err(shared) => shared.stats(),
        };
        eprintln!("{path}: {stats}");
    }
    Ok((totals, crate::admin::report_lines(&engine)))
}

#[cfg(test)]
mod tests {
    use super::{Watchdog, STALL};
    use std::time::Duration;

    #[test]
    fn a_worker_still_for_the_stall_time_is_reported_once_until_it_beats_again() {
        let mut dog = Watchdog::new(2);
        let s = Duration::from_secs;
        assert!(dog.check([1, 1].into_iter(), s(1)).is_empty());
        assert!(dog
            .check([2, 1].into_iter(), s(1) + STALL - s(1))
            .is_empty());
        assert_eq!(dog.check([3, 1].into_iter(), s(1) + STALL), vec![1]);
        assert!(
            dog.check([4, 1].into_iter(), s(5) + STALL).is_empty(),
            "once"
        );
        assert!(dog.check([5, 2].into_iter(), s(6) + STALL).is_empty());
        assert_eq!(
            dog.check([5, 2].into_iter(), s(6) + STALL + STALL),
            vec![0, 1],
            "both still again"
        );
    }
}
