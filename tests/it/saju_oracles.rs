//! Differential tests of the saju engine against independent references (run in one oracle
//! process each): 6tail's lunar_python (pillars, luck), KASI's lunar tables
//! (korean-lunar-calendar) and JPL DE421 through skyfield (solar-term instants, ΔT).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};
use starpillar::domain::ephem::solar_terms::{SolarTerm, term_instant};
use starpillar::domain::ephem::sun::equation_of_time_seconds;
use starpillar::domain::ephem::time::{delta_t_seconds, jdn};
use starpillar::domain::saju::ganzhi::{Branch, Stem};
use starpillar::domain::saju::input::{lunar_to_solar, solar_to_lunar};
use starpillar::domain::saju::relations::{
    TenGod, hidden_stems, life_stage_named, main_hidden_stem,
};
use starpillar::domain::saju::{
    BirthInput, Calendar, ChartOptions, Sex, SolarTime, ZiHour, compute,
};

use crate::common::run_oracle;

/// SplitMix64: a tiny, seedable generator (no dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn parse_utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad utc {s}: {e}"))
        .with_timezone(&Utc)
}

fn wall(dt: NaiveDateTime) -> String {
    dt.format("%Y-%m-%d %H:%M:%S").to_string()
}

const PLACES: [(&str, f64); 7] = [
    ("Asia/Seoul", 126.978),
    ("Asia/Seoul", 129.075),
    ("Asia/Seoul", 124.63),
    ("Asia/Tokyo", 139.69),
    ("Asia/Shanghai", 121.47),
    ("America/New_York", -74.0),
    ("Europe/London", -0.13),
];

#[test]
fn random_births_match_lunar_python() {
    let seed: u64 = 0x5A1D_2024;
    println!("seed = {seed:#x}");
    let mut rng = Rng(seed);
    let first = NaiveDate::from_ymd_opt(1900, 1, 1).expect("date");
    let span = (NaiveDate::from_ymd_opt(2050, 12, 31).expect("date") - first).num_days() + 1;
    let modes = [
        SolarTime::None,
        SolarTime::Fixed30,
        SolarTime::Lmt,
        SolarTime::True,
    ];
    let mut charts = Vec::new();
    let mut cases = Vec::new();
    let mut rejected = 0;
    while charts.len() < 5000 {
        let date = first + Duration::days(rng.below(span as u64) as i64);
        let secs = rng.below(86_400);
        let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let (tz, lon) = PLACES[rng.below(PLACES.len() as u64) as usize];
        let zi = if rng.below(2) == 0 {
            ZiHour::Jeong
        } else {
            ZiHour::Ya
        };
        let sex = if rng.below(2) == 0 {
            Sex::Male
        } else {
            Sex::Female
        };
        let options = ChartOptions {
            zi_hour: zi,
            solar_time: modes[rng.below(4) as usize],
        };
        let birth = BirthInput {
            date: date.to_string(),
            time: Some(time),
            calendar: Calendar::Solar,
            leap_month: false,
            timezone: tz.to_owned(),
            longitude: lon,
        };
        let chart = match compute(&birth, sex, options) {
            Ok(c) => c,
            Err(e) => {
                // Only gaps and overlaps of the civil clock may be refused.
                assert!(e.field() == "birth.time", "{birth:?}: {e}");
                rejected += 1;
                continue;
            }
        };
        let utc = parse_utc(&chart.input.utc);
        let clock = NaiveDateTime::parse_from_str(&chart.input.pillar_clock, "%Y-%m-%dT%H:%M:%S")
            .expect("pillar clock");
        cases.push(json!({
            "bj": wall(utc.naive_utc() + Duration::hours(8)),
            "local": wall(clock),
            "sect": if zi == ZiHour::Jeong { 1 } else { 2 },
            "male": sex == Sex::Male,
        }));
        charts.push(chart);
    }
    let out = run_oracle("saju_lunar_python.py", &json!({ "cases": cases }));
    let refs = out["cases"].as_array().expect("cases");
    assert_eq!(refs.len(), charts.len());
    let (mut near_jie, mut max_age_err) = (0, 0.0f64);
    for (chart, r) in charts.iter().zip(refs) {
        let p = &chart.pillars;
        let hour = p.hour.as_ref().expect("hour pillar");
        let ctx = || format!("{:?} vs {r}", chart.input);
        assert_eq!(p.day.hanja, r["day"], "day: {}", ctx());
        assert_eq!(hour.hanja, r["time"], "hour: {}", ctx());
        // Within 5 minutes of a jie the references' own term tables may disagree: count only.
        let utc = parse_utc(&chart.input.utc);
        let close = [&chart.solar_terms.previous, &chart.solar_terms.next]
            .iter()
            .any(|t| t.jie && (parse_utc(&t.utc) - utc).num_seconds().abs() < 300);
        if close {
            near_jie += 1;
            continue;
        }
        assert_eq!(p.year.hanja, r["year"], "year: {}", ctx());
        assert_eq!(p.month.hanja, r["month"], "month: {}", ctx());
        let forward = chart.luck.direction == starpillar::domain::saju::luck::Direction::Forward;
        assert_eq!(Value::Bool(forward), r["forward"], "direction: {}", ctx());
        let err = (chart.luck.start_age - r["start_years"].as_f64().expect("start")).abs();
        max_age_err = max_age_err.max(err);
        assert!(
            err < 0.02,
            "start age {} vs {}: {}",
            chart.luck.start_age,
            r,
            ctx()
        );
    }
    println!(
        "5000 births (seed {seed:#x}): all pillars agree; {near_jie} within 5 min of a jie \
         (year/month not compared); {rejected} local times refused (gap/overlap); max start-age \
         difference {max_age_err:.4} years"
    );
    assert!(near_jie < 10, "too many births near a jie: {near_jie}");
}

