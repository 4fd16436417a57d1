//! Qwen's tokenizer and chat template ([`QwenCodec`]) and the scheduler's [`Backend`] over the
//! Qwen forward ([`QwenBackend`], [`super::qwen::Model`]).
//!
//! The tokenizer is the GGUF's byte-level BPE ([`GgufTokenizer`]: tokens, merges, control
//! tokens) with Qwen's pre-tokenizer in place of SmolLM2's: llama.cpp's `qwen2` regex (the
//! one in Qwen's own `tokenizer.json`: contractions, letters with at most one leading
//! non-letter, *single* digits, punctuation runs with their newlines, whitespace runs), then
//! byte-level mapping without a prefix space. The template is ChatML; the default system
//! prompt is Qwen2.5's when the file's own template carries it, and for Qwen3 the answer
//! opens with an empty `<think>` block (the template's `enable_thinking = false`), so the
//! reply is the answer, not a chain of thought.

use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::gguf_file::Content;
use tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

use super::EngineError;
use super::backend::{Backend, Codec};
use super::generate::ChatMessage;
use super::gguf_tokenizer::GgufTokenizer;
use super::native::{step_mixed_with, to_tensor};
use super::qwen::{Arch, Model, Seq};

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` pattern (`tokenizer.ggml.pre = qwen2`).
pub const QWEN2_PATTERN: &str = concat!(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+",
    r"|\p{N}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// Qwen2.5's default system prompt (used when the file's chat template has it).
pub const QWEN25_SYSTEM: &str =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// The GGUF's BPE tokenizer with Qwen's pre-tokenizer.
pub fn qwen_tokenizer(content: &Content) -> Result<GgufTokenizer, EngineError> {
    let mut tok = GgufTokenizer::from_content(content)?;
    let pre = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if pre != "qwen2" {
        tracing::warn!(
            pre,
            "a Qwen GGUF whose pre-tokenizer is not qwen2: using qwen2's"
        );
    }
    let split = Split::new(
        SplitPattern::Regex(QWEN2_PATTERN.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| EngineError::Format(format!("the qwen2 pre-tokenizer: {e}")))?;
    tok.tokenizer
        .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ]))));
    Ok(tok)
}

/// ChatML for Qwen, its tokenizer and end-of-turn ids.
pub struct QwenCodec {
    pub tokenizer: GgufTokenizer,
    end: Vec<u32>,
    context: usize,
    /// Prepended when a conversation has no system message.
    default_system: Option<String>,
    /// Open the answer with an empty `<think>` block (Qwen3's non-thinking mode).
    no_think: bool,
}

impl QwenCodec {
    /// The codec of a Qwen GGUF (`arch` from its metadata).
    pub fn from_content(
        content: &Content,
        arch: Arch,
        context: usize,
    ) -> Result<Self, EngineError> {
        let tokenizer = qwen_tokenizer(content)?;
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let default_system = template
            .contains(QWEN25_SYSTEM)
            .then(|| QWEN25_SYSTEM.to_owned());
        let no_think = arch == Arch::Qwen3 && tokenizer.token_id("<think>").is_some();
        let mut end = vec![tokenizer.eos];
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_id(t)
                && !end.contains(&id)
            {
                end.push(id);
            }
        }
        Ok(Self {
            tokenizer,
            end,
            context,
            default_system,
            no_think,
        })
    }
}

/// The ChatML prompt for `messages`, with `system` first when they carry none, ending with
/// the assistant's turn opened (after an empty `<think>` block when `no_think`).
pub fn qwen_prompt(messages: &[ChatMessage], system: Option<&str>, no_think: bool) -> String {
    let mut out = String::new();
    if let Some(s) = system
        && messages.first().map(|m| m.role.as_str()) != Some("system")
    {
        out.push_str(&format!("<|im_start|>system\n{s}<|im_end|>\n"));
    }
    for m in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    out.push_str("<|im_start|>assistant\n");
    if no_think {
        out.push_str("<think>\n\n</think>\n\n");
    }
    out
}

impl Codec for QwenCodec {
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        qwen_prompt(messages, self.default_system.as_deref(), self.no_think)
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

/// The Qwen model and its codec, for the scheduler. A decode step is one batched forward over
/// every sequence's new token; a mixed step adds the prompt chunks to the same forward.
pub struct QwenBackend {
    pub model: Arc<Model>,
    codec: Arc<QwenCodec>,
}

impl QwenBackend {
    /// Load a `qwen2` / `qwen3` GGUF file; `requantise` stores `Q4_1` weights as `Q8_0`.
    pub fn load(path: &Path, requantise: bool) -> Result<Self, EngineError> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = Content::read(&mut file)
            .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
        let model = Model::from_content(&content, &mut file, requantise)?;
        let codec = QwenCodec::from_content(&content, model.config.arch, model.config.context)?;
        Ok(Self {
            model: Arc::new(model),
            codec: Arc::new(codec),
        })
    }

    /// The codec (tokenizer + template), typed.
    pub fn qwen_codec(&self) -> &QwenCodec {
        &self.codec
    }
}

impl Backend for QwenBackend {
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
        if seqs.len() != tokens.len() {
            return Err(EngineError::InvalidInput("one token per sequence".into()));
        }
        let mut items: Vec<(&mut Seq, &[u32])> = seqs
            .iter_mut()
            .zip(tokens.chunks(1))
            .map(|(s, t)| (&mut **s, t))
            .collect();
        self.model
            .forward(&mut items)?
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
        let model = &self.model;
        step_mixed_with(decode, prefill, |items| model.forward(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_template_adds_the_default_system_and_closes_thinking() {
        let msgs = [ChatMessage::new("user", "Hi")];
        assert_eq!(
            qwen_prompt(&msgs, Some("S"), false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            qwen_prompt(&msgs, None, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        );
        let own = [
            ChatMessage::new("system", "Mine"),
            ChatMessage::new("user", "Hi"),
        ];
        assert!(qwen_prompt(&own, Some("S"), false).starts_with("<|im_start|>system\nMine"));
    }
}
