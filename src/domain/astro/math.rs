//! Angle helpers shared by the astrology engine: normalisation, unit conversion and the
//! rectangular ↔ spherical conversions of ecliptic coordinates.

use std::f64::consts::TAU;

/// Degrees → radians.
pub const DEG: f64 = std::f64::consts::PI / 180.0;
/// Arc-seconds → radians.
pub const ARCSEC: f64 = DEG / 3600.0;
/// Days per Julian century.
pub const CENTURY: f64 = 36_525.0;
/// The Julian day of J2000.0 (TT).
pub const J2000: f64 = 2_451_545.0;
/// Light-time for one astronomical unit, in days.
pub const LIGHT_DAYS_PER_AU: f64 = 0.005_775_518_3;

/// An angle in radians reduced to `[0, 2π)`.
pub fn norm_rad(x: f64) -> f64 {
    let r = x.rem_euclid(TAU);
    if r >= TAU { 0.0 } else { r }
}

/// An angle in degrees reduced to `[0, 360)`.
pub fn norm_deg(x: f64) -> f64 {
    let r = x.rem_euclid(360.0);
    if r >= 360.0 { 0.0 } else { r }
}

/// The signed difference `b − a` in degrees, reduced to `(−180, 180]`.
pub fn diff_deg(a: f64, b: f64) -> f64 {
    let d = norm_deg(b - a);
    if d > 180.0 { d - 360.0 } else { d }
}

/// Julian centuries of TT since J2000.0.
pub fn centuries(jd_tt: f64) -> f64 {
    (jd_tt - J2000) / CENTURY
}

/// A 3-vector in astronomical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vec3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl std::ops::Sub for Vec3 {
    type Output = Self;

    fn sub(self, o: Self) -> Self {
        Self {
            x: self.x - o.x,
            y: self.y - o.y,
            z: self.z - o.z,
        }
    }
}

impl Vec3 {
    /// From spherical coordinates (longitude, latitude in radians; distance).
    pub fn from_spherical(lon: f64, lat: f64, r: f64) -> Self {
        let (sl, cl) = lon.sin_cos();
        let (sb, cb) = lat.sin_cos();
        Self {
            x: r * cb * cl,
            y: r * cb * sl,
            z: r * sb,
        }
    }

    pub fn norm(self) -> f64 {
        (self.x * self.x + self.y * self.y + self.z * self.z).sqrt()
    }

    /// (longitude in `[0, 2π)`, latitude), radians.
    pub fn to_lon_lat(self) -> (f64, f64) {
        let lon = norm_rad(self.y.atan2(self.x));
        let lat = self.z.atan2(self.x.hypot(self.y));
        (lon, lat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_difference() {
        assert_eq!(norm_deg(-30.0), 330.0);
        assert_eq!(norm_deg(720.0), 0.0);
        assert_eq!(diff_deg(350.0, 10.0), 20.0);
        assert_eq!(diff_deg(10.0, 350.0), -20.0);
        assert!((norm_rad(-1.0) - (TAU - 1.0)).abs() < 1e-15);
    }

    #[test]
    fn spherical_round_trip() {
        let v = Vec3::from_spherical(4.0, -0.3, 2.5);
        let (lon, lat) = v.to_lon_lat();
        assert!((lon - 4.0).abs() < 1e-12 && (lat + 0.3).abs() < 1e-12);
        assert!((v.norm() - 2.5).abs() < 1e-12);
    }
}
