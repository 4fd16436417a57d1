//! Retrieval at `serve` start, all in the background (the server answers at once):
//!
//! 1. open the store (`--store`, default `edge://<data-dir>/index/edge`), retrying while it is
//!    unreachable;
//! 2. keyword search right away: over the store when it holds chunks, otherwise over the
//!    bundled corpus indexed in memory (about a second);
//! 3. once the embedder has loaded (it loads in the background too), bring the store up to date
//!    with the corpus (`--corpus-dir`) through the idempotent indexer — nothing to do when it
//!    was built from this corpus and model, the missing chunks otherwise — with progress in the
//!    logs and in `/api/lib-health`, then switch to hybrid search over the store;
//! 4. watch the store: when it stops answering, the `retrieval` component (and so `/readyz`)
//!    turns not-ready until it answers again.
//!
//! `--no-auto-index` skips the indexing: the store is searched as it is (hybrid when it was
//! built with the loaded model).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::RetrievalError;
use super::corpus::{self, ApproxTokens, ChunkConfig, Corpus, TokenCounter};
use super::indexer::{self, IndexOptions};
use super::retriever::Retriever;
use super::sparse::SparseConfig;
use super::store::{Filter, StoreSpec, VectorStore};
use crate::engine::Embed;
use crate::state::SharedState;

/// The component name in `/readyz` and `/api/lib-health`.
pub const COMPONENT: &str = "retrieval";
/// Longest a store call at start or in the health watch may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(5);
const WATCH_EVERY: Duration = Duration::from_secs(15);
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Start retrieval in the background (call inside the runtime, after the state is built).
pub fn start(state: &SharedState) {
    let state = state.clone();
    state.set_component(COMPONENT, false, "starting");
    tokio::spawn(async move { run(state).await });
}

fn set(state: &SharedState, ready: bool, detail: impl Into<String>) {
    let detail = detail.into();
    tracing::info!(ready, %detail, "retrieval");
    state.set_component(COMPONENT, ready, detail);
}

async fn probe<T>(f: impl Future<Output = Result<T, RetrievalError>>) -> Result<T, RetrievalError> {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(RetrievalError::Unavailable(format!(
            "no answer in {} s",
            PROBE_TIMEOUT.as_secs()
        ))),
    }
}

async fn run(state: SharedState) {
    let args = state.config.retrieval.clone();
    let spec = match args.store.spec(&state.config.data_dir) {
        Ok(s) => s,
        Err(e) => {
            set(&state, false, format!("bad --store: {e}"));
            return;
        }
    };
    let weak = Arc::downgrade(&state);
    let Some(store) = open_until_up(weak, &spec).await else {
        return;
    };
    let corpus = if args.no_auto_index {
        None
    } else {
        match args.corpus_dir() {
            Some(dir) => match corpus::load_dir(&dir) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the corpus; not indexing");
                    None
                }
            },
            None => {
                tracing::warn!("no corpus folder (--corpus-dir): not indexing");
                None
            }
        }
    };
    keyword_search_now(&state, &store, &spec, corpus.as_ref()).await;
    if let Some(embedder) = wait_for_embedder(&state).await {
        if let Some(c) = &corpus {
            index(&state, &store, &spec, c, embedder.as_ref()).await;
        }
        go_hybrid(&state, &store, &spec, embedder).await;
    }
    // The watch holds neither the state nor the store, so a dropped state (a test, a
    // shutdown) closes the store.
    let (weak_state, weak_store) = (Arc::downgrade(&state), Arc::downgrade(&store));
    drop(state);
    drop(store);
    watch(weak_state, weak_store, &spec).await;
}

