//! Gemma 3 (GGUF architecture `gemma3`): our own CPU forward on our quantised kernels, with
//! the scheduler's [`Backend`] (batched decode and mixed prefill/decode steps) and a [`Codec`]
//! for the Gemma turn template.
//!
//! The forward follows llama.cpp's `gemma3` graph: token embeddings scaled by `sqrt(hidden)`;
//! per layer an RMS-normed attention with RMS norms on q and k, NEOX RoPE whose base is the
//! global one (`rope.freq_base`) on every `6`th layer and 10,000 on the sliding-window layers
//! (which see the last `attention.sliding_window` positions only), a post-attention norm, then
//! pre- and post-normed GeGLU feed-forward; the output projection is the (tied) embedding
//! matrix, with final logit soft-capping when the metadata has it. Weights are repacked at load
//! (`gemma3_weights.rs`: `Q4_K` → `Q4_1` exactly, `Q6_K` → `Q8_0`), and the `Q8_0` and `Q5_0`
//! ones packed 16 rows at a time, straight from the file's bytes, for our AVX-512 VNNI kernel
//! (`gemma3_packed.rs`; the rest run on `qkernels`, as everything does without AVX-512); the
//! batched forward is in `gemma3_forward.rs`. RoPE angles are computed per step for the
//! positions in it (nothing precomputed per position), and sequences are capped at the configured context. K and V are cached per sequence as f16 (like
//! llama.cpp's cache); the sliding layers keep only their window. The forward runs on the CPU
//! whatever device is asked for.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use super::EngineError;
use super::backend::{Backend, Codec};
use super::generate::ChatMessage;
use super::native::{step_mixed_with, to_tensor};
use super::spm::SpmTokenizer;
use packed::Mat;

#[path = "gemma3_forward.rs"]
mod forward;
#[path = "gemma3_packed.rs"]
mod packed;
#[path = "gemma3_weights.rs"]
pub(crate) mod weights;

/// The default context cap (tokens per sequence), well under the model's 32,768.
pub const DEFAULT_CONTEXT: usize = 4096;
/// RoPE base of the sliding-window layers (llama.cpp's `rope_freq_base_train_swa` for gemma3).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// Every `GLOBAL_EVERY`th layer attends globally; the others use the sliding window.
const GLOBAL_EVERY: usize = 6;

/// Model dimensions from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub window: usize,
    /// Most tokens per sequence.
    pub context: usize,
    pub rope_global: f32,
    pub rope_local: f32,
    pub final_softcap: Option<f32>,
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Mat,
    k: Mat,
    v: Mat,
    o: Mat,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Mat,
    up: Mat,
    down: Mat,
    post_ffn_norm: Vec<f32>,
    sliding: bool,
}

/// The Gemma 3 weights (caches live in [`Seq`]s).
pub struct Model {
    pub config: Config,
    /// The token embeddings, also the output projection (tied) unless the file has its own.
    embed: Mat,
    /// A separate `output.weight`, when the file has one.
    output: Option<Mat>,
    norm: Vec<f32>,
    layers: Vec<Layer>,
}

/// One sequence: per layer, its cached K and V (f16 bits, `[position][kv head][head dim]`) and
/// the position of the first cached entry (the sliding layers drop what their window no longer
/// sees); and the sequence length.
#[derive(Clone, Debug, Default)]
pub struct Seq {
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    first: Vec<usize>,
    len: usize,
}

impl Seq {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn md_f32(md: &HashMap<String, Value>, key: &str) -> Option<f32> {
    md.get(key).and_then(|v| v.to_f32().ok())
}

fn md_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize, EngineError> {
    md.get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|n| n as usize)
        .ok_or_else(|| EngineError::Format(format!("GGUF metadata lacks {key}")))
}

