//! `starpillar search "query"`: hybrid (or dense / sparse) search over the index, printed with
//! scores.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::engine::EngineArgs;
use crate::engine::embedder::{EmbedInput, EmbedKind, embed};
use crate::retrieval::args::StoreArgs;
use crate::retrieval::embedding;
use crate::retrieval::hybrid::{self, Mode};
use crate::retrieval::store::Filter;

/// `starpillar search` flags.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// What to look for, as a user would ask it.
    pub query: String,

    /// Only documents in this language (ko, en).
    #[arg(long)]
    pub lang: Option<String>,

    /// Only documents on this topic (saju, astrology).
    #[arg(long)]
    pub topic: Option<String>,

    /// How many chunks to print.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,

    /// Ranking: hybrid (dense + keyword, RRF), dense or sparse.
    #[arg(long, value_enum, default_value = "hybrid")]
    pub mode: Mode,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub data: DataDirArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    for (name, value, allowed) in [
        ("--lang", &args.lang, &crate::retrieval::corpus::LANGS),
        ("--topic", &args.topic, &crate::retrieval::corpus::TOPICS),
    ] {
        if let Some(v) = value
            && !allowed.contains(&v.as_str())
        {
            anyhow::bail!("{name} {v:?}: expected one of {allowed:?}");
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(search(&args))?;
    Ok(ExitCode::SUCCESS)
}

async fn search(args: &SearchArgs) -> anyhow::Result<()> {
    let data_dir = args.data.resolve();
    let spec = args.store.spec(&data_dir)?;
    let store = spec.open()?;
    let Some(meta) = store.meta().await? else {
        anyhow::bail!("{spec} is empty: run `starpillar index corpus/` first");
    };
    let sparse = meta.sparse.unwrap_or_default();
    let dense = if args.mode == Mode::Sparse {
        None
    } else {
        let loaded = embedding::load(&args.engine, &data_dir).context("loading the embedder")?;
        if loaded.embedder.model() != meta.model {
            anyhow::bail!(
                "the index was built with {}, the embedder is {}: re-run `starpillar index`",
                meta.model,
                loaded.embedder.model()
            );
        }
        let input = EmbedInput {
            texts: vec![args.query.clone()],
            kind: EmbedKind::Query,
        };
        embed(loaded.embedder.as_ref(), input).await?.vectors.pop()
    };
    let filter = Filter {
        lang: args.lang.clone(),
        topic: args.topic.clone(),
    };
    let hits = hybrid::search(
        store.as_ref(),
        args.mode,
        &args.query,
        dense.as_deref(),
        &sparse,
        &filter,
        args.top_k,
    )
    .await?;
    if hits.is_empty() {
        println!("no results");
    }
    for (rank, hit) in hits.iter().enumerate() {
        let p = &hit.payload;
        let body = p
            .text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        let snippet: String = body.trim().chars().take(160).collect();
        println!(
            "{:>2}. {:.4}  {}  [{} {}] {} #{}\n    {}\n    {snippet}",
            rank + 1,
            hit.score,
            p.doc_id,
            p.lang,
            p.topic,
            p.source,
            p.chunk_index,
            p.title
        );
    }
    Ok(())
}
