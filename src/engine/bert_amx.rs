//! Intel AMX tiles for [`super::bert_gemm`]: on CPUs with AMX-BF16 (Sapphire Rapids and later,
//! Linux, once the kernel grants this process the tile state) one `tdpbf16ps` multiplies a
//! 16-token × 32-input bf16 tile by a 32-input × 16-output tile with f32 sums, 16× the work of
//! an AVX-512 `vdpbf16ps`. A block of 16 tokens × one 64-column panel keeps its sums in four
//! tile registers over the whole input width; the packed panel layout of
//! [`super::bert_gemm::PackedBf16`] (pairs of inputs side by side, 64 columns a row) is
//! already the tile layout AMX wants for its right operand, read with a 256-byte stride. The
//! instructions are written as inline assembly (the AMX intrinsics are not stable Rust).

use std::sync::OnceLock;

/// Tokens per tile block (tile rows).
const ROWS: usize = 16;
/// Inputs per tile step (32 bf16 = one 64-byte tile row).
pub const STEP: usize = 32;
/// Columns per panel: four 16-column tiles.
const COLS: usize = 64;

/// Whether AMX-BF16 may run in this process (the CPU has it, the OS granted the tile state,
/// and `STARPILLAR_SIMD` does not cap the instruction set).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if super::qmatmul::Isa::current() < super::qmatmul::Isa::Avx512Vnni {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    let (tile, bf16) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 22) != 0);
    tile && bf16 && std::arch::is_x86_feature_detected!("avx512f") && request_tile_state()
}

/// Ask Linux for this process's AMX tile state (once is enough; asking again is harmless);
/// true when granted. Also used by the int8 tiles of `qamx.rs`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn request_tile_state() -> bool {
    // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux enables the 8 KiB tile state
    // per process only on request.
    let ret: i64;
    // SAFETY: a plain syscall with integer arguments; it touches no memory of ours.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// The tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = ROWS as u8;
        }
        Self(c)
    }
}

/// Multiply the `tokens` bf16 rows of `x` (`k` wide, `k` a multiple of [`STEP`]) by one packed
/// panel `wp` (`k/2` rows of 64 column pairs); `emit(token, sums)` receives each token's 64
/// f32 sums in column order.
///
/// # Safety
/// [`available`] returned true.
#[cfg(target_arch = "x86_64")]
pub unsafe fn panel(
    wp: &[u16],
    k: usize,
    x: &[u16],
    tokens: usize,
    mut emit: impl FnMut(usize, &[f32]),
) {
    assert!(k.is_multiple_of(STEP) && wp.len() >= k * COLS && x.len() >= tokens * k);
    let config = Config::new();
    #[repr(C, align(64))]
    struct Sums([f32; ROWS * COLS]);
    let mut sums = Sums([0.0; ROWS * COLS]);
    let mut pad = Vec::new();
    // SAFETY: the configuration is valid for palette 1.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
    }
    for t0 in (0..tokens).step_by(ROWS) {
        let rows = (tokens - t0).min(ROWS);
        let block = if x.len() >= (t0 + ROWS) * k {
            &x[t0 * k..(t0 + ROWS) * k]
        } else {
            // The last, short block: copy it into 16 zero-padded rows.
            pad.clear();
            pad.extend_from_slice(&x[t0 * k..(t0 + rows) * k]);
            pad.resize(ROWS * k, 0);
            &pad[..]
        };
        // SAFETY: `block` holds 16 rows of `k`, `wp` k/2 rows of 256 bytes (asserted), `sums`
        // 16 rows of 256 bytes; the tiles were configured above.
        unsafe { block_sums(block.as_ptr(), k, wp.as_ptr(), &mut sums.0) };
        for r in 0..rows {
            emit(t0 + r, &sums.0[r * COLS..(r + 1) * COLS]);
        }
    }
    // SAFETY: releases this thread's tile state.
    unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
}

/// Sums of 16 tokens × 64 columns into `sums` (row-major, 64 floats a token).
///
/// # Safety
/// Tiles configured by [`Config`]; `x` points at 16 rows of `k` bf16, `w` at `k/2` rows of
/// 128 bf16.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn block_sums(x: *const u16, k: usize, w: *const u16, sums: &mut [f32; ROWS * COLS]) {
    // SAFETY: caller's contract; each step reads 16 rows × 64 bytes of `x` at stride 2k and
    // 16 rows × 256 bytes of `w`.
    unsafe {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        for kk in (0..k).step_by(STEP) {
            std::arch::asm!(
                "tileloadd tmm4, [{a} + {xs}*1]",
                "tileloadd tmm5, [{b} + {bs}*1]",
                "tileloadd tmm6, [{b} + {bs}*1 + 64]",
                "tdpbf16ps tmm0, tmm4, tmm5",
                "tileloadd tmm7, [{b} + {bs}*1 + 128]",
                "tdpbf16ps tmm1, tmm4, tmm6",
                "tileloadd tmm5, [{b} + {bs}*1 + 192]",
                "tdpbf16ps tmm2, tmm4, tmm7",
                "tdpbf16ps tmm3, tmm4, tmm5",
                a = in(reg) x.add(kk),
                xs = in(reg) 2 * k,
                b = in(reg) w.add(kk * COLS),
                bs = in(reg) 4 * COLS,
                options(nostack, readonly),
            );
        }
        std::arch::asm!(
            "tilestored [{c} + {s}*1], tmm0",
            "tilestored [{c} + {s}*1 + 64], tmm1",
            "tilestored [{c} + {s}*1 + 128], tmm2",
            "tilestored [{c} + {s}*1 + 192], tmm3",
            c = in(reg) sums.as_mut_ptr(),
            s = in(reg) 4 * COLS,
            options(nostack),
        );
    }
}

/// Not x86-64: never called ([`available`] is false).
///
/// # Safety
/// None needed.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn panel(_: &[u16], _: usize, _: &[u16], _: usize, _: impl FnMut(usize, &[f32])) {}
