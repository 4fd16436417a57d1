//! Answering a reading (`/api/saju`, `/api/astrology`, `/api/ask`): the response cache, then
//! either JSON (`{chart, reading, meta}`, with `server-timing` per stage) or, with
//! `Accept: text/event-stream`, Server-Sent Events in order `chart` → `citations` →
//! `delta`… → `done` (or `error`), a comment first so the first byte leaves at once, and a
//! keep-alive comment every 15 s. A client that disconnects drops the stream, which closes the
//! reading's channel and cancels generation. Quota is checked up front and charged after a
//! fresh reading succeeds and is stored (cache lookup → … → cache store → quota charge): a
//! cache hit is free, and a failed or cancelled reading is neither cached nor charged.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::billing::Metered;
use crate::cache::{CacheKey, Entry, KeyParts, Lookup};
use crate::error::ApiError;
use crate::rag::pipeline::{self, Engine, Event, ReadingRequest};
use crate::rag::{Mode, prompt};
use crate::state::SharedState;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER: u64 = 5;

/// One reading to answer.
pub struct ReadingCall {
    /// The matched route (part of the cache key).
    pub route: &'static str,
    /// The chart to send back (`chart` in JSON, the `chart` event in SSE).
    pub chart: Option<Value>,
    pub request: ReadingRequest,
    /// Options that change the reading (part of the cache key).
    pub options: Value,
    pub metered: Metered,
}

/// True when the client asked for Server-Sent Events.
pub fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The reading engine, or 503 `retrieval_unavailable` while the store is not open/indexed.
#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error; these run once per request"
)]
pub fn engine(state: &SharedState) -> Result<Engine, ApiError> {
    let retriever = state.retriever().ok_or_else(|| {
        ApiError::unavailable(
            "retrieval_unavailable",
            "the passage index is not open yet (loading or indexing); retry shortly",
            RETRY_AFTER,
        )
    })?;
    Ok(Engine {
        retriever,
        generator: state.generator.get().cloned(),
        metrics: Arc::clone(&state.rag_metrics),
        prompts: prompt::global(),
    })
}

/// Resolve `auto`/`generate` against the loaded generator (503 when `generate` cannot run).
#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error; these run once per request"
)]
pub fn resolve_mode(
    engine: &Engine,
    requested: Mode,
    locale: crate::rag::Locale,
) -> Result<Mode, ApiError> {
    pipeline::resolve_mode(requested, engine.generator.as_ref(), locale).map_err(|e| {
        ApiError::unavailable("generator_unavailable", e.to_string(), RETRY_AFTER)
            .with_field("mode")
    })
}

fn sse_json(name: &str, value: &Value) -> SseEvent {
    SseEvent::default().event(name).data(value.to_string())
}

fn to_sse(event: Event) -> SseEvent {
    match event {
        Event::Citations(c) => sse_json("citations", &json!({ "citations": c })),
        Event::Delta(text) => sse_json("delta", &json!({ "text": text })),
        Event::Done(body) => sse_json(
            "done",
            &json!({
                "meta": body.get("meta"),
                "citations": body.pointer("/reading/citations"),
                "facts": body.pointer("/reading/facts"),
            }),
        ),
        Event::Error { code, message } => sse_json(
            "error",
            &json!({ "error": { "code": code, "message": message } }),
        ),
    }
}

fn server_timing(meta: &Value, cached: bool) -> Option<HeaderValue> {
    let mut parts: Vec<String> = Vec::new();
    if cached {
        parts.push("cache;desc=hit".into());
    }
    if let Some(t) = meta.get("timings_ms").and_then(Value::as_object) {
        for (k, v) in t {
            if k != "total"
                && let Some(ms) = v.as_f64()
            {
                parts.push(format!("{k};dur={ms:.3}"));
            }
        }
    }
    HeaderValue::from_str(&parts.join(", ")).ok()
}

