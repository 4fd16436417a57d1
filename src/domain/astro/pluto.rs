//! Pluto's heliocentric ecliptic coordinates from the periodic series of Meeus, *Astronomical
//! Algorithms* (2nd ed.), ch. 37 (valid 1885–2099; referred to the J2000 ecliptic and
//! equinox), precessed to the mean ecliptic and equinox of date (Meeus eq. 21.5).

use super::math::{ARCSEC, DEG, centuries, norm_rad};

/// (J, S, P multiples; longitude A, B; latitude A, B; radius A, B) — table 37.A.
type Term = (i8, i8, i8, i32, i32, i32, i32, i32, i32);

const TERMS: [Term; 43] = [
    (
        0,
        0,
        1,
        -19_799_805,
        19_850_055,
        -5_452_852,
        -14_974_862,
        66_865_439,
        68_951_812,
    ),
    (
        0,
        0,
        2,
        897_144,
        -4_954_829,
        3_527_812,
        1_672_790,
        -11_827_535,
        -332_538,
    ),
    (
        0, 0, 3, 611_149, 1_211_027, -1_050_748, 327_647, 1_593_179, -1_438_890,
    ),
    (
        0, 0, 4, -341_243, -189_585, 178_690, -292_153, -18_444, 483_220,
    ),
    (0, 0, 5, 129_287, -34_992, 18_650, 100_340, -65_977, -85_431),
    (0, 0, 6, -38_164, 30_893, -30_697, -25_823, 31_174, -6_032),
    (0, 1, -1, 20_442, -9_987, 4_878, 11_248, -5_794, 22_161),
    (0, 1, 0, -4_063, -5_071, 226, -64, 4_601, 4_032),
    (0, 1, 1, -6_016, -3_336, 2_030, -836, -1_729, 234),
    (0, 1, 2, -3_956, 3_039, 69, -604, -415, 702),
    (0, 1, 3, -667, 3_572, -247, -567, 239, 723),
    (0, 2, -2, 1_276, 501, -57, 1, 67, -67),
    (0, 2, -1, 1_152, -917, -122, 175, 1_034, -451),
    (0, 2, 0, 630, -1_277, -49, -164, -129, 504),
    (1, -1, 0, 2_571, -459, -197, 199, 480, -231),
    (1, -1, 1, 899, -1_449, -25, 217, 2, -441),
    (1, 0, -3, -1_016, 1_043, 589, -248, -3_359, 265),
    (1, 0, -2, -2_343, -1_012, -269, 711, 7_856, -7_832),
    (1, 0, -1, 7_042, 788, 185, 193, 36, 45_763),
    (1, 0, 0, 1_199, -338, 315, 807, 8_663, 8_547),
    (1, 0, 1, 418, -67, -130, -43, -809, -769),
    (1, 0, 2, 120, -274, 5, 3, 263, -144),
    (1, 0, 3, -60, -159, 2, 17, -126, 32),
    (1, 0, 4, -82, -29, 2, 5, -35, -16),
    (1, 1, -3, -36, -29, 2, 3, -19, -4),
    (1, 1, -2, -40, 7, 3, 1, -15, 8),
    (1, 1, -1, -14, 22, 2, -1, -4, 12),
    (1, 1, 0, 4, 13, 1, -1, 5, 6),
    (1, 1, 1, 5, 2, 0, -1, 3, 1),
    (1, 1, 3, -1, 0, 0, 0, 6, -2),
    (2, 0, -6, 2, 0, 0, -2, 2, 2),
    (2, 0, -5, -4, 5, 2, 2, -2, -2),
    (2, 0, -4, 4, -7, -7, 0, 14, 13),
    (2, 0, -3, 14, 24, 10, -8, -63, 13),
    (2, 0, -2, -49, -34, -3, 20, 136, -236),
    (2, 0, -1, 163, -48, 6, 5, 273, 1_065),
    (2, 0, 0, 9, -24, 14, 17, 251, 149),
    (2, 0, 1, -4, 1, -2, 0, -25, -9),
    (2, 0, 2, -3, 1, 0, 0, 9, -2),
    (2, 0, 3, 1, 3, 0, 0, -8, 7),
    (3, 0, -2, -3, -1, 0, 1, 2, -10),
    (3, 0, -1, 5, -3, 0, 0, 19, 35),
    (3, 0, 0, 0, 0, 1, 0, 10, 3),
];

