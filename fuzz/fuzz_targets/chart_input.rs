//! Arbitrary bytes as the JSON body of `POST /api/saju` and `POST /api/astrology`: parsed the
//! way `AppJson` does into the request structs, mapped to the engines' input, and the chart
//! computed (and serialised) whenever the input is valid. Nothing may panic; invalid input
//! must come back as an error naming a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starpillar_fuzz::astrology_request::{AstrologyRequest, to_engine};
use starpillar_fuzz::domain::{astro, saju};
use starpillar_fuzz::parse_json;
use starpillar_fuzz::saju_request::SajuRequest;

fuzz_target!(|data: &[u8]| {
    if let Some(req) = parse_json::<SajuRequest>(data) {
        let options = saju::ChartOptions {
            zi_hour: req.options.zi_hour,
            solar_time: req.options.solar_time,
        };
        match saju::compute(&req.birth_input(), req.sex, options) {
            Ok(chart) => {
                let _ = serde_json::to_string(&chart);
            }
            Err(err) => {
                assert!(!err.field().is_empty() && !err.code().is_empty());
                let _ = err.to_string();
            }
        }
    }
    if let Some(req) = parse_json::<AstrologyRequest>(data) {
        let result = to_engine(&req).and_then(|(birth, opts)| astro::compute(&birth, &opts));
        match result {
            Ok(chart) => {
                let _ = serde_json::to_string(&chart);
            }
            Err(err) => {
                assert!(!err.field().is_empty() && !err.code().is_empty());
                let _ = err.to_string();
            }
        }
    }
});
