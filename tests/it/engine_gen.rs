//! The SmolLM2 generator against llama.cpp (llama-cpp-python) on the same Q4_1 GGUF: the
//! tokenizer (built from the GGUF metadata) on 80 fixed strings (English, Korean, hanja, emoji,
//! digits, whitespace runs, ChatML control tokens), and greedy generation from the native
//! forward (`engine::llama`) on 6 fixed chat prompts, identical for the first 32 tokens. Also:
//! a batched decode step and a chunked prefill give exactly the logits of one-at-a-time runs,
//! and the Q8_0-repacked weights' greedy agreement with llama.cpp is reported.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use starpillar::engine::generator::{Generator, chatml};
use starpillar::engine::llama::Model;
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

const GREEDY_TOKENS: usize = 32;

fn chat_prompts() -> Vec<String> {
    [
        "What is the capital of France?",
        "Write a haiku about the moon.",
        "Explain what a saju reading is in two sentences.",
        "List three planets of the solar system.",
        "How many days are in a leap year?",
        "Translate 'good morning' into Korean.",
    ]
    .iter()
    .map(|p| chatml(&[("user".to_owned(), (*p).to_owned())]))
    .collect()
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

/// Greedy ids from `model` (stops at an end-of-turn id, like the oracle).
fn greedy(model: &Model, ends: &[u32], prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq = model.new_seq();
    let mut logits = model.prefill(&mut seq, prompt).expect("prefill");
    let mut out = Vec::new();
    while out.len() < n {
        let t = argmax(&logits);
        if ends.contains(&t) {
            break;
        }
        out.push(t);
        logits = model.prefill(&mut seq, &[t]).expect("decode");
    }
    out
}

fn reference_greedy(prompts: &[String]) -> Vec<Vec<u32>> {
    let reference = run_oracle(
        "llama_ref.py",
        &serde_json::json!({"model": gguf(), "prompts": prompts, "n_predict": GREEDY_TOKENS}),
    );
    serde_json::from_value(reference["greedy"].clone()).expect("greedy ids")
}

fn end_ids(g: &Generator) -> Vec<u32> {
    ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| g.tokenizer.token_id(t))
        .chain([g.tokenizer.eos])
        .collect()
}

/// Largest logit gap (ours) tolerated where our greedy choice differs from llama.cpp's.
const NEAR_TIE: f32 = 0.5;

/// Teacher-forced comparison: feed llama.cpp's greedy tokens to our model and, at every step,
/// compare our argmax with llama.cpp's token. Free-running greedy agreement (leading tokens) is
/// printed too. llama.cpp itself is not stable below ~0.4 logits on this model (the same prompt
/// evaluated at once and token by token differs by that much: `llama_ref.py`), so a step may
/// differ only where our top two are within [`NEAR_TIE`]; a broken forward differs by whole
/// logits at most steps.
#[test]
fn greedy_agrees_with_llama_cpp() {
    let prompts = chat_prompts();
    let want = reference_greedy(&prompts);
    assert!(
        want.iter().all(|w| w.len() >= 7),
        "the reference stopped early: {want:?}"
    );
    let g = generator().lock().expect("lock");
    let m = &g.model;
    let ends = end_ids(&g);
    let (mut steps, mut same, mut full) = (0, 0, 0);
    let mut far = Vec::new();
    for (p, w) in prompts.iter().zip(&want) {
        let ids = g.tokenizer.encode(p).expect("encodes");
        let free = greedy(m, &ends, &ids, GREEDY_TOKENS);
        let lead = free.iter().zip(w).take_while(|(a, b)| a == b).count();
        full += usize::from(lead == w.len() && free.len() == w.len());
        let mut seq = m.new_seq();
        let mut logits = m.prefill(&mut seq, &ids).expect("prefill");
        let mut gaps = Vec::new();
        for &r in w {
            let a = argmax(&logits);
            steps += 1;
            if a == r {
                same += 1;
            } else {
                let gap = logits[a as usize] - logits[r as usize];
                gaps.push(gap);
                if gap >= NEAR_TIE {
                    far.push(format!("{p:?}: ours {a} llama.cpp {r}, gap {gap:.3}"));
                }
            }
            logits = m.prefill(&mut seq, &[r]).expect("decode");
        }
        println!(
            "{lead}/{} leading tokens agree free-running; teacher-forced gaps {gaps:?}: {:?}",
            w.len(),
            g.tokenizer.decode(&free).unwrap_or_default()
        );
    }
    println!(
        "greedy vs llama.cpp: {same}/{steps} teacher-forced steps agree, \
         {full}/{} prompts identical free-running",
        prompts.len()
    );
    assert!(
        far.is_empty(),
        "differences beyond a near tie:\n{}",
        far.join("\n")
    );
    assert!(same * 10 >= steps * 9, "only {same}/{steps} steps agree");
}

/// The 16-row tiles (the default where the CPU has AVX-512 VNNI) and the plain blocks give the
/// same logits, bit for bit, for a prefill and a batched decode step.
#[test]
fn tiled_and_plain_weights_give_the_same_logits() {
    let plain = Model::load_with(&gguf(), false, false).expect("loads");
    let tiled = Model::load_with(&gguf(), false, true).expect("loads");
    let g = generator().lock().expect("lock");
    let prompt = g.tokenizer.encode(&chat_prompts()[1]).expect("encodes");
    let (mut a, mut b) = (plain.new_seq(), tiled.new_seq());
    let la = plain.prefill(&mut a, &prompt).expect("prefill");
    let lb = tiled.prefill(&mut b, &prompt).expect("prefill");
    assert_eq!(la, lb, "prefill logits differ");
    let (mut a2, mut b2) = (a.clone(), b.clone());
    let da = plain
        .decode_batch(&mut [&mut a, &mut a2], &[argmax(&la), 42])
        .expect("decode");
    let db = tiled
        .decode_batch(&mut [&mut b, &mut b2], &[argmax(&lb), 42])
        .expect("decode");
    assert_eq!(da, db, "decode logits differ");
}

