//! `/v1/embeddings`, `/v1/chat/completions` and `/v1/models`: the OpenAI shapes and errors
//! through the router with a fake embedder and generator, then the official `openai` Python
//! client against the real binary and models (embeddings, chat, chat streaming, usage).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use starpillar::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics, EmbedReply, embed_round};
use starpillar::engine::generator::FinishReason;
use starpillar::engine::{
    Embed, Embeddings, EngineError, GenEvent, GenRequest, GenStream, GenSummary, Generate,
};

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
async fn overload_and_loading_are_503_with_retry_after() {
    let (router, _dir) = with_fake(true);
    let request = axum::http::Request::post("/v1/embeddings")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"model":"fake-e5","input":"a"}"#))
        .expect("request");
    let response = crate::common::send(&router, request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = response.headers().get("retry-after").cloned();
    assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
    let body = crate::common::body_json(response).await;
    assert_eq!(openai_error(&body).1, "overloaded");
    assert_eq!(body["error"]["type"], "service_unavailable");

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
            panic!("/readyz never became 200 (the embedder or the generator did not load)");
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
            "chat_model": "smollm2-135m-instruct",
        }),
    );
    let metrics_ok = http_get_status(&addr, "/metrics") == Some(200);
    let _ = child.kill();
    let _ = child.wait();
    assert!(metrics_ok);
    assert_eq!(
        out["models"],
        serde_json::json!(["multilingual-e5-small", "smollm2-135m-instruct"])
    );
    check_chat(&out["chat"]);
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

// ---- /v1/chat/completions ------------------------------------------------------------------

/// A fake generator: answers "안녕 " + the last message + " #" + max_tokens, in two deltas.
struct FakeGen {
    overloaded: bool,
}

impl Generate for FakeGen {
    fn model(&self) -> &str {
        "fake-gen"
    }
    fn file_hash(&self) -> &str {
        "0123456789abcdef"
    }
    fn languages(&self) -> &[String] {
        &[]
    }
    fn submit(&self, request: GenRequest) -> Result<GenStream, EngineError> {
        if self.overloaded {
            return Err(EngineError::Overloaded);
        }
        let last = request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let (tx, events) = tokio::sync::mpsc::channel(8);
        let _ = tx.try_send(GenEvent::Delta("안녕 ".into()));
        let _ = tx.try_send(GenEvent::Delta(format!(
            "{last} #{}",
            request.params.max_tokens
        )));
        let _ = tx.try_send(GenEvent::Done(GenSummary {
            prompt_tokens: request.messages.len() * 10,
            completion_tokens: 2,
            finish: if request.params.max_tokens <= 2 {
                FinishReason::Length
            } else {
                FinishReason::Stop
            },
            time_to_first_token: Duration::from_millis(1),
            total: Duration::from_millis(2),
        }));
        Ok(GenStream { events })
    }
}

fn with_fake_gen(overloaded: bool) -> (axum::Router, crate::common::tempdir::TempDir) {
    let (router, state, dir) = app();
    assert!(
        state
            .generator
            .set(Arc::new(FakeGen { overloaded }))
            .is_ok()
    );
    (router, dir)
}

/// POST and split a `text/event-stream` answer into its `data:` payloads.
async fn post_sse(router: &axum::Router, body: &str) -> (StatusCode, String, Vec<String>) {
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .expect("request");
    let response = crate::common::send(router, request).await;
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let raw = String::from_utf8(crate::common::body_bytes(response).await).expect("UTF-8");
    let data = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_owned)
        .collect();
    (status, kind, data)
}

#[tokio::test]
async fn chat_completions_answer_in_openai_shape() {
    let (router, _dir) = with_fake_gen(false);
    let (status, body) = post_json(
        &router,
        "/v1/chat/completions",
        r#"{"model":"fake-gen","messages":[{"role":"system","content":"s"},
            {"role":"user","content":"hello"}],"max_tokens":9,"seed":1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|s| s.starts_with("chatcmpl-"))
    );
    assert_eq!(body["model"], "fake-gen");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "안녕 hello #9");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 20);
    assert_eq!(body["usage"]["completion_tokens"], 2);
    assert_eq!(body["usage"]["total_tokens"], 22);

    let (_, body) = post_json(
        &router,
        "/v1/chat/completions",
        r#"{"model":"fake-gen","messages":[{"role":"user","content":"x"}],"max_completion_tokens":2}"#,
    )
    .await;
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");

    let (status, models) = get_json(&router, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["data"][0]["id"], "fake-gen", "{models}");
}

#[tokio::test]
async fn chat_streams_chunks_then_usage_then_done() {
    let (router, _dir) = with_fake_gen(false);
    let (status, kind, data) = post_sse(
        &router,
        r#"{"model":"fake-gen","messages":[{"role":"user","content":"hello"}],"max_tokens":9,
            "stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON chunk"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let id = &chunks[0]["id"];
    assert!(
        chunks.iter().all(|c| &c["id"] == id),
        "one id per completion"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text, "안녕 hello #9",
        "streamed text equals the JSON answer's"
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
    assert_eq!(usage["usage"]["total_tokens"], 12);

    // Without include_usage: no usage chunk and no `usage` member.
    let (_, _, data) = post_sse(
        &router,
        r#"{"model":"fake-gen","messages":[{"role":"user","content":"hello"}],"stream":true}"#,
    )
    .await;
    let last: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).expect("JSON");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none(), "{last}");
}

