//! AVX-512 VNNI tiles for the quantised matmuls of [`super::qkernels`] on plain row-major
//! blocks: one 512-bit `vpdpbusd` covers two 32-element dot products side by side, either one
//! weight row against two tokens (the weight block unpacked once, reused for every token of the
//! tile) or two weight rows against one token (decode of a single sequence). Four such vectors
//! are reduced together (exact integer adds) to the eight whole-block sums, which are scaled and
//! accumulated with one vector FMA per block, lane by lane: every output has the bits of the
//! scalar reference [`super::qkernels::dot_q4_1_scalar`] / `dot_q8_0_scalar` (the module docs
//! of `qkernels.rs` give the arithmetic) whichever tile computed it.
//!
//! Slots: the eight outputs of a tile live in elements `0..4` (half 0) and `8..12` (half 1) of
//! a 512-bit vector; `[[f32; 2]; 4]` results are `[slot i of half 0, slot i of half 1]`.

use std::arch::x86_64::*;

use super::{BlockQ4_1, BlockQ8, BlockQ8_0};

/// Rows per tile of the token-pair kernels.
pub const ROWS: usize = 4;

/// Four vectors `v[i]`, each two 8-lane dot products (elements `0..8`, `8..16`), reduced
/// exactly: element `i` = Σ of `v[i]`'s first eight lanes, element `8 + i` = Σ of the last eight.
#[inline]
#[target_feature(enable = "avx512f")]
fn block_sums(v: [__m512i; 4]) -> __m512i {
    // Per 128-bit lane: [v0 0+2, v1 0+2, v0 1+3, v1 1+3], then [v0, v1, v2, v3] lane sums.
    let a = _mm512_add_epi32(
        _mm512_unpacklo_epi32(v[0], v[1]),
        _mm512_unpackhi_epi32(v[0], v[1]),
    );
    let b = _mm512_add_epi32(
        _mm512_unpacklo_epi32(v[2], v[3]),
        _mm512_unpackhi_epi32(v[2], v[3]),
    );
    let u = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    // 128-bit lanes (0, 1) hold half 0, (2, 3) half 1: add each pair into its first lane.
    _mm512_add_epi32(u, _mm512_shuffle_i32x4(u, u, 0b10_11_00_01))
}

/// `[element i, element 8 + i]` for `i < 4`.
#[inline]
#[target_feature(enable = "avx512f")]
fn slots(v: __m512) -> [[f32; 2]; 4] {
    let mut a = [0f32; 16];
    // SAFETY: 16 floats written.
    unsafe { _mm512_storeu_ps(a.as_mut_ptr(), v) };
    [[a[0], a[8]], [a[1], a[9]], [a[2], a[10]], [a[3], a[11]]]
}

/// `h0[i]` in element `i`, `h1[i]` in element `8 + i` (`i < 4`), zero elsewhere.
#[inline]
#[target_feature(enable = "avx512f")]
fn from_slots(h0: [f32; 4], h1: [f32; 4]) -> __m512 {
    let a = [
        h0[0], h0[1], h0[2], h0[3], 0.0, 0.0, 0.0, 0.0, h1[0], h1[1], h1[2], h1[3], 0.0, 0.0, 0.0,
        0.0,
    ];
    // SAFETY: 16 floats read.
    unsafe { _mm512_loadu_ps(a.as_ptr()) }
}

/// 16 packed `Q4_1` bytes at `lo` and `hi` → 64 nibbles: `lo`'s block in the low 256 bits,
/// `hi`'s in the high (elements 0..16 from the low nibbles, 16..32 from the high ones).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn unpack2(lo: __m128i, hi: __m128i) -> __m512i {
    let both = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(lo)),
        _mm256_broadcastsi128_si256(hi),
        1,
    );
    let shifted = _mm512_srli_epi16(both, 4);
    _mm512_and_si512(
        _mm512_mask_blend_epi64(0b1100_1100, both, shifted),
        _mm512_set1_epi8(0x0F),
    )
}

/// Two 32-byte blocks side by side.
///
/// # Safety
/// `lo` and `hi` point at 32 readable bytes.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn load2(lo: *const i8, hi: *const i8) -> __m512i {
    // SAFETY: the caller guarantees 32 readable bytes at each pointer.
    unsafe {
        _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(lo as *const __m256i)),
            _mm256_loadu_si256(hi as *const __m256i),
            1,
        )
    }
}

