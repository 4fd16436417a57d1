//! Sessions against the real token minters: NextAuth v4 (`next-auth/jwt`) and Auth.js v5
//! (`@auth/core/jwt`) encode tokens in this test run (scripts/oracles/node/mint_session.cjs,
//! packages installed by scripts/setup.sh into $STARPILLAR_CACHE/node); starpillar must accept
//! the good ones and answer 401 to expired, tampered, wrong-secret, wrong-salt, revoked and
//! truncated-chunk ones.

use std::io::Write;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use starpillar::auth::{AuthConfig, AuthMode};

use crate::common::{body_json, error_code, send, tempdir::TempDir};
use crate::store::{Db, app_with, backends};

const SECRET: &str = "current-secret-7f3a";
const OLD_SECRET: &str = "old-secret-19bc";
const V5: &str = "authjs.session-token";
const V5_SECURE: &str = "__Secure-authjs.session-token";

fn node_modules() -> PathBuf {
    let cache = std::env::var_os("STARPILLAR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/starpillar")
        });
    let nm = cache.join("node/node_modules");
    assert!(
        nm.join("next-auth").exists() && nm.join("@auth/core").exists(),
        "node oracles missing at {}: run scripts/setup.sh",
        nm.display()
    );
    nm
}

/// Mint tokens with the real libraries: one node process for every case.
pub fn mint(cases: &[Value]) -> Vec<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/oracles/node/mint_session.cjs");
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .env("NODE_PATH", node_modules())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let input = serde_json::to_vec(&json!({ "cases": cases })).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write");
    let out = child.wait_with_output().expect("node output");
    assert!(
        out.status.success(),
        "minting failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("minter JSON");
    parsed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_str().expect("token").to_owned())
        .collect()
}

pub fn v4(secret: &str, max_age: i64, claims: Value) -> Value {
    json!({"lib": "v4", "secret": secret, "maxAge": max_age, "token": claims})
}

pub fn v5(secret: &str, salt: &str, max_age: i64, claims: Value) -> Value {
    json!({"lib": "v5", "secret": secret, "salt": salt, "maxAge": max_age, "token": claims})
}

/// App whose sessions accept SECRET and OLD_SECRET.
pub fn auth_app(
    dir: &std::path::Path,
    db: &Db,
    mode: AuthMode,
) -> (axum::Router, starpillar::state::SharedState) {
    app_with(dir, db, |cfg| {
        cfg.auth = AuthConfig::with_secrets(mode, &[SECRET, OLD_SECRET]);
    })
}

/// GET /api/auth/session with the given extra headers.
async fn whoami(app: &axum::Router, headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut req = Request::get("/api/auth/session");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let response = send(app, req.body(Body::empty()).expect("request")).await;
    let status = response.status();
    (status, body_json(response).await)
}

