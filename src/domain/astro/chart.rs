//! One natal chart: resolve the birth instant, compute every body (position, speed,
//! retrograde, house), the angles and cusps, and the aspects, into the [`Chart`] object that
//! the API returns as `chart` and `starpillar chart --json` prints.

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::aspects::{self, AspectKind, Orbs};
use super::bodies::{self, Body, EarthTrack};
use super::houses::{self, HouseSystem, Houses};
use super::math::{DEG, norm_deg};
use super::{AstroError, civil};
use crate::domain::ephem::{nutation, time};

/// The zodiac signs, from 0° Aries.
pub const SIGNS: [&str; 12] = [
    "aries",
    "taurus",
    "gemini",
    "cancer",
    "leo",
    "virgo",
    "libra",
    "scorpio",
    "sagittarius",
    "capricorn",
    "aquarius",
    "pisces",
];

/// Half-width of the central difference used for speeds, days (one hour).
const SPEED_STEP_DAYS: f64 = 1.0 / 24.0;

/// Birth data as given: local civil date-time in an IANA zone, and the place.
#[derive(Debug, Clone, PartialEq)]
pub struct Birth {
    /// `YYYY-MM-DDTHH:MM[:SS]`, local civil time.
    pub datetime: String,
    pub timezone: String,
    /// Degrees, north positive.
    pub latitude: f64,
    /// Degrees, east positive.
    pub longitude: f64,
}

/// What to compute besides the bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartOptions {
    pub house_system: HouseSystem,
    pub orbs: Orbs,
}

impl Default for ChartOptions {
    fn default() -> Self {
        Self {
            house_system: HouseSystem::Placidus,
            orbs: Orbs::default(),
        }
    }
}

/// The resolved input echoed in the chart.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChartInput {
    /// The birth instant in UTC (RFC 3339).
    pub utc: String,
    /// The zone's offset from UTC at that instant, seconds (summer time included).
    pub utc_offset_seconds: i32,
    /// The local civil date-time as given (ISO 8601, no offset).
    pub local: String,
    pub timezone: String,
    pub latitude: f64,
    pub longitude: f64,
    /// TT − UTC used, seconds.
    pub delta_t_seconds: f64,
}

/// One body of the chart.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Planet {
    /// `sun moon mercury venus mars jupiter saturn uranus neptune pluto mean_node`.
    pub name: String,
    /// Apparent geocentric ecliptic longitude of date (true equinox), degrees in [0, 360).
    pub longitude: f64,
    /// Geocentric ecliptic latitude of date, degrees.
    pub latitude: f64,
    /// Longitude speed, degrees per day (negative = retrograde).
    pub speed: f64,
    /// Zodiac sign of the longitude (`aries` … `pisces`).
    pub sign: String,
    /// Degrees within the sign, [0, 30).
    pub degree_in_sign: f64,
    pub retrograde: bool,
    /// House 1–12 holding the longitude.
    pub house: u8,
}

/// One aspect between two bodies.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AspectOut {
    pub a: String,
    pub b: String,
    /// `conjunction sextile square trine opposition`.
    pub kind: String,
    /// The actual angular separation, degrees in [0, 180].
    pub angle: f64,
    /// |separation − exact aspect angle|, degrees.
    pub orb: f64,
    /// True when the separation is moving towards exactness.
    pub applying: bool,
}

/// A natal chart.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Chart {
    pub input: ChartInput,
    pub planets: Vec<Planet>,
    /// Ascendant longitude, degrees.
    pub ascendant: f64,
    /// Midheaven longitude, degrees.
    pub mc: f64,
    /// Twelve cusp longitudes, degrees, house 1 first.
    pub houses: Vec<f64>,
    /// The house system actually used (`porphyry` when Placidus/Koch fell back).
    pub house_system: String,
    pub aspects: Vec<AspectOut>,
    /// Anything the caller should know (fallbacks, reduced accuracy).
    pub warnings: Vec<String>,
}

/// The sign name and degree within it of a longitude.
pub fn sign_of(lon: f64) -> (&'static str, f64) {
    let lon = norm_deg(lon);
    let idx = ((lon / 30.0).floor() as usize).min(11);
    (SIGNS[idx], lon - 30.0 * idx as f64)
}

