//! Retrieval: the corpus, keyword and dense search, the vector stores, hybrid fusion, the
//! indexer and the retrieval-quality eval.
//!
//! - [`corpus`]: load a corpus folder (front-matter, validation), chunk Markdown under a token
//!   budget, chunk ids and payloads, the corpus version.
//! - [`sparse`]: keyword analysis (Korean bigrams / particle stripping, English stemming) and
//!   BM25 sparse vectors in the `(indices, values)` form Qdrant's sparse vectors take.
//! - [`store`]: the [`store::VectorStore`] trait (read and write halves), [`store::StoreSpec`]
//!   (`--store`), and the exact in-process store, the correctness baseline.
//! - [`edge`]: `edge://<dir>`, embedded Qdrant through `qdrant-edge` (the default).
//! - [`qdrant`]: `qdrant://host:6334`, a Qdrant server or cluster through `qdrant-client`.
//! - [`startup`]: what `serve` does at start: open the store, index the bundled corpus in the
//!   background (keyword search first, hybrid once the vectors are in), drive `/readyz`.
//! - [`hybrid`]: dense + sparse fused (distribution-based score fusion by default, or RRF).
//! - [`embedding`]: the bridge to the engine's embedder and tokenizer.
//! - [`indexer`]: the idempotent, resumable indexing run and its manifest.
//! - [`retriever`]: the search handle `serve` hands to the reading pipeline.
//! - [`query_vectors`]: the memo of query vectors (fact queries repeat across readings).
//! - [`eval`]: recall@k, MRR and nDCG@10 over the golden queries.

pub mod args;
pub mod corpus;
pub mod edge;
pub mod embedding;
pub mod eval;
pub mod hybrid;
pub mod indexer;
pub mod qdrant;
pub mod query_vectors;
pub mod retriever;
pub mod sparse;
pub mod startup;
pub mod store;

/// Everything retrieval can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Document { path: String, problem: String },
    #[error("bad store location {0:?}: use edge://<dir>, exact://<dir> or qdrant://host:6334")]
    StoreSpec(String),
    #[error("store {path} is corrupt: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("vector has dimension {got}, the store holds {want}")]
    Dimension { got: usize, want: usize },
    #[error("{path}:{line}: {problem}")]
    Golden {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("embedding failed: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Invalid(String),
    /// The store cannot be reached or did not answer in time (a 503, not a 500).
    #[error("the vector store is unavailable: {0}")]
    Unavailable(String),
}

impl RetrievalError {
    /// True when the store is down or slow (retry later), as opposed to a bad request or data.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
