//! The `POST /api/astrology` body and its mapping to the engine's input: serde structs and
//! one function (no handler), so the fuzz crate in `fuzz/` compiles this file with the domain
//! engine and nothing of the server.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::astro::{AstroError, Birth, ChartOptions, HouseSystem, Orbs};

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
