//! `/v1/embeddings` and `/v1/models`: the OpenAI shapes and errors through the router with a
//! fake embedder, then the official `openai` Python client against the real binary and model.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use starpillar::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics, EmbedReply, embed_round};
use starpillar::engine::{Embed, Embeddings, EngineError};

use crate::common::{app, get_json, post_json, run_oracle};

/// A fake model: vector i encodes the text's length and the prefix kind; or always overloaded.
struct Fake {
    overloaded: bool,
}

impl Embed for Fake {
    fn model(&self) -> &str {
        "fake-e5"
    }
    fn dim(&self) -> usize {
        4
    }
    fn submit(&self, input: EmbedInput) -> Result<EmbedReply, EngineError> {
        if self.overloaded {
            return Err(EngineError::Overloaded);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let kind = if input.kind == EmbedKind::Passage {
            1.0
        } else {
            0.0
        };
        let vectors = input
            .texts
            .iter()
            .map(|t| vec![t.chars().count() as f32, kind, 0.5, -0.25])
            .collect();
        let _ = tx.send(Ok(Embeddings {
            vectors,
            prompt_tokens: input.texts.len() * 3,
        }));
        Ok(rx)
    }
}

fn with_fake(overloaded: bool) -> (axum::Router, crate::common::tempdir::TempDir) {
    let (router, state, dir) = app();
    assert!(state.embedder.set(Arc::new(Fake { overloaded })).is_ok());
    (router, dir)
}

fn openai_error(body: &serde_json::Value) -> (String, String, Option<String>) {
    let e = &body["error"];
    assert!(
        e["message"].is_string(),
        "OpenAI errors carry a message: {body}"
    );
    (
        e["type"].as_str().unwrap_or_default().to_owned(),
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["param"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn embeddings_answer_in_openai_shape_with_float_and_base64() {
    let (router, _dir) = with_fake(false);
    let (status, body) = post_json(
        &router,
        "/v1/embeddings",
        r#"{"model":"fake-e5","input":["abc","안녕하세요"],"input_type":"passage"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "fake-e5");
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][1]["object"], "embedding");
    assert_eq!(body["data"][1]["embedding"][0], 5.0);
    assert_eq!(
        body["data"][0]["embedding"][1], 1.0,
        "input_type=passage reaches the engine"
    );

    let (status, b64) = post_json(
        &router,
        "/v1/embeddings",
        r#"{"model":"fake-e5","input":"abc","encoding_format":"base64"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b64}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            b64["data"][0]["embedding"]
                .as_str()
                .expect("a base64 string"),
        )
        .expect("valid base64");
    let floats: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats, vec![3.0, 0.0, 0.5, -0.25]);

    let (status, models) = get_json(&router, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "fake-e5");
    assert_eq!(models["data"][0]["object"], "model");
}

#[tokio::test]
async fn embedding_errors_use_openai_error_shape() {
    let (router, _dir) = with_fake(false);
    let cases: [(&str, StatusCode, &str, Option<&str>); 7] = [
        (
            "{not json",
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
        ),
        (
            r#"{"model":"fake-e5","input":"a","colour":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            None,
        ),
        (
            r#"{"model":"fake-e5","input":[]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            Some("input"),
        ),
        (
            r#"{"model":"fake-e5","input":[1,2,3]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            Some("input"),
        ),
        (
            r#"{"model":"gpt-4","input":"a"}"#,
            StatusCode::NOT_FOUND,
            "not_found_error",
            Some("model"),
        ),
        (
            r#"{"model":"fake-e5","input":"a","dimensions":3}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            Some("dimensions"),
        ),
        (
            r#"{"model":"fake-e5","input":"a","encoding_format":"int8"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            None,
        ),
    ];
    for (body, want_status, want_type, want_param) in cases {
        let (status, answer) = post_json(&router, "/v1/embeddings", body).await;
        assert_eq!(status, want_status, "{body} → {answer}");
        let (kind, code, param) = openai_error(&answer);
        assert_eq!(kind, want_type, "{body} → {answer}");
        assert!(!code.is_empty(), "{answer}");
        if let Some(p) = want_param {
            assert_eq!(param.as_deref(), Some(p), "{body} → {answer}");
        }
    }
}

#[tokio::test]
async fn overload_and_loading_are_429_and_503() {
    let (router, _dir) = with_fake(true);
    let (status, body) = post_json(
        &router,
        "/v1/embeddings",
        r#"{"model":"fake-e5","input":"a"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(openai_error(&body).1, "overloaded");

    let (router, _state, _dir) = app();
    let (status, body) = post_json(
        &router,
        "/v1/embeddings",
        r#"{"model":"fake-e5","input":"a"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(openai_error(&body).1, "model_loading");
    let (status, models) = get_json(&router, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["data"].as_array().map(Vec::len), Some(0));
}

fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    raw.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_official_openai_client_works_against_the_binary() {
    let model_dir = crate::engine::e5_dir();
    let cache = model_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("the model cache sits in <cache>/models/<name>")
        .to_path_buf();
    let dir = crate::common::tempdir::TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_starpillar"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--threads", "2"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("STARPILLAR_CACHE", &cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start starpillar serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut addr = None;
    while addr.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1))
            && let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(listen) = log.get("listen").and_then(|l| l.as_str())
        {
            addr = Some(listen.to_owned());
        }
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("serve never logged its address");
    };
    while http_get_status(&addr, "/readyz") != Some(200) {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("/readyz never became 200 (the embedder did not load)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let texts = vec![
        "오늘의 운세를 알려주세요.".to_owned(),
        "What does my birth chart say about work?".to_owned(),
        "甲子年 乙丑月 🌙".to_owned(),
    ];
    let out = run_oracle(
        "openai_client.py",
        &serde_json::json!({
            "base_url": format!("http://{addr}/v1"),
            "model": "multilingual-e5-small",
            "texts": texts,
        }),
    );
    let metrics_ok = http_get_status(&addr, "/metrics") == Some(200);
    let _ = child.kill();
    let _ = child.wait();
    assert!(metrics_ok);
    assert_eq!(out["models"], serde_json::json!(["multilingual-e5-small"]));
    assert_eq!(out["model"], "multilingual-e5-small");
    assert_eq!(out["wrong_model"]["status"], 404, "{}", out["wrong_model"]);
    assert_eq!(out["wrong_model"]["code"], "model_not_found");
    assert_eq!(out["empty"]["status"], 422, "{}", out["empty"]);
    // The served vectors equal the engine's own, in both encodings.
    let input = EmbedInput {
        texts: texts.clone(),
        kind: EmbedKind::Query,
    };
    let direct = embed_round(
        crate::engine::e5_model(),
        &[&input],
        8192,
        &EmbedMetrics::new(),
    )
    .expect("direct embedding");
    assert_eq!(out["usage"]["prompt_tokens"], direct[0].prompt_tokens);
    for enc in ["base64", "float"] {
        for (i, want) in direct[0].vectors.iter().enumerate() {
            let got: Vec<f32> = serde_json::from_value(out[enc][i].clone()).expect("floats");
            assert_eq!(got.len(), 384);
            let max_diff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(max_diff < 1e-5, "{enc} vector {i} differs by {max_diff}");
        }
    }
    let single: Vec<f32> = serde_json::from_value(out["single"].clone()).expect("floats");
    let first: Vec<f32> = serde_json::from_value(out["float"][0].clone()).expect("floats");
    let diff = single
        .iter()
        .zip(&first)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "batching changed a vector by {diff}");
}
