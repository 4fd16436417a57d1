//! The apparent geocentric Sun: VSOP87D Earth (full series, equinox of date) turned around to
//! geocentric, corrected to the FK5 frame, plus nutation in longitude and annual aberration
//! (Meeus, *Astronomical Algorithms* ch. 25 "higher accuracy") and the IAU 2000 precession-rate
//! correction. Also the equation of time.

use std::f64::consts::{PI, TAU};

use super::nutation::{Nutation, mean_obliquity, nutation};
use super::time::centuries_since_j2000;

const ARCSEC: f64 = PI / (180.0 * 3600.0);

/// Where the Sun appears from the centre of the Earth, true ecliptic and equinox of date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SunPosition {
    /// Apparent ecliptic longitude, radians in [0, 2π).
    pub longitude: f64,
    /// Ecliptic latitude, radians (always within ±1″).
    pub latitude: f64,
    /// Earth–Sun distance, astronomical units.
    pub distance_au: f64,
}

/// Normalise an angle to [0, 2π).
pub fn normalize(angle: f64) -> f64 {
    let a = angle.rem_euclid(TAU);
    if a >= TAU { 0.0 } else { a }
}

/// The geometric geocentric Sun in the FK5 frame (no nutation, no aberration).
fn geometric_fk5(jd_tt: f64) -> (f64, f64, f64) {
    let earth = vsop87::vsop87d::earth(jd_tt);
    let t = centuries_since_j2000(jd_tt);
    let lon = earth.longitude() + PI;
    let lat = -earth.latitude();
    // Meeus 32.3: from the VSOP87 dynamical ecliptic to FK5.
    let lp = lon - (1.397 * t + 0.00031 * t * t).to_radians();
    let dlon = (-0.09033 + 0.03916 * (lp.cos() + lp.sin()) * lat.tan()) * ARCSEC;
    let dlat = 0.03916 * (lp.cos() - lp.sin()) * ARCSEC;
    // IAU 2000 correction to the IAU 1976 precession rate in longitude (δψ_A = −0.29965″ per
    // century), which VSOP87's equinox of date predates; JPL/IAU 2006 reductions include it.
    // Without it the solar terms drift by ~7 s per century from J2000.
    let dprec = -0.29965 * t * ARCSEC;
    (lon + dlon + dprec, lat + dlat, earth.distance())
}

/// The apparent position of the Sun at a Julian Day in TT.
pub fn apparent_position(jd_tt: f64) -> SunPosition {
    apparent_with(jd_tt, nutation(jd_tt))
}

/// The apparent position given the nutation at that instant.
fn apparent_with(jd_tt: f64, nut: Nutation) -> SunPosition {
    let (lon, lat, r) = geometric_fk5(jd_tt);
    let aberration = -20.4898 * ARCSEC / r;
    SunPosition {
        longitude: normalize(lon + nut.dpsi + aberration),
        latitude: lat,
        distance_au: r,
    }
}

/// The apparent geocentric ecliptic longitude of the Sun (radians in [0, 2π)) at a Julian Day
/// in TT, referred to the true equinox of date.
pub fn apparent_longitude(jd_tt: f64) -> f64 {
    apparent_position(jd_tt).longitude
}

/// The apparent right ascension and declination of the Sun (radians), true equator of date.
pub fn apparent_equatorial(jd_tt: f64) -> (f64, f64) {
    equatorial_with(jd_tt, nutation(jd_tt))
}

fn equatorial_with(jd_tt: f64, nut: Nutation) -> (f64, f64) {
    let pos = apparent_with(jd_tt, nut);
    let eps = mean_obliquity(jd_tt) + nut.deps;
    let (sl, cl) = pos.longitude.sin_cos();
    let (se, ce) = eps.sin_cos();
    let ra = (sl * ce - pos.latitude.tan() * se).atan2(cl);
    let dec = (pos.latitude.sin() * ce + pos.latitude.cos() * se * sl).asin();
    (normalize(ra), dec)
}

/// The equation of time (apparent solar time − mean solar time) in seconds of time at a Julian
/// Day in TT (Meeus 28.3). Positive when a sundial is ahead of the mean clock.
pub fn equation_of_time_seconds(jd_tt: f64) -> f64 {
    let tau = centuries_since_j2000(jd_tt) / 10.0;
    let l0 = (280.466_456_7
        + tau
            * (360_007.698_277_9
                + tau * (0.030_320_28 + tau * (1.0 / 49_931.0 - tau * (1.0 / 15_300.0)))))
        .to_radians();
    let n = nutation(jd_tt);
    let (ra, _) = equatorial_with(jd_tt, n);
    let eps = mean_obliquity(jd_tt) + n.deps;
    let e = l0 - 0.005_718_3_f64.to_radians() - ra + n.dpsi * eps.cos();
    // Reduce to (−π, π] and convert radians of hour angle to seconds of time.
    let e = (e + PI).rem_euclid(TAU) - PI;
    e / TAU * 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meeus example 25.b: 1992-10-13 0h TD, apparent λ = 199°54′21.818″.
    #[test]
    fn meeus_example_25b() {
        let lon = apparent_longitude(2_448_908.5).to_degrees() * 3600.0;
        let want = 199.0 * 3600.0 + 54.0 * 60.0 + 21.818;
        assert!((lon - want).abs() < 0.5, "{lon} vs {want}");
    }

    /// Meeus example 28.b: 1992-10-13 0h TD, E = 13m42.6s.
    #[test]
    fn meeus_example_28b() {
        let e = equation_of_time_seconds(2_448_908.5);
        assert!((e - (13.0 * 60.0 + 42.6)).abs() < 1.0, "{e}");
    }
}
