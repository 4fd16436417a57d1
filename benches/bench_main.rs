//! Criterion benchmarks: one module per topic, all run by `cargo bench`.

mod astro;
mod common;
mod engine;
mod gemma;
mod generate;
mod retrieval;
mod saju;

criterion::criterion_main!(
    astro::benches,
    engine::benches,
    gemma::benches,
    generate::benches,
    saju::benches,
    retrieval::benches
);
