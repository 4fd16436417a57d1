//! The batched CPU forward of [`super::Model`]: any number of sequences, each with any number
//! of new tokens, in one pass — one matmul per weight over all their rows (our `qkernels`: 8-bit
//! activations × `Q8_0`/`Q4_1` weights, AVX-512 VNNI or AVX2 picked at run time), attention per
//! row against its own sequence's f16 cache (sliding layers limited to their window), and the
//! tied output projection over the last row of every sequence at once, so that a batched decode
//! step reads the 262k-row embedding matrix once for all streams.
//!
//! Numerics follow llama.cpp's CPU graph for `gemma3`: RMSNorm summed in f64, NEOX RoPE with
//! angles by repeated multiplication, the query scaled by `1/√head_dim` after RoPE and rounded
//! to f16 for its product with the f16 cache, attention weights rounded to f16 before the
//! product with V, and GELU (tanh form) read through f16 like ggml's table.

use rayon::prelude::*;

use super::packed::{GROUP, Mat, block_sums};
use super::{Model, Seq};
use crate::engine::EngineError;
use crate::engine::decoder_ops::{
    add_in_place, push_f16, rms_norm, rms_norm_in_place, rope_neox, rope_table,
};
use crate::engine::qkernels::{BlockQ8, QK, axpy_f16, dot_f16, f16_round, quantize_row};

/// Extra positions a sliding layer may hold beyond its window before it is trimmed (amortises
/// the copy).
const TRIM_SLACK: usize = 256;

