//! `POST /api/astrology`: a natal chart (planets, houses, aspects) from birth data, and —
//! once the reading pipeline lands — a grounded reading. `reading: false` answers
//! `{"chart": …}`; `reading: true` (the default) answers 501 `reading_unavailable` for now.
//! Input errors are 422 naming the field (`birth.latitude`, `house_system`, …).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::json::AppJson;
use crate::domain::astro::{self, AstroError, Birth, Chart, ChartOptions, HouseSystem, Orbs};
use crate::error::{ApiError, ApiResult};
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

/// A natal chart and (later) its reading.
#[utoipa::path(post, path = "/api/astrology", tag = "astrology",
    request_body = AstrologyRequest,
    responses(
        (status = 200, description = "The chart (`reading: false`)", body = AstrologyResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 422, description = "Invalid input; `error.field` names it"),
        (status = 501, description = "Readings are not available yet (`reading: true`)"),
    ))]
async fn astrology(
    AppJson(req): AppJson<AstrologyRequest>,
) -> ApiResult<AppJson<AstrologyResponse>> {
    let (birth, opts) = to_engine(&req)?;
    let chart = tokio::task::spawn_blocking(move || astro::compute(&birth, &opts))
        .await
        .map_err(ApiError::internal)??;
    if req.reading {
        return Err(ApiError::not_implemented(
            "reading_unavailable",
            "astrology readings are not available yet; send \"reading\": false for the chart",
        ));
    }
    Ok(AppJson(AstrologyResponse { chart }))
}
