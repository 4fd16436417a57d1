//! [`NativeBackend`]: the scheduler's [`Backend`] over our own llama forward
//! ([`super::llama::Model`]): external per-sequence KV caches, one batched matmul per weight
//! for all sequences' new tokens in a decode step, and in a mixed step (`Backend::step_mixed`: several
//! sequences' prompt chunks beside the decode tokens of the others). To serve with it, `genload` calls
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

/// Logits as the 1-D CPU tensor the scheduler's [`Backend`] returns.
pub(crate) fn to_tensor(logits: Vec<f32>) -> Result<Tensor, EngineError> {
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

    /// The decode tokens and the prompt chunks in one forward.
    fn step_mixed(
        &mut self,
        decode: (&mut [&mut Seq], &[u32]),
        prefill: (&mut [&mut Seq], &[&[u32]]),
    ) -> Result<(Vec<Tensor>, Vec<Tensor>), EngineError> {
        if decode.0.len() != decode.1.len() || prefill.0.len() != prefill.1.len() {
            return Err(EngineError::InvalidInput("one chunk per sequence".into()));
        }
        let n = decode.1.len();
        let mut items: Vec<(&mut Seq, &[u32])> = Vec::with_capacity(n + prefill.1.len());
        for (s, c) in decode.0.iter_mut().zip(decode.1.chunks(1)) {
            items.push((&mut **s, c));
        }
        for (s, c) in prefill.0.iter_mut().zip(prefill.1) {
            items.push((&mut **s, *c));
        }
        let mut all: Vec<Tensor> = self
            .model
            .forward(&mut items)?
            .into_iter()
            .map(to_tensor)
            .collect::<Result<_, _>>()?;
        let prefilled = all.split_off(n.min(all.len()));
        Ok((all, prefilled))
    }
}
