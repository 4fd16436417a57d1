//! The generation scheduler: continuous batching, admission control, cancellation, UTF-8-safe
//! deltas, stop sequences, per-request seeds — first on a scripted byte-level fake model
//! (fast, exact), then end to end on the real SmolLM2 file: a request's greedy text is the
//! same alone and batched with others, and streaming equals collecting for the same seed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use starpillar::engine::backend::{Backend, Codec};
use starpillar::engine::generator::{FinishReason, GenParams, Generator};
use starpillar::engine::scheduler::{GenMetrics, ModelInfo, SchedConfig, Scheduler};
use starpillar::engine::{
    ChatMessage, EngineArgs, EngineError, GenEvent, GenRequest, GenStream, GenSummary, Generate,
    genload,
};

/// Tokens are bytes; 256 ends the turn.
const END: u32 = 256;
const VOCAB: usize = 257;

struct ByteCodec {
    context: usize,
}

impl Codec for ByteCodec {
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        messages.iter().map(|m| m.content.as_str()).collect()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        let bytes: Vec<u8> = ids.iter().filter(|&&i| i < 256).map(|&i| i as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
    fn is_end(&self, id: u32) -> bool {
        id == END
    }
    fn context(&self) -> usize {
        self.context
    }
}

/// A "model" that answers a fixed script byte by byte, then ends the turn. Its logits put
/// most (not all) weight on the scripted byte, so sampling at temperature > 0 is random.
struct Scripted {
    script: Vec<u8>,
    step_delay: Duration,
    max_batch: Arc<AtomicUsize>,
    /// Most prompt chunks fed in one `step_mixed`.
    max_prefills: Arc<AtomicUsize>,
    codec: Arc<ByteCodec>,
}

struct ScriptSeq {
    len: usize,
    answered: usize,
}

impl Scripted {
    fn new(script: &str, step_delay: Duration) -> Self {
        Self {
            script: script.as_bytes().to_vec(),
            step_delay,
            max_batch: Arc::new(AtomicUsize::new(0)),
            max_prefills: Arc::new(AtomicUsize::new(0)),
            codec: Arc::new(ByteCodec { context: 512 }),
        }
    }

