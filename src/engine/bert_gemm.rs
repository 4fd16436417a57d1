//! The bf16 matrix product of the BERT CPU encoder ([`super::bert_bf16`]): `y = x·Wᵀ + b` with
//! W and x rounded to bf16 (round to nearest even) and every product summed in f32 by AVX-512
//! BF16's `vdpbf16ps`. W is packed once into panels of [`NR`] output columns: for each pair
//! of input columns, the 64 rows' two values side by side, so one 512-bit load feeds 16
//! outputs × 2 inputs. A tile of up to [`MR`] tokens × one panel keeps its 24 sums in
//! registers for the whole input width; panels go outermost so a panel stays in cache while
//! every token of a chunk passes over it. With AMX-BF16 ([`super::bert_amx`]) tiles of 16
//! tokens take the place of the register tiles. Without AVX-512 BF16 (or with
//! `STARPILLAR_SIMD=scalar`) a portable loop computes the same products.

use rayon::prelude::*;

/// Output columns per packed panel (four 16-lane registers).
pub const NR: usize = 64;
/// Tokens per register tile.
pub const MR: usize = 6;
/// Tokens per cache chunk (their bf16 rows stay in L2 while the panels pass).
const CHUNK: usize = 192;

/// `x` rounded to the nearest bf16 (ties to even); NaN stays NaN.
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = ((b >> 16) & 1) + 0x7FFF;
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline]
pub fn bf16_value(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Round every value of `x` to bf16 into `out` (same length).
pub fn to_bf16(x: &[f32], out: &mut [u16]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = bf16_bits(*v);
    }
}

/// Whether the AVX-512 BF16 kernel may run here.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            super::qmatmul::Isa::current() >= super::qmatmul::Isa::Avx512Vnni
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A weight matrix (`rows` outputs × `cols` inputs) in bf16 panels.
pub struct PackedBf16 {
    rows: usize,
    cols: usize,
    /// `[rows/NR][cols/2][NR][2]`.
    data: Vec<u16>,
}

