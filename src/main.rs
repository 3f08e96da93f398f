//! The `uringreplay` binary: parse the command line, load recordings, run the chosen job.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use uringreplay::cli::{Cli, Command, ServeArgs};
use uringreplay::config::{ProxyMode, ReverseTarget};
use uringreplay::flowfile::{LoadEvent, LoadOptions, Recording};
use uringreplay::replay::Replayer;
use uringreplay::server::heap::CountingAllocator;
use uringreplay::stats::Report;

/// Counts live heap bytes so `inspect` can report what loading costs per flow.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Inspect(args)) => uringreplay::inspect::run(args),
        None => serve(&cli.serve),
    }
}

/// The single origin every recorded flow went to, if there is exactly one.
fn single_origin(recording: &Recording) -> Option<ReverseTarget> {
    let mut origin: Option<ReverseTarget> = None;
    for flow in recording.flows() {
        let r = &flow.request;
        let this = ReverseTarget {
            scheme: String::from_utf8_lossy(r.scheme).to_ascii_lowercase(),
            host: String::from_utf8_lossy(r.host).into_owned(),
            port: r.port,
        };
        if !matches!(this.scheme.as_str(), "http" | "https") {
            return None;
        }
        match &origin {
            None => origin = Some(this),
            Some(o) if *o == this => {}
            Some(_) => return None,
        }
    }
    origin
}

fn serve(args: &ServeArgs) -> ExitCode {
    let mut config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = LoadOptions {
        skip_bad_flows: args.skip_bad_flows,
    };
    let mut on_event = |event: LoadEvent<'_>| {
        if let LoadEvent::SkippedBadFlow { path, error } = event {
            eprintln!("warning: {}: {error}; skipped", path.display());
        }
    };
    let recording = match Recording::open(&config.files, options, &mut on_event) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !config.mode_given {
        if let Some(origin) = single_origin(&recording) {
            eprintln!(
                "no --mode given and every recorded flow went to {origin}: replaying as \
                 --mode reverse:{origin}"
            );
            config.serve.mode = ProxyMode::Reverse(origin);
        }
    }
    let replayer = Arc::new(Replayer::new(Arc::new(recording), &config.replay));
    match uringreplay::server::run(config.serve, replayer) {
        Ok(totals) => {
            println!("{}", Report(totals));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
