//! The f32 steps our llama, Qwen and Gemma forwards share, with llama.cpp's numerics: RMSNorm
//! (Σx² in f64), the residual add, appending K/V to an f16 cache, RoPE angle tables and NEOX
//! rotation, and (llama, Qwen) causal grouped-query attention of packed rows against their
//! own sequence's f16 cache.

use rayon::prelude::*;

use super::qkernels::{axpy_f16, dot_f16, f16_round};

/// llama.cpp's RMSNorm: Σx² in f64, `x · 1/√(mean + eps)`, then × weight (per `w.len()` row).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = xr.iter().map(|v| (v * v) as f64).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * g;
        }
    }
}

/// [`rms_norm`] in place (also per head: rows of `w.len()`).
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    for xr in x.chunks_exact_mut(d) {
        let sum: f64 = xr.iter().map(|v| (v * v) as f64).sum();
        let scale = 1.0 / ((sum / d as f64) as f32 + eps).sqrt();
        for (v, g) in xr.iter_mut().zip(w) {
            *v = (*v * scale) * g;
        }
    }
}

/// `x += y`, element-wise.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Append `x` to a cache of f16 bits.
pub fn push_f16(cache: &mut Vec<u16>, x: &[f32]) {
    cache.extend(x.iter().map(|v| half::f16::from_f32(*v).to_bits()));
}

/// `(cos, sin)` per row and rotated pair (`dims / 2` pairs), llama.cpp's way: the angle starts
/// at the position and is multiplied by `base^(−2/dims)` pair after pair.
pub fn rope_table(base: f32, dims: usize, positions: &[usize]) -> Vec<(f32, f32)> {
    let pairs = dims / 2;
    let scale = base.powf(-2.0 / dims as f32);
    let mut t = Vec::with_capacity(positions.len() * pairs);
    for &p in positions {
        let mut theta = p as f32;
        for _ in 0..pairs {
            t.push((theta.cos(), theta.sin()));
            theta *= scale;
        }
    }
    t
}

/// NEOX RoPE: element `i` of each head is rotated with element `i + head_dim/2`. `x` holds
/// whole rows (any number of heads of `hd` each); row `r` uses `table[r·hd/2..]`.
pub fn rope_neox(x: &mut [f32], hd: usize, table: &[(f32, f32)]) {
    let pairs = hd / 2;
    let rows = table.len() / pairs.max(1);
    if rows == 0 {
        return;
    }
    let width = x.len() / rows;
    for (xr, t) in x.chunks_exact_mut(width).zip(table.chunks_exact(pairs)) {
        for h in xr.chunks_exact_mut(hd) {
            let (a, b) = h.split_at_mut(pairs);
            for ((x0, x1), &(cos, sin)) in a.iter_mut().zip(b.iter_mut()).zip(t) {
                let (u, v) = (*x0, *x1);
                *x0 = u * cos - v * sin;
                *x1 = u * sin + v * cos;
            }
        }
    }
}

/// Head counts of an attention layer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

