//! OpenAI-compatible routes under `/v1`: `POST /v1/embeddings`, `POST /v1/chat/completions`
//! (in [`chat`]) and `GET /v1/models`, close enough that the official `openai` Python client
//! works unchanged (float and base64 encodings, streaming). Errors under `/v1` use OpenAI's shape,
//! `{"error":{"message","type","param","code"}}`, so OpenAI clients surface them properly.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::embedder::{EmbedInput, EmbedKind, embed};
use crate::engine::{EngineError, manifest};
use crate::error::{ApiError, ErrorKind};
use crate::state::SharedState;

pub mod chat;

/// Most inputs in one embeddings request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(embeddings))
        .routes(routes!(list_models))
        .merge(chat::router())
}

/// An error in OpenAI's JSON shape.
pub struct OpenAiError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let kind = match e.kind {
            ErrorKind::Internal | ErrorKind::BadGateway => "server_error",
            ErrorKind::Unavailable => "service_unavailable",
            ErrorKind::TooManyRequests => "rate_limit_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Unauthorized => "authentication_error",
            _ => "invalid_request_error",
        };
        let body = serde_json::json!({
            "error": {
                "message": e.message,
                "type": kind,
                "param": e.field,
                "code": e.code,
            }
        });
        let mut response = (e.status(), Json(body)).into_response();
        if let Some(seconds) = e.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn engine_error(err: EngineError) -> ApiError {
    match err {
        // DESIGN §3: 503 = overloaded (429 is the rate limiter's), with Retry-After.
        EngineError::Overloaded => ApiError::unavailable(
            "overloaded",
            "the embedding queue is full; retry shortly",
            1,
        ),
        EngineError::Closed => ApiError::unavailable("engine_stopped", "the engine stopped", 5),
        EngineError::InvalidInput(msg) => ApiError::invalid("input", "invalid_input", msg),
        other => ApiError::internal(other),
    }
}

/// The texts to embed: one string or a list of strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    /// Token ids (accepted by OpenAI; refused here with 422).
    Tokens(Vec<serde_json::Value>),
}

/// How vectors are encoded in the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian f32 bytes, base64 (what the `openai` Python client asks for).
    Base64,
}

/// E5's input prefix: `query` (default; also for symmetric similarity) or `passage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    Query,
    Passage,
}

/// `POST /v1/embeddings` body (OpenAI's, plus `input_type`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub input: EmbeddingInput,
    /// The loaded model's name (see `GET /v1/models`) or its HF repo id.
    pub model: String,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Must equal the model's dimension when given.
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    /// `query` (default) or `passage`.
    #[serde(default)]
    pub input_type: Option<InputType>,
}

/// One vector.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    pub object: &'static str,
    pub index: usize,
    /// An array of floats, or a base64 string when `encoding_format` is `base64`.
    #[schema(value_type = Object)]
    pub embedding: serde_json::Value,
}

/// Token counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// `POST /v1/embeddings` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

/// Whether `requested` names the loaded model `loaded` (by name or HF repo id).
fn model_matches(requested: &str, loaded: &str) -> bool {
    if requested == loaded {
        return true;
    }
    manifest::find(loaded)
        .map(|m| m.hf_repo == requested)
        .unwrap_or(false)
}

/// Embed texts (OpenAI-compatible).
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 404, description = "Unknown model"),
        (status = 422, description = "Invalid input"),
        (status = 503, description = "Model still loading, or the queue is full"),
    ))]
async fn embeddings(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EmbeddingsResponse>, OpenAiError> {
    let body = body.map_err(crate::api::json::body_rejection)?;
    let req: EmbeddingsRequest = crate::api::json::parse(&body)?;
    let texts = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
        EmbeddingInput::Tokens(_) => {
            return Err(ApiError::invalid(
                "input",
                "token_input_unsupported",
                "token-id inputs are not supported; send strings",
            )
            .into());
        }
    };
    if texts.is_empty() {
        return Err(ApiError::invalid("input", "empty_input", "input must not be empty").into());
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            "too_many_inputs",
            format!("at most {MAX_INPUTS} inputs per request"),
        )
        .into());
    }
    let Some(embedder) = state.embedder.get().cloned() else {
        return Err(ApiError::unavailable(
            "model_loading",
            "the embedding model is not loaded yet",
            5,
        )
        .into());
    };
    if !model_matches(&req.model, embedder.model()) {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "model_not_found",
            format!(
                "the model {:?} does not exist; this server serves {:?}",
                req.model,
                embedder.model()
            ),
        )
        .with_field("model")
        .into());
    }
    if let Some(d) = req.dimensions
        && d as usize != embedder.dim()
    {
        return Err(ApiError::invalid(
            "dimensions",
            "unsupported_dimensions",
            format!(
                "this model only produces {}-dimensional vectors",
                embedder.dim()
            ),
        )
        .into());
    }
    let kind = match req.input_type.unwrap_or_default() {
        InputType::Query => EmbedKind::Query,
        InputType::Passage => EmbedKind::Passage,
    };
    let out = embed(embedder.as_ref(), EmbedInput { texts, kind })
        .await
        .map_err(engine_error)?;
    let format = req.encoding_format.unwrap_or_default();
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding",
            index,
            embedding: encode(&v, format),
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: embedder.model().to_owned(),
        usage: Usage {
            prompt_tokens: out.prompt_tokens,
            total_tokens: out.prompt_tokens,
        },
    }))
}

fn encode(v: &[f32], format: EncodingFormat) -> serde_json::Value {
    match format {
        EncodingFormat::Float => serde_json::json!(v),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// One model in `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: &'static str,
}

/// `GET /v1/models` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// The models this server has loaded (the embedder, then the generator).
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList)))]
async fn list_models(State(state): State<SharedState>) -> Json<ModelList> {
    let created = chrono::Utc::now().timestamp() - state.started.elapsed().as_secs() as i64;
    let card = |id: &str| ModelCard {
        id: id.to_owned(),
        object: "model",
        created,
        owned_by: "starpillar",
    };
    let data = state
        .embedder
        .get()
        .map(|e| card(e.model()))
        .into_iter()
        .chain(state.generator.get().map(|g| card(g.model())))
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}
