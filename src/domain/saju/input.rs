//! Birth input: parsing of dates and times, the options (자시 convention, solar-time
//! correction), Korean lunar → solar conversion, and civil time → UTC through the IANA zone.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use icu_calendar::cal::KoreanTraditional;
use icu_calendar::error::LunisolarDateError;
use icu_calendar::types::Month;
use icu_calendar::{Date, Iso};
use serde::{Deserialize, Serialize};

use super::error::SajuError;

/// The first and last supported solar dates (inclusive).
pub const MIN_DATE: (i32, u32, u32) = (1900, 1, 1);
pub const MAX_DATE: (i32, u32, u32) = (2100, 12, 31);

/// Defines a string-valued option enum with serde, `FromStr` and `Display`.
macro_rules! option_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// The accepted spellings.
            pub const VALUES: &'static [&'static str] = &[$($text),+];
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!("expected one of: {}", Self::VALUES.join(", "))),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

option_enum!(
    /// Which calendar `birth.date` is written in.
    Calendar {
        /// Gregorian.
        Solar = "solar",
        /// Korean lunisolar (KASI), with `leap_month` for 윤달.
        Lunar = "lunar",
    }
);

option_enum!(
    /// Sex, which with the year stem decides the direction of the luck pillars.
    Sex { Male = "male", Female = "female" }
);

option_enum!(
    /// How 23:00–24:00 is treated.
    ZiHour {
        /// 정자시 (default): 23:00 already belongs to the next day; the day pillar advances.
        Jeong = "jeong",
        /// 야자시: 23:00–24:00 keeps today's day pillar; the hour is 子 with the stem of the
        /// next day's 子 hour (五鼠遁 from tomorrow's stem).
        Ya = "ya",
    }
);

option_enum!(
    /// Which clock decides the day and hour pillars.
    SolarTime {
        /// The civil clock as written.
        None = "none",
        /// Standard meridian 127.5°E (UTC+8:30): the customary "minus 30 minutes" for Korea,
        /// applied to the instant, so summer time and the +8:30 eras are handled.
        Fixed30 = "fixed30",
        /// Local mean time at `birth.longitude` (UTC + longitude/15 h). The default.
        Lmt = "lmt",
        /// Apparent (true) solar time: local mean time plus the equation of time.
        True = "true",
    }
);

#[allow(clippy::derivable_impls)]
impl Default for Calendar {
    fn default() -> Self {
        Self::Solar
    }
}
#[allow(clippy::derivable_impls)]
impl Default for ZiHour {
    fn default() -> Self {
        Self::Jeong
    }
}
#[allow(clippy::derivable_impls)]
impl Default for SolarTime {
    /// `lmt`: the day and hour pillars follow the Sun at the birthplace. Korean civil time is
    /// set for 135°E while Seoul lies at 127°E, so the civil clock runs ~32 minutes ahead of
    /// the Sun; the usual Korean practice (and most 만세력 programs) corrects by longitude.
    /// `true` adds the equation of time (±16 min), which traditional practice does not.
    fn default() -> Self {
        Self::Lmt
    }
}

/// Seoul City Hall, degrees east: the default longitude.
pub const SEOUL_LONGITUDE: f64 = 126.978;
/// The default time zone.
pub const DEFAULT_TIMEZONE: &str = "Asia/Seoul";

/// Parse `YYYY-MM-DD` into (year, month, day) numbers without validating the calendar.
fn parse_ymd(value: &str) -> Result<(i32, u32, u32), SajuError> {
    let bad = |reason: &str| SajuError::InvalidDate {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = value.trim().split('-').collect();
    if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
        return Err(bad("not in YYYY-MM-DD form"));
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| bad("not a number"));
    let y = num(parts[0])?;
    Ok((y as i32, num(parts[1])?, num(parts[2])?))
}

/// Parse a Gregorian `YYYY-MM-DD`.
pub fn parse_solar_date(value: &str) -> Result<NaiveDate, SajuError> {
    let (y, m, d) = parse_ymd(value)?;
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| SajuError::InvalidDate {
        value: value.to_owned(),
        reason: "no such day in the Gregorian calendar".to_owned(),
    })
}

/// Parse `HH:MM` or `HH:MM:SS` (24-hour).
pub fn parse_time(value: &str) -> Result<NaiveTime, SajuError> {
    let v = value.trim();
    NaiveTime::parse_from_str(v, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M"))
        .ok()
        .filter(|_| v.len() == 5 || v.len() == 8)
        .ok_or_else(|| SajuError::InvalidTime {
            value: value.to_owned(),
        })
}

/// Parse an IANA zone name.
pub fn parse_timezone(value: &str) -> Result<Tz, SajuError> {
    value
        .trim()
        .parse::<Tz>()
        .map_err(|_| SajuError::InvalidTimezone {
            value: value.to_owned(),
        })
}

/// Check a longitude in degrees east.
pub fn check_longitude(value: f64) -> Result<f64, SajuError> {
    if value.is_finite() && (-180.0..=180.0).contains(&value) {
        Ok(value)
    } else {
        Err(SajuError::InvalidLongitude { value })
    }
}

/// Reject solar dates outside [`MIN_DATE`, `MAX_DATE`].
pub fn check_range(date: NaiveDate) -> Result<NaiveDate, SajuError> {
    let min = NaiveDate::from_ymd_opt(MIN_DATE.0, MIN_DATE.1, MIN_DATE.2);
    let max = NaiveDate::from_ymd_opt(MAX_DATE.0, MAX_DATE.1, MAX_DATE.2);
    match (min, max) {
        (Some(min), Some(max)) if date >= min && date <= max => Ok(date),
        _ => Err(SajuError::OutOfRange {
            date: date.to_string(),
        }),
    }
}

/// A Korean lunisolar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LunarDate {
    /// The Gregorian year in which the lunar year begins.
    pub year: i32,
    pub month: u8,
    pub day: u8,
    /// Whether the month is a leap month (윤달).
    pub leap_month: bool,
}

