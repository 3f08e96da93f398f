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
        Some(Command::Convert(args)) => uringreplay::convert::run(args),
        None => serve(&cli.serve),
    }
}

/// How many distinct origins [`Origins`] names in its message.
const ORIGINS_NAMED: usize = 3;

/// The origins the recorded flows went to, worked out flow by flow while they load.
#[derive(Default)]
enum Origins {
    /// No flow yet.
    #[default]
    NoFlow,
    /// Every flow so far went here.
    One(ReverseTarget),
    /// Several origins: the first few (at most [`ORIGINS_NAMED`]), whether there are more, and
    /// a scheme other than http(s) if one was seen.
    Many {
        /// The first distinct origins, in recording order.
        seen: Vec<ReverseTarget>,
        /// More distinct origins than `seen` holds were recorded.
        more: bool,
        /// A recorded scheme that reverse mode cannot use.
        other_scheme: Option<String>,
    },
}

/// Whether `r` went to `o` (no allocation: `o.scheme` is lower case already).
fn same_origin(o: &ReverseTarget, r: &RequestView<'_>) -> bool {
    r.scheme.eq_ignore_ascii_case(o.scheme.as_bytes())
        && r.host == o.host.as_bytes()
        && r.port == o.port
}

impl Origins {
    /// Takes the next flow's request.
    fn add(&mut self, r: &RequestView<'_>) {
        match self {
            Origins::NoFlow => {
                let this = origin(r);
                *self = if matches!(this.scheme.as_str(), "http" | "https") {
                    Origins::One(this)
                } else {
                    Origins::Many {
                        other_scheme: Some(this.scheme.clone()),
                        seen: vec![this],
                        more: false,
                    }
                };
            }
            Origins::One(o) => {
                if !same_origin(o, r) {
                    let this = origin(r);
                    let other_scheme = (!matches!(this.scheme.as_str(), "http" | "https"))
                        .then(|| this.scheme.clone());
                    *self = Origins::Many {
                        seen: vec![o.clone(), this],
                        more: false,
                        other_scheme,
                    };
                }
            }
            Origins::Many {
                seen,
                more,
                other_scheme,
            } => {
                if *more || seen.iter().any(|o| same_origin(o, r)) {
                    return;
                }
                if seen.len() == ORIGINS_NAMED {
                    *more = true;
                    return;
                }
                let this = origin(r);
                if other_scheme.is_none() && !matches!(this.scheme.as_str(), "http" | "https") {
                    *other_scheme = Some(this.scheme.clone());
                }
                seen.push(this);
            }
        }
    }

    /// The single origin every recorded flow went to, if there is exactly one; otherwise why
    /// regular mode is used (a sentence for the user).
    fn single(self) -> Result<ReverseTarget, String> {
        match self {
            Origins::One(o) => Ok(o),
            Origins::NoFlow => Err(
                "no --mode given and no flow recorded: replaying in regular mode \
                 (each request forwarded to its own Host)"
                    .to_string(),
            ),
            Origins::Many {
                seen,
                more,
                other_scheme,
            } => {
                let names: Vec<String> = seen.iter().map(ToString::to_string).collect();
                let why = match other_scheme {
                    Some(scheme) => format!("a {scheme} flow cannot be reverse-proxied"),
                    None => "no single reverse target fits them all".to_string(),
                };
                Err(format!(
                    "no --mode given and the recorded flows went to {} origins ({}{}): \
                     replaying in regular mode, {why}; unmatched requests go to their own Host \
                     (give --mode reverse:URL to send them all to one)",
                    if more { "more than 3" } else { "several" },
                    names.join(", "),
                    if more { ", …" } else { "" },
                ))
            }
        }
    }
}

/// The origin of a recorded request.
fn origin(r: &RequestView<'_>) -> ReverseTarget {
    ReverseTarget {
        scheme: String::from_utf8_lossy(r.scheme).to_ascii_lowercase(),
        host: String::from_utf8_lossy(r.host).into_owned(),
        port: r.port,
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
        match origins.single() {
            Ok(origin) => {
                eprintln!(
                    "no --mode given and every recorded flow went to {origin}: replaying as \
                     --mode reverse:{origin}"
                );
                if config.explain_k_for_https && origin.scheme == "https" {
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
    match uringreplay::server::run(config.serve, replayer) {
        Ok(totals) => {
            // On stderr with every other status line (stdout carries only `listening on` and
            // the -v lines); a closed stderr must not turn a clean stop into a panic.
            let _ = writeln!(std::io::stderr().lock(), "{}", Report(totals));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
