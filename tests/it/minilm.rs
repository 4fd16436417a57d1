//! all-MiniLM-L6-v2 (`--embed-model all-minilm-l6-v2`) against sentence-transformers on CPU
//! torch (scripts/oracles/st_ref.py): identical token ids and cosine ≥ 0.999 per text on the
//! English/Korean fixture plus emoji, empty and long inputs (truncated at the 256 tokens of
//! sentence_bert_config.json), on the default bf16 CPU encoder (AMX or AVX-512 BF16 matrix
//! products; candle f32 on CPUs without them) and on candle's f32 BERT. The opt-in packed
//! int8 CPU encoder is held to 0.99 (its int8 activations measure near 0.998). Batching must
//! not change a vector. Then local folders, and the hub error path of an HF repo id.

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use starpillar::engine::bert::{BertEmbedder, Precision};
use starpillar::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics, embed_round};
use starpillar::engine::{fetch, manifest};

use crate::common::run_oracle;

/// The MiniLM folder, fetched (once) into the shared cache.
pub fn minilm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let data = home.join(".cache/starpillar");
        let entry = manifest::find("all-minilm-l6-v2").expect("in the manifest");
        fetch::fetch(&fetch::cache_root(&data), &entry)
            .unwrap_or_else(|e| panic!("fetching all-minilm-l6-v2 failed: {e}"))
    })
    .clone()
}

/// The fixture: the E5 sentences, then emoji, empty, odd and long (truncated) texts.
fn texts() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/oracles/e5_sentences.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let mut out: Vec<String> = serde_json::from_str(&text).expect("fixture is a JSON list");
    out.extend(
        [
            "",
            " ",
            "?",
            "🙂",
            "I love this 🌕✨ full moon!!! 🙏🏽",
            "Ünïcödé Café naïve façade — “quotes” and ‘more’ …",
            "오늘 운세는 어떤가요? 🍀",
            "日本語と中文の混在テキスト",
            "tab\tand\nnewline\r\ncontrol\u{7}chars",
            "URL https://example.com/a?b=c&d=e#frag and e-mail a.b@example.org",
        ]
        .map(str::to_owned),
    );
    let seed = 20261125u64;
    println!("long-text seed {seed}");
    let words = [
        "saturn",
        "return",
        "pillar",
        "metal",
        "water",
        "ascendant",
        "house",
        "transit",
        "luck",
        "cycle",
        "stem",
        "branch",
        "의",
        "운세",
        "🌙",
    ];
    let mut x = seed;
    for len in [200usize, 253, 254, 255, 300, 600, 2000] {
        let mut s = String::new();
        for _ in 0..len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(words[(x >> 33) as usize % words.len()]);
            s.push(' ');
        }
        out.push(s);
    }
    out
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

struct Reference {
    max_seq_length: usize,
    ids: Vec<Vec<u32>>,
    vectors: Vec<Vec<f64>>,
}

fn reference(texts: &[String]) -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let out = run_oracle(
            "st_ref.py",
            &serde_json::json!({"model_dir": minilm_dir(), "texts": texts, "threads": 1}),
        );
        Reference {
            max_seq_length: out["max_seq_length"].as_u64().expect("limit") as usize,
            ids: serde_json::from_value(out["ids"].clone()).expect("ids"),
            vectors: serde_json::from_value(out["vectors"].clone()).expect("vectors"),
        }
    })
}

fn check(model: &BertEmbedder, label: &str, floor: f64) {
    let texts = texts();
    let want = reference(&texts);
    assert_eq!(
        want.max_seq_length, 256,
        "sentence_bert_config.json says 256"
    );
    assert_eq!(model.max_tokens(), want.max_seq_length);
    assert!(texts.len() >= 200 && want.vectors.len() == texts.len());
    for (i, text) in texts.iter().enumerate() {
        let ours = model.token_ids(text).expect("tokenises");
        assert_eq!(ours, want.ids[i], "token ids of text {i} {text:?}");
    }
    assert!(
        want.ids.iter().any(|ids| ids.len() == 256),
        "some inputs hit the limit"
    );
    let input = EmbedInput {
        texts: texts.clone(),
        kind: EmbedKind::Query,
    };
    let got = embed_round(model, &[&input], 4096, &EmbedMetrics::new()).expect("embeds");
    let mut worst = (1.0f64, 0usize);
    for (i, (a, b)) in got[0].vectors.iter().zip(&want.vectors).enumerate() {
        let c = cosine(a, b);
        if c < worst.0 {
            worst = (c, i);
        }
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4, "text {i} is normalised");
    }
    println!(
        "{label}: {} texts, worst cosine {:.6} (text {})",
        texts.len(),
        worst.0,
        worst.1
    );
    assert!(
        worst.0 >= floor,
        "{label}: text {} {:?} cosine {} < {floor}",
        worst.1,
        texts[worst.1],
        worst.0
    );
}