/// `a` in the low eight lanes, `b` in the high eight.
#[inline]
#[target_feature(enable = "avx512f")]
fn halves(a: f32, b: f32) -> __m512 {
    _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b))
}

/// Signed weights × signed activations as unsigned × signed (`|w|` and `x·sign(w)`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn dot_signed(w: __m512i, x: __m512i) -> __m512i {
    let neg = _mm512_movepi8_mask(w);
    let sx = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx)
}

/// `ROWS` rows of `Q4_1` blocks (`w[r]`, each `nb` long) × tokens `x0`, `x1` (`nb` blocks
/// each); `out[r] = [row r · x0, row r · x1]`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VNNI, AVX2 and FMA; every slice is at least `nb` long.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub unsafe fn q4_1_rows_x2(
    w: [&[BlockQ4_1]; ROWS],
    x0: &[BlockQ8],
    x1: &[BlockQ8],
    nb: usize,
) -> [[f32; 2]; ROWS] {
    let (mut acc, mut summ) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for b in 0..nb {
        let (a0, a1) = (&x0[b], &x1[b]);
        // SAFETY: `qs` are 32 bytes long.
        let xq = unsafe { load2(a0.qs.as_ptr(), a1.qs.as_ptr()) };
        let mut sums = [_mm512_setzero_si512(); ROWS];
        for r in 0..ROWS {
            // SAFETY: `qs` is 16 bytes long; unaligned load.
            let raw = unsafe { _mm_loadu_si128(w[r][b].qs.as_ptr() as *const __m128i) };
            sums[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unpack2(raw, raw), xq);
        }
        let dw = [w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d];
        let mw = [w[0][b].m, w[1][b].m, w[2][b].m, w[3][b].m];
        let d = _mm512_mul_ps(from_slots(dw, dw), halves(a0.d, a1.d));
        let isum = _mm512_cvtepi32_ps(block_sums(sums));
        acc = _mm512_fmadd_ps(isum, d, acc);
        summ = _mm512_fmadd_ps(from_slots(mw, mw), halves(a0.s, a1.s), summ);
    }
    slots(_mm512_add_ps(acc, summ))
}

/// `2·P` rows (`P ≤ 4`) of `Q4_1` blocks × one token: `out[p] = [row w[p][0] · x, row w[p][1]
/// · x]`.
///
/// # Safety
/// As [`q4_1_rows_x2`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub unsafe fn q4_1_pairs_x1<const P: usize>(
    w: [[&[BlockQ4_1]; 2]; P],
    x: &[BlockQ8],
    nb: usize,
) -> [[f32; 2]; P] {
    let (mut acc, mut summ) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for (b, a) in x.iter().enumerate().take(nb) {
        // SAFETY: `qs` is 32 bytes long.
        let xq = unsafe { load2(a.qs.as_ptr(), a.qs.as_ptr()) };
        let mut sums = [_mm512_setzero_si512(); 4];
        let (mut d0, mut d1, mut m0, mut m1) = ([0f32; 4], [0f32; 4], [0f32; 4], [0f32; 4]);
        for p in 0..P {
            let (u, v) = (&w[p][0][b], &w[p][1][b]);
            // SAFETY: `qs` are 16 bytes long; unaligned loads.
            let (ru, rv) = unsafe {
                (
                    _mm_loadu_si128(u.qs.as_ptr() as *const __m128i),
                    _mm_loadu_si128(v.qs.as_ptr() as *const __m128i),
                )
            };
            sums[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), unpack2(ru, rv), xq);
            (d0[p], d1[p], m0[p], m1[p]) = (u.d, v.d, u.m, v.m);
        }
        let d = _mm512_mul_ps(from_slots(d0, d1), _mm512_set1_ps(a.d));
        let isum = _mm512_cvtepi32_ps(block_sums(sums));
        acc = _mm512_fmadd_ps(isum, d, acc);
        summ = _mm512_fmadd_ps(from_slots(m0, m1), _mm512_set1_ps(a.s), summ);
    }
    let all = slots(_mm512_add_ps(acc, summ));
    std::array::from_fn(|p| all[p])
}

