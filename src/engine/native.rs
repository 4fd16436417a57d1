//! [`NativeBackend`]: the scheduler's [`Backend`] over our own llama forward
//! ([`super::llama::Model`]): external per-sequence KV caches, one batched matmul per weight
//! for all sequences' new tokens in a decode step. To serve with it, `genload` calls
//! `NativeBackend::load(&path)` where it called `LlamaBackend::load(..)`; the scheduler's
//! rayon pool (`--threads`) is the pool the forward runs in.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use super::EngineError;
use super::backend::{Backend, ChatMlCodec, Codec};
use super::gguf_tokenizer::GgufTokenizer;
use super::llama::{Model, Seq};

/// The native llama model and its ChatML codec.
pub struct NativeBackend {
    pub model: Arc<Model>,
    codec: Arc<ChatMlCodec>,
}

impl NativeBackend {
    /// Load a llama-architecture GGUF file (tokenizer from its metadata); `requantise`
    /// stores `Q4_1` weights as `Q8_0`.
    pub fn load(path: &Path, requantise: bool) -> Result<Self, EngineError> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
        let tokenizer = GgufTokenizer::from_content(&content)?;
        let model = Model::from_content(&content, &mut file, requantise)?;
        let context = model.config.context;
        Ok(Self {
            model: Arc::new(model),
            codec: Arc::new(ChatMlCodec::new(tokenizer, context)),
        })
    }
}

fn to_tensor(logits: Vec<f32>) -> Result<Tensor, EngineError> {
    let n = logits.len();
    Ok(Tensor::from_vec(logits, n, &Device::Cpu)?)
}

impl Backend for NativeBackend {
    type Seq = Seq;

    fn codec(&self) -> Arc<dyn Codec> {
        self.codec.clone()
    }

    fn new_seq(&mut self) -> Result<Seq, EngineError> {
        Ok(self.model.new_seq())
    }

    fn prefill(&mut self, seq: &mut Seq, tokens: &[u32]) -> Result<Tensor, EngineError> {
        to_tensor(self.model.prefill(seq, tokens)?)
    }

    fn decode(
        &mut self,
        seqs: &mut [&mut Seq],
        tokens: &[u32],
    ) -> Result<Vec<Tensor>, EngineError> {
        self.model
            .decode_batch(seqs, tokens)?
            .into_iter()
            .map(to_tensor)
            .collect()
    }
}
