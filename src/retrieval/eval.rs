//! The retrieval-quality eval: golden queries (`corpus/eval/*.jsonl`, one JSON object a line:
//! `{"query","lang","topic","relevant":[doc ids]}`) run against a store in dense, sparse and
//! hybrid modes; chunk hits are collapsed to documents (best rank wins) and scored with
//! recall@5, recall@10, MRR@10 and nDCG@10 (binary relevance). Figures are recorded in
//! `corpus/eval/baseline.json`, and [`compare`] says which fell too far below it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RetrievalError;
use super::hybrid::{self, Fusion, Mode};
use super::sparse::SparseConfig;
use super::store::{Filter, VectorStoreRead};

/// One golden query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenQuery {
    pub query: String,
    pub lang: String,
    pub topic: String,
    pub relevant: Vec<String>,
}

/// Load every `*.jsonl` under `dir` (sorted by file name), validating each line.
pub fn load_golden(dir: &Path) -> Result<Vec<GoldenQuery>, RetrievalError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| RetrievalError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| RetrievalError::io(&path, e))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |problem: String| RetrievalError::Golden {
                path: path.display().to_string(),
                line: n + 1,
                problem,
            };
            let q: GoldenQuery = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            if q.query.trim().is_empty() || q.relevant.is_empty() {
                return Err(bad("empty `query` or `relevant`".to_owned()));
            }
            if !super::corpus::LANGS.contains(&q.lang.as_str())
                || !super::corpus::TOPICS.contains(&q.topic.as_str())
            {
                return Err(bad(format!("bad lang/topic {:?}/{:?}", q.lang, q.topic)));
            }
            out.push(q);
        }
    }
    Ok(out)
}

/// Which half of the golden set to keep, by query number (0-based, in load order): the rule
/// that splits it into a tuning half (even) and a held-out half (odd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Half {
    Even,
    Odd,
}

/// The queries of `half` (all when `None`).
pub fn split(queries: Vec<GoldenQuery>, half: Option<Half>) -> Vec<GoldenQuery> {
    let Some(half) = half else {
        return queries;
    };
    let keep = usize::from(half == Half::Odd);
    queries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == keep)
        .map(|(_, q)| q)
        .collect()
}

/// Scores of one mode, averaged over the queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
}

/// Scores of one ranked list of document ids against the relevant set.
pub fn score_one(ranked: &[String], relevant: &HashSet<&str>) -> Scores {
    if relevant.is_empty() {
        return Scores::default();
    }
    let hits_in = |k: usize| {
        ranked
            .iter()
            .take(k)
            .filter(|d| relevant.contains(d.as_str()))
            .count() as f64
    };
    let r = relevant.len() as f64;
    let first = ranked
        .iter()
        .take(10)
        .position(|d| relevant.contains(d.as_str()));
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, d)| relevant.contains(d.as_str()))
        .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    let idcg: f64 = (0..relevant.len().min(10))
        .map(|i| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    Scores {
        recall_at_5: hits_in(5) / r,
        recall_at_10: hits_in(10) / r,
        mrr: first.map_or(0.0, |i| 1.0 / (i as f64 + 1.0)),
        ndcg_at_10: dcg / idcg,
    }
}

/// The eval's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub queries: usize,
    /// Golden queries none of whose relevant documents exist in the corpus.
    pub skipped: usize,
    pub korean: String,
    pub filter: String,
    /// The hybrid fusion, as [`hybrid::Fusion::describe`] writes it.
    #[serde(default)]
    pub fusion: String,
    pub modes: BTreeMap<String, Scores>,
}

/// How queries are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterBy {
    /// The query's `lang` and `topic` (what the API knows from the route and locale).
    LangTopic,
    Lang,
    None,
}

