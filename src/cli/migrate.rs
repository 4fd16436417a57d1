//! `starpillar migrate`: apply the database migrations (SQLite or PostgreSQL), revert the
//! newest ones (`--down N`), or list them (`--status`), then exit.

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
    /// Apply every pending migration (the default).
    #[arg(long, conflicts_with_all = ["down", "status"])]
    pub up: bool,
    /// Revert the newest N applied migrations (their `.down.sql`); back up first.
    #[arg(long, value_name = "N", conflicts_with = "status")]
    pub down: Option<usize>,
    /// List every migration and whether the database has it.
    #[arg(long)]
    pub status: bool,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let url = args.store.resolve(&args.data.resolve())?;
    let store = Store::new(url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let place = store.describe();
    runtime.block_on(async {
        if args.status {
            let states = store
                .migration_status()
                .await
                .with_context(|| format!("reading the migrations of {place}"))?;
            println!("{:>7}  {:<8}  name", "version", "state");
            for m in states {
                let state = if m.applied { "applied" } else { "pending" };
                println!("{:>7}  {state:<8}  {}", m.version, m.name);
            }
        } else if let Some(steps) = args.down {
            let reverted = store
                .migrate_down(steps)
                .await
                .with_context(|| format!("reverting migrations of {place}"))?;
            if reverted.is_empty() {
                println!("nothing to revert in {place}");
            } else {
                let list: Vec<String> = reverted.iter().map(i64::to_string).collect();
                println!("reverted migration(s) {} in {place}", list.join(", "));
            }
        } else {
            store
                .migrate()
                .await
                .with_context(|| format!("migrating {place}"))?;
            println!("migrations applied to {place}");
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
