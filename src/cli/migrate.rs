//! `starpillar migrate`: apply the database migrations (SQLite or PostgreSQL) and exit.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::store::{Store, StoreArgs};

/// `starpillar migrate` flags.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let url = args.store.resolve(&args.data.resolve())?;
    let store = Store::new(url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(store.migrate())
        .with_context(|| format!("migrating {}", store.describe()))?;
    println!("migrations applied to {}", store.describe());
    Ok(ExitCode::SUCCESS)
}
