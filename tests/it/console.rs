//! The console page: served at `/` with its assets and a same-origin CSP (oneshot), and driven
//! in headless Chromium against the real binary (scripts/oracles/node/console.cjs: Debian's
//! `chromium` + `playwright-core`, installed by scripts/setup.sh): the form is filled and
//! submitted, the four pillars and the natal wheel must show what the API computes, and a
//! reading must stream in — or, when this server cannot read, the page must show the API's
//! error. Screenshots land in `$STARPILLAR_ARTIFACTS` (default `target/artifacts`).

use std::path::PathBuf;
use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, send, tempdir::TempDir};
use crate::smoke::Server;

#[tokio::test]
async fn the_page_and_its_assets_are_served() {
    let (app, _state, _dir) = common::app();
    for (path, kind, needle) in [
        ("/", "text/html", "id=\"birth-form\""),
        ("/console/app.js", "text/javascript", "function readSse"),
        ("/console/app.css", "text/css", ".pillars"),
    ] {
        let resp = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        if path == "/" {
            let csp = resp.headers()["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"));
        }
        let body = String::from_utf8(common::body_bytes(resp).await).unwrap();
        assert!(body.contains(needle), "{path}");
    }
    let (_, api) = common::get_json(&app, "/openapi.json").await;
    assert!(
        api["paths"]["/"]["get"].is_object(),
        "the page is in /openapi.json"
    );
    assert!(api["paths"]["/api/admin/cache/purge"]["post"].is_object());
}

fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("STARPILLAR_ARTIFACTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts"));
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

fn node_modules() -> PathBuf {
    let cache = std::env::var_os("STARPILLAR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/starpillar")
        });
    cache.join("node/node_modules")
}

/// What the server answers to the reading the browser will ask for.
async fn probe_reading(base: &str) -> (u16, Value) {
    let body = json!({
        "birth": { "date": "1990-05-15", "time": "14:30", "calendar": "solar",
                   "timezone": "Asia/Seoul", "longitude": 129.0756 },
        "sex": "female", "question": "올해 직업운은 어떤가요?", "locale": "ko", "reading": true
    });
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/saju"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("probe");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let nm = node_modules();
    assert!(
        std::path::Path::new(&chromium).exists() && nm.join("playwright-core").is_dir(),
        "chromium ({chromium}) or playwright-core ({}) is missing: run scripts/setup.sh",
        nm.display()
    );
    let dir = TempDir::new();
    let server = Server::start(&dir.path().join("data"), &[], &[]);
    let base = server.url();
    let out_dir = artifacts_dir();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/oracles/node/console.cjs");
    let out = tokio::task::spawn_blocking({
        let (base, out_dir) = (base.clone(), out_dir.clone());
        move || {
            Command::new("node")
                .arg(&script)
                .arg(&base)
                .arg(&out_dir)
                .env("NODE_PATH", &nm)
                .env("CHROMIUM", &chromium)
                .output()
                .expect("run node")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "console.cjs printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for shot in report["screenshots"].as_array().into_iter().flatten() {
        println!("screenshot: {}", shot.as_str().unwrap_or_default());
    }
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] != true)
        .collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "failed checks: {failed:#?}"
    );
    assert!(
        report["checks"].as_array().is_some_and(|c| c.len() >= 12),
        "{report}"
    );

    // The reading: streamed when the server can read, the API's error on the page otherwise.
    let reading = &report["reading"];
    assert_eq!(
        reading["accept"], "text/event-stream",
        "the page asks for SSE: {reading}"
    );
    let (status, probe) = probe_reading(&base).await;
    if status == 200 {
        let text = reading["text"].as_str().unwrap_or_default();
        assert_eq!(reading["error"], false, "{reading}");
        assert!(text.chars().count() > 40, "reading text shown: {reading}");
        assert!(
            reading["deltas"].as_u64() > Some(1),
            "the reading arrived in many delta events: {reading}"
        );
        assert!(
            reading["citations"].as_u64() > Some(0),
            "sources listed: {reading}"
        );
        assert!(
            reading["links"].as_u64() > Some(0),
            "[n] markers link to sources: {reading}"
        );
    } else {
        let code = probe["error"]["code"].as_str().unwrap_or("?");
        println!("this server cannot read yet ({status} {code}); the page must say so");
        assert_eq!(reading["error"], true, "{reading}");
        assert!(
            reading["status"].as_str().is_some_and(|s| s.contains(code)),
            "the page shows the API's error {code}: {reading}"
        );
    }
}
