//! `starpillar chart`: a natal chart on the terminal — each body's sign, degree°minute′,
//! house and retrograde mark; the Ascendant, MC and 12 cusps; the aspects with their orbs.
//! `--json` prints exactly the `chart` object of `POST /api/astrology`.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;

use crate::domain::astro::{self, AspectKind, Birth, Chart, ChartOptions, HouseSystem, Orbs};

/// `starpillar chart` flags.
#[derive(Debug, Clone, Args)]
pub struct ChartArgs {
    /// Local civil birth date-time, `YYYY-MM-DDTHH:MM[:SS]`.
    #[arg(long, env = "STARPILLAR_CHART_DATETIME")]
    pub datetime: String,
    /// IANA time zone of the birth place, e.g. `Asia/Seoul`.
    #[arg(long, env = "STARPILLAR_CHART_TIMEZONE")]
    pub timezone: String,
    /// Latitude in degrees, north positive (−90…90).
    #[arg(long, env = "STARPILLAR_CHART_LATITUDE", allow_negative_numbers = true)]
    pub latitude: f64,
    /// Longitude in degrees, east positive (−180…180).
    #[arg(
        long,
        env = "STARPILLAR_CHART_LONGITUDE",
        allow_negative_numbers = true
    )]
    pub longitude: f64,
    /// House system: placidus, koch, porphyry, equal or whole_sign. Placidus and Koch fall
    /// back to porphyry inside the polar circles (with a warning).
    #[arg(long, env = "STARPILLAR_CHART_HOUSE_SYSTEM", default_value = "placidus",
          value_parser = parse_house_system)]
    pub house_system: HouseSystem,
    /// Aspect orbs to change, as `kind=degrees` (comma-separated or repeated), e.g.
    /// `--orbs conjunction=10,sextile=4`. Defaults: 8/6/7/8/8.
    #[arg(long, env = "STARPILLAR_CHART_ORBS", value_delimiter = ',', value_parser = parse_orb)]
    pub orbs: Vec<(AspectKind, f64)>,
    /// Print the chart as JSON (the API's `chart` object) instead of text.
    #[arg(long, env = "STARPILLAR_CHART_JSON")]
    pub json: bool,
}

fn parse_house_system(s: &str) -> Result<HouseSystem, String> {
    HouseSystem::parse(s.trim()).ok_or_else(|| {
        format!("unknown house system {s:?}; use placidus, koch, porphyry, equal or whole_sign")
    })
}

fn parse_orb(s: &str) -> Result<(AspectKind, f64), String> {
    let (kind, deg) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected kind=degrees"))?;
    let kind = AspectKind::ALL
        .into_iter()
        .find(|k| kind_name(*k) == kind.trim())
        .ok_or_else(|| format!("unknown aspect {kind:?}"))?;
    let deg: f64 = deg
        .trim()
        .parse()
        .map_err(|_| format!("{deg:?} is not a number"))?;
    Ok((kind, deg))
}

fn kind_name(k: AspectKind) -> &'static str {
    match k {
        AspectKind::Conjunction => "conjunction",
        AspectKind::Sextile => "sextile",
        AspectKind::Square => "square",
        AspectKind::Trine => "trine",
        AspectKind::Opposition => "opposition",
    }
}

/// Validated flags → the engine's input.
pub fn to_engine(args: &ChartArgs) -> (Birth, ChartOptions) {
    let mut orbs = Orbs::default();
    for &(kind, deg) in &args.orbs {
        match kind {
            AspectKind::Conjunction => orbs.conjunction = deg,
            AspectKind::Sextile => orbs.sextile = deg,
            AspectKind::Square => orbs.square = deg,
            AspectKind::Trine => orbs.trine = deg,
            AspectKind::Opposition => orbs.opposition = deg,
        }
    }
    let birth = Birth {
        datetime: args.datetime.clone(),
        timezone: args.timezone.clone(),
        latitude: args.latitude,
        longitude: args.longitude,
    };
    (
        birth,
        ChartOptions {
            house_system: args.house_system,
            orbs,
        },
    )
}

