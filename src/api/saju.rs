//! `POST /api/saju`: validate the birth data, compute the chart with the pure engine in
//! [`crate::domain::saju`], and answer `{"chart": …}` (`reading: false`) or the chart with a
//! grounded reading (`reading: true`, the default; JSON or SSE, see [`crate::api::sse`]).

mod request;

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ask::{MAX_TOKENS, check_question, current_year, parse_locale, parse_mode};
use crate::api::json::AppJson;
use crate::api::sse::{self, ReadingCall};
use crate::billing::Metered;
use crate::domain::saju::{ChartOptions, SajuError, compute};
use crate::error::{ApiError, ApiResult};
use crate::rag::compose::Subject;
use crate::rag::pipeline::ReadingRequest;
use crate::rag::{Locale, Topic};
use crate::state::SharedState;

pub use request::{BirthRequest, OptionsRequest, SajuRequest};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(saju))
}

impl From<SajuError> for ApiError {
    fn from(err: SajuError) -> Self {
        ApiError::invalid(err.field(), err.code(), err.to_string())
    }
}

/// A saju (Four Pillars) chart and its grounded reading.
#[utoipa::path(post, path = "/api/saju", tag = "saju", request_body = SajuRequest, responses(
    (status = 200, description = "`{chart}` (`reading: false`) or `{chart, reading, meta}`; SSE \
        events `chart`, `citations`, `delta`…, `done` with `Accept: text/event-stream`",
        body = Object),
    (status = 400, description = "Malformed JSON"),
    (status = 402, description = "Quota used up"),
    (status = 422, description = "Invalid input; `error.field` names it"),
    (status = 503, description = "`retrieval_unavailable` or `generator_unavailable` \
        (`Retry-After`)")))]
async fn saju(
    State(state): State<SharedState>,
    metered: Result<Metered, ApiError>,
    headers: HeaderMap,
    AppJson(req): AppJson<SajuRequest>,
) -> ApiResult<Response> {
    let locale = parse_locale(req.locale.as_deref(), Locale::Ko)?;
    let mode = parse_mode(req.mode.as_deref())?;
    let question = check_question(req.question.as_deref())?;
    let options = ChartOptions {
        zi_hour: req.options.zi_hour,
        solar_time: req.options.solar_time,
    };
    let start = Instant::now();
    let chart = compute(&req.birth_input(), req.sex, options)?;
    let chart = serde_json::to_value(&chart).map_err(ApiError::internal)?;
    let chart_ms = start.elapsed().as_secs_f64() * 1e3;
    if !req.reading {
        return Ok(Json(serde_json::json!({ "chart": chart })).into_response());
    }
    let metered = metered?;
    let engine = sse::engine(&state)?;
    let mode = sse::resolve_mode(&engine, mode, locale)?;
    let year = current_year();
    let request = ReadingRequest {
        subject: Subject::Saju,
        chart: Some(chart.clone()),
        question,
        locale,
        mode,
        topic: Some(Topic::Saju),
        top_k: 2,
        year,
        max_tokens: MAX_TOKENS,
        chart_ms,
    };
    let call = ReadingCall {
        route: "/api/saju",
        chart: Some(chart),
        request,
        options: serde_json::json!({ "mode": mode.name(), "year": year }),
        metered,
    };
    sse::respond(state, &headers, call).await
}
