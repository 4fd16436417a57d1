//! The [`Generate`] implementation: a bounded request queue in front of one engine thread
//! (never a tokio worker) that serves many streams at once by **continuous batching**.
//!
//! Each turn of the engine loop: admit waiting requests while fewer than `max_streams` are
//! active; drop the streams whose consumer went away (a dropped [`GenStream`] cancels, counted
//! in `starpillar_generation_cancelled_total`); then one [`Backend::step_mixed`]: every stream that
//! has a sampled token feeds it, and the streams still reading their prompts (oldest first)
//! feed prompt chunks of at most `prefill_chunk` tokens in all — several prompts are prefilled
//! together, beside the decode tokens, in one batched forward, and a long prompt never stalls
//! the others for long. Each stream has its own KV cache, sampler (seeded per request, so
//! a request's tokens do not depend on its neighbours), incremental detokeniser and stop
//! filter. Prompts are templated and tokenised by `submit`, so an over-long prompt is refused
//! at once; a full queue answers [`EngineError::Overloaded`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Instant;

use candle_core::Tensor;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts};
use tokio::sync::mpsc;

use super::EngineError;
use super::backend::{Backend, Codec};
use super::generate::{GenEvent, GenRequest, GenStream, GenSummary, Generate};
use super::generator::{FinishReason, GenParams};
use super::sampling::Sampler;
use super::textstream::{Detokenizer, StopFilter};

/// Scheduler settings.
#[derive(Debug, Clone, Copy)]
pub struct SchedConfig {
    /// Requests that may wait for a stream slot; more are refused (overloaded).
    pub queue: usize,
    /// Streams decoded together.
    pub max_streams: usize,
    /// Prompt tokens fed per engine turn.
    pub prefill_chunk: usize,
    /// CPU threads of the compute pool.
    pub threads: usize,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            queue: 64,
            max_streams: 8,
            prefill_chunk: 256,
            threads: 1,
        }
    }
}

/// What `/v1/models` and the response cache need to know about the loaded model.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub name: String,
    pub file_hash: String,
    pub languages: Vec<String>,
}

/// Prometheus metrics of generation (registered by the caller).
#[derive(Clone)]
pub struct GenMetrics {
    pub time_to_first_token: Histogram,
    pub time_per_output_token: Histogram,
    pub generated_tokens: IntCounter,
    pub prompt_tokens: IntCounter,
    pub queue_depth: IntGauge,
    pub cancelled: IntCounter,
    pub active_streams: IntGauge,
    pub batch_size: Histogram,
}

impl GenMetrics {
    #[allow(clippy::expect_used, reason = "static, valid metric definitions")]
    pub fn new() -> Self {
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric")
        };
        let latency = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let per_token = vec![
            0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28,
        ];
        Self {
            time_to_first_token: hist(
                "starpillar_time_to_first_token_seconds",
                "Generation: submission to the first sampled token (queueing and prefill).",
                latency,
            ),
            time_per_output_token: hist(
                "starpillar_time_per_output_token_seconds",
                "Generation: mean time per output token after the first, per request.",
                per_token,
            ),
            generated_tokens: IntCounter::new(
                "starpillar_generated_tokens_total",
                "Generation: tokens generated (end-of-turn tokens excluded).",
            )
            .expect("valid metric"),
            prompt_tokens: IntCounter::new(
                "starpillar_prompt_tokens_total",
                "Generation: prompt tokens admitted for prefill.",
            )
            .expect("valid metric"),
            queue_depth: IntGauge::with_opts(
                Opts::new(
                    "starpillar_queue_depth",
                    "Requests waiting in an engine queue.",
                )
                .const_label("queue", "generate"),
            )
            .expect("valid metric"),
            cancelled: IntCounter::new(
                "starpillar_generation_cancelled_total",
                "Generation requests stopped because their consumer went away.",
            )
            .expect("valid metric"),
            active_streams: IntGauge::new(
                "starpillar_generation_active_streams",
                "Generation streams being prefilled or decoded.",
            )
            .expect("valid metric"),
            batch_size: hist(
                "starpillar_generation_batch_size",
                "Streams advanced by one decode step.",
                vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0],
            ),
        }
    }

    /// Register every metric with the server's registry.
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(Box::new(self.time_to_first_token.clone()));
        metrics.register(Box::new(self.time_per_output_token.clone()));
        metrics.register(Box::new(self.generated_tokens.clone()));
        metrics.register(Box::new(self.prompt_tokens.clone()));
        metrics.register(Box::new(self.queue_depth.clone()));
        metrics.register(Box::new(self.cancelled.clone()));
        metrics.register(Box::new(self.active_streams.clone()));
        metrics.register(Box::new(self.batch_size.clone()));
    }
}

