//! What `cargo fuzz` (fuzz/fuzz_targets/*) found, replayed through the normal code paths:
//! every file of fuzz/regressions/<target>/ (the inputs that crashed a target, kept after the
//! fix) and of fuzz/corpus/<target>/ (the seeds) goes through the router with `oneshot` (the
//! request bodies and headers) or the corpus API (documents), and must be answered without
//! a panic or a 500. Each file is in its target's own encoding (first byte = mode; see the
//! target's header comment).

use std::path::PathBuf;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use starpillar::auth::{AuthConfig, AuthMode, jwe};
use starpillar::retrieval::corpus::{self, ApproxTokens, ChunkConfig, Document, TokenCounter};

use crate::common::{body_bytes, send, tempdir::TempDir};
use crate::store::app_with;

/// The secrets the fuzz targets use.
const SESSION_SECRET: &str = "fuzz-secret";
const WHSEC: &str = "whsec_fuzz";

/// The seeds and regression inputs of one target, sorted by path.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["regressions", "corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("readable input");
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no inputs for {target}");
    out
}

/// Send a request; the answer must not be a 500 and an error must be in our JSON shape.
async fn answer(app: &axum::Router, name: &str, request: Request<Body>) -> (StatusCode, Value) {
    let response = send(app, request).await;
    let status = response.status();
    let bytes = body_bytes(response).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(
        status.as_u16() < 500 || status == StatusCode::SERVICE_UNAVAILABLE,
        "{name}: {status} {body}"
    );
    if status.is_client_error() {
        assert!(body["error"]["code"].is_string(), "{name}: {status} {body}");
    }
    (status, body)
}

