//! Hand-written edge cases of the saju engine: jie boundaries ± 1 minute (instants from
//! JPL DE421 via skyfield), the 23:00–01:00 hours in both 자시 conventions, Korea's UTC+8:30
//! eras and summer time (gaps and overlaps), and Korean leap months where China differs.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Asia::Seoul;
use serde_json::json;
use starpillar::domain::saju::{
    BirthInput, Calendar, ChartOptions, SajuError, Sex, SolarTime, ZiHour, compute,
};

use crate::common::run_oracle;

fn birth(date: &str, time: Option<&str>) -> BirthInput {
    BirthInput {
        date: date.to_owned(),
        time: time.map(str::to_owned),
        calendar: Calendar::Solar,
        leap_month: false,
        timezone: "Asia/Seoul".to_owned(),
        longitude: 126.978,
    }
}

fn opts(zi: ZiHour, solar: SolarTime) -> ChartOptions {
    ChartOptions {
        zi_hour: zi,
        solar_time: solar,
    }
}

fn utc_from_jd(jd: f64) -> DateTime<Utc> {
    let ms = ((jd - 2_440_587.5) * 86_400_000.0).round() as i64;
    DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(ms)
}

#[test]
fn every_jie_1900_2050_plus_minus_one_minute() {
    let years: Vec<i32> = (1900..=2050).collect();
    let out = run_oracle("saju_skyfield.py", &json!({ "years": years }));
    let mut checked = 0;
    for row in out["jie"].as_array().expect("jie") {
        let year = row[0].as_i64().expect("year");
        let index = row[1].as_i64().expect("index");
        let at = utc_from_jd(row[3].as_f64().expect("civil jd"));
        let month_after = (index / 2 + 2).rem_euclid(12) as u8; // 寅 = 2 for 立春
        for (delta, branch, saju_year) in [
            (
                -61,
                (i64::from(month_after) + 11) % 12,
                if index == 0 { year - 1 } else { year },
            ),
            (61, i64::from(month_after), year),
        ] {
            // Whole seconds, on the safe side of the boundary.
            let instant = at + Duration::seconds(delta);
            let local = instant.with_timezone(&Seoul);
            let b = birth(
                &local.format("%Y-%m-%d").to_string(),
                Some(&local.format("%H:%M:%S").to_string()),
            );
            let chart = match compute(&b, Sex::Female, opts(ZiHour::Jeong, SolarTime::None)) {
                Ok(c) => c,
                // A jie inside a summer-time overlap cannot be written as Seoul civil time.
                Err(SajuError::AmbiguousLocalTime { .. }) => continue,
                Err(e) => panic!("{b:?}: {e}"),
            };
            let ctx = format!("{year} term {index} {delta:+}s {local}");
            assert_eq!(
                i64::from(chart.pillars.month.branch.index),
                branch,
                "month {ctx}"
            );
            // 小寒 (index 22) falls in January of year + 1, still saju year `year`.
            let want_year = (saju_year - 4).rem_euclid(60) as u8;
            assert_eq!(chart.pillars.year.index, want_year, "year {ctx}");
            checked += 1;
        }
    }
    println!("{checked} births one minute either side of every jie 1900–2050 agree");
    assert!(checked > 3600);
}

/// 2000-01-01 is a 戊午 day, 1999-12-31 丁巳, 2000-01-02 己未 (civil clock, no correction).
#[test]
fn hours_around_midnight_in_both_conventions() {
    let cases: [(&str, &str, ZiHour, &str, &str); 12] = [
        ("2000-01-01", "22:59", ZiHour::Jeong, "戊午", "癸亥"),
        ("2000-01-01", "23:00", ZiHour::Jeong, "己未", "甲子"),
        ("2000-01-01", "23:59", ZiHour::Jeong, "己未", "甲子"),
        ("2000-01-01", "22:59", ZiHour::Ya, "戊午", "癸亥"),
        ("2000-01-01", "23:00", ZiHour::Ya, "戊午", "甲子"),
        ("2000-01-01", "23:59", ZiHour::Ya, "戊午", "甲子"),
        ("2000-01-01", "00:00", ZiHour::Jeong, "戊午", "壬子"),
        ("2000-01-01", "00:00", ZiHour::Ya, "戊午", "壬子"),
        ("2000-01-01", "00:59", ZiHour::Jeong, "戊午", "壬子"),
        ("2000-01-01", "01:00", ZiHour::Jeong, "戊午", "癸丑"),
        ("1999-12-31", "23:30", ZiHour::Jeong, "戊午", "壬子"),
        ("1999-12-31", "23:30", ZiHour::Ya, "丁巳", "壬子"),
    ];
    for (date, time, zi, day, hour) in cases {
        let c = compute(
            &birth(date, Some(time)),
            Sex::Male,
            opts(zi, SolarTime::None),
        )
        .expect("chart");
        let got = (
            c.pillars.day.hanja.as_str(),
            c.pillars.hour.expect("hour").hanja,
        );
        assert_eq!((got.0, got.1.as_str()), (day, hour), "{date} {time} {zi}");
    }
    // Local mean time in Seoul runs ~32 minutes behind the civil clock: 23:20 civil is still
    // the 亥 hour of the same day, 23:40 civil is already the next day's 子 hour.
    let c = compute(
        &birth("2000-01-01", Some("23:20")),
        Sex::Male,
        opts(ZiHour::Jeong, SolarTime::Lmt),
    )
    .expect("chart");
    assert_eq!(c.pillars.day.hanja, "戊午");
    assert_eq!(c.pillars.hour.expect("hour").hanja, "癸亥");
    let c = compute(
        &birth("2000-01-01", Some("23:40")),
        Sex::Male,
        opts(ZiHour::Jeong, SolarTime::Lmt),
    )
    .expect("chart");
    assert_eq!(c.pillars.day.hanja, "己未");
    assert_eq!(c.pillars.hour.expect("hour").hanja, "甲子");
    // fixed30 reads the clock at UTC+8:30: 00:20 civil (UTC+9) is 23:50 of the day before.
    let c = compute(
        &birth("2000-01-02", Some("00:20")),
        Sex::Male,
        opts(ZiHour::Ya, SolarTime::Fixed30),
    )
    .expect("chart");
    assert_eq!(c.input.pillar_clock, "2000-01-01T23:50:00");
    assert_eq!(c.pillars.day.hanja, "戊午");
}