/// Batching (packing, length order) does not change a vector.
fn batching_changes_nothing(model: &BertEmbedder) {
    let texts = texts();
    let together = EmbedInput {
        texts: texts[..40].to_vec(),
        kind: EmbedKind::Query,
    };
    let metrics = EmbedMetrics::new();
    let batched = embed_round(model, &[&together], 4096, &metrics).expect("batch");
    for (i, text) in texts[..40].iter().enumerate().step_by(7) {
        let alone = EmbedInput {
            texts: vec![text.clone()],
            kind: EmbedKind::Query,
        };
        let single = embed_round(model, &[&alone], 4096, &metrics).expect("single");
        let c = cosine(
            &single[0].vectors[0],
            &batched[0].vectors[i]
                .iter()
                .map(|&x| f64::from(x))
                .collect::<Vec<_>>(),
        );
        assert!(c > 0.99999, "text {i}: batched vs alone {c}");
    }
}

#[test]
fn int8_cpu_encoder_stays_close_and_batching_changes_nothing() {
    let model = BertEmbedder::load(&minilm_dir(), &Device::Cpu, Precision::Int8).expect("loads");
    check(&model, "int8 CPU", 0.99);
    batching_changes_nothing(&model);
}

#[test]
fn bf16_default_matches_sentence_transformers_and_batching_changes_nothing() {
    let model = BertEmbedder::load(&minilm_dir(), &Device::Cpu, Precision::Bf16).expect("loads");
    check(&model, "bf16 (default)", 0.999);
    batching_changes_nothing(&model);
}

#[test]
fn candle_f32_matches_sentence_transformers() {
    let model = BertEmbedder::load(&minilm_dir(), &Device::Cpu, Precision::F32).expect("loads");
    check(&model, "candle f32", 0.999);
}

#[test]
fn a_local_folder_and_the_manifest_name_resolve() {
    let data = crate::common::tempdir::TempDir::new();
    let dir = minilm_dir();
    let (name, source) =
        starpillar::engine::resolve_embed_model(&dir.display().to_string(), data.path())
            .expect("a folder resolves");
    assert_eq!(name, "all-minilm-l6-v2");
    assert_eq!(source, starpillar::engine::EmbedSource::HfBert(dir.clone()));
    let empty = crate::common::tempdir::TempDir::new();
    let err =
        starpillar::engine::resolve_embed_model(&empty.path().display().to_string(), data.path())
            .expect_err("an empty folder is refused");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn an_unreachable_hub_fails_fast_with_the_offline_choices() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let data = crate::common::tempdir::TempDir::new();
    let started = std::time::Instant::now();
    for (flag, spec) in [
        ("--embed-model", "sentence-transformers/all-MiniLM-L12-v2"),
        (
            "--gen-model",
            "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf",
        ),
    ] {
        let args = if flag == "--embed-model" {
            vec!["embed", flag, spec, "--threads", "1", "hello"]
        } else {
            vec!["generate", flag, spec, "hello"]
        };
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_starpillar"))
            .args(&args)
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("STARPILLAR_CACHE", data.path())
            .env("STARPILLAR_DATA_DIR", data.path())
            .output()
            .expect("run starpillar");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {spec}: {stderr}");
        assert!(stderr.contains("hub is unreachable"), "{stderr}");
        assert!(stderr.contains("local"), "{stderr}");
        assert!(stderr.contains("models list"), "{stderr}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "fails fast"
    );
}