impl Default for GenMetrics {
    fn default() -> Self {
        Self::new()
    }
}

struct Job {
    prompt: Vec<u32>,
    params: GenParams,
    tx: mpsc::Sender<GenEvent>,
    submitted: Instant,
}

/// The generator behind its engine thread.
pub struct Scheduler {
    info: ModelInfo,
    codec: Arc<dyn Codec>,
    tx: SyncSender<Job>,
    metrics: GenMetrics,
}

impl Scheduler {
    /// Start the engine thread, which owns `backend` until every handle is dropped.
    pub fn start<B: Backend>(
        info: ModelInfo,
        backend: B,
        config: SchedConfig,
        metrics: GenMetrics,
    ) -> Result<Arc<Self>, EngineError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let pool = super::device::compute_pool(config.threads.max(1))?;
        let codec = backend.codec();
        let config = SchedConfig {
            max_streams: config.max_streams.max(1),
            prefill_chunk: config.prefill_chunk.max(1),
            ..config
        };
        let (m, c) = (metrics.clone(), codec.clone());
        std::thread::Builder::new()
            .name("starpillar-generate".into())
            .spawn(move || pool.install(|| run(backend, rx, config, m, c)))
            .map_err(|e| EngineError::Device(format!("cannot start the generate thread: {e}")))?;
        Ok(Arc::new(Self {
            info,
            codec,
            tx,
            metrics,
        }))
    }

    /// The model's tokenizer and template.
    pub fn codec(&self) -> &Arc<dyn Codec> {
        &self.codec
    }
}

impl Generate for Scheduler {
    fn model(&self) -> &str {
        &self.info.name
    }
    fn file_hash(&self) -> &str {
        &self.info.file_hash
    }
    fn languages(&self) -> &[String] {
        &self.info.languages
    }
    fn submit(&self, request: GenRequest) -> Result<GenStream, EngineError> {
        let prompt = self
            .codec
            .encode(&self.codec.chat_prompt(&request.messages))?;
        let context = self.codec.context();
        if prompt.is_empty() {
            return Err(EngineError::InvalidInput("the prompt is empty".into()));
        }
        if prompt.len() >= context {
            return Err(EngineError::InvalidInput(format!(
                "the prompt is {} tokens long; this model holds at most {context} tokens",
                prompt.len()
            )));
        }
        let mut params = request.params;
        params.max_tokens = params.max_tokens.min(context - prompt.len());
        // Room for one delta per token, the final flush and `Done`: the engine never blocks.
        let (tx, events) = mpsc::channel(params.max_tokens + 4);
        let job = Job {
            prompt,
            params,
            tx,
            submitted: Instant::now(),
        };
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(GenStream { events })
            }
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Closed),
        }
    }
}

/// One active request.
struct Stream<S> {
    job: Job,
    seq: S,
    /// Prompt tokens prefilled so far.
    fed: usize,
    /// Prompt + generated tokens (for the repetition penalty).
    history: Vec<u32>,
    generated: usize,
    /// The last sampled token, to be fed at the next decode step.
    pending: Option<u32>,
    sampler: Sampler,
    detok: Detokenizer,
    filter: StopFilter,
    first_token: Option<Instant>,
    /// A stop sequence was reached: nothing after it may be sent.
    stop_hit: bool,
    done: bool,
}

/// How a stream ended.
enum End {
    Finished(FinishReason),
    Failed(String),
    Cancelled,
}

