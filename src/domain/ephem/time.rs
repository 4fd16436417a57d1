//! Time scales: Julian Days in UT and TT, and ΔT = TT − UTC.
//!
//! Civil clocks run on UTC, so the offset that matters for a birth time is TT − UTC:
//! - from 1972-01-01 on it is exact, `32.184 s + (TAI − UTC)` from the leap-second table; after
//!   the last announced leap second (2017-01-01) it stays at 69.184 s, as skyfield assumes for
//!   future UTC dates (and as UTC itself will behave once leap seconds stop, CGPM 2022);
//! - from 1900 to 1971 civil time was kept on (near) UT1, so it is ΔT = TT − UT1 from the
//!   Espenak–Meeus polynomial fits to the observed values (within about 1 s of the table);
//! - before 1900 it is the long-term parabola of Morrison & Stephenson (2004).
//!
//! [`delta_t_ut1_seconds`] gives TT − UT1 with the long-term polynomial for the future, for
//! callers that need the Earth's rotation rather than the civil clock.

use chrono::{DateTime, TimeZone, Utc};

/// Julian Day of the Unix epoch, 1970-01-01T00:00:00Z.
pub const JD_UNIX_EPOCH: f64 = 2_440_587.5;
/// Julian Day of J2000.0 (2000-01-01T12:00 TT).
pub const J2000: f64 = 2_451_545.0;
/// Days per Julian century.
pub const DAYS_PER_CENTURY: f64 = 36_525.0;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// Dates (year, month; the 1st at 0h UTC) from which TAI − UTC took the listed whole seconds.
const LEAP_SECONDS: [(i32, u32, f64); 28] = [
    (1972, 1, 10.0),
    (1972, 7, 11.0),
    (1973, 1, 12.0),
    (1974, 1, 13.0),
    (1975, 1, 14.0),
    (1976, 1, 15.0),
    (1977, 1, 16.0),
    (1978, 1, 17.0),
    (1979, 1, 18.0),
    (1980, 1, 19.0),
    (1981, 7, 20.0),
    (1982, 7, 21.0),
    (1983, 7, 22.0),
    (1985, 7, 23.0),
    (1988, 1, 24.0),
    (1990, 1, 25.0),
    (1991, 1, 26.0),
    (1992, 7, 27.0),
    (1993, 7, 28.0),
    (1994, 7, 29.0),
    (1996, 1, 30.0),
    (1997, 7, 31.0),
    (1999, 1, 32.0),
    (2006, 1, 33.0),
    (2009, 1, 34.0),
    (2012, 7, 35.0),
    (2015, 7, 36.0),
    (2017, 1, 37.0),
];

/// TT − TAI in seconds.
const TT_MINUS_TAI: f64 = 32.184;

/// Julian Day Number (the day starting at noon) of a proleptic Gregorian date.
pub const fn jdn(year: i32, month: u32, day: u32) -> i64 {
    let a = (14 - month as i64) / 12;
    let y = year as i64 + 4800 - a;
    let m = month as i64 + 12 * a - 3;
    day as i64 + (153 * m + 2) / 5 + 365 * y + y / 4 - y / 100 + y / 400 - 32_045
}

/// Julian Day (UT) of 0h on a Gregorian date.
fn jd_midnight(year: i32, month: u32, day: u32) -> f64 {
    jdn(year, month, day) as f64 - 0.5
}

/// The Julian Day (UT, i.e. on the UTC clock) of an instant.
pub fn jd_ut(dt: DateTime<Utc>) -> f64 {
    let secs = dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) * 1e-9;
    JD_UNIX_EPOCH + secs / SECONDS_PER_DAY
}