/// Apparent (longitude°, latitude°) of a body at a TT instant.
pub fn position(body: Body, jd_tt: f64) -> (f64, f64) {
    let a = bodies::apparent(body, jd_tt, nutation::nutation(jd_tt).dpsi);
    (a.lon / DEG, a.lat / DEG)
}

/// Apparent (longitude°, latitude°, speed °/day) of a body at a TT instant.
pub fn position_and_speed(body: Body, jd_tt: f64) -> (f64, f64, f64) {
    Motion::new(jd_tt).of(body)
}

/// What every body of one chart shares: the instant, the Earth around it, and the nutation
/// at the instant and at the speed-difference steps.
struct Motion {
    jd_tt: f64,
    earth: EarthTrack,
    dpsi: [f64; 3],
}

impl Motion {
    fn new(jd_tt: f64) -> Self {
        let h = SPEED_STEP_DAYS;
        Self {
            jd_tt,
            earth: EarthTrack::new(jd_tt),
            dpsi: [jd_tt - h, jd_tt, jd_tt + h].map(|t| nutation::nutation(t).dpsi),
        }
    }

    /// (longitude°, latitude°, speed °/day) by a central difference over ±1 h.
    fn of(&self, body: Body) -> (f64, f64, f64) {
        let h = SPEED_STEP_DAYS;
        let at = |k: usize, t: f64| bodies::apparent_with(body, t, self.dpsi[k], &self.earth);
        let before = at(0, self.jd_tt - h);
        let now = at(1, self.jd_tt);
        let after = at(2, self.jd_tt + h);
        let speed = super::math::diff_deg(before.lon / DEG, after.lon / DEG) / (2.0 * h);
        (now.lon / DEG, now.lat / DEG, speed)
    }
}

/// The Ascendant, MC and cusps at a Julian Day (UT, taken as UT1) and a place (degrees).
pub fn angles_at(jd_ut: f64, latitude: f64, longitude: f64, system: HouseSystem) -> Houses {
    let jd_tt = jd_ut + time::delta_t_seconds(jd_ut) / 86_400.0;
    let nut = nutation::nutation(jd_tt);
    let eps = nutation::mean_obliquity(jd_tt) + nut.deps;
    let ramc = houses::gast(jd_ut, nut.dpsi, eps) + longitude * DEG;
    houses::houses(ramc, latitude * DEG, eps, system)
}

/// Check and resolve the birth data, then compute the chart.
pub fn compute(birth: &Birth, opts: &ChartOptions) -> Result<Chart, AstroError> {
    if !(birth.latitude.is_finite() && (-90.0..=90.0).contains(&birth.latitude)) {
        return Err(AstroError::Latitude(birth.latitude));
    }
    if !(birth.longitude.is_finite() && (-180.0..=180.0).contains(&birth.longitude)) {
        return Err(AstroError::Longitude(birth.longitude));
    }
    if let Some(name) = opts.orbs.invalid() {
        return Err(AstroError::InvalidOrb(name));
    }
    let zone = civil::parse_zone(&birth.timezone)?;
    let local = civil::parse_local(&birth.datetime)?;
    if !(1800..=2199).contains(&local.year()) {
        return Err(AstroError::OutOfRange(local.year()));
    }
    let resolved = civil::resolve(local, zone)?;
    let mut chart = compute_at(resolved.utc, birth.latitude, birth.longitude, opts);
    chart.input.utc_offset_seconds = resolved.utc_offset_seconds;
    chart.input.local = resolved.local.format("%Y-%m-%dT%H:%M:%S").to_string();
    chart.input.timezone = resolved.zone.name().to_owned();
    Ok(chart)
}

