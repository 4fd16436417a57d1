//! Our own forward pass for llama-architecture GGUF models (SmolLM2 and kin), with the KV cache
//! outside the model so that one engine thread can serve many sequences.
//!
//! # API (what the scheduler calls; all from one engine thread)
//! - [`Model::load`]: read a GGUF file (weights repacked by [`super::qkernels`]).
//! - [`Model::new_seq`]: an empty [`Seq`] (its own f16 KV cache). `Seq` is `Clone` and
//!   [`Seq::truncate`]-able, so a cached prompt prefix can be shared by copying it.
//! - [`Model::prefill`]`(&mut seq, &tokens) -> logits`: append a chunk of prompt tokens (one
//!   batched matmul per weight over the whole chunk); the logits after the last one.
//! - [`Model::decode_batch`]`(&mut [&mut seq], &tokens) -> logits per seq`: one new token for each
//!   of B sequences in one step (batched matmuls over the B tokens, attention per sequence).
//! - [`Model::forward`]: the general case both use (several sequences, several tokens each).
//!
//! Work is spread over the *current* rayon pool (`pool.install(..)`; one thread = inline, no
//! pool overhead). [`NativeBackend`] wraps the model in the scheduler's
//! [`Backend`](super::backend::Backend) trait.
//!
//! Numerics follow llama.cpp's CPU path so greedy decoding agrees with it on the same file:
//! activations quantised to 8 bits per block of 32 before every matmul (whole-block products,
//! see `qkernels.rs`), RMSNorm summed in f64,
//! RoPE angles by repeated multiplication in f32, K/V cached as f16, the query and the attention
//! weights rounded to f16 before their products with the cache.

use std::path::Path;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};

use super::EngineError;
use super::decoder_ops::{Heads, add_in_place, append_and_attend, rms_norm, rope_table};
use super::qkernels::{BlockQ8, QK, QWeight, quantize_row};
use super::weight::{Weight, matmuls, stack_weights, tiles_by_default};

/// Hyper-parameters from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rope_base: f32,
    pub eps: f32,
    pub context: usize,
    pub vocab: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    ffn_norm: Vec<f32>,
    gate: Weight,
    up: Weight,
    down: Weight,
}

/// A loaded llama-architecture model (weights only; caches live in [`Seq`]s).
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
    /// The tokens held (for prompt-prefix reuse).
    tokens: Vec<u32>,
}

impl Seq {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The tokens held, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// A copy of the first `n` tokens' cache (all of it if `n ≥ len`).
    pub fn prefix(&self, n: usize) -> Self {
        let n = n.min(self.len);
        let row = self.k.first().map_or(0, |k| k.len() / self.len.max(1));
        let cut = |c: &Vec<Vec<u16>>| c.iter().map(|l| l[..n * row].to_vec()).collect();
        Self {
            k: cut(&self.k),
            v: cut(&self.v),
            len: n,
            tokens: self.tokens[..n].to_vec(),
        }
    }
    /// Forget everything after the first `n` tokens (e.g. keep a shared prompt prefix).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        if let Some(row) = self.k.first().map(|k| k.len() / self.len.max(1)) {
            for c in self.k.iter_mut().chain(self.v.iter_mut()) {
                c.truncate(n * row);
            }
        }
        self.len = n;
        self.tokens.truncate(n);
    }
}

fn md_u32(c: &gguf_file::Content, key: &str) -> Result<usize, EngineError> {
    c.metadata
        .get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| EngineError::Format(format!("GGUF metadata lacks {key}")))
}

fn md_f32(c: &gguf_file::Content, key: &str) -> Option<f32> {
    c.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Reads tensors out of a GGUF file into our formats.
struct Loader<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
    /// Re-quantise `Q4_1` to `Q8_0` too (larger, sometimes faster).
    requantise: bool,
}

impl<R: std::io::Read + std::io::Seek> Loader<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn vector(&mut self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        let t = self.content.tensor(self.reader, name, &Device::Cpu)?;
        let v: Vec<f32> = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        if v.len() != n {
            return Err(EngineError::Format(format!(
                "{name}: {} values, expected {n}",
                v.len()
            )));
        }
        Ok(v)
    }

    fn qweight(&mut self, name: &str, rows: usize, cols: usize) -> Result<QWeight, EngineError> {
        let t = self.content.tensor(self.reader, name, &Device::Cpu)?;
        if t.shape().dims() != [rows, cols] {
            return Err(EngineError::Format(format!(
                "{name}: shape {:?}, expected [{rows}, {cols}]",
                t.shape().dims()
            )));
        }
        let bad = || EngineError::Format(format!("{name}: bad {:?} data", t.dtype()));
        match t.dtype() {
            GgmlDType::Q4_1 if !self.requantise => {
                QWeight::from_q4_1(&t.data()?, rows, cols).ok_or_else(bad)
            }
            GgmlDType::Q8_0 => QWeight::from_q8_0(&t.data()?, rows, cols).ok_or_else(bad),
            _ => {
                let w: Vec<f32> = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
                QWeight::quantize_q8_0(&w, rows, cols).ok_or_else(bad)
            }
        }
    }
}

