//! Time scales and the Sun, shared by the saju and astrology engines: UTC ↔ TT (ΔT), nutation
//! and obliquity, the apparent geocentric longitude of the Sun (VSOP87D), and the 24 solar
//! terms (節氣) found by root-finding on that longitude.

pub mod nutation;
pub mod solar_terms;
pub mod sun;
pub mod time;