impl Model {
    /// Append each item's tokens to its sequence in one batched pass; the logits after each
    /// item's last token, in order. Nothing is changed when an item is refused.
    pub fn forward_batch(
        &self,
        items: &mut [(&mut Seq, &[u32])],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let c = &self.config;
        let (d, hd, nh, nkv) = (c.hidden, c.head_dim, c.heads, c.kv_heads);
        let (qd, kvd, ff) = (nh * hd, nkv * hd, c.ffn);
        let embed_rows = self.embed.rows();
        let mut starts = Vec::with_capacity(items.len());
        let mut positions = Vec::new();
        let mut ids = Vec::new();
        for (seq, toks) in items.iter() {
            if toks.is_empty() {
                return Err(EngineError::InvalidInput("nothing to prefill".into()));
            }
            if seq.len + toks.len() > c.context {
                return Err(EngineError::InvalidInput(format!(
                    "{} tokens exceed the context of {}",
                    seq.len + toks.len(),
                    c.context
                )));
            }
            if seq.k.len() != self.layers.len() {
                return Err(EngineError::InvalidInput(
                    "the sequence belongs to another model".into(),
                ));
            }
            starts.push(ids.len());
            for (i, &t) in toks.iter().enumerate() {
                if t as usize >= embed_rows {
                    return Err(EngineError::InvalidInput(format!(
                        "token {t} is outside the vocabulary ({embed_rows})"
                    )));
                }
                ids.push(t);
                positions.push(seq.len + i);
            }
        }
        let n = ids.len();
        let scale = (d as f32).sqrt();
        let mut x = vec![0f32; n * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(&ids) {
            self.embed.dequantize_row(t as usize, row);
            row.iter_mut().for_each(|v| *v *= scale);
        }
        let rope_global = rope_table(c.rope_global, hd, &positions);
        let rope_local = rope_table(c.rope_local, hd, &positions);
        let q_scale = 1.0 / (hd as f32).sqrt();
        let mut h = vec![0f32; n * d];
        let mut hq = vec![BlockQ8::default(); n * d / QK];
        let mut attn = vec![0f32; n * qd];
        let mut aq = vec![BlockQ8::default(); n * qd / QK];
        let mut fq = vec![BlockQ8::default(); n * ff / QK];
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            quantize_row(&h, &mut hq);
            let [mut q, mut k, v] = matmuls3([&layer.q, &layer.k, &layer.v], &hq, n);
            rms_norm_in_place(&mut q, &layer.q_norm, c.eps);
            rms_norm_in_place(&mut k, &layer.k_norm, c.eps);
            let rope = if layer.sliding {
                &rope_local
            } else {
                &rope_global
            };
            rope_neox(&mut q, hd, rope);
            rope_neox(&mut k, hd, rope);
            q.iter_mut().for_each(|v| *v *= q_scale);
            for (j, (seq, toks)) in items.iter_mut().enumerate() {
                let r = starts[j]..starts[j] + toks.len();
                push_f16(&mut seq.k[li], &k[r.start * kvd..r.end * kvd]);
                push_f16(&mut seq.v[li], &v[r.start * kvd..r.end * kvd]);
            }
            let window = if layer.sliding { c.window } else { usize::MAX };
            self.attention(items, li, window, &starts, &positions, &q, &mut attn);
            quantize_row(&attn, &mut aq);
            let mut o = matmul(&layer.o, &aq, n);
            rms_norm_in_place(&mut o, &layer.post_attn_norm, c.eps);
            add_in_place(&mut x, &o);
            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            quantize_row(&h, &mut hq);
            let [mut g, u] = matmuls2([&layer.gate, &layer.up], &hq, n);
            for (a, b) in g.iter_mut().zip(&u) {
                *a = gelu(*a) * b;
            }
            quantize_row(&g, &mut fq);
            let mut down = matmul(&layer.down, &fq, n);
            rms_norm_in_place(&mut down, &layer.post_ffn_norm, c.eps);
            add_in_place(&mut x, &down);
        }
        for (seq, toks) in items.iter_mut() {
            seq.len += toks.len();
            for (li, layer) in self.layers.iter().enumerate() {
                if layer.sliding {
                    seq.trim(li, kvd, c.window);
                }
            }
        }
        // The output projection for each item's last row only, all items in one matmul.
        let mut last = vec![0f32; items.len() * d];
        for (o, ((_, toks), s)) in last.chunks_exact_mut(d).zip(items.iter().zip(&starts)) {
            let r = s + toks.len() - 1;
            rms_norm(&x[r * d..(r + 1) * d], &self.norm, c.eps, o);
        }
        let mut lq = vec![BlockQ8::default(); last.len() / QK];
        quantize_row(&last, &mut lq);
        let head = self.output.as_ref().unwrap_or(&self.embed);
        let mut logits = matmul(head, &lq, items.len());
        let vocab = head.rows();
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
        }
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Attention of every row against its own sequence's cache (which already holds this
    /// step's keys and values), seeing the positions `p − window < kp ≤ p`; into `out`
    /// (`rows × heads · head_dim`).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        items: &[(&mut Seq, &[u32])],
        li: usize,
        window: usize,
        starts: &[usize],
        positions: &[usize],
        q: &[f32],
        out: &mut [f32],
    ) {
        let c = &self.config;
        let (hd, nh, nkv) = (c.head_dim, c.heads, c.kv_heads);
        let group = nh / nkv;
        let kvd = nkv * hd;
        let mut row_seq = vec![0usize; positions.len()];
        for (j, (_, toks)) in items.iter().enumerate() {
            row_seq[starts[j]..starts[j] + toks.len()].fill(j);
        }
        let task = |(idx, o): (usize, &mut [f32])| {
            let (row, head) = (idx / nh, idx % nh);
            let seq = &items[row_seq[row]].0;
            let (kc, vc, first) = (&seq.k[li], &seq.v[li], seq.first[li]);
            let p = positions[row];
            let lo = (p + 1).saturating_sub(window).max(first);
            let kh = head / group;
            let qh: Vec<f32> = q[row * nh * hd + head * hd..][..hd]
                .iter()
                .map(|v| f16_round(*v))
                .collect();
            let mut s: Vec<f32> = (lo - first..=p - first)
                .map(|j| dot_f16(&kc[j * kvd + kh * hd..][..hd], &qh))
                .collect();
            let max = s.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let mut sum = 0f64;
            for v in s.iter_mut() {
                *v = (*v - max).exp();
                sum += *v as f64;
            }
            let inv = (1.0 / sum) as f32;
            o.fill(0.0);
            for (j, w) in (lo - first..).zip(&s) {
                axpy_f16(o, f16_round(w * inv), &vc[j * kvd + kh * hd..][..hd]);
            }
        };
        if rayon::current_num_threads() > 1 && positions.len() * nh > 1 {
            out.par_chunks_mut(hd).enumerate().for_each(task);
        } else {
            out.chunks_mut(hd).enumerate().for_each(task);
        }
    }
}

impl Seq {
    /// Drop the oldest cached positions of layer `li` once it holds more than `window` +
    /// [`TRIM_SLACK`] of them, keeping the last `window` (all a later query can see).
    fn trim(&mut self, li: usize, kvd: usize, window: usize) {
        let held = self.k[li].len() / kvd;
        if held > window.saturating_add(TRIM_SLACK) {
            let drop = held - window;
            self.k[li].drain(..drop * kvd);
            self.v[li].drain(..drop * kvd);
            self.first[li] += drop;
        }
    }
}

/// ggml's GELU (tanh form) through its f16 table: the input rounded to f16, the result too.
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let v = f16_round(x);
        f16_round(0.5 * v * (1.0 + (SQRT_2_OVER_PI * v * (1.0 + COEF_A * v * v)).tanh()))
    }
}

