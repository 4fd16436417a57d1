//! Apparent geocentric ecliptic coordinates of date (true equinox) for every chart body.
//!
//! Planets: VSOP87D heliocentric coordinates of date for the planet at `t − τ` and for the
//! Earth at `t − τ` (τ the light-time, iterated). Differencing against the *antedated* Earth
//! applies the light-time and the annual aberration together (to first order in v/c, which
//! is below 0.01″). Then the FK5 correction (Meeus eq. 32.3), the IAU 2000 correction to the
//! precession rate, and the nutation in longitude.
//! The Sun is the same computation with a planet at the origin. The Moon and the mean node
//! come from [`super::moon`], Pluto from [`super::pluto`] (precessed to date).

use super::math::{ARCSEC, DEG, LIGHT_DAYS_PER_AU, Vec3, centuries, norm_rad};
use super::{moon, pluto};

/// A body of the chart, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    Sun,
    Moon,
    Mercury,
    Venus,
    Mars,
    Jupiter,
    Saturn,
    Uranus,
    Neptune,
    Pluto,
    MeanNode,
}

impl Body {
    /// Every body, in the order the chart lists them.
    pub const ALL: [Body; 11] = [
        Body::Sun,
        Body::Moon,
        Body::Mercury,
        Body::Venus,
        Body::Mars,
        Body::Jupiter,
        Body::Saturn,
        Body::Uranus,
        Body::Neptune,
        Body::Pluto,
        Body::MeanNode,
    ];

