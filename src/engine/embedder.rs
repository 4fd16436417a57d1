//! The [`Embed`] trait and its implementation: a batching thread that owns the model.
//!
//! Requests queue on a bounded channel (full → [`EngineError::Overloaded`]); the thread wakes,
//! drains what is waiting, tokenises (off the tokio workers), splits long texts into windows,
//! sorts every window by length and cuts batches under a token budget (real tokens when the
//! model packs sequences, as on the CPU; padded tokens otherwise, so short inputs are never
//! padded to a long neighbour). Results go back through `oneshot` channels; a request
//! whose caller went away is skipped.
//!
//! The batcher runs any [`EncoderModel`]: the E5 model (prefixes, long texts split into
//! windows whose vectors are averaged) or an HF BERT sentence encoder ([`super::bert`]: no
//! prefixes, long texts truncated as sentence-transformers does).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use tokio::sync::oneshot;

use super::EngineError;
use super::e5::E5Model;
use super::unigram::Unigram;

/// Which E5 prefix a text takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedKind {
    /// `query: ` — also the choice for symmetric tasks (similarity, clustering).
    #[default]
    Query,
    /// `passage: ` — documents to be retrieved.
    Passage,
}

impl EmbedKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Query => "query: ",
            Self::Passage => "passage: ",
        }
    }
}

/// One request's texts.
#[derive(Debug, Clone)]
pub struct EmbedInput {
    pub texts: Vec<String>,
    pub kind: EmbedKind,
}

/// One request's answer: an L2-normalised vector per text, and the tokens it cost.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

/// The reply channel of a submitted request.
pub type EmbedReply = oneshot::Receiver<Result<Embeddings, EngineError>>;

/// Something that embeds texts; the server holds an `Arc<dyn Embed>` so tests can swap it.
pub trait Embed: Send + Sync {
    /// The model's name as `/v1/models` lists it.
    fn model(&self) -> &str;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Queue a request; fails at once with [`EngineError::Overloaded`] when the queue is full.
    fn submit(&self, input: EmbedInput) -> Result<EmbedReply, EngineError>;
    /// The model's tokenizer, when it has one the indexer can measure chunks with.
    fn tokenizer(&self) -> Option<&crate::engine::unigram::Unigram> {
        None
    }
}

/// What the batcher needs of a sentence encoder.
pub trait EncoderModel: Send + Sync + 'static {
    /// Vector dimension.
    fn hidden(&self) -> usize;
    /// Content token ids of `text` as `kind` (no `<s>`/`</s>` or `[CLS]`/`[SEP]`).
    fn encode(&self, text: &str, kind: EmbedKind) -> Result<Vec<u32>, EngineError>;
    /// The ids that open and close every sequence.
    fn bracket(&self) -> (u32, u32);
    /// Content tokens one sequence may hold.
    fn window(&self) -> usize;
    /// Whether longer texts are cut to one window (else split into windows and averaged).
    fn truncates(&self) -> bool;
    /// Whether batches are packed (no padding): then a batch costs its real token count.
    fn packs_batches(&self) -> bool;
    /// Mean-pooled (not normalised) hidden states of each bracketed sequence.
    fn pooled(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError>;
    /// The E5 tokenizer, which the retrieval chunker counts tokens with.
    fn unigram(&self) -> Option<Arc<Unigram>> {
        None
    }
}

