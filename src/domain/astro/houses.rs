//! Sidereal time, the Ascendant and Midheaven, and house cusps for the supported systems.
//!
//! Placidus trisects the diurnal/nocturnal semi-arcs of ecliptic points (solved by fixed-point
//! iteration on right ascension); Koch trisects the oblique-ascension arc of the Midheaven's
//! degree; Porphyry trisects the ecliptic quadrants; Equal counts 30° from the Ascendant;
//! Whole Sign starts house 1 at 0° of the Ascendant's sign. Placidus and Koch are undefined
//! inside the polar circles (|φ| ≥ 90° − ε): they fall back to Porphyry and say so.

use super::math::{DEG, centuries, norm_deg, norm_rad};

/// The house systems the engine supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HouseSystem {
    Placidus,
    Koch,
    Porphyry,
    Equal,
    WholeSign,
}

impl HouseSystem {
    pub const ALL: [HouseSystem; 5] = [
        HouseSystem::Placidus,
        HouseSystem::Koch,
        HouseSystem::Porphyry,
        HouseSystem::Equal,
        HouseSystem::WholeSign,
    ];

    /// The API name (`whole_sign`, …).
    pub fn name(self) -> &'static str {
        match self {
            HouseSystem::Placidus => "placidus",
            HouseSystem::Koch => "koch",
            HouseSystem::Porphyry => "porphyry",
            HouseSystem::Equal => "equal",
            HouseSystem::WholeSign => "whole_sign",
        }
    }

    /// Parse an API name; `None` when unknown.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

