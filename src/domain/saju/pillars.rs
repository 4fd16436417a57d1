//! The four pillars: year by 立春, month by the jie (五虎遁 for the stem), day from the Julian
//! Day Number of the (solar-time-corrected) local date, hour in two-hour blocks from 23:00
//! (五鼠遁 for the stem), and their serialised form with ten gods, hidden stems and stages.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::Serialize;

use super::ganzhi::{Branch, Element, GanZhi, Stem, YinYang};
use super::input::ZiHour;
use super::relations::{
    HiddenRole, Named, TenGod, hidden_stems, life_stage_named, main_hidden_stem,
};
use crate::domain::ephem::solar_terms::{SolarTerm, previous_jie};
use crate::domain::ephem::time::{jdn, utc_from_jd_tt};

/// The year and month pillars of an instant (JD, TT), and the saju year (the Gregorian year
/// whose 立春 began it). Both come from the same jie search, so they always agree.
pub fn year_and_month(jd_tt: f64) -> (GanZhi, GanZhi, i32) {
    let (jie, at) = previous_jie(jd_tt);
    year_and_month_from_jie(jie, at)
}

/// The year and month pillars given the jie in force and its instant (JD, TT).
pub fn year_and_month_from_jie(jie: SolarTerm, at: f64) -> (GanZhi, GanZhi, i32) {
    let jie_year = utc_from_jd_tt(at).year();
    // 小寒 (the 丑 month) falls in January, still in the saju year begun the February before.
    let saju_year = if jie.index >= 22 {
        jie_year - 1
    } else {
        jie_year
    };
    let year = GanZhi::new(i64::from(saju_year) - 4);
    let m = i64::from(jie.month_index()); // 0 = 寅 month
    // 五虎遁: 甲己 → 丙寅, 乙庚 → 戊寅, 丙辛 → 庚寅, 丁壬 → 壬寅, 戊癸 → 甲寅.
    let stem = Stem::new(i64::from(year.stem().0 % 5) * 2 + 2 + m);
    let branch = Branch::new(m + 2);
    (year, GanZhi::from_parts(stem, branch), saju_year)
}

/// The day pillar of a local date: (JDN + 49) mod 60, 0 = 甲子.
pub fn day_of_date(date: NaiveDate) -> GanZhi {
    GanZhi::new(jdn(date.year(), date.month(), date.day()) + 49)
}

/// The day and hour pillars from the local (corrected) clock reading.
pub fn day_and_hour(local: NaiveDateTime, zi: ZiHour) -> (GanZhi, GanZhi) {
    let late_zi = local.hour() >= 23;
    let date = local.date();
    let next = date.succ_opt().unwrap_or(date);
    let day = if late_zi && zi == ZiHour::Jeong {
        day_of_date(next)
    } else {
        day_of_date(date)
    };
    // The hour stem follows the day the 子 hour opens: tomorrow's after 23:00, in both
    // conventions (야자시 only keeps today's day pillar).
    let stem_day = if late_zi {
        day_of_date(next)
    } else {
        day_of_date(date)
    };
    let branch = Branch::new(i64::from(local.hour().div_ceil(2)));
    // 五鼠遁: 甲己 → 甲子, 乙庚 → 丙子, 丙辛 → 戊子, 丁壬 → 庚子, 戊癸 → 壬子.
    let stem = Stem::new(i64::from(stem_day.stem().0 % 5) * 2 + i64::from(branch.0));
    (day, GanZhi::from_parts(stem, branch))
}

/// The day pillar for a date without a time (the civil date as written).
pub fn day_without_time(date: NaiveDate) -> GanZhi {
    day_of_date(date)
}

/// A stem or branch as serialised.
#[derive(Debug, Clone, Serialize)]
pub struct CharOut {
    pub index: u8,
    pub hanja: &'static str,
    pub hangul: &'static str,
    pub element: Element,
    pub yin_yang: YinYang,
}

/// A hidden stem as serialised.
#[derive(Debug, Clone, Serialize)]
pub struct HiddenOut {
    pub hanja: &'static str,
    pub hangul: &'static str,
    pub element: Element,
    pub role: HiddenRole,
    /// Days of a 30-day month it rules (月律分野).
    pub days: u8,
    pub ten_god: Named,
}

/// A pillar as serialised.
#[derive(Debug, Clone, Serialize)]
pub struct PillarOut {
    /// Position in the sexagenary cycle, 0 = 甲子.
    pub index: u8,
    pub hanja: String,
    pub hangul: String,
    pub stem: CharOut,
    pub branch: CharOut,
    /// The element of the stem (the branch's is in `branch.element`).
    pub element: Element,
    /// The polarity of the stem.
    pub yin_yang: YinYang,
    /// The stem's ten god relative to the day master; null for the day master itself.
    pub ten_god: Option<Named>,
    /// The ten god of the branch's main (정기) hidden stem.
    pub branch_ten_god: Named,
    pub hidden_stems: Vec<HiddenOut>,
    /// The day master's life stage (十二運星) at this branch.
    pub life_stage: Named,
}

fn stem_out(s: Stem) -> CharOut {
    CharOut {
        index: s.0,
        hanja: s.hanja(),
        hangul: s.hangul(),
        element: s.element(),
        yin_yang: s.yin_yang(),
    }
}

fn branch_out(b: Branch) -> CharOut {
    CharOut {
        index: b.0,
        hanja: b.hanja(),
        hangul: b.hangul(),
        element: b.element(),
        yin_yang: b.yin_yang(),
    }
}

/// Serialise a pillar relative to the day master.
pub fn pillar_out(gz: GanZhi, day_master: Stem, is_day_pillar: bool) -> PillarOut {
    let (stem, branch) = (gz.stem(), gz.branch());
    PillarOut {
        index: gz.0,
        hanja: gz.hanja(),
        hangul: gz.hangul(),
        stem: stem_out(stem),
        branch: branch_out(branch),
        element: stem.element(),
        yin_yang: stem.yin_yang(),
        ten_god: (!is_day_pillar).then(|| TenGod::of(day_master, stem).into()),
        branch_ten_god: TenGod::of(day_master, main_hidden_stem(branch)).into(),
        hidden_stems: hidden_stems(branch)
            .into_iter()
            .map(|(s, role, days)| HiddenOut {
                hanja: s.hanja(),
                hangul: s.hangul(),
                element: s.element(),
                role,
                days,
                ten_god: TenGod::of(day_master, s).into(),
            })
            .collect(),
        life_stage: life_stage_named(day_master, branch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days() {
        let d = |y, m, dd| day_of_date(NaiveDate::from_ymd_opt(y, m, dd).unwrap()).hanja();
        assert_eq!(d(2000, 1, 1), "戊午");
        assert_eq!(d(1900, 1, 1), "甲戌");
    }

    #[test]
    fn late_zi_hour_conventions() {
        let t = NaiveDate::from_ymd_opt(2000, 1, 1)
            .unwrap()
            .and_hms_opt(23, 30, 0)
            .unwrap();
        let (d, h) = day_and_hour(t, ZiHour::Jeong);
        assert_eq!((d.hanja().as_str(), h.hanja().as_str()), ("己未", "甲子"));
        let (d, h) = day_and_hour(t, ZiHour::Ya);
        assert_eq!((d.hanja().as_str(), h.hanja().as_str()), ("戊午", "甲子"));
    }
}
