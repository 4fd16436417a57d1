//! What the generation scheduler needs from a model, as two traits, and their implementation
//! for GGUF llama-family files on candle.
//!
//! - [`Codec`] (shared, `Sync`): chat template, tokenise, detokenise, end-of-turn ids, context
//!   length. Callers tokenise on submit so a too-long prompt is refused at once.
//! - [`Backend`] (owned by the engine thread): a sequence with its own KV cache, `prefill`
//!   (a chunk of prompt tokens) and `decode` (one new token for each of several sequences in
//!   one step). [`super::native::NativeBackend`] (the CPU path) batches a decode step into one
//!   matmul per weight over all sequences' new tokens; [`LlamaBackend`] (the GPU path) runs
//!   candle's `quantized_llama`, whose KV cache lives inside the model, by giving each sequence
//!   its own clone of the model (weights are shared behind `Arc`s; only the caches are per
//!   sequence) and stepping them in turn.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use super::EngineError;
use super::generate::ChatMessage;
use super::gguf_tokenizer::GgufTokenizer;

/// Text ↔ tokens for one model.
pub trait Codec: Send + Sync {
    /// The prompt for a conversation, ending with the assistant's turn opened.
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String;
    fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError>;
    /// Text of `ids`, special tokens skipped.
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError>;
    /// End of the assistant's turn (EOS, `<|im_end|>`, …).
    fn is_end(&self, id: u32) -> bool;
    /// Most tokens (prompt + output) a sequence may hold.
    fn context(&self) -> usize;
}

/// A model the scheduler can step. All calls come from one engine thread.
pub trait Backend: Send + 'static {
    /// One sequence's state (its KV cache and position).
    type Seq: Send;
    fn codec(&self) -> Arc<dyn Codec>;
    /// An empty sequence.
    fn new_seq(&mut self) -> Result<Self::Seq, EngineError>;
    /// Append `tokens` to `seq`; the logits (1-D) after the last of them.
    fn prefill(&mut self, seq: &mut Self::Seq, tokens: &[u32]) -> Result<Tensor, EngineError>;
    /// Append `tokens[i]` to `seqs[i]` for every i; the logits (1-D) of each, in order.
    fn decode(
        &mut self,
        seqs: &mut [&mut Self::Seq],
        tokens: &[u32],
    ) -> Result<Vec<Tensor>, EngineError>;
    /// One step over two disjoint sets of sequences: `decode` (one token each, as in
    /// [`Backend::decode`]) and `prefill` (a prompt chunk each, as in [`Backend::prefill`]);
    /// the logits of each set, in order. The default makes one `decode` call and one `prefill`
    /// call per chunk; a backend that batches prompt chunks beside the decode tokens in one
    /// forward overrides it.
    fn step_mixed(
        &mut self,
        decode: (&mut [&mut Self::Seq], &[u32]),
        prefill: (&mut [&mut Self::Seq], &[&[u32]]),
    ) -> Result<(Vec<Tensor>, Vec<Tensor>), EngineError> {
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

/// The ChatML template (SmolLM2, Qwen) with SmolLM2's default system prompt.
pub struct ChatMlCodec {
    pub tokenizer: GgufTokenizer,
    end: Vec<u32>,
    context: usize,
}

impl ChatMlCodec {
    pub fn new(tokenizer: GgufTokenizer, context: usize) -> Self {
        let mut end = vec![tokenizer.eos];
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_id(t)
                && !end.contains(&id)
            {
                end.push(id);
            }
        }
        Self {
            tokenizer,
            end,
            context,
        }
    }
}

impl Codec for ChatMlCodec {
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        let pairs: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect();
        super::generator::chatml(&pairs)
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.tokenizer.encode(text)
    }
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.tokenizer.decode(ids)
    }
    fn is_end(&self, id: u32) -> bool {
        self.end.contains(&id)
    }
    fn context(&self) -> usize {
        self.context
    }
}

/// candle's `quantized_llama` (SmolLM2 and other llama-architecture GGUFs).
pub struct LlamaBackend {
    base: ModelWeights,
    device: Device,
    codec: Arc<ChatMlCodec>,
}

/// One sequence: a model clone holding this sequence's KV cache, and its length.
pub struct LlamaSeq {
    model: ModelWeights,
    pos: usize,
}

impl LlamaBackend {
    /// Load a GGUF file onto `device` (the GPU path: on the CPU, [`super::native`] is faster
    /// and matches llama.cpp; candle's forward does not, see `generator.rs`).
    pub fn load(path: &Path, device: &Device) -> Result<Self, EngineError> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "llama" {
            return Err(EngineError::Format(format!(
                "{}: architecture {arch:?} is not served yet (llama only)",
                path.display()
            )));
        }
        let context = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(MAX_SEQ_LEN, |n| (n as usize).min(MAX_SEQ_LEN));
        let tokenizer = GgufTokenizer::from_content(&content)?;
        let base = ModelWeights::from_gguf(content, &mut file, device)?;
        Ok(Self {
            base,
            device: device.clone(),
            codec: Arc::new(ChatMlCodec::new(tokenizer, context)),
        })
    }

    fn step(&self, seq: &mut LlamaSeq, tokens: &[u32]) -> Result<Tensor, EngineError> {
        let x = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = seq.model.forward(&x, seq.pos)?;
        seq.pos += tokens.len();
        Ok(logits.flatten_all()?)
    }
}

impl Backend for LlamaBackend {
    type Seq = LlamaSeq;

    fn codec(&self) -> Arc<dyn Codec> {
        self.codec.clone()
    }

    fn new_seq(&mut self) -> Result<LlamaSeq, EngineError> {
        let mut model = self.base.clone();
        model.clear_kv_cache();
        Ok(LlamaSeq { model, pos: 0 })
    }

    fn prefill(&mut self, seq: &mut LlamaSeq, tokens: &[u32]) -> Result<Tensor, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::InvalidInput("nothing to prefill".into()));
        }
        self.step(seq, tokens)
    }

    fn decode(
        &mut self,
        seqs: &mut [&mut LlamaSeq],
        tokens: &[u32],
    ) -> Result<Vec<Tensor>, EngineError> {
        seqs.iter_mut()
            .zip(tokens)
            .map(|(seq, &t)| self.step(seq, &[t]))
            .collect()
    }
}
