//! Quantised weight storage and the CPU kernels of our own transformer forward.
//!
//! Weights are repacked at load into blocks of 32 with `f32` scales ([`QWeight`]): `Q4_1` stays
//! `Q4_1` (4-bit with min), `Q8_0` stays `Q8_0`, every other GGML type is dequantised and
//! re-quantised to `Q8_0`. Activations are quantised per block of 32 to 8 bits ([`BlockQ8`],
//! llama.cpp's `Q8_1`: scale `d` and `s = d·Σq`, both rounded through f16 like llama.cpp) and
//! multiplied with integer dot products: AVX-512 VNNI tiles ([`QWeight::matmul_rows`], several
//! rows × several tokens per unpacked weight block, see `qkernels_avx512.rs`), AVX2 (`maddubs`)
//! or a scalar loop, whichever the CPU has.
//!
//! # Numerics ("whole-block")
//! Every kernel, here and in the 16-row tiles of `qtiles.rs`, gives exactly the bits of the
//! scalar reference ([`dot_q4_1_scalar`], [`dot_q8_0_scalar`]): per block `b` in order, the
//! exact integer dot product `isum` of the 32 quantised pairs, `acc = fma(isum, d_w·d_x, acc)`,
//! and for `Q4_1` `summ = fma(m_w, s_x, summ)`; the result is `acc + summ` (`Q4_1`) or `acc`
//! (`Q8_0`). This is the arithmetic of llama.cpp's AMX/VNNI CPU path (not of its AVX2 path,
//! which keeps eight float lanes per block), and the one an AMX kernel can reproduce, so a
//! sequence's logits never depend on the kernel, the batch size or its batch neighbours.
//!
//! The KV cache is stored as f16 (as llama.cpp stores it): [`dot_f16`] and [`axpy_f16`] work
//! on raw f16 bits, with F16C when present.

use half::f16;

#[cfg(target_arch = "x86_64")]
#[path = "qkernels_avx512.rs"]
mod avx512;

#[path = "qtiles.rs"]
pub mod tiles;

/// Elements per quantisation block.
pub const QK: usize = 32;

/// One block of 32 activations quantised to 8 bits (llama.cpp's `Q8_1`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8 {
    /// Scale (an f16 value, stored widened).
    pub d: f32,
    /// `d · Σ qs` (an f16 value, stored widened); used by `Q4_1` weights.
    pub s: f32,
    pub qs: [i8; QK],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        Self {
            d: 0.0,
            s: 0.0,
            qs: [0; QK],
        }
    }
}

/// `x` rounded to the nearest f16 and widened back.
#[inline]
pub fn f16_round(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Quantise `x` (a multiple of 32 long) into `out` (`x.len() / 32` blocks).
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    #[cfg(target_arch = "x86_64")]
    {
        /// The same code compiled for AVX2 (rounding is then one instruction, not a libm call).
        #[target_feature(enable = "avx2,fma,f16c")]
        fn run_avx2(x: &[f32], out: &mut [BlockQ8]) {
            quantize_row_scalar(x, out);
        }
        if has_avx512() {
            // SAFETY: the CPU has AVX-512 F/BW/VL and F16C (checked).
            return unsafe { avx2::quantize_row_avx512(x, out) };
        }
        if has_avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked).
            return unsafe { run_avx2(x, out) };
        }
    }
    quantize_row_scalar(x, out);
}

#[inline(always)]
fn quantize_row_scalar(x: &[f32], out: &mut [BlockQ8]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xb) {
            let r = (v * id).round_ties_even() as i32;
            *q = r.clamp(-128, 127) as i8;
            sum += r;
        }
        b.d = f16_round(d);
        b.s = f16_round(d * sum as f32);
    }
}

/// A `Q4_1` block with widened scales: `x = q·d + m`, low nibbles are elements 0..16, high
/// nibbles 16..32.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f32,
    pub m: f32,
    pub qs: [u8; QK / 2],
}

/// A `Q8_0` block with a widened scale: `x = q·d`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; QK],
}

