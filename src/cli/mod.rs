//! The `starpillar` command line: global options, subcommands, and dispatch.
//! Raw flags are validated into configurations before anything runs.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;
use crate::telemetry::{self, LogFormat};

/// Saju (Four Pillars) and astrology charts and grounded readings, in one binary.
#[derive(Debug, Parser)]
#[command(name = "starpillar", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        env = "STARPILLAR_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `info,starpillar=debug`.
    #[arg(long, env = "STARPILLAR_LOG", default_value = "info", global = true)]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API server.
    Serve(ServeArgs),
}

/// Parse the command line and run the chosen subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log);
    match cli.command {
        Command::Serve(args) => serve::run(args),
    }
}