#[tokio::test]
async fn chat_errors_use_openai_shape() {
    let (router, _dir) = with_fake_gen(false);
    let ok = r#"{"role":"user","content":"x"}"#;
    let cases: Vec<(String, StatusCode, Option<&str>)> = vec![
        ("{not json".into(), StatusCode::BAD_REQUEST, None),
        (
            format!(r#"{{"model":"gpt-4o","messages":[{ok}]}}"#),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            format!(r#"{{"model":"fake-gen","messages":[{ok}],"n":3}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("n"),
        ),
        (
            format!(r#"{{"model":"fake-gen","messages":[{ok}],"tools":[]}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            format!(r#"{{"model":"fake-gen","messages":[{ok}],"temperature":-1}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("temperature"),
        ),
        (
            format!(r#"{{"model":"fake-gen","messages":[{ok}],"stop":7}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            r#"{"model":"fake-gen","messages":[]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("messages"),
        ),
    ];
    for (body, want_status, want_param) in cases {
        let (status, answer) = post_json(&router, "/v1/chat/completions", &body).await;
        assert_eq!(status, want_status, "{body} → {answer}");
        let (_, code, param) = openai_error(&answer);
        assert!(!code.is_empty(), "{answer}");
        if let Some(p) = want_param {
            assert_eq!(param.as_deref(), Some(p), "{body} → {answer}");
        }
    }

    let (router, _dir) = with_fake_gen(true);
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(format!(
            r#"{{"model":"fake-gen","messages":[{ok}]}}"#
        )))
        .expect("request");
    let response = crate::common::send(&router, request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body = crate::common::body_json(response).await;
    assert_eq!(openai_error(&body).1, "overloaded");

    // No generator installed yet: 503 while it loads, a distinct code when none is configured.
    let (router, state, _dir) = app();
    let body = format!(r#"{{"model":"fake-gen","messages":[{ok}]}}"#);
    let (status, answer) = post_json(&router, "/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(openai_error(&answer).1, "generator_disabled");
    state.set_component("generator", false, "loading");
    let (status, answer) = post_json(&router, "/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(openai_error(&answer).1, "model_loading");
}

/// What the `openai` client saw from `/v1/chat/completions` on the real SmolLM2.
fn check_chat(chat: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(chat).unwrap_or_default());
    let full = &chat["full"];
    let streamed = &chat["streamed"];
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["role"], "assistant");
    assert_eq!(full["n_choices"], 1);
    assert!(
        full["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{full}"
    );
    // Same request, same seed: the stream carries exactly the non-streamed text and usage.
    assert_eq!(streamed["text"], full["text"]);
    assert_eq!(streamed["finish_reason"], full["finish_reason"]);
    assert_eq!(
        streamed["usage"], full["usage"],
        "include_usage sends the same counts"
    );
    assert_eq!(streamed["roles"], serde_json::json!(["assistant"]));
    assert_eq!(streamed["ids"], 1);
    assert!(
        streamed["pieces"].as_array().map_or(0, Vec::len) > 1,
        "the answer arrives in several deltas: {streamed}"
    );
    let usage = &full["usage"];
    assert!(
        usage["prompt_tokens"].as_u64().is_some_and(|n| n > 5),
        "{usage}"
    );
    assert!(
        usage["completion_tokens"]
            .as_u64()
            .is_some_and(|n| (1..=24).contains(&n))
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap_or(0)
                + usage["completion_tokens"].as_u64().unwrap_or(0)
        )
    );
    // The same greedy request with a stop word taken from its own answer: the answer up to
    // the word's first occurrence, the word itself never sent.
    let greedy = chat["greedy"]["text"].as_str().unwrap_or_default();
    let stopped = &chat["stopped"];
    let word = stopped["stop_word"].as_str().unwrap_or_default();
    let cut = greedy
        .find(word)
        .expect("the stop word comes from the answer");
    assert!(!word.is_empty() && cut > 0, "{greedy:?} / {word:?}");
    assert_eq!(stopped["text"].as_str(), Some(&greedy[..cut]), "{stopped}");
    assert_eq!(stopped["finish_reason"], "stop");
    let korean = &chat["korean"];
    assert!(
        korean["pieces"].as_array().is_some_and(|p| p
            .iter()
            .all(|d| !d.as_str().unwrap_or("\u{FFFD}").contains('\u{FFFD}'))),
        "{korean}"
    );
    assert_eq!(chat["n2"]["status"], 422, "{}", chat["n2"]);
    assert_eq!(chat["n2"]["param"], "n");
    assert_eq!(chat["wrong_model"]["status"], 404);
    assert_eq!(chat["wrong_model"]["code"], "model_not_found");
}
