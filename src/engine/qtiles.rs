//! Weights repacked in groups of 16 rows for AVX-512 VNNI, with kernels that give the bits of
//! the whole-block scalar reference ([`super::dot_q4_1_scalar`] / [`super::dot_q8_0_scalar`],
//! see the numerics in `qkernels.rs`) at a fraction of the instructions.
//!
//! Rows are laid out *across lanes*: 32-bit lane `i` of each 64-byte vector belongs to row
//! `i`, so one block of 16 rows costs eight `vpdpbusd` (the 16 rows' bytes `4j..4j+4` × four
//! broadcast activation bytes) chained into one i32 accumulator per row — the exact block sum
//! — then one conversion and one FMA with `d_w·d_x` for the 16 outputs (and one FMA for the
//! `Q4_1` min term), with no unpacking per output and no horizontal sums. Two tokens share
//! each unpacked weight block. `Q8_0` weights are stored as unsigned bytes (`w + 128`) and each
//! block sum is seeded with `−128·Σx` so that `vpdpbusd` needs no sign trick.
//!
//! [`TiledWeight::matmul`] runs on other CPUs too (a row at a time through the AVX2/scalar dot
//! products), so a model loaded with tiles works anywhere.

use half::f16;

use super::{BlockQ4_1, BlockQ8, BlockQ8_0, Blocks, QK, QWeight, dot_q4_1, dot_q8_0};

#[path = "qamx.rs"]
pub mod amx;

/// Rows per group.
pub const GROUP: usize = 16;

/// `x` as f16 bits if it is exactly an f16 value.
fn f16_bits(x: f32) -> Option<u16> {
    let h = f16::from_f32(x);
    (h.to_f32().to_bits() == x.to_bits()).then_some(h.to_bits())
}

/// Blocks ahead of the current one that the kernels prefetch.
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 6;

/// One block (32 columns) of 16 `Q4_1` rows: `q[k]`, 32-bit lane `i` = row `i`'s packed bytes
/// `4k..4k+4` (elements `4k..4k+4` in the low nibbles, `16+4k..` in the high ones); the scales
/// as f16 bits, as in the GGUF file (320 bytes: decode streams the weights from memory).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct GroupQ4_1 {
    q: [[u8; 64]; 4],
    d: [u16; GROUP],
    m: [u16; GROUP],
}

/// One block of 16 `Q8_0` rows: `q[j]`, lane `i` = row `i`'s elements `4j..4j+4` plus 128.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct GroupQ8_0 {
    q: [[u8; 64]; 8],
    d: [f32; GROUP],
}

#[derive(Clone)]
enum Groups {
    Q4_1(Vec<GroupQ4_1>),
    Q8_0(Vec<GroupQ8_0>),
}

/// A quantised weight matrix in 16-row groups (`groups × cols/32` blocks, group-major; the
/// last group padded with zero rows).
#[derive(Clone)]
pub struct TiledWeight {
    pub rows: usize,
    pub cols: usize,
    groups: Groups,
}

impl TiledWeight {
    /// Repack `w` (bit-exact: the same blocks, regrouped); `None` if a `Q4_1` scale is not an
    /// f16 value (blocks converted from other types may hold such).
    pub fn from_qweight(w: &QWeight) -> Option<Self> {
        let nb = w.cols / QK;
        let ng = w.rows.div_ceil(GROUP);
        let groups = match &w.blocks {
            Blocks::Q4_1(b) => {
                let zero = GroupQ4_1 {
                    q: [[0; 64]; 4],
                    d: [0; GROUP],
                    m: [0; GROUP],
                };
                let mut out = crate::engine::hugemem::vec_filled(ng * nb, zero);
                for r in 0..w.rows {
                    let (g, i) = (r / GROUP, r % GROUP);
                    for (bi, blk) in b[r * nb..(r + 1) * nb].iter().enumerate() {
                        let o = &mut out[g * nb + bi];
                        for k in 0..4 {
                            o.q[k][i * 4..i * 4 + 4].copy_from_slice(&blk.qs[4 * k..4 * k + 4]);
                        }
                        o.d[i] = f16_bits(blk.d)?;
                        o.m[i] = f16_bits(blk.m)?;
                    }
                }
                Groups::Q4_1(out)
            }
            Blocks::Q8_0(b) => {
                let zero = GroupQ8_0 {
                    q: [[128; 64]; 8],
                    d: [0.0; GROUP],
                };
                let mut out = crate::engine::hugemem::vec_filled(ng * nb, zero);
                for r in 0..w.rows {
                    let (g, i) = (r / GROUP, r % GROUP);
                    for (bi, blk) in b[r * nb..(r + 1) * nb].iter().enumerate() {
                        let o = &mut out[g * nb + bi];
                        for j in 0..8 {
                            for k in 0..4 {
                                o.q[j][i * 4 + k] = (blk.qs[4 * j + k] as u8) ^ 0x80;
                            }
                        }
                        o.d[i] = blk.d;
                    }
                }
                Groups::Q8_0(out)
            }
        };
        Some(Self {
            rows: w.rows,
            cols: w.cols,
            groups,
        })
    }

