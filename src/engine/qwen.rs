//! Our own CPU forward for Qwen2 / Qwen2.5 and Qwen3 GGUF models (`general.architecture`
//! `qwen2` or `qwen3`), with the KV cache outside the model so that one engine thread serves
//! many sequences ([`super::qwen_codec::QwenBackend`] wraps it for the scheduler).
//!
//! Same shape as the llama forward ([`super::llama`]) with Qwen's differences, following
//! llama.cpp's `qwen2` / `qwen3` graphs:
//! - `qwen2`: biases on the q, k and v projections;
//! - `qwen3`: no biases, an RMS norm over each head of q and k (`attn_q_norm`, `attn_k_norm`)
//!   before RoPE, and a head size (`attention.key_length`) that need not be `hidden / heads`;
//! - both: NEOX RoPE (the two halves of a head rotate together, not adjacent pairs) with the
//!   base from `rope.freq_base`, grouped-query attention, and an output projection tied to
//!   the token embeddings when the file has no `output.weight`.
//!
//! Weights are kept in our kernels' formats ([`super::qkernels`], in 16-row tiles where the CPU
//! has AVX-512 VNNI — [`super::weight`]): `Q8_0` and `Q4_1` as stored (`Q4_1` as `Q8_0` when
//! `requantise`), `Q5_0` and `Q4_K` converted exactly (to `Q8_0` and `Q4_1`, as for Gemma:
//! `gemma3_weights.rs`), every other type (`Q6_K`, `Q4_0`, `F16`, …) dequantised
//! and re-quantised to `Q8_0` at load. Activations are quantised to 8 bits per block of 32
//! before each matmul, RMSNorm is summed in f64, K/V are cached as f16, as in llama.cpp.

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::EngineError;
use super::decoder_ops::{
    Heads, add_in_place, append_and_attend, rms_norm, rms_norm_in_place, rope_neox, rope_table,
};
use super::qkernels::{BlockQ8, QK, QWeight, quantize_row};
use super::weight::{Weight, matmuls, tiles_by_default};
use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, gguf_file};

/// Which Qwen generation the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Qwen2 / Qwen2.5: q/k/v biases.
    Qwen2,
    /// Qwen3: per-head q/k RMS norms, no biases.
    Qwen3,
}

impl Arch {
    /// The architecture named by `general.architecture`, if it is a Qwen one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            _ => None,
        }
    }
    /// The GGUF metadata prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

/// Hyper-parameters from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub eps: f32,
    pub context: usize,
    pub vocab: usize,
}

fn md_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize, EngineError> {
    md.get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| EngineError::Format(format!("GGUF metadata lacks {key}")))
}

fn md_f32(md: &HashMap<String, Value>, key: &str) -> Option<f32> {
    md.get(key).and_then(|v| v.to_f32().ok())
}

