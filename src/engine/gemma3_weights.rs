//! Gemma 3 weights repacked at load for our own kernels ([`super::qkernels`]), as exactly as
//! the block formats allow:
//!
//! - `Q4_K` (super-blocks of 256 with 6-bit scales and mins per 32) becomes `Q4_1` with widened
//!   scales: each 32-element sub-block is `q·(d·sc) − dmin·m`, which is a `Q4_1` block with
//!   `d' = d·sc` and `m' = −dmin·m` — the same values, bit for bit.
//! - `Q5_0` (`(q − 16)·d`, `q` in 0..32) becomes `Q8_0` with the same scale and `q − 16` as the
//!   8-bit value — also exact.
//! - `Q8_0` is taken as it is; anything else (`Q6_K`, `F16`, `F32`, …) is dequantised and
//!   re-quantised to `Q8_0` (llama.cpp's rounding; near-lossless from 6 bits).
//!
//! Where the CPU has the packed kernel ([`super::packed`]), `Q8_0` and `Q5_0` matrices are read
//! from the file and packed straight from their bytes ([`load`]): one pass, no intermediate
//! copy (the 262k-row embedding matrix is 170 MB), and `Q5_0` keeps its 5 bits.

use std::io::{Read, Seek, SeekFrom};

use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use super::packed::{self, Kind, Mat, Packed};
use crate::engine::EngineError;
use crate::engine::qkernels::{BlockQ4_1, BlockQ8_0, Blocks, QK, QWeight};

/// Bytes of one GGML `Q5_0` block (f16 scale, 4 bytes of high bits, 16 bytes of nibbles).
const Q5_0_BYTES: usize = 22;
/// Elements and bytes of one GGML `Q4_K` super-block.
const QK_K: usize = 256;
const Q4_K_BYTES: usize = 144;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// One GGML `Q5_0` block (22 bytes): its f16 scale bits and its values `q − 16` (`−16..16`).
fn q5_0_block(c: &[u8]) -> (u16, [i8; QK]) {
    let qh = u32::from_le_bytes([c[2], c[3], c[4], c[5]]);
    let mut qs = [0i8; QK];
    for j in 0..QK / 2 {
        let lo = (c[6 + j] & 0x0F) as u32 | ((qh >> j) << 4 & 0x10);
        let hi = (c[6 + j] >> 4) as u32 | ((qh >> (j + 12)) & 0x10);
        qs[j] = lo as i8 - 16;
        qs[j + QK / 2] = hi as i8 - 16;
    }
    (u16::from_le_bytes([c[0], c[1]]), qs)
}

/// One GGML `Q8_0` block (34 bytes): its f16 scale bits and its values.
fn q8_0_block(c: &[u8]) -> (u16, [i8; QK]) {
    (
        u16::from_le_bytes([c[0], c[1]]),
        std::array::from_fn(|e| c[2 + e] as i8),
    )
}

