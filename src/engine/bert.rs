//! HF BERT sentence encoders such as sentence-transformers/all-MiniLM-L6-v2: a folder with
//! `config.json`, `tokenizer.json` and `model.safetensors` (plus, optionally,
//! `sentence_bert_config.json` for the sequence limit). Texts take no prefix; the `tokenizers`
//! crate tokenises them; longer texts are truncated to the limit, and the vectors are the mean
//! of every token's final hidden state (`[CLS]` and `[SEP]` included), as sentence-transformers
//! computes them; the batcher L2-normalises them.
//!
//! By default ([`Precision::Bf16`]) a CPU with AVX-512 BF16 runs [`Bf16Encoder`]: packed
//! batches, bf16 weights × bf16 activations summed in f32 (AMX tiles where present), the
//! embeddings, attention, GELU and layer norms in f32; worst cosine 0.99995 against sentence-transformers. Other devices and
//! CPUs run `candle_transformers::models::bert` in f32 on padded batches ([`Precision::F32`]
//! asks for it anywhere; within cosine 0.9999). [`Precision::Int8`] feeds the weights to the
//! packed int8 CPU encoder instead ([`CpuEncoder`], each f32 matrix as two stacked Q4_0
//! terms): its int8 activations leave it near cosine 0.998, below the 0.999 bar, so it is
//! opt-in (benches and tests).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct};
use serde::Deserialize;

use super::EngineError;
use super::bert_bf16::Bf16Encoder;
use super::cpu_encoder::{CpuEncoder, Dims, Raw};
use super::embedder::{EmbedKind, EncoderModel};

/// Which arithmetic runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// bf16 matrix products on a CPU with AVX-512 BF16 ([`Bf16Encoder`]); candle f32
    /// elsewhere.
    Bf16,
    /// candle f32 on any device.
    F32,
    /// The packed int8 encoder on the CPU (candle f32 elsewhere).
    Int8,
}

enum Backend {
    Bf16(Bf16Encoder),
    Cpu(CpuEncoder),
    Candle(BertModel),
}

/// A loaded BERT sentence encoder.
pub struct BertEmbedder {
    tokenizer: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
    pad: u32,
    hidden: usize,
    /// Tokens per sequence, `[CLS]` and `[SEP]` included.
    max_tokens: usize,
    backend: Backend,
    device: Device,
}

#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

/// Whether `dir` looks like an HF BERT folder this module loads.
pub fn is_model_dir(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

fn read(path: &Path) -> Result<String, EngineError> {
    std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))
}

fn format_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Format(format!("{}: {e}", path.display()))
}

impl BertEmbedder {
    /// Load the folder `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device, precision: Precision) -> Result<Self, EngineError> {
        let config_path = dir.join("config.json");
        let config: Config =
            serde_json::from_str(&read(&config_path)?).map_err(|e| format_err(&config_path, e))?;
        if config.hidden_act != HiddenAct::Gelu {
            return Err(format_err(
                &config_path,
                "only hidden_act \"gelu\" is supported",
            ));
        }
        let st_path = dir.join("sentence_bert_config.json");
        let limit = match std::fs::read_to_string(&st_path) {
            Ok(text) => {
                serde_json::from_str::<SentenceConfig>(&text)
                    .map_err(|e| format_err(&st_path, e))?
                    .max_seq_length
            }
            Err(_) => None,
        };
        let max_tokens = limit
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_tokens < 3 {
            return Err(format_err(&st_path, "max_seq_length is too small"));
        }
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| format_err(&tok_path, e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| format_err(&tok_path, e))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| format_err(&tok_path, format!("no {t} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let pad = u32::try_from(config.pad_token_id).unwrap_or(0);
        let weights_path = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| format_err(&weights_path, e))?;
        // Some checkpoints prefix every name with `bert.`.
        if !tensors.contains_key("embeddings.word_embeddings.weight") {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (k.strip_prefix("bert.").map(str::to_owned).unwrap_or(k), v))
                .collect();
        }
        let backend = if device.is_cpu() && precision == Precision::Int8 {
            Backend::Cpu(cpu_encoder(&tensors, &config).map_err(|e| format_err(&weights_path, e))?)
        } else if device.is_cpu()
            && precision == Precision::Bf16
            && super::bert_gemm::available()
            && Bf16Encoder::supports(&dims(&config))
        {
            Backend::Bf16(
                bf16_encoder(&tensors, &config).map_err(|e| format_err(&weights_path, e))?,
            )
        } else {
            let tensors = tensors
                .into_iter()
                .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?.to_device(device)?)))
                .collect::<Result<HashMap<_, _>, candle_core::Error>>()?;
            let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
            Backend::Candle(BertModel::load(vb, &config).map_err(|e| format_err(&weights_path, e))?)
        };
        Ok(Self {
            tokenizer,
            cls,
            sep,
            pad,
            hidden: config.hidden_size,
            max_tokens,
            backend,
            device: device.clone(),
        })
    }

    /// Token ids of `text` as the HF tokenizer gives them (`[CLS]`…`[SEP]`, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let mut content = self.encode(text, EmbedKind::Query)?;
        content.truncate(self.window());
        let mut ids = Vec::with_capacity(content.len() + 2);
        ids.push(self.cls);
        ids.extend(content);
        ids.push(self.sep);
        Ok(ids)
    }

    /// Tokens per sequence, `[CLS]` and `[SEP]` included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