/// Convert a Korean lunar date to the Gregorian date (KASI rules, via icu_calendar).
pub fn lunar_to_solar(value: &str, leap_month: bool) -> Result<(NaiveDate, LunarDate), SajuError> {
    let (y, m, d) = parse_ymd(value)?;
    let invalid = |reason: String| SajuError::InvalidLunarDate {
        value: value.to_owned(),
        reason,
    };
    if !(1..=12).contains(&m) {
        return Err(invalid("the month must be 1–12".to_owned()));
    }
    if !(1..=30).contains(&d) {
        return Err(invalid("the day must be 1–30".to_owned()));
    }
    if !(MIN_DATE.0 - 1..=MAX_DATE.0).contains(&y) {
        return Err(SajuError::OutOfRange {
            date: format!("lunar {value}"),
        });
    }
    let (m8, d8) = (m as u8, d as u8);
    let month = if leap_month {
        Month::leap(m8)
    } else {
        Month::new(m8)
    };
    let date = Date::try_new_korean_traditional(y, month, d8).map_err(|e| match e {
        LunisolarDateError::MonthNotInYear if leap_month => SajuError::InvalidLeapMonth {
            year: y,
            month: m8,
            hint: leap_month_of(y)
                .map(|lm| format!(" (its leap month is {lm})"))
                .unwrap_or_else(|| " (it has no leap month)".to_owned()),
        },
        LunisolarDateError::InvalidDay { max } => {
            invalid(format!("that month has only {max} days"))
        }
        other => invalid(other.to_string()),
    })?;
    let iso = date.to_calendar(Iso);
    let solar = NaiveDate::from_ymd_opt(
        iso.year().extended_year(),
        u32::from(iso.month().ordinal),
        u32::from(iso.day_of_month().0),
    )
    .ok_or_else(|| invalid("outside the representable range".to_owned()))?;
    let lunar = LunarDate {
        year: y,
        month: m8,
        day: d8,
        leap_month,
    };
    Ok((solar, lunar))
}

/// The leap month of a Korean lunar year, if any.
pub fn leap_month_of(year: i32) -> Option<u8> {
    (1..=12u8).find(|&m| Date::try_new_korean_traditional(year, Month::leap(m), 1).is_ok())
}

/// The Korean lunar date of a Gregorian date.
pub fn solar_to_lunar(date: NaiveDate) -> Option<LunarDate> {
    use chrono::Datelike;
    let iso = Date::try_new_iso(date.year(), date.month() as u8, date.day() as u8).ok()?;
    let k = iso.to_calendar(KoreanTraditional::new());
    let month = k.month();
    Some(LunarDate {
        year: k.cyclic_year().related_iso,
        month: month.to_input().number(),
        day: k.day_of_month().0,
        leap_month: month.to_input().is_leap(),
    })
}

/// Resolve a civil local time in a zone to UTC, refusing gaps and overlaps explicitly.
pub fn civil_to_utc(local: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, SajuError> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(dt) => Ok(dt.with_timezone(&Utc)),
        LocalResult::None => Err(SajuError::NonexistentLocalTime {
            local: local.format("%Y-%m-%d %H:%M:%S").to_string(),
            zone: tz.name().to_owned(),
        }),
        LocalResult::Ambiguous(a, b) => Err(SajuError::AmbiguousLocalTime {
            local: local.format("%Y-%m-%d %H:%M:%S").to_string(),
            zone: tz.name().to_owned(),
            first: a.format("%:z").to_string(),
            second: b.format("%:z").to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_leap_months() {
        assert_eq!(leap_month_of(2023), Some(2));
        assert_eq!(leap_month_of(2012), Some(3));
        let (solar, _) = lunar_to_solar("2012-03-01", true).unwrap();
        assert_eq!(solar.to_string(), "2012-04-21");
        let err = lunar_to_solar("2012-04-01", true).unwrap_err();
        assert_eq!(err.code(), "invalid_leap_month");
    }

    #[test]
    fn times() {
        assert!(parse_time("25:00").is_err());
        assert!(parse_time("7:5").is_err());
        assert_eq!(parse_time("07:05").unwrap().to_string(), "07:05:00");
        assert!(parse_solar_date("2023-02-29").is_err());
    }
}
