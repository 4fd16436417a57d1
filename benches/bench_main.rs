//! Criterion benchmarks: one module per topic, all run by `cargo bench`.

mod astro;
mod engine;
mod saju;

criterion::criterion_main!(astro::benches, engine::benches, saju::benches);
