//! Assemble a chart from birth input: resolve the instant (lunar → solar, civil → UTC), apply
//! the solar-time correction, compute the pillars, five elements, luck and solar terms.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde::Serialize;

use super::error::SajuError;
use super::ganzhi::{Element, GanZhi, Stem, YinYang};
use super::input::{
    Calendar, LunarDate, Sex, SolarTime, ZiHour, check_longitude, check_range, civil_to_utc,
    lunar_to_solar, parse_solar_date, parse_time, parse_timezone, solar_to_lunar,
};
use super::luck::{Direction, Luck, direction, luck};
use super::pillars::{
    PillarOut, day_and_hour, day_without_time, pillar_out, year_and_month_from_jie,
};
use crate::domain::ephem::solar_terms::{SolarTerm, around};
use crate::domain::ephem::sun::equation_of_time_seconds;
use crate::domain::ephem::time::{jd_tt, utc_from_jd_tt};

/// How many luck pillars a chart lists.
pub const LUCK_PILLARS: u8 = 10;

/// Birth data as given (strings are parsed and validated by [`compute`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BirthInput {
    /// `YYYY-MM-DD` in `calendar`.
    pub date: String,
    /// `HH:MM` or `HH:MM:SS` local civil time; `None` → no hour pillar.
    pub time: Option<String>,
    pub calendar: Calendar,
    /// For lunar dates: the month is the leap month (윤달).
    pub leap_month: bool,
    /// IANA zone of the civil time.
    pub timezone: String,
    /// Degrees east, for local mean time.
    pub longitude: f64,
}

/// Chart options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChartOptions {
    pub zi_hour: ZiHour,
    pub solar_time: SolarTime,
}

/// The resolved input echoed in the chart.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedInput {
    pub calendar: Calendar,
    /// The date as given.
    pub date: String,
    pub leap_month: bool,
    /// The Gregorian date of birth.
    pub solar_date: String,
    /// The Korean lunar date of birth.
    pub lunar_date: Option<LunarDate>,
    /// The time as given, normalised to HH:MM:SS; null when unknown.
    pub time: Option<String>,
    pub time_known: bool,
    pub timezone: String,
    pub longitude: f64,
    pub sex: Sex,
    pub zi_hour: ZiHour,
    pub solar_time: SolarTime,
    /// The civil local time used (12:00 when the time is unknown).
    pub local_civil: String,
    /// The instant, RFC 3339 UTC.
    pub utc: String,
    /// The zone's UTC offset at that instant (seconds east).
    pub utc_offset_seconds: i32,
    /// Local mean time at `longitude`.
    pub local_mean_time: String,
    /// Apparent solar time minus mean solar time at the instant.
    pub equation_of_time_seconds: f64,
    /// The clock reading the day and hour pillars were taken from (per `solar_time`).
    pub pillar_clock: String,
    /// `pillar_clock` minus `local_civil`, seconds.
    pub correction_seconds: f64,
}

/// The four pillars.
#[derive(Debug, Clone, Serialize)]
pub struct Pillars {
    pub year: PillarOut,
    pub month: PillarOut,
    pub day: PillarOut,
    /// Null when the birth time is unknown.
    pub hour: Option<PillarOut>,
}

/// The day master (日干).
#[derive(Debug, Clone, Serialize)]
pub struct DayMaster {
    pub hanja: &'static str,
    pub hangul: &'static str,
    pub element: Element,
    pub yin_yang: YinYang,
}

/// Counts of the five elements over the visible characters (stems and branches of the
/// pillars present: 8 with a time, 6 without); hidden stems are not counted.
#[derive(Debug, Clone, Serialize)]
pub struct FiveElements {
    pub wood: u8,
    pub fire: u8,
    pub earth: u8,
    pub metal: u8,
    pub water: u8,
    pub total: u8,
    /// Elements absent from the visible characters.
    pub missing: Vec<Element>,
}

/// A solar term and its instant.
#[derive(Debug, Clone, Serialize)]
pub struct TermOut {
    /// Korean name (e.g. 입춘).
    pub name: &'static str,
    pub hanja: &'static str,
    pub name_en: &'static str,
    /// Apparent solar longitude, degrees.
    pub longitude: f64,
    /// One of the twelve 節 that begin a month.
    pub jie: bool,
    /// RFC 3339 UTC.
    pub utc: String,
}

/// Previous and next solar terms around the birth instant.
#[derive(Debug, Clone, Serialize)]
pub struct SolarTerms {
    pub previous: TermOut,
    pub next: TermOut,
}

/// A complete saju chart.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub input: ResolvedInput,
    pub pillars: Pillars,
    pub day_master: DayMaster,
    pub five_elements: FiveElements,
    pub luck: Luck,
    pub solar_terms: SolarTerms,
}

