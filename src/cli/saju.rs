//! `starpillar saju`: print a Four Pillars chart as a readable table, or with `--json` exactly
//! the `chart` object `POST /api/saju` answers. Flags map 1:1 to the API's `birth`/`options`.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;

use crate::domain::saju::chart::Chart;
use crate::domain::saju::input::{DEFAULT_TIMEZONE, SEOUL_LONGITUDE};
use crate::domain::saju::pillars::PillarOut;
use crate::domain::saju::{BirthInput, Calendar, ChartOptions, Sex, SolarTime, ZiHour, compute};

#[derive(Debug, Args)]
pub struct SajuArgs {
    /// Birth date, YYYY-MM-DD (in the calendar given by --calendar).
    #[arg(long, env = "STARPILLAR_SAJU_DATE")]
    pub date: String,
    /// Local civil birth time, HH:MM[:SS]; omit when unknown (no hour pillar).
    #[arg(long, env = "STARPILLAR_SAJU_TIME")]
    pub time: Option<String>,
    /// Calendar of --date: solar (Gregorian) or lunar (Korean, KASI).
    #[arg(long, env = "STARPILLAR_SAJU_CALENDAR", default_value = "solar")]
    pub calendar: Calendar,
    /// With --calendar lunar: the month is a leap month (윤달).
    #[arg(long, env = "STARPILLAR_SAJU_LEAP_MONTH")]
    pub leap_month: bool,
    /// IANA time zone of --time.
    #[arg(long, env = "STARPILLAR_SAJU_TIMEZONE", default_value = DEFAULT_TIMEZONE)]
    pub timezone: String,
    /// Longitude of the birthplace in degrees east (for local mean time); default Seoul.
    #[arg(long, env = "STARPILLAR_SAJU_LONGITUDE", default_value_t = SEOUL_LONGITUDE,
          allow_negative_numbers = true)]
    pub longitude: f64,
    /// Sex: male or female (decides the direction of the luck pillars).
    #[arg(long, env = "STARPILLAR_SAJU_SEX")]
    pub sex: Sex,
    /// 23:00–24:00: jeong (starts the next day) or ya (야자시: keeps today's day pillar).
    #[arg(long, env = "STARPILLAR_SAJU_ZI_HOUR", default_value = "jeong")]
    pub zi_hour: ZiHour,
    /// Clock for the day/hour pillars: none, fixed30 (UTC+8:30), lmt (local mean time), true.
    #[arg(long, env = "STARPILLAR_SAJU_SOLAR_TIME", default_value = "lmt")]
    pub solar_time: SolarTime,
    /// Print the API's `chart` object as JSON instead of the table.
    #[arg(long, env = "STARPILLAR_SAJU_JSON")]
    pub json: bool,
}

/// Run the subcommand.
pub fn run(args: SajuArgs) -> anyhow::Result<ExitCode> {
    let birth = BirthInput {
        date: args.date.clone(),
        time: args.time.clone(),
        calendar: args.calendar,
        leap_month: args.leap_month,
        timezone: args.timezone.clone(),
        longitude: args.longitude,
    };
    let options = ChartOptions {
        zi_hour: args.zi_hour,
        solar_time: args.solar_time,
    };
    super::print_chart(
        compute(&birth, args.sex, options),
        |e| e.field().to_owned(),
        args.json,
        render,
    )
}

fn cell(p: Option<&PillarOut>, f: impl Fn(&PillarOut) -> String) -> String {
    p.map(f).unwrap_or_else(|| "-".to_owned())
}

/// Terminal columns of a string: hangul and CJK ideographs take two.
fn columns(s: &str) -> usize {
    s.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F | 0x2E80..=0x9FFF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF => 2,
            _ => 1,
        })
        .sum()
}

/// Left-align in `width` terminal columns.
fn pad(s: &str, width: usize) -> String {
    let fill = width.saturating_sub(columns(s)).max(1);
    format!("{s}{}", " ".repeat(fill))
}