#[test]
fn korean_civil_time_history() {
    let o = opts(ZiHour::Jeong, SolarTime::Lmt);
    // UTC+8:30 eras: 1908–11 and 1954–61.
    for (date, offset) in [
        ("1910-06-01", 30_600),
        ("1953-06-01", 32_400),
        ("1955-01-01", 30_600),
        ("1961-01-01", 30_600),
        ("1962-01-01", 32_400),
        ("1949-07-01", 36_000), // summer time at +10
        ("1957-07-01", 34_200), // summer time at +9:30
        ("1987-07-01", 36_000),
        ("1988-07-01", 36_000),
        ("1989-07-01", 32_400),
    ] {
        let c = compute(&birth(date, Some("12:00")), Sex::Male, o).expect("chart");
        assert_eq!(c.input.utc_offset_seconds, offset, "{date}");
        let utc = DateTime::parse_from_rfc3339(&c.input.utc).expect("utc");
        let local_noon = utc + Duration::seconds(i64::from(offset));
        assert_eq!(local_noon.format("%H:%M").to_string(), "12:00", "{date}");
    }
    // Gaps (clocks jumped forward) and overlaps (clocks turned back).
    let gaps = [
        ("1948-06-01", "00:30"),
        ("1955-05-05", "00:15"),
        ("1961-08-10", "00:15"),
        ("1987-05-10", "02:30"),
        ("1988-05-08", "02:30"),
    ];
    for (date, time) in gaps {
        let err = compute(&birth(date, Some(time)), Sex::Male, o).expect_err("gap");
        assert_eq!(err.code(), "nonexistent_local_time", "{date} {time}");
        assert_eq!(err.field(), "birth.time");
    }
    let overlaps = [
        ("1948-09-12", "23:30"),
        ("1954-03-20", "23:45"),
        ("1960-09-17", "23:45"),
        ("1987-10-11", "02:30"),
        ("1988-10-09", "02:30"),
    ];
    for (date, time) in overlaps {
        let err = compute(&birth(date, Some(time)), Sex::Male, o).expect_err("overlap");
        assert_eq!(err.code(), "ambiguous_local_time", "{date} {time}");
    }
}

#[test]
fn korean_leap_months_win_over_chinese_ones() {
    let lunar = |date: &str, leap: bool| BirthInput {
        calendar: Calendar::Lunar,
        leap_month: leap,
        ..birth(date, Some("12:00"))
    };
    let o = opts(ZiHour::Jeong, SolarTime::Lmt);
    for (date, leap, solar) in [
        ("2023-02-01", true, "2023-03-22"),  // 2023 윤2월
        ("2012-03-01", true, "2012-04-21"),  // Korea 윤3월 (China: 閏四月)
        ("1997-01-01", false, "1997-02-08"), // 설날: Korea 2-08, China 2-07
        ("2020-04-01", true, "2020-05-23"),  // 2020 윤4월
    ] {
        let c = compute(&lunar(date, leap), Sex::Female, o).expect("chart");
        assert_eq!(c.input.solar_date, solar, "lunar {date} leap={leap}");
    }
    let err = compute(&lunar("2012-04-01", true), Sex::Female, o).expect_err("no leap 4");
    assert_eq!(err.code(), "invalid_leap_month");
    assert_eq!(err.field(), "birth.leap_month");
    assert!(err.to_string().contains("leap month is 3"), "{err}");
    let err = compute(&lunar("2023-01-30", false), Sex::Female, o).expect_err("29-day month");
    assert_eq!(err.field(), "birth.date");
}

#[test]
fn supported_range_is_enforced() {
    let o = opts(ZiHour::Jeong, SolarTime::Lmt);
    assert!(compute(&birth("1900-01-01", Some("00:00")), Sex::Male, o).is_ok());
    assert!(compute(&birth("2100-12-31", Some("23:59")), Sex::Male, o).is_ok());
    for date in ["1899-12-31", "2101-01-01"] {
        let err = compute(&birth(date, None), Sex::Male, o).expect_err("out of range");
        assert_eq!(err.code(), "date_out_of_range");
    }
}