/// The blocks of one weight matrix, row-major (`rows` rows of `cols / 32` blocks).
#[derive(Debug, Clone)]
pub enum Blocks {
    Q4_1(Vec<BlockQ4_1>),
    Q8_0(Vec<BlockQ8_0>),
}

/// A quantised weight matrix (`rows` outputs × `cols` inputs).
#[derive(Debug, Clone)]
pub struct QWeight {
    pub rows: usize,
    pub cols: usize,
    pub blocks: Blocks,
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

impl QWeight {
    /// Raw GGML `Q4_1` bytes (20-byte blocks) of a `rows × cols` matrix.
    pub fn from_q4_1(raw: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || raw.len() != rows * cols / QK * 20 {
            return None;
        }
        let blocks = raw
            .chunks_exact(20)
            .map(|c| {
                let mut qs = [0u8; QK / 2];
                qs.copy_from_slice(&c[4..20]);
                BlockQ4_1 {
                    d: f16_at(c, 0),
                    m: f16_at(c, 2),
                    qs,
                }
            })
            .collect();
        Some(Self {
            rows,
            cols,
            blocks: Blocks::Q4_1(blocks),
        })
    }

    /// Raw GGML `Q8_0` bytes (34-byte blocks) of a `rows × cols` matrix.
    pub fn from_q8_0(raw: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || raw.len() != rows * cols / QK * 34 {
            return None;
        }
        let blocks = raw
            .chunks_exact(34)
            .map(|c| {
                let mut qs = [0i8; QK];
                for (q, b) in qs.iter_mut().zip(&c[2..34]) {
                    *q = *b as i8;
                }
                BlockQ8_0 {
                    d: f16_at(c, 0),
                    qs,
                }
            })
            .collect();
        Some(Self {
            rows,
            cols,
            blocks: Blocks::Q8_0(blocks),
        })
    }

    /// Quantise f32 weights (`rows × cols`, row-major) to `Q8_0` (llama.cpp's rounding).
    pub fn quantize_q8_0(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || w.len() != rows * cols {
            return None;
        }
        let blocks = w
            .chunks_exact(QK)
            .map(|xb| {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                let mut qs = [0i8; QK];
                for (q, v) in qs.iter_mut().zip(xb) {
                    *q = ((v * id).round_ties_even() as i32).clamp(-128, 127) as i8;
                }
                BlockQ8_0 {
                    d: f16_round(amax / 127.0),
                    qs,
                }
            })
            .collect();
        Some(Self {
            rows,
            cols,
            blocks: Blocks::Q8_0(blocks),
        })
    }