impl Model {
    /// Load a llama-architecture GGUF file; `requantise` stores `Q4_1` weights as `Q8_0`
    /// (types without a native kernel always are).
    /// The weights go into 16-row tiles where the CPU has AVX-512 VNNI ([`Model::load_with`]).
    pub fn load(path: &Path, requantise: bool) -> Result<Self, EngineError> {
        Self::load_with(path, requantise, tiles_by_default())
    }

    /// [`Model::load`], choosing the weight layout: `tiles` (16-row groups, see
    /// [`TiledWeight`]) or plain row-major blocks. Both give the same logits.
    pub fn load_with(path: &Path, requantise: bool, tiles: bool) -> Result<Self, EngineError> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
        Self::from_content_with(&content, &mut file, requantise, tiles)
    }

    /// Build from parsed GGUF content and its reader (tiles where the CPU has AVX-512 VNNI).
    pub fn from_content<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        requantise: bool,
    ) -> Result<Self, EngineError> {
        let tiles = tiles_by_default();
        Self::from_content_with(content, reader, requantise, tiles)
    }

    /// [`Model::from_content`] with the weight layout chosen (see [`Model::load_with`]).
    pub fn from_content_with<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        requantise: bool,
        tiles: bool,
    ) -> Result<Self, EngineError> {
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "llama" {
            return Err(EngineError::Format(format!(
                "architecture {arch:?} is not supported by the native forward (llama only)"
            )));
        }
        let n_embd = md_u32(content, "llama.embedding_length")?;
        let n_head = md_u32(content, "llama.attention.head_count")?;
        let n_kv_head = md_u32(content, "llama.attention.head_count_kv").unwrap_or(n_head);
        if n_head == 0
            || n_kv_head == 0
            || !n_head.is_multiple_of(n_kv_head)
            || !n_embd.is_multiple_of(n_head)
        {
            return Err(EngineError::Format("inconsistent head counts".into()));
        }
        let head_dim = n_embd / n_head;
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| EngineError::Format("no token_embd.weight".into()))?;
        let config = Config {
            n_layer: md_u32(content, "llama.block_count")?,
            n_embd,
            n_ff: md_u32(content, "llama.feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim,
            n_rot: md_u32(content, "llama.rope.dimension_count").unwrap_or(head_dim),
            rope_base: md_f32(content, "llama.rope.freq_base").unwrap_or(10_000.0),
            eps: md_f32(content, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context: md_u32(content, "llama.context_length").unwrap_or(2048),
            vocab,
        };
        if config.n_rot > head_dim
            || !config.n_rot.is_multiple_of(2)
            || !head_dim.is_multiple_of(8)
            || !n_embd.is_multiple_of(QK)
            || !config.n_ff.is_multiple_of(QK)
        {
            return Err(EngineError::Format(
                "unsupported rope/head dimensions".into(),
            ));
        }
        let (d, kv, ff) = (n_embd, n_kv_head * head_dim, config.n_ff);
        let mut ld = Loader {
            content,
            reader,
            requantise,
        };
        // Every matrix first (load order: per layer q, k, v, o, gate, up, down; then the
        // embeddings and the output head), then stacked and tiled.
        let mut norms = Vec::with_capacity(config.n_layer);
        let mut mats = Vec::with_capacity(config.n_layer * 7 + 2);
        for i in 0..config.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            norms.push((
                ld.vector(&p("attn_norm"), d)?,
                ld.vector(&p("ffn_norm"), d)?,
            ));
            for (name, rows, cols) in [
                ("attn_q", d, d),
                ("attn_k", kv, d),
                ("attn_v", kv, d),
                ("attn_output", d, d),
                ("ffn_gate", ff, d),
                ("ffn_up", ff, d),
                ("ffn_down", d, ff),
            ] {
                mats.push(ld.qweight(&p(name), rows, cols)?);
            }
        }
        mats.push(ld.qweight("token_embd.weight", vocab, d)?);
        let tied = !ld.has("output.weight");
        if !tied {
            mats.push(ld.qweight("output.weight", vocab, d)?);
        }
        let output_norm = ld.vector("output_norm.weight", d)?;
        let mut mats = stack_weights(mats, tiles).into_iter();
        let mut next = || {
            mats.next()
                .ok_or_else(|| EngineError::Format("weight count".into()))
        };
        let mut layers = Vec::with_capacity(config.n_layer);
        for (attn_norm, ffn_norm) in norms {
            layers.push(Layer {
                attn_norm,
                wq: next()?,
                wk: next()?,
                wv: next()?,
                wo: next()?,
                ffn_norm,
                gate: next()?,
                up: next()?,
                down: next()?,
            });
        }
        let embd = next()?;
        let output = if tied { None } else { Some(next()?) };
        Ok(Self {
            output_norm,
            config,
            embd,
            output,
            layers,
        })
    }

    /// Bytes of weights read per decode step.
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|w| w.bytes())
                    .sum::<usize>()
            })
            .sum();
        l + self.output.as_ref().unwrap_or(&self.embd).bytes()
    }

    /// An empty sequence.
    pub fn new_seq(&self) -> Seq {
        Seq {
            k: vec![Vec::new(); self.config.n_layer],
            v: vec![Vec::new(); self.config.n_layer],
            len: 0,
            tokens: Vec::new(),
        }
    }

    /// Append `tokens` to `seq`; the logits after the last one.
    pub fn prefill(&self, seq: &mut Seq, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let mut out = self.forward(&mut [(seq, tokens)])?;
        out.pop()
            .ok_or_else(|| EngineError::InvalidInput("nothing to prefill".into()))
    }

    /// Append `tokens[i]` to `seqs[i]`; the logits of each, in order.
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
        self.forward(&mut items)
    }

    /// Append each item's tokens to its sequence in one batched pass; the logits after each
    /// item's last token.
    pub fn forward(&self, items: &mut [(&mut Seq, &[u32])]) -> Result<Vec<Vec<f32>>, EngineError> {
        let c = &self.config;
        let (d, hd) = (c.n_embd, c.head_dim);
        // Row layout: the items' tokens one after another.
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
        let rope = rope_table(c.rope_base, c.n_rot, &positions);
        let mut h = vec![0f32; n * d];
        let mut hq = vec![BlockQ8::default(); n * d / QK];
        let mut attn = vec![0f32; n * d];
        let mut aq = vec![BlockQ8::default(); n * d / QK];
        let mut fq = vec![BlockQ8::default(); n * c.n_ff / QK];
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            quantize_rows(&h, &mut hq);
            let mut qkv = matmuls(&[&layer.wq, &layer.wk, &layer.wv], &hq, n);
            let v = qkv.pop().unwrap_or_default();
            let mut k = qkv.pop().unwrap_or_default();
            let mut q = qkv.pop().unwrap_or_default();
            apply_rope(&mut q, c.n_head, hd, c.n_rot, &rope);
            apply_rope(&mut k, c.n_kv_head, hd, c.n_rot, &rope);
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
            quantize_rows(&attn, &mut aq);
            let o = matmuls(&[&layer.wo], &aq, n).pop().unwrap_or_default();
            add_in_place(&mut x, &o);
            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            quantize_rows(&h, &mut hq);
            let mut gu = matmuls(&[&layer.gate, &layer.up], &hq, n);
            let up = gu.pop().unwrap_or_default();
            let mut g = gu.pop().unwrap_or_default();
            for (a, b) in g.iter_mut().zip(&up) {
                *a = *a / (1.0 + (-*a).exp()) * b;
            }
            quantize_rows(&g, &mut fq);
            let down = matmuls(&[&layer.down], &fq, n).pop().unwrap_or_default();
            add_in_place(&mut x, &down);
        }
        for (seq, toks) in items.iter_mut() {
            seq.len += toks.len();
            seq.tokens.extend_from_slice(toks);
        }
        // Logits for each item's last row only.
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
        quantize_rows(&hl, &mut lq);
        let out = self.output.as_ref().unwrap_or(&self.embd);
        let logits = matmuls(&[out], &lq, last.len()).pop().unwrap_or_default();
        Ok(logits.chunks_exact(c.vocab).map(|l| l.to_vec()).collect())
    }
}

fn quantize_rows(x: &[f32], out: &mut [BlockQ8]) {
    quantize_row(x, out);
}

/// Rotate adjacent pairs (llama.cpp's "normal" RoPE) of the first `n_rot` dims of each head.
fn apply_rope(x: &mut [f32], heads: usize, hd: usize, n_rot: usize, table: &[(f32, f32)]) {
    let pairs = n_rot / 2;
    for (row, xr) in x.chunks_exact_mut(heads * hd).enumerate() {
        let t = &table[row * pairs..(row + 1) * pairs];
        for h in xr.chunks_exact_mut(hd) {
            for (i, &(cos, sin)) in t.iter().enumerate() {
                let (a, b) = (h[2 * i], h[2 * i + 1]);
                h[2 * i] = a * cos - b * sin;
                h[2 * i + 1] = a * sin + b * cos;
            }
        }
    }
}