impl<S> Stream<S> {
    fn send(&self, event: GenEvent) -> bool {
        match self.job.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::error!("a generation stream's channel is full; cancelling it");
                false
            }
        }
    }

    /// Sample from `logits` and take the token: send its text, or decide the stream is over.
    fn advance(&mut self, logits: &Tensor, codec: &dyn Codec, metrics: &GenMetrics) -> Option<End> {
        let token = match self.sampler.sample(logits, &self.history) {
            Ok(t) => t,
            Err(e) => return Some(End::Failed(e.to_string())),
        };
        if self.first_token.is_none() {
            self.first_token = Some(Instant::now());
            metrics
                .time_to_first_token
                .observe(self.job.submitted.elapsed().as_secs_f64());
        }
        if codec.is_end(token) {
            return Some(End::Finished(FinishReason::Stop));
        }
        self.history.push(token);
        self.generated += 1;
        metrics.generated_tokens.inc();
        let piece = match self.detok.push(token, |ids| codec.decode(ids)) {
            Ok(p) => p,
            Err(e) => return Some(End::Failed(e.to_string())),
        };
        let step = self.filter.push(&piece);
        if !step.delta.is_empty() && !self.send(GenEvent::Delta(step.delta)) {
            return Some(End::Cancelled);
        }
        if step.stopped {
            self.stop_hit = true;
            return Some(End::Finished(FinishReason::Stop));
        }
        if self.generated >= self.job.params.max_tokens || self.history.len() >= codec.context() {
            return Some(End::Finished(FinishReason::Length));
        }
        self.pending = Some(token);
        None
    }

    /// Send the last text and the summary (or the error); record the metrics.
    fn end(&mut self, end: End, codec: &dyn Codec, metrics: &GenMetrics) {
        self.done = true;
        self.pending = None;
        let mut finish = match end {
            End::Cancelled => {
                metrics.cancelled.inc();
                return;
            }
            End::Failed(msg) => {
                tracing::warn!(error = %msg, "a generation request failed");
                self.send(GenEvent::Error(msg));
                return;
            }
            End::Finished(reason) => reason,
        };
        if !self.stop_hit {
            let tail = self
                .detok
                .flush(|ids| codec.decode(ids))
                .unwrap_or_default();
            let step = self.filter.push(&tail);
            let mut delta = step.delta;
            if step.stopped {
                finish = FinishReason::Stop;
            } else {
                delta.push_str(&self.filter.finish());
            }
            if !delta.is_empty() && !self.send(GenEvent::Delta(delta)) {
                metrics.cancelled.inc();
                return;
            }
        }
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        if self.generated > 1 {
            let per = now.duration_since(first).as_secs_f64() / (self.generated - 1) as f64;
            metrics.time_per_output_token.observe(per);
        }
        let summary = GenSummary {
            prompt_tokens: self.job.prompt.len(),
            completion_tokens: self.generated,
            finish,
            time_to_first_token: first.duration_since(self.job.submitted),
            total: self.job.submitted.elapsed(),
        };
        if !self.send(GenEvent::Done(summary)) {
            metrics.cancelled.inc();
        }
    }
}

/// Run `f`, turning a panic inside the model into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(EngineError::Compute("the model panicked".into())))
}

fn run<B: Backend>(
    mut backend: B,
    rx: Receiver<Job>,
    config: SchedConfig,
    metrics: GenMetrics,
    codec: Arc<dyn Codec>,
) {
    let codec = codec.as_ref();
    let mut active: Vec<Stream<B::Seq>> = Vec::new();
    let mut open = true;
    loop {
        // Admission: block only when there is nothing to do.
        if active.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(job) => admit(&mut backend, job, &mut active, codec, &metrics),
                Err(_) => return,
            }
        }
        while open && active.len() < config.max_streams {
            match rx.try_recv() {
                Ok(job) => admit(&mut backend, job, &mut active, codec, &metrics),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        for s in active.iter_mut().filter(|s| s.job.tx.is_closed()) {
            s.end(End::Cancelled, codec, &metrics);
        }
        active.retain(|s| !s.done);

        // One step: every stream with a sampled token feeds it, and the streams still reading
        // their prompts (oldest first) feed chunks of `prefill_chunk` prompt tokens in all.
        let mut budget = config.prefill_chunk;
        let mut plan: Vec<(usize, Feed)> = Vec::new();
        for (i, s) in active.iter().enumerate() {
            if let Some(t) = s.pending {
                plan.push((i, Feed::Token(t)));
            } else if s.fed < s.job.prompt.len() && budget > 0 {
                let end = (s.fed + budget).min(s.job.prompt.len());
                budget -= end - s.fed;
                plan.push((i, Feed::Prompt(end)));
            }
        }
        if !plan.is_empty() {
            step(&mut backend, &mut active, &plan, codec, &metrics);
        }
        active.retain(|s| !s.done);
        metrics.active_streams.set(active.len() as i64);
    }
}

