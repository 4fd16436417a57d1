//! The bridge to the engine: load the embedder together with its tokenizer (the chunker counts
//! tokens with the very tokenizer the model uses), embed many texts in batches, and tell
//! whether a model is available without downloading it.

use std::path::Path;
use std::sync::Arc;

use crate::engine::embedder::{self, Embed, EmbedInput, EmbedKind, EmbedMetrics};
use crate::engine::unigram::Unigram;
use crate::engine::{EngineArgs, EngineError, fetch, manifest};

/// A loaded embedder and its tokenizer.
pub struct Loaded {
    pub embedder: Arc<dyn Embed>,
    pub tokenizer: Unigram,
}

/// Load the model `args` names (fetching a manifest model if needed) and start its batcher,
/// through the same path as `serve` ([`crate::engine::load_embedder`]).
pub fn load(args: &EngineArgs, data_dir: &Path) -> Result<Loaded, EngineError> {
    let batcher = crate::engine::load_embedder(args, data_dir, &EmbedMetrics::new())?;
    let tokenizer = batcher.tokenizer().cloned().ok_or_else(|| {
        EngineError::InvalidInput(format!(
            "{}: indexing needs an E5 model (its chunker counts E5 tokens)",
            batcher.model()
        ))
    })?;
    Ok(Loaded {
        tokenizer,
        embedder: batcher,
    })
}

/// Whether the model `spec` is usable without a download (a local file, or already cached).
pub fn available_offline(spec: &str, data_dir: &Path) -> bool {
    if Path::new(spec).is_file() {
        return true;
    }
    manifest::find(spec)
        .map(|entry| fetch::is_present(&fetch::cache_root(data_dir), &entry))
        .unwrap_or(false)
}

/// Texts per embed request: small enough to keep the queue moving and progress visible.
pub const EMBED_BATCH: usize = 32;

/// Embed `texts` (as passages or queries), a batch at a time, calling `progress` with the
/// number done after each batch.
pub async fn embed_all(
    embedder: &dyn Embed,
    texts: &[String],
    kind: EmbedKind,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>, EngineError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        let input = EmbedInput {
            texts: batch.to_vec(),
            kind,
        };
        let result = embedder::embed(embedder, input).await?;
        out.extend(result.vectors);
        progress(out.len());
    }
    Ok(out)
}
