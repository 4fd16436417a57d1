//! The saju engine's errors: each names the input field at fault (`birth.date`, …) and a
//! stable snake_case code, so the API can answer 422 with the field and the CLI can say which
//! flag to fix.

/// Why a chart could not be computed from the given birth data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SajuError {
    #[error("invalid date {value:?}: {reason} (expected YYYY-MM-DD)")]
    InvalidDate { value: String, reason: String },
    #[error("invalid time {value:?}: expected HH:MM or HH:MM:SS on a 24-hour clock (00:00–23:59)")]
    InvalidTime { value: String },
    #[error("unknown time zone {value:?}: expected an IANA name such as Asia/Seoul")]
    InvalidTimezone { value: String },
    #[error("invalid longitude {value}: expected degrees east in [-180, 180]")]
    InvalidLongitude { value: f64 },
    #[error("{date} is outside the supported range 1900-01-01 to 2100-12-31 (solar calendar)")]
    OutOfRange { date: String },
    #[error(
        "{local} does not exist in {zone}: the clocks jumped forward over it (daylight saving or \
         a change of standard offset); choose a time outside the gap"
    )]
    NonexistentLocalTime { local: String, zone: String },
    #[error(
        "{local} occurred twice in {zone} (clocks turned back, offsets {first} and {second}); \
         it cannot be resolved to one instant — give the time in a fixed-offset zone such as \
         Etc/GMT-9"
    )]
    AmbiguousLocalTime {
        local: String,
        zone: String,
        first: String,
        second: String,
    },
    #[error(
        "lunar {year} has no leap month {month} in the Korean calendar{hint}; set leap_month \
         to false or pick the leap month of that year"
    )]
    InvalidLeapMonth { year: i32, month: u8, hint: String },
    #[error("leap_month is only meaningful with calendar \"lunar\"")]
    LeapMonthWithSolar,
    #[error("invalid Korean lunar date {value:?}: {reason}")]
    InvalidLunarDate { value: String, reason: String },
}

impl SajuError {
    /// The dotted request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::InvalidDate { .. } | Self::OutOfRange { .. } | Self::InvalidLunarDate { .. } => {
                "birth.date"
            }
            Self::InvalidTime { .. }
            | Self::NonexistentLocalTime { .. }
            | Self::AmbiguousLocalTime { .. } => "birth.time",
            Self::InvalidTimezone { .. } => "birth.timezone",
            Self::InvalidLongitude { .. } => "birth.longitude",
            Self::InvalidLeapMonth { .. } | Self::LeapMonthWithSolar => "birth.leap_month",
        }
    }

    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidDate { .. } => "invalid_date",
            Self::InvalidTime { .. } => "invalid_time",
            Self::InvalidTimezone { .. } => "unknown_timezone",
            Self::InvalidLongitude { .. } => "invalid_longitude",
            Self::OutOfRange { .. } => "date_out_of_range",
            Self::NonexistentLocalTime { .. } => "nonexistent_local_time",
            Self::AmbiguousLocalTime { .. } => "ambiguous_local_time",
            Self::InvalidLeapMonth { .. } => "invalid_leap_month",
            Self::LeapMonthWithSolar => "leap_month_without_lunar",
            Self::InvalidLunarDate { .. } => "invalid_lunar_date",
        }
    }
}