/// What a stream feeds in one engine step.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// Its last sampled token.
    Token(u32),
    /// Its prompt up to this position.
    Prompt(usize),
}

/// Run one [`Backend::step_mixed`] over the planned streams (`plan` indexes `active`, in order) and
/// take its logits: sample for the decoding streams and those whose prompt is now read.
fn step<B: Backend>(
    backend: &mut B,
    active: &mut [Stream<B::Seq>],
    plan: &[(usize, Feed)],
    codec: &dyn Codec,
    metrics: &GenMetrics,
) {
    let tokens: Vec<u32> = plan
        .iter()
        .filter_map(|(_, f)| match f {
            Feed::Token(t) => Some(*t),
            Feed::Prompt(_) => None,
        })
        .collect();
    if !tokens.is_empty() {
        metrics.batch_size.observe(tokens.len() as f64);
    }
    let owned: Vec<Vec<u32>> = plan
        .iter()
        .filter_map(|&(i, f)| match f {
            Feed::Token(_) => None,
            Feed::Prompt(end) => Some(active[i].job.prompt[active[i].fed..end].to_vec()),
        })
        .collect();
    let chunks: Vec<&[u32]> = owned.iter().map(Vec::as_slice).collect();
    let result = {
        let mut decoding: Vec<&mut B::Seq> = Vec::with_capacity(tokens.len());
        let mut reading: Vec<&mut B::Seq> = Vec::with_capacity(chunks.len());
        let mut next = plan.iter().peekable();
        for (i, s) in active.iter_mut().enumerate() {
            if let Some(&&(j, feed)) = next.peek()
                && j == i
            {
                next.next();
                match feed {
                    Feed::Token(_) => decoding.push(&mut s.seq),
                    Feed::Prompt(_) => reading.push(&mut s.seq),
                }
            }
        }
        guarded(|| backend.step_mixed((&mut decoding, &tokens), (&mut reading, &chunks)))
    };
    let fail = |active: &mut [Stream<B::Seq>], msg: String| {
        for &(i, _) in plan {
            active[i].end(End::Failed(msg.clone()), codec, metrics);
        }
    };
    let (decoded, prefilled) = match result {
        Ok((d, p)) if d.len() == tokens.len() && p.len() == chunks.len() => (d, p),
        Ok((d, p)) => {
            let msg = format!(
                "the model returned {} + {} logits for {} + {}",
                d.len(),
                p.len(),
                tokens.len(),
                chunks.len()
            );
            return fail(active, msg);
        }
        Err(e) => return fail(active, e.to_string()),
    };
    let (mut decoded, mut prefilled) = (decoded.iter(), prefilled.iter());
    for &(i, feed) in plan {
        let s = &mut active[i];
        let logits = match feed {
            Feed::Token(_) => decoded.next(),
            Feed::Prompt(end) => {
                s.fed = end;
                prefilled.next().filter(|_| end == s.job.prompt.len())
            }
        };
        if let Some(logits) = logits
            && let Some(outcome) = s.advance(logits, codec, metrics)
        {
            s.end(outcome, codec, metrics);
        }
    }
}

/// Take a request off the queue: a fresh sequence and sampler.
fn admit<B: Backend>(
    backend: &mut B,
    job: Job,
    active: &mut Vec<Stream<B::Seq>>,
    codec: &dyn Codec,
    metrics: &GenMetrics,
) {
    metrics.queue_depth.dec();
    if job.tx.is_closed() {
        metrics.cancelled.inc();
        return;
    }
    let seq = match guarded(|| backend.new_seq()) {
        Ok(seq) => seq,
        Err(e) => {
            let _ = job.tx.try_send(GenEvent::Error(e.to_string()));
            return;
        }
    };
    metrics.prompt_tokens.inc_by(job.prompt.len() as u64);
    let mut stream = Stream {
        sampler: Sampler::new(&job.params),
        filter: StopFilter::new(&job.params.stop),
        history: job.prompt.clone(),
        job,
        seq,
        fed: 0,
        generated: 0,
        pending: None,
        detok: Detokenizer::default(),
        first_token: None,
        stop_hit: false,
        done: false,
    };
    if stream.job.params.max_tokens == 0 {
        stream.end(End::Finished(FinishReason::Length), codec, metrics);
        return;
    }
    active.push(stream);
}