    /// The API name (`mean_node`, …).
    pub fn name(self) -> &'static str {
        match self {
            Body::Sun => "sun",
            Body::Moon => "moon",
            Body::Mercury => "mercury",
            Body::Venus => "venus",
            Body::Mars => "mars",
            Body::Jupiter => "jupiter",
            Body::Saturn => "saturn",
            Body::Uranus => "uranus",
            Body::Neptune => "neptune",
            Body::Pluto => "pluto",
            Body::MeanNode => "mean_node",
        }
    }

    /// The body with this API name.
    pub fn from_name(name: &str) -> Option<Body> {
        Body::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Apparent ecliptic longitude and latitude of date, radians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Apparent {
    pub lon: f64,
    pub lat: f64,
}

/// Heliocentric position of date (VSOP87D, or Pluto's series precessed), rectangular AU.
fn heliocentric(body: Body, jd_tt: f64) -> Vec3 {
    use vsop87::vsop87d;
    let sph = match body {
        Body::Mercury => vsop87d::mercury(jd_tt),
        Body::Venus => vsop87d::venus(jd_tt),
        Body::Mars => vsop87d::mars(jd_tt),
        Body::Jupiter => vsop87d::jupiter(jd_tt),
        Body::Saturn => vsop87d::saturn(jd_tt),
        Body::Uranus => vsop87d::uranus(jd_tt),
        Body::Neptune => vsop87d::neptune(jd_tt),
        Body::Pluto => {
            let (l, b, r) = pluto::heliocentric_of_date(jd_tt);
            return Vec3::from_spherical(l, b, r);
        }
        // The Sun sits at the heliocentric origin; the Moon and node never get here.
        Body::Sun | Body::Moon | Body::MeanNode => {
            return Vec3 {
                x: 0.0,
                y: 0.0,
                z: 0.0,
            };
        }
    };
    Vec3::from_spherical(sph.longitude(), sph.latitude(), sph.distance())
}

fn earth(jd_tt: f64) -> Vec3 {
    let e = vsop87::vsop87d::earth(jd_tt);
    Vec3::from_spherical(e.longitude(), e.latitude(), e.distance())
}

/// The Earth's heliocentric position around one instant: VSOP87D at three nodes `HALF_SPAN`
/// days apart, Lagrange-quadratic in between. Every body of a chart (and its speed) needs the
/// Earth at slightly different light-time-antedated instants; the interpolation error over
/// ±0.4 day is below 2e-8 AU (0.004″), and it saves dozens of full VSOP87 evaluations.
#[derive(Debug, Clone, Copy)]
pub struct EarthTrack {
    t0: f64,
    nodes: [Vec3; 3],
}

impl EarthTrack {
    const HALF_SPAN: f64 = 0.4;

    pub fn new(jd_tt: f64) -> Self {
        let h = Self::HALF_SPAN;
        Self {
            t0: jd_tt,
            nodes: [earth(jd_tt - h), earth(jd_tt), earth(jd_tt + h)],
        }
    }

    /// The Earth at `jd_tt`; exact VSOP87D when far from the track's centre.
    pub fn at(&self, jd_tt: f64) -> Vec3 {
        let s = (jd_tt - self.t0) / Self::HALF_SPAN;
        if s.abs() > 1.0 {
            return earth(jd_tt);
        }
        let (wm, w0, wp) = (
            0.5 * s * (s - 1.0),
            (1.0 - s) * (1.0 + s),
            0.5 * s * (s + 1.0),
        );
        let [m, z, p] = self.nodes;
        Vec3 {
            x: wm * m.x + w0 * z.x + wp * p.x,
            y: wm * m.y + w0 * z.y + wp * p.y,
            z: wm * m.z + w0 * z.z + wp * p.z,
        }
    }
}

/// Geocentric (longitude, latitude) of a planet or the Sun, mean equinox of date, with
/// light-time and aberration, before the FK5 correction and nutation. One light-time
/// iteration from the geometric distance leaves τ wrong by |dΔ/dt|/c·τ ≲ 2e-4·τ, which moves
/// the result by less than 0.01″.
fn planet_geocentric(body: Body, jd_tt: f64, earth: &EarthTrack) -> (f64, f64) {
    let tau = (heliocentric(body, jd_tt) - earth.at(jd_tt)).norm() * LIGHT_DAYS_PER_AU;
    let t = jd_tt - tau;
    (heliocentric(body, t) - earth.at(t)).to_lon_lat()
}

/// The VSOP87 → FK5 correction of a geocentric longitude/latitude (Meeus eq. 32.3).
fn fk5(lon: f64, lat: f64, jd_tt: f64) -> (f64, f64) {
    let t = centuries(jd_tt);
    let lp = lon - (1.397 * t + 0.000_31 * t * t) * DEG;
    let (s, c) = lp.sin_cos();
    let dl = (-0.090_33 + 0.039_16 * (c + s) * lat.tan()) * ARCSEC;
    let db = 0.039_16 * (c - s) * ARCSEC;
    (lon + dl, lat + db)
}

/// Apparent geocentric ecliptic coordinates of date of `body` at `jd_tt`, given the
/// nutation in longitude `dpsi` (radians) at that instant.
pub fn apparent(body: Body, jd_tt: f64, dpsi: f64) -> Apparent {
    apparent_with(body, jd_tt, dpsi, &EarthTrack::new(jd_tt))
}

/// [`apparent`] with a precomputed [`EarthTrack`] centred near `jd_tt`.
pub fn apparent_with(body: Body, jd_tt: f64, dpsi: f64, earth: &EarthTrack) -> Apparent {
    // The IAU 2000 correction to the IAU 1976 precession rate in longitude (−0.29965″ per
    // century), which the theories' equinox of date predates (as in `ephem::sun`).
    let precession_rate = -0.299_65 * centuries(jd_tt) * ARCSEC;
    let (lon, lat) = match body {
        Body::Moon => {
            let (l, b) = moon::geocentric(jd_tt);
            (l + precession_rate, b)
        }
        Body::MeanNode => (moon::mean_node(jd_tt), 0.0),
        Body::Pluto => {
            let (l, b) = planet_geocentric(body, jd_tt, earth);
            (l + precession_rate, b)
        }
        _ => {
            let (l, b) = planet_geocentric(body, jd_tt, earth);
            let (l, b) = fk5(l, b, jd_tt);
            (l + precession_rate, b)
        }
    };
    Apparent {
        lon: norm_rad(lon + dpsi),
        lat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meeus example 33.a: Venus on 1992-12-20 0h TD, apparent λ = 313.08102°, β = −2.08474°
    /// (his nutation Δψ = +16.749″ is supplied here). Meeus truncates VSOP87, hence 1.5″.
    #[test]
    fn meeus_example_33a_venus() {
        let a = apparent(Body::Venus, 2_448_976.5, 16.749 * ARCSEC);
        assert!(
            (a.lon / DEG - 313.081_02).abs() < 1.5 / 3600.0,
            "{}",
            a.lon / DEG
        );
        assert!(
            (a.lat / DEG + 2.084_74).abs() < 1.5 / 3600.0,
            "{}",
            a.lat / DEG
        );
    }

    /// The antedated-Earth Sun agrees with `ephem::sun` (explicit aberration formula) to
    /// well under 0.05″ across the centuries.
    #[test]
    fn sun_agrees_with_the_ephem_sun() {
        for jd in [
            2_415_020.5,
            2_448_908.5,
            2_451_545.0,
            2_460_000.3,
            2_469_807.5,
        ] {
            let dpsi = crate::domain::ephem::nutation::nutation(jd).dpsi;
            let mine = apparent(Body::Sun, jd, dpsi).lon;
            let theirs = crate::domain::ephem::sun::apparent_longitude(jd);
            let diff = super::super::math::diff_deg(theirs / DEG, mine / DEG) * 3600.0;
            assert!(diff.abs() < 0.05, "{jd}: {diff}″");
        }
    }

    #[test]
    fn names_round_trip() {
        for b in Body::ALL {
            assert_eq!(Body::from_name(b.name()), Some(b));
        }
    }
}