/// Heliocentric (longitude, latitude, radians; distance, AU), J2000 ecliptic and equinox.
pub fn heliocentric_j2000(jd_tt: f64) -> (f64, f64, f64) {
    let t = centuries(jd_tt);
    let j = 34.35 + 3_034.905_7 * t;
    let s = 50.08 + 1_222.113_8 * t;
    let p = 238.96 + 144.96 * t;
    let (mut sl, mut sb, mut sr) = (0.0, 0.0, 0.0);
    for &(cj, cs, cp, la, lb, ba, bb, ra, rb) in &TERMS {
        let arg = (f64::from(cj) * j + f64::from(cs) * s + f64::from(cp) * p) * DEG;
        let (sa, ca) = arg.sin_cos();
        sl += f64::from(la) * sa + f64::from(lb) * ca;
        sb += f64::from(ba) * sa + f64::from(bb) * ca;
        sr += f64::from(ra) * sa + f64::from(rb) * ca;
    }
    let lon = (238.958_116 + 144.96 * t + sl * 1e-6) * DEG;
    let lat = (-3.908_239 + sb * 1e-6) * DEG;
    let r = 40.724_134_6 + sr * 1e-7;
    (norm_rad(lon), lat, r)
}

/// Precess ecliptic (longitude, latitude) from the J2000 ecliptic and equinox to the mean
/// ecliptic and equinox of `jd_tt` (Meeus eq. 21.5 with the IAU 1976 angles).
pub fn precess_from_j2000(lon: f64, lat: f64, jd_tt: f64) -> (f64, f64) {
    let t = centuries(jd_tt);
    let eta = (47.002_9 * t - 0.033_02 * t * t + 0.000_060 * t * t * t) * ARCSEC;
    let pi = 174.876_384 * DEG + (-869.808_9 * t + 0.035_36 * t * t) * ARCSEC;
    let p = (5_029.096_6 * t + 1.111_13 * t * t - 0.000_006 * t * t * t) * ARCSEC;
    let (se, ce) = eta.sin_cos();
    let (sb, cb) = lat.sin_cos();
    let (sd, cd) = (pi - lon).sin_cos();
    let a = ce * cb * sd - se * sb;
    let b = cb * cd;
    let c = ce * sb + se * cb * sd;
    (norm_rad(p + pi - a.atan2(b)), c.clamp(-1.0, 1.0).asin())
}

/// Heliocentric (longitude, latitude, distance), mean ecliptic and equinox of date.
pub fn heliocentric_of_date(jd_tt: f64) -> (f64, f64, f64) {
    let (l, b, r) = heliocentric_j2000(jd_tt);
    let (l, b) = precess_from_j2000(l, b, jd_tt);
    (l, b, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meeus example 37.a: 1992-10-13 0h TD, l = 232.74071°, b = 14.58782°, r = 29.711111 AU.
    #[test]
    fn meeus_example_37a() {
        let (l, b, r) = heliocentric_j2000(2_448_908.5);
        assert!((l / DEG - 232.740_71).abs() < 1e-5, "{}", l / DEG);
        assert!((b / DEG - 14.587_82).abs() < 1e-4, "{}", b / DEG);
        assert!((r - 29.711_111).abs() < 1e-5, "{r}");
    }

    /// Meeus example 21.c: θ Persei's ecliptic coordinates need no check here; precessing
    /// by zero years must be the identity.
    #[test]
    fn precession_identity_at_j2000() {
        let (l, b) = precess_from_j2000(1.0, 0.2, super::super::math::J2000);
        assert!((l - 1.0).abs() < 1e-12 && (b - 0.2).abs() < 1e-12);
    }
}
