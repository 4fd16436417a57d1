//! Grounded readings through the router (oneshot): `/api/saju`, `/api/astrology` and
//! `/api/ask` with `reading: true`, over the real corpus (keyword index built in memory; dense
//! search adds nothing to these assertions). Day master and Sun sign are checked against the
//! engines' own charts; citations against the store. SSE order, cancellation on disconnect
//! and the error event use a scripted generator (the pipeline's behaviour, not a model's, is
//! under test there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use starpillar::engine::generate::{GenEvent, GenRequest, GenStream, GenSummary, Generate};
use starpillar::engine::generator::FinishReason;
use starpillar::retrieval::retriever::Retriever;
use starpillar::state::SharedState;

use crate::common::{self, error_code, post_json, send, tempdir::TempDir};

fn corpus_retriever() -> Arc<Retriever> {
    static R: OnceLock<Arc<Retriever>> = OnceLock::new();
    R.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let r = rt
                .block_on(starpillar::rag::eval::sparse_retriever(&dir))
                .expect("the corpus indexes");
            Arc::new(r)
        })
        .join()
        .expect("index thread")
    })
    .clone()
}

fn app() -> (Router, SharedState, TempDir) {
    let (app, state, dir) = common::app();
    state.set_retriever(corpus_retriever());
    (app, state, dir)
}

async fn known_ids() -> std::collections::HashSet<String> {
    corpus_retriever()
        .store
        .list_ids(None)
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect()
}

fn markers(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else { break };
        out.extend(
            after[..j]
                .split(',')
                .filter_map(|n| n.trim().parse::<u64>().ok()),
        );
        rest = &after[j..];
    }
    out
}

async fn assert_citations_valid(body: &Value) {
    let ids = known_ids().await;
    let cites = body["reading"]["citations"].as_array().expect("citations");
    assert!(!cites.is_empty(), "no citations: {body}");
    let ns: Vec<u64> = cites.iter().map(|c| c["n"].as_u64().expect("n")).collect();
    for c in cites {
        assert!(
            ids.contains(c["id"].as_str().expect("id")),
            "unknown id {c}"
        );
        assert!(c["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(c["source"].as_str().is_some_and(|s| s.contains(".md#")));
    }
    let text = body["reading"]["text"].as_str().expect("text");
    for n in markers(text) {
        assert!(ns.contains(&n), "[{n}] names no citation in {ns:?}");
    }
}

fn element_ko(e: &str) -> &'static str {
    match e {
        "wood" => "목",
        "fire" => "화",
        "earth" => "토",
        "metal" => "금",
        _ => "수",
    }
}

#[tokio::test]
async fn saju_reading_names_the_engines_day_master_and_cites_stored_passages() {
    let (app, _state, _dir) = app();
    for (date, locale) in [
        ("1990-05-15", "en"),
        ("1984-02-04", "ko"),
        ("2001-11-30", "en"),
    ] {
        // The engine's own chart decides what the reading must say.
        let input = starpillar::domain::saju::BirthInput {
            date: date.into(),
            time: Some("14:30".into()),
            calendar: starpillar::domain::saju::Calendar::Solar,
            leap_month: false,
            timezone: "Asia/Seoul".into(),
            longitude: 126.978,
        };
        let chart = starpillar::domain::saju::compute(
            &input,
            starpillar::domain::saju::Sex::Female,
            Default::default(),
        )
        .expect("chart");
        let dm = &chart.day_master;
        let req = json!({"birth": {"date": date, "time": "14:30"}, "sex": "female",
            "locale": locale, "question": "How is my career this year?"});
        let request = Request::post("/api/saju")
            .header("content-type", "application/json")
            .body(Body::from(req.to_string()))
            .expect("request");
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(timing.contains("retrieval;dur="), "{timing}");
        let body = common::body_json(response).await;
        let text = body["reading"]["text"].as_str().expect("text");
        assert_eq!(body["chart"]["day_master"]["hanja"], dm.hanja);
        if locale == "en" {
            let element = serde_json::to_value(dm.element).expect("element");
            let yy = serde_json::to_value(dm.yin_yang).expect("yin_yang");
            let name = format!(
                "{} {}",
                yy.as_str().unwrap_or(""),
                element.as_str().unwrap_or("")
            );
            assert!(
                text.contains(dm.hanja) && text.contains(&name),
                "{name}: {text}"
            );
        } else {
            let element = serde_json::to_value(dm.element).expect("element");
            let name = format!(
                "{}{}",
                dm.hangul,
                element_ko(element.as_str().unwrap_or(""))
            );
            assert!(text.contains(&name), "{name}: {text}");
        }
        assert_eq!(body["meta"]["mode"], "compose");
        assert_eq!(body["meta"]["cached"], false);
        assert_eq!(
            body["meta"]["corpus_version"],
            corpus_retriever().corpus_version.as_str()
        );
        assert!(
            body["reading"]["facts"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("day_master")))
        );
        // Every sentence is traced to a template, a fact or a passage.
        for item in body["reading"]["trace"].as_array().expect("trace") {
            assert!(
                item.get("fact").is_some()
                    || item.get("passage").is_some()
                    || item.get("template").is_some(),
                "untraced {item}"
            );
        }
        assert_citations_valid(&body).await;
    }
}

