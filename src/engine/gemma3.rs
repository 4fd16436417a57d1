//! Gemma 3 (GGUF architecture `gemma3`) on candle tensors and `QMatMul`, with the scheduler's
//! [`Backend`] and a [`Codec`] for the Gemma turn template.
//!
//! The forward follows llama.cpp's `gemma3` graph: token embeddings scaled by `sqrt(hidden)`;
//! per layer an RMS-normed attention with RMS norms on q and k, NEOX RoPE whose base is the
//! global one (`rope.freq_base`) on every `6`th layer and 10,000 on the sliding-window layers
//! (which see the last `attention.sliding_window` positions only), a post-attention norm, then
//! pre- and post-normed GeGLU feed-forward; the output projection is the (tied) embedding
//! matrix (a tied `Q8_0` one runs on our own `qkernels`, the rest on candle's), with final logit
//! soft-capping when the metadata has it. Unlike candle's
//! `quantized_gemma3`, the RoPE tables are built once (two bases, shared by all layers) and only
//! up to the configured context, not for 131,072 positions per layer. K and V are cached per
//! sequence (rounded through f16 like llama.cpp's cache); the sliding layers keep only their
//! window.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file};
use candle_core::{DType, Device, Module, Tensor};
use rayon::prelude::*;

use super::EngineError;
use super::backend::{Backend, Codec};
use super::generate::ChatMessage;
use super::native::to_tensor;
use super::qkernels::{BlockQ8, QK, QWeight, quantize_row};
use super::spm::SpmTokenizer;

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
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub window: usize,
    /// Most tokens per sequence (the RoPE tables' length).
    pub context: usize,
    pub rope_global: f32,
    pub rope_local: f32,
    pub final_softcap: Option<f32>,
}

struct Layer {
    attn_norm: Tensor,
    q: QMatMul,
    k: QMatMul,
    v: QMatMul,
    o: QMatMul,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    post_ffn_norm: Tensor,
    sliding: bool,
}

/// RoPE cos/sin tables, `(context, head_dim / 2)`.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(base: f32, head_dim: usize, context: usize, dev: &Device) -> Result<Self, EngineError> {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(context * half);
        let mut sin = Vec::with_capacity(context * half);
        for p in 0..context {
            for f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (context, half), dev)?,
            sin: Tensor::from_vec(sin, (context, half), dev)?,
        })
    }
}

/// The embedding matrix and the output projection (tied in Gemma's files).
enum Head {
    /// A tied `Q8_0` matrix, repacked for our own kernels (`qkernels`: AVX-512 VNNI tiles,
    /// llama.cpp's arithmetic): row lookups for the embedding, one matmul for the logits.
    Tied(QWeight),
    /// Anything else, through candle.
    Candle {
        embed: Arc<QTensor>,
        output: QMatMul,
    },
}

/// The Gemma 3 weights.
pub struct Model {
    pub config: Config,
    head: Head,
    norm: Tensor,
    layers: Vec<Layer>,
    rope_global: Rope,
    rope_local: Rope,
    device: Device,
}

/// One sequence: per layer, its cached K and V (`(kv_heads, n, head_dim)`) and the position of
/// the first cached entry; and the sequence length. Cloning shares the cached tensors.
#[derive(Clone)]
pub struct Seq {
    kv: Vec<Option<(Tensor, Tensor, usize)>>,
    pos: usize,
}

impl Seq {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
}