/// Raw GGML `Q5_0` bytes of a `rows × cols` matrix as `Q8_0` blocks (exact).
pub fn from_q5_0(raw: &[u8], rows: usize, cols: usize) -> Option<QWeight> {
    if !cols.is_multiple_of(QK) || raw.len() != rows * cols / QK * Q5_0_BYTES {
        return None;
    }
    let blocks = raw
        .chunks_exact(Q5_0_BYTES)
        .map(|c| {
            let (d, qs) = q5_0_block(c);
            BlockQ8_0 {
                d: f16::from_bits(d).to_f32(),
                qs,
            }
        })
        .collect();
    Some(QWeight {
        rows,
        cols,
        blocks: Blocks::Q8_0(blocks),
    })
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a `Q4_K` super-block.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Raw GGML `Q4_K` bytes of a `rows × cols` matrix as `Q4_1` blocks (exact).
pub fn from_q4_k(raw: &[u8], rows: usize, cols: usize) -> Option<QWeight> {
    if !cols.is_multiple_of(QK_K) || raw.len() != rows * cols / QK_K * Q4_K_BYTES {
        return None;
    }
    let mut blocks = Vec::with_capacity(rows * cols / QK);
    for c in raw.chunks_exact(Q4_K_BYTES) {
        let (d, dmin) = (f16_at(c, 0), f16_at(c, 2));
        let scales = &c[4..16];
        let qs = &c[16..];
        // Four chunks of 64: sub-block 2i is the low nibbles of 32 bytes, 2i+1 the high ones.
        for (i, q) in qs.chunks_exact(32).enumerate() {
            for (half, shift) in [(0, 0u8), (1, 4u8)] {
                let (sc, m) = scale_min_k4(2 * i + half, scales);
                let nib = |l: usize| (q[l] >> shift) & 0x0F;
                let mut packed = [0u8; QK / 2];
                for (j, p) in packed.iter_mut().enumerate() {
                    *p = nib(j) | (nib(j + QK / 2) << 4);
                }
                blocks.push(BlockQ4_1 {
                    d: d * sc as f32,
                    m: -(dmin * m as f32),
                    qs: packed,
                });
            }
        }
    }
    Some(QWeight {
        rows,
        cols,
        blocks: Blocks::Q4_1(blocks),
    })
}

/// A GGUF matrix tensor (`rows × cols`) in the format our kernels take (see the module doc).
pub fn repack(name: &str, t: &QTensor, rows: usize, cols: usize) -> Result<QWeight, EngineError> {
    if t.shape().dims() != [rows, cols] {
        return Err(EngineError::Format(format!(
            "{name}: shape {:?}, expected [{rows}, {cols}]",
            t.shape().dims()
        )));
    }
    let bad = || EngineError::Format(format!("{name}: bad {:?} data", t.dtype()));
    match t.dtype() {
        GgmlDType::Q8_0 => QWeight::from_q8_0(&t.data()?, rows, cols).ok_or_else(bad),
        GgmlDType::Q4_1 => QWeight::from_q4_1(&t.data()?, rows, cols).ok_or_else(bad),
        GgmlDType::Q5_0 => from_q5_0(&t.data()?, rows, cols).ok_or_else(bad),
        GgmlDType::Q4K => from_q4_k(&t.data()?, rows, cols).ok_or_else(bad),
        _ => {
            let w: Vec<f32> = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?;
            QWeight::quantize_q8_0(&w, rows, cols).ok_or_else(bad)
        }
    }
}

/// Decodes one raw block: its f16 scale bits and its 32 values.
type BlockReader = fn(&[u8]) -> (u16, [i8; QK]);

/// Raw `Q8_0` / `Q5_0` bytes of a `rows × cols` matrix packed for the AVX-512 kernel.
fn pack_raw(dtype: GgmlDType, raw: &[u8], rows: usize, cols: usize) -> Option<Packed> {
    let (kind, size, block): (_, _, BlockReader) = match dtype {
        GgmlDType::Q8_0 => (Kind::Q8, 34, q8_0_block),
        GgmlDType::Q5_0 => (Kind::Q5, Q5_0_BYTES, q5_0_block),
        _ => return None,
    };
    if !cols.is_multiple_of(QK) || raw.len() != rows * cols / QK * size {
        return None;
    }
    Packed::build(kind, rows, cols, |i| block(&raw[i * size..(i + 1) * size]))
}

/// The matrix `name` of the GGUF file (`rows × cols`; `rows` taken from the file when
/// `None`), ready for the forward: packed straight from the file's bytes when it is `Q8_0` or
/// `Q5_0` and the CPU has the packed kernel, else repacked ([`repack`]) for `qkernels`.
pub fn load<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    name: &str,
    rows: Option<usize>,
    cols: usize,
) -> Result<Mat, EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError::Format(format!("tensor {name}: {e}"));
    let info = content
        .tensor_infos
        .get(name)
        .ok_or_else(|| err(&"missing"))?;
    let dims = info.shape.dims();
    let rows = rows.unwrap_or(dims.first().copied().unwrap_or(0));
    if dims != [rows, cols] {
        return Err(err(&format!("shape {dims:?}, expected [{rows}, {cols}]")));
    }
    let dtype = info.ggml_dtype;
    if packed::available() && matches!(dtype, GgmlDType::Q8_0 | GgmlDType::Q5_0) {
        let bytes = rows * cols / dtype.block_size() * dtype.type_size();
        let mut raw = vec![0u8; bytes];
        reader
            .seek(SeekFrom::Start(content.tensor_data_offset + info.offset))
            .and_then(|_| reader.read_exact(&mut raw))
            .map_err(|e| err(&e))?;
        if let Some(p) = pack_raw(dtype, &raw, rows, cols) {
            return Ok(Mat::Packed(p));
        }
        let bad = || err(&format!("bad {dtype:?} data"));
        let w = match dtype {
            GgmlDType::Q8_0 => QWeight::from_q8_0(&raw, rows, cols),
            _ => from_q5_0(&raw, rows, cols),
        };
        return w.map(Mat::Plain).ok_or_else(bad);
    }
    let t = info
        .read(reader, content.tensor_data_offset, &Device::Cpu)
        .map_err(|e| err(&e))?;
    Ok(Mat::new(repack(name, &t, rows, cols)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::ggml_file::qtensor_from_ggml;

    /// Pseudo-random bytes (fixed seed) with sane f16 scales at the given offsets per block.
    fn blocks(n: usize, size: usize, scales: &[usize], seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 33) as u32
        };
        let mut raw: Vec<u8> = (0..n * size).map(|_| next() as u8).collect();
        for b in raw.chunks_exact_mut(size) {
            for &o in scales {
                let v = (next() % 1000) as f32 / 1000.0 * 0.02 + 1e-4;
                b[o..o + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        raw
    }

    fn candle_rows(dtype: GgmlDType, raw: &[u8], rows: usize, cols: usize) -> Vec<f32> {
        qtensor_from_ggml(dtype, raw, vec![rows, cols], &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("candle dequantises")
    }

    fn ours(w: &QWeight) -> Vec<f32> {
        let mut out = vec![0f32; w.rows * w.cols];
        for (r, o) in out.chunks_exact_mut(w.cols).enumerate() {
            w.dequantize_row(r, o);
        }
        out
    }

    #[test]
    fn q5_0_repacks_to_the_same_values() {
        let (rows, cols, seed) = (3, 96, 7);
        let raw = blocks(rows * cols / QK, Q5_0_BYTES, &[0], seed);
        let w = from_q5_0(&raw, rows, cols).expect("repacks");
        let want = candle_rows(GgmlDType::Q5_0, &raw, rows, cols);
        assert_eq!(ours(&w), want, "seed {seed}");
    }

    #[test]
    fn q4_k_repacks_to_the_same_values() {
        let (rows, cols, seed) = (2, 512, 11);
        let raw = blocks(rows * cols / QK_K, Q4_K_BYTES, &[0, 2], seed);
        let w = from_q4_k(&raw, rows, cols).expect("repacks");
        let want = candle_rows(GgmlDType::Q4K, &raw, rows, cols);
        assert_eq!(ours(&w), want, "seed {seed}");
    }

    /// Raw `Q5_0` / `Q8_0` bytes packed directly hold the values candle reads from them.
    #[test]
    fn raw_bytes_pack_to_the_same_values() {
        let (rows, cols, seed) = (16, 64, 13);
        for (dtype, size) in [(GgmlDType::Q5_0, Q5_0_BYTES), (GgmlDType::Q8_0, 34)] {
            let raw = blocks(rows * cols / QK, size, &[0], seed);
            let p = pack_raw(dtype, &raw, rows, cols).expect("packs");
            let want = candle_rows(dtype, &raw, rows, cols);
            let mut got = vec![0f32; rows * cols];
            for (r, o) in got.chunks_exact_mut(cols).enumerate() {
                p.dequantize_row(r, o);
            }
            assert_eq!(got, want, "{dtype:?} seed {seed}");
        }
        assert!(pack_raw(GgmlDType::Q4K, &[0; 144], 16, 256).is_none());
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(from_q5_0(&[0; 21], 1, 32).is_none());
        assert!(from_q4_k(&[0; 144], 1, 128).is_none());
    }
}