    /// Bytes of weight data read per full pass.
    pub fn bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q4_1(b) => b.len() * std::mem::size_of::<BlockQ4_1>(),
            Blocks::Q8_0(b) => b.len() * std::mem::size_of::<BlockQ8_0>(),
        }
    }

    /// Row `r` dequantised into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        match &self.blocks {
            Blocks::Q4_1(b) => {
                for (blk, o) in b[r * nb..(r + 1) * nb].iter().zip(out.chunks_exact_mut(QK)) {
                    for j in 0..QK / 2 {
                        o[j] = (blk.qs[j] & 0x0F) as f32 * blk.d + blk.m;
                        o[j + QK / 2] = (blk.qs[j] >> 4) as f32 * blk.d + blk.m;
                    }
                }
            }
            Blocks::Q8_0(b) => {
                for (blk, o) in b[r * nb..(r + 1) * nb].iter().zip(out.chunks_exact_mut(QK)) {
                    for (v, q) in o.iter_mut().zip(blk.qs) {
                        *v = q as f32 * blk.d;
                    }
                }
            }
        }
    }

    /// Dot product of row `r` with quantised activations `x` (`cols / 32` blocks).
    #[inline]
    pub fn dot(&self, r: usize, x: &[BlockQ8]) -> f32 {
        let nb = self.cols / QK;
        match &self.blocks {
            Blocks::Q4_1(b) => dot_q4_1(&b[r * nb..(r + 1) * nb], x),
            Blocks::Q8_0(b) => dot_q8_0(&b[r * nb..(r + 1) * nb], x),
        }
    }

    /// Rows `r0..r1` times `n` tokens of quantised activations (`x`, `cols / 32` blocks per
    /// token): `out[(r - r0) · n + t]`. Every value has the bits [`QWeight::dot`] gives.
    pub fn matmul_rows(&self, (r0, r1): (usize, usize), x: &[BlockQ8], n: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        let r1 = r1.min(self.rows);
        if r0 >= r1 || n == 0 || x.len() < n * nb || out.len() < (r1 - r0) * n {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if has_vnni512() {
            // SAFETY: the CPU has AVX-512 F/BW/VNNI, AVX2 and FMA (checked); the sizes were
            // checked above and each block vector holds `rows · nb` blocks.
            unsafe {
                match &self.blocks {
                    Blocks::Q4_1(b) => avx512::matmul(b, nb, (r0, r1), x, n, out, dot_q4_1),
                    Blocks::Q8_0(b) => avx512::matmul(b, nb, (r0, r1), x, n, out, dot_q8_0),
                }
            }
            return;
        }
        self.matmul_rows_dot((r0, r1), x, n, out);
    }

    /// [`QWeight::matmul_rows`] one dot product at a time.
    pub fn matmul_rows_dot(
        &self,
        (r0, r1): (usize, usize),
        x: &[BlockQ8],
        n: usize,
        out: &mut [f32],
    ) {
        let nb = self.cols / QK;
        for (r, o) in (r0..r1.min(self.rows)).zip(out.chunks_exact_mut(n.max(1))) {
            for (t, v) in o.iter_mut().enumerate() {
                *v = self.dot(r, &x[t * nb..(t + 1) * nb]);
            }
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| {
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| {
            has_avx2()
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

static VNNI512_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turn the AVX-512 tiles off (`false`) or back on where the CPU has them: benches compare
/// them with the AVX2 kernel in one process. `STARPILLAR_NO_AVX512=1` turns them off too.
pub fn set_vnni512(enabled: bool) {
    VNNI512_OFF.store(!enabled, std::sync::atomic::Ordering::Relaxed);
}

/// AVX-512 F/BW/VNNI (with AVX2/FMA/F16C), and not turned off: the tile kernels of
/// [`QWeight::matmul_rows`] run.
pub fn has_vnni512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| {
            has_avx2()
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
                && std::env::var_os("STARPILLAR_NO_AVX512").is_none_or(|v| v.is_empty() || v == "0")
        }) && !VNNI512_OFF.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Σ over blocks of `Q4_1` weights × `Q8_1` activations.
#[inline]
pub fn dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above).
        return unsafe { avx2::dot_q4_1(w, x) };
    }
    dot_q4_1_scalar(w, x)
}

/// [`dot_q4_1`] without SIMD.
pub fn dot_q4_1_scalar(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    let mut summs = 0f32;
    for (a, b) in w.iter().zip(x) {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            s += (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32;
            s += (a.qs[j] >> 4) as i32 * b.qs[j + QK / 2] as i32;
        }
        acc = (s as f32).mul_add(a.d * b.d, acc);
        summs = a.m.mul_add(b.s, summs);
    }
    acc + summs
}

/// Σ over blocks of `Q8_0` weights × 8-bit activations.
#[inline]
pub fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above).
        return unsafe { avx2::dot_q8_0(w, x) };
    }
    dot_q8_0_scalar(w, x)
}

/// [`dot_q8_0`] without SIMD.
pub fn dot_q8_0_scalar(w: &[BlockQ8_0], x: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    for (a, b) in w.iter().zip(x) {
        let s: i32 =
            a.qs.iter()
                .zip(b.qs)
                .map(|(p, q)| *p as i32 * q as i32)
                .sum();
        acc = (s as f32).mul_add(a.d * b.d, acc);
    }
    acc
}

/// Σ `k[i]·q[i]` with `k` as f16 bits.
#[inline]
pub fn dot_f16(k: &[u16], q: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && k.len().is_multiple_of(8) {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above).
        return unsafe { avx2::dot_f16(k, q) };
    }
    k.iter()
        .zip(q)
        .map(|(a, b)| f16::from_bits(*a).to_f32() * b)
        .sum()
}

