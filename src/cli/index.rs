//! `starpillar index <dir>`: chunk the corpus, embed what is new, upsert it, delete what is
//! gone, and write the manifest. Safe to interrupt and re-run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::engine::EngineArgs;
use crate::retrieval::args::{AnalysisArgs, StoreArgs, progress_bar};
use crate::retrieval::indexer::{self, IndexOptions, Manifest};
use crate::retrieval::{corpus, embedding};

/// `starpillar index` flags.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// The corpus folder (Markdown with front-matter; see corpus/README.md).
    #[arg(default_value = "corpus")]
    pub dir: PathBuf,

    /// Show what would change without embedding or writing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Chunks embedded and upserted per batch.
    #[arg(long, env = "STARPILLAR_INDEX_BATCH", default_value_t = 64)]
    pub batch: usize,

    /// Where to write the manifest. Default: `<data-dir>/index/manifest.json`.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub analysis: AnalysisArgs,

    #[command(flatten)]
    pub data: DataDirArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let manifest = runtime.block_on(index(&args))?;
    print_summary(&manifest);
    Ok(ExitCode::SUCCESS)
}

async fn index(args: &IndexArgs) -> anyhow::Result<Manifest> {
    let data_dir = args.data.resolve();
    let corpus = corpus::load_dir(&args.dir)?;
    let spec = args.store.spec(&data_dir)?;
    let loaded = embedding::load(&args.engine, &data_dir).context("loading the embedder")?;
    let chunks = corpus::chunk_corpus(&corpus, args.analysis.chunk(), &loaded.tokenizer);
    tracing::info!(
        documents = corpus.documents.len(),
        chunks = chunks.len(),
        store = %spec,
        "indexing"
    );
    let store = spec.open()?;
    let options = IndexOptions {
        sparse: args.analysis.sparse(),
        batch: args.batch,
        dry_run: args.dry_run,
    };
    let bar = progress_bar("embedding");
    let manifest = indexer::run(
        store.as_ref(),
        Some(loaded.embedder.as_ref()),
        loaded.embedder.model(),
        &chunks,
        &options,
        &bar,
    )
    .await?;
    if !args.dry_run {
        let path = args
            .manifest
            .clone()
            .unwrap_or_else(|| data_dir.join("index").join("manifest.json"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_vec_pretty(&manifest)?;
        crate::retrieval::store::write_atomic(&path, &json)?;
        eprintln!("manifest: {}", path.display());
    }
    Ok(manifest)
}

fn print_summary(m: &Manifest) {
    let d = &m.documents;
    let verb = if m.dry_run { "would change" } else { "changed" };
    println!(
        "{} ({verb}): documents added {}, changed {}, deleted {}, unchanged {}",
        m.store,
        d.added.len(),
        d.changed.len(),
        d.deleted.len(),
        d.unchanged.len()
    );
    println!(
        "chunks: upserted {}, deleted {}, unchanged {}, total {}; corpus version {}",
        m.chunks.upserted, m.chunks.deleted, m.chunks.unchanged, m.chunks.total, m.corpus_version
    );
    if m.rebuilt {
        println!("the store held another model's or analysis's vectors: rebuilt");
    }
    if m.dry_run {
        for (what, list) in [
            ("add", &d.added),
            ("change", &d.changed),
            ("delete", &d.deleted),
        ] {
            for s in list {
                println!("  {what} {s}");
            }
        }
    } else {
        println!(
            "{:.1} s ({:.1} s embedding{})",
            m.seconds,
            m.embed_seconds,
            if m.embed_seconds > 0.0 {
                format!(
                    ", {:.1} chunks/s",
                    m.chunks.upserted as f64 / m.embed_seconds
                )
            } else {
                String::new()
            }
        );
    }
}