const SIGN_KO: [(&str, &str); 12] = [
    ("aries", "양자리"),
    ("taurus", "황소자리"),
    ("gemini", "쌍둥이자리"),
    ("cancer", "게자리"),
    ("leo", "사자자리"),
    ("virgo", "처녀자리"),
    ("libra", "천칭자리"),
    ("scorpio", "전갈자리"),
    ("sagittarius", "사수자리"),
    ("capricorn", "염소자리"),
    ("aquarius", "물병자리"),
    ("pisces", "물고기자리"),
];

#[tokio::test]
async fn astrology_reading_names_the_sun_sign() {
    let (app, _state, _dir) = app();
    for (dt, locale) in [
        ("1990-05-15T12:30", "en"),
        ("1975-10-28T06:10", "ko"),
        ("2003-01-09T22:00", "en"),
    ] {
        let birth = json!({"datetime": dt, "timezone": "Asia/Seoul", "latitude": 37.5665, "longitude": 126.978});
        let (status, body) = post_json(
            &app,
            "/api/astrology",
            &json!({"birth": birth, "locale": locale}).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let sun = body["chart"]["planets"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "sun"))
            .and_then(|p| p["sign"].as_str())
            .expect("sun sign")
            .to_owned();
        let text = body["reading"]["text"].as_str().expect("text");
        let (word, sign) = if locale == "en" {
            let mut c = sun.chars();
            let cap: String = c
                .next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default();
            ("Sun", cap)
        } else {
            let ko = SIGN_KO
                .iter()
                .find(|(k, _)| *k == sun)
                .map(|(_, v)| *v)
                .expect("sign");
            ("태양", ko.to_owned())
        };
        let stated = text
            .split(['.', '\n'])
            .any(|s| s.contains(word) && s.contains(&sign));
        assert!(stated, "{word} {sign}: {text}");
        assert_citations_valid(&body).await;
    }
}

#[tokio::test]
async fn identical_requests_hit_the_cache_and_changes_miss() {
    let (app, _state, _dir) = app();
    let req = json!({"birth": {"date": "1992-08-08", "time": "08:08"}, "sex": "male",
        "locale": "ko", "question": "재물운이 궁금합니다."});
    let (s1, first) = post_json(&app, "/api/saju", &req.to_string()).await;
    let (s2, second) = post_json(&app, "/api/saju", &req.to_string()).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first["meta"]["cached"], false);
    assert_eq!(second["meta"]["cached"], true);
    assert_eq!(first["reading"]["text"], second["reading"]["text"]);
    let mut other = req.clone();
    other["question"] = json!("연애운은요?");
    let (_, third) = post_json(&app, "/api/saju", &other.to_string()).await;
    assert_eq!(third["meta"]["cached"], false);
}

