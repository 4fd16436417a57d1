//! Fault: the Qdrant server is down (issue #8). With `--store qdrant://127.0.0.1:<port>` where
//! nothing listens, or where a TCP proxy accepts connections and never answers (a blackhole):
//! `/readyz` turns 503 naming the `retrieval` component, reading routes answer 503
//! `retrieval_unavailable` with `Retry-After` within the store's timeout (`?timeout=` in the
//! URL) — never a hang. Recovery (the port starts answering) needs a real server: that part
//! runs when `QDRANT_URL` is set, the proxy then forwarding to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use starpillar::config::ServeConfig;
use starpillar::retrieval::qdrant::{QdrantSpec, QdrantStore};
use starpillar::retrieval::retriever::Retriever;
use starpillar::retrieval::startup::{self, COMPONENT};
use starpillar::state::{AppState, SharedState};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, tempdir::TempDir};

/// A TCP proxy on loopback: a blackhole (accepts, holds the socket, never answers) until
/// [`Proxy::forward_to`] is called, then a plain relay.
struct Proxy {
    port: u16,
    upstream: Arc<std::sync::Mutex<Option<String>>>,
    held: Arc<std::sync::Mutex<Vec<TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn blackhole() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let upstream: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let held: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (up, keep) = (upstream.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let target = up.lock().unwrap().clone();
                match target {
                    None => keep.lock().unwrap().push(socket),
                    Some(addr) => {
                        tokio::spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(addr).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut socket, &mut server).await;
                            }
                        });
                    }
                }
            }
        });
        Self {
            port,
            upstream,
            held,
            task,
        }
    }

    /// Relay new connections to `addr`, and close the held ones (the client reconnects).
    fn forward_to(&self, addr: String) {
        *self.upstream.lock().unwrap() = Some(addr);
        self.held.lock().unwrap().clear();
    }

    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

fn serve_state(tmp: &TempDir, store: String, corpus: Option<std::path::PathBuf>) -> SharedState {
    let mut config = ServeConfig::for_tests(&tmp.path().join("data"));
    config.retrieval.store.store = Some(store);
    config.retrieval.corpus_dir = Some(corpus.unwrap_or_else(|| tmp.path().join("no-corpus")));
    let state = Arc::new(AppState::new(config));
    startup::start(&state);
    state
}

/// Poll until the retrieval component satisfies `check`, failing after `secs`.
async fn until_component(
    state: &SharedState,
    secs: u64,
    what: &str,
    check: impl Fn(bool, &str) -> bool,
) {
    let start = Instant::now();
    loop {
        let now = state.components().get(COMPONENT).cloned();
        if now.as_ref().is_some_and(|c| check(c.ready, &c.detail)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; retrieval is {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reading(app: &Router) -> (StatusCode, Option<String>, serde_json::Value, Duration) {
    let body = json!({"birth": {"date": "1990-05-15"}, "sex": "female"});
    let started = Instant::now();
    let response = common::send(
        app,
        Request::post("/api/saju")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await;
    let took = started.elapsed();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry, common::body_json(response).await, took)
}

/// `/readyz` is 503 and names the retrieval component as not ready.
async fn assert_not_ready(app: &Router) {
    let started = Instant::now();
    let (status, body) = common::get_json(app, "/readyz").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["components"][COMPONENT]["ready"], false, "{body}");
}

async fn assert_reading_unavailable(app: &Router, within: Duration) {
    let (status, retry, body, took) = reading(app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(common::error_code(&body), "retrieval_unavailable", "{body}");
    let retry: u64 = retry
        .and_then(|r| r.parse().ok())
        .expect("Retry-After holds seconds");
    assert!(retry > 0);
    assert!(took < within, "the reading took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_fails_readiness_and_readings_answer_503() {
    let tmp = TempDir::new();
    let port = closed_port().await;
    let state = serve_state(&tmp, format!("qdrant://127.0.0.1:{port}?timeout=1"), None);
    until_component(&state, 10, "the store reported down", |ready, detail| {
        !ready && detail.contains("unavailable") && detail.contains(&port.to_string())
    })
    .await;
    let app = starpillar::api::app(state.clone());
    assert_not_ready(&app).await;
    assert_reading_unavailable(&app, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_fails_readiness_within_the_timeout_and_readings_answer_503() {
    let tmp = TempDir::new();
    let proxy = Proxy::blackhole().await;
    let started = Instant::now();
    let state = serve_state(
        &tmp,
        format!("qdrant://127.0.0.1:{}?timeout=1", proxy.port),
        None,
    );
    until_component(
        &state,
        10,
        "the blackholed store reported down",
        |ready, d| !ready && d.contains("unavailable"),
    )
    .await;
    // The first probe gives up after the 1 s timeout, not the 10 s default.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(proxy.held() > 0, "the client never reached the proxy");
    let app = starpillar::api::app(state.clone());
    assert_not_ready(&app).await;
    assert_reading_unavailable(&app, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_mid_run_answers_503_within_the_timeout() {
    // The retriever was installed while the server answered; now it blackholes every call.
    let (_app, state, _dir) = common::app();
    let proxy = Proxy::blackhole().await;
    let spec = QdrantSpec::parse(
        &format!("qdrant://127.0.0.1:{}?timeout=1", proxy.port),
        None,
    )
    .expect("a valid URL")
    .expect("a qdrant URL");
    state.set_retriever(Arc::new(Retriever {
        store: Arc::new(QdrantStore::new(&spec).expect("a client")),
        sparse: Default::default(),
        embedder: None,
        corpus_version: "test".into(),
    }));
    let app = starpillar::api::app(state.clone());
    assert_reading_unavailable(&app, Duration::from_secs(4)).await;
    assert!(proxy.held() > 0, "the client never reached the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_when_the_port_starts_answering_needs_a_server() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        println!("QDRANT_URL is not set: recovery is checked against a real Qdrant server only");
        return;
    };
    let upstream = QdrantSpec::parse(&url, None)
        .expect("QDRANT_URL is a qdrant URL")
        .expect("QDRANT_URL is a qdrant URL");
    let addr = upstream
        .url
        .split_once("://")
        .map(|(_, a)| a.to_owned())
        .expect("host:port");
    let tmp = TempDir::new();
    let corpus = tmp.path().join("corpus");
    crate::retrieval::write_corpus(&corpus);
    let proxy = Proxy::blackhole().await;
    let collection = format!("faults_{}", std::process::id());
    let target = addr.clone();
    let state = serve_state(
        &tmp,
        format!("qdrant://127.0.0.1:{}/{collection}?timeout=1", proxy.port),
        Some(corpus),
    );
    until_component(&state, 10, "the store reported down", |ready, d| {
        !ready && d.contains("unavailable")
    })
    .await;
    let app = starpillar::api::app(state.clone());
    assert_not_ready(&app).await;
    proxy.forward_to(target);
    until_component(&state, 30, "recovery", |ready, _| ready).await;
    let (status, body) = common::get_json(&app, "/api/lib-health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["components"][COMPONENT]["ready"], true, "{body}");
    // Clean up the collection, if the indexer made one.
    if let Ok(Some(s)) = QdrantSpec::parse(&format!("qdrant://{addr}/{collection}"), None)
        && let Ok(store) = QdrantStore::new(&s)
    {
        let _ = store.drop_collection().await;
    }
}