/// `ROWS` rows of `Q8_0` blocks × tokens `x0`, `x1`.
///
/// # Safety
/// As [`q4_1_rows_x2`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub unsafe fn q8_0_rows_x2(
    w: [&[BlockQ8_0]; ROWS],
    x0: &[BlockQ8],
    x1: &[BlockQ8],
    nb: usize,
) -> [[f32; 2]; ROWS] {
    let mut acc = _mm512_setzero_ps();
    for b in 0..nb {
        let (a0, a1) = (&x0[b], &x1[b]);
        // SAFETY: `qs` are 32 bytes long.
        let xq = unsafe { load2(a0.qs.as_ptr(), a1.qs.as_ptr()) };
        let mut sums = [_mm512_setzero_si512(); ROWS];
        for r in 0..ROWS {
            let blk = &w[r][b];
            // SAFETY: `qs` is 32 bytes long.
            let wq = unsafe { load2(blk.qs.as_ptr(), blk.qs.as_ptr()) };
            sums[r] = dot_signed(wq, xq);
        }
        let dw = [w[0][b].d, w[1][b].d, w[2][b].d, w[3][b].d];
        let d = _mm512_mul_ps(from_slots(dw, dw), halves(a0.d, a1.d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_sums(sums)), d, acc);
    }
    slots(acc)
}

/// `2·P` rows (`P ≤ 4`) of `Q8_0` blocks × one token.
///
/// # Safety
/// As [`q4_1_rows_x2`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub unsafe fn q8_0_pairs_x1<const P: usize>(
    w: [[&[BlockQ8_0]; 2]; P],
    x: &[BlockQ8],
    nb: usize,
) -> [[f32; 2]; P] {
    let mut acc = _mm512_setzero_ps();
    for (b, a) in x.iter().enumerate().take(nb) {
        // SAFETY: `qs` is 32 bytes long.
        let xq = unsafe { load2(a.qs.as_ptr(), a.qs.as_ptr()) };
        let mut sums = [_mm512_setzero_si512(); 4];
        let (mut d0, mut d1) = ([0f32; 4], [0f32; 4]);
        for p in 0..P {
            let (u, v) = (&w[p][0][b], &w[p][1][b]);
            // SAFETY: `qs` are 32 bytes long.
            let wq = unsafe { load2(u.qs.as_ptr(), v.qs.as_ptr()) };
            sums[p] = dot_signed(wq, xq);
            (d0[p], d1[p]) = (u.d, v.d);
        }
        let d = _mm512_mul_ps(from_slots(d0, d1), _mm512_set1_ps(a.d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_sums(sums)), d, acc);
    }
    let all = slots(acc);
    std::array::from_fn(|p| all[p])
}

/// The tile kernels of one weight block type.
pub trait Tile: Sized {
    /// # Safety
    /// As [`q4_1_rows_x2`].
    unsafe fn rows_x2(
        w: [&[Self]; ROWS],
        x0: &[BlockQ8],
        x1: &[BlockQ8],
        nb: usize,
    ) -> [[f32; 2]; ROWS];
    /// # Safety
    /// As [`q4_1_rows_x2`].
    unsafe fn pairs4_x1(w: [[&[Self]; 2]; 4], x: &[BlockQ8], nb: usize) -> [[f32; 2]; 4];
    /// # Safety
    /// As [`q4_1_rows_x2`].
    unsafe fn pairs2_x1(w: [[&[Self]; 2]; 2], x: &[BlockQ8], nb: usize) -> [[f32; 2]; 2];
    /// # Safety
    /// As [`q4_1_rows_x2`].
    unsafe fn pairs1_x1(w: [[&[Self]; 2]; 1], x: &[BlockQ8], nb: usize) -> [[f32; 2]; 1];
}

