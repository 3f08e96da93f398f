//! The `uringreplay` binary: parse the command line, run the chosen job, report its errors.

use std::io::Write;
use std::process::ExitCode;

use uringreplay::cli::{Cli, Command, ServeArgs};
use uringreplay::server::heap::CountingAllocator;
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

fn serve(args: &ServeArgs) -> ExitCode {
    if let Some(text) = args.listing() {
        // A closed stdout (`| head`) is not an error.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return ExitCode::SUCCESS;
    }
    match uringreplay::launch::serve(args) {
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
            ExitCode::from(e.code)
        }
    }
}