/// The anonymous quota (3 a day in the default configuration) pays for fresh readings only:
/// cache hits, JSON or SSE, are free, yet a caller with nothing left is refused (402) before
/// the cache is looked at, even for a reading it would find there.
#[tokio::test]
async fn a_cache_hit_is_free_but_an_exhausted_quota_is_402_even_for_a_cached_reading() {
    let (app, _state, _dir) = app();
    let req = |q: &str| {
        json!({"birth": {"date": "1979-11-21", "time": "21:10"}, "sex": "female",
            "locale": "en", "question": q})
        .to_string()
    };
    let a = req("How is my career looking this year?");
    let (status, first) = post_json(&app, "/api/saju", &a).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["meta"]["cached"], false);
    // Four hits: were they charged, the third would already be refused.
    for i in 0..3 {
        let (status, body) = post_json(&app, "/api/saju", &a).await;
        assert_eq!(status, StatusCode::OK, "hit {i}: {body}");
        assert_eq!(body["meta"]["cached"], true);
    }
    let response = send(&app, sse_request("/api/saju", &body_of(&a))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let raw = String::from_utf8(common::body_bytes(response).await).expect("utf-8");
    let done = parse_sse(&raw).into_iter().find(|e| e.0 == "done");
    assert_eq!(
        done.map(|e| e.1["meta"]["cached"].clone()),
        Some(json!(true))
    );
    // Two fresh readings use up the quota (1 + 2 = 3)…
    for q in [
        "What about money and savings?",
        "How can I take care of my health?",
    ] {
        let (status, body) = post_json(&app, "/api/saju", &req(q)).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        assert_eq!(body["meta"]["cached"], false);
    }
    // …after which even the cached reading is refused, while a chart alone is still free.
    let (status, body) = post_json(&app, "/api/saju", &a).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(error_code(&body), "quota_exhausted");
    let response = send(&app, sse_request("/api/saju", &body_of(&a))).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let chart_only = json!({"birth": {"date": "1979-11-21", "time": "21:10"}, "sex": "female",
        "reading": false});
    let (status, body) = post_json(&app, "/api/saju", &chart_only.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn body_of(json: &str) -> Value {
    serde_json::from_str(json).expect("json")
}

/// The SSE events of a body: (event name, data JSON); comments as ("", text).
fn parse_sse(raw: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in raw.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if let Some(c) = line.strip_prefix(':') {
                out.push((String::new(), json!(c.trim())));
            }
        }
        if !name.is_empty() {
            out.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
        }
    }
    out
}

