//! The command line (clap): `uringreplay [SERVE OPTIONS]` and `uringreplay inspect FILE...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Replays recorded mitmproxy flows (mitmdump -S) at very high request rates.
#[derive(Debug, Parser)]
#[command(name = "uringreplay", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand; without one, uringreplay serves the recordings given with -S.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for serving.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the HTTP flows of recordings and summarise them (like `mitmdump -nr FILE`).
    Inspect(InspectArgs),
}

/// `uringreplay inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Flow files, read in order as one recording.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print only the summary.
    #[arg(long)]
    pub summary: bool,
    /// Print one JSON object per HTTP flow, then one summary object.
    #[arg(long)]
    pub json: bool,
    /// Load every readable flow, warning once per flow that cannot be read.
    #[arg(long)]
    pub skip_bad_flows: bool,
}

/// Serving options.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Replay the flows of FILE (repeatable; files are read in order as one recording).
    #[arg(short = 'S', long = "server-replay", value_name = "FILE")]
    pub server_replay: Vec<PathBuf>,
    /// Load every readable flow, warning once per flow that cannot be read.
    #[arg(long)]
    pub skip_bad_flows: bool,
}