/// `acc[i] += a · v[i]` with `v` as f16 bits.
#[inline]
pub fn axpy_f16(acc: &mut [f32], a: f32, v: &[u16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && v.len().is_multiple_of(8) {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above).
        unsafe { avx2::axpy_f16(acc, a, v) };
        return;
    }
    for (o, x) in acc.iter_mut().zip(v) {
        *o += a * f16::from_bits(*x).to_f32();
    }
}

/// `x` as f16 bits (round to nearest even).
pub fn to_f16_bits(x: &[f32], out: &mut [u16]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(*v).to_bits();
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BlockQ4_1, BlockQ8, BlockQ8_0, QK};

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(x: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(x, 1);
        let mut r = _mm_add_ps(hi, _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// The exact sum of the eight 32-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_i32(x: __m256i) -> i32 {
        let mut r = _mm_add_epi32(_mm256_extracti128_si256(x, 1), _mm256_castsi256_si128(x));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0b01_00_11_10));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0b10_11_00_01));
        _mm_cvtsi128_si32(r)
    }

    /// Unsigned bytes × signed bytes: the exact integer dot product of the 32 pairs.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot_us8(ax: __m256i, sy: __m256i) -> i32 {
        let dot = _mm256_maddubs_epi16(ax, sy);
        hsum_i32(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
        let (mut acc, mut summs) = (0f32, 0f32);
        let low = _mm256_set1_epi8(0x0F);
        for (a, b) in w.iter().zip(x) {
            // SAFETY: `qs` are 16 and 32 bytes long; unaligned loads.
            let (tmp, qy) = unsafe {
                (
                    _mm_loadu_si128(a.qs.as_ptr() as *const __m128i),
                    _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
                )
            };
            let both =
                _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
            let qx = _mm256_and_si256(both, low);
            acc = (dot_us8(qx, qy) as f32).mul_add(a.d * b.d, acc);
            summs = a.m.mul_add(b.s, summs);
        }
        acc + summs
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8]) -> f32 {
        let mut acc = 0f32;
        for (a, b) in w.iter().zip(x) {
            // SAFETY: `qs` are 32 bytes long; unaligned loads.
            let (qx, qy) = unsafe {
                (
                    _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
                )
            };
            // |w| × (x·sign(w)): |w| ≤ 128 and quantised activations stay within ±127, so a
            // pair of products (≤ 32 512) never saturates `maddubs`.
            let ax = _mm256_sign_epi8(qx, qx);
            let sy = _mm256_sign_epi8(qy, qx);
            acc = (dot_us8(ax, sy) as f32).mul_add(a.d * b.d, acc);
        }
        acc
    }

    /// [`super::quantize_row`] with AVX-512: every step is per element (or an exact max / integer
    /// sum), so the bits are the scalar code's.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, AVX2 and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn quantize_row_avx512(x: &[f32], out: &mut [BlockQ8]) {
        let f16r = |v: f32| {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
                _mm_set_ss(v),
            )))
        };
        for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
            // SAFETY: `xb` holds 32 floats.
            let (lo, hi) = unsafe {
                (
                    _mm512_loadu_ps(xb.as_ptr()),
                    _mm512_loadu_ps(xb.as_ptr().add(16)),
                )
            };
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            let d = amax / 127.0;
            let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let rl = _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(lo, id)));
            let rh = _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(hi, id)));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(rl, rh));
            let (mn, mx) = (_mm512_set1_epi32(-128), _mm512_set1_epi32(127));
            let ql = _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(rl, mn), mx));
            let qh = _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(rh, mn), mx));
            // SAFETY: `qs` holds 32 bytes.
            unsafe {
                _mm_storeu_si128(b.qs.as_mut_ptr() as *mut __m128i, ql);
                _mm_storeu_si128(b.qs.as_mut_ptr().add(16) as *mut __m128i, qh);
            }
            b.d = f16r(d);
            b.s = f16r(d * sum as f32);
        }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `k.len()` is a multiple of 8, `q` as long.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(k: &[u16], q: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let n = k.len().min(q.len()) / 8 * 8;
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= both lengths.
            unsafe {
                let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
                let qv = _mm256_loadu_ps(q.as_ptr().add(i));
                acc = _mm256_fmadd_ps(kv, qv, acc);
            }
            i += 8;
        }
        hsum(acc)
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `v.len()` is a multiple of 8, `acc` as long.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(acc: &mut [f32], a: f32, v: &[u16]) {
        let av = _mm256_set1_ps(a);
        let n = v.len().min(acc.len()) / 8 * 8;
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= both lengths.
            unsafe {
                let vv = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
                let p = acc.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(av, vv, _mm256_loadu_ps(p)));
            }
            i += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    /// The AVX-512 quantiser gives the scalar one's bits (ties, zeros, large and tiny values).
    #[test]
    fn quantize_paths_agree() {
        let mut seed = 11u64;
        let mut x: Vec<f32> = (0..32 * 40).map(|_| lcg(&mut seed) * 50.0).collect();
        x[..32].fill(0.0);
        for (i, v) in x[32..64].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) * 0.5; // exact ties after scaling
        }
        x[64..96].iter_mut().for_each(|v| *v *= 1e-30);
        let mut a = vec![BlockQ8::default(); x.len() / QK];
        let mut b = a.clone();
        quantize_row(&x, &mut a);
        quantize_row_scalar(&x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(p.qs, q.qs);
            assert_eq!(
                (p.d.to_bits(), p.s.to_bits()),
                (q.d.to_bits(), q.s.to_bits())
            );
        }
    }

    #[test]
    fn kernels_match_dequantised_dot() {
        let mut seed = 7u64;
        let (rows, cols) = (5, 128);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..cols).map(|_| lcg(&mut seed) * 3.0).collect();
        let mut xq = vec![BlockQ8::default(); cols / QK];
        quantize_row(&x, &mut xq);
        // Q8_0 weights from floats; Q4_1 weights from raw bytes built by hand.
        let q8 = QWeight::quantize_q8_0(&w, rows, cols).expect("shape");
        let mut raw = Vec::new();
        for blk in w.chunks_exact(QK) {
            let (mn, mx) = blk
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let d = (mx - mn) / 15.0;
            raw.extend_from_slice(&f16::from_f32(d).to_le_bytes());
            raw.extend_from_slice(&f16::from_f32(mn).to_le_bytes());
            for j in 0..QK / 2 {
                let q0 = (((blk[j] - mn) / d).round() as u8).min(15);
                let q1 = (((blk[j + 16] - mn) / d).round() as u8).min(15);
                raw.push(q0 | (q1 << 4));
            }
        }
        let q4 = QWeight::from_q4_1(&raw, rows, cols).expect("shape");
        let mut xd = vec![0f32; cols];
        for (b, o) in xq.iter().zip(xd.chunks_exact_mut(QK)) {
            for (v, q) in o.iter_mut().zip(b.qs) {
                *v = q as f32 * b.d;
            }
        }
        for wq in [&q8, &q4] {
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                wq.dequantize_row(r, &mut row);
                let want: f32 = row.iter().zip(&xd).map(|(a, b)| a * b).sum();
                let got = wq.dot(r, &xq);
                assert!(
                    (got - want).abs() < 1e-2 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
        let kb: Vec<u16> = x.iter().map(|v| f16::from_f32(*v).to_bits()).collect();
        let want: f32 = x.iter().map(|v| f16_round(*v) * v).sum();
        assert!((dot_f16(&kb, &x) - want).abs() < 1e-3 * want.abs().max(1.0));
        let mut acc = vec![1f32; cols];
        axpy_f16(&mut acc, 2.0, &kb);
        assert!((acc[3] - (1.0 + 2.0 * f16_round(x[3]))).abs() < 1e-6);
    }
}

