//! Sentry reporting: with a DSN, a 500 (with its logged cause) and a panic arrive at a local
//! HTTP endpoint as well-formed envelopes with the `X-Sentry-Auth` header; 4xx are not
//! reported; a hung Sentry never blocks capturing (bounded queue, drops counted); and the real
//! binary started with `SENTRY_DSN` reports a 503 of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};
use starpillar::error::ApiError;
use starpillar::telemetry::sentry;

use crate::common::{send, tempdir::TempDir};
use crate::smoke::Server;

/// What the endpoint received: (path, X-Sentry-Auth, content type, body).
type Received = Arc<Mutex<Vec<(String, String, String, Vec<u8>)>>>;

/// A local stand-in for Sentry's ingest endpoint.
async fn endpoint() -> (String, Received) {
    let seen: Received = Arc::default();
    let log = seen.clone();
    let app = Router::new().fallback(move |req: Request<Body>| {
        let log = log.clone();
        async move {
            let (auth, kind, path) = {
                let header = |name: &str| -> String {
                    let value = req.headers().get(name).and_then(|v| v.to_str().ok());
                    value.unwrap_or_default().to_owned()
                };
                let path = req.uri().path().to_owned();
                (header("x-sentry-auth"), header("content-type"), path)
            };
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            log.lock()
                .expect("lock")
                .push((path, auth, kind, body.to_vec()));
            axum::Json(json!({"id": "ok"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), seen)
}

/// Split an envelope into (envelope header, item header, event), checking the framing.
fn parse_envelope(body: &[u8]) -> (Value, Value, Value) {
    let text = std::str::from_utf8(body).expect("UTF-8 envelope");
    let (head, rest) = text.split_once('\n').expect("envelope header line");
    let (item, rest) = rest.split_once('\n').expect("item header line");
    let head: Value = serde_json::from_str(head).expect("envelope header JSON");
    let item: Value = serde_json::from_str(item).expect("item header JSON");
    assert_eq!(item["type"], "event", "{item}");
    let len = item["length"].as_u64().expect("item length") as usize;
    let payload = rest.get(..len).expect("payload as long as announced");
    assert_eq!(rest.get(len..), Some("\n"), "one item, newline-terminated");
    let event: Value = serde_json::from_str(payload).expect("event JSON");
    assert_eq!(head["event_id"], event["event_id"], "ids agree");
    let id = event["event_id"].as_str().expect("event id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    (head, item, event)
}

/// Events received so far whose JSON contains `marker`, waiting up to `wait` for one.
async fn events_with(seen: &Received, marker: &str, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let found: Vec<Value> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, _, body)| parse_envelope(body).2)
            .filter(|e| e.to_string().contains(marker))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundreds_and_panics_reach_sentry_as_envelopes() {
    let (addr, seen) = endpoint().await;
    sentry::install(&format!("http://publickey123@{addr}/42"), "ci").expect("install");
    let dir = TempDir::new();
    let state = starpillar::api::test_state(dir.path());
    let routes = Router::new()
        .route(
            "/boom/{id}",
            get(|| async { Err::<(), _>(ApiError::internal("disk on fire 7f3a")) }),
        )
        .route(
            "/invalid-0c11",
            get(|| async { Err::<(), _>(ApiError::invalid("x", "bad_x", "bad x")) }),
        );
    let app = starpillar::api::with_middleware(routes, state);
    for (path, status) in [
        ("/boom/17", StatusCode::INTERNAL_SERVER_ERROR),
        ("/invalid-0c11", StatusCode::UNPROCESSABLE_ENTITY),
        ("/missing-0c11", StatusCode::NOT_FOUND),
    ] {
        let response = send(&app, Request::get(path).body(Body::empty()).expect("req")).await;
        assert_eq!(response.status(), status, "{path}");
    }
    let panicked = std::thread::Builder::new()
        .name("sentry-test-panicker".into())
        .spawn(|| panic!("panic marker 51c2"))
        .expect("thread")
        .join();
    assert!(panicked.is_err());
    let reporter = sentry::reporter().expect("installed");
    assert!(reporter.flush(Duration::from_secs(10)), "flush timed out");

    let http = events_with(&seen, "disk on fire 7f3a", Duration::from_secs(5)).await;
    assert_eq!(http.len(), 1, "{http:?}");
    let e = &http[0];
    assert_eq!(e["level"], "error");
    assert_eq!(
        e["tags"]["route"], "/boom/{id}",
        "matched route, not the path"
    );
    assert_eq!(e["tags"]["status"], "500");
    assert_eq!(e["tags"]["code"], "internal");
    assert_eq!(e["request"]["url"], "/boom/17");
    assert_eq!(e["exception"]["values"][0]["value"], "disk on fire 7f3a");
    assert_eq!(e["environment"], "ci");
    assert!(
        e["release"]
            .as_str()
            .is_some_and(|r| r.starts_with("starpillar@"))
    );
    let rid = e["tags"]["request_id"].as_str().unwrap_or("-");
    assert!(rid.len() >= 32, "request id {rid}");

    let panics = events_with(&seen, "panic marker 51c2", Duration::from_secs(5)).await;
    assert_eq!(panics.len(), 1, "{panics:?}");
    let p = &panics[0];
    assert_eq!(p["level"], "fatal");
    assert_eq!(p["exception"]["values"][0]["value"], "panic marker 51c2");
    assert_eq!(p["exception"]["values"][0]["mechanism"]["handled"], false);
    assert_eq!(p["tags"]["thread"], "sentry-test-panicker");
    assert!(
        p["culprit"]
            .as_str()
            .is_some_and(|c| c.contains("sentry.rs:"))
    );

    assert!(
        events_with(&seen, "0c11", Duration::ZERO).await.is_empty(),
        "4xx must not be reported"
    );
    let received = seen.lock().expect("lock").clone();
    for (path, auth, kind, _) in &received {
        assert_eq!(path, "/api/42/envelope/");
        assert_eq!(kind, "application/x-sentry-envelope");
        assert!(auth.starts_with("Sentry sentry_version=7,"), "{auth}");
        assert!(auth.contains("sentry_key=publickey123"), "{auth}");
    }
}

#[test]
fn capturing_never_waits_for_a_hung_sentry() {
    // Accepts connections (the kernel does) but never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = hung.local_addr().expect("addr");
    let dsn = format!("http://k@{addr}/1").parse().expect("dsn");
    let reporter = sentry::Reporter::new(dsn, "ci", 8).expect("reporter");
    let start = Instant::now();
    for i in 0..2000 {
        reporter.capture(json!({"level": "error", "message": {"formatted": format!("e{i}")}}));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "2000 captures took {took:?}"
    );
    let stats = &reporter.stats;
    let queued = stats.queued.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(queued + dropped, 2000);
    assert!(queued <= 9, "the queue is bounded: {queued} queued");
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_its_5xx_when_sentry_dsn_is_set() {
    let (addr, seen) = endpoint().await;
    let dir = TempDir::new();
    let dsn = format!("http://binkey@{addr}/7");
    let server = Server::start(
        &dir.path().join("data"),
        &["--database-url", "postgres://nobody@127.0.0.1:1/none"],
        &[("SENTRY_DSN", &dsn), ("SENTRY_ENVIRONMENT", "staging")],
    );
    let response = reqwest::get(format!("{}/api/db-ping", server.url()))
        .await
        .expect("db-ping");
    assert_eq!(response.status().as_u16(), 503);
    let events = events_with(&seen, "store_unavailable", Duration::from_secs(15)).await;
    let e = events
        .iter()
        .find(|e| e["tags"]["route"] == "/api/db-ping")
        .unwrap_or_else(|| panic!("no db-ping event: {events:?}"));
    assert_eq!(e["tags"]["status"], "503");
    assert_eq!(e["environment"], "staging");
    let received = seen.lock().expect("lock").clone();
    assert!(
        received
            .iter()
            .all(|(p, a, _, _)| p == "/api/7/envelope/" && a.contains("sentry_key=binkey"))
    );
}