fn sse_request(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test]
async fn sse_events_arrive_in_order() {
    let (app, _state, _dir) = app();
    let req =
        json!({"birth": {"date": "1988-03-03", "time": "03:33"}, "sex": "female", "locale": "en"});
    let response = send(&app, sse_request("/api/saju", &req)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let raw = String::from_utf8(common::body_bytes(response).await).expect("utf-8");
    let events = parse_sse(&raw);
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some(""),
        "a comment first: {raw}"
    );
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.0.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(&names[..2], ["chart", "citations"], "{names:?}");
    assert_eq!(names.last(), Some(&"done"));
    assert!(names[2..names.len() - 1].iter().all(|n| *n == "delta") && names.len() > 4);
    let text: String = events
        .iter()
        .filter(|e| e.0 == "delta")
        .map(|e| e.1["text"].as_str().unwrap_or(""))
        .collect();
    assert!(text.contains("yang") || text.contains("yin"), "{text}");
    let done = &events.last().expect("done").1;
    assert_eq!(done["meta"]["mode"], "compose");
    assert!(done["meta"]["timings_ms"]["retrieval"].as_f64().is_some());
    // The same request again is replayed from the cache, in the same order.
    let again = send(&app, sse_request("/api/saju", &req)).await;
    let events = parse_sse(&String::from_utf8(common::body_bytes(again).await).expect("utf-8"));
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.0.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(&names[..2], ["chart", "citations"]);
    assert_eq!(
        events.last().map(|e| e.1["meta"]["cached"].clone()),
        Some(json!(true))
    );
    let replayed: String = events
        .iter()
        .filter(|e| e.0 == "delta")
        .map(|e| e.1["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(replayed, text);
}

/// A scripted generator: `deltas` pieces every `every`, then done — or an error after
/// `fail_after` pieces. Records whether its consumer went away.
struct Scripted {
    deltas: Vec<String>,
    every: Duration,
    fail_after: Option<usize>,
    abandoned: Arc<AtomicBool>,
    languages: Vec<String>,
}

impl Scripted {
    fn new(deltas: Vec<String>, every: Duration, fail_after: Option<usize>) -> Self {
        Self {
            deltas,
            every,
            fail_after,
            abandoned: Arc::new(AtomicBool::new(false)),
            languages: vec!["en".into()],
        }
    }
}

impl Generate for Scripted {
    fn model(&self) -> &str {
        "scripted"
    }
    fn file_hash(&self) -> &str {
        "0000"
    }
    fn languages(&self) -> &[String] {
        &self.languages
    }
    fn submit(&self, _request: GenRequest) -> Result<GenStream, starpillar::engine::EngineError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let deltas = self.deltas.clone();
        let (every, fail_after, abandoned) = (self.every, self.fail_after, self.abandoned.clone());
        tokio::spawn(async move {
            for (i, d) in deltas.iter().enumerate() {
                if fail_after == Some(i) {
                    let _ = tx
                        .send(GenEvent::Error("the scripted model failed".into()))
                        .await;
                    return;
                }
                tokio::time::sleep(every).await;
                if tx.send(GenEvent::Delta(d.clone())).await.is_err() {
                    abandoned.store(true, Ordering::SeqCst);
                    return;
                }
            }
            let summary = GenSummary {
                prompt_tokens: 10,
                completion_tokens: deltas.len(),
                finish: FinishReason::Stop,
                time_to_first_token: every,
                total: every,
            };
            let _ = tx.send(GenEvent::Done(summary)).await;
        });
        Ok(GenStream { events: rx })
    }
}

fn install(state: &SharedState, g: Scripted) -> Arc<AtomicBool> {
    let flag = g.abandoned.clone();
    assert!(state.generator.set(Arc::new(g)).is_ok());
    flag
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_generation() {
    let (app, state, _dir) = app();
    let words: Vec<String> = (0..2000).map(|i| format!("word{i} ")).collect();
    let abandoned = install(&state, Scripted::new(words, Duration::from_millis(5), None));
    let req = json!({"birth": {"datetime": "1990-05-15T12:30", "timezone": "Asia/Seoul",
        "latitude": 37.5, "longitude": 127.0}, "locale": "en"});
    let response = send(&app, sse_request("/api/astrology", &req)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame in time")
            .expect("more frames")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    drop(body);
    let metric = || {
        state
            .rag_metrics
            .cancelled
            .with_label_values(&["generate"])
            .get()
    };
    for _ in 0..200 {
        if metric() == 1 && abandoned.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric(), 1, "the cancellation is counted");
    assert!(
        abandoned.load(Ordering::SeqCst),
        "the generator saw its stream dropped"
    );
    assert!(
        state
            .metrics
            .render()
            .contains("starpillar_reading_cancelled_total{mode=\"generate\"} 1")
    );
}

#[tokio::test]
async fn a_generator_failure_mid_stream_is_an_error_event() {
    let (app, state, _dir) = app();
    let words: Vec<String> = (0..10).map(|i| format!("w{i} ")).collect();
    install(
        &state,
        Scripted::new(words, Duration::from_millis(1), Some(3)),
    );
    let req = json!({"question": "What does a square aspect mean?", "topic": "astrology", "locale": "en"});
    let response = send(&app, sse_request("/api/ask", &req)).await;
    let events = parse_sse(&String::from_utf8(common::body_bytes(response).await).expect("utf-8"));
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.0.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(
        names,
        ["citations", "delta", "delta", "delta", "error"],
        "{events:?}"
    );
    assert_eq!(
        events.last().expect("error").1["error"]["code"],
        "generation_failed"
    );
    // The same failure without SSE is a 503, and nothing was cached.
    let (status, body) = post_json(&app, "/api/ask", &req.to_string()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "generation_failed");
}

#[tokio::test]
async fn generated_citations_are_checked_and_invalid_ones_dropped() {
    let (app, state, _dir) = app();
    let script = [
        "The square builds strength [1]. ",
        "Read it kindly [2, 42]. ",
        "Also [99].",
    ];
    install(
        &state,
        Scripted::new(
            script.iter().map(|s| (*s).to_owned()).collect(),
            Duration::from_millis(1),
            None,
        ),
    );
    let req = json!({"question": "What does a square aspect mean?", "topic": "astrology", "locale": "en", "top_k": 3});
    let (status, body) = post_json(&app, "/api/ask", &req.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["mode"], "generate");
    assert_eq!(body["meta"]["model"], "scripted");
    let text = body["reading"]["text"].as_str().expect("text");
    assert!(!text.contains("42") && !text.contains("99"), "{text}");
    let ns: Vec<u64> = body["reading"]["citations"]
        .as_array()
        .expect("citations")
        .iter()
        .filter_map(|c| c["n"].as_u64())
        .collect();
    assert_eq!(ns, [1, 2]);
    assert_eq!(state.rag_metrics.citations_invalid.get(), 2);
    assert_citations_valid(&body).await;
}

#[tokio::test]
async fn ask_answers_from_the_corpus() {
    let (app, _state, _dir) = app();
    let (status, body) = post_json(
        &app,
        "/api/ask",
        &json!({"question": "사주에서 충(沖)은 무엇인가요?", "topic": "saju"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["meta"]["locale"], "ko");
    assert!(body.get("chart").is_none());
    assert!(
        body["reading"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("충"))
    );
    assert_citations_valid(&body).await;
}

#[tokio::test]
async fn without_an_index_readings_are_503_retrieval_unavailable() {
    let (app, _state, _dir) = common::app();
    for (path, body) in [
        (
            "/api/saju",
            json!({"birth": {"date": "1990-05-15"}, "sex": "female"}),
        ),
        ("/api/ask", json!({"question": "what is a day master?"})),
    ] {
        let response = send(
            &app,
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        let v = common::body_json(response).await;
        assert_eq!(error_code(&v), "retrieval_unavailable");
    }
    // The chart alone still works.
    let (status, _) = post_json(
        &app,
        "/api/saju",
        r#"{"birth":{"date":"1990-05-15"},"sex":"female","reading":false}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_reading_input_is_422_naming_the_field() {
    let (app, _state, _dir) = app();
    let long = "?".repeat(1001);
    let cases = [
        (
            "/api/saju",
            json!({"birth": {"date": "1990-05-15"}, "sex": "female", "locale": "fr"}),
            "locale",
        ),
        (
            "/api/saju",
            json!({"birth": {"date": "1990-05-15"}, "sex": "female", "mode": "fast"}),
            "mode",
        ),
        (
            "/api/saju",
            json!({"birth": {"date": "1990-05-15"}, "sex": "female", "question": long}),
            "question",
        ),
        (
            "/api/astrology",
            json!({"birth": {"datetime": "1990-05-15T12:00", "timezone": "UTC",
            "latitude": 0.0, "longitude": 0.0}, "mode": "x"}),
            "mode",
        ),
        ("/api/ask", json!({"question": "  "}), "question"),
        ("/api/ask", json!({"question": "hi", "top_k": 0}), "top_k"),
        (
            "/api/ask",
            json!({"question": "hi", "topic": "tarot"}),
            "topic",
        ),
        (
            "/api/ask",
            json!({"question": "hi", "chart": {"nope": 1}}),
            "chart",
        ),
        ("/api/ask", json!({"question": "hi", "extra": 1}), "extra"),
    ];
    for (path, body, field) in cases {
        let (status, v) = post_json(&app, path, &body.to_string()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {v}"
        );
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    // An explicit `generate` with no generator loaded is refused, not silently composed.
    let (status, v) = post_json(
        &app,
        "/api/ask",
        &json!({"question": "hi", "mode": "generate"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(error_code(&v), "generator_unavailable");
}
