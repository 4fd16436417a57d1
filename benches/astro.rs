//! Astrology benchmarks: one full natal chart (11 bodies with speeds, Placidus houses,
//! aspects), from local civil time and from a UTC instant; and the bodies alone.
//! Compare with the reference: `scripts/oracles/astro_bench.py` times the same chart in
//! skyfield (DE421) and prints charts/s.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group};
use starpillar::domain::astro::{self, Birth, Body, ChartOptions};

fn full_chart(c: &mut Criterion) {
    let birth = Birth {
        datetime: "1990-05-15T12:30".into(),
        timezone: "Asia/Seoul".into(),
        latitude: 37.5665,
        longitude: 126.978,
    };
    let opts = ChartOptions::default();
    c.bench_function("astro_full_chart", |b| {
        b.iter(|| astro::compute(black_box(&birth), black_box(&opts)))
    });
    let utc = Utc.with_ymd_and_hms(1990, 5, 15, 3, 30, 0).unwrap();
    let jd_tt = starpillar::domain::ephem::time::jd_tt(utc);
    for body in [Body::Moon, Body::Jupiter, Body::Pluto] {
        c.bench_function(&format!("astro_position_{}", body.name()), |b| {
            b.iter(|| astro::chart::position(black_box(body), black_box(jd_tt)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = full_chart
}
