//! `POST /api/astrology`: a natal chart (planets, houses, aspects) from birth data, and a
//! grounded reading. `reading: false` answers `{"chart": …}`; `reading: true` (the default)
//! answers `{chart, reading, meta}` as JSON or SSE (see [`crate::api::sse`]).
//! Input errors are 422 naming the field (`birth.latitude`, `house_system`, …).

mod request;

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ask::{MAX_TOKENS, check_question, current_year, parse_locale, parse_mode};
use crate::api::json::AppJson;
use crate::api::sse::{self, ReadingCall};
use crate::billing::Metered;
use crate::domain::astro::{self, AstroError, Chart};
use crate::error::{ApiError, ApiResult};
use crate::rag::compose::Subject;
use crate::rag::pipeline::ReadingRequest;
use crate::rag::{Locale, Topic};
use crate::state::SharedState;

pub use request::{AstrologyRequest, BirthIn, to_engine};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(astrology))
}

/// The chart-only answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AstrologyResponse {
    pub chart: Chart,
}

impl From<AstroError> for ApiError {
    fn from(err: AstroError) -> Self {
        ApiError::invalid(err.field(), err.code(), err.to_string())
    }
}

/// A natal chart and its grounded reading.
#[utoipa::path(post, path = "/api/astrology", tag = "astrology",
    request_body = AstrologyRequest,
    responses(
        (status = 200, description = "The chart (`reading: false`) or `{chart, reading, meta}`; \
            SSE with `Accept: text/event-stream`", body = AstrologyResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 402, description = "Quota used up"),
        (status = 422, description = "Invalid input; `error.field` names it"),
        (status = 503, description = "`retrieval_unavailable` or `generator_unavailable` \
            (`Retry-After`)"),
    ))]
async fn astrology(
    State(state): State<SharedState>,
    metered: Result<Metered, ApiError>,
    headers: HeaderMap,
    AppJson(req): AppJson<AstrologyRequest>,
) -> ApiResult<Response> {
    let locale = parse_locale(req.locale.as_deref(), Locale::Ko)?;
    let mode = parse_mode(req.mode.as_deref())?;
    let question = check_question(req.question.as_deref())?;
    let (birth, opts) = to_engine(&req)?;
    let start = Instant::now();
    let chart = tokio::task::spawn_blocking(move || astro::compute(&birth, &opts))
        .await
        .map_err(ApiError::internal)??;
    let chart_ms = start.elapsed().as_secs_f64() * 1e3;
    if !req.reading {
        return Ok(AppJson(AstrologyResponse { chart }).into_response());
    }
    let chart = serde_json::to_value(&chart).map_err(ApiError::internal)?;
    let metered = metered?;
    let engine = sse::engine(&state)?;
    let mode = sse::resolve_mode(&engine, mode, locale)?;
    let request = ReadingRequest {
        subject: Subject::Astrology,
        chart: Some(chart.clone()),
        question,
        locale,
        mode,
        topic: Some(Topic::Astrology),
        top_k: 2,
        year: current_year(),
        max_tokens: MAX_TOKENS,
        chart_ms,
    };
    let call = ReadingCall {
        route: "/api/astrology",
        chart: Some(chart),
        request,
        options: serde_json::json!({ "mode": mode.name() }),
        metered,
    };
    sse::respond(state, &headers, call).await
}