    /// Bytes of weight data read per full pass.
    pub fn bytes(&self) -> usize {
        match &self.groups {
            Groups::Q4_1(g) => std::mem::size_of_val(g.as_slice()),
            Groups::Q8_0(g) => std::mem::size_of_val(g.as_slice()),
        }
    }

    /// Row `r` as `Q4_1` blocks (when stored so).
    fn row_q4_1(g: &[GroupQ4_1], nb: usize, r: usize, out: &mut Vec<BlockQ4_1>) {
        let (gi, i) = (r / GROUP, r % GROUP);
        out.clear();
        out.extend(g[gi * nb..(gi + 1) * nb].iter().map(|o| {
            let mut qs = [0u8; QK / 2];
            for k in 0..4 {
                qs[4 * k..4 * k + 4].copy_from_slice(&o.q[k][i * 4..i * 4 + 4]);
            }
            BlockQ4_1 {
                d: f16::from_bits(o.d[i]).to_f32(),
                m: f16::from_bits(o.m[i]).to_f32(),
                qs,
            }
        }));
    }

    /// Row `r` as `Q8_0` blocks (when stored so).
    fn row_q8_0(g: &[GroupQ8_0], nb: usize, r: usize, out: &mut Vec<BlockQ8_0>) {
        let (gi, i) = (r / GROUP, r % GROUP);
        out.clear();
        out.extend(g[gi * nb..(gi + 1) * nb].iter().map(|o| {
            let mut qs = [0i8; QK];
            for j in 0..8 {
                for k in 0..4 {
                    qs[4 * j + k] = (o.q[j][i * 4 + k] ^ 0x80) as i8;
                }
            }
            BlockQ8_0 { d: o.d[i], qs }
        }));
    }