impl FilterBy {
    fn filter(self, q: &GoldenQuery) -> Filter {
        match self {
            Self::LangTopic => Filter {
                lang: Some(q.lang.clone()),
                topic: Some(q.topic.clone()),
            },
            Self::Lang => Filter {
                lang: Some(q.lang.clone()),
                topic: None,
            },
            Self::None => Filter::default(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::LangTopic => "lang+topic",
            Self::Lang => "lang",
            Self::None => "none",
        }
    }
}

/// Chunks fetched per query before collapsing to documents.
const CHUNKS_PER_QUERY: usize = 60;

/// Evaluate every mode the embedder allows (dense, sparse and hybrid with one; sparse alone
/// without): embed the golden queries, then score them against `store`. `documents` are the
/// corpus's document ids, so a golden id that no longer exists is reported, not silently missed.
pub async fn evaluate_available(
    store: &dyn VectorStoreRead,
    queries: &[GoldenQuery],
    documents: HashSet<String>,
    embedder: Option<&dyn crate::engine::Embed>,
    sparse: &SparseConfig,
    fusion: &Fusion,
    filter_by: FilterBy,
) -> Result<Report, RetrievalError> {
    let (query_vectors, modes): (_, &[Mode]) = match embedder {
        Some(e) => {
            let texts: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
            let kind = crate::engine::EmbedKind::Query;
            let vectors = super::embedding::embed_all(e, &texts, kind, |_| ()).await?;
            (Some(vectors), &[Mode::Dense, Mode::Sparse, Mode::Hybrid])
        }
        None => (None, &[Mode::Sparse]),
    };
    evaluate(
        store,
        queries,
        query_vectors.as_deref(),
        &documents,
        sparse,
        fusion,
        filter_by,
        modes,
    )
    .await
}

/// Run the golden `queries` in each of `modes`. `query_vectors[i]` is query i's embedding
/// (needed for dense and hybrid); `known_docs` are the corpus's document ids.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate(
    store: &dyn VectorStoreRead,
    queries: &[GoldenQuery],
    query_vectors: Option<&[Vec<f32>]>,
    known_docs: &HashSet<String>,
    sparse: &SparseConfig,
    fusion: &Fusion,
    filter_by: FilterBy,
    modes: &[Mode],
) -> Result<Report, RetrievalError> {
    let mut report = Report {
        korean: format!("{:?}", sparse.korean).to_lowercase(),
        filter: filter_by.name().to_owned(),
        fusion: fusion.describe(),
        ..Report::default()
    };
    let mut sums: BTreeMap<&str, Scores> = BTreeMap::new();
    for (i, q) in queries.iter().enumerate() {
        let relevant: HashSet<&str> = q
            .relevant
            .iter()
            .map(String::as_str)
            .filter(|d| known_docs.contains(*d))
            .collect();
        if relevant.is_empty() {
            report.skipped += 1;
            continue;
        }
        report.queries += 1;
        let filter = filter_by.filter(q);
        for mode in modes {
            let dense = query_vectors.and_then(|v| v.get(i)).map(Vec::as_slice);
            let hits = hybrid::search_with(
                store,
                *mode,
                &q.query,
                dense,
                sparse,
                fusion,
                &filter,
                CHUNKS_PER_QUERY,
            )
            .await?;
            let mut seen = HashSet::new();
            let ranked: Vec<String> = hits
                .into_iter()
                .map(|h| h.payload.doc_id)
                .filter(|d| seen.insert(d.clone()))
                .collect();
            let s = score_one(&ranked, &relevant);
            let sum = sums.entry(mode.name()).or_default();
            sum.recall_at_5 += s.recall_at_5;
            sum.recall_at_10 += s.recall_at_10;
            sum.mrr += s.mrr;
            sum.ndcg_at_10 += s.ndcg_at_10;
        }
    }
    let n = report.queries.max(1) as f64;
    for (mode, s) in sums {
        report.modes.insert(
            mode.to_owned(),
            Scores {
                recall_at_5: s.recall_at_5 / n,
                recall_at_10: s.recall_at_10 / n,
                mrr: s.mrr / n,
                ndcg_at_10: s.ndcg_at_10 / n,
            },
        );
    }
    Ok(report)
}

/// The report as a text table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{} queries ({} skipped: no relevant document in the corpus); korean={}, filter={}, \
         fusion={}\n",
        report.queries, report.skipped, report.korean, report.filter, report.fusion
    );
    out.push_str("mode     recall@5  recall@10  MRR     nDCG@10\n");
    for mode in ["dense", "sparse", "hybrid"] {
        if let Some(s) = report.modes.get(mode) {
            out.push_str(&format!(
                "{mode:<8} {:>8.3}  {:>9.3}  {:>6.3}  {:>7.3}\n",
                s.recall_at_5, s.recall_at_10, s.mrr, s.ndcg_at_10
            ));
        }
    }
    out
}

/// One recorded run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub command: String,
    /// The embedding model; empty for a sparse-only run.
    pub model: String,
    pub report: Report,
}

/// The recorded figures (`corpus/eval/baseline.json`): the full run (dense, sparse, hybrid
/// with the embedder) and the sparse-only run (no model, approximate token counts), which is
/// what a machine without the model can check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub full: Option<Recorded>,
    pub sparse_only: Option<Recorded>,
}