fn check_token(t: u32, vocab: usize) -> Result<(), EngineError> {
    if (t as usize) < vocab {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(format!(
            "token {t} is outside the vocabulary ({vocab})"
        )))
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
        let head_dim = md_usize(md, &k("attention.key_length")).unwrap_or(hidden / heads);
        let trained = md_usize(md, &k("context_length")).unwrap_or(context);
        let cfg = Self {
            hidden,
            layers: md_usize(md, &k("block_count"))?,
            heads,
            kv_heads,
            head_dim,
            eps: md_f32(md, &k("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6) as f64,
            window: md_usize(md, &k("attention.sliding_window")).unwrap_or(usize::MAX),
            context: context.clamp(1, trained.max(1)),
            rope_global: md_f32(md, &k("rope.freq_base")).unwrap_or(1_000_000.0),
            rope_local: md_f32(md, &k("rope.local_freq_base")).unwrap_or(LOCAL_ROPE_BASE),
            final_softcap: md_f32(md, &k("final_logit_softcapping")).filter(|c| *c > 0.0),
        };
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !head_dim.is_multiple_of(2)
        {
            return Err(EngineError::Format(format!(
                "bad gemma3 head layout: {cfg:?}"
            )));
        }
        Ok(cfg)
    }
}

impl Model {
    /// Load the weights of a gemma3 GGUF file (metadata already read into `content`).
    pub fn from_content<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        context: usize,
        dev: &Device,
    ) -> Result<Self, EngineError> {
        let config = Config::from_metadata(&content.metadata, context)?;
        let mut get = |name: &str| -> Result<QTensor, EngineError> {
            content
                .tensor(reader, name, dev)
                .map_err(|e| EngineError::Format(format!("tensor {name}: {e}")))
        };
        let vector = |t: QTensor| -> Result<Tensor, EngineError> { Ok(t.dequantize(dev)?) };
        let mm = |t: QTensor| -> Result<QMatMul, EngineError> { Ok(QMatMul::from_qtensor(t)?) };
        let embed = get("token_embd.weight")?;
        let head = match get("output.weight") {
            Ok(t) => Head::Candle {
                embed: Arc::new(embed),
                output: mm(t)?,
            },
            Err(_) if embed.dtype() == GgmlDType::Q8_0 => {
                let (rows, cols) = embed.shape().dims2()?;
                let data = embed.data()?;
                match QWeight::from_q8_0(&data, rows, cols) {
                    Some(w) => Head::Tied(w),
                    None => {
                        return Err(EngineError::Format("token_embd.weight: bad Q8_0".into()));
                    }
                }
            }
            Err(_) => {
                let embed = Arc::new(embed);
                Head::Candle {
                    output: QMatMul::from_arc(embed.clone())?,
                    embed,
                }
            }
        };
        let norm = vector(get("output_norm.weight")?)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut g = |s: &str| get(&format!("blk.{i}.{s}.weight"));
            layers.push(Layer {
                attn_norm: vector(g("attn_norm")?)?,
                q: mm(g("attn_q")?)?,
                k: mm(g("attn_k")?)?,
                v: mm(g("attn_v")?)?,
                o: mm(g("attn_output")?)?,
                q_norm: vector(g("attn_q_norm")?)?,
                k_norm: vector(g("attn_k_norm")?)?,
                post_attn_norm: vector(g("post_attention_norm")?)?,
                ffn_norm: vector(g("ffn_norm")?)?,
                gate: mm(g("ffn_gate")?)?,
                up: mm(g("ffn_up")?)?,
                down: mm(g("ffn_down")?)?,
                post_ffn_norm: vector(g("post_ffw_norm")?)?,
                sliding: (i + 1) % GLOBAL_EVERY != 0,
            });
        }
        let (hd, ctx) = (config.head_dim, config.context);
        Ok(Self {
            rope_global: Rope::new(config.rope_global, hd, ctx, dev)?,
            rope_local: Rope::new(config.rope_local, hd, ctx, dev)?,
            config,
            head,
            norm,
            layers,
            device: dev.clone(),
        })
    }

    /// An empty sequence.
    pub fn new_seq(&self) -> Seq {
        Seq {
            kv: (0..self.layers.len()).map(|_| None).collect(),
            pos: 0,
        }
    }

    /// Rows of the embedding matrix for `tokens`, `(n, hidden)`, scaled by `sqrt(hidden)`.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor, EngineError> {
        let hidden = self.config.hidden;
        let rows = match &self.head {
            Head::Tied(w) => {
                let mut out = vec![0f32; tokens.len() * hidden];
                for (&t, o) in tokens.iter().zip(out.chunks_exact_mut(hidden)) {
                    check_token(t, w.rows)?;
                    w.dequantize_row(t as usize, o);
                }
                Tensor::from_vec(out, (tokens.len(), hidden), &Device::Cpu)?
            }
            Head::Candle { embed, .. } => {
                let dtype = embed.dtype();
                let (vocab, hidden) = embed.shape().dims2()?;
                let row = hidden / dtype.block_size() * dtype.type_size();
                let data = embed.data()?;
                let mut raw = Vec::with_capacity(row * tokens.len());
                for &t in tokens {
                    check_token(t, vocab)?;
                    let t = t as usize;
                    raw.extend_from_slice(&data[t * row..(t + 1) * row]);
                }
                let shape = vec![tokens.len(), hidden];
                if dtype == GgmlDType::F32 {
                    let f: Vec<f32> = raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Tensor::from_vec(f, shape, &Device::Cpu)?
                } else {
                    ggml_file::qtensor_from_ggml(dtype, &raw, shape, &Device::Cpu)?
                        .dequantize(&Device::Cpu)?
                }
            }
        };
        Ok((rows.to_device(&self.device)? * (hidden as f64).sqrt())?)
    }

    /// The logits of one normed hidden state (`(1, hidden)`).
    fn logits(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        match &self.head {
            Head::Candle { output, .. } => Ok(output.forward(x)?),
            Head::Tied(w) => {
                let x: Vec<f32> = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
                let mut q = vec![BlockQ8::default(); x.len() / QK];
                quantize_row(&x, &mut q);
                let mut out = vec![0f32; w.rows];
                const ROWS: usize = 2048;
                out.par_chunks_mut(ROWS).enumerate().for_each(|(i, o)| {
                    w.matmul_rows((i * ROWS, i * ROWS + o.len()), &q, 1, o);
                });
                Ok(Tensor::from_vec(out, (1, w.rows), &self.device)?)
            }
        }
    }

    /// Append `tokens` to `seq`; the logits after the last of them.
    pub fn forward(&self, seq: &mut Seq, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let t = tokens.len();
        if t == 0 {
            return Err(EngineError::InvalidInput("nothing to prefill".into()));
        }
        if seq.pos + t > self.config.context {
            return Err(EngineError::InvalidInput(format!(
                "{} tokens exceed the context of {}",
                seq.pos + t,
                self.config.context
            )));
        }
        let c = &self.config;
        let mut x = self.embed(tokens)?;
        for (layer, cache) in self.layers.iter().zip(seq.kv.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.eps as f32)?;
            let a = self.attention(layer, cache, &h, seq.pos)?;
            let a = candle_nn::ops::rms_norm(&a, &layer.post_attn_norm, c.eps as f32)?;
            x = (x + a)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.eps as f32)?;
            let f = (layer.gate.forward(&h)?.gelu()? * layer.up.forward(&h)?)?;
            let f = layer.down.forward(&f)?;
            let f = candle_nn::ops::rms_norm(&f, &layer.post_ffn_norm, c.eps as f32)?;
            x = (x + f)?;
        }
        seq.pos += t;
        let last = x.narrow(0, t - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, c.eps as f32)?;
        let mut logits = self.logits(&last)?;
        if let Some(cap) = c.final_softcap {
            logits = ((logits / cap as f64)?.tanh()? * cap as f64)?;
        }
        Ok(logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
    }

    /// Self-attention of one layer for `h` (`(t, hidden)`, positions `pos..pos + t`).
    fn attention(
        &self,
        layer: &Layer,
        cache: &mut Option<(Tensor, Tensor, usize)>,
        h: &Tensor,
        pos: usize,
    ) -> Result<Tensor, EngineError> {
        let c = &self.config;
        let t = h.dim(0)?;
        let (hd, nh, nkv) = (c.head_dim, c.heads, c.kv_heads);
        let rope = if layer.sliding {
            &self.rope_local
        } else {
            &self.rope_global
        };
        let (cos, sin) = (rope.cos.narrow(0, pos, t)?, rope.sin.narrow(0, pos, t)?);
        let heads = |m: &QMatMul, norm: Option<&Tensor>, n: usize| -> Result<Tensor, EngineError> {
            let mut y = m.forward(h)?.reshape((t, n, hd))?;
            if let Some(w) = norm {
                y = candle_nn::ops::rms_norm(&y, w, c.eps as f32)?;
            }
            Ok(y.transpose(0, 1)?.contiguous()?.unsqueeze(0)?)
        };
        let q = heads(&layer.q, Some(&layer.q_norm), nh)?;
        let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?.squeeze(0)?;
        let k = heads(&layer.k, Some(&layer.k_norm), nkv)?;
        let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?.squeeze(0)?;
        let v = heads(&layer.v, None, nkv)?.squeeze(0)?;
        // llama.cpp keeps K and V in f16 (and rounds q to f16 for the product).
        let f16 = |x: Tensor| -> Result<Tensor, EngineError> {
            Ok(x.to_dtype(DType::F16)?.to_dtype(DType::F32)?)
        };
        let q = f16((q * (1.0 / (hd as f64).sqrt()))?)?;
        let (k, v) = (f16(k)?, f16(v)?);
        let (k, v, first) = match cache.take() {
            Some((ck, cv, first)) => (
                Tensor::cat(&[&ck, &k], 1)?,
                Tensor::cat(&[&cv, &v], 1)?,
                first,
            ),
            None => (k, v, 0),
        };
        let n = k.dim(1)?;
        let window = if layer.sliding { c.window } else { usize::MAX };
        // One new token: the keys it sees are the last `window` ones, no mask needed.
        let (kk, vv, first_seen) = if t == 1 && n > window {
            (
                k.narrow(1, n - window, window)?.contiguous()?,
                v.narrow(1, n - window, window)?.contiguous()?,
                first + n - window,
            )
        } else {
            (k.clone(), v.clone(), first)
        };
        let seen = kk.dim(1)?;
        // Scores: (kv_heads, group, t, seen).
        let group = nh / nkv;
        let qg = q.reshape((nkv, group * t, hd))?;
        let scores = qg.matmul(&kk.t()?)?.reshape((nkv, group, t, seen))?;
        let scores = if t > 1 {
            let mut mask = vec![0f32; t * seen];
            for i in 0..t {
                let qp = pos + i;
                for j in 0..seen {
                    let kp = first_seen + j;
                    if kp > qp || qp - kp >= window {
                        mask[i * seen + j] = f32::NEG_INFINITY;
                    }
                }
            }
            let mask = Tensor::from_vec(mask, (1, 1, t, seen), &self.device)?;
            scores.broadcast_add(&mask)?
        } else {
            scores
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((nkv, group * t, seen))?;
        let out = probs.matmul(&vv.contiguous()?)?.reshape((nh, t, hd))?;
        let out = out.transpose(0, 1)?.reshape((t, nh * hd))?;
        // Keep what later positions can still see: the sliding layers, their window only.
        let keep = if layer.sliding { c.window.min(n) } else { n };
        *cache = Some(if keep < n {
            (
                k.narrow(1, n - keep, keep)?.contiguous()?,
                v.narrow(1, n - keep, keep)?.contiguous()?,
                first + n - keep,
            )
        } else {
            (k, v, first)
        });
        Ok(layer.o.forward(&out)?)
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

/// The scheduler's backend over [`Model`]: a decode step runs the sequences in turn.
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
        seqs.iter_mut()
            .zip(tokens)
            .map(|(seq, &t)| to_tensor(self.model.forward(seq, &[t])?))
            .collect()
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
