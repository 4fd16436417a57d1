//! The 24 solar terms (節氣): names, which twelve are 節 (jie, the month boundaries of saju),
//! and their instants, found by Newton iteration on the Sun's apparent longitude.
//!
//! Terms are numbered from 立春 (index 0, 315°) in steps of 15°: even indices are the jie that
//! open the saju months (寅 month = 立春 … 丑 month = 小寒), odd indices are the 中氣 (qi).

use std::f64::consts::{PI, TAU};

use super::sun::apparent_longitude;
use super::time::jdn;

/// Mean motion of the Sun, radians per day (used to step towards a root).
const MEAN_RATE: f64 = TAU / 365.242_19;

/// One of the 24 solar terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SolarTerm {
    /// 0 = 立春 … 23 = 大寒.
    pub index: u8,
}

/// (hangul, hanja, English) names from 立春.
const NAMES: [(&str, &str, &str); 24] = [
    ("입춘", "立春", "Beginning of Spring"),
    ("우수", "雨水", "Rain Water"),
    ("경칩", "驚蟄", "Awakening of Insects"),
    ("춘분", "春分", "Spring Equinox"),
    ("청명", "清明", "Pure Brightness"),
    ("곡우", "穀雨", "Grain Rain"),
    ("입하", "立夏", "Beginning of Summer"),
    ("소만", "小滿", "Grain Buds"),
    ("망종", "芒種", "Grain in Ear"),
    ("하지", "夏至", "Summer Solstice"),
    ("소서", "小暑", "Minor Heat"),
    ("대서", "大暑", "Major Heat"),
    ("입추", "立秋", "Beginning of Autumn"),
    ("처서", "處暑", "End of Heat"),
    ("백로", "白露", "White Dew"),
    ("추분", "秋分", "Autumn Equinox"),
    ("한로", "寒露", "Cold Dew"),
    ("상강", "霜降", "Frost's Descent"),
    ("입동", "立冬", "Beginning of Winter"),
    ("소설", "小雪", "Minor Snow"),
    ("대설", "大雪", "Major Snow"),
    ("동지", "冬至", "Winter Solstice"),
    ("소한", "小寒", "Minor Cold"),
    ("대한", "大寒", "Major Cold"),
];

impl SolarTerm {
    /// The term with this index (taken mod 24).
    pub fn new(index: usize) -> Self {
        Self {
            index: (index % 24) as u8,
        }
    }
    /// 立春, the start of the saju year.
    pub const IPCHUN: SolarTerm = SolarTerm { index: 0 };
    /// Korean name (e.g. 입춘).
    pub fn hangul(self) -> &'static str {
        NAMES[self.index as usize].0
    }
    /// Hanja name (e.g. 立春).
    pub fn hanja(self) -> &'static str {
        NAMES[self.index as usize].1
    }
    /// English name.
    pub fn english(self) -> &'static str {
        NAMES[self.index as usize].2
    }
    /// Whether this is one of the twelve 節 (jie) that begin a saju month.
    pub fn is_jie(self) -> bool {
        self.index.is_multiple_of(2)
    }
    /// The apparent solar longitude of the term, degrees.
    pub fn longitude_deg(self) -> f64 {
        (315.0 + 15.0 * f64::from(self.index)) % 360.0
    }
    /// For a jie, the saju month it opens: 0 = 寅 month … 11 = 丑 month.
    pub fn month_index(self) -> u8 {
        self.index / 2
    }
    /// The term after this one.
    pub fn next(self) -> Self {
        Self::new(self.index as usize + 1)
    }
    /// The term before this one.
    pub fn previous(self) -> Self {
        Self::new(self.index as usize + 23)
    }
}

/// Signed difference a − b reduced to (−π, π].
fn angle_diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(TAU);
    if d > PI { d - TAU } else { d }
}

/// The Sun's apparent motion (radians/day) from the Kepler equation of centre: the mean rate
/// times (1 + 2e·cos M). Close enough to the truth that Newton's method converges in ~3 steps.
fn solar_rate(jd_tt: f64) -> f64 {
    let m = (357.529_11 + 0.985_600_28 * (jd_tt - 2_451_545.0)).to_radians();
    MEAN_RATE * (1.0 + 2.0 * 0.016_709 * m.cos() + 2.5 * 0.016_709f64.powi(2) * (2.0 * m).cos())
}

/// The instant (JD, TT) when the Sun's apparent longitude equals `longitude` (radians), the
/// crossing nearest `jd_tt_guess` (the guess must be within about ±180 days).
pub fn instant_of_longitude(longitude: f64, jd_tt_guess: f64) -> f64 {
    let mut jd = jd_tt_guess;
    for _ in 0..12 {
        let step = angle_diff(longitude, apparent_longitude(jd)) / solar_rate(jd);
        jd += step;
        if step.abs() < 1e-8 {
            break;
        }
    }
    jd
}