impl Baseline {
    /// The section a run with (`dense`) or without the embedder compares against.
    pub fn section(&self, dense: bool) -> Option<&Recorded> {
        if dense {
            self.full.as_ref()
        } else {
            self.sparse_only.as_ref()
        }
    }
}

/// Every figure of `current` that is more than `tolerance` below `baseline`, as messages
/// (modes missing from `current` are not compared).
pub fn compare(baseline: &Report, current: &Report, tolerance: f64) -> Vec<String> {
    let mut out = Vec::new();
    for (mode, base) in &baseline.modes {
        let Some(cur) = current.modes.get(mode) else {
            continue;
        };
        let pairs = [
            ("recall@5", base.recall_at_5, cur.recall_at_5),
            ("recall@10", base.recall_at_10, cur.recall_at_10),
            ("MRR", base.mrr, cur.mrr),
            ("nDCG@10", base.ndcg_at_10, cur.ndcg_at_10),
        ];
        for (name, b, c) in pairs {
            if c < b - tolerance {
                out.push(format!(
                    "{mode} {name}: {c:.3} < recorded {b:.3} - {tolerance}"
                ));
            }
        }
    }
    out
}

/// Build the eval's scratch store over `chunks`: sparse vectors under `sparse`; dense vectors
/// (when `embedder` is given) taken from `reuse` where it holds the same chunk ids embedded by
/// the same model, the rest embedded now.
pub async fn build_store(
    chunks: &[super::corpus::Chunk],
    embedder: Option<&dyn crate::engine::Embed>,
    reuse: Option<&dyn VectorStoreRead>,
    sparse: &SparseConfig,
    progress: &indicatif::ProgressBar,
) -> Result<super::store::ExactStore, RetrievalError> {
    use super::store::{Point, VectorStoreWrite};
    let store = super::store::ExactStore::in_memory();
    let mut dense: std::collections::HashMap<uuid::Uuid, Vec<f32>> = Default::default();
    if let Some(e) = embedder {
        if let Some(r) = reuse
            && r.meta()
                .await?
                .is_some_and(|m| m.model == e.model() && m.dim == e.dim())
        {
            let ids: Vec<uuid::Uuid> = chunks.iter().map(|c| c.id).collect();
            dense = r.dense_vectors(&ids).await?;
        }
        let missing: Vec<&super::corpus::Chunk> = chunks
            .iter()
            .filter(|c| !dense.contains_key(&c.id))
            .collect();
        progress.set_length(missing.len() as u64);
        let texts: Vec<String> = missing.iter().map(|c| c.payload.text.clone()).collect();
        let vectors =
            super::embedding::embed_all(e, &texts, crate::engine::EmbedKind::Passage, |n| {
                progress.set_position(n as u64)
            })
            .await?;
        progress.finish_and_clear();
        dense.extend(missing.iter().map(|c| c.id).zip(vectors));
    }
    let points = chunks
        .iter()
        .map(|c| Point {
            id: c.id,
            dense: dense.remove(&c.id).unwrap_or_default(),
            sparse: super::sparse::doc_vector(&c.payload.text, sparse),
            payload: c.payload.clone(),
        })
        .collect();
    store.upsert(points).await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn metrics_by_hand() {
        let rel: HashSet<&str> = ["a", "b"].into_iter().collect();
        let s = score_one(&ids(&["x", "a", "y", "z", "w", "b"]), &rel);
        assert_eq!(s.recall_at_5, 0.5);
        assert_eq!(s.recall_at_10, 1.0);
        assert_eq!(s.mrr, 0.5);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 7f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((s.ndcg_at_10 - dcg / idcg).abs() < 1e-12);
        let perfect = score_one(&ids(&["b", "a"]), &rel);
        assert_eq!(perfect.ndcg_at_10, 1.0);
        assert_eq!(score_one(&ids(&["x"]), &rel), Scores::default());
    }

    #[test]
    fn compare_flags_only_drops_past_the_tolerance() {
        let mut base = Report::default();
        base.modes.insert(
            "hybrid".into(),
            Scores {
                recall_at_5: 0.9,
                recall_at_10: 0.95,
                mrr: 0.8,
                ndcg_at_10: 0.85,
            },
        );
        let mut cur = base.clone();
        assert!(compare(&base, &cur, 0.02).is_empty());
        if let Some(s) = cur.modes.get_mut("hybrid") {
            s.ndcg_at_10 = 0.84;
            s.mrr = 0.7;
        }
        let fails = compare(&base, &cur, 0.02);
        assert_eq!(fails.len(), 1);
        assert!(fails[0].contains("MRR"));
    }
}