impl Config {
    /// Read the `gemma3.*` metadata; `context` caps the sequence length.
    pub fn from_metadata(md: &HashMap<String, Value>, context: usize) -> Result<Self, EngineError> {
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("");
        if arch != "gemma3" {
            return Err(EngineError::Format(format!(
                "architecture {arch:?} is not gemma3"
            )));
        }
        let k = |s: &str| format!("gemma3.{s}");
        let hidden = md_usize(md, &k("embedding_length"))?;
        let heads = md_usize(md, &k("attention.head_count"))?;
        let kv_heads = md_usize(md, &k("attention.head_count_kv")).unwrap_or(heads);
        let head_dim = md_usize(md, &k("attention.key_length")).unwrap_or(hidden / heads.max(1));
        let trained = md_usize(md, &k("context_length")).unwrap_or(context);
        let cfg = Self {
            hidden,
            ffn: md_usize(md, &k("feed_forward_length"))?,
            layers: md_usize(md, &k("block_count"))?,
            heads,
            kv_heads,
            head_dim,
            eps: md_f32(md, &k("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            window: md_usize(md, &k("attention.sliding_window")).unwrap_or(usize::MAX),
            context: context.clamp(1, trained.max(1)),
            rope_global: md_f32(md, &k("rope.freq_base")).unwrap_or(1_000_000.0),
            rope_local: md_f32(md, &k("rope.local_freq_base")).unwrap_or(LOCAL_ROPE_BASE),
            final_softcap: md_f32(md, &k("final_logit_softcapping")).filter(|c| *c > 0.0),
        };
        let q = super::qkernels::QK;
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !head_dim.is_multiple_of(16)
            || !hidden.is_multiple_of(q)
            || !cfg.ffn.is_multiple_of(q)
            || cfg.window == 0
        {
            return Err(EngineError::Format(format!(
                "unsupported gemma3 dimensions: {cfg:?}"
            )));
        }
        Ok(cfg)
    }
}

impl Model {
    /// Load the weights of a gemma3 GGUF file (metadata already read into `content`). The
    /// forward runs on the CPU: `_dev` is accepted for the loaders' common signature.
    pub fn from_content<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        context: usize,
        _dev: &Device,
    ) -> Result<Self, EngineError> {
        let config = Config::from_metadata(&content.metadata, context)?;
        let vector = |reader: &mut R, name: &str, n: usize| -> Result<Vec<f32>, EngineError> {
            let t = content
                .tensor(reader, name, &Device::Cpu)
                .map_err(|e| EngineError::Format(format!("tensor {name}: {e}")))?;
            let v: Vec<f32> = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
            if v.len() != n {
                return Err(EngineError::Format(format!(
                    "{name}: {} values, expected {n}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let c = &config;
        let (d, hd, ff) = (c.hidden, c.head_dim, c.ffn);
        let (qd, kvd) = (c.heads * hd, c.kv_heads * hd);
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            let mut m = |s: &str, rows: usize, cols: usize| {
                weights::load(content, reader, &p(s), Some(rows), cols)
            };
            let (q, k, v, o) = (
                m("attn_q", qd, d)?,
                m("attn_k", kvd, d)?,
                m("attn_v", kvd, d)?,
                m("attn_output", d, qd)?,
            );
            let (gate, up, down) = (
                m("ffn_gate", ff, d)?,
                m("ffn_up", ff, d)?,
                m("ffn_down", d, ff)?,
            );
            let mut norm = |s: &str, n: usize| vector(reader, &p(s), n);
            layers.push(Layer {
                attn_norm: norm("attn_norm", d)?,
                q,
                k,
                v,
                o,
                q_norm: norm("attn_q_norm", hd)?,
                k_norm: norm("attn_k_norm", hd)?,
                post_attn_norm: norm("post_attention_norm", d)?,
                ffn_norm: norm("ffn_norm", d)?,
                gate,
                up,
                down,
                post_ffn_norm: norm("post_ffw_norm", d)?,
                sliding: (i + 1) % GLOBAL_EVERY != 0,
            });
        }
        let norm = vector(reader, "output_norm.weight", d)?;
        let embed = weights::load(content, reader, "token_embd.weight", None, d)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(weights::load(content, reader, "output.weight", None, d)?)
        } else {
            None
        };
        Ok(Self {
            config,
            embed,
            output,
            norm,
            layers,
        })
    }

    /// An empty sequence.
    pub fn new_seq(&self) -> Seq {
        let n = self.layers.len();
        Seq {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            first: vec![0; n],
            len: 0,
        }
    }

    /// Vocabulary size (rows of the embedding matrix).
    pub fn vocab(&self) -> usize {
        self.embed.rows()
    }

    /// Bytes of weights held (repacked), the embedding matrix included.
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|w| w.bytes())
                    .sum::<usize>()
            })
            .sum();
        l + self.embed.bytes() + self.output.as_ref().map_or(0, Mat::bytes)
    }

