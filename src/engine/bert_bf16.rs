//! An HF BERT encoder (all-MiniLM-L6-v2) on the CPU in bf16: every linear layer multiplies
//! bf16 weights by bf16 activations with f32 sums ([`super::bert_gemm`]: AMX or AVX-512 BF16);
//! embeddings, attention and the layer norms stay f32 ([`super::cpu_ops`]); GELU runs on
//! the f32 sums of the FFN's first product before they are rounded. As in the
//! packed E5 encoder, the tokens of a batch are packed end to end (no padding) and attention
//! runs per sequence; Q, K and V are one fused matrix; work buffers are kept between calls.

use std::sync::Mutex;

use super::bert_gemm::{PackedBf16, matmul, matmul_gelu, to_bf16};
use super::cpu_encoder::Dims;
use super::cpu_ops::{self, AttentionShape};

/// A linear layer: packed bf16 weights and an f32 bias.
struct Lin {
    w: PackedBf16,
    bias: Vec<f32>,
}

impl Lin {
    /// `y = W·x + b` for `t` bf16 rows of `x`.
    fn apply(&self, x: &[u16], t: usize, y: &mut [f32]) {
        matmul(&self.w, x, t, &self.bias, &mut y[..t * self.w.rows()]);
    }
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
    xb: Vec<u16>,
    /// The FFN's middle activations, bf16.
    mb: Vec<u16>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    /// f32 FFN sums where GELU does not run in the product's epilogue.
    mid: Vec<f32>,
}

/// A tensor lookup: name and expected length → values.
type Get<'a> = dyn FnMut(&str, usize) -> Result<Vec<f32>, String> + 'a;

/// The linear layer `name` (`.weight` `rows`×`cols`, `.bias`).
fn lin(get: &mut Get<'_>, name: &str, rows: usize, cols: usize) -> Result<Lin, String> {
    let w = get(&format!("{name}.weight"), rows * cols)?;
    Ok(Lin {
        w: PackedBf16::new(&w, rows, cols)?,
        bias: get(&format!("{name}.bias"), rows)?,
    })
}

/// The layer norm `name` (`.weight`, `.bias`).
fn norm(get: &mut Get<'_>, name: &str, h: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
    Ok((
        get(&format!("{name}.weight"), h)?,
        get(&format!("{name}.bias"), h)?,
    ))
}

/// The bf16 CPU BERT encoder.
pub struct Bf16Encoder {
    dims: Dims,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    spare: Mutex<Vec<Work>>,
}

impl Bf16Encoder {
    /// Whether these dimensions fit the packed panels (widths multiples of 64).
    pub fn supports(dims: &Dims) -> bool {
        let nr = super::bert_gemm::NR;
        dims.heads > 0
            && dims.hidden.is_multiple_of(dims.heads)
            && dims.hidden.is_multiple_of(nr)
            && dims.ffn.is_multiple_of(nr)
    }

    /// Build from f32 tensors looked up by their HF BERT names (without a `bert.` prefix)
    /// and expected lengths.
    pub fn new(
        dims: Dims,
        mut get: impl FnMut(&str, usize) -> Result<Vec<f32>, String>,
    ) -> Result<Self, String> {
        if !Self::supports(&dims) {
            return Err("unsupported encoder dimensions".into());
        }
        let (h, ff) = (dims.hidden, dims.ffn);
        let word = get("embeddings.word_embeddings.weight", dims.vocab_rows * h)?;
        let position = get(
            "embeddings.position_embeddings.weight",
            dims.max_positions * h,
        )?;
        let token_type = get("embeddings.token_type_embeddings.weight", h)
            .or_else(|_| get("embeddings.token_type_embeddings.weight", 2 * h))?[..h]
            .to_vec();
        let emb_norm = norm(&mut get, "embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(dims.layers);
        for l in 0..dims.layers {
            let pre = format!("encoder.layer.{l}");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for n in ["query", "key", "value"] {
                qkv_w.extend(get(&format!("{pre}.attention.self.{n}.weight"), h * h)?);
                qkv_b.extend(get(&format!("{pre}.attention.self.{n}.bias"), h)?);
            }
            let qkv = Lin {
                w: PackedBf16::new(&qkv_w, 3 * h, h)?,
                bias: qkv_b,
            };
            let attn_out = lin(&mut get, &format!("{pre}.attention.output.dense"), h, h)?;
            let attn_norm = norm(&mut get, &format!("{pre}.attention.output.LayerNorm"), h)?;
            let inter = lin(&mut get, &format!("{pre}.intermediate.dense"), ff, h)?;
            let out = lin(&mut get, &format!("{pre}.output.dense"), h, ff)?;
            let out_norm = norm(&mut get, &format!("{pre}.output.LayerNorm"), h)?;
            layers.push(Layer {
                qkv,
                attn_out,
                attn_norm,
                inter,
                out,
                out_norm,
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

    /// Mean-pooled final hidden states of each sequence (`[CLS]`…`[SEP]` ids, at most
    /// `max_positions` long). Ids beyond the vocabulary are an error.
    pub fn forward_pooled(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let d = self.dims;
        let h = d.hidden;
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
        w.xb.resize(t * h, 0);
        w.mb.resize(t * d.ffn, 0);
        w.qkv.resize(t * 3 * h, 0.0);
        w.ctx.resize(t * h, 0.0);
        w.tmp.resize(t * h, 0.0);
        let tokens = seqs
            .iter()
            .flat_map(|s| s.iter().enumerate().map(|(p, id)| (*id as usize, p)));
        for (row, (id, pos)) in w.x.chunks_exact_mut(h).zip(tokens) {
            row.copy_from_slice(&self.word[id * h..(id + 1) * h]);
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
            to_bf16(&w.x, &mut w.xb[..t * h]);
            l.qkv.apply(&w.xb, t, &mut w.qkv);
            cpu_ops::attention(&w.qkv, &shape, &mut w.ctx);
            to_bf16(&w.ctx, &mut w.xb[..t * h]);
            l.attn_out.apply(&w.xb, t, &mut w.tmp);
            let (nw, nb) = (&l.attn_norm.0, &l.attn_norm.1);
            cpu_ops::add_layer_norm(&mut w.x, Some(&w.tmp), nw, nb, d.eps);
            to_bf16(&w.x, &mut w.xb[..t * h]);
            let (inter, scratch) = (&l.inter, &mut w.mid);
            matmul_gelu(&inter.w, &w.xb, t, &inter.bias, &mut w.mb, scratch);
            l.out.apply(&w.mb, t, &mut w.tmp);
            let (nw, nb) = (&l.out_norm.0, &l.out_norm.1);
            cpu_ops::add_layer_norm(&mut w.x, Some(&w.tmp), nw, nb, d.eps);
        }
        let pooled = cpu_ops::mean_pool(&w.x, &segments, h);
        if let Ok(mut spare) = self.spare.lock() {
            spare.push(w);
        }
        Ok(pooled)
    }
}