fn matmul(w: &Mat, x: &[BlockQ8], n: usize) -> Vec<f32> {
    matmuls(&[w], x, n).pop().unwrap_or_default()
}

fn matmuls2(ws: [&Mat; 2], x: &[BlockQ8], n: usize) -> [Vec<f32>; 2] {
    let mut o = matmuls(&ws, x, n);
    let b = o.pop().unwrap_or_default();
    [o.pop().unwrap_or_default(), b]
}

fn matmuls3(ws: [&Mat; 3], x: &[BlockQ8], n: usize) -> [Vec<f32>; 3] {
    let mut o = matmuls(&ws, x, n);
    let c = o.pop().unwrap_or_default();
    let b = o.pop().unwrap_or_default();
    [o.pop().unwrap_or_default(), b, c]
}

/// Rows `r0..r1` of `w` times the `n` tokens of `x`, into `out` (token-major, `stride` apart).
fn run_rows(
    w: &Mat,
    (r0, r1): (usize, usize),
    x: &[BlockQ8],
    sums: &[i32],
    n: usize,
    out: &mut [f32],
    stride: usize,
) {
    match w {
        Mat::Packed(p) => p.matmul_groups((r0 / GROUP, r1 / GROUP), x, sums, n, out, stride),
        Mat::Plain(q) if n == 1 => q.matmul_rows((r0, r1), x, 1, out),
        Mat::Plain(q) => {
            let mut v = vec![0f32; (r1 - r0) * n];
            q.matmul_rows((r0, r1), x, n, &mut v);
            for (i, row) in v.chunks_exact(n).enumerate() {
                for (t, val) in row.iter().enumerate() {
                    out[t * stride + i] = *val;
                }
            }
        }
    }
}

/// `x` (`n` rows of quantised activations) times each weight: one `n × rows` output per
/// weight (token-major). Rows are split into tasks over the current rayon pool.
fn matmuls(ws: &[&Mat], x: &[BlockQ8], n: usize) -> Vec<Vec<f32>> {
    let threads = rayon::current_num_threads();
    let sums = if ws.iter().any(|w| matches!(w, Mat::Packed(_))) {
        block_sums(x)
    } else {
        Vec::new()
    };
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; n * w.rows()]).collect();
    if threads <= 1 {
        for (w, o) in ws.iter().zip(outs.iter_mut()) {
            run_rows(w, (0, w.rows()), x, &sums, n, o, w.rows());
        }
        return outs;
    }
    let mut tasks = Vec::new();
    for (wi, w) in ws.iter().enumerate() {
        let rows = w.rows();
        let chunk = (rows / (threads * 4)).clamp(GROUP, 1024) / GROUP * GROUP;
        let mut r = 0;
        while r < rows {
            tasks.push((wi, r, (r + chunk).min(rows)));
            r += chunk;
        }
    }
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(wi, r0, r1)| {
            let mut v = vec![0f32; (r1 - r0) * n];
            run_rows(ws[wi], (r0, r1), x, &sums, n, &mut v, r1 - r0);
            v
        })
        .collect();
    for (&(wi, r0, r1), part) in tasks.iter().zip(&parts) {
        let rows = ws[wi].rows();
        for (t, p) in part.chunks_exact(r1 - r0).enumerate() {
            outs[wi][t * rows + r0..t * rows + r1].copy_from_slice(p);
        }
    }
    outs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neox_rope_rotates_halves_and_keeps_norms() {
        let hd = 8;
        let table = rope_table(10_000.0, hd, &[0, 5]);
        let mut x: Vec<f32> = (0..2 * hd).map(|i| i as f32 * 0.25 - 1.0).collect();
        let before = x.clone();
        rope_neox(&mut x, hd, &table);
        // Position 0 is the identity.
        assert_eq!(&x[..hd], &before[..hd]);
        // Position 5: pair (i, i + 4) rotated by 5·base^(−2i/hd).
        for i in 0..hd / 2 {
            let th = 5.0f32 * 10_000f32.powf(-2.0 * i as f32 / hd as f32);
            let (a, b) = (before[hd + i], before[hd + i + hd / 2]);
            assert!((x[hd + i] - (a * th.cos() - b * th.sin())).abs() < 1e-4);
            assert!((x[hd + i + hd / 2] - (a * th.sin() + b * th.cos())).abs() < 1e-4);
        }
    }

    #[test]
    fn gelu_matches_the_tanh_form_within_f16() {
        for x in [-12.0f32, -3.0, -0.5, 0.0, 0.1, 1.0, 2.5, 11.0] {
            let exact = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
            assert!(
                (gelu(x) - exact).abs() <= 2e-3 * exact.abs().max(1.0),
                "{x}"
            );
        }
    }
}