pub fn run(args: ChartArgs) -> anyhow::Result<ExitCode> {
    let (birth, opts) = to_engine(&args);
    super::print_chart(
        astro::compute(&birth, &opts),
        |e| e.field(),
        args.json,
        render,
    )
}

/// `Taurus 24°18′` (degrees and minutes truncated, as charts print them).
pub fn sign_position(lon: f64) -> String {
    let (sign, deg) = astro::chart::sign_of(lon);
    let total_minutes = (deg * 60.0).floor() as i64;
    let mut name = sign.to_owned();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{name} {}°{:02}′", total_minutes / 60, total_minutes % 60)
}

fn dm(deg: f64) -> String {
    let total = (deg * 60.0).round() as i64;
    format!("{}°{:02}′", total / 60, total % 60)
}

fn title(name: &str) -> String {
    let mut s = name.replace('_', " ");
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}

/// The human-readable chart.
pub fn render(c: &Chart) -> String {
    let mut out = String::new();
    let i = &c.input;
    let off = i.utc_offset_seconds;
    let _ = writeln!(
        out,
        "Natal chart  {} {} (UTC{}{:02}:{:02}) = {}",
        i.local,
        i.timezone,
        if off < 0 { '-' } else { '+' },
        off.abs() / 3600,
        off.abs() % 3600 / 60,
        i.utc
    );
    let _ = writeln!(
        out,
        "Place {:.4}°{} {:.4}°{}   houses: {}\n",
        i.latitude.abs(),
        if i.latitude < 0.0 { 'S' } else { 'N' },
        i.longitude.abs(),
        if i.longitude < 0.0 { 'W' } else { 'E' },
        c.house_system
    );
    let _ = writeln!(
        out,
        "{:<10} {:<18} {:>5}  {:>9}",
        "Body", "Position", "House", "°/day"
    );
    for p in &c.planets {
        let _ = writeln!(
            out,
            "{:<10} {:<18} {:>5}  {:>+9.4}{}",
            title(&p.name),
            sign_position(p.longitude),
            p.house,
            p.speed,
            if p.retrograde { " ℞" } else { "" }
        );
    }
    let _ = writeln!(out, "\nAscendant  {}", sign_position(c.ascendant));
    let _ = writeln!(out, "MC         {}", sign_position(c.mc));
    let _ = writeln!(out, "\nHouse cusps");
    for (n, cusp) in c.houses.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}  {}", n + 1, sign_position(*cusp));
    }
    let _ = writeln!(out, "\nAspects");
    if c.aspects.is_empty() {
        let _ = writeln!(out, "  (none within the orbs)");
    }
    for a in &c.aspects {
        let _ = writeln!(
            out,
            "  {:<9} {:<11} {:<9} orb {:>6}  {}",
            title(&a.a),
            a.kind,
            title(&a.b),
            dm(a.orb),
            if a.applying { "applying" } else { "separating" }
        );
    }
    for w in &c.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_truncate_to_the_minute() {
        assert_eq!(sign_position(54.305), "Taurus 24°18′");
        assert_eq!(sign_position(59.999_99), "Taurus 29°59′");
        assert_eq!(sign_position(0.0), "Aries 0°00′");
    }

    #[test]
    fn orbs_parse() {
        assert_eq!(parse_orb("square=5").unwrap(), (AspectKind::Square, 5.0));
        assert!(parse_orb("quincunx=2").is_err());
        assert!(parse_house_system("campanus").is_err());
    }

    #[test]
    fn render_lists_every_body_and_cusp() {
        let args = ChartArgs {
            datetime: "1990-05-15T12:30".into(),
            timezone: "Asia/Seoul".into(),
            latitude: 37.5665,
            longitude: 126.978,
            house_system: HouseSystem::Placidus,
            orbs: vec![],
            json: false,
        };
        let (birth, opts) = to_engine(&args);
        let chart = astro::compute(&birth, &opts).unwrap();
        let text = render(&chart);
        for p in &chart.planets {
            assert!(text.contains(&sign_position(p.longitude)), "{}", p.name);
        }
        assert!(text.contains("Mean node") && text.contains("℞"));
        assert!(text.matches('′').count() >= 11 + 2 + 12);
    }
}
