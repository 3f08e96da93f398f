//! The I/O drivers: everything that touches sockets, rings, threads, clocks and the allocator.
//!
//! Nothing in the core (`flowfile`, `replay`, `http1`, `upstream`) imports this module.
//! [`run`] binds one SO_REUSEPORT listener per worker ([`listen`]: refused when the port is in
//! use, and a reverse target that is our own address is refused), starts the workers on the chosen driver,
//! prints a summary every few seconds and, on SIGINT/SIGTERM, stops them gracefully.

pub mod clock;
pub mod forward;
pub mod heap;
pub mod listen;
pub mod outbox;
pub mod runtime;
pub mod upstream_io;
pub mod upstream_tls;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{IoDriver, ProxyMode, ReverseTarget, ServeOptions, Unmatched};
use crate::http1::Limits;
use crate::replay::Replayer;
use crate::stats::{Counters, Summary, Totals};
use worker::{ReverseView, Shared};

/// How often the one-line summary is printed while serving.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Refuses a reverse target that is our own listen address: every unmatched request would be
/// forwarded to ourselves, again and again (regular mode is left to the run-time `Via` check).
fn refuse_forwarding_to_self(
    target: &ReverseTarget,
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
        "unmatched requests would be forwarded to {target}, which is this server itself (it \
         listens on {bound}): listen on another port (-p OTHER_PORT), name the real server \
         (--mode reverse:http://HOST:PORT), or answer unmatched requests without forwarding \
         (--extra 404, or -k to close)"
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
        set
    }
}

/// Waits up to `timeout` for SIGINT/SIGTERM (blocked in every thread); true if one came.
fn wait_for_stop(set: &libc::sigset_t, timeout: Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is initialised, `ts` valid; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    sig == libc::SIGINT || sig == libc::SIGTERM
}

/// Serves `replayer` until SIGINT/SIGTERM; returns the final counts. Errors are one sentence.
pub fn run(options: ServeOptions, replayer: Arc<Replayer>) -> Result<Totals, String> {
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
    let (bound, listeners) = listen::bind_all(&options).map_err(|e| e.to_string())?;
    if let Some(target) = reverse.as_ref() {
        if replayer.unmatched() == Unmatched::Forward {
            refuse_forwarding_to_self(target, bound, &listeners[0])?;
        }
    }
    let shared = Arc::new(Shared {
        replayer: replayer.clone(),
        reverse: reverse.as_ref().map(|t| ReverseView {
            scheme: t.scheme.as_bytes().to_vec(),
            host: t.host.as_bytes().to_vec(),
            port: t.port,
            host_header: t.host_header().into_bytes(),
        }),
        forward,
        limits: Limits {
            max_body: options.max_body,
            ..Limits::default()
        },
        stop: AtomicBool::new(false),
        counters: (0..options.threads).map(|_| Counters::default()).collect(),
        serve: options.clone(),
    });
    let signals = stop_signals();
    // SAFETY: blocking signals in this thread before spawning makes every worker inherit the
    // mask, so SIGINT/SIGTERM are only taken by sigtimedwait below.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
    }
    let may_fall_back = options.io == IoDriver::Auto;
    // One worker per core: with no more workers than allowed CPUs, worker i stays on the i-th.
    let cpus = allowed_cpus();
    let pinned = options.threads <= cpus.len();
    let mut workers = Vec::with_capacity(listeners.len());
    for (index, l) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let cpu = cpus.get(index).copied().filter(|_| pinned);
        let handle = std::thread::Builder::new()
            .name(format!("uringreplay-{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                runtime::block_on(driver, may_fall_back, || worker::serve(l, shared, index))
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        workers.push(handle);
    }
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on http://{bound}");
        let _ = stdout.flush();
    }
    // Heap kept for the recording and its index (flow bodies stay in the file mapping).
    let heap = heap::live_bytes().map_or(String::new(), |bytes| {
        let flows = replayer.recording().len().max(1);
        format!(
            "; heap {:.1} MiB ({:.1} bytes per flow)",
            bytes as f64 / (1024.0 * 1024.0),
            bytes as f64 / flows as f64
        )
    });
    eprintln!(
        "serving {} flows with {} worker thread{}{} on {driver}; {}{heap}",
        replayer.recording().len(),
        options.threads,
        if options.threads == 1 { "" } else { "s" },
        if pinned { " (one per core)" } else { "" },
        match &reverse {
            Some(t) => format!("reverse proxy for {t}"),
            None => "regular proxy mode".to_string(),
        }
    );
    let allocations_at_start = heap::allocations();
    let sum = || Totals::sum(shared.counters.iter(), replayer.remaining());
    let mut last = sum();
    let mut last_at = clock::instant();
    while !wait_for_stop(&signals, SUMMARY_EVERY) {
        let now = sum();
        if now != last && !options.quiet {
            let secs = clock::since(last_at).as_secs_f64().max(1e-3);
            let rate = (now.requests() - last.requests()) as f64 / secs;
            eprintln!("{}", Summary { now, rate });
        }
        last = now;
        last_at = clock::instant();
    }
    // Design rule: no heap allocation per request on the replay path; this line lets anyone
    // check (it counts only when the binary's counting allocator is installed).
    let allocations = heap::allocations() - allocations_at_start;
    eprintln!("stopping: no new connections; finishing answers in flight");
    eprintln!("heap allocations while serving: {allocations}");
    // Each worker's sweeper sees the flag within a tick and ends its own pending accept.
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("error: a worker could not start its event loop: {e}"),
            Err(_) => eprintln!("error: a worker thread panicked"),
        }
    }
    Ok(sum())
}
