//! Text generation from a GGUF file (llama-architecture models such as SmolLM2, through our own
//! forward in [`super::llama`]): ChatML prompt, sampling (temperature, top-p, top-k,
//! repetition penalty, seed), stop sequences, max tokens, and streaming that never splits a
//! UTF-8 character (text is emitted only up to the last complete character). One request at a
//! time; the serving path is the scheduler over [`super::native::NativeBackend`].
//!
//! The "greedy divergence from llama.cpp" (first token "L'Étoile…" here vs "The capital…"
//! from llama-cpp-python) was llama.cpp's: on this AMX CPU its extra buffer type takes the Q4_1
//! matmuls and returns corrupted logits for batches of 32+ tokens (a 32-token prompt at once vs
//! token by token: logits differ by 22). With `use_extra_bufts = false` llama.cpp also answers
//! "L'Étoile…". `tests/it/engine_gen.rs` checks the native forward against that path:
//! teacher-forced greedy steps agree except at near ties (top-two gap < 0.5 logits), below the
//! ~0.4 by which llama.cpp's own batched and token-by-token paths differ.

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::EngineError;
use super::gguf_tokenizer::GgufTokenizer;
use super::llama::Model;

/// Sampling and stopping settings of one request.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
    pub stop: Vec<String>,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 299_792_458,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The consumer asked to stop (client gone).
    Cancelled,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish: FinishReason,
}

/// A loaded generator (one KV cache; one request at a time).
pub struct Generator {
    pub model: Model,
    pub tokenizer: GgufTokenizer,
    end_of_turn: Vec<u32>,
}

/// SmolLM2's default system prompt (from its chat template).
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The ChatML prompt for a conversation of `(role, content)` messages, ending with the
/// assistant's turn opened.
pub fn chatml(messages: &[(String, String)]) -> String {
    let mut out = String::new();
    if messages.first().map(|(r, _)| r.as_str()) != Some("system") {
        out.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    for (role, content) in messages {
        out.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

impl Generator {
    /// Load a llama-architecture GGUF file. The native forward runs on the CPU (in the current
    /// rayon pool) whatever `device` says; `requantise` stores `Q4_1` weights as `Q8_0`.
    pub fn load(path: &Path, device: &Device, requantise: bool) -> Result<Self, EngineError> {
        if !device.is_cpu() {
            tracing::warn!("the native generator runs on the CPU");
        }
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
        let tokenizer = GgufTokenizer::from_content(&content)?;
        let model = Model::from_content(&content, &mut file, requantise)?;
        let mut end_of_turn = vec![tokenizer.eos];
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_id(t)
                && !end_of_turn.contains(&id)
            {
                end_of_turn.push(id);
            }
        }
        Ok(Self {
            model,
            tokenizer,
            end_of_turn,
        })
    }

    /// Generate from a raw prompt (already templated). `on_text` receives each new piece of
    /// text as soon as it forms complete characters; returning `false` cancels.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenParams,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, EngineError> {
        let prompt_ids = self.tokenizer.encode(prompt)?;
        if prompt_ids.is_empty() {
            return Err(EngineError::InvalidInput("the prompt is empty".into()));
        }
        let mut seq = self.model.new_seq();
        let sampling = if params.temperature <= 1e-7 {
            Sampling::ArgMax
        } else {
            match (params.top_k, params.top_p) {
                (None, None) => Sampling::All {
                    temperature: params.temperature,
                },
                (Some(k), None) => Sampling::TopK {
                    k,
                    temperature: params.temperature,
                },
                (None, Some(p)) => Sampling::TopP {
                    p,
                    temperature: params.temperature,
                },
                (Some(k), Some(p)) => Sampling::TopKThenTopP {
                    k,
                    p,
                    temperature: params.temperature,
                },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let mut all = prompt_ids.clone();
        let mut out: Vec<u32> = Vec::new();
        let mut emitted = 0usize;
        let mut text = String::new();
        let mut finish = FinishReason::Length;
        let mut input = prompt_ids.clone();
        while out.len() < params.max_tokens {
            let logits = self.model.prefill(&mut seq, &input)?;
            let n = logits.len();
            let logits = Tensor::from_vec(logits, n, &Device::Cpu)?;
            let logits = if params.repeat_penalty != 1.0 {
                let start = all.len().saturating_sub(params.repeat_last_n);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    params.repeat_penalty,
                    &all[start..],
                )?
            } else {
                logits
            };
            let next = sampler.sample(&logits)?;
            if self.end_of_turn.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            out.push(next);
            all.push(next);
            input = vec![next];
            text = self.tokenizer.decode(&out)?;
            if let Some(cut) = params
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(cut);
                if cut > emitted && !on_text(&text[emitted..]) {
                    finish = FinishReason::Cancelled;
                    break;
                }
                emitted = text.len();
                finish = FinishReason::Stop;
                break;
            }
            // Hold back an incomplete character (shown as U+FFFD) and a possible stop prefix.
            let mut safe = text.len();
            if text.ends_with('\u{FFFD}') {
                safe = text.trim_end_matches('\u{FFFD}').len();
            }
            for s in &params.stop {
                for k in (1..s.len()).rev() {
                    if s.is_char_boundary(k) && text[..safe].ends_with(&s[..k]) {
                        safe = safe.min(text.len() - k);
                        break;
                    }
                }
            }
            if safe > emitted && text.is_char_boundary(safe) {
                if !on_text(&text[emitted..safe]) {
                    finish = FinishReason::Cancelled;
                    break;
                }
                emitted = safe;
            }
        }
        if finish != FinishReason::Cancelled && text.len() > emitted {
            let tail = text.trim_end_matches('\u{FFFD}');
            if tail.len() > emitted {
                on_text(&tail[emitted..]);
            }
        }
        Ok(Generation {
            text,
            tokens: out,
            prompt_tokens: prompt_ids.len(),
            finish,
        })
    }
}
