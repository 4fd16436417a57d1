//! Per-request token sampling: repetition penalty over the recent window, then greedy
//! (temperature 0) or temperature / top-k / top-p sampling from a generator seeded by the
//! request, so the same request always yields the same tokens whatever else is running.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::EngineError;
use super::generator::GenParams;

/// One request's sampler.
pub struct Sampler {
    processor: LogitsProcessor,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

impl Sampler {
    pub fn new(params: &GenParams) -> Self {
        let sampling = if params.temperature <= 1e-7 {
            Sampling::ArgMax
        } else {
            let temperature = params.temperature;
            match (params.top_k, params.top_p.filter(|p| *p < 1.0)) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            repeat_penalty: params.repeat_penalty,
            repeat_last_n: params.repeat_last_n,
        }
    }

    /// The next token from `logits` (1-D, vocabulary-sized); `history` is prompt + output.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32, EngineError> {
        let logits = logits.flatten_all()?;
        let logits = if (self.repeat_penalty - 1.0).abs() > f32::EPSILON && !history.is_empty() {
            let start = history.len().saturating_sub(self.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                self.repeat_penalty,
                &history[start..],
            )?
        } else {
            logits
        };
        Ok(self.processor.sample(&logits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        // A permutation of 0.0, 0.1, …, 4.9: no ties.
        let v: Vec<f32> = (0..50).map(|i| ((i * 37) % 50) as f32 * 0.1).collect();
        Tensor::new(v.as_slice(), &Device::Cpu).unwrap_or_else(|_| unreachable!())
    }

    fn draw(params: &GenParams, n: usize) -> Vec<u32> {
        let mut s = Sampler::new(params);
        (0..n)
            .map(|_| s.sample(&logits(), &[]).unwrap_or(u32::MAX))
            .collect()
    }

    #[test]
    fn greedy_takes_the_argmax_and_seeds_reproduce() {
        let greedy = draw(&GenParams::default(), 3);
        assert!(greedy.iter().all(|&t| t == greedy[0]));
        let hot = GenParams {
            temperature: 1.5,
            seed: 7,
            ..GenParams::default()
        };
        let a = draw(&hot, 40);
        assert_eq!(a, draw(&hot, 40), "same seed, same tokens");
        let other = draw(
            &GenParams {
                seed: 8,
                ..hot.clone()
            },
            40,
        );
        assert_ne!(a, other, "another seed draws differently");
        let top1 = GenParams {
            top_k: Some(1),
            ..hot
        };
        assert!(draw(&top1, 10).iter().all(|&t| t == greedy[0]));
    }

    #[test]
    fn repeat_penalty_moves_off_a_repeated_token() {
        let params = GenParams {
            repeat_penalty: 100.0,
            ..GenParams::default()
        };
        let mut s = Sampler::new(&params);
        let first = s.sample(&logits(), &[]).unwrap_or(u32::MAX);
        let second = s.sample(&logits(), &[first]).unwrap_or(u32::MAX);
        assert_ne!(first, second);
    }
}