macro_rules! tile_impl {
    ($blk:ty, $rows:ident, $pairs:ident) => {
        impl Tile for $blk {
            unsafe fn rows_x2(
                w: [&[Self]; ROWS],
                x0: &[BlockQ8],
                x1: &[BlockQ8],
                nb: usize,
            ) -> [[f32; 2]; ROWS] {
                // SAFETY: forwarded from the caller.
                unsafe { $rows(w, x0, x1, nb) }
            }
            unsafe fn pairs4_x1(w: [[&[Self]; 2]; 4], x: &[BlockQ8], nb: usize) -> [[f32; 2]; 4] {
                // SAFETY: forwarded from the caller.
                unsafe { $pairs::<4>(w, x, nb) }
            }
            unsafe fn pairs2_x1(w: [[&[Self]; 2]; 2], x: &[BlockQ8], nb: usize) -> [[f32; 2]; 2] {
                // SAFETY: forwarded from the caller.
                unsafe { $pairs::<2>(w, x, nb) }
            }
            unsafe fn pairs1_x1(w: [[&[Self]; 2]; 1], x: &[BlockQ8], nb: usize) -> [[f32; 2]; 1] {
                // SAFETY: forwarded from the caller.
                unsafe { $pairs::<1>(w, x, nb) }
            }
        }
    };
}
tile_impl!(BlockQ4_1, q4_1_rows_x2, q4_1_pairs_x1);
tile_impl!(BlockQ8_0, q8_0_rows_x2, q8_0_pairs_x1);

/// Tokens per tile of a multi-token matmul (their activations stay in L1 while the rows pass).
const TOKENS: usize = 16;

/// Rows `r0..r1` of a weight (`blocks`, `nb` per row) × `n` tokens (`x`, `nb` blocks each):
/// `out[(r - r0) * n + t]`. Rows left over by the tiles go through `dot` (which must give the
/// same bits: the AVX2 kernel does).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VNNI, AVX2 and FMA; `blocks` holds at least `r1 · nb`
/// blocks, `x` at least `n · nb`, `out` at least `(r1 - r0) · n` values.
pub unsafe fn matmul<B: Tile>(
    blocks: &[B],
    nb: usize,
    (r0, r1): (usize, usize),
    x: &[BlockQ8],
    n: usize,
    out: &mut [f32],
    dot: impl Fn(&[B], &[BlockQ8]) -> f32,
) {
    let row = |r: usize| &blocks[r * nb..(r + 1) * nb];
    let tok = |t: usize| &x[t * nb..(t + 1) * nb];
    let mut put = |r: usize, t: usize, v: f32| out[(r - r0) * n + t] = v;
    if n == 1 {
        let x0 = tok(0);
        let mut r = r0;
        while r + 8 <= r1 {
            let w = [
                [row(r), row(r + 1)],
                [row(r + 2), row(r + 3)],
                [row(r + 4), row(r + 5)],
                [row(r + 6), row(r + 7)],
            ];
            // SAFETY: forwarded from the caller; the slices are `nb` long.
            let o = unsafe { B::pairs4_x1(w, x0, nb) };
            for (i, v) in o.iter().flatten().enumerate() {
                put(r + i, 0, *v);
            }
            r += 8;
        }
        while r + 2 <= r1 {
            // SAFETY: as above.
            let [[a, b]] = unsafe { B::pairs1_x1([[row(r), row(r + 1)]], x0, nb) };
            put(r, 0, a);
            put(r + 1, 0, b);
            r += 2;
        }
        if r < r1 {
            put(r, 0, dot(row(r), x0));
        }
        return;
    }
    let mut t0 = 0;
    while t0 < n {
        let t1 = (t0 + TOKENS).min(n);
        let mut r = r0;
        while r + ROWS <= r1 {
            let w = [row(r), row(r + 1), row(r + 2), row(r + 3)];
            let mut t = t0;
            while t + 2 <= t1 {
                // SAFETY: forwarded from the caller; the slices are `nb` long.
                let o = unsafe { B::rows_x2(w, tok(t), tok(t + 1), nb) };
                for (i, [a, b]) in o.iter().enumerate() {
                    put(r + i, t, *a);
                    put(r + i, t + 1, *b);
                }
                t += 2;
            }
            if t < t1 {
                // SAFETY: as above.
                let o = unsafe { B::pairs2_x1([[w[0], w[1]], [w[2], w[3]]], tok(t), nb) };
                for (i, v) in o.iter().flatten().enumerate() {
                    put(r + i, t, *v);
                }
            }
            r += ROWS;
        }
        for r in r..r1 {
            for t in t0..t1 {
                put(r, t, dot(row(r), tok(t)));
            }
        }
        t0 = t1;
    }
}
