//! The `uringreplay` binary: parse the command line, load recordings, run the chosen job.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use uringreplay::cli::{Cli, Command, ServeArgs, K_MEANS_KILL};
use uringreplay::config::{ProxyMode, ReverseTarget};
use uringreplay::flowfile::{LoadEvent, LoadOptions, RequestView};
use uringreplay::replay::Replayer;
use uringreplay::server::clock;
use uringreplay::server::heap::{self, CountingAllocator};
use uringreplay::stats::Report;

/// Counts live heap bytes so `inspect` can report what loading costs per flow.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match &cli.command {
        Some(Command::Inspect(args)) => uringreplay::inspect::run(args),
        None => serve(&cli.serve),
    }
}

/// The origins the recorded flows went to, worked out flow by flow while they load.
#[derive(Default)]
enum Origins {
    /// No flow yet.
    #[default]
    NoFlow,
    /// Every flow so far went here.
    One(ReverseTarget),
    /// Several origins, or a flow that was not http(s).
    Many,
}

impl Origins {
    /// Takes the next flow's request.
    fn add(&mut self, r: &RequestView<'_>) {
        match self {
            Origins::Many => {}
            Origins::NoFlow => {
                let this = ReverseTarget {
                    scheme: String::from_utf8_lossy(r.scheme).to_ascii_lowercase(),
                    host: String::from_utf8_lossy(r.host).into_owned(),
                    port: r.port,
                };
                *self = if matches!(this.scheme.as_str(), "http" | "https") {
                    Origins::One(this)
                } else {
                    Origins::Many
                };
            }
            Origins::One(o) => {
                // No allocation per flow: `o.scheme` is lower case already.
                let same = String::from_utf8_lossy(r.scheme).eq_ignore_ascii_case(&o.scheme)
                    && String::from_utf8_lossy(r.host) == o.host.as_str()
                    && r.port == o.port;
                if !same {
                    *self = Origins::Many;
                }
            }
        }
    }

    /// The single origin every recorded flow went to, if there is exactly one.
    fn single(self) -> Option<ReverseTarget> {
        match self {
            Origins::One(o) => Some(o),
            _ => None,
        }
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
    };
    // The replayer derives what it needs from each flow as it is read (one pass over the bytes).
    let mut builder = Replayer::builder(&config.replay);
    let mut origins = Origins::default();
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
        if let Some(origin) = origins.single() {
            eprintln!(
                "no --mode given and every recorded flow went to {origin}: replaying as \
                 --mode reverse:{origin}"
            );
            if config.explain_k_for_https && origin.scheme == "https" {
                eprintln!("{K_MEANS_KILL}");
            }
            config.serve.mode = ProxyMode::Reverse(origin);
        }
    }
    let read_in = clock::since(started);
    let replayer = Arc::new(builder.build(Arc::new(recording)));
    let loaded_in = clock::since(started);
    let flows = replayer.recording().len();
    let heap_kept = heap::live_bytes().unwrap_or(0).saturating_sub(heap_before);
    eprintln!(
        "loaded {flows} flows in {:.2} s (reading {:.2} s, index table {:.2} s); heap {:.1} MB, \
         {:.0} B per flow",
        loaded_in.as_secs_f64(),
        read_in.as_secs_f64(),
        (loaded_in - read_in).as_secs_f64(),
        heap_kept as f64 / 1e6,
        heap_kept as f64 / flows.max(1) as f64,
    );
    match uringreplay::server::run(config.serve, replayer) {
        Ok(totals) => {
            // A closed stdout must not turn a clean stop into a panic.
            let _ = writeln!(std::io::stdout().lock(), "{}", Report(totals));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