impl EncoderModel for E5Model {
    fn hidden(&self) -> usize {
        self.header.hidden
    }
    fn encode(&self, text: &str, kind: EmbedKind) -> Result<Vec<u32>, EngineError> {
        Ok(self.tokenizer.encode(&format!("{}{}", kind.prefix(), text)))
    }
    fn bracket(&self) -> (u32, u32) {
        (self.tokenizer.bos, self.tokenizer.eos)
    }
    fn window(&self) -> usize {
        E5Model::window(self)
    }
    fn truncates(&self) -> bool {
        false
    }
    fn packs_batches(&self) -> bool {
        E5Model::packs_batches(self)
    }
    fn pooled(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError> {
        E5Model::pooled(self, seqs)
    }
    fn unigram(&self) -> Option<Arc<Unigram>> {
        Some(Arc::clone(&self.tokenizer))
    }
}

/// Submit and wait.
pub async fn embed(e: &dyn Embed, input: EmbedInput) -> Result<Embeddings, EngineError> {
    e.submit(input)?.await.map_err(|_| EngineError::Closed)?
}

/// Prometheus metrics of the embedder (registered by the caller).
#[derive(Clone)]
pub struct EmbedMetrics {
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub queue_depth: IntGauge,
    pub tokens: IntCounter,
    pub load_seconds: prometheus::GaugeVec,
}

impl EmbedMetrics {
    pub fn new() -> Self {
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "starpillar_embed_batch_size",
                "Sequences (text windows) per embedding forward pass.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        );
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "starpillar_embed_batch_duration_seconds",
                "Time of one embedding forward pass.",
            )
            .buckets(vec![
                0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        );
        let queue_depth = IntGauge::new(
            "starpillar_embed_queue_depth",
            "Embedding requests waiting for the batcher.",
        );
        let tokens = IntCounter::new(
            "starpillar_embed_tokens_total",
            "Tokens embedded (including <s> and </s>).",
        );
        let load_seconds = prometheus::GaugeVec::new(
            prometheus::Opts::new(
                "starpillar_model_load_seconds",
                "Seconds it took to load each model (fetch excluded).",
            ),
            &["model"],
        );
        #[allow(clippy::expect_used)]
        Self {
            batch_size: batch_size.expect("valid metric"),
            batch_seconds: batch_seconds.expect("valid metric"),
            queue_depth: queue_depth.expect("valid metric"),
            tokens: tokens.expect("valid metric"),
            load_seconds: load_seconds.expect("valid metric"),
        }
    }

    /// Register every metric with the server's registry.
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(Box::new(self.batch_size.clone()));
        metrics.register(Box::new(self.batch_seconds.clone()));
        metrics.register(Box::new(self.queue_depth.clone()));
        metrics.register(Box::new(self.tokens.clone()));
        metrics.register(Box::new(self.load_seconds.clone()));
    }
}

impl Default for EmbedMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Batcher settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Requests that may wait.
    pub queue: usize,
    /// Padded tokens per forward pass.
    pub batch_tokens: usize,
    /// CPU threads of the compute pool.
    pub threads: usize,
}

struct Job {
    input: EmbedInput,
    reply: oneshot::Sender<Result<Embeddings, EngineError>>,
}

/// An encoder behind a batching thread.
pub struct Batcher {
    name: String,
    dim: usize,
    tokenizer: Option<Arc<Unigram>>,
    tx: SyncSender<Job>,
    metrics: EmbedMetrics,
}

impl Batcher {
    /// Start the batching thread, which owns `model` until every handle is dropped.
    pub fn start(
        name: String,
        model: impl EncoderModel,
        config: BatchConfig,
        metrics: EmbedMetrics,
    ) -> Result<Arc<Self>, EngineError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let pool = super::device::compute_pool(config.threads.max(1))?;
        let dim = model.hidden();
        let tokenizer = model.unigram();
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("starpillar-embed".into())
            .spawn(move || run(model, rx, config, m, pool))
            .map_err(|e| EngineError::Device(format!("cannot start the embed thread: {e}")))?;
        Ok(Arc::new(Self {
            name,
            dim,
            tokenizer,
            tx,
            metrics,
        }))
    }
}

impl Batcher {
    /// The E5 model's tokenizer (the indexer measures chunks in the embedder's own tokens);
    /// `None` for other models.
    pub fn tokenizer(&self) -> Option<&Unigram> {
        self.tokenizer.as_deref()
    }
}

impl Embed for Batcher {
    fn model(&self) -> &str {
        &self.name
    }
    fn tokenizer(&self) -> Option<&Unigram> {
        self.tokenizer.as_deref()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn submit(&self, input: EmbedInput) -> Result<EmbedReply, EngineError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { input, reply }) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(rx)
            }
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Closed),
        }
    }
}

/// Most requests taken into one round.
const MAX_JOBS_PER_ROUND: usize = 256;

