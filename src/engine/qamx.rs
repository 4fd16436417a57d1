//! Intel AMX int8 tiles for [`TiledWeight::matmul`] on prompt chunks (many tokens at once).
//!
//! A 16-row weight group's block (32 columns), unpacked to signed (`Q8_0`) or unsigned
//! (`Q4_1` nibbles) bytes, is exactly an AMX right-hand tile in VNNI layout: row `j` holds
//! elements `4j..4j+4` of the 16 weight rows. The activations of 16 tokens for that block
//! (`BlockQ8::qs`, packed once per call with their scales) are the left-hand tile, and one
//! `tdpbsud` (`Q4_1`) or `tdpbssd` (`Q8_0`) gives the exact integer block sums of 16 tokens ×
//! 16 rows. Up to 2 × 2 such products (32 tokens × 32 rows) share each tile load; their sums
//! go to a small buffer and are scaled in AVX-512 with the whole-block numerics of the scalar
//! reference — per block `acc = fma(isum as f32, d_w·d_x, acc)`, `summ = fma(m_w, s_x, summ)`,
//! result `acc + summ` (`Q8_0`: `acc`) — so the bits are those of every other kernel.
//!
//! Linux grants the tile state per process on request ([`super::super::super::bert_amx`]);
//! where AMX is missing or refused, or `STARPILLAR_NO_AMX=1`, [`matmul`] declines and the
//! caller runs the VNNI tiles.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{BlockQ8, GROUP, QK, TiledWeight};

/// Tokens per left-hand tile.
const TOK: usize = 16;

/// Fewest tokens for which [`TiledWeight::matmul`] takes the AMX tiles: on SmolLM2's shapes
/// (1 thread) AMX and the VNNI tiles break even at 16 tokens, AMX is ×1.05 at 24, ×1.2 at 32
/// and ×1.35 at 128.
pub const MIN_TOKENS: usize = 24;

static OFF: AtomicBool = AtomicBool::new(false);

/// Turn the AMX tiles off (`false`) or back on where the CPU has them (benches and tests
/// compare both paths in one process).
pub fn set_enabled(on: bool) {
    OFF.store(!on, Ordering::Relaxed);
}

