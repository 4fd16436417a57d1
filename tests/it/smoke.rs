//! `starpillar smoke` against the real binary on a free port, with a local stand-in for
//! Stripe's API: every check passes (readings pass or are skipped while the server has none),
//! the checkout is read back from "Stripe" with the smoke test's own key, the webhook replay is
//! accepted once and deduplicated once; against a dead port every check fails and the exit
//! code says so. Also the helper the other real-binary tests use: [`Server`].

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::common::tempdir::TempDir;

/// Variables of the developer's or CI's environment that would change the server under test.
const SCRUBBED_ENV: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "SENTRY_DSN",
    "NEXTAUTH_SECRET",
    "AUTH_SECRET",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "ENABLE_WEBHOOKS",
    "STARPILLAR_LISTEN",
    "STARPILLAR_DATA_DIR",
];

/// A running `starpillar serve` (killed on drop) and its JSON log lines.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start `serve` on a free loopback port over `data_dir`, without models, with `args` and
    /// `envs` added; waits for the address it logs.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_starpillar"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--embed-model", "none", "--gen-model", "none"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(envs.iter().copied());
        let child = cmd.spawn().expect("start starpillar serve");
        Self::attach(child, Duration::from_secs(60))
    }

    /// Take over a spawned `serve` (stderr piped, `--log-format json`): collect its log lines
    /// and wait, at most `within`, for the address it logs.
    pub fn attach(mut child: Child, within: Duration) -> Self {
        let logs = collect_lines(&mut child);
        let deadline = Instant::now() + within;
        loop {
            let addr = logs.lock().expect("logs").iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                v["listen"].as_str().map(str::to_owned)
            });
            if let Some(addr) = addr {
                return Self { child, addr, logs };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "serve exited with {status}: {:?}",
                    logs.lock().expect("logs")
                );
            }
            assert!(Instant::now() < deadline, "serve never logged its address");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Poll `/readyz` until it answers 200 (the bundled corpus is searchable by keyword about a
    /// second after start); false if it did not within `within`.
    pub async fn wait_ready(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::new();
        while Instant::now() < deadline {
            let ready = http.get(format!("{}/readyz", self.url())).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// Stripe's API as the smoke test and checkout use it: create a session, read it back.
async fn stripe_stand_in() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let log = log.clone();
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
            log.lock()
                .expect("lock")
                .push((method.clone(), path.clone(), auth));
            let session = json!({"id": "cs_test_smoke", "object": "checkout.session",
                "livemode": false, "url": "https://checkout.stripe.com/c/pay/cs_test_smoke"});
            match (method.as_str(), path.as_str()) {
                ("POST", "/v1/checkout/sessions")
                | ("GET", "/v1/checkout/sessions/cs_test_smoke") => {
                    (axum::http::StatusCode::OK, axum::Json(session))
                }
                _ => (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": {"message": "no such route"}})),
                ),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// Run `starpillar smoke … --json`: (exit code, rows by check name).
async fn smoke(args: Vec<String>) -> (i32, Vec<Value>) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_starpillar"))
            .arg("smoke")
            .args(&args)
            .args(["--json", "--timeout-secs", "20"])
            .env_remove("NEXTAUTH_SECRET")
            .env_remove("STRIPE_API_BASE")
            .output()
            .expect("run starpillar smoke")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "smoke printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&rows).unwrap_or_default()
    );
    (out.status.code().unwrap_or(-1), rows)
}

fn result<'a>(rows: &'a [Value], check: &str) -> &'a str {
    rows.iter()
        .find(|r| r["check"] == check)
        .and_then(|r| r["result"].as_str())
        .unwrap_or_else(|| panic!("no row for {check}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_against_a_running_server_with_stripe_test_keys() {
    let (stripe, seen) = stripe_stand_in().await;
    let dir = TempDir::new();
    let whsec = "whsec_smoke_test_secret";
    let server = Server::start(
        &dir.path().join("data"),
        &[],
        &[
            ("NEXTAUTH_SECRET", "smoke-session-secret"),
            ("STRIPE_SECRET_KEY", "sk_test_server_key"),
            ("STRIPE_WEBHOOK_SECRET", whsec),
            ("STRIPE_API_BASE", &stripe),
            ("ENABLE_WEBHOOKS", "true"),
            ("STRIPE_PRICE_PREMIUM", "price_smoke_premium"),
        ],
    );
    // As after a deploy: wait for readiness, then smoke-test.
    let ready = server.wait_ready(Duration::from_secs(60)).await;
    eprintln!("server ready: {ready}");
    let args = [
        "--base-url",
        &server.url(),
        "--stripe-secret-key",
        "sk_test_smoke_key",
        "--stripe-webhook-secret",
        whsec,
        "--stripe-api-base",
        &stripe,
        "--price-id",
        "price_smoke_premium",
        "--nextauth-secret",
        "smoke-session-secret",
    ];
    let (code, rows) = smoke(args.iter().map(|s| (*s).to_owned()).collect()).await;
    // Every check passes: readings too (composed: this server has no generator model).
    for row in &rows {
        assert_eq!(row["result"], "PASS", "{row}");
    }
    assert_eq!(rows.len(), 10, "{rows:?}");
    assert_eq!(code, 0);
    let replay = rows.iter().find(|r| r["check"] == "webhook replay");
    let detail = replay
        .and_then(|r| r["detail"].as_str())
        .unwrap_or_default();
    assert!(detail.ends_with("ignored then duplicate"), "{detail}");
    // The server created the session with its key; the smoke test read it back with its own.
    let seen = seen.lock().expect("lock").clone();
    let basic = |key: &str| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        format!("Basic {b64}")
    };
    assert!(
        seen.iter().any(|(m, p, a)| m == "POST"
            && p == "/v1/checkout/sessions"
            && a.as_deref() == Some("Bearer sk_test_server_key")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(m, _, a)| m == "GET" && a.as_deref() == Some(&basic("sk_test_smoke_key"))),
        "{seen:?}"
    );
    // A live key is refused before anything is sent, and a wrong webhook secret fails.
    let mut bad: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    bad[3] = "sk_live_oops".into();
    bad[5] = "whsec_not_the_servers".into();
    let (code, rows) = smoke(bad).await;
    assert_eq!(code, 1);
    assert_eq!(result(&rows, "checkout (test mode)"), "FAIL");
    assert_eq!(result(&rows, "webhook replay"), "FAIL");
    assert_eq!(result(&rows, "healthz"), "PASS");
}

#[tokio::test]
async fn smoke_fails_with_a_non_zero_exit_when_nothing_answers() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (code, rows) = smoke(vec!["--base-url".into(), base]).await;
    assert_eq!(code, 1, "{rows:?}");
    for check in ["healthz", "readyz", "db-ping", "saju chart"] {
        assert_eq!(result(&rows, check), "FAIL", "{check}");
    }
    // Without keys the Stripe checks are skipped, not failed.
    assert_eq!(result(&rows, "checkout (test mode)"), "SKIP");
    assert_eq!(result(&rows, "webhook replay"), "SKIP");
}

