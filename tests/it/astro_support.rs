//! Helpers for the astrology differential tests: a seeded generator of instants and places,
//! and error statistics (max, p99) in arc-seconds.

use chrono::{DateTime, TimeZone, Utc};

/// SplitMix64: small, seedable, good enough to spread test cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// A UTC instant uniformly spread over 1900-01-01 … 2050-12-31, to the second.
    pub fn instant(&mut self) -> DateTime<Utc> {
        let start = Utc
            .with_ymd_and_hms(1900, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp();
        let end = Utc
            .with_ymd_and_hms(2050, 12, 31, 0, 0, 0)
            .unwrap()
            .timestamp();
        let t = self.uniform(start as f64, end as f64) as i64;
        Utc.timestamp_opt(t, 0).unwrap()
    }
}

/// |a − b| for angles in degrees, in arc-seconds (wrapping at 360°).
pub fn arcsec(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d) * 3600.0
}

/// (max, p99) of a list of errors.
pub fn max_p99(errors: &mut [f64]) -> (f64, f64) {
    errors.sort_by(f64::total_cmp);
    let max = errors.last().copied().unwrap_or(0.0);
    let idx = ((errors.len() as f64) * 0.99).ceil() as usize;
    let p99 = errors[idx.saturating_sub(1).min(errors.len() - 1)];
    (max, p99)
}