/// Whether the AMX int8 tiles may run: the CPU has AMX-TILE/INT8 and AVX-512 F/BW/VL, the OS
/// granted the tile state, `STARPILLAR_NO_AMX` is unset (or `0`), and [`set_enabled`] did not
/// turn them off.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect) && !OFF.load(Ordering::Relaxed)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if std::env::var_os("STARPILLAR_NO_AMX").is_some_and(|v| !v.is_empty() && v != "0") {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
    tile && int8
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("fma")
        && super::super::super::bert_amx::request_tile_state()
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// Rows `r0..r1` (`r0` a multiple of 16, `r1 ≤ rows`) × `n` tokens (`x`, `nb` blocks each)
/// into `out[t · ld + (r − r0)]`, as [`TiledWeight::matmul`]; false (nothing written) when
/// AMX is not [`available`] or the sizes do not fit.
pub fn matmul(
    w: &TiledWeight,
    nb: usize,
    (r0, r1): (usize, usize),
    x: &[BlockQ8],
    n: usize,
    out: &mut [f32],
    ld: usize,
) -> bool {
    let fits = r0 < r1
        && r1 <= w.rows
        && r0.is_multiple_of(GROUP)
        && n > 0
        && nb > 0
        && nb == w.cols / QK
        && x.len() >= n * nb
        && ld >= r1 - r0
        && out.len() >= (n - 1) * ld + (r1 - r0);
    if !fits || !available() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AMX and AVX-512 are available (checked) and the sizes fit (checked).
        unsafe { kernel::matmul(w, nb, (r0, r1), x, n, out, ld) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::asm;
    use std::arch::x86_64::*;

    use super::super::{BlockQ8, GROUP, GroupQ4_1, GroupQ8_0, Groups, TiledWeight};
    use super::TOK;

    /// Blocks per chunk: the tile products of one chunk are issued before the sums of the
    /// previous one are scaled (measured best of 1, 2, 4, 8 on Sapphire Rapids).
    const KB: usize = 2;

    /// One group's block unpacked: the right-hand tile (8 rows × 16 weight rows × 4 bytes)
    /// and the 16 rows' scales as f32.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct BTile {
        q: [[u8; 64]; 8],
        d: [f32; GROUP],
        m: [f32; GROUP],
    }

    /// Sums of one block: up to 2 × 2 tiles of 16 tokens × 16 rows.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct CTiles([[[i32; GROUP]; TOK]; 4]);

    /// The tile configuration: tmm0–3 sums (16 × 64 bytes), tmm4–5 tokens (16 × 32 bytes),
    /// tmm6–7 weights (8 × 64 bytes).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    impl Config {
        fn new() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            let shape = [
                (16, 64),
                (16, 64),
                (16, 64),
                (16, 64),
                (16, 32),
                (16, 32),
                (8, 64),
                (8, 64),
            ];
            for (t, (rows, colsb)) in shape.into_iter().enumerate() {
                c[16 + 2 * t] = colsb;
                c[48 + t] = rows;
            }
            Self(c)
        }
    }

    macro_rules! tdp {
        ($signed:expr, $c:literal, $a:literal, $b:literal) => {
            if $signed {
                asm!(
                    concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b),
                    options(nostack, nomem)
                )
            } else {
                asm!(
                    concat!("tdpbsud tmm", $c, ", tmm", $a, ", tmm", $b),
                    options(nostack, nomem)
                )
            }
        };
    }

    macro_rules! tload {
        ($t:literal, $p:expr, $s:expr) => {
            asm!(
                concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
                p = in(reg) $p,
                s = in(reg) $s,
                options(nostack, readonly)
            )
        };
    }

    macro_rules! tstore {
        ($t:literal, $p:expr) => {
            asm!(
                concat!("tilestored [{p} + {s}*1], tmm", $t),
                p = in(reg) $p,
                s = in(reg) 64usize,
                options(nostack)
            )
        };
    }

    /// One block: `T` token tiles (`a`, stride `sa` bytes) × `G` weight tiles (`b`; `Q4`:
    /// unsigned nibbles, else signed bytes) into `c` (tile `ti · G + gi`).
    ///
    /// # Safety
    /// Tiles configured by [`Config`]; `a[..T]` point at 16 rows of 32 readable bytes at
    /// stride `sa`, `b[..G]` at 512 readable bytes.
    #[inline(always)]
    unsafe fn block<const T: usize, const G: usize, const Q4: bool>(
        a: [*const i8; 2],
        sa: usize,
        b: [*const u8; 2],
        c: &mut CTiles,
    ) {
        let c = c.0.as_mut_ptr() as *mut u8;
        // SAFETY: the caller's contract; `c` holds four 1 KiB tiles.
        unsafe {
            asm!("tilezero tmm0", options(nostack, nomem));
            tload!(4, a[0], sa);
            tload!(6, b[0], 64usize);
            if G == 2 {
                asm!("tilezero tmm1", options(nostack, nomem));
                tload!(7, b[1], 64usize);
            }
            if T == 2 {
                if G == 1 {
                    asm!("tilezero tmm1", options(nostack, nomem));
                } else {
                    asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                }
                tload!(5, a[1], sa);
            }
            tdp!(!Q4, "0", "4", "6");
            if G == 2 {
                tdp!(!Q4, "1", "4", "7");
            }
            if T == 2 && G == 1 {
                tdp!(!Q4, "1", "5", "6");
            }
            if T == 2 && G == 2 {
                tdp!(!Q4, "2", "5", "6");
                tdp!(!Q4, "3", "5", "7");
            }
            tstore!(0, c);
            if T * G >= 2 {
                tstore!(1, c.add(1024));
            }
            if T * G == 4 {
                tstore!(2, c.add(2048));
                tstore!(3, c.add(3072));
            }
        }
    }

    /// `Q4_1` group blocks unpacked: low nibbles → tile rows 0–3, high nibbles → rows 4–7.
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    fn unpack_q4_1(g: &[GroupQ4_1], out: &mut [BTile]) {
        let low = _mm512_set1_epi8(0x0F);
        for (o, blk) in out.iter_mut().zip(g) {
            for k in 0..4 {
                // SAFETY: 64 aligned bytes each.
                unsafe {
                    let raw = _mm512_load_si512(blk.q[k].as_ptr() as *const __m512i);
                    _mm512_store_si512(
                        o.q[k].as_mut_ptr() as *mut __m512i,
                        _mm512_and_si512(raw, low),
                    );
                    _mm512_store_si512(
                        o.q[k + 4].as_mut_ptr() as *mut __m512i,
                        _mm512_and_si512(_mm512_srli_epi16(raw, 4), low),
                    );
                }
            }
            // SAFETY: 16 aligned f16 / f32 each.
            unsafe {
                let d = _mm512_cvtph_ps(_mm256_load_si256(blk.d.as_ptr() as *const __m256i));
                let m = _mm512_cvtph_ps(_mm256_load_si256(blk.m.as_ptr() as *const __m256i));
                _mm512_store_ps(o.d.as_mut_ptr(), d);
                _mm512_store_ps(o.m.as_mut_ptr(), m);
            }
        }
    }

    /// `Q8_0` group blocks unpacked: `w + 128` back to signed bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn unpack_q8_0(g: &[GroupQ8_0], out: &mut [BTile]) {
        let flip = _mm512_set1_epi8(-128);
        for (o, blk) in out.iter_mut().zip(g) {
            for j in 0..8 {
                // SAFETY: 64 aligned bytes each.
                unsafe {
                    let raw = _mm512_load_si512(blk.q[j].as_ptr() as *const __m512i);
                    _mm512_store_si512(
                        o.q[j].as_mut_ptr() as *mut __m512i,
                        _mm512_xor_si512(raw, flip),
                    );
                }
            }
            o.d = blk.d;
        }
    }

    /// One block of 16 tokens packed: the left-hand tile (16 × 32 bytes) and the tokens'
    /// scales (zero for padding tokens).
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct ATile {
        q: [[i8; 32]; TOK],
        d: [f32; TOK],
        s: [f32; TOK],
    }

    /// Running sums of up to 2 × 2 tiles (`acc`, `summ` per token row).
    #[repr(C, align(64))]
    struct Acc([[[f32; GROUP]; TOK]; 4], [[[f32; GROUP]; TOK]; 4]);

    /// Issue the tile products of blocks `c0..c0 + kb` into `c`.
    ///
    /// # Safety
    /// Tiles configured; `a[..T]` / `b[..G]` runs of at least `c0 + kb` tiles.
    #[inline(always)]
    unsafe fn issue<const T: usize, const G: usize, const Q4: bool>(
        a: [&[ATile]; 2],
        b: [&[BTile]; 2],
        c0: usize,
        c: &mut [CTiles],
    ) {
        for (k, ck) in c.iter_mut().enumerate() {
            let bi = c0 + k;
            let ap = [
                a[0][bi].q.as_ptr() as *const i8,
                a[1][bi].q.as_ptr() as *const i8,
            ];
            let bp = [
                b[0][bi].q.as_ptr() as *const u8,
                b[1][bi].q.as_ptr() as *const u8,
            ];
            // SAFETY: the caller's contract; each tile is 512 bytes at stride 32 / 64.
            unsafe { block::<T, G, Q4>(ap, 32, bp, ck) };
        }
    }

    /// Scale the sums `c` of blocks `c0..c0 + c.len()` into the running sums, four token rows
    /// at a time (each weight scale vector loaded once for four tokens).
    // The indices address several parallel arrays (tiles, scales, sums) at once.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn scale<const T: usize, const G: usize, const Q4: bool>(
        a: [&[ATile]; 2],
        b: [&[BTile]; 2],
        c0: usize,
        c: &[CTiles],
        m: [usize; 2],
        acc: &mut Acc,
    ) {
        for ti in 0..T {
            for gi in 0..G {
                let ci = ti * G + gi;
                for q in (0..m[ti]).step_by(4) {
                    // SAFETY: 16 aligned floats / ints each (the structs are 64-aligned);
                    // AVX-512F is enabled by every caller.
                    unsafe {
                        let mut va = [_mm512_setzero_ps(); 4];
                        let mut vs = [_mm512_setzero_ps(); 4];
                        for r in 0..4 {
                            va[r] = _mm512_load_ps(acc.0[ci][q + r].as_ptr());
                            vs[r] = _mm512_load_ps(acc.1[ci][q + r].as_ptr());
                        }
                        for (k, ck) in c.iter().enumerate() {
                            let (at, bt) = (&a[ti][c0 + k], &b[gi][c0 + k]);
                            let dw = _mm512_load_ps(bt.d.as_ptr());
                            let mw = _mm512_load_ps(bt.m.as_ptr());
                            for r in 0..4 {
                                let i = q + r;
                                let isum =
                                    _mm512_load_si512(ck.0[ci][i].as_ptr() as *const __m512i);
                                let d = _mm512_mul_ps(dw, _mm512_set1_ps(at.d[i]));
                                va[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, va[r]);
                                if Q4 {
                                    vs[r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(at.s[i]), vs[r]);
                                }
                            }
                        }
                        for r in 0..4 {
                            _mm512_store_ps(acc.0[ci][q + r].as_mut_ptr(), va[r]);
                            _mm512_store_ps(acc.1[ci][q + r].as_mut_ptr(), vs[r]);
                        }
                    }
                }
            }
        }
    }

    /// One `T`×`G` tile block (token tiles `a`, unpacked weight groups `b`) through all `nb`
    /// blocks, tile products of the next chunk issued before the current one is scaled; the
    /// results of the first `m[ti]` tokens of each token tile and the first `rows` rows into
    /// `out` (token `t` of tile `ti` at `out[(16·ti + t) · ld + 16·gi + j]`).
    ///
    /// # Safety
    /// Tiles configured; AVX-512 F/BW/VL and FMA present; `a[..T]`, `b[..G]` hold `nb` tiles.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn tile_block<const T: usize, const G: usize, const Q4: bool>(
        a: [&[ATile]; 2],
        b: [&[BTile]; 2],
        (m, rows): ([usize; 2], usize),
        cbuf: &mut [CTiles],
        acc: &mut Acc,
        out: &mut [f32],
        ld: usize,
    ) {
        let nb = a[0].len();
        let kbmax = cbuf.len() / 2;
        let (c_even, c_odd) = cbuf.split_at_mut(kbmax);
        let slots = [c_even, c_odd];
        acc.0 = [[[0.0; GROUP]; TOK]; 4];
        acc.1 = [[[0.0; GROUP]; TOK]; 4];
        let kb0 = nb.min(kbmax);
        // SAFETY: the caller's contract.
        unsafe { issue::<T, G, Q4>(a, b, 0, &mut slots[0][..kb0]) };
        let (mut c0, mut kb, mut s) = (0, kb0, 0);
        while c0 < nb {
            let n0 = c0 + kb;
            let nk = (nb - n0).min(kbmax);
            if nk > 0 {
                // SAFETY: as above.
                unsafe { issue::<T, G, Q4>(a, b, n0, &mut slots[1 - s][..nk]) };
            }
            scale::<T, G, Q4>(a, b, c0, &slots[s][..kb], m, acc);
            (c0, kb, s) = (n0, nk, 1 - s);
        }
        for ti in 0..T {
            for gi in 0..G {
                let ci = ti * G + gi;
                let r = gi * GROUP;
                if r >= rows {
                    continue;
                }
                let k = (rows - r).min(GROUP);
                for i in 0..m[ti] {
                    let dst = &mut out[(ti * TOK + i) * ld + r..][..k];
                    for (j, o) in dst.iter_mut().enumerate() {
                        *o = if Q4 {
                            acc.0[ci][i][j] + acc.1[ci][i][j]
                        } else {
                            acc.0[ci][i][j]
                        };
                    }
                }
            }
        }
    }

    /// See [`super::matmul`].
    ///
    /// # Safety
    /// AMX-INT8 granted, AVX-512 F/BW/VL, FMA, F16C present; `r0` a multiple of 16,
    /// `r0 < r1 ≤ rows`, `x` holds `n · nb` blocks, `out` `(n − 1) · ld + (r1 − r0)` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn matmul(
        w: &TiledWeight,
        nb: usize,
        (r0, r1): (usize, usize),
        x: &[BlockQ8],
        n: usize,
        out: &mut [f32],
        ld: usize,
    ) {
        let tiles = n.div_ceil(TOK);
        let mut apk = vec![
            ATile {
                q: [[0; 32]; TOK],
                d: [0.0; TOK],
                s: [0.0; TOK],
            };
            tiles * nb
        ];
        for (t, xt) in x[..n * nb].chunks_exact(nb).enumerate() {
            let (tt, i) = (t / TOK, t % TOK);
            for (a, xb) in apk[tt * nb..(tt + 1) * nb].iter_mut().zip(xt) {
                a.q[i] = xb.qs;
                a.d[i] = xb.d;
                a.s[i] = xb.s;
            }
        }
        let zero = BTile {
            q: [[0; 64]; 8],
            d: [0.0; GROUP],
            m: [0.0; GROUP],
        };
        let mut bt = vec![zero; 2 * nb];
        let kb = KB;
        let mut cbuf = vec![CTiles([[[0; GROUP]; TOK]; 4]); 2 * kb];
        let mut acc = Box::new(Acc([[[0.0; GROUP]; TOK]; 4], [[[0.0; GROUP]; TOK]; 4]));
        let config = Config::new();
        // SAFETY: a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly)) };
        let q4 = matches!(w.groups, Groups::Q4_1(_));
        let (g0, g1) = (r0 / GROUP, r1.div_ceil(GROUP));
        let mut g = g0;
        while g < g1 {
            let gn = (g1 - g).min(2);
            match &w.groups {
                Groups::Q4_1(gs) => unpack_q4_1(&gs[g * nb..(g + gn) * nb], &mut bt),
                Groups::Q8_0(gs) => unpack_q8_0(&gs[g * nb..(g + gn) * nb], &mut bt),
            }
            let bs = [&bt[..nb], &bt[(gn - 1) * nb..gn * nb]];
            let rows = r1 - g * GROUP;
            let mut tt = 0;
            while tt < tiles {
                let tn = (tiles - tt).min(2);
                let at = |i: usize| {
                    let t = (tt + i).min(tiles - 1);
                    &apk[t * nb..(t + 1) * nb]
                };
                let a = [at(0), at(1)];
                let m = [(n - tt * TOK).min(TOK), (n - (tt + tn - 1) * TOK).min(TOK)];
                let o = &mut out[tt * TOK * ld + g * GROUP - r0..];
                let args = (m, rows);
                let c = &mut cbuf[..];
                // SAFETY: tiles configured; `a` and `bs` hold `nb` tiles each.
                unsafe {
                    match (tn, gn, q4) {
                        (2, 2, true) => tile_block::<2, 2, true>(a, bs, args, c, &mut acc, o, ld),
                        (2, 1, true) => tile_block::<2, 1, true>(a, bs, args, c, &mut acc, o, ld),
                        (1, 2, true) => tile_block::<1, 2, true>(a, bs, args, c, &mut acc, o, ld),
                        (_, _, true) => tile_block::<1, 1, true>(a, bs, args, c, &mut acc, o, ld),
                        (2, 2, false) => tile_block::<2, 2, false>(a, bs, args, c, &mut acc, o, ld),
                        (2, 1, false) => tile_block::<2, 1, false>(a, bs, args, c, &mut acc, o, ld),
                        (1, 2, false) => tile_block::<1, 2, false>(a, bs, args, c, &mut acc, o, ld),
                        (_, _, false) => tile_block::<1, 1, false>(a, bs, args, c, &mut acc, o, ld),
                    }
                }
                tt += tn;
            }
            g += gn;
        }
        // SAFETY: releases this thread's tile state.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::testdata::{lcg, weights};
    use super::super::super::{BlockQ4_1, BlockQ8_0, Blocks, QK, QWeight, quantize_row};
    use super::*;

    /// The whole-block numerics, written out: exact block sums, one FMA per block.
    fn reference_q4_1(w: &[BlockQ4_1], x: &[BlockQ8]) -> f32 {
        let (mut acc, mut summ) = (0f32, 0f32);
        for (a, b) in w.iter().zip(x) {
            let mut isum = 0i32;
            for j in 0..QK / 2 {
                isum += (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32;
                isum += (a.qs[j] >> 4) as i32 * b.qs[j + QK / 2] as i32;
            }
            acc = (isum as f32).mul_add(a.d * b.d, acc);
            summ = a.m.mul_add(b.s, summ);
        }
        acc + summ
    }

    fn reference_q8_0(w: &[BlockQ8_0], x: &[BlockQ8]) -> f32 {
        let mut acc = 0f32;
        for (a, b) in w.iter().zip(x) {
            let isum: i32 =
                a.qs.iter()
                    .zip(b.qs)
                    .map(|(p, q)| *p as i32 * q as i32)
                    .sum();
            acc = (isum as f32).mul_add(a.d * b.d, acc);
        }
        acc
    }

    /// The same product in f64 from dequantised values (checks the reference itself).
    fn dequant_dot(w: &QWeight, r: usize, x: &[BlockQ8]) -> f64 {
        let mut row = vec![0f32; w.cols];
        w.dequantize_row(r, &mut row);
        let xs = x
            .iter()
            .flat_map(|b| b.qs.iter().map(move |q| *q as f64 * b.d as f64));
        row.iter().zip(xs).map(|(a, b)| *a as f64 * b).sum()
    }

    /// AMX tiles give the reference's bits on odd shapes (short token tiles, a short last
    /// group, row ranges that start past the first group), for both weight types.
    #[test]
    fn amx_tiles_match_the_whole_block_reference_bit_for_bit() {
        let seed0 = 20261126u64;
        println!("seed {seed0}, amx {}", available());
        let mut seed = seed0;
        let mut checked = 0usize;
        for &nb in &[1usize, 18, 48] {
            for &rows in &[16usize, 48, 50] {
                let cols = nb * QK;
                let ws = weights(&mut seed, rows, cols);
                for &n in &[1usize, 15, 16, 17, 33] {
                    let xf: Vec<f32> = (0..n * cols)
                        .map(|_| (lcg(&mut seed) % 20001) as f32 / 1000.0 - 10.0)
                        .collect();
                    let mut x = vec![BlockQ8::default(); n * nb];
                    quantize_row(&xf, &mut x);
                    for w in &ws {
                        let tw = TiledWeight::from_qweight(w).expect("f16 scales");
                        let want = |r: usize, t: usize| {
                            let xt = &x[t * nb..(t + 1) * nb];
                            match &w.blocks {
                                Blocks::Q4_1(b) => reference_q4_1(&b[r * nb..(r + 1) * nb], xt),
                                Blocks::Q8_0(b) => reference_q8_0(&b[r * nb..(r + 1) * nb], xt),
                            }
                        };
                        // The reference is the product it claims to be (to rounding).
                        for (r, t) in [(0, 0), (rows - 1, n - 1)] {
                            let (a, b) = (want(r, t) as f64, dequant_dot(w, r, &x[t * nb..]));
                            assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
                        }
                        for (r0, r1) in [(0, rows), (16, rows), (0, 16), (16, 40.min(rows))] {
                            if r0 >= r1 {
                                continue;
                            }
                            let ld = r1 - r0 + 3;
                            let mut got = vec![f32::NAN; n * ld];
                            if !matmul(&tw, nb, (r0, r1), &x, n, &mut got, ld) {
                                assert!(!available(), "declined with AMX available");
                                continue;
                            }
                            // The row-at-a-time kernels (AVX2 or scalar) agree too.
                            let mut dots = vec![f32::NAN; n * ld];
                            tw.matmul_dots((r0, r1), &x, n, &mut dots, ld);
                            for t in 0..n {
                                for r in r0..r1 {
                                    let (a, b) = (want(r, t), got[t * ld + r - r0]);
                                    let c = dots[t * ld + r - r0];
                                    assert_eq!(a.to_bits(), c.to_bits(), "dots r {r} t {t}");
                                    assert_eq!(
                                        a.to_bits(),
                                        b.to_bits(),
                                        "rows {rows} nb {nb} n {n} ({r0},{r1}) r {r} t {t}: \
                                         {a} vs {b}"
                                    );
                                }
                                // Nothing written past the range.
                                assert!(
                                    got[t * ld + r1 - r0..]
                                        [..3.min(got.len() - t * ld - (r1 - r0))]
                                        .iter()
                                        .all(|v| v.is_nan())
                                );
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        println!("{checked} AMX cases checked");
        assert!(checked > 0 || !available());
    }

    /// Sizes that do not fit are declined, never read out of bounds.
    #[test]
    fn bad_sizes_are_declined() {
        let mut seed = 7;
        let [w, _] = weights(&mut seed, 32, 64);
        let tw = TiledWeight::from_qweight(&w).expect("f16 scales");
        let x = vec![BlockQ8::default(); 2 * 2];
        let mut out = vec![0f32; 64];
        assert!(
            !matmul(&tw, 2, (8, 32), &x, 2, &mut out, 32),
            "r0 not a group start"
        );
        assert!(!matmul(&tw, 2, (0, 32), &x, 3, &mut out, 32), "x too short");
        assert!(
            !matmul(&tw, 2, (0, 33), &x, 2, &mut out, 33),
            "past the last row"
        );
        assert!(
            !matmul(&tw, 2, (0, 32), &x, 2, &mut out[..40], 32),
            "out too short"
        );
    }
}