/// Open the store, retrying every few seconds while it fails (until the state is dropped).
async fn open_until_up(
    state: Weak<crate::state::AppState>,
    spec: &StoreSpec,
) -> Option<Arc<dyn VectorStore>> {
    loop {
        let s = spec.clone();
        let opened = tokio::task::spawn_blocking(move || s.open())
            .await
            .map_err(|e| RetrievalError::Unavailable(e.to_string()))
            .and_then(|r| r);
        let checked = match opened {
            Ok(store) => probe(store.count(&Filter::default())).await.map(|_| store),
            Err(e) => Err(e),
        };
        let state = state.upgrade()?;
        match checked {
            Ok(store) => return Some(store),
            Err(e) => {
                set(
                    &state,
                    false,
                    format!("store {spec} unavailable: {e}; retrying"),
                );
                drop(state);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Install a keyword-only retriever: over the store when it holds chunks, else over the corpus
/// indexed in memory.
async fn keyword_search_now(
    state: &SharedState,
    store: &Arc<dyn VectorStore>,
    spec: &StoreSpec,
    corpus: Option<&Corpus>,
) {
    let meta = probe(store.meta()).await.ok().flatten();
    let count = probe(store.count(&Filter::default())).await.unwrap_or(0);
    if let Some(meta) = meta.filter(|_| count > 0) {
        state.set_retriever(Arc::new(Retriever {
            store: store.clone(),
            sparse: meta.sparse.unwrap_or_default(),
            embedder: None,
            corpus_version: meta.corpus_version,
        }));
        set(
            state,
            true,
            format!("keyword search over {count} chunks in {spec}; hybrid once the embedder loads"),
        );
        return;
    }
    let Some(c) = corpus else {
        set(
            state,
            false,
            format!("{spec} is empty and there is no corpus to index (--corpus-dir)"),
        );
        return;
    };
    let chunks = corpus::chunk_corpus(c, ChunkConfig::default(), &ApproxTokens);
    let sparse = SparseConfig::default();
    let bar = indicatif::ProgressBar::hidden();
    match super::eval::build_store(&chunks, None, None, &sparse, &bar).await {
        Ok(mem) => {
            state.set_retriever(Arc::new(Retriever {
                store: Arc::new(mem),
                sparse,
                embedder: None,
                corpus_version: corpus::corpus_version(chunks.iter().map(|c| c.id)),
            }));
            set(
                state,
                true,
                format!(
                    "keyword search over the bundled corpus in memory ({} chunks) while {spec} \
                     is indexed",
                    chunks.len()
                ),
            );
        }
        Err(e) => set(
            state,
            false,
            format!("cannot index the corpus in memory: {e}"),
        ),
    }
}

/// The embedder once loaded; `None` when it is disabled or failed.
async fn wait_for_embedder(state: &SharedState) -> Option<Arc<dyn Embed>> {
    if state.config.engine.embed_model.eq_ignore_ascii_case("none") {
        return None;
    }
    let mut polls = 0u64;
    loop {
        if let Some(e) = state.embedder.get() {
            return Some(e.clone());
        }
        let failed = state
            .components()
            .get("embedder")
            .is_some_and(|c| !c.ready && c.detail.starts_with("failed"));
        if failed {
            tracing::warn!("the embedder failed to load: retrieval stays keyword-only");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        polls += 1;
        if polls.is_multiple_of(150) {
            tracing::info!(seconds = polls / 5, "retrieval is waiting for the embedder");
        }
    }
}

/// Bring the store up to date with `corpus` (idempotent), reporting progress.
async fn index(
    state: &SharedState,
    store: &Arc<dyn VectorStore>,
    spec: &StoreSpec,
    corpus: &Corpus,
    embedder: &dyn Embed,
) {
    let counter: &dyn TokenCounter = match embedder.tokenizer() {
        Some(t) => t,
        None => &ApproxTokens,
    };
    let chunks = corpus::chunk_corpus(corpus, ChunkConfig::default(), counter);
    let bar = indicatif::ProgressBar::hidden();
    let reporter = {
        let (state, bar, spec) = (state.clone(), bar.clone(), spec.to_string());
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let (pos, len) = (bar.position(), bar.length().unwrap_or(0));
                if len == 0 {
                    continue;
                }
                let rate = pos as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let current = state.components().get(COMPONENT).cloned();
                let ready = current.is_some_and(|c| c.ready);
                set(
                    &state,
                    ready,
                    format!(
                        "indexing the corpus into {spec}: {pos}/{len} chunks embedded \
                         ({rate:.1}/s); keyword search meanwhile"
                    ),
                );
            }
        })
    };
    let options = IndexOptions {
        sparse: SparseConfig::default(),
        ..IndexOptions::default()
    };
    let result = indexer::run(
        store.as_ref(),
        Some(embedder),
        embedder.model(),
        &chunks,
        &options,
        &bar,
    )
    .await;
    reporter.abort();
    match result {
        Ok(m) => tracing::info!(
            store = %m.store,
            upserted = m.chunks.upserted,
            deleted = m.chunks.deleted,
            unchanged = m.chunks.unchanged,
            rebuilt = m.rebuilt,
            seconds = m.seconds,
            corpus_version = %m.corpus_version,
            "retrieval index is up to date"
        ),
        Err(e) => {
            tracing::error!(error = %e, "indexing the corpus failed");
            let ready = state.retriever().is_some() && !e.is_unavailable();
            set(
                state,
                ready,
                format!("indexing into {spec} failed: {e}; keyword search only"),
            );
        }
    }
}

/// Switch to hybrid search over the store when it holds this model's vectors.
async fn go_hybrid(
    state: &SharedState,
    store: &Arc<dyn VectorStore>,
    spec: &StoreSpec,
    embedder: Arc<dyn Embed>,
) {
    let meta = match probe(store.meta()).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            set(state, false, format!("store {spec} unavailable: {e}"));
            return;
        }
    };
    let count = probe(store.count(&Filter::default())).await.unwrap_or(0);
    if count == 0 {
        return;
    }
    if meta.model != embedder.model() || meta.dim != embedder.dim() {
        set(
            state,
            true,
            format!(
                "keyword search only: {spec} holds {}'s vectors, the embedder is {} (run \
                 `starpillar index`)",
                meta.model,
                embedder.model()
            ),
        );
        state.set_retriever(Arc::new(Retriever {
            store: store.clone(),
            sparse: meta.sparse.unwrap_or_default(),
            embedder: None,
            corpus_version: meta.corpus_version,
        }));
        return;
    }
    let version = meta.corpus_version.clone();
    state.set_retriever(Arc::new(Retriever {
        store: store.clone(),
        sparse: meta.sparse.unwrap_or_default(),
        embedder: Some(embedder),
        corpus_version: meta.corpus_version,
    }));
    set(
        state,
        true,
        format!("hybrid search over {count} chunks in {spec} (corpus {version})"),
    );
}

/// Flip the component when the store stops (or starts again) answering; ends when the state
/// or the store is gone.
async fn watch(
    state: Weak<crate::state::AppState>,
    store: Weak<dyn VectorStore>,
    spec: &StoreSpec,
) {
    let mut down = false;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let (Some(state), Some(store)) = (state.upgrade(), store.upgrade()) else {
            return;
        };
        match probe(store.count(&Filter::default())).await {
            Ok(_) if down => {
                down = false;
                let detail = match state.retriever() {
                    Some(r) => format!("{} search over {spec} (store back)", r.mode().name()),
                    None => format!("{spec} is back"),
                };
                set(&state, state.retriever().is_some(), detail);
            }
            Ok(_) => {}
            Err(e) => {
                if !down {
                    tracing::error!(error = %e, store = %spec, "the vector store stopped answering");
                }
                down = true;
                state.set_component(COMPONENT, false, format!("store {spec} unavailable: {e}"));
            }
        }
    }
}