#[test]
fn relations_match_lunar_python_tables() {
    let out = run_oracle(
        "saju_lunar_python.py",
        &json!({ "cases": [], "tables": true }),
    );
    let t = &out["tables"];
    // lunar_python uses simplified characters and 七杀/临官 where we write 偏官/建祿.
    let god = |s: &str| match s {
        "比肩" => "companion",
        "劫财" => "rob_wealth",
        "食神" => "eating_god",
        "伤官" => "hurting_officer",
        "偏财" => "indirect_wealth",
        "正财" => "direct_wealth",
        "七杀" => "seven_killings",
        "正官" => "direct_officer",
        "偏印" => "indirect_resource",
        "正印" => "direct_resource",
        other => panic!("unknown ten god {other}"),
    };
    let stages = [
        "长生", "沐浴", "冠带", "临官", "帝旺", "衰", "病", "死", "墓", "绝", "胎", "养",
    ];
    let keys = [
        "birth",
        "bathing",
        "cap_and_belt",
        "coming_of_age",
        "peak",
        "decline",
        "sickness",
        "death",
        "tomb",
        "extinction",
        "conception",
        "nurture",
    ];
    for d in 0..10u8 {
        for o in 0..10u8 {
            let key = format!("{}{}", Stem(d).hanja(), Stem(o).hanja());
            let want = god(t["shi_shen"][&key].as_str().expect("ten god"));
            assert_eq!(TenGod::of(Stem(d), Stem(o)).key(), want, "{key}");
        }
        for b in 0..12u8 {
            let name = t["di_shi"][Stem(d).hanja()][b as usize]
                .as_str()
                .expect("stage");
            let i = stages.iter().position(|s| *s == name).expect("known stage");
            assert_eq!(life_stage_named(Stem(d), Branch(b)).key, keys[i]);
        }
    }
    for b in 0..12u8 {
        let list = t["hide_gan"][Branch(b).hanja()].as_array().expect("hidden");
        // Their first entry is the main (本氣) stem; ours is the last of 여기 → 정기.
        assert_eq!(
            main_hidden_stem(Branch(b)).hanja(),
            list[0],
            "{}",
            Branch(b).hanja()
        );
        let ours: Vec<&str> = hidden_stems(Branch(b))
            .iter()
            .map(|h| h.0.hanja())
            .collect();
        for s in list {
            assert!(
                ours.contains(&s.as_str().expect("stem")),
                "{} lacks {s}",
                Branch(b).hanja()
            );
        }
    }
}

