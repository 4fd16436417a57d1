//! `POST /api/astrology`: a natal chart (planets, houses, aspects) from birth data, and a
//! grounded reading. `reading: false` answers `{"chart": …}`; `reading: true` (the default)
//! answers `{chart, reading, meta}` as JSON or SSE (see [`crate::api::sse`]).
//! Input errors are 422 naming the field (`birth.latitude`, `house_system`, …).

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ask::{MAX_TOKENS, check_question, current_year, parse_locale, parse_mode};
use crate::api::json::AppJson;
use crate::api::sse::{self, ReadingCall};
use crate::billing::Metered;
use crate::domain::astro::{self, AstroError, Birth, Chart, ChartOptions, HouseSystem, Orbs};
use crate::error::{ApiError, ApiResult};
use crate::rag::compose::Subject;
use crate::rag::pipeline::ReadingRequest;
use crate::rag::{Locale, Topic};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(astrology))
}

/// Birth data: local civil time in an IANA zone, and the place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BirthIn {
    /// Local civil date-time, `YYYY-MM-DDTHH:MM[:SS]`.
    #[schema(example = "1990-05-15T12:30")]
    pub datetime: String,
    /// IANA time zone name.
    #[schema(example = "Asia/Seoul")]
    pub timezone: String,
    /// Degrees, north positive, −90…90.
    #[schema(example = 37.5665)]
    pub latitude: f64,
    /// Degrees, east positive, −180…180.
    #[schema(example = 126.978)]
    pub longitude: f64,
}

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AstrologyRequest {
    pub birth: BirthIn,
    /// `placidus` (default), `koch`, `porphyry`, `equal` or `whole_sign`.
    #[serde(default)]
    pub house_system: Option<String>,
    /// Maximum orb per aspect, degrees (defaults 8/6/7/8/8).
    #[serde(default)]
    pub orbs: Option<Orbs>,
    /// The question for the reading.
    #[serde(default)]
    pub question: Option<String>,
    /// `ko` or `en`.
    #[serde(default)]
    pub locale: Option<String>,
    /// `false` → the chart only; `true` (default) → chart and reading.
    #[serde(default = "default_reading")]
    pub reading: bool,
    /// `auto` (default), `compose` or `generate` (DESIGN.md §5a).
    #[serde(default)]
    pub mode: Option<String>,
}

fn default_reading() -> bool {
    true
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

/// Turn a request into the engine's input, or a 422 naming the field.
pub fn to_engine(req: &AstrologyRequest) -> Result<(Birth, ChartOptions), AstroError> {
    let house_system = match req.house_system.as_deref() {
        None => HouseSystem::Placidus,
        Some(name) => HouseSystem::parse(name.trim())
            .ok_or_else(|| AstroError::UnknownHouseSystem(name.to_owned()))?,
    };
    let birth = Birth {
        datetime: req.birth.datetime.clone(),
        timezone: req.birth.timezone.clone(),
        latitude: req.birth.latitude,
        longitude: req.birth.longitude,
    };
    let opts = ChartOptions {
        house_system,
        orbs: req.orbs.unwrap_or_default(),
    };
    Ok((birth, opts))
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
