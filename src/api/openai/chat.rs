//! `POST /v1/chat/completions`: OpenAI's chat completions over the loaded generator, as one
//! JSON answer or, with `stream: true`, as server-sent events (`data: {chunk}` … `data:
//! [DONE]`; `stream_options.include_usage` adds a final usage chunk). Only `n = 1`. Sampling:
//! `temperature`, `top_p`, `seed`, `stop` (string or up to 4 strings), `max_tokens` /
//! `max_completion_tokens`, plus the common extensions `top_k` and `repetition_penalty`.
//! A client that disconnects drops the stream, which cancels the generation.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{OpenAiError, model_matches};
use crate::engine::generator::{FinishReason, GenParams};
use crate::engine::{ChatMessage, EngineError, GenEvent, GenRequest, GenStream, Generate};
use crate::error::{ApiError, ErrorKind};
use crate::state::SharedState;

/// `max_tokens` when the request names none (the model's context also bounds it).
pub const DEFAULT_MAX_TOKENS: usize = 512;
/// Most stop sequences (OpenAI's limit).
pub const MAX_STOPS: usize = 4;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(chat_completions))
}

/// A message's content: a string, or a list of `{"type":"text","text":…}` parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part (only `text` parts are supported).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// One message of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageIn {
    /// `system` (or `developer`), `user` or `assistant`.
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Stop sequences: one string or a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

/// Streaming options.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `POST /v1/chat/completions` body (OpenAI's; unknown fields are refused with 422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// 0–2; 0 = greedy (default 1, as OpenAI).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// (0, 1].
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Extension: sample among the k most likely tokens.
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Extension: > 0; 1 = off.
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Only 0 is supported.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Only 0 is supported.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// The same seed and request give the same text.
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<StopSpec>,
    /// Only 1.
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    /// Only false.
    #[serde(default)]
    pub logprobs: Option<bool>,
}

/// Token counts of a completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// The assistant's message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

/// One choice (there is only one).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// `POST /v1/chat/completions` answer (non-streaming).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChatChoice>,
    pub usage: ChatUsage,
}

/// Check the request and turn it into the engine's.
#[allow(clippy::result_large_err)]
fn to_gen_request(req: &ChatCompletionRequest) -> Result<GenRequest, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "empty_messages",
            "messages must not be empty",
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    "unsupported_role",
                    format!("role {other:?} is not supported (system, user or assistant)"),
                ));
            }
        };
        let content = match &m.content {
            None if role == "assistant" => String::new(),
            None => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].content"),
                    "missing_content",
                    "this message needs content",
                ));
            }
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                format!("messages[{i}].content[{j}]"),
                                "unsupported_content",
                                "only text content parts are supported",
                            ));
                        }
                    }
                }
                text
            }
        };
        messages.push(ChatMessage::new(role, content));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n",
            "unsupported_n",
            "only n = 1 is supported",
        ));
    }
    if req.logprobs == Some(true) {
        return Err(ApiError::invalid(
            "logprobs",
            "unsupported_logprobs",
            "logprobs are not supported",
        ));
    }
    for (field, v) in [
        ("frequency_penalty", req.frequency_penalty),
        ("presence_penalty", req.presence_penalty),
    ] {
        if v.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(
                field,
                "unsupported_penalty",
                format!("only {field} = 0 is supported; use repetition_penalty"),
            ));
        }
    }
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(n), _) => (n, "max_completion_tokens"),
        (None, Some(n)) => (n, "max_tokens"),
        (None, None) => (DEFAULT_MAX_TOKENS as u32, "max_tokens"),
    };
    if max_tokens.0 == 0 {
        return Err(ApiError::invalid(
            max_tokens.1,
            "invalid_max_tokens",
            "must be at least 1",
        ));
    }
    let temperature = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            "invalid_temperature",
            "must be between 0 and 2",
        ));
    }
    if req.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::invalid(
            "top_p",
            "invalid_top_p",
            "must be in (0, 1]",
        ));
    }
    if req.top_k == Some(0) {
        return Err(ApiError::invalid(
            "top_k",
            "invalid_top_k",
            "must be at least 1",
        ));
    }
    let repeat_penalty = req.repetition_penalty.unwrap_or(1.0);
    if !(repeat_penalty > 0.0 && repeat_penalty <= 10.0) {
        return Err(ApiError::invalid(
            "repetition_penalty",
            "invalid_repetition_penalty",
            "must be in (0, 10]",
        ));
    }
    let stop = match &req.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s.clone()],
        Some(StopSpec::Many(v)) => v.clone(),
    };
    if stop.len() > MAX_STOPS || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "invalid_stop",
            format!("at most {MAX_STOPS} non-empty stop sequences"),
        ));
    }
    let seed = match req.seed {
        Some(s) => s as u64,
        None => uuid::Uuid::new_v4().as_u64_pair().0,
    };
    Ok(GenRequest {
        messages,
        params: GenParams {
            max_tokens: max_tokens.0 as usize,
            temperature,
            top_p: req.top_p,
            top_k: req.top_k.map(|k| k as usize),
            repeat_penalty,
            seed,
            stop,
            ..GenParams::default()
        },
    })
}

