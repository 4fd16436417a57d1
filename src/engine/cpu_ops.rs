//! The f32 parts of the CPU encoders: packing sequences end to end and mean pooling them,
//! residual + layer norm (two-pass, as `e5.c`), GELU (erf), and scaled dot-product attention
//! over packed sequences. Each has an AVX2/FMA version (picked
//! at run time, vectorised `exp`) and a portable one; the rows of one call may be spread over
//! the current rayon pool.

use rayon::prelude::*;

/// Whether the AVX2 + FMA paths may run (respects `STARPILLAR_SIMD=scalar`).
fn simd() -> bool {
    super::qmatmul::Isa::current() >= super::qmatmul::Isa::Avx2
}

/// Rows per parallel task, or `None` to stay on this thread.
fn parallel_rows(rows: usize, min_rows: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (threads > 1 && rows >= min_rows).then(|| rows.div_ceil(threads * 4).max(1))
}

/// Cephes `expf`, shared by the vectorised `exp`s (here and in `bert_gelu.rs`): ln 2 split in
/// two for the range reduction, and the polynomial's coefficients, highest degree first.
pub(crate) const EXP_LN2: (f32, f32) = (0.693_359_4, -2.121_944_4e-4);
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// Where each sequence of a packed batch starts and ends (rows `a..b` of the packed matrix),
/// and the total row count. A sequence longer than `max_positions` or an id at or beyond
/// `vocab_rows` is an error that names it.
pub fn pack_segments(
    seqs: &[&[u32]],
    max_positions: usize,
    vocab_rows: usize,
) -> Result<(Vec<(usize, usize)>, usize), String> {
    let mut segments = Vec::with_capacity(seqs.len());
    let mut total = 0;
    for s in seqs {
        if s.len() > max_positions {
            return Err(format!("sequence of {} tokens > {max_positions}", s.len()));
        }
        if let Some(bad) = s.iter().find(|&&id| id as usize >= vocab_rows) {
            return Err(format!("token id {bad} out of range"));
        }
        segments.push((total, total + s.len()));
        total += s.len();
    }
    Ok((segments, total))
}

/// The mean of each segment's rows of `x` (rows of width `h`).
pub fn mean_pool(x: &[f32], segments: &[(usize, usize)], h: usize) -> Vec<Vec<f32>> {
    segments
        .iter()
        .map(|&(a, b)| {
            let mut o = vec![0f32; h];
            for r in x[a * h..b * h].chunks_exact(h) {
                o.iter_mut().zip(r).for_each(|(o, v)| *o += v);
            }
            let inv = 1.0 / (b - a).max(1) as f32;
            o.iter_mut().for_each(|v| *v *= inv);
            o
        })
        .collect()
}

/// `x = LayerNorm(x + y)` per row of width `w.len()` (`y` absent: `LayerNorm(x)`), with mean
/// and variance in two passes.
pub fn add_layer_norm(x: &mut [f32], y: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
    let h = w.len();
    let rows = x.len() / h;
    let one = |xr: &mut [f32], yr: Option<&[f32]>| {
        #[cfg(target_arch = "x86_64")]
        if simd() {
            // SAFETY: AVX2 and FMA are present (checked by `simd`).
            return unsafe { layer_norm_avx2(xr, yr, w, b, eps) };
        }
        layer_norm_row(xr, yr, w, b, eps);
    };
    match (parallel_rows(rows, 32), y) {
        (Some(per), Some(y)) => x
            .par_chunks_mut(per * h)
            .zip(y.par_chunks(per * h))
            .for_each(|(xc, yc)| {
                for (xr, yr) in xc.chunks_exact_mut(h).zip(yc.chunks_exact(h)) {
                    one(xr, Some(yr));
                }
            }),
        (Some(per), None) => x.par_chunks_mut(per * h).for_each(|xc| {
            xc.chunks_exact_mut(h).for_each(|xr| one(xr, None));
        }),
        (None, Some(y)) => {
            for (xr, yr) in x.chunks_exact_mut(h).zip(y.chunks_exact(h)) {
                one(xr, Some(yr));
            }
        }
        (None, None) => x.chunks_exact_mut(h).for_each(|xr| one(xr, None)),
    }
}

