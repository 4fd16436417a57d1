//! 8-bit and 5-bit weights packed 16 rows at a time for AVX-512 VNNI, used by Gemma for its
//! `Q8_0` and `Q5_0` matrices — above all the 262k-row tied output projection, which dominates
//! a decode step — read straight from the GGUF bytes at load.
//!
//! Layout: for each group of 16 rows and each block of 32 columns, eight 64-byte steps; step
//! `s` holds columns `4s..4s+4` of the 16 rows (row-major, 4 bytes per row), each value stored
//! unsigned with an offset: [`Kind::Q8`] keeps `w + 128` in a byte (512 bytes a block);
//! [`Kind::Q5`] keeps the 5-bit `w + 16` as nibbles (steps `k` and `k + 4` share the bytes of
//! chunk `k`, low and high nibble) plus a 64-byte plane of fifth bits (one `u64` per step, bit
//! `i` for byte `i`): 320 bytes a block, what `Q5_0` takes in the file. The 16 f16 scales of a
//! group's block follow in a separate array. One `vpdpbusd` of a step against 4 broadcast
//! activation bytes then adds 4 products to each of the 16 rows' lanes — no sign trick, no
//! horizontal sums. The offset is removed by starting each block's integer accumulator at
//! `−offset·Σx`, so each block's integer sum is exactly `Σ w·x`; it is then scaled by
//! `d_w·d_x` and accumulated with one fused multiply-add per block (the whole-block numerics
//! every kernel shares, whatever the storage). The weights of a block are loaded once for up to
//! [`TILE`] tokens, so a batched decode step reads the matrix once. Buffers ask for huge pages
//! (`hugemem`). The portable path does the same arithmetic (`mul_add`) and gives the same bits.

use half::f16;
use rayon::prelude::*;

use crate::engine::hugemem;
use crate::engine::qkernels::{BlockQ8, Blocks, QK, QWeight};

/// Rows per packed group.
pub const GROUP: usize = 16;
/// Tokens whose accumulators stay in registers while a weight block is reused.
const TILE: usize = 4;
/// Bytes of one step (4 columns × 16 rows).
const STEP: usize = 64;

/// How a packed matrix stores its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Signed 8-bit values (`Q8_0`), stored `w + 128`.
    Q8,
    /// Values in `−16..16` (`Q5_0`), stored `w + 16` as a nibble and a fifth bit.
    Q5,
    /// `Q4_1`: nibbles `0..16` as they are, with f32 scales `d` and mins `m` per row and block
    /// (`Q4_K`'s widened sub-block scales do not fit an f16).
    Q4,
}

impl Kind {
    /// Bytes of one group's block (16 rows × 32 columns).
    const fn block_bytes(self) -> usize {
        match self {
            Self::Q8 => 8 * STEP,
            Self::Q5 => 4 * STEP + 8 * 8,
            Self::Q4 => 4 * STEP,
        }
    }

    const fn offset(self) -> i32 {
        match self {
            Self::Q8 => 128,
            Self::Q5 => 16,
            Self::Q4 => 0,
        }
    }
}

