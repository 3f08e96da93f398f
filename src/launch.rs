//! Start-up of a serve run, for `main`: read the configuration, load the recordings (inferring
//! reverse mode from them when no `--mode` is given), report what loading cost, then serve until
//! stopped. `main` only parses the arguments and reports what this returns.

use std::sync::Arc;

use crate::admin::reload::Reloader;
use crate::cli::{ServeArgs, K_MEANS_KILL};
use crate::config::ProxyMode;
use crate::flowfile::{LoadEvent, LoadOptions};
use crate::replay::Replayer;
use crate::server::clock;
use crate::server::heap;
use crate::stats::Totals;
use crate::upstream::{RecordedOrigins, Scheme};

/// Why a serve run ended in failure: one sentence for the user and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// What went wrong and what to do, one sentence.
    pub message: String,
    /// 2: bad arguments or recordings; 1: the server could not run.
    pub code: u8,
}

impl Failure {
    fn usage(message: String) -> Failure {
        Failure { message, code: 2 }
    }
}

/// Loads the recordings `args` name and serves them until SIGINT/SIGTERM (or, with
/// `--exit-when-done`, every flow replayed); returns the final counts and the admin report lines
/// (unused flows, the most frequent miss reasons). Start-up notes and the
/// load line go to stderr.
pub fn serve(args: &ServeArgs) -> Result<(Totals, String), Failure> {
    let mut config = args.to_config().map_err(Failure::usage)?;
    for note in &config.notes {
        eprintln!("{note}");
    }
    let options = LoadOptions {
        skip_bad_flows: args.skip_bad_flows,
        // A private copy of each file, so that writing a new recording over the served one
        // cannot change or fault what is served; files over half the memory stay mapped.
        private_copy_up_to: Some(crate::inspect::physical_memory().map_or(u64::MAX, |m| m / 2)),
        ..LoadOptions::default()
    };
    // The replayer derives what it needs from each flow as it is read (one pass over the bytes).
    let mut builder = Replayer::builder(&config.replay);
    let mut origins = RecordedOrigins::default();
    let on_event = &mut |event: &LoadEvent<'_>| {
        if let LoadEvent::HttpFlow { request, .. } = event {
            origins.add(request);
        }
        builder.observe(event);
    };
    let started = clock::instant();
    let heap_before = heap::live_bytes().unwrap_or(0);
    let (recording, _) = crate::inspect::load(&config.files, options, on_event)
        .map_err(|e| Failure::usage(e.to_string()))?;
    if !config.mode_given {
        match origins.single() {
            Ok(origin) => {
                eprintln!(
                    "no --mode given and every recorded flow went to {0}: replaying as \
                     --mode reverse:{0}",
                    origin.url()
                );
                if config.explain_k_for_https && origin.scheme == Scheme::Https {
                    eprintln!("{K_MEANS_KILL}");
                }
                config.serve.mode = ProxyMode::Reverse(origin);
            }
            Err(why) => eprintln!("{why}"),
        }
    }
    let read_in = clock::since(started);
    let replayer = Arc::new(builder.build(Arc::new(recording)));
    let loaded_in = clock::since(started);
    let flows = replayer.recording().len();
    // The one heap figure: what loading and indexing kept, less the files' own bytes held in
    // memory (private copies, decompressed files: named apart, they stand in for a mapping).
    let decompressed = replayer.recording().summary().in_memory_file_bytes();
    let heap_kept = heap::live_bytes()
        .unwrap_or(0)
        .saturating_sub(heap_before)
        .saturating_sub(usize::try_from(decompressed).unwrap_or(usize::MAX));
    eprintln!(
        "loaded {flows} flows in {:.2} s (reading {:.2} s, index table {:.2} s); heap {:.1} MB, \
         {:.0} B per flow{}",
        loaded_in.as_secs_f64(),
        read_in.as_secs_f64(),
        (loaded_in - read_in).as_secs_f64(),
        heap_kept as f64 / 1e6,
        heap_kept as f64 / flows.max(1) as f64,
        if decompressed > 0 {
            format!(
                " (plus {:.1} MB of recording held in memory)",
                decompressed as f64 / 1e6
            )
        } else {
            String::new()
        }
    );
    // What `POST /reload` and SIGHUP read again: the same files with the same options.
    let reloader = Reloader {
        files: config.files.clone(),
        load: options,
        replay: config.replay.clone(),
    };
    crate::server::run(config.serve, replayer, reloader)
        .map_err(|message| Failure { message, code: 1 })
}