#[inline(always)]
fn layer_norm_row(x: &mut [f32], y: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
    if let Some(y) = y {
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }
    let n = x.len() as f32;
    let mut acc = [0f32; 8];
    for c in x.chunks_exact(8) {
        acc.iter_mut().zip(c).for_each(|(a, v)| *a += v);
    }
    let mean = (acc.iter().sum::<f32>() + x.chunks_exact(8).remainder().iter().sum::<f32>()) / n;
    let mut acc = [0f32; 8];
    for c in x.chunks_exact(8) {
        acc.iter_mut()
            .zip(c)
            .for_each(|(a, v)| *a += (v - mean) * (v - mean));
    }
    let tail: f32 = x
        .chunks_exact(8)
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    let var = (acc.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in x.iter_mut().zip(w).zip(b) {
        *v = (*v - mean) * inv * w + b;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn layer_norm_avx2(x: &mut [f32], y: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
    layer_norm_row(x, y, w, b, eps);
}

/// `erf(z)/z` on `0 ≤ z ≤ 4` as a polynomial in `z²` (Chebyshev fit, |error| < 4e-11 in f64):
/// rounded to f32 it equals a correctly rounded `erff` except on ~1e-5 of inputs, so GELU
/// stays bit-identical to `e5.c`'s `erff` almost everywhere. Beyond 4, erf rounds to ±1.
const ERF_POLY: [f64; 23] = [
    1.1283791670954106,
    -0.3761263890247625,
    0.11283791662851293,
    -0.026866170275688554,
    0.005223976730944865,
    -0.0008548313708861758,
    0.00012055199931329607,
    -1.492470428234852e-05,
    1.6457127784540043e-06,
    -1.6345772021408736e-07,
    1.4744089434167853e-08,
    -1.2132947945354885e-09,
    9.105839543291782e-11,
    -6.192871690966061e-12,
    3.7670333096419476e-13,
    -2.0103979013301385e-14,
    9.186242054942823e-16,
    -3.49043791120895e-17,
    1.0644114595587249e-18,
    -2.48721298394258e-20,
    4.159495429234391e-22,
    -4.41531303363854e-24,
    2.2287045295925026e-26,
];

#[inline(always)]
fn erf_f32(z: f32) -> f32 {
    if z.abs() >= 4.0 {
        return 1f32.copysign(z);
    }
    let z = f64::from(z);
    let w = z * z;
    let p = ERF_POLY.iter().rev().fold(0.0, |acc, c| acc * w + c);
    (z * p) as f32
}

#[inline(always)]
fn gelu_scalar(x: f32) -> f32 {
    // e5.c: 0.5f * x * (1.f + erff(x * 0.70710678f)).
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x = GELU(x)` (the erf form BERT uses), element-wise.
pub fn gelu(x: &mut [f32]) {
    let one = |c: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if simd() {
            // SAFETY: AVX2 and FMA are present.
            return unsafe { avx2::gelu(c) };
        }
        c.iter_mut().for_each(|v| *v = gelu_scalar(*v));
    };
    match parallel_rows(x.len() / 1024, 8) {
        Some(per) => x.par_chunks_mut(per * 1024).for_each(one),
        None => one(x),
    }
}

/// Where the packed sequences of a batch lie, and the projections' layout.
pub struct AttentionShape<'a> {
    /// `[start, end)` token ranges, one per sequence.
    pub segments: &'a [(usize, usize)],
    pub heads: usize,
    pub head_dim: usize,
    /// Floats per token row of `qkv` (query at 0, key at `hidden`, value at `2·hidden`).
    pub qkv_stride: usize,
}

/// A pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each (segment, head) task writes only its own rows × head columns.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `ctx[t, head] = softmax(q·kᵀ/√d) v` within each segment; `ctx` rows are `heads·head_dim`
/// wide.
pub fn attention(qkv: &[f32], shape: &AttentionShape<'_>, ctx: &mut [f32]) {
    let hidden = shape.heads * shape.head_dim;
    let total: usize = shape.segments.iter().map(|(a, b)| b - a).sum();
    assert!(ctx.len() >= total * hidden && qkv.len() >= total * shape.qkv_stride);
    assert!(shape.segments.iter().all(|&(a, b)| a <= b && b <= total));
    let out = SharedOut(ctx.as_mut_ptr());
    let tasks = shape.segments.len() * shape.heads;
    let run = |task: usize, scratch: &mut Vec<f32>| {
        let (seg, head) = (task / shape.heads, task % shape.heads);
        let o = out;
        // SAFETY: the task writes rows `segment` × columns of `head` only; bounds asserted.
        unsafe { attend(qkv, shape, shape.segments[seg], head, o.0, hidden, scratch) };
    };
    let work: usize = shape.segments.iter().map(|(a, b)| (b - a) * (b - a)).sum();
    if rayon::current_num_threads() > 1 && tasks > 1 && work * shape.heads >= 1 << 14 {
        (0..tasks)
            .into_par_iter()
            .for_each_init(Vec::new, |scratch, task| run(task, scratch));
    } else {
        let mut scratch = Vec::new();
        (0..tasks).for_each(|task| run(task, &mut scratch));
    }
}

/// One head of one segment.
///
/// # Safety
/// `ctx` must hold every row of the segment, `hidden` floats each.
unsafe fn attend(
    qkv: &[f32],
    shape: &AttentionShape<'_>,
    (s0, s1): (usize, usize),
    head: usize,
    ctx: *mut f32,
    hidden: usize,
    scratch: &mut Vec<f32>,
) {
    let (len, hd, stride) = (s1 - s0, shape.head_dim, shape.qkv_stride);
    if len == 0 {
        return;
    }
    // Scratch: keys transposed [hd][len], values [len][hd], scores [2][len], two output rows.
    scratch.resize(2 * hd * len + 2 * len + 2 * hd, 0.0);
    let (kt, rest) = scratch.split_at_mut(hd * len);
    let (vs, rest) = rest.split_at_mut(hd * len);
    let (scores, rows) = rest.split_at_mut(2 * len);
    let qo = head * hd;
    let (ko, vo) = (hidden + head * hd, 2 * hidden + head * hd);
    for j in 0..len {
        let r = &qkv[(s0 + j) * stride..];
        for e in 0..hd {
            kt[e * len + j] = r[ko + e];
        }
        vs[j * hd..(j + 1) * hd].copy_from_slice(&r[vo..vo + hd]);
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let mut i = 0;
    while i < len {
        let q = &qkv[(s0 + i) * stride + qo..][..hd];
        let mut n = 1;
        #[cfg(target_arch = "x86_64")]
        let done = simd() && hd == 32 && {
            if i + 1 < len {
                let q1 = &qkv[(s0 + i + 1) * stride + qo..][..hd];
                // SAFETY: AVX2 and FMA are present; slices are sized above.
                unsafe { avx2::attend_pair32([q, q1], kt, vs, scores, rows, scale) };
                n = 2;
            } else {
                // SAFETY: as above.
                unsafe {
                    avx2::attend_row32(q, kt, vs, &mut scores[..len], &mut rows[..hd], scale)
                };
            }
            true
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        if !done {
            attend_row_scalar(q, kt, vs, &mut scores[..len], &mut rows[..hd], scale);
        }
        for k in 0..n {
            // SAFETY: row s0 + i + k of the segment, columns of this head (caller's contract).
            let dst =
                unsafe { std::slice::from_raw_parts_mut(ctx.add((s0 + i + k) * hidden + qo), hd) };
            dst.copy_from_slice(&rows[k * hd..(k + 1) * hd]);
        }
        i += n;
    }
}

fn attend_row_scalar(
    q: &[f32],
    kt: &[f32],
    vs: &[f32],
    scores: &mut [f32],
    row: &mut [f32],
    scale: f32,
) {
    let (len, hd) = (scores.len(), q.len());
    scores.fill(0.0);
    for (e, &qe) in q.iter().enumerate() {
        for (s, k) in scores.iter_mut().zip(&kt[e * len..(e + 1) * len]) {
            *s = qe.mul_add(*k, *s);
        }
    }
    let mut max = f32::NEG_INFINITY;
    for s in scores.iter_mut() {
        *s *= scale;
        max = max.max(*s);
    }
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    row.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        let p = p * inv;
        for (r, v) in row.iter_mut().zip(&vs[j * hd..(j + 1) * hd]) {
            *r = p.mul_add(*v, *r);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ERF_POLY, EXP_LN2, EXP_POLY, gelu_scalar};

    /// e^x for 8 lanes (Cephes `expf`: range reduction by ln 2, degree-6 polynomial; ~1 ulp).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.3),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2.0), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2.1), r);
        let mut p = _mm256_set1_ps(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let p = _mm256_fmadd_ps(
            p,
            _mm256_mul_ps(r, r),
            _mm256_add_ps(r, _mm256_set1_ps(1.0)),
        );
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(e))
    }

    /// erf of 4 lanes in f64 (see [`ERF_POLY`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn erf4(z: __m256d) -> __m256d {
        let w = _mm256_mul_pd(z, z);
        let mut p = _mm256_set1_pd(ERF_POLY[ERF_POLY.len() - 1]);
        for &c in ERF_POLY.iter().rev().skip(1) {
            p = _mm256_fmadd_pd(p, w, _mm256_set1_pd(c));
        }
        let r = _mm256_mul_pd(z, p);
        let sign = _mm256_and_pd(z, _mm256_set1_pd(-0.0));
        let big = _mm256_cmp_pd::<_CMP_GE_OQ>(
            _mm256_andnot_pd(_mm256_set1_pd(-0.0), z),
            _mm256_set1_pd(4.0),
        );
        _mm256_blendv_pd(r, _mm256_or_pd(_mm256_set1_pd(1.0), sign), big)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn gelu(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` holds exactly 8 floats.
            unsafe {
                let v = _mm256_loadu_ps(c.as_ptr());
                let z = _mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
                let lo = _mm256_cvtpd_ps(erf4(_mm256_cvtps_pd(_mm256_castps256_ps128(z))));
                let hi = _mm256_cvtpd_ps(erf4(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(z))));
                let erf = _mm256_set_m128(hi, lo);
                let one = _mm256_set1_ps(1.0);
                let half_x = _mm256_mul_ps(_mm256_set1_ps(0.5), v);
                _mm256_storeu_ps(
                    c.as_mut_ptr(),
                    _mm256_mul_ps(half_x, _mm256_add_ps(one, erf)),
                );
            }
        }
        for v in chunks.into_remainder() {
            *v = gelu_scalar(*v);
        }
    }

    /// Softmax in place in e5.c's order (exp of `s − max`, sequential sum); returns `1/sum`.
    #[target_feature(enable = "avx2,fma")]
    fn softmax_unnormalised(scores: &mut [f32]) -> f32 {
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mv = _mm256_set1_ps(max);
        let mut chunks = scores.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` holds 8 floats.
            unsafe {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
                _mm256_storeu_ps(c.as_mut_ptr(), e);
            }
        }
        for s in chunks.into_remainder() {
            *s = (*s - max).exp();
        }
        1.0 / scores.iter().sum::<f32>()
    }

    /// Two query rows at once (each key and value load feeds both): the same per-lane
    /// arithmetic as two [`attend_row32`] calls, so the results are identical.
    #[target_feature(enable = "avx2,fma")]
    pub fn attend_pair32(
        q: [&[f32]; 2],
        kt: &[f32],
        vs: &[f32],
        scores: &mut [f32],
        rows: &mut [f32],
        scale: f32,
    ) {
        let len = scores.len() / 2;
        assert!(q[0].len() == 32 && q[1].len() == 32 && rows.len() == 64);
        assert!(kt.len() >= 32 * len && vs.len() >= 32 * len);
        let sc = _mm256_set1_ps(scale);
        let (s0, s1) = scores.split_at_mut(len);
        // SAFETY: key indices < len, head dims < 32, sizes asserted.
        unsafe {
            let mut j = 0;
            while j + 16 <= len {
                let mut acc = [[_mm256_setzero_ps(); 2]; 2];
                for e in 0..32 {
                    let k = kt.as_ptr().add(e * len + j);
                    let (k0, k1) = (_mm256_loadu_ps(k), _mm256_loadu_ps(k.add(8)));
                    for (a, qr) in acc.iter_mut().zip(q) {
                        let qv = _mm256_set1_ps(qr[e]);
                        a[0] = _mm256_fmadd_ps(qv, k0, a[0]);
                        a[1] = _mm256_fmadd_ps(qv, k1, a[1]);
                    }
                }
                for (a, out) in acc.iter().zip([&mut *s0, &mut *s1]) {
                    _mm256_storeu_ps(out.as_mut_ptr().add(j), _mm256_mul_ps(a[0], sc));
                    _mm256_storeu_ps(out.as_mut_ptr().add(j + 8), _mm256_mul_ps(a[1], sc));
                }
                j += 16;
            }
            while j + 8 <= len {
                let mut acc = [_mm256_setzero_ps(); 2];
                for e in 0..32 {
                    let k = _mm256_loadu_ps(kt.as_ptr().add(e * len + j));
                    for (a, qr) in acc.iter_mut().zip(q) {
                        *a = _mm256_fmadd_ps(_mm256_set1_ps(qr[e]), k, *a);
                    }
                }
                for (a, out) in acc.iter().zip([&mut *s0, &mut *s1]) {
                    _mm256_storeu_ps(out.as_mut_ptr().add(j), _mm256_mul_ps(*a, sc));
                }
                j += 8;
            }
            for jj in j..len {
                for (qr, out) in q.iter().zip([&mut *s0, &mut *s1]) {
                    let mut s = 0.0f32;
                    for (e, &qe) in qr.iter().enumerate() {
                        s = qe.mul_add(kt[e * len + jj], s);
                    }
                    out[jj] = s * scale;
                }
            }
            let inv = [softmax_unnormalised(s0), softmax_unnormalised(s1)];
            let mut acc = [[_mm256_setzero_ps(); 4]; 2];
            for jj in 0..len {
                let v = vs.as_ptr().add(jj * 32);
                let vv = [0, 1, 2, 3].map(|u| _mm256_loadu_ps(v.add(8 * u)));
                let p = [s0[jj] * inv[0], s1[jj] * inv[1]];
                for (a, p) in acc.iter_mut().zip(p) {
                    let pv = _mm256_set1_ps(p);
                    for (au, vu) in a.iter_mut().zip(vv) {
                        *au = _mm256_fmadd_ps(pv, vu, *au);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                for (u, au) in a.iter().enumerate() {
                    _mm256_storeu_ps(rows.as_mut_ptr().add(32 * r + 8 * u), *au);
                }
            }
        }
    }

    /// One query row of a 32-wide head: scores over every key, softmax, weighted values.
    #[target_feature(enable = "avx2,fma")]
    pub fn attend_row32(
        q: &[f32],
        kt: &[f32],
        vs: &[f32],
        scores: &mut [f32],
        row: &mut [f32],
        scale: f32,
    ) {
        let len = scores.len();
        assert!(q.len() == 32 && kt.len() >= 32 * len && vs.len() >= 32 * len && row.len() == 32);
        let sc = _mm256_set1_ps(scale);
        // SAFETY: every index below is < len (keys) or < 32 (head dims), sizes asserted.
        unsafe {
            let mut j = 0;
            while j + 32 <= len {
                let mut acc = [_mm256_setzero_ps(); 4];
                for (e, &qe) in q.iter().enumerate() {
                    let qv = _mm256_set1_ps(qe);
                    let k = kt.as_ptr().add(e * len + j);
                    for (u, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k.add(8 * u)), *a);
                    }
                }
                for (u, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(scores.as_mut_ptr().add(j + 8 * u), _mm256_mul_ps(*a, sc));
                }
                j += 32;
            }
            while j + 8 <= len {
                let mut acc = _mm256_setzero_ps();
                for (e, &qe) in q.iter().enumerate() {
                    let k = kt.as_ptr().add(e * len + j);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(qe), _mm256_loadu_ps(k), acc);
                }
                _mm256_storeu_ps(scores.as_mut_ptr().add(j), _mm256_mul_ps(acc, sc));
                j += 8;
            }
            for jj in j..len {
                let mut s = 0.0f32;
                for (e, &qe) in q.iter().enumerate() {
                    s = qe.mul_add(kt[e * len + jj], s);
                }
                scores[jj] = s * scale;
            }
            let inv = softmax_unnormalised(scores);
            let mut acc = [_mm256_setzero_ps(); 4];
            for (jj, &p) in scores.iter().enumerate() {
                let pv = _mm256_set1_ps(p * inv);
                let v = vs.as_ptr().add(jj * 32);
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v.add(8 * u)), *a);
                }
            }
            for (u, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(row.as_mut_ptr().add(8 * u), *a);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn vector_exp_and_gelu_match_scalar() {
            if !(std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"))
            {
                return;
            }
            let xs: Vec<f32> = (0..4000).map(|i| (i as f32 - 3000.0) * 0.031).collect();
            for c in xs.chunks_exact(8) {
                let mut out = [0f32; 8];
                // SAFETY: AVX2 + FMA checked above.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr()))) };
                for (x, e) in c.iter().zip(out) {
                    let want = f64::from(*x).exp();
                    if want > 1e-37 {
                        assert!(
                            ((f64::from(e) - want) / want).abs() < 4e-7,
                            "exp({x}) = {e}"
                        );
                    }
                }
            }
            let mut g = xs.clone();
            // SAFETY: as above.
            unsafe { gelu(&mut g) };
            for (x, v) in xs.iter().zip(g) {
                assert_eq!(v, gelu_scalar(*x), "gelu({x})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_is_the_erf_form() {
        // Reference values of x·Φ(x).
        for (x, want) in [
            (-3.0f32, -0.004_049_7),
            (-1.0, -0.158_655_25),
            (0.5, 0.345_731_37),
        ] {
            let mut v = [x];
            gelu(&mut v);
            assert!((v[0] - want).abs() < 2e-6, "gelu({x}) = {}", v[0]);
        }
    }

    #[test]
    fn layer_norm_normalises_each_row() {
        let mut x: Vec<f32> = (0..2 * 40).map(|i| 1000.0 + (i % 7) as f32).collect();
        let y = vec![1.0f32; 80];
        let (w, b) = (vec![2.0f32; 40], vec![0.5f32; 40]);
        add_layer_norm(&mut x, Some(&y), &w, &b, 1e-12);
        for r in x.chunks(40) {
            let mean: f32 = r.iter().map(|v| (v - 0.5) / 2.0).sum::<f32>() / 40.0;
            let var: f32 = r.iter().map(|v| ((v - 0.5) / 2.0).powi(2)).sum::<f32>() / 40.0;
            assert!(
                mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn attention_matches_a_direct_softmax() {
        let (heads, hd) = (2, 32);
        let hidden = heads * hd;
        let segments = [(0usize, 3usize), (3, 40)];
        let tokens = 40;
        let qkv: Vec<f32> = (0..tokens * 3 * hidden)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let shape = AttentionShape {
            segments: &segments,
            heads,
            head_dim: hd,
            qkv_stride: 3 * hidden,
        };
        let mut ctx = vec![0f32; tokens * hidden];
        attention(&qkv, &shape, &mut ctx);
        for &(s0, s1) in &segments {
            for t in s0..s1 {
                for h in 0..heads {
                    let q = &qkv[t * 3 * hidden + h * hd..][..hd];
                    let sc: Vec<f64> = (s0..s1)
                        .map(|s| {
                            let k = &qkv[s * 3 * hidden + hidden + h * hd..][..hd];
                            q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = sc.iter().map(|s| (s - m).exp()).sum();
                    for e in 0..hd {
                        let want: f64 = (s0..s1)
                            .zip(&sc)
                            .map(|(s, sv)| {
                                (sv - m).exp() / z
                                    * f64::from(qkv[s * 3 * hidden + 2 * hidden + h * hd + e])
                            })
                            .sum();
                        let got = f64::from(ctx[t * hidden + h * hd + e]);
                        assert!((got - want).abs() < 1e-4, "t{t} h{h} e{e}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
