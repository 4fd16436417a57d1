//! The SmolLM2 generator's tokenizer (built from the GGUF metadata) against llama.cpp
//! (llama-cpp-python) on the same Q4_1 GGUF: 80 fixed strings (English, Korean, hanja, emoji,
//! digits, whitespace runs, ChatML control tokens). Greedy generation does not match yet
//! (see src/engine/generator.rs), so it has no test here.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use starpillar::engine::generator::Generator;
use starpillar::engine::{fetch, manifest};

use crate::common::run_oracle;

fn gguf() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let entry = manifest::find("smollm2-135m-instruct").expect("manifest");
        let dir = fetch::fetch(&fetch::cache_root(&home.join(".cache/starpillar")), &entry)
            .unwrap_or_else(|e| panic!("fetching SmolLM2 failed: {e}"));
        dir.join(&entry.main)
    })
    .clone()
}

fn generator() -> &'static Mutex<Generator> {
    static G: OnceLock<Mutex<Generator>> = OnceLock::new();
    G.get_or_init(|| {
        Mutex::new(Generator::load(&gguf(), &candle_core::Device::Cpu, false).expect("loads"))
    })
}

fn tokenizer_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "Hello world",
        "hello 12345 world",
        "  two  spaces",
        "tabs\tand\nnewlines\n\n",
        "오늘의 운세를 알려주세요.",
        "甲子年 乙丑月",
        "emoji 🌙✨👍🏽 👨‍👩‍👧",
        "3.14159 and 2,000,000",
        "<|im_start|>user\nhi<|im_end|>\n",
        "don't won't I'm you'll",
        "   ",
        "",
        "a",
        "Zürich café naïve",
        "def f(x):\n    return x**2",
        "https://example.com/a?b=c&d=e",
        "ALL CAPS TEXT",
        "x=1;y=2",
        "日本語のテキスト",
        "Привет, мир",
        "مرحبا بالعالم",
        "🙂🙃",
        "1",
        "12",
        "123",
        "1234",
        "new\r\nline",
        "trailing space ",
        " leading space",
        "mixed 한글 and English",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let words = [
        "saju", "사주", "pillar", "기둥", "2026", "chart", "운세", "Mars", "화성", "!",
    ];
    for i in 0..50 {
        let a = words[i % words.len()];
        let b = words[(i * 7 + 3) % words.len()];
        let sep = [" ", "  ", "\n", "", "\t"][i % 5];
        v.push(format!("{a}{sep}{b} {i}"));
    }
    v
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let texts = tokenizer_strings();
    assert!(texts.len() >= 75);
    let reference = run_oracle(
        "llama_ref.py",
        &serde_json::json!({"model": gguf(), "tokenize": texts}),
    );
    let g = generator().lock().expect("lock");
    let mut mismatches = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let ours = g.tokenizer.encode(t).expect("encodes");
        let want: Vec<u32> = serde_json::from_value(reference["tokens"][i].clone()).expect("ids");
        if ours != want {
            mismatches.push(format!("{t:?}: ours {ours:?} llama.cpp {want:?}"));
        }
    }
    println!(
        "tokenizer: {} strings, {} mismatches",
        texts.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