/// Extra request headers.
type Headers = Vec<(&'static str, String)>;

fn cookie(name: &str, token: &str) -> (&'static str, String) {
    ("cookie", format!("{name}={token}"))
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// Flip one character in the middle of the ciphertext segment.
fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let ct = &mut parts[3];
    let mid = ct.len() / 2;
    let c = ct.as_bytes()[mid];
    let replacement = if c == b'A' { "B" } else { "A" };
    ct.replace_range(mid..mid + 1, replacement);
    parts.join(".")
}

#[tokio::test]
async fn real_nextauth_and_authjs_tokens_are_accepted_and_bad_ones_refused() {
    let big = "x".repeat(5000); // forces a multi-chunk cookie, as NextAuth does above 4 KB
    let tokens = mint(&[
        v4(
            SECRET,
            3600,
            json!({"sub": "u4", "email": "v4@example.com", "name": "Four"}),
        ),
        v4(OLD_SECRET, 3600, json!({"sub": "u4old"})),
        v4("someone-else", 3600, json!({"sub": "u4"})),
        v4(SECRET, -60, json!({"sub": "u4"})),
        v4(SECRET, -5, json!({"sub": "u4skew"})),
        v4(SECRET, 3600, json!({"sub": "u4big", "picture": big})),
        v5(
            SECRET,
            V5,
            3600,
            json!({"sub": "u5", "email": "v5@example.com"}),
        ),
        v5(SECRET, V5_SECURE, 3600, json!({"sub": "u5s"})),
        v5("someone-else", V5, 3600, json!({"sub": "u5"})),
        v5(SECRET, V5, -60, json!({"sub": "u5"})),
        v4(
            SECRET,
            3600,
            json!({"sub": "u4nbf", "nbf": 4_000_000_000_i64}),
        ),
        v5(OLD_SECRET, V5, 3600, json!({"sub": "u5old"})),
    ]);
    let [
        good4,
        old4,
        wrong4,
        expired4,
        skew4,
        big4,
        good5,
        secure5,
        wrong5,
        expired5,
        nbf4,
        old5,
    ] = &tokens[..]
    else {
        panic!("12 tokens expected");
    };
    let dir = TempDir::new();
    let (app, _) = auth_app(dir.path(), &None, AuthMode::Optional);

    let ok = |body: &Value, user: &str| assert_eq!(body["user_id"], user, "{body}");
    let (s, b) = whoami(&app, &[cookie("next-auth.session-token", good4)]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    ok(&b, "u4");
    assert_eq!(b["email"], "v4@example.com");
    let (s, b) = whoami(&app, &[cookie("__Secure-next-auth.session-token", good4)]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = whoami(&app, &[bearer(good4)]).await;
    assert_eq!((s, b["user_id"].clone()), (StatusCode::OK, json!("u4")));
    let (s, b) = whoami(&app, &[cookie("next-auth.session-token", old4)]).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u4old")),
        "rotation"
    );
    let (s, b) = whoami(&app, &[cookie("next-auth.session-token", skew4)]).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u4skew")),
        "15 s skew"
    );
    let (s, b) = whoami(&app, &[cookie(V5, good5)]).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u5")),
        "{b}"
    );
    let (s, b) = whoami(&app, &[bearer(good5)]).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u5")),
        "{b}"
    );
    let (s, b) = whoami(&app, &[cookie(V5_SECURE, secure5)]).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u5s")),
        "{b}"
    );
    let (s, b) = whoami(&app, &[cookie(V5, old5)]).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u5old")),
        "{b}"
    );

    // Chunked cookie: three chunks, sent out of order across two headers.
    assert!(big4.len() > 4096, "the big token must need chunking");
    let n = big4.len();
    let (a, rest) = big4.split_at(n / 3);
    let (b_, c) = rest.split_at(n / 3);
    let chunked = [
        (
            "cookie",
            format!("next-auth.session-token.2={c}; theme=dark"),
        ),
        (
            "cookie",
            format!("next-auth.session-token.0={a}; next-auth.session-token.1={b_}"),
        ),
    ];
    let (s, b) = whoami(&app, &chunked).await;
    assert_eq!(
        (s, b["user_id"].clone()),
        (StatusCode::OK, json!("u4big")),
        "{b}"
    );

    let refused: Vec<(&str, Headers, &str)> = vec![
        (
            "wrong secret v4",
            vec![cookie("next-auth.session-token", wrong4)],
            "invalid_session",
        ),
        (
            "expired v4",
            vec![cookie("next-auth.session-token", expired4)],
            "session_expired",
        ),
        (
            "tampered v4",
            vec![cookie("next-auth.session-token", &tamper(good4))],
            "invalid_session",
        ),
        (
            "wrong secret v5",
            vec![cookie(V5, wrong5)],
            "invalid_session",
        ),
        ("expired v5", vec![bearer(expired5)], "session_expired"),
        (
            "tampered v5",
            vec![bearer(&tamper(good5))],
            "invalid_session",
        ),
        (
            "wrong salt v5",
            vec![cookie(V5, secure5)],
            "invalid_session",
        ),
        (
            "wrong salt v5 (secure)",
            vec![cookie(V5_SECURE, good5)],
            "invalid_session",
        ),
        ("nbf in the future", vec![bearer(nbf4)], "invalid_session"),
        (
            "truncated chunks",
            vec![(
                "cookie",
                format!("next-auth.session-token.0={a}; next-auth.session-token.1={b_}"),
            )],
            "invalid_session",
        ),
        ("garbage", vec![bearer("not.a.token")], "invalid_session"),
        ("nothing", vec![], "unauthenticated"),
    ];
    for (what, headers, code) in refused {
        let (s, b) = whoami(&app, &headers).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {b}");
        assert_eq!(error_code(&b), code, "{what}");
    }
    let metrics = crate::common::send(
        &app,
        Request::get("/metrics")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    let text = String::from_utf8(crate::common::body_bytes(metrics).await).expect("utf8");
    assert!(
        text.contains("starpillar_auth_token_failures_total{reason=\"decrypt\"}"),
        "{text}"
    );
}

async fn revoke(app: &axum::Router, token: &str, body: &str) -> (StatusCode, Value) {
    let response = send(
        app,
        Request::post("/api/auth/revoke")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request"),
    )
    .await;
    let status = response.status();
    (status, body_json(response).await)
}

#[tokio::test]
async fn revoked_tokens_get_401_on_each_backend() {
    let tokens = mint(&[
        v4(SECRET, 3600, json!({"sub": "alice"})),
        v5(SECRET, V5, 3600, json!({"sub": "alice"})),
        v4(SECRET, 3600, json!({"sub": "bob"})),
    ]);
    for db in backends().await {
        let dir = TempDir::new();
        let (app, _) = auth_app(dir.path(), &db, AuthMode::Optional);
        let (s, b) = revoke(&app, &tokens[0], r#"{"all":false}"#).await;
        assert_eq!(
            (s, b["revoked"].clone()),
            (StatusCode::OK, json!("token")),
            "{b}"
        );
        let (s, b) = whoami(&app, &[bearer(&tokens[0])]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&b), "session_revoked");
        // Alice's other session still works until she revokes them all.
        assert_eq!(
            whoami(&app, &[cookie(V5, &tokens[1])]).await.0,
            StatusCode::OK
        );
        let (s, b) = revoke(&app, &tokens[1], r#"{"all":true}"#).await;
        assert_eq!(
            (s, b["revoked"].clone()),
            (StatusCode::OK, json!("all")),
            "{b}"
        );
        assert_eq!(
            whoami(&app, &[cookie(V5, &tokens[1])]).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            whoami(&app, &[bearer(&tokens[2])]).await.0,
            StatusCode::OK,
            "bob unaffected"
        );
        // Bad bodies are 4xx in our shape, never 500.
        let (s, b) = revoke(&app, &tokens[2], r#"{"all":"yes"}"#).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let (s, _) = revoke(&app, &tokens[2], r#"{"everything":true}"#).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
}

#[tokio::test]
async fn auth_modes() {
    let tokens = mint(&[v4(SECRET, 3600, json!({"sub": "carol"}))]);
    let dir = TempDir::new();
    let (app, _) = auth_app(dir.path(), &None, AuthMode::Off);
    let (s, b) = whoami(&app, &[bearer(&tokens[0])]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&b), "sessions_disabled");
    // No secret configured: a token cannot be checked, so it is refused, not ignored.
    let (app, _) = app_with(dir.path(), &None, |_| {});
    let (s, b) = whoami(&app, &[bearer(&tokens[0])]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&b), "sessions_not_configured");
}