/// Seeded random weights and activations for the kernels' unit tests (here, in `qtiles.rs` and
/// in `qamx.rs`).
#[cfg(test)]
pub(crate) mod testdata {
    use super::*;

    /// The next value of a 64-bit LCG (its high 31 bits).
    pub fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Random `Q4_1` and `Q8_0` weights, `rows × cols` (f16-exact scales; Q8_0 values over the
    /// full range, −128 included).
    pub fn weights(seed: &mut u64, rows: usize, cols: usize) -> [QWeight; 2] {
        let nb = rows * cols / QK;
        let q4 = (0..nb)
            .map(|_| {
                let mut qs = [0u8; QK / 2];
                qs.iter_mut().for_each(|q| *q = lcg(seed) as u8);
                BlockQ4_1 {
                    d: f16_round((lcg(seed) % 1000) as f32 / 7e4),
                    m: f16_round(-((lcg(seed) % 1000) as f32) / 3e4),
                    qs,
                }
            })
            .collect();
        let q8 = (0..nb)
            .map(|_| {
                let mut qs = [0i8; QK];
                qs.iter_mut().for_each(|q| *q = lcg(seed) as u8 as i8);
                BlockQ8_0 {
                    d: f16_round((lcg(seed) % 1000) as f32 / 5e4),
                    qs,
                }
            })
            .collect();
        [
            QWeight {
                rows,
                cols,
                blocks: Blocks::Q4_1(q4),
            },
            QWeight {
                rows,
                cols,
                blocks: Blocks::Q8_0(q8),
            },
        ]
    }
}

#[cfg(test)]
mod tile_tests {
    use super::testdata::{lcg, weights};
    use super::*;