fn run(
    model: impl EncoderModel,
    rx: Receiver<Job>,
    config: BatchConfig,
    metrics: EmbedMetrics,
    pool: rayon::ThreadPool,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_ROUND {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics.queue_depth.sub(jobs.len() as i64);
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let inputs: Vec<&EmbedInput> = jobs.iter().map(|j| &j.input).collect();
        let results = pool.install(|| embed_round(&model, &inputs, config.batch_tokens, &metrics));
        match results {
            Ok(all) => {
                for (job, result) in jobs.into_iter().zip(all) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "embedding batch failed");
                let msg = err.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(EngineError::Compute(msg.clone())));
                }
            }
        }
    }
}

/// One window of one text, ready for the model.
struct Segment {
    job: usize,
    text: usize,
    weight: f32,
    ids: Vec<u32>,
}

/// Tokenise, window, bucket by length, run and reassemble one round of requests.
pub fn embed_round(
    model: &dyn EncoderModel,
    inputs: &[&EmbedInput],
    batch_tokens: usize,
    metrics: &EmbedMetrics,
) -> Result<Vec<Embeddings>, EngineError> {
    let (open, close) = model.bracket();
    let window = model.window().max(1);
    let hidden = model.hidden();
    let mut segments = Vec::new();
    let mut out: Vec<Embeddings> = Vec::with_capacity(inputs.len());
    for (j, input) in inputs.iter().enumerate() {
        let mut tokens = 0;
        for (t, text) in input.texts.iter().enumerate() {
            let mut content = model.encode(text, input.kind)?;
            if model.truncates() {
                content.truncate(window);
            }
            tokens += content.len() + 2;
            let chunks: Vec<&[u32]> = if content.is_empty() {
                vec![&[]]
            } else {
                content.chunks(window).collect()
            };
            for chunk in chunks {
                let mut ids = Vec::with_capacity(chunk.len() + 2);
                ids.push(open);
                ids.extend_from_slice(chunk);
                ids.push(close);
                segments.push(Segment {
                    job: j,
                    text: t,
                    weight: chunk.len().max(1) as f32,
                    ids,
                });
            }
        }
        metrics.tokens.inc_by(tokens as u64);
        out.push(Embeddings {
            vectors: vec![vec![0.0; hidden]; input.texts.len()],
            prompt_tokens: tokens,
        });
    }
    let mut weights: Vec<Vec<f32>> = inputs.iter().map(|i| vec![0.0; i.texts.len()]).collect();
    segments.sort_by_key(|s| s.ids.len());
    // Packed batches cost their real tokens; padded ones every sequence at the longest length.
    let packs = model.packs_batches();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut used = segments[start].ids.len();
        while end < segments.len() {
            let len = segments[end].ids.len();
            let cost = if packs {
                used + len
            } else {
                (end + 1 - start) * len
            };
            if cost > batch_tokens {
                break;
            }
            used += len;
            end += 1;
        }
        let batch = &segments[start..end];
        let seqs: Vec<&[u32]> = batch.iter().map(|s| s.ids.as_slice()).collect();
        let timer = Instant::now();
        let pooled = model.pooled(&seqs)?;
        metrics.batch_seconds.observe(timer.elapsed().as_secs_f64());
        metrics.batch_size.observe(batch.len() as f64);
        for (seg, vec) in batch.iter().zip(pooled) {
            let acc = &mut out[seg.job].vectors[seg.text];
            for (a, v) in acc.iter_mut().zip(vec) {
                *a += seg.weight * v;
            }
            weights[seg.job][seg.text] += seg.weight;
        }
        start = end;
    }
    for (emb, w) in out.iter_mut().zip(weights) {
        for (v, w) in emb.vectors.iter_mut().zip(w) {
            let inv = if w > 0.0 { 1.0 / w } else { 1.0 };
            let mut norm = 0.0f32;
            for x in v.iter_mut() {
                *x *= inv;
                norm += *x * *x;
            }
            let scale = 1.0 / norm.max(1e-12).sqrt();
            v.iter_mut().for_each(|x| *x *= scale);
        }
    }
    Ok(out)
}
