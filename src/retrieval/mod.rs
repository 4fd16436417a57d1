//! Retrieval: the corpus, keyword and dense search, the vector stores, hybrid fusion, the
//! indexer and the retrieval-quality eval.
//!
//! - [`corpus`]: load a corpus folder (front-matter, validation), chunk Markdown under a token
//!   budget, chunk ids and payloads, the corpus version.
//! - [`sparse`]: keyword analysis (Korean bigrams / particle stripping, English stemming) and
//!   BM25 sparse vectors in the `(indices, values)` form Qdrant's sparse vectors take.
//! - [`store`]: the [`store::VectorStore`] trait (read and write halves) and the exact
//!   in-process store, the correctness baseline for approximate stores. Further stores
//!   (`edge://` through `qdrant-edge`, `qdrant://` through `qdrant-client`) implement the same
//!   traits and are chosen by [`store::StoreSpec`].
//! - [`hybrid`]: dense + sparse fused with reciprocal-rank fusion.
//! - [`embedding`]: the bridge to the engine's embedder and tokenizer.
//! - [`indexer`]: the idempotent, resumable indexing run and its manifest.
//! - [`eval`]: recall@k, MRR and nDCG@10 over the golden queries.

pub mod args;
pub mod corpus;
pub mod embedding;
pub mod eval;
pub mod hybrid;
pub mod indexer;
pub mod sparse;
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
    #[error("bad store location {0:?}: use exact://<dir>")]
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
}

impl RetrievalError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