    fn logits(&self, seq: &ScriptSeq) -> Result<Tensor, EngineError> {
        let want = self.script.get(seq.answered).map_or(END, |&b| u32::from(b)) as usize;
        let mut v: Vec<f32> = (0..VOCAB).map(|i| (i % 7) as f32 * 0.1).collect();
        v[want] = 6.0;
        Ok(Tensor::from_vec(v, VOCAB, &Device::Cpu)?)
    }
}

impl Backend for Scripted {
    type Seq = ScriptSeq;
    fn codec(&self) -> Arc<dyn Codec> {
        self.codec.clone()
    }
    fn new_seq(&mut self) -> Result<ScriptSeq, EngineError> {
        Ok(ScriptSeq {
            len: 0,
            answered: 0,
        })
    }
    fn prefill(&mut self, seq: &mut ScriptSeq, tokens: &[u32]) -> Result<Tensor, EngineError> {
        seq.len += tokens.len();
        self.logits(seq)
    }
    fn decode(
        &mut self,
        seqs: &mut [&mut ScriptSeq],
        tokens: &[u32],
    ) -> Result<Vec<Tensor>, EngineError> {
        assert_eq!(seqs.len(), tokens.len());
        self.max_batch.fetch_max(seqs.len(), Ordering::SeqCst);
        std::thread::sleep(self.step_delay);
        seqs.iter_mut()
            .map(|s| {
                s.len += 1;
                s.answered += 1;
                self.logits(s)
            })
            .collect()
    }
    /// Counts the prompt chunks fed together, then steps like the trait's default.
    fn step_mixed(
        &mut self,
        decode: (&mut [&mut ScriptSeq], &[u32]),
        prefill: (&mut [&mut ScriptSeq], &[&[u32]]),
    ) -> Result<(Vec<Tensor>, Vec<Tensor>), EngineError> {
        self.max_prefills
            .fetch_max(prefill.0.len(), Ordering::SeqCst);
        let decoded = if decode.1.is_empty() {
            Vec::new()
        } else {
            self.decode(decode.0, decode.1)?
        };
        let prefilled = prefill
            .0
            .iter_mut()
            .zip(prefill.1)
            .map(|(seq, chunk)| self.prefill(seq, chunk))
            .collect::<Result<_, _>>()?;
        Ok((decoded, prefilled))
    }
}

fn start(
    backend: Scripted,
    queue: usize,
    max_streams: usize,
) -> (Arc<Scheduler>, GenMetrics, Arc<AtomicUsize>) {
    let metrics = GenMetrics::new();
    let max_batch = backend.max_batch.clone();
    let scheduler = Scheduler::start(
        ModelInfo {
            name: "scripted".into(),
            ..ModelInfo::default()
        },
        backend,
        SchedConfig {
            queue,
            max_streams,
            prefill_chunk: 4,
            threads: 1,
        },
        metrics.clone(),
    )
    .expect("starts");
    (scheduler, metrics, max_batch)
}

fn request(prompt: &str, params: GenParams) -> GenRequest {
    GenRequest {
        messages: vec![ChatMessage::new("user", prompt)],
        params,
    }
}

/// Every event of a stream: the deltas and the final summary.
fn drain(mut stream: GenStream) -> (Vec<String>, GenSummary) {
    let mut deltas = Vec::new();
    while let Some(event) = stream.events.blocking_recv() {
        match event {
            GenEvent::Delta(d) => deltas.push(d),
            GenEvent::Done(s) => return (deltas, s),
            GenEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("the stream ended without Done");
}

const SCRIPT: &str = "운세는 좋음 🌙 then STOP here";

#[test]
fn deltas_are_whole_characters_and_stop_sequences_are_never_emitted() {
    let (g, _, _) = start(Scripted::new(SCRIPT, Duration::ZERO), 8, 4);
    let (deltas, summary) = drain(
        g.submit(request("q", GenParams::default()))
            .expect("queued"),
    );
    assert_eq!(deltas.concat(), SCRIPT);
    assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{deltas:?}");
    assert_eq!(summary.finish, FinishReason::Stop, "the end token");
    assert_eq!(summary.completion_tokens, SCRIPT.len());
    assert_eq!(summary.prompt_tokens, 1);

    let stop = GenParams {
        stop: vec!["STOP".into(), "never".into()],
        ..GenParams::default()
    };
    let (deltas, summary) = drain(g.submit(request("q", stop)).expect("queued"));
    assert_eq!(deltas.concat(), "운세는 좋음 🌙 then ");
    assert!(deltas.iter().all(|d| !d.contains('S')), "{deltas:?}");
    assert_eq!(summary.finish, FinishReason::Stop);

    let short = GenParams {
        max_tokens: 4,
        ..GenParams::default()
    };
    let (deltas, summary) = drain(g.submit(request("q", short)).expect("queued"));
    assert_eq!(summary.finish, FinishReason::Length);
    assert_eq!(summary.completion_tokens, 4);
    // 4 bytes: "운" (3 bytes) and the first byte of "세", an incomplete character, dropped.
    assert_eq!(deltas.concat(), "운");
}

#[test]
fn streams_are_decoded_together_up_to_the_limit() {
    for (limit, clients) in [(4usize, 4usize), (2, 5)] {
        let (g, metrics, max_batch) =
            start(Scripted::new(SCRIPT, Duration::from_millis(2)), 16, limit);
        let streams: Vec<GenStream> = (0..clients)
            .map(|i| {
                g.submit(request(&format!("prompt {i}"), GenParams::default()))
                    .expect("queued")
            })
            .collect();
        for s in streams {
            let (deltas, _) = drain(s);
            assert_eq!(deltas.concat(), SCRIPT);
        }
        assert_eq!(
            max_batch.load(Ordering::SeqCst),
            limit,
            "decode steps batch every active stream, never more than --gen-max-streams"
        );
        assert_eq!(
            metrics.generated_tokens.get(),
            (clients * SCRIPT.len()) as u64
        );
        assert_eq!(metrics.queue_depth.get(), 0);
    }
}

#[test]
fn waiting_prompts_are_prefilled_together_beside_the_decode_steps() {
    let backend = Scripted::new("ok", Duration::from_millis(20));
    let prefills = backend.max_prefills.clone();
    let g = Scheduler::start(
        ModelInfo::default(),
        backend,
        SchedConfig {
            queue: 8,
            max_streams: 4,
            prefill_chunk: 64,
            threads: 1,
        },
        GenMetrics::new(),
    )
    .expect("starts");
    let streams: Vec<GenStream> = (0..4)
        .map(|i| {
            g.submit(request(
                &format!("a prompt of some bytes, {i}"),
                GenParams::default(),
            ))
            .expect("queued")
        })
        .collect();
    for s in streams {
        let (deltas, summary) = drain(s);
        assert_eq!(deltas.concat(), "ok");
        assert_eq!(summary.prompt_tokens, 25);
    }
    assert!(
        prefills.load(Ordering::SeqCst) >= 2,
        "prompts that arrived during a decode step are read in one step"
    );
}

#[test]
fn a_seed_gives_the_same_text_alone_or_among_other_streams() {
    let (g, _, _) = start(Scripted::new(SCRIPT, Duration::ZERO), 16, 8);
    let hot = |seed| GenParams {
        temperature: 3.0,
        seed,
        max_tokens: 40,
        ..GenParams::default()
    };
    let alone = drain(g.submit(request("q", hot(11))).expect("queued"))
        .0
        .concat();
    let crowd: Vec<GenStream> = (0..4)
        .map(|i| g.submit(request("q", hot(100 + i))).expect("queued"))
        .collect();
    let again = drain(g.submit(request("q", hot(11))).expect("queued"))
        .0
        .concat();
    let others: Vec<String> = crowd.into_iter().map(|s| drain(s).0.concat()).collect();
    assert_eq!(alone, again);
    assert_ne!(alone, SCRIPT, "temperature 3 samples off the script");
    assert!(others.iter().any(|o| o != &alone), "other seeds differ");
}

#[test]
fn a_full_queue_is_refused_and_dropping_a_stream_cancels_it() {
    let (g, metrics, _) = start(
        Scripted::new(&"x".repeat(400), Duration::from_millis(5)),
        1,
        1,
    );
    let running = g
        .submit(request("a", GenParams::default()))
        .expect("queued");
    // Let the engine take the first request, then fill the one queue slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.active_streams.get() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let waiting = g
        .submit(request("b", GenParams::default()))
        .expect("queued");
    let refused = g.submit(request("c", GenParams::default()));
    assert!(
        matches!(refused, Err(EngineError::Overloaded)),
        "{:?}",
        refused.err()
    );
    drop(running);
    drop(waiting);
    while metrics.cancelled.get() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        metrics.cancelled.get(),
        2,
        "both dropped requests were cancelled"
    );
    // The slot is free again: a new request runs to the end.
    let (_, summary) = drain(
        g.submit(request(
            "d",
            GenParams {
                max_tokens: 3,
                ..GenParams::default()
            },
        ))
        .expect("queued"),
    );
    assert_eq!(summary.completion_tokens, 3);
    assert!(
        metrics.generated_tokens.get() < 400,
        "the cancelled stream stopped early"
    );
}

#[test]
fn prompts_beyond_the_context_are_refused_at_submit() {
    let (g, _, _) = start(Scripted::new(SCRIPT, Duration::ZERO), 4, 1);
    let long = "x".repeat(600);
    assert!(matches!(
        g.submit(request(&long, GenParams::default())),
        Err(EngineError::InvalidInput(_))
    ));
    // max_tokens is capped by the room left in the context.
    let (deltas, summary) = drain(
        g.submit(request(
            &"x".repeat(502),
            GenParams {
                max_tokens: 1000,
                ..GenParams::default()
            },
        ))
        .expect("queued"),
    );
    assert_eq!(summary.finish, FinishReason::Length);
    assert_eq!(summary.completion_tokens, 10);
    assert_eq!(deltas.concat(), &SCRIPT[..10]);
}

// ---- The real model -------------------------------------------------------------------------

fn gguf() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    genload::resolve_gen_model("smollm2-135m-instruct", &home.join(".cache/starpillar"))
        .unwrap_or_else(|e| panic!("fetching SmolLM2 failed: {e}"))
        .1
}

fn smollm2() -> &'static Arc<Scheduler> {
    static G: OnceLock<Arc<Scheduler>> = OnceLock::new();
    G.get_or_init(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let args = EngineArgs {
            gen_max_streams: 4,
            threads: 1,
            device: starpillar::engine::device::DeviceSpec::Cpu,
            ..EngineArgs::default()
        };
        let load_seconds = prometheus::GaugeVec::new(
            prometheus::Opts::new("load_seconds", "load time"),
            &["model"],
        )
        .expect("metric");
        genload::load_generator(
            &args,
            &home.join(".cache/starpillar"),
            &GenMetrics::new(),
            &load_seconds,
        )
        .unwrap_or_else(|e| panic!("loading SmolLM2 failed: {e}"))
    })
}

