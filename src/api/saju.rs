//! `POST /api/saju`: validate the birth data, compute the chart with the pure engine in
//! [`crate::domain::saju`], and answer `{"chart": …}` (`reading: false`) or the chart with a
//! grounded reading (`reading: true`, the default; JSON or SSE, see [`crate::api::sse`]).

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ask::{MAX_TOKENS, check_question, current_year, parse_locale, parse_mode};
use crate::api::json::AppJson;
use crate::api::sse::{self, ReadingCall};
use crate::billing::Metered;
use crate::domain::saju::input::{DEFAULT_TIMEZONE, SEOUL_LONGITUDE};
use crate::domain::saju::{
    BirthInput, Calendar, ChartOptions, SajuError, Sex, SolarTime, ZiHour, compute,
};
use crate::error::{ApiError, ApiResult};
use crate::rag::compose::Subject;
use crate::rag::pipeline::ReadingRequest;
use crate::rag::{Locale, Topic};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(saju))
}

impl From<SajuError> for ApiError {
    fn from(err: SajuError) -> Self {
        ApiError::invalid(err.field(), err.code(), err.to_string())
    }
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_owned()
}
fn default_longitude() -> f64 {
    SEOUL_LONGITUDE
}
fn yes() -> bool {
    true
}

/// Birth data.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BirthRequest {
    /// `YYYY-MM-DD` in `calendar` (1900-01-01 … 2100-12-31 solar).
    #[schema(example = "1990-05-15")]
    pub date: String,
    /// Local civil time `HH:MM[:SS]`; omit when unknown (no hour pillar).
    #[serde(default)]
    #[schema(example = "14:30")]
    pub time: Option<String>,
    /// `solar` (default) or `lunar` (Korean calendar).
    #[serde(default)]
    #[schema(value_type = String, example = "solar")]
    pub calendar: Calendar,
    /// With `calendar: lunar`: the month is a leap month (윤달).
    #[serde(default)]
    pub leap_month: bool,
    /// IANA time zone of `time` (default Asia/Seoul).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Degrees east of the birthplace, for local mean time (default Seoul, 126.978).
    #[serde(default = "default_longitude")]
    pub longitude: f64,
}

/// Chart options.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsRequest {
    /// `jeong` (default: 23:00 starts the next day) or `ya` (야자시).
    #[serde(default)]
    #[schema(value_type = String, example = "jeong")]
    pub zi_hour: ZiHour,
    /// `none`, `fixed30`, `lmt` (default) or `true`.
    #[serde(default)]
    #[schema(value_type = String, example = "lmt")]
    pub solar_time: SolarTime,
}

/// `POST /api/saju` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SajuRequest {
    pub birth: BirthRequest,
    /// `male` or `female` (decides the direction of the luck pillars).
    #[schema(value_type = String, example = "female")]
    pub sex: Sex,
    #[serde(default)]
    pub options: OptionsRequest,
    /// A question for the reading.
    #[serde(default)]
    pub question: Option<String>,
    /// `ko` or `en`.
    #[serde(default)]
    pub locale: Option<String>,
    /// `false` → the chart only; `true` (default) → chart and reading.
    #[serde(default = "yes")]
    pub reading: bool,
    /// `auto` (default), `compose` or `generate` (DESIGN.md §5a).
    #[serde(default)]
    #[schema(example = "auto")]
    pub mode: Option<String>,
}

impl SajuRequest {
    /// The engine's input.
    pub fn birth_input(&self) -> BirthInput {
        BirthInput {
            date: self.birth.date.clone(),
            time: self.birth.time.clone(),
            calendar: self.birth.calendar,
            leap_month: self.birth.leap_month,
            timezone: self.birth.timezone.clone(),
            longitude: self.birth.longitude,
        }
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