fn gen_error(err: EngineError) -> ApiError {
    match err {
        EngineError::Overloaded => ApiError::unavailable(
            "overloaded",
            "the generation queue is full; retry shortly",
            1,
        ),
        EngineError::Closed => ApiError::unavailable("engine_stopped", "the engine stopped", 5),
        EngineError::InvalidInput(msg) => {
            ApiError::invalid("messages", "context_length_exceeded", msg)
        }
        other => ApiError::internal(other),
    }
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// Chat with the loaded generator (OpenAI-compatible; JSON or server-sent events).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, body = ChatCompletion,
            description = "The completion, or with `stream: true` a `text/event-stream` of \
                           `chat.completion.chunk` objects ending with `data: [DONE]`"),
        (status = 400, description = "Malformed JSON"),
        (status = 404, description = "Unknown model"),
        (status = 422, description = "Invalid input"),
        (status = 503, description = "Model loading or queue full"),
    ))]
async fn chat_completions(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body = body.map_err(crate::api::json::body_rejection)?;
    let req: ChatCompletionRequest = crate::api::json::parse(&body)?;
    let gen_request = to_gen_request(&req)?;
    let Some(generator) = state.generator.get().cloned() else {
        let configured = state.components().contains_key("generator");
        return Err(if configured {
            ApiError::unavailable("model_loading", "the generation model is not loaded yet", 5)
        } else {
            ApiError::unavailable(
                "generator_disabled",
                "this server has no generation model (--gen-model none)",
                60,
            )
        }
        .into());
    };
    if !model_matches(&req.model, generator.model()) {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "model_not_found",
            format!(
                "the model {:?} does not exist; this server generates with {:?}",
                req.model,
                generator.model()
            ),
        )
        .with_field("model")
        .into());
    }
    let stream = generator.submit(gen_request).map_err(gen_error)?;
    let meta = Meta {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: chrono::Utc::now().timestamp(),
        model: generator.model().to_owned(),
        fingerprint: fingerprint(generator.as_ref()),
    };
    if req.stream == Some(true) {
        let usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        return Ok(stream_response(stream, meta, usage));
    }
    complete(stream, meta)
        .await
        .map(IntoResponse::into_response)
}

struct Meta {
    id: String,
    created: i64,
    model: String,
    fingerprint: String,
}

fn fingerprint(g: &dyn Generate) -> String {
    let hash: String = g.file_hash().chars().take(12).collect();
    format!("starpillar-{}-{hash}", crate::VERSION)
}

async fn complete(mut stream: GenStream, meta: Meta) -> Result<Json<ChatCompletion>, OpenAiError> {
    let mut text = String::new();
    while let Some(event) = stream.events.recv().await {
        match event {
            GenEvent::Delta(d) => text.push_str(&d),
            GenEvent::Error(e) => {
                return Err(ApiError::internal(format!("generation failed: {e}")).into());
            }
            GenEvent::Done(summary) => {
                return Ok(Json(ChatCompletion {
                    id: meta.id,
                    object: "chat.completion",
                    created: meta.created,
                    model: meta.model,
                    system_fingerprint: meta.fingerprint,
                    choices: vec![ChatChoice {
                        index: 0,
                        message: AssistantMessage {
                            role: "assistant",
                            content: text,
                        },
                        logprobs: None,
                        finish_reason: finish_reason(summary.finish),
                    }],
                    usage: ChatUsage {
                        prompt_tokens: summary.prompt_tokens,
                        completion_tokens: summary.completion_tokens,
                        total_tokens: summary.prompt_tokens + summary.completion_tokens,
                    },
                }));
            }
        }
    }
    Err(ApiError::internal("the generator stopped without finishing").into())
}

