//! Generation speed: the native llama forward (`engine::llama`) beside llama.cpp
//! (llama-cpp-python, driven over a pipe by `scripts/oracles/llama_bench.py`) on the same
//! SmolLM2 Q4_1 GGUF, in the same run, alternating rounds: prompt tok/s (a 128-token prefill)
//! and greedy decode tok/s (64 tokens), at 1 and 2 threads (`GEN_BENCH_THREADS=1,2`), printed
//! as ratios. llama.cpp runs with its extra buffer types off (its AVX2 path, the correctness
//! oracle's setting) and on (its default, AMX on this CPU, whose block arithmetic our
//! whole-block kernels share; its Q4_1 logits are wrong for batches of 32+).
//! Ours runs with its weights in 16-row tiles (`qkernels::tiles`, AVX-512 VNNI) and,
//! alternating, in plain row-major blocks (the older VNNI kernels, and with those off the AVX2
//! kernel).
//! Criterion then times one decode step alone and four sequences decoded together.

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use starpillar::engine::llama::Model;
use starpillar::engine::qkernels;

use crate::common::{self, LlamaCpp};

const PROMPT: usize = 128;
const DECODE: usize = 64;
const ROUNDS: usize = 3;

fn gguf() -> PathBuf {
    common::model_file("smollm2-135m-instruct")
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// (prefill seconds, decode seconds) of ours for one round.
fn ours(model: &Model, prompt: &[u32]) -> (f64, f64) {
    let mut seq = model.new_seq();
    let t0 = Instant::now();
    let mut logits = model.prefill(&mut seq, prompt).expect("prefill");
    let prefill = t0.elapsed().as_secs_f64();
    let mut tok = argmax(&logits);
    let t1 = Instant::now();
    for _ in 1..DECODE {
        logits = model
            .decode_batch(&mut [&mut seq], &[tok])
            .expect("decode")
            .remove(0);
        tok = argmax(&logits);
    }
    (prefill, t1.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn threads_list() -> Vec<usize> {
    std::env::var("GEN_BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

fn bench_generate(c: &mut Criterion) {
    let path = gguf();
    let model = Model::load(&path, false).expect("load");
    let plain = Model::load_with(&path, false, false).expect("load (plain blocks)");
    let q8 = Model::load(&path, true).expect("load (Q8_0 repack)");
    // A fixed pseudo-random prompt of ordinary-text ids (seed printed).
    let seed = 20_261_125u64;
    let mut s = seed;
    let prompt: Vec<u32> = (0..PROMPT)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            300 + ((s >> 33) % 20_000) as u32
        })
        .collect();
    println!("generate bench: prompt {PROMPT} tokens (seed {seed}), decode {DECODE}");
    let mut cpp = LlamaCpp::start(&path);
    for threads in threads_list() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let (mut op, mut od) = (vec![], vec![]);
        let (mut qp, mut qd) = (vec![], vec![]);
        let (mut ap, mut ad) = (vec![], vec![]);
        let (mut pp, mut pd) = (vec![], vec![]);
        let mut cp = [vec![], vec![]];
        let mut cd = [vec![], vec![]];
        for _ in 0..ROUNDS {
            let (p, d) = pool.install(|| ours(&model, &prompt));
            op.push(PROMPT as f64 / p);
            od.push((DECODE - 1) as f64 / d);
            let (p, d) = pool.install(|| ours(&q8, &prompt));
            qp.push(PROMPT as f64 / p);
            qd.push((DECODE - 1) as f64 / d);
            let (p, d) = pool.install(|| ours(&plain, &prompt));
            pp.push(PROMPT as f64 / p);
            pd.push((DECODE - 1) as f64 / d);
            qkernels::set_vnni512(false);
            let (p, d) = pool.install(|| ours(&plain, &prompt));
            qkernels::set_vnni512(true);
            ap.push(PROMPT as f64 / p);
            ad.push((DECODE - 1) as f64 / d);
            for (i, extra) in [false, true].into_iter().enumerate() {
                let (p, d) = cpp.round(threads, extra, &prompt, DECODE);
                cp[i].push(PROMPT as f64 / p);
                cd[i].push((DECODE - 1) as f64 / d);
            }
        }
        let (op, od) = (median(op), median(od));
        let (ap, ad) = (median(ap), median(ad));
        let (pp, pd) = (median(pp), median(pd));
        println!(
            "threads {threads}: ours Q4_1 AVX2 kernel prompt {ap:.0} decode {ad:.1} tok/s; \
             plain-block VNNI kernels prompt {pp:.0} decode {pd:.1}; 16-row tiles \
             (VNNI {}) prompt ×{:.2} decode ×{:.2} over AVX2, ×{:.2} / ×{:.2} over plain VNNI",
            qkernels::has_vnni512(),
            op / ap,
            od / ad,
            op / pp,
            od / pd
        );
        println!(
            "threads {threads}: ours Q4_1 prompt {op:.0} decode {od:.1} tok/s; \
             ours Q8_0 repack prompt {:.0} decode {:.1} tok/s",
            median(qp),
            median(qd)
        );
        for (i, name) in ["llama.cpp", "llama.cpp+AMX"].iter().enumerate() {
            let (p, d) = (median(cp[i].clone()), median(cd[i].clone()));
            println!(
                "threads {threads}: prompt tok/s ours {op:.0} {name} {p:.0} (×{:.2}); \
                 decode tok/s ours {od:.1} {name} {d:.1} (×{:.2})",
                op / p,
                od / d
            );
        }
    }
    drop(cpp);

    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut seq = model.new_seq();
    let _ = model.prefill(&mut seq, &prompt[..32]);
    group.bench_function("decode_step_1_thread", |b| {
        b.iter_batched(
            || seq.clone(),
            |mut s| pool.install(|| model.decode_batch(&mut [&mut s], &[42])),
            criterion::BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(4));
    group.bench_function("decode_step_4_seqs_1_thread", |b| {
        b.iter_batched(
            || vec![seq.clone(), seq.clone(), seq.clone(), seq.clone()],
            |mut v| {
                let mut refs: Vec<&mut _> = v.iter_mut().collect();
                pool.install(|| model.decode_batch(&mut refs, &[42, 43, 44, 45]))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_generate);
