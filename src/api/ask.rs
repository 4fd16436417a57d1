//! `POST /api/ask`: a free question answered from the corpus (optionally about a chart the
//! client kept from `/api/saju` or `/api/astrology`), JSON or SSE like the readings. Also the
//! input checks the three reading routes share (locale, mode, question).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Datelike;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::json::AppJson;
use crate::api::sse::{self, ReadingCall};
use crate::billing::Metered;
use crate::error::{ApiError, ApiResult};
use crate::rag::compose::Subject;
use crate::rag::facts::{is_astrology_chart, is_saju_chart};
use crate::rag::pipeline::ReadingRequest;
use crate::rag::text::hangul_ratio;
use crate::rag::{Locale, Mode, Topic};
use crate::state::SharedState;

/// Longest accepted question, in characters.
pub const MAX_QUESTION_CHARS: usize = 1000;
/// Tokens a generated reading may use.
pub const MAX_TOKENS: usize = 512;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(ask))
}

/// `ko` or `en` (422 naming `locale` otherwise); `default` when absent.
#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error; these run once per request"
)]
pub fn parse_locale(locale: Option<&str>, default: Locale) -> Result<Locale, ApiError> {
    match locale {
        None => Ok(default),
        Some(l) => Locale::parse(l).ok_or_else(|| {
            ApiError::invalid(
                "locale",
                "invalid_locale",
                format!("unsupported locale {l:?}: expected ko or en"),
            )
        }),
    }
}

/// `auto` (default), `compose` or `generate` (422 naming `mode` otherwise).
#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error; these run once per request"
)]
pub fn parse_mode(mode: Option<&str>) -> Result<Mode, ApiError> {
    match mode {
        None => Ok(Mode::Auto),
        Some(m) => Mode::parse(m).ok_or_else(|| {
            ApiError::invalid(
                "mode",
                "invalid_mode",
                format!("unknown mode {m:?}: expected auto, compose or generate"),
            )
        }),
    }
}

/// A question of at most [`MAX_QUESTION_CHARS`] (422 naming `question` otherwise); blank is
/// no question.
#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error; these run once per request"
)]
pub fn check_question(q: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    if q.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::invalid(
            "question",
            "question_too_long",
            format!("the question is longer than {MAX_QUESTION_CHARS} characters"),
        ));
    }
    Ok(Some(q.to_owned()))
}

/// The current year (luck pillar and year pillar of saju readings).
pub fn current_year() -> i32 {
    chrono::Utc::now().year()
}

/// `POST /api/ask` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question (1–1000 characters).
    #[schema(example = "What does a clash in the chart mean?")]
    pub question: String,
    /// `ko` or `en`; default: the question's script (Hangul → ko).
    #[serde(default)]
    pub locale: Option<String>,
    /// `saju`, `astrology` or `any` (default): which corpus to search.
    #[serde(default)]
    pub topic: Option<String>,
    /// A chart from `/api/saju` or `/api/astrology` to read the question against.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub chart: Option<Value>,
    /// Passages for the question, 1–10 (default 4).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// `auto` (default), `compose` or `generate`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// A grounded answer to a free question.
#[utoipa::path(post, path = "/api/ask", tag = "readings", request_body = AskRequest, responses(
    (status = 200, description = "`{reading, meta}` (JSON) or SSE events with \
        `Accept: text/event-stream`", body = Object),
    (status = 400, description = "Malformed JSON"),
    (status = 402, description = "Quota used up"),
    (status = 422, description = "Invalid input; `error.field` names it"),
    (status = 503, description = "`retrieval_unavailable` or `generator_unavailable` \
        (`Retry-After`)")))]
async fn ask(
    State(state): State<SharedState>,
    metered: Result<Metered, ApiError>,
    headers: HeaderMap,
    AppJson(req): AppJson<AskRequest>,
) -> ApiResult<Response> {
    let question = check_question(Some(&req.question))?.ok_or_else(|| {
        ApiError::invalid("question", "question_required", "the question is empty")
    })?;
    let default_locale = if hangul_ratio(&question) > 0.3 {
        Locale::Ko
    } else {
        Locale::En
    };
    let locale = parse_locale(req.locale.as_deref(), default_locale)?;
    let mode = parse_mode(req.mode.as_deref())?;
    let mut topic = match req.topic.as_deref() {
        None | Some("any") => None,
        Some("saju") => Some(Topic::Saju),
        Some("astrology") => Some(Topic::Astrology),
        Some(t) => {
            return Err(ApiError::invalid(
                "topic",
                "invalid_topic",
                format!("unknown topic {t:?}: expected saju, astrology or any"),
            ));
        }
    };
    let top_k = req.top_k.unwrap_or(4);
    if !(1..=10).contains(&top_k) {
        return Err(ApiError::invalid(
            "top_k",
            "invalid_top_k",
            "top_k must be between 1 and 10",
        ));
    }
    let subject = match &req.chart {
        None => Subject::Question,
        Some(c) if is_saju_chart(c) && topic != Some(Topic::Astrology) => {
            topic = Some(Topic::Saju);
            Subject::Saju
        }
        Some(c) if is_astrology_chart(c) && topic != Some(Topic::Saju) => {
            topic = Some(Topic::Astrology);
            Subject::Astrology
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "chart",
                "invalid_chart",
                "chart must be a `chart` object from /api/saju or /api/astrology matching topic",
            ));
        }
    };
    let metered = metered?;
    let engine = sse::engine(&state)?;
    let mode = sse::resolve_mode(&engine, mode, locale)?;
    let year = current_year();
    let request = ReadingRequest {
        subject,
        chart: req.chart.clone(),
        question: Some(question),
        locale,
        mode,
        topic,
        top_k,
        year,
        max_tokens: MAX_TOKENS,
        chart_ms: 0.0,
    };
    let options = json!({ "mode": mode.name(), "topic": topic.map(Topic::name), "top_k": top_k,
        "year": year });
    sse::respond(
        state,
        &headers,
        ReadingCall {
            route: "/api/ask",
            chart: None,
            request,
            options,
            metered,
        },
    )
    .await
}