impl Config {
    /// Read the `qwen2.*` / `qwen3.*` metadata (and the vocabulary size from the embeddings).
    pub fn from_content(content: &Content) -> Result<Self, EngineError> {
        let md = &content.metadata;
        let name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("");
        let arch = Arch::from_name(name).ok_or_else(|| {
            EngineError::Format(format!("architecture {name:?} is not qwen2 or qwen3"))
        })?;
        let k = |s: &str| format!("{}.{s}", arch.name());
        let n_embd = md_usize(md, &k("embedding_length"))?;
        let n_head = md_usize(md, &k("attention.head_count"))?;
        let n_kv_head = md_usize(md, &k("attention.head_count_kv")).unwrap_or(n_head);
        let head_dim = md_usize(md, &k("attention.key_length")).unwrap_or(n_embd / n_head.max(1));
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first().copied())
            .ok_or_else(|| EngineError::Format("no token_embd.weight".into()))?;
        let cfg = Self {
            arch,
            n_layer: md_usize(md, &k("block_count"))?,
            n_embd,
            n_ff: md_usize(md, &k("feed_forward_length"))?,
            n_head,
            n_kv_head,
            head_dim,
            rope_base: md_f32(md, &k("rope.freq_base")).unwrap_or(1_000_000.0),
            eps: md_f32(md, &k("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            context: md_usize(md, &k("context_length")).unwrap_or(4096),
            vocab,
        };
        let ok = n_head > 0
            && n_kv_head > 0
            && n_head.is_multiple_of(n_kv_head)
            && head_dim > 0
            && head_dim.is_multiple_of(2)
            && n_embd.is_multiple_of(QK)
            && cfg.n_ff.is_multiple_of(QK)
            && (n_head * head_dim).is_multiple_of(QK);
        if !ok {
            return Err(EngineError::Format(format!(
                "unsupported {} dimensions: {cfg:?}",
                arch.name()
            )));
        }
        Ok(cfg)
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    /// `qwen2`: the q, k and v biases.
    bias: Option<[Vec<f32>; 3]>,
    /// `qwen3`: the per-head q and k norm weights (`head_dim` each).
    qk_norm: Option<[Vec<f32>; 2]>,
    ffn_norm: Vec<f32>,
    gate: Weight,
    up: Weight,
    down: Weight,
}

/// A loaded Qwen model (weights only; caches live in [`Seq`]s).
pub struct Model {
    pub config: Config,
    embd: Weight,
    /// `None`: tied to the token embeddings.
    output: Option<Weight>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

/// One sequence's KV cache (f16 bits, per layer `[position][kv head][head dim]`).
#[derive(Clone, Debug, Default)]
pub struct Seq {
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
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

/// Reads tensors out of a GGUF file into our formats.
struct Loader<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
    requantise: bool,
    tiles: bool,
}

impl<R: Read + Seek> Loader<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn vector(&mut self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        let t = self
            .content
            .tensor(self.reader, name, &Device::Cpu)
            .map_err(|e| EngineError::Format(format!("tensor {name}: {e}")))?;
        let v: Vec<f32> = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        if v.len() != n {
            return Err(EngineError::Format(format!(
                "{name}: {} values, expected {n}",
                v.len()
            )));
        }
        Ok(v)
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Weight, EngineError> {
        let t = self
            .content
            .tensor(self.reader, name, &Device::Cpu)
            .map_err(|e| EngineError::Format(format!("tensor {name}: {e}")))?;
        let w = if self.requantise && t.dtype() == GgmlDType::Q4_1 {
            let bad = || EngineError::Format(format!("{name}: bad {:?} data", t.dtype()));
            if t.shape().dims() != [rows, cols] {
                return Err(EngineError::Format(format!(
                    "{name}: shape {:?}, expected [{rows}, {cols}]",
                    t.shape().dims()
                )));
            }
            let w: Vec<f32> = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
            QWeight::quantize_q8_0(&w, rows, cols).ok_or_else(bad)?
        } else {
            super::gemma3::weights::repack(name, &t, rows, cols)?
        };
        Ok(Weight::new(w, self.tiles))
    }
}

impl Model {
    /// Build from parsed GGUF content and its reader; `requantise` stores `Q4_1` weights as
    /// `Q8_0` (types without a native kernel always are).
    pub fn from_content<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        requantise: bool,
    ) -> Result<Self, EngineError> {
        let config = Config::from_content(content)?;
        let c = &config;
        let (d, qd, kvd, ff) = (
            c.n_embd,
            c.n_head * c.head_dim,
            c.n_kv_head * c.head_dim,
            c.n_ff,
        );
        let mut ld = Loader {
            content,
            reader,
            requantise,
            tiles: tiles_by_default(),
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let bias = match c.arch {
                Arch::Qwen2 => Some([
                    ld.vector(&p("attn_q.bias"), qd)?,
                    ld.vector(&p("attn_k.bias"), kvd)?,
                    ld.vector(&p("attn_v.bias"), kvd)?,
                ]),
                Arch::Qwen3 => None,
            };
            let qk_norm = match c.arch {
                Arch::Qwen3 => Some([
                    ld.vector(&p("attn_q_norm.weight"), c.head_dim)?,
                    ld.vector(&p("attn_k_norm.weight"), c.head_dim)?,
                ]),
                Arch::Qwen2 => None,
            };
            layers.push(Layer {
                attn_norm: ld.vector(&p("attn_norm.weight"), d)?,
                wq: ld.matrix(&p("attn_q.weight"), qd, d)?,
                wk: ld.matrix(&p("attn_k.weight"), kvd, d)?,
                wv: ld.matrix(&p("attn_v.weight"), kvd, d)?,
                wo: ld.matrix(&p("attn_output.weight"), d, qd)?,
                bias,
                qk_norm,
                ffn_norm: ld.vector(&p("ffn_norm.weight"), d)?,
                gate: ld.matrix(&p("ffn_gate.weight"), ff, d)?,
                up: ld.matrix(&p("ffn_up.weight"), ff, d)?,
                down: ld.matrix(&p("ffn_down.weight"), d, ff)?,
            });
        }
        let embd = ld.matrix("token_embd.weight", c.vocab, d)?;
        let output = if ld.has("output.weight") {
            Some(ld.matrix("output.weight", c.vocab, d)?)
        } else {
            None
        };
        Ok(Self {
            output_norm: ld.vector("output_norm.weight", d)?,
            config,
            embd,
            output,
            layers,
        })
    }

    /// An empty sequence.
    pub fn new_seq(&self) -> Seq {
        Seq {
            k: vec![Vec::new(); self.config.n_layer],
            v: vec![Vec::new(); self.config.n_layer],
            len: 0,
        }
    }

    /// Append `tokens` to `seq`; the logits after the last one.
    pub fn prefill(&self, seq: &mut Seq, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let mut out = self.forward(&mut [(seq, tokens)])?;
        out.pop()
            .ok_or_else(|| EngineError::InvalidInput("nothing to prefill".into()))
    }

    /// Append each item's tokens to its sequence in one batched pass; the logits after each
    /// item's last token.
    pub fn forward(&self, items: &mut [(&mut Seq, &[u32])]) -> Result<Vec<Vec<f32>>, EngineError> {
        let c = &self.config;
        let (d, hd) = (c.n_embd, c.head_dim);
        let qd = c.n_head * hd;
        let super::rows::Rows {
            starts,
            positions,
            ids,
        } = super::rows::Rows::layout(items.iter().map(|(s, t)| (s.len, *t)), c.context, c.vocab)?;
        let n = ids.len();
        let mut x = vec![0f32; n * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(&ids) {
            self.embd.dequantize_row(t as usize, row);
        }
        let rope = rope_table(c.rope_base, hd, &positions);
        let mut h = vec![0f32; n * d];
        let mut hq = vec![BlockQ8::default(); n * d / QK];
        let mut attn = vec![0f32; n * qd];
        let mut aq = vec![BlockQ8::default(); n * qd / QK];
        let mut fq = vec![BlockQ8::default(); n * c.n_ff / QK];
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            quantize_row(&h, &mut hq);
            let mut qkv = matmuls(&[&layer.wq, &layer.wk, &layer.wv], &hq, n);
            let mut v = qkv.pop().unwrap_or_default();
            let mut k = qkv.pop().unwrap_or_default();
            let mut q = qkv.pop().unwrap_or_default();
            if let Some([bq, bk, bv]) = &layer.bias {
                add_rows(&mut q, bq);
                add_rows(&mut k, bk);
                add_rows(&mut v, bv);
            }
            if let Some([nq, nk]) = &layer.qk_norm {
                rms_norm_in_place(&mut q, nq, c.eps);
                rms_norm_in_place(&mut k, nk, c.eps);
            }
            rope_neox(&mut q, hd, &rope);
            rope_neox(&mut k, hd, &rope);
            let mut kv: Vec<(&mut Vec<u16>, &mut Vec<u16>)> = items
                .iter_mut()
                .map(|(s, _)| (&mut s.k[li], &mut s.v[li]))
                .collect();
            let heads = Heads {
                n_head: c.n_head,
                n_kv_head: c.n_kv_head,
                head_dim: hd,
            };
            append_and_attend(&mut kv, &starts, &positions, (&q, &k, &v), heads, &mut attn);
            quantize_row(&attn, &mut aq);
            let o = matmuls(&[&layer.wo], &aq, n).pop().unwrap_or_default();
            add_in_place(&mut x, &o);
            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            quantize_row(&h, &mut hq);
            let mut gu = matmuls(&[&layer.gate, &layer.up], &hq, n);
            let up = gu.pop().unwrap_or_default();
            let mut g = gu.pop().unwrap_or_default();
            for (a, b) in g.iter_mut().zip(&up) {
                *a = *a / (1.0 + (-*a).exp()) * b;
            }
            quantize_row(&g, &mut fq);
            let down = matmuls(&[&layer.down], &fq, n).pop().unwrap_or_default();
            add_in_place(&mut x, &down);
        }
        for (seq, toks) in items.iter_mut() {
            seq.len += toks.len();
        }
        let last: Vec<usize> = items
            .iter()
            .zip(&starts)
            .map(|((_, t), s)| s + t.len() - 1)
            .collect();
        let mut xl = vec![0f32; last.len() * d];
        for (o, &r) in xl.chunks_exact_mut(d).zip(&last) {
            o.copy_from_slice(&x[r * d..(r + 1) * d]);
        }
        let mut hl = vec![0f32; xl.len()];
        rms_norm(&xl, &self.output_norm, c.eps, &mut hl);
        let mut lq = vec![BlockQ8::default(); hl.len() / QK];
        quantize_row(&hl, &mut lq);
        let out = self.output.as_ref().unwrap_or(&self.embd);
        let logits = matmuls(&[out], &lq, last.len()).pop().unwrap_or_default();
        Ok(logits.chunks_exact(c.vocab).map(<[f32]>::to_vec).collect())
    }
}

/// Add `bias` to every row of `x`.
fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_in_place(row, bias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neox_rope_rotates_the_two_halves_of_a_head() {
        // One row, one head of 4: pairs (0, 2) and (1, 3).
        let table = rope_table(10_000.0, 4, &[1]);
        let mut x = vec![1.0, 0.0, 0.0, 1.0];
        rope_neox(&mut x, 4, &table);
        let (c0, s0) = table[0];
        let (c1, s1) = table[1];
        let want = [c0, -s1, s0, c1];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{x:?} vs {want:?}");
        }
    }

    #[test]
    fn head_norm_normalises_each_head_alone() {
        let mut x = vec![3.0, 4.0, 30.0, 40.0];
        rms_norm_in_place(&mut x, &[1.0, 1.0], 0.0);
        let r = (12.5f32).sqrt();
        let want = [3.0 / r, 4.0 / r, 3.0 / r, 4.0 / r];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{x:?}");
        }
    }
}
