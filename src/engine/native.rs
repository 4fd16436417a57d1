//! [`NativeBackend`]: the scheduler's [`Backend`] over our own llama forward
//! ([`super::llama::Model`]): external per-sequence KV caches, one batched matmul per weight
//! for all sequences' new tokens in a decode step, and in a mixed step (`Backend::step_mixed`: several
//! sequences' prompt chunks beside the decode tokens of the others). To serve with it, `genload` calls
//! `NativeBackend::load(&path)` where it called `LlamaBackend::load(..)`; the scheduler's
//! rayon pool (`--threads`) is the pool the forward runs in.
//!
//! **Prompt-prefix reuse**: the caches of the last few prompts read (at most
//! [`PrefixCache::ENTRIES`], each up to [`PrefixCache::MAX_TOKENS`] tokens) are kept; a new
//! sequence whose first prompt chunk starts with at least [`PrefixCache::MIN_TOKENS`] of the
//! same tokens (the default system prompt, a repeated question) starts from a copy of that
//! cache and computes only the rest (always at least its last token, for the logits). The
//! kernels give the same bits whatever the batch or chunking, so the logits are exactly those
//! of a full prefill. `STARPILLAR_PREFIX_CACHE=0` turns it off.

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
    prefixes: PrefixCache,
}

/// Recently read prompts' caches, most recently used last.
#[derive(Default)]
pub struct PrefixCache {
    entries: Vec<Seq>,
    enabled: bool,
    /// Prompt tokens not computed thanks to reuse, so far.
    pub reused: usize,
}

impl PrefixCache {
    /// Prompts kept.
    pub const ENTRIES: usize = 4;
    /// Longest prompt kept (tokens).
    pub const MAX_TOKENS: usize = 1024;
    /// Shortest prefix worth reusing (tokens).
    pub const MIN_TOKENS: usize = 8;

    /// On unless `STARPILLAR_PREFIX_CACHE=0`.
    pub fn from_env() -> Self {
        Self {
            entries: Vec::new(),
            reused: 0,
            enabled: std::env::var_os("STARPILLAR_PREFIX_CACHE").is_none_or(|v| v != "0"),
        }
    }

    /// A copy of the longest kept prefix of `tokens`, leaving at least one token to compute.
    pub fn lookup(&mut self, tokens: &[u32]) -> Option<Seq> {
        let limit = tokens.len().saturating_sub(1);
        let (i, n) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let n = e
                    .tokens()
                    .iter()
                    .zip(tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, n.min(limit))
            })
            .max_by_key(|&(i, n)| (n, i))?;
        if !self.enabled || n < Self::MIN_TOKENS {
            return None;
        }
        let entry = self.entries.remove(i);
        let seq = entry.prefix(n);
        self.entries.push(entry);
        self.reused += n;
        Some(seq)
    }

    /// Keep `seq`'s cache (replacing a kept prefix of it).
    pub fn keep(&mut self, seq: &Seq) {
        let t = seq.tokens();
        if !self.enabled || t.len() < Self::MIN_TOKENS || t.len() > Self::MAX_TOKENS {
            return;
        }
        if let Some(i) = self.entries.iter().position(|e| t.starts_with(e.tokens())) {
            self.entries.remove(i);
        } else if let Some(i) = self.entries.iter().position(|e| e.tokens().starts_with(t)) {
            let e = self.entries.remove(i);
            self.entries.push(e);
            return;
        }
        if self.entries.len() >= Self::ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push(seq.clone());
    }
}

impl NativeBackend {
    /// Prompt tokens whose computation was saved by prefix reuse, so far.
    pub fn reused_tokens(&self) -> usize {
        self.prefixes.reused
    }

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
            prefixes: PrefixCache::from_env(),
        })
    }
}

/// Logits as the 1-D CPU tensor the scheduler's [`Backend`] returns.
pub(crate) fn to_tensor(logits: Vec<f32>) -> Result<Tensor, EngineError> {
    let n = logits.len();
    Ok(Tensor::from_vec(logits, n, &Device::Cpu)?)
}

/// One [`Backend::step_mixed`] for a forward that takes `(sequence, tokens)` items in one
/// batched pass: the decode tokens (one per sequence) then the prompt chunks, split back into
/// (decode logits, prefill logits).
pub(crate) fn step_mixed_with<S>(
    decode: (&mut [&mut S], &[u32]),
    prefill: (&mut [&mut S], &[&[u32]]),
    forward: impl FnOnce(&mut [(&mut S, &[u32])]) -> Result<Vec<Vec<f32>>, EngineError>,
) -> Result<(Vec<Tensor>, Vec<Tensor>), EngineError> {
    if decode.0.len() != decode.1.len() || prefill.0.len() != prefill.1.len() {
        return Err(EngineError::InvalidInput("one chunk per sequence".into()));
    }
    let n = decode.1.len();
    let mut items: Vec<(&mut S, &[u32])> = Vec::with_capacity(n + prefill.1.len());
    for (s, c) in decode.0.iter_mut().zip(decode.1.chunks(1)) {
        items.push((&mut **s, c));
    }
    for (s, c) in prefill.0.iter_mut().zip(prefill.1) {
        items.push((&mut **s, *c));
    }
    if items.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut all: Vec<Tensor> = forward(&mut items)?
        .into_iter()
        .map(to_tensor)
        .collect::<Result<_, _>>()?;
    let prefilled = all.split_off(n.min(all.len()));
    Ok((all, prefilled))
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
        let (_, prefilled) = self.step_mixed((&mut [], &[]), (&mut [seq], &[tokens]))?;
        prefilled
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::InvalidInput("nothing to prefill".into()))
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
            let mut chunk: &[u32] = c;
            if s.is_empty()
                && let Some(cached) = self.prefixes.lookup(chunk)
            {
                chunk = &chunk[cached.len()..];
                **s = cached;
            }
            items.push((&mut **s, chunk));
        }
        let mut all: Vec<Tensor> = self
            .model
            .forward(&mut items)?
            .into_iter()
            .map(to_tensor)
            .collect::<Result<_, _>>()?;
        for (s, _) in &items[n..] {
            self.prefixes.keep(s);
        }
        let prefilled = all.split_off(n.min(all.len()));
        Ok((all, prefilled))
    }
}
