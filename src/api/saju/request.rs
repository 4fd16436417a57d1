//! The `POST /api/saju` body: serde structs only (no handler), so the fuzz crate in `fuzz/`
//! compiles this file with the domain engine and nothing of the server.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::saju::input::{DEFAULT_TIMEZONE, SEOUL_LONGITUDE};
use crate::domain::saju::{BirthInput, Calendar, Sex, SolarTime, ZiHour};

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