impl std::fmt::Display for HouseSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Greenwich apparent sidereal time, radians: GMST (Meeus eq. 12.4, IAU 1982, UT taken as
/// UT1) plus the equation of the equinoxes Δψ·cos ε.
pub fn gast(jd_ut: f64, dpsi: f64, true_obliquity: f64) -> f64 {
    let d = jd_ut - 2_451_545.0;
    let t = centuries(jd_ut);
    let gmst =
        280.460_618_37 + 360.985_647_366_29 * d + 0.000_387_933 * t * t - t * t * t / 38_710_000.0;
    norm_rad(norm_deg(gmst) * DEG + dpsi * true_obliquity.cos())
}

/// Angles and cusps of one chart, degrees.
#[derive(Debug, Clone, PartialEq)]
pub struct Houses {
    pub ascendant: f64,
    pub mc: f64,
    /// Twelve cusp longitudes, house 1 first.
    pub cusps: [f64; 12],
    /// The system actually used (Porphyry when Placidus/Koch were undefined).
    pub system: HouseSystem,
    /// Set when the asked system could not be used.
    pub fallback_reason: Option<String>,
}

/// The ecliptic longitude (radians) rising at oblique ascension `oa` (radians) on the
/// horizon of a pole of height `phi` — the Ascendant when `oa = RAMC + 90°`.
fn rising(oa: f64, phi: f64, eps: f64) -> f64 {
    let ramc = oa - 90.0 * DEG;
    let (s, c) = ramc.sin_cos();
    norm_rad(c.atan2(-(s * eps.cos() + phi.tan() * eps.sin())))
}

/// The ecliptic longitude whose right ascension is `ra` (radians).
fn ecliptic_of_ra(ra: f64, eps: f64) -> f64 {
    norm_rad(ra.sin().atan2(ra.cos() * eps.cos()))
}

/// Placidus cusp: the ecliptic point whose hour position is the fraction `f` of its semi-arc.
/// `above` selects the diurnal arc (cusps 11, 12: RA − RAMC = f·DSA) or the nocturnal arc
/// (cusps 2, 3: RA − RAMC = DSA + f·NSA).
fn placidus_cusp(ramc: f64, phi: f64, eps: f64, f: f64, above: bool) -> Option<f64> {
    let offset = |ra: f64| {
        let dec = (ra.sin() * eps.tan()).atan();
        let dsa = (-(phi.tan() * dec.tan())).clamp(-1.0, 1.0).acos();
        if above {
            f * dsa
        } else {
            dsa + f * (std::f64::consts::PI - dsa)
        }
    };
    let mut ra = ramc + if above { f * 90.0 } else { 90.0 + f * 90.0 } * DEG;
    for _ in 0..500 {
        let next = ramc + offset(ra);
        let delta = (next - ra).abs();
        ra = next;
        if delta < 1e-12 {
            let lon = ecliptic_of_ra(ra, eps);
            return lon.is_finite().then_some(lon);
        }
    }
    None
}

/// Compute the angles and cusps. `ramc` = local apparent sidereal time (radians), `phi` =
/// geographic latitude (radians), `eps` = true obliquity (radians).
pub fn houses(ramc: f64, phi: f64, eps: f64, system: HouseSystem) -> Houses {
    // Keep the formulas finite at the poles themselves.
    let phi = phi.clamp(-89.999_999 * DEG, 89.999_999 * DEG);
    let mc = ecliptic_of_ra(ramc, eps);
    let asc = rising(ramc + 90.0 * DEG, phi, eps);
    let polar = phi.abs() >= 90.0 * DEG - eps;
    let mut used = system;
    let mut fallback_reason = None;
    let quad = |c11: f64, c12: f64, c2: f64, c3: f64| -> [f64; 12] {
        let pi = std::f64::consts::PI;
        [
            asc,
            c2,
            c3,
            norm_rad(mc + pi),
            norm_rad(c11 + pi),
            norm_rad(c12 + pi),
            norm_rad(asc + pi),
            norm_rad(c2 + pi),
            norm_rad(c3 + pi),
            mc,
            c11,
            c12,
        ]
    };
    let porphyry = || {
        let upper = norm_rad(asc - mc);
        let lower = norm_rad(mc + std::f64::consts::PI - asc);
        quad(
            norm_rad(mc + upper / 3.0),
            norm_rad(mc + 2.0 * upper / 3.0),
            norm_rad(asc + lower / 3.0),
            norm_rad(asc + 2.0 * lower / 3.0),
        )
    };
    let cusps: [f64; 12] = match system {
        HouseSystem::Placidus | HouseSystem::Koch if polar => {
            used = HouseSystem::Porphyry;
            fallback_reason = Some(format!(
                "{system} houses are undefined at latitude {:.4}° (inside the polar circle); \
                 used porphyry",
                phi / DEG
            ));
            porphyry()
        }
        HouseSystem::Placidus => {
            let cusps = (
                placidus_cusp(ramc, phi, eps, 1.0 / 3.0, true),
                placidus_cusp(ramc, phi, eps, 2.0 / 3.0, true),
                placidus_cusp(ramc, phi, eps, 1.0 / 3.0, false),
                placidus_cusp(ramc, phi, eps, 2.0 / 3.0, false),
            );
            match cusps {
                (Some(a), Some(b), Some(c), Some(d)) => quad(a, b, c, d),
                _ => {
                    used = HouseSystem::Porphyry;
                    fallback_reason = Some(
                        "placidus cusps did not converge this close to the polar circle; \
                         used porphyry"
                            .to_owned(),
                    );
                    porphyry()
                }
            }
        }
        HouseSystem::Koch => {
            let dec_mc = (eps.sin() * mc.sin()).asin();
            let ad = (phi.tan() * dec_mc.tan()).clamp(-1.0, 1.0).asin();
            let step = (90.0 * DEG + ad) / 3.0;
            let oa_asc = ramc + 90.0 * DEG;
            quad(
                rising(oa_asc - 2.0 * step, phi, eps),
                rising(oa_asc - step, phi, eps),
                rising(oa_asc + step, phi, eps),
                rising(oa_asc + 2.0 * step, phi, eps),
            )
        }
        HouseSystem::Porphyry => porphyry(),
        HouseSystem::Equal => std::array::from_fn(|i| norm_rad(asc + i as f64 * 30.0 * DEG)),
        // Set below in degrees, from the Ascendant's sign.
        HouseSystem::WholeSign => [0.0; 12],
    };
    let mut cusps = cusps.map(|c| norm_deg(c / DEG));
    if system == HouseSystem::WholeSign {
        // Exact multiples of 30°, without a round trip through radians.
        let start = (norm_deg(asc / DEG) / 30.0).floor() * 30.0;
        cusps = std::array::from_fn(|i| norm_deg(start + i as f64 * 30.0));
    }
    Houses {
        ascendant: norm_deg(asc / DEG),
        mc: norm_deg(mc / DEG),
        cusps,
        system: used,
        fallback_reason,
    }
}

/// The house (1–12) holding ecliptic longitude `lon` (degrees) between `cusps`.
pub fn house_of(lon: f64, cusps: &[f64; 12]) -> u8 {
    for i in 0..12 {
        let start = cusps[i];
        let end = cusps[(i + 1) % 12];
        let width = norm_deg(end - start);
        if norm_deg(lon - start) < width {
            return i as u8 + 1;
        }
    }
    // Degenerate cusps (all equal) cannot happen for real charts; house 1 is a safe answer.
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 23.44 * DEG;

    #[test]
    fn every_system_is_finite_everywhere() {
        for lat in [
            -90.0, -80.0, -66.0, -30.0, 0.0, 30.0, 66.0, 66.6, 80.0, 90.0,
        ] {
            for lst in (0..360).step_by(15) {
                for sys in HouseSystem::ALL {
                    let h = houses(f64::from(lst) * DEG, lat * DEG, EPS, sys);
                    assert!(
                        h.cusps
                            .iter()
                            .all(|c| c.is_finite() && (0.0..360.0).contains(c))
                    );
                    assert!(h.ascendant.is_finite() && h.mc.is_finite());
                    if lat.abs() > 67.0 && matches!(sys, HouseSystem::Placidus | HouseSystem::Koch)
                    {
                        assert_eq!(h.system, HouseSystem::Porphyry);
                        assert!(h.fallback_reason.is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn placidus_on_the_equator_with_zero_obliquity_is_equal_ra() {
        // With ε → 0 every point has declination 0 and semi-arcs of 90°: cusps every 30°.
        let h = houses(0.0, 0.0, 1e-9, HouseSystem::Placidus);
        for (i, c) in h.cusps.iter().enumerate() {
            let want = norm_deg(90.0 + 30.0 * i as f64);
            assert!(
                (norm_deg(c - want + 180.0) - 180.0).abs() < 1e-6,
                "{i}: {c} vs {want}"
            );
        }
    }

    #[test]
    fn house_of_wraps_around_aries() {
        let cusps = std::array::from_fn(|i| norm_deg(350.0 + 30.0 * i as f64));
        assert_eq!(house_of(355.0, &cusps), 1);
        assert_eq!(house_of(5.0, &cusps), 1);
        assert_eq!(house_of(21.0, &cusps), 2);
        assert_eq!(house_of(349.0, &cusps), 12);
    }
}