/// A packed matrix (`rows` a multiple of [`GROUP`]).
pub struct Packed {
    pub rows: usize,
    pub kind: Kind,
    nb: usize,
    /// `(group, block)`-major, `kind.block_bytes()` each (see the module doc).
    qs: Vec<u8>,
    /// f16 scales, `(group, block)`-major, 16 each ([`Kind::Q8`], [`Kind::Q5`]).
    d: Vec<u16>,
    /// [`Kind::Q4`]: f32 scales then mins, `(group, block)`-major, 16 + 16 each.
    dm: Vec<f32>,
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

/// Byte of step `s` holding column `c` of row `lane` (within its step).
const fn byte_of(c: usize, lane: usize) -> usize {
    lane * 4 + c % 4
}

impl Packed {
    /// Pack `rows × cols` values given block by block: `src(r · cols/32 + b)` is the f16 scale
    /// bits and the 32 values of row `r`'s block `b` (within `−16..16` for [`Kind::Q5`]).
    /// `None` when `rows` is not a multiple of [`GROUP`], `cols` not of 32, or a value is out
    /// of range.
    pub fn build(
        kind: Kind,
        rows: usize,
        cols: usize,
        src: impl Fn(usize) -> (u16, [i8; QK]) + Sync,
    ) -> Option<Self> {
        if rows == 0 || !rows.is_multiple_of(GROUP) || cols == 0 || !cols.is_multiple_of(QK) {
            return None;
        }
        let (nb, bb, off) = (cols / QK, kind.block_bytes(), kind.offset() as u8);
        let groups = rows / GROUP;
        let mut qs = hugemem::vec_filled(groups * nb * bb, 0u8);
        let mut d = hugemem::vec_filled(groups * nb * GROUP, 0u16);
        let ok = qs
            .par_chunks_mut(nb * bb)
            .zip(d.par_chunks_mut(nb * GROUP))
            .enumerate()
            .all(|(g, (qg, dg))| {
                let blocks = qg.chunks_exact_mut(bb).zip(dg.chunks_exact_mut(GROUP));
                for (b, (out, ds)) in blocks.enumerate() {
                    let mut any = 0u8;
                    for (lane, dl) in ds.iter_mut().enumerate() {
                        let (scale, q) = src((g * GROUP + lane) * nb + b);
                        *dl = scale;
                        let u: [u8; QK] = std::array::from_fn(|c| (q[c] as u8).wrapping_add(off));
                        any |= u.iter().fold(0, |a, v| a | v);
                        put_block(kind, out, lane, &u);
                    }
                    if kind == Kind::Q5 && any >= 32 {
                        return false;
                    }
                }
                true
            });
        ok.then_some(Self {
            rows,
            kind,
            nb,
            qs,
            d,
            dm: Vec::new(),
        })
    }

    /// Pack a `Q4_1` [`QWeight`] as [`Kind::Q4`]; `None` for other block types or a row count
    /// that is not a multiple of [`GROUP`].
    pub fn from_q4_1(w: &QWeight) -> Option<Self> {
        let Blocks::Q4_1(blocks) = &w.blocks else {
            return None;
        };
        let (rows, cols) = (w.rows, w.cols);
        if rows == 0 || !rows.is_multiple_of(GROUP) || cols == 0 || !cols.is_multiple_of(QK) {
            return None;
        }
        let (nb, bb) = (cols / QK, Kind::Q4.block_bytes());
        let groups = rows / GROUP;
        let mut qs = hugemem::vec_filled(groups * nb * bb, 0u8);
        let mut dm = vec![0f32; groups * nb * 2 * GROUP];
        qs.par_chunks_mut(nb * bb)
            .zip(dm.par_chunks_mut(nb * 2 * GROUP))
            .enumerate()
            .for_each(|(g, (qg, dg))| {
                let blocks_of = qg.chunks_exact_mut(bb).zip(dg.chunks_exact_mut(2 * GROUP));
                for (b, (out, ds)) in blocks_of.enumerate() {
                    for lane in 0..GROUP {
                        let blk = &blocks[(g * GROUP + lane) * nb + b];
                        (ds[lane], ds[GROUP + lane]) = (blk.d, blk.m);
                        let u: [u8; QK] = std::array::from_fn(|c| {
                            (blk.qs[c % (QK / 2)] >> (4 * (c / (QK / 2)))) & 0x0F
                        });
                        put_block(Kind::Q4, out, lane, &u);
                    }
                }
            });
        Some(Self {
            rows,
            kind: Kind::Q4,
            nb,
            qs,
            d: Vec::new(),
            dm,
        })
    }

