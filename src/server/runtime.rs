//! Which event loop the workers run: monoio on io_uring (SINGLE_ISSUER + DEFER_TASKRUN where the
//! kernel accepts them) or monoio's epoll driver where io_uring is unavailable or forbidden.

use std::future::Future;
use std::io;

use crate::config::IoDriver;

/// The driver every worker builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring; `tuned`: with SINGLE_ISSUER and DEFER_TASKRUN.
    Uring {
        /// The ring is set up with SINGLE_ISSUER + DEFER_TASKRUN.
        tuned: bool,
    },
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Driver::Uring { tuned: true } => f.write_str("io_uring (SINGLE_ISSUER, DEFER_TASKRUN)"),
            Driver::Uring { tuned: false } => f.write_str("io_uring (default ring flags)"),
            Driver::Epoll => f.write_str("epoll"),
        }
    }
}

fn uring_builder(tuned: bool) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if tuned {
        b.setup_single_issuer().setup_defer_taskrun();
    }
    b
}

/// Builds a ring and proves it works end to end: a NOP submitted through `io_uring_enter` must
/// come back completed. A seccomp profile may allow `io_uring_setup` but forbid `io_uring_enter`;
/// a ring that can be built but not entered would leave the workers spinning and deaf.
fn probe(tuned: bool) -> Result<(), String> {
    let mut ring = uring_builder(tuned)
        .build(8)
        .map_err(|e| format!("io_uring_setup failed: {e}"))?;
    const TOKEN: u64 = 0x7572_696e;
    let nop = io_uring::opcode::Nop::new().build().user_data(TOKEN);
    // SAFETY: a NOP references no memory; the entry is fully initialised by `build`.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| "the probe ring's submission queue is full".to_string())?;
    ring.submit_and_wait(1)
        .map_err(|e| format!("io_uring_enter failed: {e}"))?;
    let completed = ring.completion().next();
    match completed {
        Some(cqe) if cqe.user_data() == TOKEN && cqe.result() >= 0 => Ok(()),
        Some(cqe) => Err(format!(
            "a NOP on the probe ring completed with error {}",
            io::Error::from_raw_os_error(-cqe.result())
        )),
        None => Err("a NOP on the probe ring never completed".to_string()),
    }
}

/// Picks the driver for `wanted` by probing the kernel once (a NOP through a real ring). Returns
/// the driver and, when it is not the one asked for or the best one, a sentence saying why (the
/// one log line).
pub fn choose(wanted: IoDriver) -> Result<(Driver, Option<String>), String> {
    if wanted == IoDriver::Epoll {
        return Ok((Driver::Epoll, None));
    }
    let refused = match probe(true) {
        Ok(()) if monoio::utils::detect_uring() => return Ok((Driver::Uring { tuned: true }, None)),
        Ok(()) => "the kernel lacks io_uring operations monoio needs".to_string(),
        Err(tuned_err) => match probe(false) {
            Ok(()) if monoio::utils::detect_uring() => {
                return Ok((
                    Driver::Uring { tuned: false },
                    Some(format!(
                        "io_uring without SINGLE_ISSUER/DEFER_TASKRUN (the kernel refused them: {tuned_err})"
                    )),
                ))
            }
            Ok(()) => "the kernel lacks io_uring operations monoio needs".to_string(),
            Err(e) => e,
        },
    };
    match wanted {
        IoDriver::Uring => Err(format!(
            "io_uring is not usable here ({refused}); run with --io epoll or --io auto"
        )),
        _ => Ok((
            Driver::Epoll,
            Some(format!(
                "falling back to epoll: io_uring is not usable here ({refused})"
            )),
        )),
    }
}

/// Builds a runtime with `driver` on this thread (with timers) and runs `task` to completion,
/// telling it the driver it runs on.
/// When this thread's ring cannot be built (e.g. a locked-memory limit the small probe ring did
/// not hit) and `may_fall_back`, it retries without the tuned flags, then on epoll, saying so.
pub fn block_on<F, Fut>(driver: Driver, may_fall_back: bool, task: F) -> io::Result<Fut::Output>
where
    F: FnOnce(Driver) -> Fut,
    Fut: Future,
{
    match driver {
        Driver::Uring { tuned } => {
            let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(1024)
                .uring_builder(uring_builder(tuned))
                .enable_timer()
                .build();
            match built {
                Ok(mut rt) => Ok(rt.block_on(task(driver))),
                Err(e) if may_fall_back => {
                    let next = if tuned {
                        Driver::Uring { tuned: false }
                    } else {
                        Driver::Epoll
                    };
                    eprintln!("a worker could not build its io_uring ring ({e}); using {next}");
                    block_on(next, may_fall_back, task)
                }
                Err(e) => Err(e),
            }
        }
        Driver::Epoll => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok(rt.block_on(task(driver)))
        }
    }
}

/// Runs `f` to completion on a fresh runtime on this thread (io_uring where the kernel allows,
/// else epoll) with timers: the loop the drivers' unit tests run on.
#[cfg(test)]
pub(crate) fn run_for_test<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("a monoio runtime for the test")
        .block_on(f)
}