/// The instant of a Julian Day on the UTC clock (saturating outside chrono's range).
pub fn utc_from_jd_ut(jd: f64) -> DateTime<Utc> {
    let secs = (jd - JD_UNIX_EPOCH) * SECONDS_PER_DAY;
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round();
    let (whole, nanos) = if nanos >= 1e9 {
        (whole + 1.0, 0.0)
    } else {
        (whole, nanos)
    };
    Utc.timestamp_opt(whole as i64, nanos as u32)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Decimal Gregorian year of a Julian Day (good enough for ΔT fits).
fn decimal_year(jd: f64) -> f64 {
    2000.0 + (jd - J2000) / 365.2425
}

/// TT − UTC in seconds at a Julian Day on the UTC clock (see the module notes).
pub fn delta_t_seconds(jd_ut: f64) -> f64 {
    if jd_ut >= jd_midnight(1972, 1, 1) {
        let mut tai_utc = 10.0;
        for &(y, m, s) in &LEAP_SECONDS {
            if jd_ut >= jd_midnight(y, m, 1) {
                tai_utc = s;
            } else {
                break;
            }
        }
        return TT_MINUS_TAI + tai_utc;
    }
    delta_t_historical(decimal_year(jd_ut))
}

/// TT − UT1 in seconds: observed fits up to 2005, then Espenak–Meeus' extrapolations and the
/// Morrison–Stephenson parabola (for rotation-dependent work; civil time uses
/// [`delta_t_seconds`]).
pub fn delta_t_ut1_seconds(jd_ut: f64) -> f64 {
    let y = decimal_year(jd_ut);
    if y < 1986.0 {
        return delta_t_historical(y);
    }
    if y < 2005.0 {
        let t = y - 2000.0;
        return 63.86 + 0.3345 * t - 0.060374 * t.powi(2)
            + 0.0017275 * t.powi(3)
            + 0.000651814 * t.powi(4)
            + 0.00002373599 * t.powi(5);
    }
    if y < 2050.0 {
        let t = y - 2000.0;
        return 62.92 + 0.32217 * t + 0.005589 * t * t;
    }
    let u = (y - 1820.0) / 100.0;
    if y < 2150.0 {
        return -20.0 + 32.0 * u * u - 0.5628 * (2150.0 - y);
    }
    -20.0 + 32.0 * u * u
}

/// ΔT before 1986 from the Espenak–Meeus piecewise polynomials (seconds).
fn delta_t_historical(y: f64) -> f64 {
    if y < 1860.0 {
        let u = (y - 1820.0) / 100.0;
        return -20.0 + 32.0 * u * u;
    }
    if y < 1900.0 {
        let t = y - 1860.0;
        return 7.62 + 0.5737 * t - 0.251754 * t.powi(2) + 0.01680668 * t.powi(3)
            - 0.0004473624 * t.powi(4)
            + t.powi(5) / 233_174.0;
    }
    if y < 1920.0 {
        let t = y - 1900.0;
        return -2.79 + 1.494119 * t - 0.0598939 * t.powi(2) + 0.0061966 * t.powi(3)
            - 0.000197 * t.powi(4);
    }
    if y < 1941.0 {
        let t = y - 1920.0;
        return 21.20 + 0.84493 * t - 0.076100 * t.powi(2) + 0.0020936 * t.powi(3);
    }
    if y < 1961.0 {
        let t = y - 1950.0;
        return 29.07 + 0.407 * t - t.powi(2) / 233.0 + t.powi(3) / 2547.0;
    }
    let t = y - 1975.0;
    45.45 + 1.067 * t - t.powi(2) / 260.0 - t.powi(3) / 718.0
}

/// The Julian Day in Terrestrial Time of a UTC instant.
pub fn jd_tt(dt: DateTime<Utc>) -> f64 {
    let ut = jd_ut(dt);
    ut + delta_t_seconds(ut) / SECONDS_PER_DAY
}

/// The UTC instant of a Julian Day in TT (inverse of [`jd_tt`], to well under a millisecond).
pub fn utc_from_jd_tt(jd_tt: f64) -> DateTime<Utc> {
    utc_from_jd_ut(jd_ut_from_jd_tt(jd_tt))
}

/// The Julian Day on the UTC clock of a Julian Day in TT.
pub fn jd_ut_from_jd_tt(jd_tt: f64) -> f64 {
    let mut ut = jd_tt - delta_t_seconds(jd_tt) / SECONDS_PER_DAY;
    for _ in 0..3 {
        ut = jd_tt - delta_t_seconds(ut) / SECONDS_PER_DAY;
    }
    ut
}

/// Julian centuries of TT since J2000.0.
pub fn centuries_since_j2000(jd_tt: f64) -> f64 {
    (jd_tt - J2000) / DAYS_PER_CENTURY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jd_of_j2000_noon() {
        let dt = Utc.with_ymd_and_hms(2000, 1, 1, 12, 0, 0).unwrap();
        assert!((jd_ut(dt) - J2000).abs() < 1e-9);
        assert_eq!(jdn(2000, 1, 1), 2_451_545);
    }

    #[test]
    fn leap_second_era_is_exact() {
        let dt = Utc.with_ymd_and_hms(2020, 6, 1, 0, 0, 0).unwrap();
        assert!((delta_t_seconds(jd_ut(dt)) - 69.184).abs() < 1e-9);
        let dt = Utc.with_ymd_and_hms(1972, 3, 1, 0, 0, 0).unwrap();
        assert!((delta_t_seconds(jd_ut(dt)) - 42.184).abs() < 1e-9);
    }

    #[test]
    fn tt_round_trip() {
        for (y, m) in [(1905, 3), (1950, 7), (1999, 12), (2048, 2)] {
            let dt = Utc.with_ymd_and_hms(y, m, 10, 7, 31, 12).unwrap();
            let back = utc_from_jd_tt(jd_tt(dt));
            assert!((back - dt).num_milliseconds().abs() <= 1, "{dt} → {back}");
        }
    }

    #[test]
    fn historical_delta_t_is_plausible() {
        // Observed: 1900 ≈ −2.7 s, 1950 ≈ 29.1 s, 1970 ≈ 40.2 s.
        let at = |y: i32| delta_t_seconds(jd_midnight(y, 1, 1));
        assert!((at(1900) + 2.7).abs() < 1.0);
        assert!((at(1950) - 29.1).abs() < 1.0);
        assert!((at(1970) - 40.2).abs() < 1.0);
    }
}
