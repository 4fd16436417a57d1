//! Helpers shared by the integration tests: build the app, send a request, read JSON.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The application over a fresh temporary data directory.
pub fn app() -> (Router, starpillar::state::SharedState, tempdir::TempDir) {
    let dir = tempdir::TempDir::new();
    let state = starpillar::api::test_state(dir.path());
    (starpillar::api::app(state.clone()), state, dir)
}

/// Send one request through the router (no socket).
pub async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone()
        .oneshot(request)
        .await
        .expect("the router is infallible")
}

/// POST a JSON body.
pub async fn post_json(app: &Router, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("valid request");
    let response = send(app, request).await;
    let status = response.status();
    (status, body_json(response).await)
}

/// GET a path and parse its JSON body.
pub async fn get_json(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
    let response = send(
        app,
        Request::get(path)
            .body(Body::empty())
            .expect("valid request"),
    )
    .await;
    let status = response.status();
    (status, body_json(response).await)
}

pub async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

pub async fn body_json(response: Response<Body>) -> serde_json::Value {
    let bytes = body_bytes(response).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Assert the error shape of DESIGN.md §3 and return the code.
pub fn error_code(body: &serde_json::Value) -> String {
    let err = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object in {body}"));
    assert!(
        err.get("message").and_then(|m| m.as_str()).is_some(),
        "error without message: {body}"
    );
    err["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without code: {body}"))
        .to_owned()
}

pub mod tempdir {
    //! A tiny self-deleting temporary directory (no extra dependency).
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct TempDir(PathBuf);

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    impl TempDir {
        pub fn new() -> Self {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("starpillar-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The Python interpreter of the oracle venv built by `scripts/setup.sh`. Differential tests
/// run reference libraries through it; a missing venv is a failure, not a skip.
pub fn oracle_python() -> std::path::PathBuf {
    let venv = std::env::var_os("STARPILLAR_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/starpillar/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the oracle venv is missing at {}: run scripts/setup.sh (scripts/test.sh does)",
        venv.display()
    );
    python
}

/// Run a Python oracle script from `scripts/oracles/` with JSON on stdin; parse its JSON stdout.
pub fn run_oracle(script: &str, input: &serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/oracles")
        .join(script);
    let mut child = std::process::Command::new(oracle_python())
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let payload = serde_json::to_vec(input).expect("serialisable input");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&payload)
        .expect("write oracle input");
    let out = child.wait_with_output().expect("oracle output");
    assert!(
        out.status.success(),
        "oracle {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "oracle {script} printed non-JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