    /// Row `r` dequantised into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        match &self.groups {
            Groups::Q4_1(g) => {
                let mut row = Vec::with_capacity(nb);
                Self::row_q4_1(g, nb, r, &mut row);
                for (blk, o) in row.iter().zip(out.chunks_exact_mut(QK)) {
                    for j in 0..QK / 2 {
                        o[j] = (blk.qs[j] & 0x0F) as f32 * blk.d + blk.m;
                        o[j + QK / 2] = (blk.qs[j] >> 4) as f32 * blk.d + blk.m;
                    }
                }
            }
            Groups::Q8_0(g) => {
                let mut row = Vec::with_capacity(nb);
                Self::row_q8_0(g, nb, r, &mut row);
                for (blk, o) in row.iter().zip(out.chunks_exact_mut(QK)) {
                    for (v, q) in o.iter_mut().zip(blk.qs) {
                        *v = q as f32 * blk.d;
                    }
                }
            }
        }
    }

    /// Rows `r0..r1` (`r0` a multiple of 16) times `n` tokens of quantised activations (`x`,
    /// `cols / 32` blocks per token): `out[t · ld + (r − r0)]`. Every value has the bits of
    /// [`super::dot_q4_1`] / [`super::dot_q8_0`] on the same row and token.
    pub fn matmul(
        &self,
        (r0, r1): (usize, usize),
        x: &[BlockQ8],
        n: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        let nb = self.cols / QK;
        let r1 = r1.min(self.rows);
        if r0 >= r1 || n == 0 || x.len() < n * nb || ld < r1 - r0 {
            return;
        }
        if out.len() < (n - 1) * ld + (r1 - r0) || !r0.is_multiple_of(GROUP) {
            return self.matmul_dots((r0, r1), x, n, out, ld);
        }
        if n >= amx::MIN_TOKENS && amx::matmul(self, nb, (r0, r1), x, n, out, ld) {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if super::has_vnni512() {
            // SAFETY: the CPU has AVX-512 F/BW/VNNI (checked); sizes checked above.
            unsafe { avx512::matmul(self, nb, (r0, r1), x, n, out, ld) };
            return;
        }
        self.matmul_dots((r0, r1), x, n, out, ld);
    }

    /// [`TiledWeight::matmul`] one dot product at a time (the AVX2 or scalar kernel).
    pub fn matmul_dots(
        &self,
        (r0, r1): (usize, usize),
        x: &[BlockQ8],
        n: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        let nb = self.cols / QK;
        let r1 = r1.min(self.rows);
        let (mut q4, mut q8) = (Vec::new(), Vec::new());
        for r in r0..r1 {
            match &self.groups {
                Groups::Q4_1(g) => Self::row_q4_1(g, nb, r, &mut q4),
                Groups::Q8_0(g) => Self::row_q8_0(g, nb, r, &mut q8),
            }
            for t in 0..n {
                let xt = &x[t * nb..(t + 1) * nb];
                let v = match &self.groups {
                    Groups::Q4_1(_) => dot_q4_1(&q4, xt),
                    Groups::Q8_0(_) => dot_q8_0(&q8, xt),
                };
                if let Some(o) = out.get_mut(t * ld + r - r0) {
                    *o = v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BlockQ8, GROUP, GroupQ4_1, GroupQ8_0, Groups, TiledWeight};

    /// Ask for the group block `AHEAD` places after `blk` (the weights stream from memory),
    /// into L2 (`prefetcht1`: measured faster than into L1 here; the loads follow soon).
    #[inline(always)]
    fn prefetch<G>(blk: &G) {
        let p = (blk as *const G).wrapping_add(super::AHEAD) as *const i8;
        for line in 0..std::mem::size_of::<G>() / 64 {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64 * line)) };
        }
    }

    /// The four activation bytes of lane `j` as one 32-bit value.
    #[inline(always)]
    fn x4(x: &BlockQ8, j: usize) -> i32 {
        i32::from_le_bytes([
            x.qs[4 * j] as u8,
            x.qs[4 * j + 1] as u8,
            x.qs[4 * j + 2] as u8,
            x.qs[4 * j + 3] as u8,
        ])
    }

    /// The exact block sums of 16 rows: `seed + Σ_j w[j] · x4(x, j)` (two chains of four
    /// `vpdpbusd`, added; integer arithmetic, so the order does not matter).
    #[inline(always)]
    unsafe fn block_sum(w: &[__m512i; 8], x: &BlockQ8, seed: __m512i) -> __m512i {
        // SAFETY: AVX-512 F/VNNI are enabled by every caller.
        unsafe {
            let (mut s0, mut s1) = (seed, _mm512_setzero_si512());
            for j in 0..4 {
                s0 = _mm512_dpbusd_epi32(s0, w[j], _mm512_set1_epi32(x4(x, j)));
                s1 = _mm512_dpbusd_epi32(s1, w[j + 4], _mm512_set1_epi32(x4(x, j + 4)));
            }
            _mm512_add_epi32(s0, s1)
        }
    }

    /// `G` groups (`g[i]`, `nb` blocks each) × `T` tokens; `out[i][t]` = group `i`'s 16 rows'
    /// results for token `t`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn q4_1_group<const T: usize, const G: usize>(
        g: [&[GroupQ4_1]; G],
        x: [&[BlockQ8]; T],
    ) -> [[[f32; 16]; T]; G] {
        let mut acc = [[_mm512_setzero_ps(); T]; G];
        let mut summ = [[_mm512_setzero_ps(); T]; G];
        let low = _mm512_set1_epi8(0x0F);
        for b in 0..g[0].len() {
            for i in 0..G {
                let blk = &g[i][b];
                prefetch(blk);
                // `w[j]`: elements `4j..4j+4` of each row (low nibbles for j < 4, high for j ≥ 4).
                let mut w = [_mm512_setzero_si512(); 8];
                for k in 0..4 {
                    // SAFETY: 64 aligned bytes.
                    let raw = unsafe { _mm512_load_si512(blk.q[k].as_ptr() as *const __m512i) };
                    w[k] = _mm512_and_si512(raw, low);
                    w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
                }
                // SAFETY: 16 aligned f16 values each.
                let (dw, mw) = unsafe {
                    (
                        _mm512_cvtph_ps(_mm256_load_si256(blk.d.as_ptr() as *const __m256i)),
                        _mm512_cvtph_ps(_mm256_load_si256(blk.m.as_ptr() as *const __m256i)),
                    )
                };
                for t in 0..T {
                    let a = &x[t][b];
                    // SAFETY: features enabled.
                    let s = unsafe { block_sum(&w, a, _mm512_setzero_si512()) };
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(a.d));
                    acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc[i][t]);
                    summ[i][t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s), summ[i][t]);
                }
            }
        }
        let mut out = [[[0f32; 16]; T]; G];
        for i in 0..G {
            for t in 0..T {
                let v = _mm512_add_ps(acc[i][t], summ[i][t]);
                // SAFETY: AVX-512F is enabled; 16 floats written.
                unsafe { _mm512_storeu_ps(out[i][t].as_mut_ptr(), v) };
            }
        }
        out
    }

    /// `G` `Q8_0` groups × `T` tokens; `seeds[t][b]` = `−128·Σ` of token `t`'s block `b`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn q8_0_group<const T: usize, const G: usize>(
        g: [&[GroupQ8_0]; G],
        x: [&[BlockQ8]; T],
        seeds: [&[i32]; T],
    ) -> [[[f32; 16]; T]; G] {
        let mut acc = [[_mm512_setzero_ps(); T]; G];
        for b in 0..g[0].len() {
            for i in 0..G {
                let blk = &g[i][b];
                prefetch(blk);
                let mut w = [_mm512_setzero_si512(); 8];
                for (j, v) in w.iter_mut().enumerate() {
                    // SAFETY: 64 aligned bytes.
                    *v = unsafe { _mm512_load_si512(blk.q[j].as_ptr() as *const __m512i) };
                }
                // SAFETY: 16 aligned floats.
                let dw = unsafe { _mm512_load_ps(blk.d.as_ptr()) };
                for t in 0..T {
                    let a = &x[t][b];
                    // SAFETY: features enabled.
                    let s = unsafe { block_sum(&w, a, _mm512_set1_epi32(seeds[t][b])) };
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(a.d));
                    acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc[i][t]);
                }
            }
        }
        let mut out = [[[0f32; 16]; T]; G];
        for i in 0..G {
            for t in 0..T {
                // SAFETY: AVX-512F is enabled; 16 floats written.
                unsafe { _mm512_storeu_ps(out[i][t].as_mut_ptr(), acc[i][t]) };
            }
        }
        out
    }

    /// `−128·Σ` of every token block's 32 bytes.
    fn seeds(x: &[BlockQ8]) -> Vec<i32> {
        x.iter()
            .map(|b| -128 * b.qs.iter().map(|q| *q as i32).sum::<i32>())
            .collect()
    }

    /// See [`TiledWeight::matmul`].
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VNNI; `r0` is a multiple of 16, `r1 ≤ rows`, `x` holds
    /// `n · nb` blocks and `out` at least `(n − 1) · ld + (r1 − r0)` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn matmul(
        w: &TiledWeight,
        nb: usize,
        (r0, r1): (usize, usize),
        x: &[BlockQ8],
        n: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        let tok = |t: usize| &x[t * nb..(t + 1) * nb];
        let mut put = |r: usize, t: usize, v: &[f32; 16]| {
            let k = (r1 - r).min(GROUP);
            out[t * ld + r - r0..][..k].copy_from_slice(&v[..k]);
        };
        match &w.groups {
            Groups::Q4_1(gs) => {
                let grp = |r: usize| &gs[r / GROUP * nb..][..nb];
                let mut r = r0;
                while r < r1 {
                    let g = grp(r);
                    let mut t = 0;
                    while t + 2 <= n {
                        // SAFETY: features enabled; the slices are `nb` long.
                        let [o] = unsafe { q4_1_group::<2, 1>([g], [tok(t), tok(t + 1)]) };
                        put(r, t, &o[0]);
                        put(r, t + 1, &o[1]);
                        t += 2;
                    }
                    if t < n {
                        // SAFETY: as above.
                        let [[o]] = unsafe { q4_1_group::<1, 1>([g], [tok(t)]) };
                        put(r, t, &o);
                    }
                    r += GROUP;
                }
            }
            Groups::Q8_0(gs) => {
                let seeds = seeds(&x[..n * nb]);
                let sd = |t: usize| &seeds[t * nb..(t + 1) * nb];
                let grp = |r: usize| &gs[r / GROUP * nb..][..nb];
                let mut r = r0;
                while r < r1 {
                    let g = grp(r);
                    let mut t = 0;
                    while t + 2 <= n {
                        // SAFETY: features enabled; the slices are `nb` long.
                        let [o] = unsafe {
                            q8_0_group::<2, 1>([g], [tok(t), tok(t + 1)], [sd(t), sd(t + 1)])
                        };
                        put(r, t, &o[0]);
                        put(r, t + 1, &o[1]);
                        t += 2;
                    }
                    if t < n {
                        // SAFETY: as above.
                        let [[o]] = unsafe { q8_0_group::<1, 1>([g], [tok(t)], [sd(t)]) };
                        put(r, t, &o);
                    }
                    r += GROUP;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::lcg;
    use super::super::{dot_q4_1_scalar, dot_q8_0_scalar, quantize_row};
    use super::*;

    fn f16r(x: f32) -> f32 {
        half::f16::from_f32(x).to_f32()
    }

    #[test]
    fn scales_that_are_not_f16_values_are_refused() {
        let blk = BlockQ4_1 {
            d: 0.1,
            m: 0.0,
            qs: [0; QK / 2],
        };
        let w = QWeight {
            rows: 1,
            cols: QK,
            blocks: Blocks::Q4_1(vec![blk]),
        };
        assert!(TiledWeight::from_qweight(&w).is_none());
    }

    /// Tiles (AVX-512 when present) give exactly the bits of the row-at-a-time dot products
    /// (`QWeight::matmul_rows_dot`) and of the whole-block scalar reference.
    #[test]
    fn tiles_match_dot_products_bit_for_bit() {
        let seed0 = 20261126u64;
        println!("seed {seed0}, vnni512 {}", super::super::has_vnni512());
        let mut seed = seed0;
        for &(rows, cols, n) in &[
            (16, 32, 1),
            (13, 64, 1),
            (40, 96, 2),
            (33, 128, 3),
            (48, 576, 5),
            (17, 160, 17),
            (32, 1536, 2),
        ] {
            let (nb, nb_all) = (cols / QK, rows * cols / QK);
            let q4: Vec<BlockQ4_1> = (0..nb_all)
                .map(|_| {
                    let mut qs = [0u8; QK / 2];
                    qs.iter_mut().for_each(|q| *q = lcg(&mut seed) as u8);
                    BlockQ4_1 {
                        d: f16r((lcg(&mut seed) % 1000) as f32 / 7e4),
                        m: f16r(-((lcg(&mut seed) % 1000) as f32) / 3e4),
                        qs,
                    }
                })
                .collect();
            let q8: Vec<BlockQ8_0> = (0..nb_all)
                .map(|_| {
                    let mut qs = [0i8; QK];
                    // The full range, −128 included.
                    qs.iter_mut().for_each(|q| *q = lcg(&mut seed) as u8 as i8);
                    BlockQ8_0 {
                        d: f16r((lcg(&mut seed) % 1000) as f32 / 5e4),
                        qs,
                    }
                })
                .collect();
            let xf: Vec<f32> = (0..n * cols)
                .map(|_| (lcg(&mut seed) % 20001) as f32 / 1000.0 - 10.0)
                .collect();
            let mut x = vec![BlockQ8::default(); n * cols / QK];
            quantize_row(&xf, &mut x);
            for blocks in [Blocks::Q4_1(q4), Blocks::Q8_0(q8)] {
                let w = QWeight { rows, cols, blocks };
                let tw = TiledWeight::from_qweight(&w).expect("f16 scales");
                let mut row = vec![0f32; cols];
                let mut trow = vec![0f32; cols];
                for r in 0..rows {
                    w.dequantize_row(r, &mut row);
                    tw.dequantize_row(r, &mut trow);
                    assert_eq!(row, trow, "row {r}");
                }
                for (r0, r1) in [(0, rows), (16, rows), (0, 16.min(rows))] {
                    if r0 >= rows {
                        continue;
                    }
                    let mut want = vec![f32::NAN; (r1 - r0) * n];
                    w.matmul_rows_dot((r0, r1), &x, n, &mut want);
                    let ld = r1 - r0 + 3;
                    let mut got = vec![f32::NAN; n * ld];
                    tw.matmul((r0, r1), &x, n, &mut got, ld);
                    let mut dots = vec![f32::NAN; n * ld];
                    tw.matmul_dots((r0, r1), &x, n, &mut dots, ld);
                    for r in r0..r1 {
                        for t in 0..n {
                            let a = want[(r - r0) * n + t];
                            let b = got[t * ld + r - r0];
                            let c = dots[t * ld + r - r0];
                            assert_eq!(
                                a.to_bits(),
                                b.to_bits(),
                                "{rows}x{cols} n={n} r={r} t={t}: {a} vs {b}"
                            );
                            assert_eq!(a.to_bits(), c.to_bits(), "dots r={r} t={t}");
                            let xt = &x[t * nb..(t + 1) * nb];
                            let s = match &w.blocks {
                                Blocks::Q4_1(b) => dot_q4_1_scalar(&b[r * nb..(r + 1) * nb], xt),
                                Blocks::Q8_0(b) => dot_q8_0_scalar(&b[r * nb..(r + 1) * nb], xt),
                            };
                            assert_eq!(a.to_bits(), s.to_bits(), "scalar r={r} t={t}: {a} vs {s}");
                        }
                    }
                }
            }
        }
    }
}
