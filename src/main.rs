//! The `uringreplay` binary: parse the command line, load recordings, run the chosen job.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use uringreplay::admin::reload::Reloader;
use uringreplay::cli::{Cli, Command, ServeArgs, K_MEANS_KILL};
use uringreplay::config::ProxyMode;
use uringreplay::flowfile::{LoadEvent, LoadOptions};
use uringreplay::replay::Replayer;
use uringreplay::server::clock;
use uringreplay::server::heap::{self, CountingAllocator};
use uringreplay::stats::Report;
use uringreplay::upstream::{RecordedOrigins, Scheme};

/// Counts live heap bytes so `inspect` can report what loading costs per flow.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match &cli.command {
        Some(Command::Inspect(args)) => uringreplay::inspect::run(args),
        Some(Command::Convert(args)) => uringreplay::convert::run(args),
        None => serve(&cli.serve),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    if let Some(text) = args.listing() {
        // A closed stdout (`| head`) is not an error.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return ExitCode::SUCCESS;
    }
    let mut config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for note in &config.notes {
        eprintln!("{note}");
    }
    let options = LoadOptions {
        skip_bad_flows: args.skip_bad_flows,
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
    let recording = match uringreplay::inspect::load(&config.files, options, on_event) {
        Ok((recording, _)) => recording,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
    // The one heap figure: what loading and indexing kept, less the decompressed copy of a
    // compressed file (named apart: it stands in for the mapping a plain file has).
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
                " (plus {:.1} MB of decompressed recording)",
                decompressed as f64 / 1e6
            )
        } else {
            String::new()
        }
    );
    let reloader = Reloader {
        files: config.files.clone(),
        load: options,
        replay: config.replay.clone(),
    };
    match uringreplay::server::run(config.serve, replayer, reloader) {
        Ok((totals, admin_lines)) => {
            // On stderr with every other status line (stdout carries only `listening on` and
            // the -v lines); a closed stderr must not turn a clean stop into a panic.
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}\n{admin_lines}",
                Report(totals)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
