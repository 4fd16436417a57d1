//! Retrieval at `serve` start ([`starpillar::retrieval::startup`]): keyword search over the
//! corpus comes up before the embedder exists, hybrid search over the embedded store once it
//! does; a restart reuses the store without re-embedding; a store that is down makes the
//! `retrieval` component (and `/readyz`) fail quickly instead of hanging.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use starpillar::config::ServeConfig;
use starpillar::engine::Embed;
use starpillar::retrieval::hybrid::Mode;
use starpillar::retrieval::startup::{self, COMPONENT};
use starpillar::retrieval::store::Filter;
use starpillar::state::{AppState, SharedState};

use crate::common::{self, tempdir::TempDir};
use crate::retrieval::{HashEmbed, write_corpus};

fn state_with(config: ServeConfig) -> SharedState {
    Arc::new(AppState::new(config))
}

/// Poll `check` every 50 ms until it holds, failing after `secs`.
async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mode(state: &SharedState) -> Option<Mode> {
    state.retriever().map(|r| r.mode())
}

fn retrieval_detail(state: &SharedState) -> String {
    state
        .components()
        .get(COMPONENT)
        .map(|c| c.detail.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_indexes_the_corpus_keywords_first_then_hybrid_and_reuses_it() {
    let tmp = TempDir::new();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus);
    let data = tmp.path().join("data");
    let mut config = ServeConfig::for_tests(&data);
    config.retrieval.corpus_dir = Some(corpus.clone());

    let state = state_with(config.clone());
    startup::start(&state);
    // No embedder yet: keyword search over the corpus in memory, and ready.
    until(20, "the keyword retriever", || {
        mode(&state) == Some(Mode::Sparse)
    })
    .await;
    let r = state.retriever().unwrap();
    let hits = r
        .search("Saturn return", &Filter::default(), 3)
        .await
        .unwrap();
    assert!(hits[0].payload.text.contains("Saturn return"), "{hits:?}");
    assert!(state.components()[COMPONENT].ready);

    // The embedder arrives: the store is indexed and search turns hybrid over it.
    assert!(state.embedder.set(Arc::new(HashEmbed::new())).is_ok());
    until(30, "the hybrid retriever", || {
        mode(&state) == Some(Mode::Hybrid)
    })
    .await;
    let r = state.retriever().unwrap();
    assert!(
        r.store.describe().starts_with("edge://"),
        "{}",
        r.store.describe()
    );
    let stored = r.store.count(&Filter::default()).await.unwrap();
    assert!(stored > 4);
    let meta = r.store.meta().await.unwrap().unwrap();
    assert_eq!(meta.model, "hash-64");
    assert_eq!(r.corpus_version, meta.corpus_version);
    let hits = r
        .search(
            "토성 인내",
            &Filter {
                lang: Some("ko".into()),
                topic: None,
            },
            3,
        )
        .await
        .unwrap();
    assert_eq!(hits[0].payload.doc_id, "astrology-planet-saturn-ko");
    assert!(retrieval_detail(&state).starts_with("hybrid"));

    // /readyz and /api/lib-health report the component.
    let app = starpillar::api::app(state.clone());
    let (status, body) = common::get_json(&app, "/api/lib-health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["components"][COMPONENT]["ready"], true, "{body}");
    drop(r);
    drop(app);
    drop(state);

    // A restart over the same data dir: the store is searched at once, nothing re-embedded.
    let state = state_with(config);
    let calls = Arc::new(HashEmbed::new());
    startup::start(&state);
    until(20, "the keyword retriever over the store", || {
        state
            .retriever()
            .is_some_and(|r| r.store.describe().starts_with("edge://"))
    })
    .await;
    assert!(state.embedder.set(calls.clone() as Arc<dyn Embed>).is_ok());
    until(30, "the hybrid retriever after restart", || {
        mode(&state) == Some(Mode::Hybrid)
    })
    .await;
    let r = state.retriever().unwrap();
    assert_eq!(r.store.count(&Filter::default()).await.unwrap(), stored);
    assert_eq!(calls.calls(), 0, "an up-to-date store is not re-embedded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_fails_readiness_quickly() {
    let tmp = TempDir::new();
    let mut config = ServeConfig::for_tests(tmp.path());
    // Nothing listens on port 9 here: connections are refused.
    config.retrieval.store.store = Some("qdrant://127.0.0.1:9".into());
    config.retrieval.corpus_dir = Some(tmp.path().join("no-corpus"));
    let state = state_with(config);
    startup::start(&state);
    until(20, "the store to be reported down", || {
        state
            .components()
            .get(COMPONENT)
            .is_some_and(|c| !c.ready && c.detail.contains("unavailable"))
    })
    .await;
    assert!(state.retriever().is_none());
    let app = starpillar::api::app(state.clone());
    let started = Instant::now();
    let response = common::send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_bad_store_url_is_a_config_error() {
    let mut args = starpillar::config::ServeArgs::default();
    args.retrieval.store.store = Some("ftp://nowhere".into());
    let err = ServeConfig::from_args(&args).unwrap_err();
    assert!(err.to_string().contains("--store"), "{err}");
}