fn chat(question: &str, params: GenParams) -> GenRequest {
    request(question, params)
}

#[test]
fn smollm2_greedy_text_is_the_same_alone_and_batched() {
    let g = smollm2();
    let params = GenParams {
        max_tokens: 16,
        ..GenParams::default()
    };
    let questions = [
        "What is the capital of France?",
        "Name three colours.",
        "오늘의 운세를 알려주세요.",
        "Write one word.",
    ];
    let alone: Vec<String> = questions
        .iter()
        .map(|q| {
            drain(g.submit(chat(q, params.clone())).expect("queued"))
                .0
                .concat()
        })
        .collect();
    let streams: Vec<GenStream> = questions
        .iter()
        .map(|q| g.submit(chat(q, params.clone())).expect("queued"))
        .collect();
    let batched: Vec<(Vec<String>, GenSummary)> = streams.into_iter().map(drain).collect();
    for ((q, a), (deltas, summary)) in questions.iter().zip(&alone).zip(&batched) {
        println!("{q:?} → {a:?}");
        assert_eq!(a, &deltas.concat(), "{q}: batching changed the greedy text");
        assert!(!a.is_empty());
        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{deltas:?}");
        assert!(summary.completion_tokens <= 16);
    }
    // The serving path (template, queue, batched decode, detokeniser, stop handling) adds
    // nothing: the bare generator on the same prompts writes the same text. (Agreement of the
    // model itself with llama.cpp is engine_gen's test.)
    let mut bare = Generator::load(&gguf(), &Device::Cpu, false).expect("loads");
    for (q, ours) in questions.iter().zip(&alone) {
        let prompt = g.codec().chat_prompt(&[ChatMessage::new("user", *q)]);
        let want = bare
            .generate(&prompt, &params, |_| true)
            .expect("generates");
        assert_eq!(ours, &want.text, "{q}");
    }
}

#[test]
fn smollm2_streaming_equals_collecting_for_a_seed() {
    let g = smollm2();
    let params = GenParams {
        max_tokens: 20,
        temperature: 0.9,
        top_p: Some(0.95),
        seed: 42,
        ..GenParams::default()
    };
    let q = "Tell me a fact about the Moon.";
    let (deltas, streamed) = drain(g.submit(chat(q, params.clone())).expect("queued"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (collected, summary) = rt
        .block_on(g.submit(chat(q, params.clone())).expect("queued").collect())
        .expect("completes");
    assert_eq!(deltas.concat(), collected);
    assert_eq!(streamed.completion_tokens, summary.completion_tokens);
    let other = drain(
        g.submit(chat(q, GenParams { seed: 43, ..params }))
            .expect("queued"),
    )
    .0
    .concat();
    println!("seed 42: {collected:?}\nseed 43: {other:?}");
    assert_ne!(other, collected, "another seed samples another text");
}
