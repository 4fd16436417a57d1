//! `starpillar eval`: recall@5, recall@10, MRR and nDCG@10 of dense, sparse and hybrid search
//! over the golden queries, as a table; optionally compared with (or recorded as) a baseline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::engine::EngineArgs;
use crate::retrieval::args::{AnalysisArgs, StoreArgs, progress_bar};
use crate::retrieval::corpus::{self, ApproxTokens};
use crate::retrieval::embedding;
use crate::retrieval::eval::{self, Baseline, FilterBy, Recorded};
use crate::retrieval::hybrid::{Fusion, Method};

/// Largest drop below the recorded figures that `--baseline` accepts.
pub const TOLERANCE: f64 = 0.02;

/// `starpillar eval` flags.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The corpus folder.
    #[arg(long, default_value = "corpus")]
    pub corpus: PathBuf,

    /// The folder of golden `*.jsonl` query files.
    #[arg(long, default_value = "corpus/eval")]
    pub golden: PathBuf,

    /// Which payload filters each query uses.
    #[arg(long, value_enum, default_value = "lang-topic")]
    pub filter: FilterBy,

    /// Sparse only: do not load the embedder.
    #[arg(long)]
    pub no_dense: bool,

    /// Compare with this recorded baseline; exit 1 if a figure drops more than 0.02.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Record the figures as the baseline in this file.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Only the golden queries in this language (ko, en).
    #[arg(long)]
    pub only_lang: Option<String>,

    /// Only one half of the golden set, split by query number: `even` is the half the fusion
    /// was tuned on, `odd` the held-out half.
    #[arg(long, value_enum)]
    pub half: Option<eval::Half>,

    /// Hybrid fusion: `dbsf` (distribution-based score fusion) or `rrf` (reciprocal-rank
    /// fusion); default: the chosen setting, DBSF with the dense list weighted 3:1.
    #[arg(long, value_enum)]
    pub fusion: Option<FusionName>,

    /// RRF's rank constant k (with `--fusion rrf`; default 60).
    #[arg(long)]
    pub rrf_k: Option<u32>,

    /// Weight of the dense list in the fusion (default: the chosen setting).
    #[arg(long)]
    pub dense_weight: Option<f32>,

    /// Weight of the sparse list in the fusion (default: the chosen setting).
    #[arg(long)]
    pub sparse_weight: Option<f32>,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// An index to take chunk vectors from (same model, same chunk ids), so only new chunks are
    /// embedded; `--store` or the default store when it exists.
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub analysis: AnalysisArgs,

    #[command(flatten)]
    pub data: DataDirArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(subcommand)]
    pub what: Option<EvalWhat>,
}

/// `--fusion` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FusionName {
    Dbsf,
    Rrf,
}

/// What else `starpillar eval` measures.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EvalWhat {
    /// Reading quality over fixed births: day master / Sun sign stated, valid citations,
    /// language, repeated sentences, length.
    Readings(crate::rag::eval::ReadingsArgs),
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(EvalWhat::Readings(readings)) = &args.what {
        return crate::rag::eval::run_cli(readings);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_eval(&args))
}

async fn run_eval(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data.resolve();
    let corpus = corpus::load_dir(&args.corpus)?;
    let mut queries = eval::load_golden(&args.golden)?;
    queries = eval::split(queries, args.half);
    if let Some(lang) = &args.only_lang {
        queries.retain(|q| q.lang == *lang);
    }
    let chosen = match args.fusion {
        None => Fusion::default(),
        Some(FusionName::Dbsf) => Fusion {
            method: Method::Dbsf,
            ..Fusion::default()
        },
        Some(FusionName::Rrf) => Fusion::PLAIN,
    };
    let method = match (chosen.method, args.rrf_k) {
        (Method::Rrf { .. }, Some(k)) => Method::Rrf { k },
        (Method::Dbsf, Some(_)) => anyhow::bail!("--rrf-k needs --fusion rrf"),
        (m, None) => m,
    };
    let fusion = Fusion {
        method,
        dense_weight: args.dense_weight.unwrap_or(chosen.dense_weight),
        sparse_weight: args.sparse_weight.unwrap_or(chosen.sparse_weight),
    };
    let valid = |w: f32| w.is_finite() && w >= 0.0;
    if !valid(fusion.dense_weight) || !valid(fusion.sparse_weight) {
        anyhow::bail!("--dense-weight and --sparse-weight must be finite and ≥ 0");
    }
    let loaded = if args.no_dense {
        None
    } else {
        match embedding::load(&args.engine, &data_dir) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("no embedder ({e}); reporting sparse only");
                None
            }
        }
    };
    let chunks = match &loaded {
        Some(l) => corpus::chunk_corpus(&corpus, args.analysis.chunk(), &l.tokenizer),
        None => corpus::chunk_corpus(&corpus, args.analysis.chunk(), &ApproxTokens),
    };
    let spec = args.store.spec(&data_dir)?;
    let reuse = if loaded.is_some() && !spec.is_local_and_missing() {
        Some(spec.open()?)
    } else {
        None
    };
    let embedder = loaded.as_ref().map(|l| l.embedder.as_ref());
    let sparse = args.analysis.sparse();
    let bar = progress_bar("embedding");
    let store = eval::build_store(
        &chunks,
        embedder,
        reuse
            .as_deref()
            .map(|s| s as &dyn crate::retrieval::store::VectorStoreRead),
        &sparse,
        &bar,
    )
    .await?;
    let documents = corpus.documents.iter().map(|d| d.id.clone()).collect();
    let report = eval::evaluate_available(
        &store,
        &queries,
        documents,
        embedder,
        &sparse,
        &fusion,
        args.filter,
    )
    .await?;
    let model = embedder.map(|e| e.model().to_owned()).unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} chunks of {} documents",
            chunks.len(),
            corpus.documents.len()
        );
        print!("{}", eval::table(&report));
    }
    let dense = embedder.is_some();
    if let Some(path) = &args.write_baseline {
        let mut baseline: Baseline = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("parsing the baseline {}", path.display()))?,
            Err(_) => Baseline::default(),
        };
        let recorded = Recorded {
            command: command_line(),
            model,
            report: report.clone(),
        };
        if dense {
            baseline.full = Some(recorded);
        } else {
            baseline.sparse_only = Some(recorded);
        }
        let mut json = serde_json::to_vec_pretty(&baseline)?;
        json.push(b'\n');
        crate::retrieval::store::write_atomic(path, &json)?;
        eprintln!("baseline written to {}", path.display());
    }
    if let Some(path) = &args.baseline {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the baseline {}", path.display()))?;
        let baseline: Baseline = serde_json::from_str(&text)
            .with_context(|| format!("parsing the baseline {}", path.display()))?;
        let Some(recorded) = baseline.section(dense) else {
            anyhow::bail!(
                "{} has no {} figures",
                path.display(),
                if dense { "full" } else { "sparse-only" }
            );
        };
        let failures = eval::compare(&recorded.report, &report, TOLERANCE);
        if !failures.is_empty() {
            eprintln!(
                "below the baseline {}:\n  {}",
                path.display(),
                failures.join("\n  ")
            );
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("within {TOLERANCE} of the baseline {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The command line as run, with the program name shortened to `starpillar`.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "starpillar".to_owned();
    }
    args.join(" ")
}
