//! Pure domain calculations: no I/O, no clocks, no allocation-heavy frameworks. Everything here
//! is a function of its inputs, so it is tested differentially against reference libraries.
//!
//! - [`ephem`]: time scales (UTC, TT, ΔT), nutation, the apparent Sun, solar-term instants.
//! - [`saju`]: the 만세력 — pillars, lunar calendar, ten gods, hidden stems, stages, luck.
//! - [`astro`]: planets, the Moon, houses and aspects of a natal chart.

pub mod astro;
pub mod ephem;
pub mod saju;