/// A prompt that starts like one read before reuses that prompt's cache in the serving
/// backend, and its logits are exactly those of a full prefill.
#[test]
fn a_reused_prompt_prefix_gives_the_logits_of_a_full_prefill() {
    use starpillar::engine::backend::Backend;
    use starpillar::engine::native::NativeBackend;
    let mut backend = NativeBackend::load(&gguf(), false).expect("loads");
    let model = backend.model.clone();
    let g = generator().lock().expect("lock");
    let first = g.tokenizer.encode(&chat_prompts()[0]).expect("encodes");
    let second = g.tokenizer.encode(&chat_prompts()[2]).expect("encodes");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        shared >= 8,
        "the prompts share the system prompt ({shared} tokens)"
    );
    let mut s1 = backend.new_seq().expect("seq");
    backend.prefill(&mut s1, &first).expect("prefill");
    assert_eq!(backend.reused_tokens(), 0);
    let mut s2 = backend.new_seq().expect("seq");
    let got: Vec<f32> = backend
        .prefill(&mut s2, &second)
        .expect("prefill")
        .to_vec1()
        .expect("logits");
    let reused = backend.reused_tokens();
    if std::env::var_os("STARPILLAR_PREFIX_CACHE").is_none_or(|v| v != "0") {
        assert_eq!(reused, shared, "the shared prefix was reused");
    }
    assert_eq!(s2.tokens(), second.as_slice());
    let mut fresh = model.new_seq();
    let want = model.prefill(&mut fresh, &second).expect("prefill");
    assert_eq!(got, want, "logits after prefix reuse differ");
    // The same prompt again: all but its last token come from the cache.
    let mut s3 = backend.new_seq().expect("seq");
    let again: Vec<f32> = backend
        .prefill(&mut s3, &second)
        .expect("prefill")
        .to_vec1()
        .expect("logits");
    assert_eq!(again, want);
}

#[test]
fn batched_and_chunked_steps_equal_single_runs() {
    let g = generator().lock().expect("lock");
    let m = &g.model;
    let prompts: Vec<Vec<u32>> = chat_prompts()[..3]
        .iter()
        .map(|p| g.tokenizer.encode(p).expect("encodes"))
        .collect();
    // Prefill whole vs in chunks of 5: same logits.
    let mut whole = m.new_seq();
    let a = m.prefill(&mut whole, &prompts[0]).expect("prefill");
    let mut chunked = m.new_seq();
    let mut b = Vec::new();
    for c in prompts[0].chunks(5) {
        b = m.prefill(&mut chunked, c).expect("prefill");
    }
    assert_eq!(a, b, "chunked prefill differs");
    // Three sequences decoded together vs one by one.
    let mut solo: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut s = m.new_seq();
            let l = m.prefill(&mut s, p).expect("prefill");
            (s, argmax(&l))
        })
        .collect();
    let mut batch: Vec<_> = solo.iter().map(|(s, _)| s.clone()).collect();
    let toks: Vec<u32> = solo.iter().map(|(_, t)| *t).collect();
    for step in 0..4 {
        let mut refs: Vec<&mut _> = batch.iter_mut().collect();
        let together = m.decode_batch(&mut refs, &toks).expect("decode");
        for (i, (s, t)) in solo.iter_mut().enumerate() {
            let alone = m.prefill(s, &[*t]).expect("decode");
            assert_eq!(alone, together[i], "sequence {i}, step {step}");
        }
    }
    // A truncated sequence continues like a fresh one.
    let mut cut = whole.clone();
    cut.truncate(prompts[0].len() - 1);
    let again = m
        .prefill(&mut cut, &prompts[0][prompts[0].len() - 1..])
        .expect("prefill");
    assert_eq!(again, a, "truncate + refill differs");
}

#[test]
fn requantised_q8_0_agreement_is_reported() {
    let prompts = chat_prompts();
    let want = reference_greedy(&prompts);
    let g = generator().lock().expect("lock");
    let ends = end_ids(&g);
    let q8 = Model::load(&gguf(), true).expect("loads");
    let (mut same, mut total) = (0, 0);
    for (p, w) in prompts.iter().zip(&want) {
        let ids = g.tokenizer.encode(p).expect("encodes");
        let ours = greedy(&q8, &ends, &ids, GREEDY_TOKENS);
        let prefix = ours.iter().zip(w).take_while(|(a, b)| a == b).count();
        same += prefix;
        total += w.len();
        println!(
            "Q8_0 repack: {prefix}/{} leading tokens agree for {p:?}",
            w.len()
        );
    }
    println!("Q8_0 repack: {same}/{total} leading greedy tokens agree with llama.cpp (Q4_1)");
    // The repack changes the weights; it must still start every answer the same way.
    assert!(
        same * 4 >= total,
        "Q8_0 agreement collapsed: {same}/{total}"
    );
}
