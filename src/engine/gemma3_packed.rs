//! `Q8_0` weights packed 16 rows at a time for AVX-512 VNNI, used by Gemma for its `Q8_0`
//! matrices — above all the 262k-row tied output projection, which dominates a decode step.
//!
//! Layout: for each group of 16 rows and each block of 32 columns, eight 64-byte steps; step
//! `s` holds columns `4s..4s+4` of the 16 rows (row-major, 4 bytes per row), stored as
//! unsigned `w + 128`; the 16 f16 scales of the group's block follow in a separate array. One
//! `vpdpbusd` of a step against 4 broadcast activation bytes then adds 4 products to each of
//! the 16 rows' lanes — no sign trick, no horizontal sums. The `+128` offset is removed by
//! starting each block's integer accumulator at `−128·Σx`; each block's exact integer sum is
//! then scaled by `d_w·d_x` and accumulated with one fused multiply-add per block. The weights
//! of a block are loaded once for up to [`TILE`] tokens, so a batched decode step reads the
//! matrix once. The portable path does the same arithmetic (`mul_add`) and gives the same bits.

use half::f16;

use crate::engine::qkernels::{BlockQ8, Blocks, QK, QWeight};

/// Rows per packed group.
pub const GROUP: usize = 16;
/// Tokens whose accumulators stay in registers while a weight block is reused.
const TILE: usize = 4;
/// Bytes of one group's block (16 rows × 32 columns).
const GROUP_BLOCK: usize = GROUP * QK;

/// A packed `Q8_0` matrix (`rows` a multiple of [`GROUP`]).
pub struct Packed {
    pub rows: usize,
    nb: usize,
    /// `(group, block)`-major, [`GROUP_BLOCK`] bytes each (see the module doc).
    qs: Vec<u8>,
    /// f16 scales, `(group, block)`-major, 16 each.
    d: Vec<u16>,
}

