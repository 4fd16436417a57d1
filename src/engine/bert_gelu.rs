//! GELU (the erf form BERT uses) of 64 sums + bias at a time, rounded to bf16: the epilogue of
//! the FFN's first matrix product in [`super::bert_gemm`], so its f32 output never goes to
//! memory. erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7, far below bf16's 2⁻⁹), with
//! `1 + erf(z)` taken as `erfc(|z|)` for `z < 0` so the negative tail keeps its precision.
//! AVX-512 (exp by range reduction and `vscalefps`) where present, else the same formula in
//! scalar code.

use super::bert_gemm::bf16_bits;

const P: f32 = 0.327_591_1;
const A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_8,
    -1.453_152,
    1.061_405_4,
];

/// `GELU(v)` in f32.
pub fn gelu(v: f32) -> f32 {
    let z = v * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erfc = poly * (-a * a).exp();
    let one_plus_erf = if z >= 0.0 { 2.0 - erfc } else { erfc };
    0.5 * v * one_plus_erf
}

/// `out[i] = bf16(GELU(sums[i] + bias[i]))` for 64 values.
pub fn gelu_bf16(sums: &[f32], bias: &[f32], out: &mut [u16]) {
    assert!(sums.len() >= 64 && bias.len() >= 64 && out.len() >= 64);
    #[cfg(target_arch = "x86_64")]
    if super::bert_gemm::available() {
        // SAFETY: AVX-512 F and BF16 are present (`available`); lengths asserted.
        return unsafe { gelu_bf16_avx512(sums, bias, out) };
    }
    for ((o, s), b) in out[..64].iter_mut().zip(sums).zip(bias) {
        *o = bf16_bits(gelu(s + b));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn gelu_bf16_avx512(sums: &[f32], bias: &[f32], out: &mut [u16]) {
    use std::arch::x86_64::*;
    for j in 0..4 {
        // SAFETY: 64 values each (caller's assert).
        unsafe {
            let v = _mm512_add_ps(
                _mm512_loadu_ps(sums.as_ptr().add(16 * j)),
                _mm512_loadu_ps(bias.as_ptr().add(16 * j)),
            );
            let z = _mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
            let a = _mm512_abs_ps(z);
            let one = _mm512_set1_ps(1.0);
            let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(P), a, one));
            let mut poly = _mm512_set1_ps(A[4]);
            for c in [A[3], A[2], A[1], A[0]] {
                poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
            }
            poly = _mm512_mul_ps(poly, t);
            let erfc = _mm512_mul_ps(poly, exp_neg(_mm512_mul_ps(a, a)));
            let positive = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(z, _mm512_setzero_ps());
            let two_minus = _mm512_sub_ps(_mm512_set1_ps(2.0), erfc);
            let one_plus_erf = _mm512_mask_blend_ps(positive, erfc, two_minus);
            let g = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), v), one_plus_erf);
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(g));
            _mm256_storeu_si256(out.as_mut_ptr().add(16 * j).cast(), h);
        }
    }
}

/// `e^(−x)` for `x ≥ 0` (Cephes `expf` polynomial after reduction by ln 2; ~1 ulp).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_neg(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), x), _mm512_set1_ps(-87.3));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    use super::cpu_ops::{EXP_LN2, EXP_POLY};
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2.0), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2.1), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let p = _mm512_fmadd_ps(
        p,
        _mm512_mul_ps(r, r),
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    _mm512_scalef_ps(p, n)
}

#[cfg(test)]
mod tests {
    use super::super::bert_gemm::bf16_value;
    use super::*;

    #[test]
    fn gelu_matches_the_erf_reference() {
        // The reference: cpu_ops's GELU (erf as a polynomial in f64).
        let xs: Vec<f32> = (0..64 * 40).map(|i| (i as f32 - 1280.0) / 100.0).collect();
        let mut want = xs.clone();
        super::super::cpu_ops::gelu(&mut want);
        for (x, w) in xs.iter().zip(&want) {
            let got = gelu(*x);
            assert!(
                (got - w).abs() <= 2e-6 * w.abs().max(1.0),
                "GELU({x}): {got} vs {w}"
            );
        }
        let zeros = [0f32; 64];
        for (chunk, w) in xs.chunks_exact(64).zip(want.chunks_exact(64)) {
            let mut out = [0u16; 64];
            gelu_bf16(chunk, &zeros, &mut out);
            for ((o, w), x) in out.iter().zip(w).zip(chunk) {
                // Within one bf16 step (2⁻⁸ relative) of the rounded reference, or 1e-6.
                let (o, w) = (bf16_value(*o), bf16_value(bf16_bits(*w)));
                assert!(
                    (o - w).abs() <= w.abs() / 128.0 + 1e-6,
                    "GELU({x}): {o} vs {w}"
                );
            }
        }
    }
}