/// The term the Sun is in at an instant (the last one reached), and an estimate of when it
/// began, from the Sun's longitude.
fn term_at(jd_tt: f64) -> (SolarTerm, f64) {
    let lon = apparent_longitude(jd_tt);
    let steps = ((lon.to_degrees() - 315.0).rem_euclid(360.0) / 15.0).floor() as usize;
    let term = SolarTerm::new(steps);
    let past = angle_diff(lon, term.longitude_deg().to_radians()) / solar_rate(jd_tt);
    (term, jd_tt - past)
}

/// The instant (JD, TT) of `term` nearest `jd_tt_guess`.
pub fn term_instant_near(term: SolarTerm, jd_tt_guess: f64) -> f64 {
    instant_of_longitude(term.longitude_deg().to_radians(), jd_tt_guess)
}

/// The instant of term `index` (0 = 立春) of the saju year that starts in Gregorian `year`
/// (so 小寒 and 大寒, indices 22–23, fall in January of `year + 1`).
pub fn term_instant(year: i32, term: SolarTerm) -> f64 {
    let feb4 = jdn(year, 2, 4) as f64;
    term_instant_near(term, feb4 + 15.218 * f64::from(term.index))
}

/// The most recent term at or before an instant, with its instant (JD, TT).
pub fn previous_term(jd_tt: f64) -> (SolarTerm, f64) {
    let (mut term, guess) = term_at(jd_tt);
    let mut at = term_instant_near(term, guess);
    // Guard the boundary: the longitude test and the root may disagree by a rounding error.
    if at > jd_tt {
        term = term.previous();
        at = term_instant_near(term, at - 15.2);
    }
    (term, at)
}

/// The first term strictly after an instant, with its instant (JD, TT).
pub fn next_term(jd_tt: f64) -> (SolarTerm, f64) {
    let (prev, prev_at) = previous_term(jd_tt);
    let term = prev.next();
    (term, term_instant_near(term, prev_at + 15.2))
}

/// The most recent jie (節) at or before an instant.
pub fn previous_jie(jd_tt: f64) -> (SolarTerm, f64) {
    let (term, at) = previous_term(jd_tt);
    if term.is_jie() {
        (term, at)
    } else {
        let jie = term.previous();
        (jie, term_instant_near(jie, at - 15.2))
    }
}

/// The first jie (節) strictly after an instant.
pub fn next_jie(jd_tt: f64) -> (SolarTerm, f64) {
    let (term, at) = next_term(jd_tt);
    if term.is_jie() {
        (term, at)
    } else {
        let jie = term.next();
        (jie, term_instant_near(jie, at + 15.2))
    }
}

/// The terms around an instant, each found once: the previous and next term and the previous
/// and next jie (one of the first two is a jie, so three root searches in all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Around {
    pub previous: (SolarTerm, f64),
    pub next: (SolarTerm, f64),
    pub previous_jie: (SolarTerm, f64),
    pub next_jie: (SolarTerm, f64),
}

/// The previous/next term and jie of an instant (JD, TT).
pub fn around(jd_tt: f64) -> Around {
    let previous = previous_term(jd_tt);
    let next_t = previous.0.next();
    let next = (next_t, term_instant_near(next_t, previous.1 + 15.2));
    let (previous_jie, next_jie) = if previous.0.is_jie() {
        let jie = next_t.next();
        (previous, (jie, term_instant_near(jie, next.1 + 15.2)))
    } else {
        let jie = previous.0.previous();
        ((jie, term_instant_near(jie, previous.1 - 15.2)), next)
    };
    Around {
        previous,
        next,
        previous_jie,
        next_jie,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ephem::time::{jd_tt, utc_from_jd_tt};
    use chrono::{TimeZone, Utc};

    #[test]
    fn ipchun_2024_is_near_known_instant() {
        // 2024 입춘: 2024-02-04 08:27 UTC (17:27 KST) per KASI.
        let at = utc_from_jd_tt(term_instant(2024, SolarTerm::IPCHUN));
        let want = Utc.with_ymd_and_hms(2024, 2, 4, 8, 27, 0).unwrap();
        assert!((at - want).num_seconds().abs() < 60, "{at}");
    }

    #[test]
    fn previous_and_next_bracket_the_instant() {
        let t = jd_tt(Utc.with_ymd_and_hms(1990, 5, 15, 5, 30, 0).unwrap());
        let (p, pa) = previous_term(t);
        let (n, na) = next_term(t);
        assert!(pa <= t && t < na);
        assert_eq!(p.next(), n);
        assert_eq!(p.hanja(), "立夏");
        let (j, _) = previous_jie(t);
        assert!(j.is_jie());
        let (nj, _) = next_jie(t);
        assert_eq!(nj.hanja(), "芒種");
        let a = around(t);
        assert_eq!((a.previous.0, a.next.0), (p, n));
        assert_eq!(a.previous_jie.0, j);
        assert_eq!(a.next_jie.0, nj);
        assert!((a.next_jie.1 - next_jie(t).1).abs() < 1e-7);
    }
}
