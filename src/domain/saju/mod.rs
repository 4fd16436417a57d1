//! The 만세력 (saju, Four Pillars) engine — pure calendar arithmetic, no I/O.
//!
//! Conventions (DESIGN.md §4):
//! - **Year** changes at 立春 (apparent solar longitude 315°), **month** at the twelve jie,
//!   month stem by 五虎遁; both from the UTC instant, so they never depend on a clock choice.
//! - **Day** = (JDN + 49) mod 60 (0 = 甲子) of the local date read on the `solar_time` clock;
//!   **hour** branch in two-hour blocks from 23:00 on that clock, stem by 五鼠遁.
//! - `zi_hour`: `jeong` (default) — 23:00 starts the next day; `ya` — 23:00–24:00 keeps today's
//!   day pillar (the hour stem is tomorrow's 子 hour in both).
//! - `solar_time`: `lmt` by default (see [`SolarTime`]'s `Default`).
//! - Civil time → UTC through the IANA zone (Korea: UTC+8:30 in 1908–11 and 1954–61, summer
//!   time 1948–51, 1955–60, 1987–88); a local time in a gap or an overlap is an error.
//! - Lunar input follows the Korean calendar (icu_calendar's KoreanTraditional = KASI tables).
//! - Supported: solar dates 1900-01-01 to 2100-12-31.
//! - Hidden stems: see [`relations::HIDDEN_STEMS`]; luck rounding: see [`luck`].

pub mod chart;
pub mod error;
pub mod ganzhi;
pub mod input;
pub mod luck;
pub mod pillars;
pub mod relations;

pub use chart::{BirthInput, Chart, ChartOptions, compute};
pub use error::SajuError;
pub use input::{Calendar, Sex, SolarTime, ZiHour};