    /// Append `tokens` to `seq`; the logits after the last of them.
    pub fn forward(&self, seq: &mut Seq, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let mut out = self.forward_batch(&mut [(seq, tokens)])?;
        out.pop()
            .ok_or_else(|| EngineError::InvalidInput("nothing to prefill".into()))
    }

    /// Append `tokens[i]` to `seqs[i]` in one batched step; the logits of each, in order.
    pub fn decode_batch(
        &self,
        seqs: &mut [&mut Seq],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        if seqs.len() != tokens.len() {
            return Err(EngineError::InvalidInput("one token per sequence".into()));
        }
        let mut items: Vec<(&mut Seq, &[u32])> = seqs
            .iter_mut()
            .zip(tokens.chunks(1))
            .map(|(s, t)| (&mut **s, t))
            .collect();
        self.forward_batch(&mut items)
    }
}

/// The Gemma turn template and the SentencePiece tokenizer.
pub struct GemmaCodec {
    pub tokenizer: SpmTokenizer,
    end: Vec<u32>,
    context: usize,
}

impl GemmaCodec {
    pub fn new(tokenizer: SpmTokenizer, context: usize) -> Self {
        let mut end = vec![tokenizer.eos];
        end.extend(tokenizer.token_id("<end_of_turn>"));
        Self {
            tokenizer,
            end,
            context,
        }
    }
}

/// The Gemma chat prompt: `<bos>`, then `<start_of_turn>{user|model}\n…<end_of_turn>\n` per
/// message (a system message is folded into the first user turn, as Gemma's own template
/// does), ending with the model's turn opened.
pub fn gemma_prompt(messages: &[ChatMessage]) -> String {
    let mut out = String::from("<bos>");
    let mut system: Option<&str> = None;
    for m in messages {
        match m.role.as_str() {
            "system" => system = Some(&m.content),
            role => {
                let role = if role == "assistant" { "model" } else { role };
                out.push_str(&format!("<start_of_turn>{role}\n"));
                if let Some(s) = system.take() {
                    out.push_str(s);
                    out.push_str("\n\n");
                }
                out.push_str(&m.content);
                out.push_str("<end_of_turn>\n");
            }
        }
    }
    out.push_str("<start_of_turn>model\n");
    out
}

impl Codec for GemmaCodec {
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        gemma_prompt(messages)
    }
    /// Ids of `text`, control tokens recognised, no `<bos>` added (the prompt carries it).
    fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        Ok(self.tokenizer.encode_with(text, false, true))
    }
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        Ok(self.tokenizer.decode(ids))
    }
    fn is_end(&self, id: u32) -> bool {
        self.end.contains(&id)
    }
    fn context(&self) -> usize {
        self.context
    }
}

/// The scheduler's backend over [`Model`]: a decode step is one batched forward over all the
/// decoding sequences, and a mixed step adds the prompt chunks to it.
pub struct GemmaBackend {
    pub model: Arc<Model>,
    codec: Arc<GemmaCodec>,
}

impl GemmaBackend {
    /// Load a gemma3 GGUF file, capping sequences at `context` tokens.
    pub fn load(path: &Path, context: usize, dev: &Device) -> Result<Self, EngineError> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = Content::read(&mut file)
            .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
        let tokenizer = SpmTokenizer::from_content(&content)?;
        let model = Model::from_content(&content, &mut file, context, dev)?;
        let context = model.config.context;
        Ok(Self {
            model: Arc::new(model),
            codec: Arc::new(GemmaCodec::new(tokenizer, context)),
        })
    }

    /// The codec (tokenizer + template), typed.
    pub fn gemma_codec(&self) -> &GemmaCodec {
        &self.codec
    }
}

impl Backend for GemmaBackend {
    type Seq = Seq;

    fn codec(&self) -> Arc<dyn Codec> {
        self.codec.clone()
    }

    fn new_seq(&mut self) -> Result<Seq, EngineError> {
        Ok(self.model.new_seq())
    }

    fn prefill(&mut self, seq: &mut Seq, tokens: &[u32]) -> Result<Tensor, EngineError> {
        to_tensor(self.model.forward(seq, tokens)?)
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
        let model = &self.model;
        step_mixed_with(decode, prefill, |items| model.forward_batch(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_template_folds_the_system_message() {
        let p = gemma_prompt(&[
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Bye"),
        ]);
        assert_eq!(
            p,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n\
             Hello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