#[tokio::test]
async fn chart_input_regressions_get_4xx_or_a_chart() {
    let dir = TempDir::new();
    let (app, _state) = app_with(dir.path(), &None, |_| {});
    for (name, bytes) in inputs("chart_input") {
        for path in ["/api/saju", "/api/astrology"] {
            let request = Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(bytes.clone()))
                .expect("request");
            answer(&app, &name, request).await;
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A v4 (`A256GCM`) session token carrying `claims` as they are.
fn v4_token(claims: &[u8]) -> String {
    let header = b64(br#"{"alg":"dir","enc":"A256GCM"}"#);
    let iv = [7u8; 12];
    let cipher = Aes256Gcm::new_from_slice(&jwe::v4_key(SESSION_SECRET.as_bytes())).expect("key");
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: claims,
                aad: header.as_bytes(),
            },
        )
        .expect("encrypt");
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    format!("{header}..{}.{}.{}", b64(&iv), b64(ct), b64(tag))
}

/// A v5 (`A256CBC-HS512`) session token for cookie `salt` carrying `claims` as they are.
fn v5_token(claims: &[u8], salt: &str) -> String {
    let header = b64(br#"{"alg":"dir","enc":"A256CBC-HS512"}"#);
    let iv = [9u8; 16];
    let key = jwe::v5_key(SESSION_SECRET.as_bytes(), salt);
    let (mac_key, enc_key) = key.split_at(32);
    let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(enc_key, &iv)
        .expect("key")
        .encrypt_padded_vec_mut::<Pkcs7>(claims);
    let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(mac_key).expect("key");
    mac.update(header.as_bytes());
    mac.update(&iv);
    mac.update(&ct);
    mac.update(&((header.len() as u64) * 8).to_be_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{header}..{}.{}.{}", b64(&iv), b64(&ct), b64(&tag[..32]))
}

#[tokio::test]
async fn session_token_regressions_get_401_or_a_session() {
    let dir = TempDir::new();
    let (app, _state) = app_with(dir.path(), &None, |cfg| {
        cfg.auth = AuthConfig::with_secrets(AuthMode::Optional, &["other-secret", SESSION_SECRET]);
    });
    let v5 = "authjs.session-token";
    for (name, bytes) in inputs("session_token") {
        let Some((&mode, rest)) = bytes.split_first() else {
            continue;
        };
        let mut request = Request::get("/api/auth/session");
        match mode % 4 {
            0 => {
                let token = String::from_utf8_lossy(rest);
                // Header values cannot carry control characters: such a token never arrives.
                if token
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
                {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
            }
            1 => request = request.header("authorization", format!("Bearer {}", v4_token(rest))),
            2 => request = request.header("cookie", format!("{v5}={}", v5_token(rest, v5))),
            _ => {
                for (i, line) in rest.split(|&b| b == b'\n').enumerate() {
                    let name = if i == 0 { "authorization" } else { "cookie" };
                    if axum::http::HeaderValue::from_bytes(line).is_ok() {
                        request = request.header(name, line);
                    }
                }
            }
        }
        let (status, body) = answer(&app, &name, request.body(Body::empty()).expect("req")).await;
        assert!(
            matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED),
            "{name}: {status} {body}"
        );
    }
}

/// fuzz/regressions/session_token/exp-beyond-i64: an `exp` of 1.9e23 clamps to i64::MAX, and
/// adding the clock skew to it overflowed (a panic wherever overflow checks are on).
#[tokio::test]
async fn a_session_expiring_beyond_i64_is_valid_not_a_panic() {
    let dir = TempDir::new();
    let (app, _state) = app_with(dir.path(), &None, |cfg| {
        cfg.auth = AuthConfig::with_secrets(AuthMode::Optional, &[SESSION_SECRET]);
    });
    let token = v4_token(br#"{"sub":"far-future","exp":192233720368547758076900}"#);
    let request = Request::get("/api/auth/session")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let (status, body) = answer(&app, "exp-beyond-i64", request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "far-future");
    assert_eq!(body["expires_at"], i64::MAX);
}

fn stripe_sign(t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(WHSEC.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn stripe_signature_regressions_get_4xx_or_an_ack() {
    let dir = TempDir::new();
    let billing =
        crate::billing::billing_config("http://127.0.0.1:9", "whsec_old,whsec_fuzz", true);
    let (app, _state) = app_with(dir.path(), &None, |cfg| cfg.billing = billing);
    let now = starpillar::store::now();
    for (name, bytes) in inputs("stripe_signature") {
        let Some((&mode, rest)) = bytes.split_first() else {
            continue;
        };
        let (header, body) = match mode % 3 {
            0 => match rest.iter().position(|&b| b == 0) {
                Some(i) => (rest[..i].to_vec(), rest[i + 1..].to_vec()),
                None => (rest.to_vec(), Vec::new()),
            },
            1 => {
                let Some((offset, body)) = rest.split_first_chunk::<2>() else {
                    continue;
                };
                let t = now - i64::from(i16::from_le_bytes(*offset));
                (
                    format!("t={t},v1={}", stripe_sign(t, body)).into_bytes(),
                    body.to_vec(),
                )
            }
            _ => {
                let (before, after) = rest.split_at(rest.len() / 2);
                let (before, after) = (
                    String::from_utf8_lossy(before),
                    String::from_utf8_lossy(after),
                );
                let sig = stripe_sign(now, b"{}");
                (
                    format!("{before},t={now},v1={sig},{after}").into_bytes(),
                    b"{}".to_vec(),
                )
            }
        };
        let mut request =
            Request::post("/api/webhook/stripe").header("content-type", "application/json");
        if axum::http::HeaderValue::from_bytes(&header).is_ok() {
            request = request.header("stripe-signature", header);
        }
        answer(
            &app,
            &name,
            request.body(Body::from(body)).expect("request"),
        )
        .await;
    }
}

/// One token per character: every long word is over the budget.
struct PerChar;

impl TokenCounter for PerChar {
    fn count(&self, text: &str) -> usize {
        text.chars().count()
    }
}

#[test]
fn corpus_chunker_regressions_parse_or_name_the_problem() {
    for (name, bytes) in inputs("corpus_chunker") {
        let Some((head, rest)) = bytes.split_first_chunk::<3>() else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            continue;
        };
        let config = ChunkConfig {
            max_tokens: usize::from(head[0]),
            overlap_tokens: usize::from(head[1]),
        };
        let counter: &dyn TokenCounter = if head[2].is_multiple_of(2) {
            &ApproxTokens
        } else {
            &PerChar
        };
        let id = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("id:"))
            .map(|v| v.trim().trim_matches('"').trim_matches('\''))
            .unwrap_or("doc");
        let doc = match corpus::parse_document(&format!("saju/{id}.md"), text) {
            Ok(doc) => doc,
            Err(err) => {
                assert!(err.to_string().starts_with("saju/"), "{name}: {err}");
                Document {
                    id: "doc".to_owned(),
                    title: text.lines().next().unwrap_or_default().to_owned(),
                    lang: "en".to_owned(),
                    topic: "saju".to_owned(),
                    tags: Vec::new(),
                    source: "doc.md".to_owned(),
                    body: text.to_owned(),
                }
            }
        };
        let title = format!("# {}", doc.title);
        for chunk in corpus::chunk_texts(&doc, config, counter) {
            assert!(chunk.starts_with(&title), "{name}: {chunk:?}");
        }
    }
}
