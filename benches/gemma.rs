//! Gemma 3 270M (Q4_K_M GGUF): our forward (`engine::gemma3`) beside llama.cpp
//! (llama-cpp-python over a pipe, `scripts/oracles/llama_bench.py`) on the same file, one
//! thread, alternating rounds: prompt tok/s (a 128-token prefill) and greedy decode tok/s (32
//! tokens), printed with their ratios, against llama.cpp with its extra buffer types off (the
//! plain ggml CPU path) and on (its default: on this CPU the AMX buffer, which takes Gemma's
//! `Q8_0`, `Q4_K` and `Q6_K` matrices — the output head included — but not its `Q5_0` ones). Also the load time and resident-memory
//! growth of our loader (RoPE capped at the context) against candle's `quantized_gemma3`
//! (RoPE for 131,072 positions per layer), and our batched decode: aggregate tok/s of
//! [`STREAMS`] sequences stepped together against one. Criterion then times one decode step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use candle_core::quantized::gguf_file;
use criterion::{Criterion, Throughput, criterion_group};
use starpillar::engine::gemma3::{DEFAULT_CONTEXT, Model, Seq};

use crate::common::{self, LlamaCpp};

const PROMPT: usize = 128;
const DECODE: usize = 32;
const ROUNDS: usize = 3;
/// Sequences per batched decode step.
const STREAMS: usize = 4;

fn gguf() -> PathBuf {
    common::model_file("gemma3-270m")
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

fn load_ours(path: &Path) -> Model {
    let mut file = std::fs::File::open(path).expect("open");
    let content = gguf_file::Content::read(&mut file).expect("GGUF");
    Model::from_content(&content, &mut file, DEFAULT_CONTEXT, &Device::Cpu).expect("load")
}

/// (seconds, RSS growth in MiB) of loading with `load`, the model dropped afterwards.
fn measure_load<T>(load: impl FnOnce() -> T) -> (f64, f64) {
    let before = rss_mib();
    let t0 = Instant::now();
    let model = load();
    let secs = t0.elapsed().as_secs_f64();
    let grown = rss_mib() - before;
    drop(model);
    (secs, grown)
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
    let mut logits = model.forward(&mut seq, prompt).expect("prefill");
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for _ in 1..DECODE {
        logits = model.forward(&mut seq, &[argmax(&logits)]).expect("decode");
    }
    (prefill, t1.elapsed().as_secs_f64())
}

/// Aggregate decode tok/s of `streams` sequences (each after a 32-token prompt) stepped
/// together by `decode_batch`.
fn ours_batched(model: &Model, prompt: &[u32], streams: usize) -> f64 {
    let mut seqs: Vec<Seq> = (0..streams)
        .map(|i| {
            let mut s = model.new_seq();
            model.forward(&mut s, &prompt[i..i + 32]).expect("prefill");
            s
        })
        .collect();
    let mut tokens = vec![42u32; streams];
    let t0 = Instant::now();
    for _ in 1..DECODE {
        let mut refs: Vec<&mut Seq> = seqs.iter_mut().collect();
        let logits = model.decode_batch(&mut refs, &tokens).expect("decode");
        tokens = logits.iter().map(|l| argmax(l)).collect();
    }
    (streams * (DECODE - 1)) as f64 / t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_gemma(c: &mut Criterion) {
    let path = gguf();
    let (ours_s, ours_mib) = measure_load(|| load_ours(&path));
    let (candle_s, candle_mib) = measure_load(|| {
        let mut file = std::fs::File::open(&path).expect("open");
        let content = gguf_file::Content::read(&mut file).expect("GGUF");
        candle_transformers::models::quantized_gemma3::ModelWeights::from_gguf(
            content,
            &mut file,
            &Device::Cpu,
        )
        .expect("candle load")
    });
    println!(
        "gemma load: ours (RoPE to {DEFAULT_CONTEXT}) {ours_s:.2}s +{ours_mib:.0} MiB RSS; \
         candle quantized_gemma3 (RoPE to 131072) {candle_s:.2}s +{candle_mib:.0} MiB RSS"
    );
    let model = load_ours(&path);
    println!(
        "gemma weights (repacked): {:.0} MiB; process RSS after loading: {:.0} MiB",
        model.weight_bytes() as f64 / (1024.0 * 1024.0),
        rss_mib()
    );
    let seed = 20_261_125u64;
    let mut s = seed;
    let mut prompt: Vec<u32> = vec![2];
    prompt.extend((1..PROMPT).map(|_| {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        300 + ((s >> 33) % 20_000) as u32
    }));
    println!("gemma bench: prompt {PROMPT} tokens (seed {seed}), decode {DECODE}, 1 thread");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut cpp = LlamaCpp::start(&path);
    let (mut op, mut od) = (vec![], vec![]);
    let (mut cp, mut cd) = ([vec![], vec![]], [vec![], vec![]]);
    let (mut b1, mut bn) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        b1.push(pool.install(|| ours_batched(&model, &prompt, 1)));
        bn.push(pool.install(|| ours_batched(&model, &prompt, STREAMS)));
        let (p, d) = pool.install(|| ours(&model, &prompt));
        op.push(PROMPT as f64 / p);
        od.push((DECODE - 1) as f64 / d);
        for (i, extra) in [false, true].into_iter().enumerate() {
            let (p, d) = cpp.round(1, extra, &prompt, DECODE);
            cp[i].push(PROMPT as f64 / p);
            cd[i].push((DECODE - 1) as f64 / d);
        }
    }
    drop(cpp);
    let (op, od) = (median(op), median(od));
    for (i, name) in ["llama.cpp", "llama.cpp+AMX"].iter().enumerate() {
        let (p, d) = (median(cp[i].clone()), median(cd[i].clone()));
        println!(
            "gemma 1 thread: prompt tok/s ours {op:.0} {name} {p:.0} (×{:.2}); \
             decode tok/s ours {od:.1} {name} {d:.1} (×{:.2})",
            op / p,
            od / d
        );
    }
    let (b1, bn) = (median(b1), median(bn));
    println!(
        "gemma batched decode, 1 thread: 1 stream {b1:.1} tok/s, {STREAMS} streams {bn:.1} tok/s \
         aggregate (×{:.2})",
        bn / b1
    );
    let mut group = c.benchmark_group("gemma");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    let mut seq = model.new_seq();
    let _ = model.forward(&mut seq, &prompt[..32]);
    group.bench_function("decode_step_1_thread", |b| {
        b.iter_batched(
            || seq.clone(),
            |mut s| pool.install(|| model.forward(&mut s, &[42])),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_gemma);