/// One `chat.completion.chunk`.
fn chunk(meta: &Meta, choices: serde_json::Value, usage: Option<serde_json::Value>) -> Event {
    let mut body = json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": choices,
    });
    if let Some(u) = usage {
        body["usage"] = u;
    }
    Event::default().data(body.to_string())
}

fn delta_chunk(meta: &Meta, delta: serde_json::Value, finish: Option<&str>, usage: bool) -> Event {
    let choices =
        json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    chunk(meta, choices, usage.then_some(serde_json::Value::Null))
}

enum Phase {
    Start,
    Running,
    Over,
}

/// The SSE answer: a role chunk at once, a chunk per delta, the finish chunk, the optional
/// usage chunk, `[DONE]`. An engine failure mid-stream is sent as `data: {"error":…}`.
fn stream_response(stream: GenStream, meta: Meta, usage: bool) -> Response {
    let events = futures::stream::unfold(
        (stream, meta, Phase::Start),
        move |(mut stream, meta, phase)| async move {
            let out: Vec<Event> = match phase {
                Phase::Over => return None,
                Phase::Start => {
                    let first = delta_chunk(
                        &meta,
                        json!({"role": "assistant", "content": ""}),
                        None,
                        usage,
                    );
                    return Some((vec![first], (stream, meta, Phase::Running)));
                }
                Phase::Running => match stream.events.recv().await {
                    Some(GenEvent::Delta(d)) => {
                        let e = delta_chunk(&meta, json!({ "content": d }), None, usage);
                        return Some((vec![e], (stream, meta, Phase::Running)));
                    }
                    Some(GenEvent::Done(s)) => {
                        let mut v = vec![delta_chunk(
                            &meta,
                            json!({}),
                            Some(finish_reason(s.finish)),
                            usage,
                        )];
                        if usage {
                            let u = json!({
                                "prompt_tokens": s.prompt_tokens,
                                "completion_tokens": s.completion_tokens,
                                "total_tokens": s.prompt_tokens + s.completion_tokens,
                            });
                            v.push(chunk(&meta, json!([]), Some(u)));
                        }
                        v
                    }
                    Some(GenEvent::Error(e)) => vec![error_event(&e)],
                    None => vec![error_event("the generator stopped without finishing")],
                },
            };
            let mut out = out;
            out.push(Event::default().data("[DONE]"));
            Some((out, (stream, meta, Phase::Over)))
        },
    )
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn error_event(message: &str) -> Event {
    tracing::error!(error = %message, "generation failed mid-stream");
    let body = json!({"error": {
        "message": format!("generation failed: {message}"),
        "type": "server_error",
        "param": null,
        "code": "generation_failed",
    }});
    Event::default().data(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> ChatCompletionRequest {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    #[test]
    fn requests_map_to_engine_params() {
        let r = to_gen_request(&parse(
            r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
                "max_completion_tokens":7,"max_tokens":99,"temperature":0,"seed":-1,"stop":"\n"}"#,
        ));
        let Ok(r) = r else {
            panic!("valid request refused")
        };
        assert_eq!(r.messages[0], ChatMessage::new("system", "be brief"));
        assert_eq!(r.messages[1].content, "hi there");
        assert_eq!(r.params.max_tokens, 7, "max_completion_tokens wins");
        assert_eq!(r.params.temperature, 0.0);
        assert_eq!(
            r.params.seed,
            u64::MAX,
            "negative seeds wrap, deterministically"
        );
        assert_eq!(r.params.stop, vec!["\n".to_owned()]);
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "messages[0].content[0]",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                "n",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":2.5}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                "top_p",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[""]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
                "logprobs",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"frequency_penalty":0.5}"#,
                "frequency_penalty",
            ),
        ];
        for (body, field) in cases {
            match to_gen_request(&parse(body)) {
                Ok(_) => panic!("{body} was accepted"),
                Err(e) => {
                    assert_eq!(
                        e.status(),
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        "{body}"
                    );
                    assert_eq!(e.field.as_deref(), Some(field), "{body}");
                }
            }
        }
    }
}