/// AVX-512 F/BW/VNNI present (and not turned off with `STARPILLAR_NO_AVX512`).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("f16c")
                && std::env::var_os("STARPILLAR_NO_AVX512").is_none_or(|v| v.is_empty() || v == "0")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Packed {
    /// Pack a `Q8_0` [`QWeight`]; `None` for other block types or a row count that is not a
    /// multiple of [`GROUP`].
    pub fn from_q8_0(w: &QWeight) -> Option<Self> {
        let Blocks::Q8_0(blocks) = &w.blocks else {
            return None;
        };
        if !w.rows.is_multiple_of(GROUP) || !w.cols.is_multiple_of(QK) {
            return None;
        }
        let nb = w.cols / QK;
        let groups = w.rows / GROUP;
        let mut qs = vec![0u8; groups * nb * GROUP_BLOCK];
        let mut d = vec![0u16; groups * nb * GROUP];
        for g in 0..groups {
            for b in 0..nb {
                let gb = g * nb + b;
                let out = &mut qs[gb * GROUP_BLOCK..(gb + 1) * GROUP_BLOCK];
                for lane in 0..GROUP {
                    let blk = &blocks[(g * GROUP + lane) * nb + b];
                    d[gb * GROUP + lane] = f16::from_f32(blk.d).to_bits();
                    for (c, &q) in blk.qs.iter().enumerate() {
                        out[(c / 4) * 64 + lane * 4 + c % 4] = (q as i16 + 128) as u8;
                    }
                }
            }
        }
        Some(Self {
            rows: w.rows,
            nb,
            qs,
            d,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.qs.len() + 2 * self.d.len()
    }

    /// Row `r` dequantised into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, lane) = (r / GROUP, r % GROUP);
        for (b, o) in out.chunks_exact_mut(QK).enumerate().take(self.nb) {
            let gb = g * self.nb + b;
            let d = f16::from_bits(self.d[gb * GROUP + lane]).to_f32();
            let blk = &self.qs[gb * GROUP_BLOCK..];
            for (c, v) in o.iter_mut().enumerate() {
                let q = blk[(c / 4) * 64 + lane * 4 + c % 4] as i32 - 128;
                *v = q as f32 * d;
            }
        }
    }

    /// Groups `g0..g1` (rows `16·g0..16·g1`) times `n` tokens of activations `x` (`nb` blocks
    /// each; `sums[t·nb + b]` = Σ of block `b`'s quantised values): `out[t·stride + r − 16·g0]`.
    pub fn matmul_groups(
        &self,
        (g0, g1): (usize, usize),
        x: &[BlockQ8],
        sums: &[i32],
        n: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = self.nb;
        let g1 = g1.min(self.rows / GROUP);
        if g0 >= g1
            || x.len() < n * nb
            || sums.len() < n * nb
            || n == 0
            || stride < (g1 - g0) * GROUP
            || out.len() < (n - 1) * stride + (g1 - g0) * GROUP
        {
            return;
        }
        let mut t0 = 0;
        while t0 < n {
            let t1 = (t0 + TILE).min(n);
            let o = &mut out[t0 * stride..];
            #[cfg(target_arch = "x86_64")]
            if available() {
                // SAFETY: the CPU supports AVX-512 F/BW/VNNI and F16C (checked); the sizes
                // were checked above, so every pointer the kernel forms is in bounds.
                unsafe {
                    avx512::tile(
                        self,
                        (g0, g1),
                        &x[t0 * nb..],
                        &sums[t0 * nb..],
                        t1 - t0,
                        o,
                        stride,
                    )
                };
                t0 = t1;
                continue;
            }
            self.tile_scalar(
                (g0, g1),
                &x[t0 * nb..],
                &sums[t0 * nb..],
                t1 - t0,
                o,
                stride,
            );
            t0 = t1;
        }
    }

    /// The portable kernel (same arithmetic, same bits).
    fn tile_scalar(
        &self,
        (g0, g1): (usize, usize),
        x: &[BlockQ8],
        sums: &[i32],
        n: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = self.nb;
        for g in g0..g1 {
            for t in 0..n {
                let mut acc = [0f32; GROUP];
                for b in 0..nb {
                    let gb = g * nb + b;
                    let blk = &self.qs[gb * GROUP_BLOCK..(gb + 1) * GROUP_BLOCK];
                    let a = &x[t * nb + b];
                    for (lane, acc) in acc.iter_mut().enumerate() {
                        let mut isum = -128 * sums[t * nb + b];
                        for (c, &q) in a.qs.iter().enumerate() {
                            isum += blk[(c / 4) * 64 + lane * 4 + c % 4] as i32 * q as i32;
                        }
                        let dw = f16::from_bits(self.d[gb * GROUP + lane]).to_f32();
                        *acc = (isum as f32).mul_add(dw * a.d, *acc);
                    }
                }
                let base = t * stride + (g - g0) * GROUP;
                out[base..base + GROUP].copy_from_slice(&acc);
            }
        }
    }
}

/// A weight matrix as Gemma's forward holds it: packed when it is `Q8_0` and the CPU has the
/// packed kernel, else as [`QWeight`] (`qkernels`' own kernels).
pub enum Mat {
    Packed(Packed),
    Plain(QWeight),
}

impl Mat {
    /// Pack `w` where possible.
    pub fn new(w: QWeight) -> Self {
        if available()
            && let Some(p) = Packed::from_q8_0(&w)
        {
            return Self::Packed(p);
        }
        Self::Plain(w)
    }

    pub fn rows(&self) -> usize {
        match self {
            Self::Packed(p) => p.rows,
            Self::Plain(w) => w.rows,
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::Packed(p) => p.bytes(),
            Self::Plain(w) => w.bytes(),
        }
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match self {
            Self::Packed(p) => p.dequantize_row(r, out),
            Self::Plain(w) => w.dequantize_row(r, out),
        }
    }
}

/// Σ of each activation block's quantised values (`x.len()` entries).
pub fn block_sums(x: &[BlockQ8]) -> Vec<i32> {
    x.iter()
        .map(|b| b.qs.iter().map(|&q| q as i32).sum())
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BlockQ8, GROUP, GROUP_BLOCK, Packed, TILE};

    /// Groups `g0..g1` × `n ≤ TILE` tokens.
    ///
    /// # Safety
    /// The CPU supports AVX-512 F/BW/VNNI and F16C; `x` and `sums` hold `n · nb` entries,
    /// `out` holds `(n − 1)·stride + (g1 − g0)·16` values, `g1 ≤ rows / 16`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
    pub unsafe fn tile(
        w: &Packed,
        (g0, g1): (usize, usize),
        x: &[BlockQ8],
        sums: &[i32],
        n: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = w.nb;
        for g in g0..g1 {
            let mut acc = [_mm512_setzero_ps(); TILE];
            for b in 0..nb {
                let gb = g * nb + b;
                // SAFETY: `gb < groups · nb`, so the block's 512 bytes and 16 scales exist.
                let (ws, ds) = unsafe {
                    let p = w.qs.as_ptr().add(gb * GROUP_BLOCK);
                    let ws: [__m512i; 8] =
                        std::array::from_fn(|s| _mm512_loadu_si512(p.add(s * 64) as *const _));
                    let d = _mm256_loadu_si256(w.d.as_ptr().add(gb * GROUP) as *const __m256i);
                    (ws, _mm512_cvtph_ps(d))
                };
                for (t, acc) in acc.iter_mut().enumerate().take(n) {
                    let a = &x[t * nb + b];
                    let xi: [i32; 8] = std::array::from_fn(|s| {
                        i32::from_le_bytes([
                            a.qs[4 * s] as u8,
                            a.qs[4 * s + 1] as u8,
                            a.qs[4 * s + 2] as u8,
                            a.qs[4 * s + 3] as u8,
                        ])
                    });
                    let mut isum = _mm512_set1_epi32(-128 * sums[t * nb + b]);
                    for s in 0..8 {
                        isum = _mm512_dpbusd_epi32(isum, ws[s], _mm512_set1_epi32(xi[s]));
                    }
                    let scale = _mm512_mul_ps(ds, _mm512_set1_ps(a.d));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, *acc);
                }
            }
            for (t, acc) in acc.iter().enumerate().take(n) {
                let base = t * stride + (g - g0) * GROUP;
                // SAFETY: `base + 16 ≤ out.len()` by the caller's size guarantee.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(base), *acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::qkernels::quantize_row;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Packed rows dequantise to the source rows; the SIMD kernel and the portable one give
    /// the same bits and agree with plain dot products; a token's outputs do not depend on
    /// the other tokens of its tile.
    #[test]
    fn packed_q8_0_matches_plain_dot_products() {
        let (rows, cols, n, mut seed) = (48, 96, 5, 2026u64);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let q = QWeight::quantize_q8_0(&w, rows, cols).expect("quantises");
        let p = Packed::from_q8_0(&q).expect("packs");
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for r in [0, 17, rows - 1] {
            q.dequantize_row(r, &mut a);
            p.dequantize_row(r, &mut b);
            assert_eq!(a, b, "row {r}");
        }
        let xs: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed) * 3.0).collect();
        let mut x = vec![BlockQ8::default(); n * cols / QK];
        quantize_row(&xs, &mut x);
        let sums = block_sums(&x);
        let mut fast = vec![0f32; n * rows];
        p.matmul_groups((0, rows / GROUP), &x, &sums, n, &mut fast, rows);
        let mut slow = vec![0f32; n * rows];
        let nb = cols / QK;
        for t in 0..n {
            let o = &mut slow[t * rows..(t + 1) * rows];
            p.tile_scalar((0, rows / GROUP), &x[t * nb..], &sums[t * nb..], 1, o, rows);
        }
        assert_eq!(fast, slow, "seed 2026");
        for t in 0..n {
            for r in 0..rows {
                let want = q.dot(r, &x[t * nb..(t + 1) * nb]);
                let got = fast[t * rows + r];
                assert!((want - got).abs() <= 1e-4 * want.abs().max(1.0), "{t} {r}");
            }
        }
    }
}