impl PackedBf16 {
    /// Pack the row-major f32 matrix `w`; `rows` must be a multiple of [`NR`], `cols` even.
    pub fn new(w: &[f32], rows: usize, cols: usize) -> Result<Self, String> {
        if !rows.is_multiple_of(NR) || !cols.is_multiple_of(2) || w.len() != rows * cols {
            return Err(format!(
                "cannot pack a {rows}×{cols} matrix of {} values",
                w.len()
            ));
        }
        let pairs = cols / 2;
        let mut data = vec![0u16; rows * cols];
        for (r, row) in w.chunks_exact(cols).enumerate() {
            let (panel, c) = (r / NR, r % NR);
            for (p, two) in row.chunks_exact(2).enumerate() {
                let at = ((panel * pairs + p) * NR + c) * 2;
                data[at] = bf16_bits(two[0]);
                data[at + 1] = bf16_bits(two[1]);
            }
        }
        Ok(Self { rows, cols, data })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The bf16 weight of output `r`, input `c`.
    fn weight(&self, r: usize, c: usize) -> f32 {
        let at = (((r / NR) * (self.cols / 2) + c / 2) * NR + r % NR) * 2 + c % 2;
        bf16_value(self.data[at])
    }
}

/// A pointer shared by tasks that write disjoint columns of one buffer.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes only its own panel's columns.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// [`Out`] for bf16 outputs.
#[derive(Clone, Copy)]
struct OutBf16(*mut u16);
// SAFETY: as for `Out`.
unsafe impl Send for OutBf16 {}
unsafe impl Sync for OutBf16 {}

/// `y[t] = W·x[t] + bias` for the `tokens` bf16 rows of `x` (`cols` wide); `y` rows are `rows`
/// wide. Panels are spread over the rayon pool when it has several threads.
pub fn matmul(w: &PackedBf16, x: &[u16], tokens: usize, bias: &[f32], y: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    assert!(x.len() >= tokens * k && y.len() >= tokens * n && bias.len() == n);
    if !available() {
        return matmul_scalar(w, x, tokens, bias, y);
    }
    let out = Out(y.as_mut_ptr());
    if amx(w) {
        for_panels(w, tokens, &|p: usize| {
            let o = out;
            let b = &bias[p * NR..(p + 1) * NR];
            let emit = |t: usize, sums: &[f32]| {
                // SAFETY: row t < tokens, columns of panel p only (disjoint between tasks).
                let row = unsafe { std::slice::from_raw_parts_mut(o.0.add(t * n + p * NR), NR) };
                for ((y, s), b) in row.iter_mut().zip(sums).zip(b) {
                    *y = s + b;
                }
            };
            // SAFETY: AMX is available (`amx`).
            unsafe { super::bert_amx::panel(&w.data[p * NR * k..], k, x, tokens, emit) };
        });
        return;
    }
    for c0 in (0..tokens).step_by(CHUNK) {
        let c1 = (c0 + CHUNK).min(tokens);
        for_panels(w, tokens, &|p: usize| {
            let o = out;
            // SAFETY: AVX-512 BF16 is present (`available`); bounds asserted above; the
            // panel writes columns p·NR..(p+1)·NR of rows c0..c1 only.
            unsafe { panel(w, x, (c0, c1), p, bias, o.0) };
        });
    }
}

/// `y = bf16(GELU(W·x + b))`: the FFN's first product, rounded for its second. With AMX the
/// GELU runs on each tile's sums ([`super::bert_gelu`]); otherwise the f32 product goes
/// through `scratch`.
pub fn matmul_gelu(
    w: &PackedBf16,
    x: &[u16],
    tokens: usize,
    bias: &[f32],
    y: &mut [u16],
    scratch: &mut Vec<f32>,
) {
    let (n, k) = (w.rows, w.cols);
    assert!(x.len() >= tokens * k && y.len() >= tokens * n && bias.len() == n);
    if available() && amx(w) {
        let out = OutBf16(y.as_mut_ptr());
        for_panels(w, tokens, &|p: usize| {
            let o = out;
            let b = &bias[p * NR..(p + 1) * NR];
            let emit = |t: usize, sums: &[f32]| {
                // SAFETY: row t < tokens, columns of panel p only (disjoint between tasks).
                let row = unsafe { std::slice::from_raw_parts_mut(o.0.add(t * n + p * NR), NR) };
                super::bert_gelu::gelu_bf16(sums, b, row);
            };
            // SAFETY: AMX is available (`amx`).
            unsafe { super::bert_amx::panel(&w.data[p * NR * k..], k, x, tokens, emit) };
        });
        return;
    }
    scratch.resize(tokens * n, 0.0);
    matmul(w, x, tokens, bias, scratch);
    super::cpu_ops::gelu(&mut scratch[..tokens * n]);
    to_bf16(&scratch[..tokens * n], &mut y[..tokens * n]);
}

/// Whether `w` takes the AMX tiles.
fn amx(w: &PackedBf16) -> bool {
    super::bert_amx::available() && w.cols.is_multiple_of(super::bert_amx::STEP)
}

/// Run `run(panel)` for every panel of `w`, over the rayon pool when it has several threads
/// and the product is large enough.
fn for_panels(w: &PackedBf16, tokens: usize, run: &(dyn Fn(usize) + Sync)) {
    let panels = w.rows / NR;
    if rayon::current_num_threads() > 1 && tokens * w.rows * w.cols >= 1 << 20 {
        (0..panels).into_par_iter().for_each(run);
    } else {
        (0..panels).for_each(run);
    }
}

/// One panel over the tokens `t0..t1`.
///
/// # Safety
/// AVX-512 BF16 is present; `x` holds `t1` rows of `w.cols`, `y` `t1` rows of `w.rows`.
#[cfg(target_arch = "x86_64")]
unsafe fn panel(
    w: &PackedBf16,
    x: &[u16],
    (t0, t1): (usize, usize),
    p: usize,
    bias: &[f32],
    y: *mut f32,
) {
    let (n, k) = (w.rows, w.cols);
    let wp = w.data[p * NR * k..].as_ptr();
    let b = bias[p * NR..].as_ptr();
    let mut t = t0;
    while t < t1 {
        let m = (t1 - t).min(MR);
        let xr = x[t * k..].as_ptr();
        // SAFETY: caller's contract; rows t..t+m exist in x and y.
        unsafe {
            let yr = y.add(t * n + p * NR);
            match m {
                6 => tile::<6>(xr, k, wp, b, yr, n),
                5 => tile::<5>(xr, k, wp, b, yr, n),
                4 => tile::<4>(xr, k, wp, b, yr, n),
                3 => tile::<3>(xr, k, wp, b, yr, n),
                2 => tile::<2>(xr, k, wp, b, yr, n),
                _ => tile::<1>(xr, k, wp, b, yr, n),
            }
        }
        t += m;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn panel(_: &PackedBf16, _: &[u16], _: (usize, usize), _: usize, _: &[f32], _: *mut f32) {}

/// `M` tokens × one panel: `y[r][0..64] = bias + Σ_k x[r][k]·W[k]`.
///
/// # Safety
/// `x` points at `M` rows of `k` bf16 values (stride `k`), `w` at a panel of `k/2` pairs,
/// `bias` at 64 floats, `y` at `M` rows of 64 writable floats (stride `ys`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile<const M: usize>(
    x: *const u16,
    k: usize,
    w: *const u16,
    bias: *const f32,
    y: *mut f32,
    ys: usize,
) {
    use std::arch::x86_64::*;
    use std::mem::transmute;
    let mut acc = [[_mm512_setzero_ps(); 4]; M];
    for p in 0..k / 2 {
        // SAFETY: within the panel and the rows (caller's contract).
        unsafe {
            let wp = w.add(p * 2 * NR);
            let w0: __m512bh = transmute(_mm512_loadu_si512(wp.cast()));
            let w1: __m512bh = transmute(_mm512_loadu_si512(wp.add(32).cast()));
            let w2: __m512bh = transmute(_mm512_loadu_si512(wp.add(64).cast()));
            let w3: __m512bh = transmute(_mm512_loadu_si512(wp.add(96).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = x.add(r * k + 2 * p).cast::<i32>().read_unaligned();
                let a: __m512bh = transmute(_mm512_set1_epi32(pair));
                acc[0] = _mm512_dpbf16_ps(acc[0], a, w0);
                acc[1] = _mm512_dpbf16_ps(acc[1], a, w1);
                acc[2] = _mm512_dpbf16_ps(acc[2], a, w2);
                acc[3] = _mm512_dpbf16_ps(acc[3], a, w3);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (j, v) in acc.iter().enumerate() {
            // SAFETY: as above.
            unsafe {
                let b = _mm512_loadu_ps(bias.add(16 * j));
                _mm512_storeu_ps(y.add(r * ys + 16 * j), _mm512_add_ps(*v, b));
            }
        }
    }
}

/// The portable product: the same bf16 values, summed in f32.
pub fn matmul_scalar(w: &PackedBf16, x: &[u16], tokens: usize, bias: &[f32], y: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    for t in 0..tokens {
        let xr = &x[t * k..(t + 1) * k];
        for (r, out) in y[t * n..(t + 1) * n].iter_mut().enumerate() {
            let mut s = 0f32;
            for (c, &v) in xr.iter().enumerate() {
                s = bf16_value(v).mul_add(w.weight(r, c), s);
            }
            *out = s + bias[r];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to the even 1.0.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16_value(bf16_bits(-2.5)), -2.5);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn the_kernel_matches_the_portable_product() {
        let mut s = 12345u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // k = 96 takes the AMX tiles where the CPU has them; k = 50 the AVX-512 kernel.
        for (n, k, tokens) in [1usize, 5, 6, 7, 13, 16, 17, 200]
            .into_iter()
            .flat_map(|t| [(128, 96, t), (64, 50, t)])
        {
            let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let packed = PackedBf16::new(&w, n, k).expect("packs");
            let xf: Vec<f32> = (0..tokens * k).map(|_| rnd() * 4.0).collect();
            let mut x = vec![0u16; xf.len()];
            to_bf16(&xf, &mut x);
            let mut fast = vec![0f32; tokens * n];
            let mut slow = vec![0f32; tokens * n];
            matmul(&packed, &x, tokens, &bias, &mut fast);
            matmul_scalar(&packed, &x, tokens, &bias, &mut slow);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!((a - b).abs() < 1e-4, "tokens {tokens} [{i}]: {a} vs {b}");
            }
            // The fused GELU epilogue: GELU of the same sums, rounded to bf16.
            let mut fused = vec![0u16; tokens * n];
            matmul_gelu(&packed, &x, tokens, &bias, &mut fused, &mut Vec::new());
            for (i, (g, s)) in fused.iter().zip(&slow).enumerate() {
                let want = super::super::bert_gelu::gelu(*s);
                let got = bf16_value(*g);
                assert!(
                    (got - want).abs() <= want.abs() / 128.0 + 1e-4,
                    "[{i}] {got} {want}"
                );
            }
            // And the bf16 product is close to the f32 one.
            let exact: f32 = (0..k).map(|c| xf[c] * w[c]).sum::<f32>() + bias[0];
            assert!((slow[0] - exact).abs() < 0.05, "{} vs {exact}", slow[0]);
        }
    }
}