    /// Random `Q4_1` and `Q8_0` weights (`rows × cols`) and `n` quantised tokens.
    fn case(
        seed: &mut u64,
        rows: usize,
        cols: usize,
        n: usize,
    ) -> (QWeight, QWeight, Vec<BlockQ8>) {
        let [w4, w8] = weights(seed, rows, cols);
        let xf: Vec<f32> = (0..n * cols)
            .map(|_| (lcg(seed) % 20001) as f32 / 1000.0 - 10.0)
            .collect();
        let mut x = vec![BlockQ8::default(); n * cols / QK];
        quantize_row(&xf, &mut x);
        (w4, w8, x)
    }

    /// Every path (plain VNNI tiles, AVX2 dot, scalar reference) on odd shapes gives the same
    /// bits (whole-block numerics).
    #[test]
    fn matmul_paths_agree() {
        let seed0 = 20261125u64;
        println!(
            "seed {seed0}, vnni512 {}, avx2 {}",
            has_vnni512(),
            has_avx2()
        );
        let mut seed = seed0;
        for &(rows, cols, n) in &[
            (13, 64, 1),
            (16, 96, 1),
            (11, 128, 3),
            (9, 32, 2),
            (24, 576, 17),
            (7, 160, 5),
            (8, 32, 1),
            (10, 1536, 2),
        ] {
            let (w4, w8, x) = case(&mut seed, rows, cols, n);
            let nb = cols / QK;
            for w in [&w4, &w8] {
                for (r0, r1) in [(0, rows), (1, rows - 1), (3, rows)] {
                    let mut tiles = vec![f32::NAN; (r1 - r0) * n];
                    let mut dots = vec![f32::NAN; (r1 - r0) * n];
                    w.matmul_rows((r0, r1), &x, n, &mut tiles);
                    w.matmul_rows_dot((r0, r1), &x, n, &mut dots);
                    for (i, (a, b)) in tiles.iter().zip(&dots).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{rows}x{cols} n={n} [{i}]: {a} vs {b}"
                        );
                    }
                    for (i, v) in dots.iter().enumerate() {
                        let (r, t) = (r0 + i / n, i % n);
                        let xt = &x[t * nb..(t + 1) * nb];
                        let want = match &w.blocks {
                            Blocks::Q4_1(b) => dot_q4_1_scalar(&b[r * nb..(r + 1) * nb], xt),
                            Blocks::Q8_0(b) => dot_q8_0_scalar(&b[r * nb..(r + 1) * nb], xt),
                        };
                        assert_eq!(
                            v.to_bits(),
                            want.to_bits(),
                            "{rows}x{cols} n={n} r={r} t={t}: {v} vs scalar {want}"
                        );
                    }
                }
            }
        }
    }
}