fn with_timing(mut response: Response, meta: &Value, cached: bool) -> Response {
    if let Some(v) = server_timing(meta, cached) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// The JSON answer `{chart, reading, meta}`.
fn json_body(chart: Option<Value>, mut body: Value) -> Value {
    if let (Some(chart), Some(obj)) = (chart, body.as_object_mut()) {
        obj.insert("chart".into(), chart);
    }
    body
}

/// Answer a reading as JSON or SSE, through the cache.
pub async fn respond(
    state: SharedState,
    headers: &HeaderMap,
    call: ReadingCall,
) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    let sse = wants_sse(headers);
    let (model, model_hash) = match (call.request.mode, &engine.generator) {
        (Mode::Generate, Some(g)) => (g.model().to_owned(), g.file_hash().to_owned()),
        _ => ("compose".to_owned(), String::new()),
    };
    let key_chart = call
        .chart
        .clone()
        .or_else(|| call.request.chart.clone())
        .unwrap_or(Value::Null);
    let key = CacheKey::new(&KeyParts {
        route: call.route,
        chart: &key_chart,
        question: call.request.question.as_deref().unwrap_or(""),
        locale: call.request.locale.code(),
        options: &call.options,
        model: &model,
        model_hash: &model_hash,
        prompt_version: &engine.prompts.version,
        corpus_version: &engine.retriever.corpus_version,
    });
    let flight = match state.cache.lookup(&key).await {
        Lookup::Hit(entry) => {
            engine
                .metrics
                .readings
                .with_label_values(&[call.request.mode.name(), "cached"])
                .inc();
            let mut body: Value =
                serde_json::from_slice(&entry.body).map_err(ApiError::internal)?;
            if let Some(meta) = body.get_mut("meta").and_then(Value::as_object_mut) {
                meta.insert("cached".into(), Value::Bool(true));
            }
            // A hit is free: the quota was checked up front (the `Metered` extractor answers
            // 402 when nothing is left) and is charged only for work done.
            let meta = body.get("meta").cloned().unwrap_or(Value::Null);
            let response = if sse {
                replay(call.chart, body)
            } else {
                axum::Json(json_body(call.chart, body)).into_response()
            };
            return Ok(with_timing(response, &meta, true));
        }
        Lookup::Miss(flight) => flight,
    };
    let entry_meta = (
        call.route.to_owned(),
        engine.prompts.version.clone(),
        engine.retriever.corpus_version.clone(),
    );
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    if sse {
        let chart_ms = call.request.chart_ms;
        let metered = call.metered.clone();
        let st = state.clone();
        tokio::spawn(async move {
            if let Some(body) = pipeline::run(engine, call.request, tx).await {
                store(flight, &body, entry_meta).await;
                if let Err(err) = metered.charge(&st).await {
                    tracing::warn!(error = %err.message, "charging a streamed reading failed");
                }
            }
        });
        let head = std::iter::once(SseEvent::default().comment("reading"))
            .chain(call.chart.map(|c| sse_json("chart", &c)));
        let tail = live_events(rx, state.ending_streams.subscribe());
        let stream = futures::stream::iter(head)
            .chain(tail)
            .map(Ok::<_, Infallible>);
        let response = Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response();
        let meta = json!({ "timings_ms": { "chart": chart_ms } });
        return Ok(with_timing(response, &meta, false));
    }
    let collect = async move {
        let mut failure = None;
        while let Some(e) = rx.recv().await {
            if let Event::Error { code, message } = e {
                failure = Some((code, message));
            }
        }
        failure
    };
    let (body, failure) = tokio::join!(pipeline::run(engine, call.request, tx), collect);
    let Some(body) = body else {
        let (code, message) = failure
            .unwrap_or_else(|| ("reading_failed".into(), "the reading did not finish".into()));
        return Err(ApiError::unavailable(code, message, RETRY_AFTER));
    };
    store(flight, &body, entry_meta).await;
    call.metered.charge(&state).await?;
    let meta = body.get("meta").cloned().unwrap_or(Value::Null);
    Ok(with_timing(
        axum::Json(json_body(call.chart, body)).into_response(),
        &meta,
        false,
    ))
}

/// A live reading's events up to its terminal one (`done` or `error`). When the server ends
/// open streams at shutdown (`ending_streams` turns true), the rest is replaced by one `error`
/// event `shutting_down`, so a client always sees how its stream ended; dropping `rx` then
/// cancels the reading, which is therefore never cached.
fn live_events(
    rx: mpsc::Receiver<Event>,
    ending: watch::Receiver<bool>,
) -> impl futures::Stream<Item = SseEvent> {
    futures::stream::unfold(Some((rx, ending)), |open| async move {
        let (mut rx, mut ending) = open?;
        let shutdown = async {
            if ending.wait_for(|end| *end).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            event = rx.recv() => {
                let event = event?;
                let last = matches!(event, Event::Done(_) | Event::Error { .. });
                Some((to_sse(event), (!last).then_some((rx, ending))))
            }
            () = shutdown => Some((shutting_down(), None)),
        }
    })
}

/// The `error` event that ends a stream the server cut short at shutdown.
fn shutting_down() -> SseEvent {
    to_sse(Event::Error {
        code: "shutting_down".into(),
        message: "the server is restarting; this reading was stopped, retry it".into(),
    })
}

async fn store(
    flight: crate::cache::Flight,
    body: &Value,
    (route, prompt_version, corpus_version): (String, String, String),
) {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            flight
                .complete(Entry {
                    body: bytes,
                    route,
                    prompt_version,
                    corpus_version,
                })
                .await
        }
        Err(err) => tracing::warn!(error = %err, "reading not cached"),
    }
}

/// A cached reading as the same SSE events a fresh one sends.
fn replay(chart: Option<Value>, body: Value) -> Response {
    let mut events: Vec<SseEvent> = vec![SseEvent::default().comment("reading (cached)")];
    if let Some(c) = chart {
        events.push(sse_json("chart", &c));
    }
    let citations = body
        .pointer("/reading/citations")
        .cloned()
        .unwrap_or(json!([]));
    events.push(sse_json("citations", &json!({ "citations": citations })));
    let text = body
        .pointer("/reading/text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let paragraphs: Vec<&str> = text.split("\n\n").collect();
    let last = paragraphs.len().saturating_sub(1);
    for (i, p) in paragraphs.iter().enumerate() {
        let sep = if i < last { "\n\n" } else { "" };
        events.push(sse_json("delta", &json!({ "text": format!("{p}{sep}") })));
    }
    events.push(to_sse(Event::Done(Box::new(body))));
    let stream = futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
    Sse::new(stream).into_response()
}