/// The human-readable table.
pub fn render(chart: &Chart) -> String {
    let mut out = String::new();
    let i = &chart.input;
    let _ = writeln!(
        out,
        "Birth {} {} ({}), {} · UTC {} (offset {:+}s) · pillar clock {} ({}) · {} · 자시 {}",
        i.solar_date,
        i.time.as_deref().unwrap_or("time unknown"),
        i.calendar,
        i.timezone,
        i.utc,
        i.utc_offset_seconds,
        i.pillar_clock,
        i.solar_time,
        i.sex,
        i.zi_hour,
    );
    if let Some(l) = &i.lunar_date {
        let leap = if l.leap_month { "윤" } else { "" };
        let _ = writeln!(
            out,
            "Lunar (Korean) {}-{leap}{:02}-{:02}",
            l.year, l.month, l.day
        );
    }
    let p = &chart.pillars;
    let cols = [
        ("hour 時", p.hour.as_ref()),
        ("day 日", Some(&p.day)),
        ("month 月", Some(&p.month)),
        ("year 年", Some(&p.year)),
    ];
    let row = |label: &str, f: &dyn Fn(&PillarOut) -> String| {
        let mut line = pad(label, 12);
        for (_, pillar) in &cols {
            line.push_str(&pad(&cell(*pillar, f), 18));
        }
        line.trim_end().to_owned() + "\n"
    };
    out.push('\n');
    let mut head = pad("", 12);
    for (name, _) in &cols {
        head.push_str(&pad(name, 18));
    }
    out.push_str(head.trim_end());
    out.push('\n');
    out.push_str(&row("pillar", &|x| format!("{} {}", x.hanja, x.hangul)));
    out.push_str(&row("stem", &|x| {
        format!(
            "{} {}/{}",
            x.stem.hanja,
            x.stem.element.key(),
            x.stem.yin_yang.key()
        )
    }));
    out.push_str(&row("branch", &|x| {
        format!(
            "{} {}/{}",
            x.branch.hanja,
            x.branch.element.key(),
            x.branch.yin_yang.key()
        )
    }));
    out.push_str(&row("ten god", &|x| {
        x.ten_god
            .as_ref()
            .map(|g| format!("{} {}", g.hanja, g.hangul))
            .unwrap_or_else(|| "日主 일간".to_owned())
    }));
    out.push_str(&row("branch god", &|x| {
        format!("{} {}", x.branch_ten_god.hanja, x.branch_ten_god.hangul)
    }));
    out.push_str(&row("hidden", &|x| {
        x.hidden_stems
            .iter()
            .map(|h| h.hanja)
            .collect::<Vec<_>>()
            .join(" ")
    }));
    out.push_str(&row("life stage", &|x| {
        format!("{} {}", x.life_stage.hanja, x.life_stage.hangul)
    }));
    let d = &chart.day_master;
    let e = &chart.five_elements;
    let _ = writeln!(
        out,
        "\nDay master {} {} ({}, {}) · elements: wood {} · fire {} · earth {} · metal {} · water {}",
        d.hanja,
        d.hangul,
        d.element.key(),
        d.yin_yang.key(),
        e.wood,
        e.fire,
        e.earth,
        e.metal,
        e.water
    );
    let l = &chart.luck;
    let _ = writeln!(
        out,
        "\nLuck pillars (대운), {}, start age {:.2} → {}:",
        match l.direction {
            crate::domain::saju::luck::Direction::Forward => "forward",
            crate::domain::saju::luck::Direction::Backward => "backward",
        },
        l.start_age,
        l.start_age_rounded
    );
    let mut line = String::new();
    for lp in &l.pillars {
        let _ = write!(
            line,
            "{:>3} {} {}  ",
            lp.start_age, lp.pillar.hanja, lp.pillar.hangul
        );
    }
    out.push_str(line.trim_end());
    out.push('\n');
    let t = &chart.solar_terms;
    let _ = writeln!(
        out,
        "\nSolar terms: previous {} {} {} · next {} {} {}",
        t.previous.hanja, t.previous.name, t.previous.utc, t.next.hanja, t.next.name, t.next.utc
    );
    out
}
