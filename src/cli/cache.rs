//! `starpillar cache purge`: invalidate cached readings (incident step "invalidate caches") in
//! the shared Redis cache directly (`--redis-url` / `REDIS_URL`) and/or through a running
//! server's admin route (`--base-url` + `STARPILLAR_ADMIN_TOKEN`), which also clears that
//! instance's in-process cache. Exit 0 when every target purged, 1 when one failed, 2 when
//! no target was given.

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};

use crate::api::admin::PurgeResponse;
use crate::cache::Purge;
use crate::cache::redis::RedisStore;
use crate::config::Secret;

/// `starpillar cache …`.
#[derive(Debug, Clone, Args)]
pub struct CacheCmdArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// Remove cached readings: all, or those of one route, prompt version or corpus version.
    Purge(PurgeArgs),
}

/// `starpillar cache purge` flags: one scope, at least one target.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("scope").required(true)
    .args(["all", "route", "prompt_version", "corpus_version"])))]
pub struct PurgeArgs {
    /// Every cached reading.
    #[arg(long)]
    pub all: bool,
    /// Readings of one route, e.g. `/api/saju`.
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// Readings written with this prompt version.
    #[arg(long, value_name = "VERSION")]
    pub prompt_version: Option<String>,
    /// Readings grounded on this corpus version.
    #[arg(long, value_name = "VERSION")]
    pub corpus_version: Option<String>,
    /// Purge the shared cache in this Redis directly.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis_url: Option<Secret>,
    /// Key prefix of the cache in Redis (the server's `--cache-prefix`).
    #[arg(long, env = "STARPILLAR_CACHE_PREFIX", default_value = crate::cache::DEFAULT_PREFIX)]
    pub cache_prefix: String,
    /// Purge through this running server's admin route (e.g. `http://127.0.0.1:8080`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The server's admin token (for `--base-url`).
    #[arg(
        long,
        env = "STARPILLAR_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<Secret>,
}

impl PurgeArgs {
    fn purge(&self) -> Purge {
        if let Some(r) = &self.route {
            Purge::Route(r.clone())
        } else if let Some(v) = &self.prompt_version {
            Purge::PromptVersion(v.clone())
        } else if let Some(v) = &self.corpus_version {
            Purge::CorpusVersion(v.clone())
        } else {
            Purge::All
        }
    }
}

pub fn run(args: CacheCmdArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CacheCommand::Purge(args) => purge(args),
    }
}

fn purge(args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let what = args.purge();
    let redis_url = args.redis_url.as_ref().filter(|u| !u.is_empty());
    if redis_url.is_none() && args.base_url.is_none() {
        eprintln!("error: give --redis-url (or REDIS_URL) and/or --base-url to say what to purge");
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let label = match what.value() {
        Some(v) => format!("{} {v}", what.scope()),
        None => what.scope().to_owned(),
    };
    let mut failed = false;
    runtime.block_on(async {
        if let Some(url) = redis_url {
            let result = match RedisStore::new(url.expose(), &args.cache_prefix) {
                Ok(store) => store
                    .purge(&what)
                    .await
                    .map(|n| (n, store.describe()))
                    .map_err(anyhow::Error::from),
                Err(err) => Err(err.into()),
            };
            match result {
                Ok((n, place)) => {
                    tracing::info!(
                        scope = what.scope(),
                        value = what.value(),
                        purged = n,
                        "cache purged in Redis"
                    );
                    println!("{place}: purged {n} entries ({label})");
                }
                Err(err) => {
                    failed = true;
                    eprintln!("error: redis: {err:#}");
                }
            }
        }
        if let Some(base) = &args.base_url {
            match purge_server(base, args.admin_token.as_ref(), &what).await {
                Ok(resp) => println!("{base}: purged {} entries ({label})", resp.purged),
                Err(err) => {
                    failed = true;
                    eprintln!("error: {base}: {err:#}");
                }
            }
        }
    });
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn purge_server(
    base: &str,
    token: Option<&Secret>,
    what: &Purge,
) -> anyhow::Result<PurgeResponse> {
    let token = token
        .filter(|t| !t.is_empty())
        .context("--base-url needs the admin token (--admin-token or STARPILLAR_ADMIN_TOKEN)")?;
    let body = match what {
        Purge::All => serde_json::json!({ "all": true }),
        Purge::Route(r) => serde_json::json!({ "route": r }),
        Purge::PromptVersion(v) => serde_json::json!({ "prompt_version": v }),
        Purge::CorpusVersion(v) => serde_json::json!({ "corpus_version": v }),
    };
    let url = format!("{}/api/admin/cache/purge", base.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?
        .post(&url)
        .bearer_auth(token.expose())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("POST {url}: {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("reading the answer of {url}: {text}"))
}