fn rfc3339(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn local_string(dt: NaiveDateTime) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn term_out(term: SolarTerm, jd: f64) -> TermOut {
    TermOut {
        name: term.hangul(),
        hanja: term.hanja(),
        name_en: term.english(),
        longitude: term.longitude_deg(),
        jie: term.is_jie(),
        utc: rfc3339(utc_from_jd_tt(jd)),
    }
}

/// Shift a UTC instant by fractional seconds into a naive clock reading.
fn clock(utc: DateTime<Utc>, offset_seconds: f64) -> NaiveDateTime {
    utc.naive_utc() + Duration::milliseconds((offset_seconds * 1000.0).round() as i64)
}

fn count_elements(pillars: &[GanZhi]) -> FiveElements {
    let mut counts = [0u8; 5];
    for gz in pillars {
        counts[gz.stem().element().index()] += 1;
        counts[gz.branch().element().index()] += 1;
    }
    FiveElements {
        wood: counts[0],
        fire: counts[1],
        earth: counts[2],
        metal: counts[3],
        water: counts[4],
        total: counts.iter().sum(),
        missing: Element::ALL
            .into_iter()
            .filter(|e| counts[e.index()] == 0)
            .collect(),
    }
}

/// Compute a chart.
pub fn compute(birth: &BirthInput, sex: Sex, options: ChartOptions) -> Result<Chart, SajuError> {
    let tz = parse_timezone(&birth.timezone)?;
    let longitude = check_longitude(birth.longitude)?;
    let (solar_date, lunar_date) = match birth.calendar {
        Calendar::Solar => {
            if birth.leap_month {
                return Err(SajuError::LeapMonthWithSolar);
            }
            let d = parse_solar_date(&birth.date)?;
            (d, None)
        }
        Calendar::Lunar => {
            let (d, l) = lunar_to_solar(&birth.date, birth.leap_month)?;
            (d, Some(l))
        }
    };
    let solar_date = check_range(solar_date)?;
    let time = birth.time.as_deref().map(parse_time).transpose()?;
    let civil = solar_date.and_time(time.unwrap_or(NaiveTime::MIN + Duration::hours(12)));
    let utc = civil_to_utc(civil, tz)?;
    let utc_offset = (civil - utc.naive_utc()).num_seconds() as i32;
    let jd = jd_tt(utc);

    let lmt_offset = longitude / 15.0 * 3600.0;
    let eot = equation_of_time_seconds(jd);
    let correction_offset = match options.solar_time {
        SolarTime::None => f64::from(utc_offset),
        SolarTime::Fixed30 => 8.5 * 3600.0,
        SolarTime::Lmt => lmt_offset,
        SolarTime::True => lmt_offset + eot,
    };
    let pillar_clock = clock(utc, correction_offset);

    let terms = around(jd);
    let (year, month, _saju_year) =
        year_and_month_from_jie(terms.previous_jie.0, terms.previous_jie.1);
    let (day, hour) = match time {
        Some(_) => {
            let (d, h) = day_and_hour(pillar_clock, options.zi_hour);
            (d, Some(h))
        }
        None => (day_without_time(solar_date), None),
    };
    let dm: Stem = day.stem();

    let dir = direction(year.stem(), sex);
    let days_to_jie = match dir {
        Direction::Forward => terms.next_jie.1 - jd,
        Direction::Backward => jd - terms.previous_jie.1,
    };
    let luck: Luck = luck(month, dm, dir, days_to_jie, solar_date.year(), LUCK_PILLARS);

    let mut present = vec![year, month, day];
    present.extend(hour);
    let (prev_term, prev_at) = terms.previous;
    let (next_t, next_at) = terms.next;

    Ok(Chart {
        input: ResolvedInput {
            calendar: birth.calendar,
            date: birth.date.clone(),
            leap_month: birth.leap_month,
            solar_date: solar_date.to_string(),
            lunar_date: lunar_date.or_else(|| solar_to_lunar(solar_date)),
            time: time.map(|t| t.format("%H:%M:%S").to_string()),
            time_known: time.is_some(),
            timezone: tz.name().to_owned(),
            longitude,
            sex,
            zi_hour: options.zi_hour,
            solar_time: options.solar_time,
            local_civil: local_string(civil),
            utc: rfc3339(utc),
            utc_offset_seconds: utc_offset,
            local_mean_time: local_string(clock(utc, lmt_offset)),
            equation_of_time_seconds: (eot * 10.0).round() / 10.0,
            pillar_clock: local_string(pillar_clock),
            correction_seconds: (correction_offset - f64::from(utc_offset)).round(),
        },
        pillars: Pillars {
            year: pillar_out(year, dm, false),
            month: pillar_out(month, dm, false),
            day: pillar_out(day, dm, true),
            hour: hour.map(|h| pillar_out(h, dm, false)),
        },
        day_master: DayMaster {
            hanja: dm.hanja(),
            hangul: dm.hangul(),
            element: dm.element(),
            yin_yang: dm.yin_yang(),
        },
        five_elements: count_elements(&present),
        luck,
        solar_terms: SolarTerms {
            previous: term_out(prev_term, prev_at),
            next: term_out(next_t, next_at),
        },
    })
}
