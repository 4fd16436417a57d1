//! The server foundation: health routes, error shape, request ids, CORS, metrics, OpenAPI.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::common::*;

#[tokio::test]
async fn healthz_is_ok_with_request_id_and_server_timing() {
    let (app, _state, _dir) = app();
    let response = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID request id, got {id}");
    let timing = response
        .headers()
        .get("server-timing")
        .expect("server-timing")
        .to_str()
        .unwrap();
    assert!(timing.starts_with("total;dur="), "{timing}");
    let body = body_json(response).await;
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let (app, _state, _dir) = app();
    let request = Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn readyz_follows_components() {
    let (app, state, _dir) = app();
    let (status, body) = get_json(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    state.set_component("embedder", false, "loading");
    let (status, body) = get_json(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["embedder"]["ready"], false);
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let (app, _state, _dir) = app();
    let (status, body) = get_json(&app, "/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn lib_health_reports_versions() {
    let (app, _state, _dir) = app();
    let (status, body) = get_json(&app, "/api/lib-health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], starpillar::VERSION);
    assert!(
        body["versions"]["tzdb"]
            .as_str()
            .is_some_and(|v| v.len() >= 5),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_matched_route() {
    let (app, _state, _dir) = app();
    for _ in 0..3 {
        send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    }
    let response = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(body_bytes(response).await).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("starpillar_http_requests_total{") && l.contains("route=\"/healthz\"")
        })
        .unwrap_or_else(|| panic!("no healthz counter in\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    for name in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let metric = name.split_whitespace().next().unwrap();
        assert!(
            metric.starts_with("starpillar_"),
            "{metric} lacks the prefix"
        );
        assert!(
            text.contains(&format!("# HELP {metric} ")),
            "{metric} has no HELP"
        );
    }
}

#[tokio::test]
async fn cors_preflight_allows_any_origin_by_default() {
    let (app, _state, _dir) = app();
    let request = Request::options("/healthz")
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .unwrap();
    let response = send(&app, request).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn cors_with_configured_origins_allows_only_them_with_credentials() {
    let dir = tempdir::TempDir::new();
    let mut cfg = starpillar::config::ServeConfig::for_tests(dir.path());
    cfg.cors_origins = vec!["https://app.example.com".into()];
    let state = std::sync::Arc::new(starpillar::state::AppState::new(cfg));
    let app = starpillar::api::app(state);
    let preflight = |origin: &str| {
        Request::options("/healthz")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .unwrap()
    };
    let ok = send(&app, preflight("https://app.example.com")).await;
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let other = send(&app, preflight("https://evil.example.net")).await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn load_is_shed_with_503_and_retry_after() {
    let dir = tempdir::TempDir::new();
    let mut cfg = starpillar::config::ServeConfig::for_tests(dir.path());
    cfg.max_concurrency = 1;
    let state = std::sync::Arc::new(starpillar::state::AppState::new(cfg));
    // Hold the single permit with a request whose body never finishes arriving, on a route
    // that reads its body, under exactly the production middleware.
    let routes = axum::Router::new()
        .route(
            "/slow",
            axum::routing::post(|body: String| async move { body }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let app = starpillar::api::with_middleware(routes, state);
    let (mut tx, body) = futures_channel_body();
    let slow = Request::post("/slow")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let app2 = app.clone();
    let pending = tokio::spawn(async move { send(&app2, slow).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let response = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    let status = response.status();
    let retry = response.headers().get("retry-after").cloned();
    let body = body_json(response).await;
    drop(tx.take());
    let _ = pending.await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "overloaded");
    assert!(retry.is_some());
}

/// A request body that stays open until the sender is dropped.
fn futures_channel_body() -> (
    Option<tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (Some(tx), Body::from_stream(stream))
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let (app, _state, _dir) = app();
    let (status, body) = get_json(&app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = body["paths"].as_object().expect("paths");
    for p in ["/healthz", "/readyz", "/api/lib-health", "/metrics"] {
        assert!(paths.contains_key(p), "{p} missing from openapi");
    }
    // And every documented path answers something other than our 404.
    for p in paths.keys() {
        if p.contains('{') {
            continue;
        }
        let response = send(&app, Request::get(p.as_str()).body(Body::empty()).unwrap()).await;
        assert_ne!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{p} is documented but not routed"
        );
    }
}

#[tokio::test]
async fn promtool_accepts_the_metrics() {
    let (app, _state, _dir) = app();
    send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    let response = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = body_bytes(response).await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/setup.sh");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
