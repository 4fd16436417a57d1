//! The retrieval-quality regression check: the golden queries against the bundled corpus must
//! stay within 0.02 of the figures recorded in `corpus/eval/baseline.json`.
//!
//! The sparse-only figures (no model needed) are always checked. The full dense / sparse /
//! hybrid figures need the embedding model and the corpus's vectors (embedding ~3,200 chunks
//! takes tens of minutes on two cores), so they are checked when `STARPILLAR_EVAL_DENSE=1`:
//! the model comes from `STARPILLAR_EMBED_MODEL` (a name or an E5S1 file), vectors are reused
//! from the index under `STARPILLAR_DATA_DIR` when `starpillar index corpus` has been run.

use std::path::PathBuf;

use starpillar::engine::EngineArgs;
use starpillar::retrieval::corpus::{self, ApproxTokens, ChunkConfig};
use starpillar::retrieval::eval::{self, Baseline, FilterBy, Report};
use starpillar::retrieval::hybrid::Fusion;
use starpillar::retrieval::sparse::{KoreanMode, SparseConfig};
use starpillar::retrieval::store::{StoreSpec, VectorStoreRead};
use starpillar::retrieval::{corpus::TokenCounter, embedding};

const TOLERANCE: f64 = 0.02;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn baseline() -> Baseline {
    let path = root().join("corpus/eval/baseline.json");
    let text = std::fs::read_to_string(&path).expect("corpus/eval/baseline.json is readable");
    serde_json::from_str(&text).expect("corpus/eval/baseline.json parses")
}

async fn run(
    counter: &dyn TokenCounter,
    embedder: Option<&dyn starpillar::engine::Embed>,
    reuse: Option<&dyn VectorStoreRead>,
    korean: KoreanMode,
) -> Report {
    let corpus = corpus::load_dir(&root().join("corpus")).expect("the corpus is valid");
    let queries = eval::load_golden(&root().join("corpus/eval")).expect("golden queries load");
    let chunks = corpus::chunk_corpus(&corpus, ChunkConfig::default(), counter);
    let sparse = SparseConfig {
        korean,
        ..SparseConfig::default()
    };
    let bar = indicatif::ProgressBar::hidden();
    let store = eval::build_store(&chunks, embedder, reuse, &sparse, &bar)
        .await
        .expect("the eval store builds");
    let documents = corpus.documents.iter().map(|d| d.id.clone()).collect();
    eval::evaluate_available(
        &store,
        &queries,
        documents,
        embedder,
        &sparse,
        &Fusion::default(),
        FilterBy::LangTopic,
    )
    .await
    .expect("the eval runs")
}

fn check(recorded: &Report, current: &Report, what: &str) {
    println!(
        "{what}: recorded\n{}current\n{}",
        eval::table(recorded),
        eval::table(current)
    );
    let failures = eval::compare(recorded, current, TOLERANCE);
    assert!(
        failures.is_empty(),
        "{what} retrieval quality fell below corpus/eval/baseline.json:\n  {}\n(if the corpus or \
         the golden set changed on purpose, re-record with `starpillar eval --no-dense \
         --write-baseline corpus/eval/baseline.json`, and with the model for the full figures)",
        failures.join("\n  ")
    );
}

#[tokio::test]
async fn sparse_retrieval_stays_within_the_recorded_baseline() {
    let recorded = baseline()
        .sparse_only
        .expect("baseline.json has sparse-only figures");
    let current = run(&ApproxTokens, None, None, KoreanMode::Both).await;
    assert!(
        current.queries >= 100,
        "only {} golden queries",
        current.queries
    );
    check(&recorded.report, &current, "sparse-only");
}

#[tokio::test]
async fn korean_analysis_beats_whitespace_words() {
    // Regression guard for the Korean tokenizer: bigrams (in `both`) must beat the
    // particle-stripped words alone on the Korean queries, as measured when it was chosen.
    let both = run(&ApproxTokens, None, None, KoreanMode::Both).await;
    let morph = run(&ApproxTokens, None, None, KoreanMode::Morph).await;
    let ndcg = |r: &Report| r.modes["sparse"].ndcg_at_10;
    assert!(
        ndcg(&both) > ndcg(&morph),
        "both {} <= morph {}",
        ndcg(&both),
        ndcg(&morph)
    );
}

#[tokio::test]
async fn full_retrieval_stays_within_the_recorded_baseline_when_asked() {
    if std::env::var("STARPILLAR_EVAL_DENSE").ok().as_deref() != Some("1") {
        println!("STARPILLAR_EVAL_DENSE is not 1: the dense and hybrid figures are not checked");
        return;
    }
    let recorded = baseline().full.expect("baseline.json has full figures");
    let data_dir = std::env::var_os("STARPILLAR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(starpillar::config::default_data_dir);
    let mut args = EngineArgs::default();
    if let Ok(model) = std::env::var("STARPILLAR_EMBED_MODEL") {
        args.embed_model = model;
    }
    let loaded = embedding::load(&args, &data_dir).expect("the embedding model loads");
    let spec = match std::env::var("STARPILLAR_EVAL_STORE") {
        Ok(s) => StoreSpec::parse(&s).expect("STARPILLAR_EVAL_STORE is a store URL"),
        Err(_) => StoreSpec::default_for(&data_dir),
    };
    let reuse = if spec.is_local_and_missing() {
        println!("{spec} does not exist: embedding every chunk");
        None
    } else {
        println!("reusing the vectors in {spec}");
        Some(spec.open().expect("store"))
    };
    let current = run(
        &loaded.tokenizer,
        Some(loaded.embedder.as_ref()),
        reuse.as_deref().map(|s| s as &dyn VectorStoreRead),
        KoreanMode::Both,
    )
    .await;
    check(&recorded.report, &current, "full");
    // The bar: fusion must not lose to either list alone, on any headline metric.
    let m = |mode: &str| {
        current
            .modes
            .get(mode)
            .unwrap_or_else(|| panic!("the full eval reports {mode}"))
    };
    let (dense, sparse, hybrid) = (m("dense"), m("sparse"), m("hybrid"));
    for (name, pick) in [
        ("nDCG@10", (|s| s.ndcg_at_10) as fn(&eval::Scores) -> f64),
        ("MRR", |s| s.mrr),
        ("recall@10", |s| s.recall_at_10),
    ] {
        let best = pick(dense).max(pick(sparse));
        assert!(
            pick(hybrid) >= best,
            "hybrid {name} {:.3} is below the better single list ({best:.3})",
            pick(hybrid)
        );
    }
}
