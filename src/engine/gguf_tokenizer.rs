//! A `tokenizers` BPE tokenizer built from a GGUF file's metadata (`tokenizer.ggml.*`, the
//! `gpt2` model family: tokens, merges, token types). The pre-tokenizer is
//! `Sequence[Digits(individual), ByteLevel(no prefix space)]`, which matches llama.cpp's
//! SmolLM2 tokenisation (candle's own GGUF helper adds a prefix space). Control tokens
//! (`<|im_start|>`, `<|im_end|>`, …) are special tokens, matched whole in the text.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::EngineError;

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value, EngineError> {
    md.get(key)
        .ok_or_else(|| EngineError::Format(format!("GGUF metadata lacks {key}")))
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, EngineError> {
    v.to_vec()
        .map_err(|e| EngineError::Format(format!("{key}: {e}")))?
        .iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|e| EngineError::Format(format!("{key}: {e}")))
        })
        .collect()
}

/// The tokenizer and the ids that matter to generation.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos: Option<u32>,
    pub eos: u32,
}

impl GgufTokenizer {
    /// Build from the GGUF metadata.
    pub fn from_content(content: &Content) -> Result<Self, EngineError> {
        let md = &content.metadata;
        let model = meta(md, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| EngineError::Format(e.to_string()))?;
        if model != "gpt2" {
            return Err(EngineError::Format(format!(
                "tokenizer model {model:?} is not supported yet (gpt2 BPE only)"
            )));
        }
        let tokens = strings(meta(md, "tokenizer.ggml.tokens")?, "tokens")?;
        let merges: Vec<(String, String)> = strings(meta(md, "tokenizer.ggml.merges")?, "merges")?
            .into_iter()
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect();
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| EngineError::Format(e.to_string()))?
                .iter()
                .map(|x| x.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| EngineError::Format(format!("BPE: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, true)),
        ]))));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        // Type 3 = control, 4 = user-defined: matched whole, never split.
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| EngineError::Format(format!("special tokens: {e}")))?;
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let eos = id("tokenizer.ggml.eos_token_id")
            .ok_or_else(|| EngineError::Format("GGUF metadata lacks the eos token".into()))?;
        Ok(Self {
            tokenizer,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos,
        })
    }

    /// Token ids of `text` (special tokens in the text are recognised; no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::InvalidInput(format!("tokenising: {e}")))
    }

    /// Text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| EngineError::Compute(format!("detokenising: {e}")))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }
}
