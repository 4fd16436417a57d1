//! `POST /api/saju`: validate the birth data, compute the chart with the pure engine in
//! [`crate::domain::saju`], and answer `{"chart": …}`. Readings (`reading: true`, the default)
//! arrive with a later layer; until then they answer 501 `reading_unavailable`.

use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::json::AppJson;
use crate::domain::saju::input::{DEFAULT_TIMEZONE, SEOUL_LONGITUDE};
use crate::domain::saju::{
    BirthInput, Calendar, ChartOptions, SajuError, Sex, SolarTime, ZiHour, compute,
};
use crate::error::{ApiError, ApiResult};
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

/// A saju (Four Pillars) chart and, later, its reading.
#[utoipa::path(post, path = "/api/saju", tag = "saju", request_body = SajuRequest, responses(
    (status = 200, description = "`{\"chart\": …}` (with `reading: false`)", body = Object),
    (status = 400, description = "Malformed JSON"),
    (status = 422, description = "Invalid input; `error.field` names it"),
    (status = 501, description = "`reading: true`: readings are not available yet")))]
async fn saju(AppJson(req): AppJson<SajuRequest>) -> ApiResult<Json<serde_json::Value>> {
    if let Some(locale) = req.locale.as_deref()
        && !matches!(locale, "ko" | "en")
    {
        return Err(ApiError::invalid(
            "locale",
            "invalid_locale",
            format!("unsupported locale {locale:?}: expected ko or en"),
        ));
    }
    let options = ChartOptions {
        zi_hour: req.options.zi_hour,
        solar_time: req.options.solar_time,
    };
    let chart = compute(&req.birth_input(), req.sex, options)?;
    if req.reading {
        return Err(ApiError::not_implemented(
            "reading_unavailable",
            "readings are not available yet; send \"reading\": false for the chart alone",
        ));
    }
    let chart = serde_json::to_value(&chart).map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "chart": chart })))
}
