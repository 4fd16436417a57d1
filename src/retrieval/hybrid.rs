//! Hybrid search: a dense (cosine) and a sparse (BM25) candidate list, each prefetched from the
//! store under the same filter, fused by reciprocal-rank fusion: score(d) = Σ 1 / (k + rank),
//! ranks from 1, k = 60 — the same fusion Qdrant's `query` with prefetch + `Fusion::Rrf` does.

use std::collections::HashMap;

use uuid::Uuid;

use super::RetrievalError;
use super::sparse::{SparseConfig, query_vector};
use super::store::{Filter, Hit, VectorStoreRead};

/// RRF's rank constant.
pub const RRF_K: f32 = 60.0;

/// Which ranking to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Dense,
    Sparse,
    Hybrid,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Sparse => "sparse",
            Self::Hybrid => "hybrid",
        }
    }
}

/// Fuse ranked lists by RRF; ties broken by id for a stable order.
pub fn rrf(lists: &[Vec<Hit>], k: f32, limit: usize) -> Vec<Hit> {
    let mut fused: HashMap<Uuid, Hit> = HashMap::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let add = 1.0 / (k + rank as f32 + 1.0);
            fused
                .entry(hit.id)
                .and_modify(|h| h.score += add)
                .or_insert_with(|| Hit {
                    score: add,
                    ..hit.clone()
                });
        }
    }
    let mut out: Vec<Hit> = fused.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out.truncate(limit);
    out
}

/// How many candidates each side contributes before fusion.
pub fn prefetch_limit(limit: usize) -> usize {
    (limit * 4).max(50)
}

/// Search `store` for `query`. `dense_query` is the embedded query (E5 `query: ` prefix); it is
/// required for dense and hybrid modes.
pub async fn search(
    store: &dyn VectorStoreRead,
    mode: Mode,
    query: &str,
    dense_query: Option<&[f32]>,
    sparse: &SparseConfig,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Hit>, RetrievalError> {
    let need_dense = || {
        dense_query.ok_or_else(|| {
            RetrievalError::Invalid(format!("{} search needs an embedder", mode.name()))
        })
    };
    match mode {
        Mode::Dense => store.search_dense(need_dense()?, filter, limit).await,
        Mode::Sparse => {
            let q = query_vector(query, sparse);
            store.search_sparse(&q, filter, limit).await
        }
        Mode::Hybrid => {
            let q = query_vector(query, sparse);
            store
                .search_hybrid(need_dense()?, &q, filter, prefetch_limit(limit), limit)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::corpus::Payload;

    fn hit(n: u128) -> Hit {
        Hit {
            id: Uuid::from_u128(n),
            score: 0.0,
            payload: Payload {
                doc_id: format!("d{n}"),
                source: String::new(),
                title: String::new(),
                lang: "en".into(),
                topic: "saju".into(),
                tags: vec![],
                chunk_index: 0,
                text: String::new(),
                corpus_version: String::new(),
            },
        }
    }

    #[test]
    fn rrf_rewards_agreement() {
        let a = vec![hit(1), hit(2), hit(3)];
        let b = vec![hit(3), hit(2), hit(4)];
        let fused = rrf(&[a, b], RRF_K, 10);
        let ids: Vec<u128> = fused.iter().map(|h| h.id.as_u128()).collect();
        // 2 is second in both: 2/62; 3 is first and third: 1/61 + 1/63 > 2/62.
        assert_eq!(ids, [3, 2, 1, 4]);
        let want = 1.0 / 61.0 + 1.0 / 63.0;
        assert!((fused[0].score - want).abs() < 1e-6);
        assert_eq!(rrf(&[vec![hit(1)]], RRF_K, 0).len(), 0);
    }
}