/// A fresh default server (no session secret: anonymous callers, 3 readings a day) smoke-tested
/// right after start: the smoke test waits for readiness itself, and all eight checks that need
/// no Stripe keys pass. Each run costs exactly one unit of the quota (the fresh reading; the
/// cached one is free), so two runs pass; the third spends the last unit on its fresh reading,
/// and then even its cached reading is refused (the quota is checked before the cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_runs_twice_a_day_on_an_anonymous_quota() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path().join("data"), &[], &[]);
    let args = || vec!["--base-url".to_owned(), server.url()];
    for run in 1..=2 {
        let (code, rows) = smoke(args()).await;
        let passed: Vec<&str> = rows
            .iter()
            .filter(|r| r["result"] == "PASS")
            .filter_map(|r| r["check"].as_str())
            .collect();
        assert_eq!(passed.len(), 8, "run {run}: {rows:?}");
        assert_eq!(result(&rows, "reading (cached)"), "PASS", "run {run}");
        assert_eq!(result(&rows, "checkout (test mode)"), "SKIP");
        assert_eq!(code, 0, "run {run}");
    }
    let (code, rows) = smoke(args()).await;
    assert_eq!(code, 1, "{rows:?}");
    assert_eq!(result(&rows, "reading (uncached)"), "PASS");
    assert_eq!(result(&rows, "reading (cached)"), "FAIL");
    let detail = rows
        .iter()
        .find(|r| r["check"] == "reading (cached)")
        .and_then(|r| r["detail"].as_str())
        .unwrap_or_default();
    assert!(detail.contains("402"), "{detail}");
    assert_eq!(
        result(&rows, "saju chart"),
        "PASS",
        "a chart alone is never metered"
    );
}

/// Collect `child`'s stderr lines in the background.
pub fn collect_lines(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let stderr = child.stderr.take().expect("stderr");
    let logs: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("logs").push(line);
        }
    });
    logs
}
