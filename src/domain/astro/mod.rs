//! The natal-chart engine: apparent geocentric ecliptic longitudes of date (true equinox) of
//! the Sun, Moon, Mercury…Pluto and the mean lunar node, their speeds and retrograde flags,
//! sidereal time, the Ascendant and Midheaven, house cusps (Placidus, Koch, Porphyry, Equal,
//! Whole Sign) and aspects. Pure functions of their inputs; no I/O.
//!
//! - [`civil`]: local civil time in an IANA zone → UTC (rejecting gaps and overlaps).
//! - [`bodies`]: VSOP87D planets with light-time, aberration, FK5 and nutation; the Moon
//!   ([`moon`], Meeus ch. 47), Pluto ([`pluto`], Meeus ch. 37), the mean node.
//! - [`houses`]: GAST, Ascendant, MC and cusps, with the polar-circle fallback.
//! - [`aspects`]: the five major aspects with configurable orbs, applying/separating.
//! - [`chart`]: everything together in the [`Chart`] the API and the CLI print.
//!
//! Time scales, nutation and obliquity come from [`crate::domain::ephem`].

pub mod aspects;
pub mod bodies;
pub mod chart;
pub mod civil;
pub mod houses;
pub mod math;
pub mod moon;
pub mod pluto;

pub use aspects::{AspectKind, Orbs};
pub use bodies::Body;
pub use chart::{Birth, Chart, ChartOptions, compute, compute_at};
pub use houses::HouseSystem;

/// Why a chart could not be computed: each names the input field to blame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AstroError {
    #[error("latitude {0} is outside −90…90 degrees")]
    Latitude(f64),
    #[error("longitude {0} is outside −180…180 degrees")]
    Longitude(f64),
    #[error("unknown time zone {0:?}; use an IANA name such as \"Asia/Seoul\"")]
    UnknownTimezone(String),
    #[error("cannot read {0:?} as a local date-time; use YYYY-MM-DDTHH:MM[:SS]")]
    BadDatetime(String),
    #[error("{local} does not exist in {zone} (the clocks skipped it)")]
    NonexistentLocalTime { local: String, zone: String },
    #[error("{local} happened twice in {zone} (the clocks went back); give a UTC time instead")]
    AmbiguousLocalTime { local: String, zone: String },
    #[error("year {0} is outside the supported range 1800–2199")]
    OutOfRange(i32),
    #[error("unknown house system {0:?}; use placidus, koch, porphyry, equal or whole_sign")]
    UnknownHouseSystem(String),
    #[error("the {0} orb must be a number of degrees between 0 and 30")]
    InvalidOrb(&'static str),
}

impl AstroError {
    /// The request field to blame, as a dotted path of the API body.
    pub fn field(&self) -> String {
        match self {
            AstroError::Latitude(_) => "birth.latitude".into(),
            AstroError::Longitude(_) => "birth.longitude".into(),
            AstroError::UnknownTimezone(_) => "birth.timezone".into(),
            AstroError::BadDatetime(_)
            | AstroError::NonexistentLocalTime { .. }
            | AstroError::AmbiguousLocalTime { .. }
            | AstroError::OutOfRange(_) => "birth.datetime".into(),
            AstroError::UnknownHouseSystem(_) => "house_system".into(),
            AstroError::InvalidOrb(name) => format!("orbs.{name}"),
        }
    }

    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            AstroError::Latitude(_) => "invalid_latitude",
            AstroError::Longitude(_) => "invalid_longitude",
            AstroError::UnknownTimezone(_) => "unknown_timezone",
            AstroError::BadDatetime(_) => "invalid_datetime",
            AstroError::NonexistentLocalTime { .. } => "nonexistent_local_time",
            AstroError::AmbiguousLocalTime { .. } => "ambiguous_local_time",
            AstroError::OutOfRange(_) => "datetime_out_of_range",
            AstroError::UnknownHouseSystem(_) => "unknown_house_system",
            AstroError::InvalidOrb(_) => "invalid_orb",
        }
    }
}