/// The chart of a UTC instant at a place (latitude/longitude assumed valid, degrees).
pub fn compute_at(utc: DateTime<Utc>, latitude: f64, longitude: f64, opts: &ChartOptions) -> Chart {
    let jd_ut = time::jd_ut(utc);
    let delta_t = time::delta_t_seconds(jd_ut);
    let jd_tt = jd_ut + delta_t / 86_400.0;
    let h = angles_at(jd_ut, latitude, longitude, opts.house_system);

    let mut warnings = Vec::new();
    if let Some(reason) = &h.fallback_reason {
        warnings.push(reason.clone());
    }
    let year = utc.year();
    if !(1885..=2099).contains(&year) {
        warnings.push(format!(
            "pluto's series (Meeus ch. 37) is fitted to 1885–2099; in {year} its position is \
             less accurate"
        ));
    }

    let mut planets = Vec::with_capacity(Body::ALL.len());
    let mut motion = Vec::with_capacity(Body::ALL.len());
    let motion_of = Motion::new(jd_tt);
    for body in Body::ALL {
        let (lon, lat, speed) = motion_of.of(body);
        let (sign, degree_in_sign) = sign_of(lon);
        motion.push((lon, speed));
        planets.push(Planet {
            name: body.name().to_owned(),
            longitude: lon,
            latitude: lat,
            speed,
            sign: sign.to_owned(),
            degree_in_sign,
            retrograde: speed < 0.0,
            house: houses::house_of(lon, &h.cusps),
        });
    }
    let aspects = aspects::find(&motion, &opts.orbs)
        .into_iter()
        .map(|a| AspectOut {
            a: Body::ALL[a.a].name().to_owned(),
            b: Body::ALL[a.b].name().to_owned(),
            kind: kind_name(a.kind).to_owned(),
            angle: a.angle,
            orb: a.orb,
            applying: a.applying,
        })
        .collect();

    Chart {
        input: ChartInput {
            utc: utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            utc_offset_seconds: 0,
            local: utc.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
            timezone: "UTC".to_owned(),
            latitude,
            longitude,
            delta_t_seconds: delta_t,
        },
        planets,
        ascendant: h.ascendant,
        mc: h.mc,
        houses: h.cusps.to_vec(),
        house_system: h.system.name().to_owned(),
        aspects,
        warnings,
    }
}

fn kind_name(kind: AspectKind) -> &'static str {
    match kind {
        AspectKind::Conjunction => "conjunction",
        AspectKind::Sextile => "sextile",
        AspectKind::Square => "square",
        AspectKind::Trine => "trine",
        AspectKind::Opposition => "opposition",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn birth(lat: f64) -> Birth {
        Birth {
            datetime: "1990-05-15T12:30".into(),
            timezone: "Asia/Seoul".into(),
            latitude: lat,
            longitude: 126.978,
        }
    }

    #[test]
    fn a_full_chart_is_complete_and_consistent() {
        let c = compute(&birth(37.5665), &ChartOptions::default()).unwrap();
        assert_eq!(c.planets.len(), 11);
        assert_eq!(c.houses.len(), 12);
        assert_eq!(c.house_system, "placidus");
        assert_eq!(c.input.utc, "1990-05-15T03:30:00Z");
        assert_eq!(c.houses[0], c.ascendant);
        assert_eq!(c.houses[9], c.mc);
        for p in &c.planets {
            let (sign, deg) = sign_of(p.longitude);
            assert_eq!(p.sign, sign);
            assert!((p.degree_in_sign - deg).abs() < 1e-12);
            assert_eq!(p.retrograde, p.speed < 0.0);
        }
        // The Sun moves about 1°/day, the Moon 11–15°/day; the mean node is always retrograde.
        let speed = |n: &str| c.planets.iter().find(|p| p.name == n).unwrap().speed;
        assert!((0.9..1.1).contains(&speed("sun")));
        assert!((11.0..15.5).contains(&speed("moon")));
        assert!((-0.06..-0.04).contains(&speed("mean_node")));
    }

    #[test]
    fn polar_latitude_falls_back_to_porphyry_with_a_warning() {
        let c = compute(&birth(78.2), &ChartOptions::default()).unwrap();
        assert_eq!(c.house_system, "porphyry");
        assert!(!c.warnings.is_empty());
        assert!(c.houses.iter().all(|h| h.is_finite()));
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let opts = ChartOptions::default();
        let err = compute(&birth(91.0), &opts).unwrap_err();
        assert_eq!(err.field(), "birth.latitude");
        let mut b = birth(10.0);
        b.longitude = -180.5;
        assert_eq!(compute(&b, &opts).unwrap_err().field(), "birth.longitude");
        let mut b = birth(10.0);
        b.timezone = "Asia/Nowhere".into();
        assert_eq!(compute(&b, &opts).unwrap_err().code(), "unknown_timezone");
    }
}
