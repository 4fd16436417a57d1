//! The handle the reading pipeline searches through: an open store, the sparse analysis it was
//! built with, the embedder for query vectors (hybrid search), and the corpus version (part of
//! the response-cache key). `serve` installs one in the state once the store is open and
//! indexed; without an embedder it searches by keywords alone. A search that the store (or the
//! embedder's queue) does not answer within [`SEARCH_TIMEOUT`] fails with
//! [`RetrievalError::Unavailable`]: callers answer 503, they never hang.

use std::sync::Arc;
use std::time::Duration;

use super::RetrievalError;
use super::hybrid::{self, Mode};
use super::query_vectors;
use super::sparse::SparseConfig;
use super::store::{Filter, Hit, VectorStore};
use crate::engine::{Embed, EmbedInput, EmbedKind, embedder};

/// Longest a search (query embedding included) may take.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Search over one store.
pub struct Retriever {
    pub store: Arc<dyn VectorStore>,
    pub sparse: SparseConfig,
    pub embedder: Option<Arc<dyn Embed>>,
    pub corpus_version: String,
}

impl Retriever {
    /// Hybrid search when an embedder is present, sparse otherwise.
    pub fn mode(&self) -> Mode {
        if self.embedder.is_some() {
            Mode::Hybrid
        } else {
            Mode::Sparse
        }
    }

    /// The `limit` best chunks for `query` under `filter`; [`RetrievalError::Unavailable`]
    /// after [`SEARCH_TIMEOUT`].
    pub async fn search(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Hit>, RetrievalError> {
        match tokio::time::timeout(SEARCH_TIMEOUT, self.search_now(query, filter, limit)).await {
            Ok(r) => r,
            Err(_) => Err(RetrievalError::Unavailable(format!(
                "{} did not answer within {} s",
                self.store.describe(),
                SEARCH_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn search_now(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Hit>, RetrievalError> {
        let dense = match &self.embedder {
            Some(e) => query_vector(e.as_ref(), query).await?,
            None => None,
        };
        hybrid::search(
            self.store.as_ref(),
            self.mode(),
            query,
            dense.as_ref().map(|v| v.as_slice()),
            &self.sparse,
            filter,
            limit,
        )
        .await
    }
}

/// The query vector of `query`, memoised per model (see [`query_vectors`]).
async fn query_vector(e: &dyn Embed, query: &str) -> Result<Option<Arc<Vec<f32>>>, RetrievalError> {
    let memo = query_vectors::shared();
    if let Some(v) = memo.lock().ok().and_then(|mut m| m.get(e.model(), query)) {
        return Ok(Some(v));
    }
    let input = EmbedInput {
        texts: vec![query.to_owned()],
        kind: EmbedKind::Query,
    };
    let Some(v) = embedder::embed(e, input).await?.vectors.pop() else {
        return Ok(None);
    };
    let v = Arc::new(v);
    if let Ok(mut m) = memo.lock() {
        m.put(e.model(), query, v.clone());
    }
    Ok(Some(v))
}
