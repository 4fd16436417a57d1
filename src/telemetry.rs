//! Logging: `tracing` to stderr, as JSON lines (for machines) or human-readable text; error
//! reporting to Sentry lives in [`sentry`].

pub mod sentry;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, with the request span's fields.
    Json,
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
}

/// Install the global subscriber. `filter` uses `RUST_LOG` syntax (e.g. `info,starpillar=debug`).
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
}