fn dims(c: &Config) -> Dims {
    Dims {
        hidden: c.hidden_size,
        layers: c.num_hidden_layers,
        heads: c.num_attention_heads,
        ffn: c.intermediate_size,
        vocab_rows: c.vocab_size,
        max_positions: c.max_position_embeddings,
        eps: c.layer_norm_eps as f32,
    }
}

/// Feed the f32 tensors to the bf16 CPU encoder.
fn bf16_encoder(tensors: &HashMap<String, Tensor>, c: &Config) -> Result<Bf16Encoder, String> {
    Bf16Encoder::new(dims(c), |name, len| {
        let t = tensors
            .get(name)
            .ok_or_else(|| format!("missing tensor {name}"))?;
        let v = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| format!("tensor {name}: {e}"))?;
        if v.len() != len {
            return Err(format!("tensor {name}: {} values, want {len}", v.len()));
        }
        Ok(v)
    })
}

/// Feed the f32 tensors to the packed CPU encoder under its E5S1 names.
fn cpu_encoder(tensors: &HashMap<String, Tensor>, c: &Config) -> Result<CpuEncoder, String> {
    let mut failure = None;
    let encoder = CpuEncoder::new(dims(c), |name| {
        let hf = hf_name(name)?;
        let values = tensors.get(&hf).map(|t| {
            t.to_dtype(DType::F32)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        });
        match values {
            Some(Ok(v)) => Some(Raw::F32(v)),
            Some(Err(e)) => {
                failure = Some(format!("tensor {hf}: {e}"));
                None
            }
            None => None,
        }
    });
    match (encoder, failure) {
        (_, Some(f)) => Err(f),
        (result, None) => result,
    }
}

/// The HF BERT name of an E5S1 tensor name.
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "emb.word" => Some("word_embeddings.weight"),
        "emb.pos" => Some("position_embeddings.weight"),
        "emb.type" => Some("token_type_embeddings.weight"),
        "emb.ln.w" => Some("LayerNorm.weight"),
        "emb.ln.b" => Some("LayerNorm.bias"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(format!("embeddings.{n}"));
    }
    let (layer, part) = name.strip_prefix('l')?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let target = match part {
        "q.w" => "attention.self.query.weight",
        "q.b" => "attention.self.query.bias",
        "k.w" => "attention.self.key.weight",
        "k.b" => "attention.self.key.bias",
        "v.w" => "attention.self.value.weight",
        "v.b" => "attention.self.value.bias",
        "ao.w" => "attention.output.dense.weight",
        "ao.b" => "attention.output.dense.bias",
        "aln.w" => "attention.output.LayerNorm.weight",
        "aln.b" => "attention.output.LayerNorm.bias",
        "fi.w" => "intermediate.dense.weight",
        "fi.b" => "intermediate.dense.bias",
        "fo.w" => "output.dense.weight",
        "fo.b" => "output.dense.bias",
        "oln.w" => "output.LayerNorm.weight",
        "oln.b" => "output.LayerNorm.bias",
        _ => return None,
    };
    Some(format!("encoder.layer.{layer}.{target}"))
}

impl EncoderModel for BertEmbedder {
    fn hidden(&self) -> usize {
        self.hidden
    }

    fn encode(&self, text: &str, _kind: EmbedKind) -> Result<Vec<u32>, EngineError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| EngineError::InvalidInput(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    fn bracket(&self) -> (u32, u32) {
        (self.cls, self.sep)
    }

    fn window(&self) -> usize {
        self.max_tokens - 2
    }

    fn truncates(&self) -> bool {
        true
    }

    fn packs_batches(&self) -> bool {
        matches!(self.backend, Backend::Cpu(_) | Backend::Bf16(_))
    }

    fn pooled(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EngineError> {
        let model = match &self.backend {
            Backend::Cpu(cpu) => return cpu.forward_pooled(seqs).map_err(EngineError::Compute),
            Backend::Bf16(enc) => return enc.forward_pooled(seqs).map_err(EngineError::Compute),
            Backend::Candle(model) => model,
        };
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if seqs.is_empty() || longest == 0 {
            return Ok(seqs.iter().map(|_| vec![0.0; self.hidden]).collect());
        }
        let b = seqs.len();
        let mut ids = Vec::with_capacity(b * longest);
        let mut mask = Vec::with_capacity(b * longest);
        for s in seqs {
            ids.extend_from_slice(s);
            mask.extend(std::iter::repeat_n(1u32, s.len()));
            ids.extend(std::iter::repeat_n(self.pad, longest - s.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - s.len()));
        }
        let ids = Tensor::from_vec(ids, (b, longest), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, longest), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = model.forward(&ids, &types, Some(&mask))?;
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?;
        let pooled = summed.broadcast_div(&maskf.sum(1)?)?;
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}