    /// Pack a `Q8_0` [`QWeight`]; `None` for other block types or a row count that is not a
    /// multiple of [`GROUP`].
    pub fn from_q8_0(w: &QWeight) -> Option<Self> {
        let Blocks::Q8_0(blocks) = &w.blocks else {
            return None;
        };
        Self::build(Kind::Q8, w.rows, w.cols, |i| {
            (f16::from_f32(blocks[i].d).to_bits(), blocks[i].qs)
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.qs.len() + 2 * self.d.len() + 4 * self.dm.len()
    }

    /// Scale (and min, 0 but for [`Kind::Q4`]) of row `lane` in the block `gb`.
    fn scale(&self, gb: usize, lane: usize) -> (f32, f32) {
        match self.kind {
            Kind::Q4 => (
                self.dm[gb * 2 * GROUP + lane],
                self.dm[gb * 2 * GROUP + GROUP + lane],
            ),
            _ => (f16::from_bits(self.d[gb * GROUP + lane]).to_f32(), 0.0),
        }
    }

    /// The stored (offset) value of column `c` of row `lane` in the block at `blk`.
    fn stored(&self, blk: &[u8], c: usize, lane: usize) -> i32 {
        let (s, i) = (c / 4, byte_of(c, lane));
        match self.kind {
            Kind::Q8 => blk[s * STEP + i] as i32,
            Kind::Q5 | Kind::Q4 => {
                let nib = (blk[(s % 4) * STEP + i] >> (4 * (s / 4))) & 0x0F;
                if self.kind == Kind::Q4 {
                    return nib as i32;
                }
                let hi = blk[4 * STEP + 8 * s + i / 8] >> (i % 8) & 1;
                (nib | hi << 4) as i32
            }
        }
    }

    /// Row `r` dequantised into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, lane) = (r / GROUP, r % GROUP);
        let (bb, off) = (self.kind.block_bytes(), self.kind.offset());
        for (b, o) in out.chunks_exact_mut(QK).enumerate().take(self.nb) {
            let gb = g * self.nb + b;
            let (d, m) = self.scale(gb, lane);
            let blk = &self.qs[gb * bb..(gb + 1) * bb];
            for (c, v) in o.iter_mut().enumerate() {
                let q = (self.stored(blk, c, lane) - off) as f32;
                *v = if self.kind == Kind::Q4 {
                    q * d + m
                } else {
                    q * d
                };
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
            let (xs, ss) = (&x[t0 * nb..], &sums[t0 * nb..]);
            #[cfg(target_arch = "x86_64")]
            if available() {
                // SAFETY: the CPU supports AVX-512 F/BW/VNNI and F16C (checked); the sizes
                // were checked above, so every pointer the kernel forms is in bounds.
                unsafe {
                    match self.kind {
                        Kind::Q8 => avx512::tile::<0>(self, (g0, g1), xs, ss, t1 - t0, o, stride),
                        Kind::Q5 => avx512::tile::<1>(self, (g0, g1), xs, ss, t1 - t0, o, stride),
                        Kind::Q4 => avx512::tile::<2>(self, (g0, g1), xs, ss, t1 - t0, o, stride),
                    }
                };
                t0 = t1;
                continue;
            }
            self.tile_scalar((g0, g1), xs, ss, t1 - t0, o, stride);
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
        let (nb, bb, off) = (self.nb, self.kind.block_bytes(), self.kind.offset());
        for g in g0..g1 {
            for t in 0..n {
                let (mut acc, mut summ) = ([0f32; GROUP], [0f32; GROUP]);
                for b in 0..nb {
                    let gb = g * nb + b;
                    let blk = &self.qs[gb * bb..(gb + 1) * bb];
                    let a = &x[t * nb + b];
                    for lane in 0..GROUP {
                        let mut isum = -off * sums[t * nb + b];
                        for (c, &q) in a.qs.iter().enumerate() {
                            isum += self.stored(blk, c, lane) * q as i32;
                        }
                        let (dw, mw) = self.scale(gb, lane);
                        acc[lane] = (isum as f32).mul_add(dw * a.d, acc[lane]);
                        if self.kind == Kind::Q4 {
                            summ[lane] = mw.mul_add(a.s, summ[lane]);
                        }
                    }
                }
                let base = t * stride + (g - g0) * GROUP;
                for (o, (a, m)) in out[base..base + GROUP]
                    .iter_mut()
                    .zip(acc.iter().zip(&summ))
                {
                    *o = if self.kind == Kind::Q4 { a + m } else { *a };
                }
            }
        }
    }
}

/// Store row `lane`'s 32 offset values `u` (column order) into the (zeroed) block `out`.
fn put_block(kind: Kind, out: &mut [u8], lane: usize, u: &[u8; QK]) {
    let at = byte_of(0, lane);
    match kind {
        Kind::Q8 => {
            for (s, v) in u.chunks_exact(4).enumerate() {
                out[s * STEP + at..s * STEP + at + 4].copy_from_slice(v);
            }
        }
        Kind::Q5 | Kind::Q4 => {
            for k in 0..4 {
                for j in 0..4 {
                    out[k * STEP + at + j] =
                        (u[4 * k + j] & 0x0F) | (u[4 * (k + 4) + j] & 0x0F) << 4;
                }
            }
            if kind == Kind::Q4 {
                return;
            }
            // Bit `i = 4·lane + j` of step `s`'s plane: byte `lane / 2`, bits `4·(lane % 2)..`.
            for (s, v) in u.chunks_exact(4).enumerate() {
                let bits = v
                    .iter()
                    .enumerate()
                    .fold(0u8, |a, (j, x)| a | (x >> 4 & 1) << j);
                out[4 * STEP + 8 * s + lane / 2] |= bits << (4 * (lane % 2));
            }
        }
    }
}

/// A weight matrix as Gemma's forward holds it: packed when it is `Q8_0`/`Q5_0` and the CPU
/// has the packed kernel, else as [`QWeight`] (`qkernels`' own kernels).
pub enum Mat {
    Packed(Packed),
    Plain(QWeight),
}

impl Mat {
    /// Pack `w` where possible.
    pub fn new(w: QWeight) -> Self {
        if available()
            && let Some(p) = Packed::from_q8_0(&w).or_else(|| Packed::from_q4_1(&w))
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

    use super::{BlockQ8, GROUP, Kind, Packed, STEP, TILE};

    /// The 8 steps of the block at `p`, as unsigned bytes ready for `vpdpbusd`; `K`: 0 for
    /// [`Kind::Q8`], 1 for [`Kind::Q5`], 2 for [`Kind::Q4`].
    ///
    /// # Safety
    /// AVX-512 F/BW; `p` points at a whole block of the kind `K` says.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn steps<const K: u8>(p: *const u8) -> [__m512i; 8] {
        // SAFETY: the caller's guarantee: the block's bytes are readable.
        unsafe {
            if K == 0 {
                return std::array::from_fn(|s| _mm512_loadu_si512(p.add(s * STEP) as *const _));
            }
            let low = _mm512_set1_epi8(0x0F);
            let five = _mm512_set1_epi8(0x10);
            let nib: [__m512i; 4] =
                std::array::from_fn(|k| _mm512_loadu_si512(p.add(k * STEP) as *const _));
            std::array::from_fn(|s| {
                let v = if s < 4 {
                    _mm512_and_si512(nib[s], low)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(nib[s - 4]), low)
                };
                if K == 2 {
                    return v;
                }
                let bits = (p.add(4 * STEP + 8 * s) as *const u64).read_unaligned();
                _mm512_mask_add_epi8(v, _cvtu64_mask64(bits), v, five)
            })
        }
    }

    /// Groups `g0..g1` × `n ≤ TILE` tokens.
    ///
    /// # Safety
    /// The CPU supports AVX-512 F/BW/VNNI and F16C; `x` and `sums` hold `n · nb` entries,
    /// `out` holds `(n − 1)·stride + (g1 − g0)·16` values, `g1 ≤ rows / 16`, and `w.kind` is
    /// the one `K` stands for (see [`steps`]).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
    pub unsafe fn tile<const K: u8>(
        w: &Packed,
        (g0, g1): (usize, usize),
        x: &[BlockQ8],
        sums: &[i32],
        n: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = w.nb;
        let kind = [Kind::Q8, Kind::Q5, Kind::Q4][K as usize];
        let bb = kind.block_bytes();
        let off = kind.offset();
        for g in g0..g1 {
            let mut acc = [_mm512_setzero_ps(); TILE];
            let mut summ = [_mm512_setzero_ps(); TILE];
            for b in 0..nb {
                let gb = g * nb + b;
                // SAFETY: `gb < groups · nb`, so the block's bytes and 16 scales (and, for
                // `Q4`, 16 mins) exist.
                let (ws, ds, ms) = unsafe {
                    let ws = steps::<K>(w.qs.as_ptr().add(gb * bb));
                    if K == 2 {
                        let p = w.dm.as_ptr().add(gb * 2 * GROUP);
                        (ws, _mm512_loadu_ps(p), _mm512_loadu_ps(p.add(GROUP)))
                    } else {
                        let d = _mm256_loadu_si256(w.d.as_ptr().add(gb * GROUP) as *const __m256i);
                        (ws, _mm512_cvtph_ps(d), _mm512_setzero_ps())
                    }
                };
                for (t, (acc, summ)) in acc.iter_mut().zip(summ.iter_mut()).enumerate().take(n) {
                    let a = &x[t * nb + b];
                    let xi: [i32; 8] = std::array::from_fn(|s| {
                        i32::from_le_bytes([
                            a.qs[4 * s] as u8,
                            a.qs[4 * s + 1] as u8,
                            a.qs[4 * s + 2] as u8,
                            a.qs[4 * s + 3] as u8,
                        ])
                    });
                    let mut isum = _mm512_set1_epi32(-off * sums[t * nb + b]);
                    for s in 0..8 {
                        isum = _mm512_dpbusd_epi32(isum, ws[s], _mm512_set1_epi32(xi[s]));
                    }
                    let scale = _mm512_mul_ps(ds, _mm512_set1_ps(a.d));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, *acc);
                    if K == 2 {
                        *summ = _mm512_fmadd_ps(ms, _mm512_set1_ps(a.s), *summ);
                    }
                }
            }
            for (t, (acc, summ)) in acc.iter().zip(&summ).enumerate().take(n) {
                let base = t * stride + (g - g0) * GROUP;
                let v = if K == 2 {
                    _mm512_add_ps(*acc, *summ)
                } else {
                    *acc
                };
                // SAFETY: `base + 16 ≤ out.len()` by the caller's size guarantee.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(base), v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::qkernels::{BlockQ4_1, quantize_row};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `p` against `q` (the same values as plain `Q8_0` blocks): rows dequantise alike; the
    /// SIMD kernel and the portable one give the same bits and agree with plain dot products;
    /// a token's outputs do not depend on the other tokens of its tile.
    fn check(p: &Packed, q: &QWeight, n: usize, seed: &mut u64) {
        let (rows, cols) = (q.rows, q.cols);
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for r in [0, 17, rows - 1] {
            q.dequantize_row(r, &mut a);
            p.dequantize_row(r, &mut b);
            assert_eq!(a, b, "row {r}");
        }
        let xs: Vec<f32> = (0..n * cols).map(|_| lcg(seed) * 3.0).collect();
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
        assert_eq!(fast, slow, "{:?}", p.kind);
        for t in 0..n {
            for r in 0..rows {
                let want = q.dot(r, &x[t * nb..(t + 1) * nb]);
                let got = fast[t * rows + r];
                assert!((want - got).abs() <= 1e-4 * want.abs().max(1.0), "{t} {r}");
            }
        }
    }

    #[test]
    fn packed_q8_0_matches_plain_dot_products() {
        let (rows, cols, n, mut seed) = (48, 96, 5, 2026u64);
        println!("seed {seed}");
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let q = QWeight::quantize_q8_0(&w, rows, cols).expect("quantises");
        let p = Packed::from_q8_0(&q).expect("packs");
        check(&p, &q, n, &mut seed);
    }

    /// `Q4_1` rows packed as [`Kind::Q4`]: the SIMD and portable kernels give the bits of the
    /// whole-block reference computed here from the plain blocks (`acc = fma(isum, d_w·d_x,
    /// acc)`, `summ = fma(m_w, s_x, summ)`, `acc + summ`), and rows dequantise alike.
    #[test]
    fn packed_q4_1_gives_the_whole_block_bits() {
        let (rows, cols, n, mut seed) = (32, 160, 5, 4141u64);
        println!("seed {seed}");
        let nb = cols / QK;
        let blocks: Vec<BlockQ4_1> = (0..rows * nb)
            .map(|_| BlockQ4_1 {
                d: 0.003 * (1.0 + lcg(&mut seed)) * 37.0,
                m: -0.05 * lcg(&mut seed).abs(),
                qs: std::array::from_fn(|_| (lcg(&mut seed).abs() * 255.0) as u8),
            })
            .collect();
        let q = QWeight {
            rows,
            cols,
            blocks: Blocks::Q4_1(blocks.clone()),
        };
        let p = Packed::from_q4_1(&q).expect("packs");
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for r in [0, 5, rows - 1] {
            q.dequantize_row(r, &mut a);
            p.dequantize_row(r, &mut b);
            assert_eq!(a, b, "row {r}");
        }
        let xs: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed) * 2.0).collect();
        let mut x = vec![BlockQ8::default(); n * nb];
        quantize_row(&xs, &mut x);
        let sums = block_sums(&x);
        let mut want = vec![0f32; n * rows];
        for t in 0..n {
            for r in 0..rows {
                let (mut acc, mut summ) = (0f32, 0f32);
                for bi in 0..nb {
                    let (w, a) = (&blocks[r * nb + bi], &x[t * nb + bi]);
                    let isum: i32 = (0..QK)
                        .map(|e| ((w.qs[e % 16] >> (4 * (e / 16))) & 15) as i32 * a.qs[e] as i32)
                        .sum();
                    acc = (isum as f32).mul_add(w.d * a.d, acc);
                    summ = w.m.mul_add(a.s, summ);
                }
                want[t * rows + r] = acc + summ;
            }
        }
        let mut fast = vec![0f32; n * rows];
        p.matmul_groups((0, rows / GROUP), &x, &sums, n, &mut fast, rows);
        assert_eq!(fast, want, "seed 4141");
        let mut slow = vec![0f32; n * rows];
        for t in 0..n {
            let o = &mut slow[t * rows..(t + 1) * rows];
            p.tile_scalar((0, rows / GROUP), &x[t * nb..], &sums[t * nb..], 1, o, rows);
        }
        assert_eq!(slow, want, "seed 4141");
    }

    /// 5-bit values (every one of `−16..16` present) packed as [`Kind::Q5`] give the same bits
    /// as the same values packed as [`Kind::Q8`].
    #[test]
    fn packed_q5_equals_packed_q8_on_the_same_values() {
        let (rows, cols, n, mut seed) = (32, 128, 6, 77u64);
        println!("seed {seed}");
        let nb = cols / QK;
        let blocks: Vec<(u16, [i8; QK])> = (0..rows * nb)
            .map(|i| {
                let d = f16::from_f32(0.01 + 0.02 * lcg(&mut seed).abs()).to_bits();
                let q = std::array::from_fn(|e| {
                    if i == 0 {
                        e as i8 - 16
                    } else {
                        (lcg(&mut seed) * 16.0).floor().clamp(-16.0, 15.0) as i8
                    }
                });
                (d, q)
            })
            .collect();
        let p5 = Packed::build(Kind::Q5, rows, cols, |i| blocks[i]).expect("packs Q5");
        let p8 = Packed::build(Kind::Q8, rows, cols, |i| blocks[i]).expect("packs Q8");
        assert_eq!(p5.bytes() * 34, p8.bytes() * 22);
        let q = QWeight {
            rows,
            cols,
            blocks: Blocks::Q8_0(
                blocks
                    .iter()
                    .map(|&(d, qs)| crate::engine::qkernels::BlockQ8_0 {
                        d: f16::from_bits(d).to_f32(),
                        qs,
                    })
                    .collect(),
            ),
        };
        check(&p5, &q, n, &mut seed);
        let xs: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
        let mut x = vec![BlockQ8::default(); n * nb];
        quantize_row(&xs, &mut x);
        let sums = block_sums(&x);
        let (mut o5, mut o8) = (vec![0f32; n * rows], vec![0f32; n * rows]);
        p5.matmul_groups((0, rows / GROUP), &x, &sums, n, &mut o5, rows);
        p8.matmul_groups((0, rows / GROUP), &x, &sums, n, &mut o8, rows);
        assert_eq!(o5, o8);
        assert!(Packed::build(Kind::Q5, rows, cols, |_| (0, [16; QK])).is_none());
        assert!(Packed::build(Kind::Q8, 8, cols, |i| blocks[i]).is_none());
    }
}