#[test]
fn every_day_1900_2050_matches_kasi_lunar_tables() {
    let out = run_oracle(
        "saju_kasi.py",
        &json!({ "start": "1900-01-01", "end": "2050-12-31" }),
    );
    let days = out["days"].as_array().expect("days");
    let first = NaiveDate::from_ymd_opt(1900, 1, 1).expect("date");
    let mut leap_days = 0;
    for (i, row) in days.iter().enumerate() {
        let solar = first + Duration::days(i as i64);
        let n = |k: usize| row[k].as_i64().expect("number");
        let (y, m, d, leap) = (n(0) as i32, n(1) as u8, n(2) as u8, n(3) == 1);
        leap_days += usize::from(leap);
        let ours = solar_to_lunar(solar).expect("lunar date");
        assert_eq!(
            (ours.year, ours.month, ours.day, ours.leap_month),
            (y, m, d, leap),
            "solar {solar}"
        );
        let (back, _) = lunar_to_solar(&format!("{y:04}-{m:02}-{d:02}"), leap)
            .unwrap_or_else(|e| panic!("lunar {y}-{m}-{d} leap={leap}: {e}"));
        assert_eq!(back, solar, "lunar {y}-{m}-{d} leap={leap}");
    }
    assert_eq!(days.len(), 55_152);
    println!(
        "{} days 1900–2050 agree with KASI ({leap_days} in leap months)",
        days.len()
    );
}

#[test]
fn jie_instants_1900_2050_within_10_seconds_of_de421() {
    let years: Vec<i32> = (1900..=2050).collect();
    let probes: Vec<f64> = (1900..=2050)
        .step_by(2)
        .map(|y| jdn(y, 7, 1) as f64 - 0.5)
        .collect();
    let out = run_oracle(
        "saju_skyfield.py",
        &json!({ "years": years, "delta_t_jd_ut": probes }),
    );
    let mut max_err = 0.0f64;
    let mut worst = String::new();
    let rows = out["jie"].as_array().expect("jie");
    assert_eq!(rows.len(), years.len() * 12);
    for row in rows {
        let year = row[0].as_i64().expect("year") as i32;
        let index = row[1].as_u64().expect("index") as usize;
        let sky = row[2].as_f64().expect("jd");
        let ours = term_instant(year, SolarTerm::new(index));
        let err = (ours - sky).abs() * 86_400.0;
        if err > max_err {
            max_err = err;
            worst = format!("{year} {}", SolarTerm::new(index).hanja());
        }
    }
    println!(
        "jie 1900–2050 ({} instants): max |ours − DE421| = {max_err:.2} s ({worst})",
        rows.len()
    );
    assert!(max_err < 10.0, "max error {max_err:.2} s at {worst}");

    // ΔT: civil clocks followed UT1 before 1972, UTC (leap seconds) after.
    let mut max_dt = 0.0f64;
    for row in out["delta_t"].as_array().expect("delta_t") {
        let jd = row[0].as_f64().expect("jd");
        let ours = delta_t_seconds(jd);
        let want = if jd < 2_441_317.5 {
            row[1].as_f64()
        } else {
            row[2].as_f64()
        }
        .expect("dt");
        let tolerance = if jd < 2_441_317.5 { 1.5 } else { 0.01 };
        assert!(
            (ours - want).abs() < tolerance,
            "ΔT at JD {jd}: {ours} vs {want}"
        );
        if jd < 2_441_317.5 {
            max_dt = max_dt.max((ours - want).abs());
        }
    }
    println!("ΔT 1900–1971 max |ours − skyfield| = {max_dt:.2} s; 1972+ exact");
}

/// The equation of time behind `solar_time: "true"`, every 5 days 1900–2050.
#[test]
fn equation_of_time_matches_de421() {
    let jds: Vec<f64> = (0..11_030)
        .map(|i| 2_415_020.5 + 5.0 * f64::from(i) + 0.3)
        .collect();
    let out = run_oracle("saju_skyfield.py", &json!({ "eot_jd_tt": jds }));
    let mut max_err = 0.0f64;
    for row in out["eot"].as_array().expect("eot") {
        let jd = row[0].as_f64().expect("jd");
        let want = row[1].as_f64().expect("eot");
        let ours = equation_of_time_seconds(jd);
        max_err = max_err.max((ours - want).abs());
        assert!(
            (ours - want).abs() < 2.0,
            "EoT at JD {jd}: {ours:.2} s vs {want:.2} s"
        );
    }
    println!("equation of time 1900–2050: max |ours − DE421| = {max_err:.2} s");
}