/// Causal attention of every packed row against its own sequence's cache, into `out`
/// (`rows × n_head × head_dim`). Item `j` owns rows `starts[j]..starts[j + 1]` (the last one
/// up to `positions.len()`) and its `(keys, values)` are `caches[j]` (f16 bits, `n_kv_head ×
/// head_dim` per position, already holding this step's); row `r` sees positions
/// `0..=positions[r]`. The query and the attention weights are rounded to f16 before their
/// products with the cache, scores are softmaxed with an f64 sum. One task per (row, head)
/// over the current rayon pool.
pub fn attention(
    caches: &[(&[u16], &[u16])],
    starts: &[usize],
    positions: &[usize],
    q: &[f32],
    heads: Heads,
    out: &mut [f32],
) {
    let Heads {
        n_head: nh,
        n_kv_head: kvh,
        head_dim: hd,
    } = heads;
    let group = nh / kvh.max(1);
    let kvd = kvh * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let task = |(idx, o): (usize, &mut [f32])| {
        let (row, head) = (idx / nh, idx % nh);
        let item = starts.partition_point(|&s| s <= row).saturating_sub(1);
        let (kc, vc) = caches[item];
        let n_ctx = positions[row] + 1;
        let kh = head / group;
        let qh: Vec<f32> = q[(row * nh + head) * hd..][..hd]
            .iter()
            .map(|v| f16_round(*v))
            .collect();
        let mut s: Vec<f32> = (0..n_ctx)
            .map(|p| dot_f16(&kc[p * kvd + kh * hd..][..hd], &qh) * scale)
            .collect();
        let max = s.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let mut sum = 0f64;
        for v in s.iter_mut() {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
        let inv = (1.0 / sum) as f32;
        o.fill(0.0);
        for (p, w) in s.iter().enumerate() {
            axpy_f16(o, f16_round(w * inv), &vc[p * kvd + kh * hd..][..hd]);
        }
    };
    if rayon::current_num_threads() > 1 && positions.len() * nh > 1 {
        out.par_chunks_mut(hd).enumerate().for_each(task);
    } else {
        out.chunks_mut(hd).enumerate().for_each(task);
    }
}

/// Append each item's rows of `k` and `v` (`n_kv_head × head_dim` per row) to its layer cache
/// (`kv[j]`, f16 bits), then run [`attention`] of the rows' queries against those caches.
pub fn append_and_attend(
    kv: &mut [(&mut Vec<u16>, &mut Vec<u16>)],
    starts: &[usize],
    positions: &[usize],
    (q, k, v): (&[f32], &[f32], &[f32]),
    heads: Heads,
    out: &mut [f32],
) {
    let kvd = heads.n_kv_head * heads.head_dim;
    for (j, (kc, vc)) in kv.iter_mut().enumerate() {
        let end = starts.get(j + 1).copied().unwrap_or(positions.len());
        push_f16(kc, &k[starts[j] * kvd..end * kvd]);
        push_f16(vc, &v[starts[j] * kvd..end * kvd]);
    }
    let caches: Vec<(&[u16], &[u16])> = kv.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    attention(&caches, starts, positions, q, heads, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sequences packed together: each row attends only to its own cache, up to its own
    /// position; with one cached position the output is that position's value.
    #[test]
    fn rows_attend_to_their_own_sequence() {
        let heads = Heads {
            n_head: 2,
            n_kv_head: 1,
            head_dim: 8,
        };
        let bits = |v: f32| half::f16::from_f32(v).to_bits();
        // Sequence 0: one position, value 1.0 everywhere; sequence 1: two positions, values
        // 2.0 then 4.0, equal keys (so the weights are ½, ½).
        let (k0, v0) = ([bits(0.5); 8], [bits(1.0); 8]);
        let k1 = [bits(0.5); 16];
        let v1: Vec<u16> = [vec![bits(2.0); 8], vec![bits(4.0); 8]].concat();
        let caches = [(&k0[..], &v0[..]), (&k1[..], &v1[..])];
        let q = vec![0.25f32; 2 * 2 * 8];
        let mut out = vec![0f32; q.len()];
        attention(&caches, &[0, 1], &[0, 1], &q, heads, &mut out);
        assert!(out[..16].iter().all(|v| *v == 1.0), "{out:?}");
        assert!(out[16..].iter().all(|v| *v == 3.0), "{out:?}");
    }

    #[test]
    fn rms_norm_scales_to_unit_mean_square() {
        let mut out = vec![0f32; 4];
        rms_norm(&[3.0, 4.0, 3.0, 4.0], &[1.0, 1.0, 2.0, 2.0], 0.0, &mut out);
        let r = 12.5f32.sqrt();
        let want = [3.0 / r, 4.0 / r, 6.0 / r, 8.0 / r];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
