//! Saju benchmarks: one full chart (civil time → UTC, four pillars, ten gods, hidden stems,
//! stages, luck pillars, previous/next solar term) beside `tyme4rs` (6tail's Rust port of the
//! reference algorithm) computing the same four pillars and the luck start from the same
//! birth, in the same run. The ratio of the two medians is the figure to report.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use starpillar::domain::saju::{BirthInput, Calendar, ChartOptions, Sex, compute};
use tyme4rs::tyme::Culture;
use tyme4rs::tyme::eightchar::ChildLimit;
use tyme4rs::tyme::enums::Gender;
use tyme4rs::tyme::solar::SolarTime;

fn full_chart(c: &mut Criterion) {
    let birth = BirthInput {
        date: "1990-05-15".into(),
        time: Some("14:30".into()),
        calendar: Calendar::Solar,
        leap_month: false,
        timezone: "Asia/Seoul".into(),
        longitude: 126.978,
    };
    let options = ChartOptions::default();
    let mut group = c.benchmark_group("saju_full_chart");
    group.bench_function("starpillar", |b| {
        b.iter(|| compute(black_box(&birth), Sex::Female, options))
    });
    // tyme4rs reads the civil clock as Beijing time; the same wall time is fed to it, which
    // costs it the same work (pillars from its term tables, plus the luck start).
    group.bench_function("tyme4rs", |b| {
        b.iter(|| {
            let t = SolarTime::from_ymd_hms(black_box(1990), 5, 15, 14, 30, 0);
            let ec = t.get_lunar_hour().get_eight_char();
            let limit = ChildLimit::from_solar_time(t, Gender::WOMAN);
            (
                ec.get_year().get_name(),
                ec.get_month().get_name(),
                ec.get_day().get_name(),
                ec.get_hour().get_name(),
                limit.get_year_count(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, full_chart);
