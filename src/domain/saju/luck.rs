//! 대운 (luck pillars): ten-year pillars stepping from the month pillar, forward for a yang
//! year stem and a male or a yin year stem and a female, backward otherwise.
//!
//! Start age = days between the birth instant and the next jie (forward) or the previous jie
//! (backward), divided by 3 (three days = one year). `start_age` is that exact quotient in
//! years; `start_age_rounded` rounds it to the nearest whole year (halves up) with a minimum of
//! 1 (the common 대운수 convention). Ages are counted in completed years since birth (만 나이);
//! each pillar starts at `start_age_rounded + 10·k`, in Gregorian year `birth year + age`.

use serde::Serialize;

use super::ganzhi::{GanZhi, Stem, YinYang};
use super::input::Sex;
use super::pillars::{PillarOut, pillar_out};

/// Which way the luck pillars run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forward,
    Backward,
}

/// One ten-year luck pillar.
#[derive(Debug, Clone, Serialize)]
pub struct LuckPillar {
    /// Ordinal, 1 = the first luck pillar.
    pub number: u8,
    /// Age (completed years) at which it begins.
    pub start_age: u32,
    /// Gregorian year in which it begins.
    pub start_year: i32,
    #[serde(flatten)]
    pub pillar: PillarOut,
}

/// The luck section of a chart.
#[derive(Debug, Clone, Serialize)]
pub struct Luck {
    pub direction: Direction,
    /// Days from birth to the governing jie (next if forward, previous if backward).
    pub days_to_jie: f64,
    /// Exact start age in years (`days_to_jie / 3`).
    pub start_age: f64,
    /// Rounded to the nearest year (halves up), at least 1.
    pub start_age_rounded: u32,
    /// The rounding and age-counting rule, spelled out.
    pub convention: &'static str,
    pub pillars: Vec<LuckPillar>,
}

/// Direction from the year stem's polarity and the sex.
pub fn direction(year_stem: Stem, sex: Sex) -> Direction {
    match (year_stem.yin_yang(), sex) {
        (YinYang::Yang, Sex::Male) | (YinYang::Yin, Sex::Female) => Direction::Forward,
        _ => Direction::Backward,
    }
}

/// Rounded start age: nearest year, halves up, minimum 1.
pub fn round_start_age(exact: f64) -> u32 {
    ((exact + 0.5).floor() as u32).max(1)
}

/// Build the luck pillars.
pub fn luck(
    month: GanZhi,
    day_master: Stem,
    dir: Direction,
    days_to_jie: f64,
    birth_year: i32,
    count: u8,
) -> Luck {
    let start_age = days_to_jie / 3.0;
    let rounded = round_start_age(start_age);
    let step = match dir {
        Direction::Forward => 1,
        Direction::Backward => -1,
    };
    let pillars = (1..=count)
        .map(|k| {
            let age = rounded + 10 * u32::from(k - 1);
            LuckPillar {
                number: k,
                start_age: age,
                start_year: birth_year + age as i32,
                pillar: pillar_out(month.offset(step * i64::from(k)), day_master, false),
            }
        })
        .collect();
    Luck {
        direction: dir,
        days_to_jie,
        start_age,
        start_age_rounded: rounded,
        convention: "3 days = 1 year; start_age_rounded = nearest year (halves up), minimum 1; \
                     ages in completed years (만 나이)",
        pillars,
    }
}
