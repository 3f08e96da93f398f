//! The `uringreplay` binary: parse the command line, load recordings, run the chosen job.

use std::process::ExitCode;

use clap::Parser;

use uringreplay::cli::{Cli, Command};
use uringreplay::server::heap::CountingAllocator;

/// Counts live heap bytes so `inspect` can report what loading costs per flow.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Inspect(args)) => uringreplay::inspect::run(args),
        None => {
            eprintln!(
                "error: serving is not available in this build yet; use `uringreplay inspect FILE` \
                 to read a recording"
            );
            ExitCode::from(2)
        }
    }
}
