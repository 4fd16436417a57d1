//! `starpillar generate "prompt"`: chat with the local generator (SmolLM2 by default) through
//! the same scheduler `serve` uses, streaming the answer to the terminal as it decodes.
//! `--raw` skips the chat template and runs the bare generator (for model debugging).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::engine::generator::{GenParams, Generator};
use crate::engine::scheduler::GenMetrics;
use crate::engine::{ChatMessage, EngineArgs, GenEvent, GenRequest, Generate, device, genload};

/// `starpillar generate` flags.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The user's message.
    pub prompt: String,
    /// Generation model: a manifest name (`starpillar models list`), a local GGUF file, or an
    /// HF repo id (`owner/name` or `owner/name:file.gguf`, online). GGUF architectures:
    /// llama, qwen2 (Qwen2/2.5), qwen3, gemma3.
    #[arg(
        long,
        env = "STARPILLAR_GEN_MODEL",
        default_value = "smollm2-135m-instruct"
    )]
    pub gen_model: String,
    /// A system message (default: the model's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Store Q4_1 weights as Q8_0 at load (faster; output may differ slightly).
    #[arg(long, alias = "gen-requantise")]
    pub requantise: bool,
    /// Send the prompt as is, without the chat template (bypasses the scheduler).
    #[arg(long)]
    pub raw: bool,
    /// Most new tokens.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    /// 1.0 = off.
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// Stop sequences (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "STARPILLAR_DEVICE", default_value = "auto")]
    pub device: device::DeviceSpec,
    /// CPU threads; 0 = every core.
    #[arg(long, env = "STARPILLAR_THREADS", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub data: DataDirArgs,
}

impl GenerateArgs {
    fn params(&self) -> GenParams {
        GenParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            ..GenParams::default()
        }
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        eprintln!("error: --temperature must be ≥ 0");
        return Ok(ExitCode::from(2));
    }
    if args.raw {
        return run_raw(&args);
    }
    let engine = EngineArgs {
        gen_model: args.gen_model.clone(),
        gen_max_streams: 1,
        gen_queue: 1,
        gen_requantise: args.requantise,
        device: args.device,
        threads: args.threads,
        ..EngineArgs::default()
    };
    let started = std::time::Instant::now();
    let load_seconds = prometheus::GaugeVec::new(
        prometheus::Opts::new("load_seconds", "model load time"),
        &["model"],
    )?;
    let generator = genload::load_generator(
        &engine,
        &args.data.resolve(),
        &GenMetrics::new(),
        &load_seconds,
    )
    .context("loading the generator")?;
    let load = started.elapsed();
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system.clone()));
    }
    messages.push(ChatMessage::new("user", args.prompt.clone()));
    let mut stream = generator.submit(GenRequest {
        messages,
        params: args.params(),
    })?;
    let mut stdout = std::io::stdout();
    let started = std::time::Instant::now();
    while let Some(event) = stream.events.blocking_recv() {
        match event {
            GenEvent::Delta(piece) => {
                let _ = stdout.write_all(piece.as_bytes());
                let _ = stdout.flush();
            }
            GenEvent::Done(s) => {
                println!();
                let decode = s.total.saturating_sub(s.time_to_first_token).as_secs_f64();
                eprintln!(
                    "load {:.2}s; {} prompt tokens; first token after {:.3}s; {} new tokens \
                     ({:.1} tok/s after the first); finish {:?}",
                    load.as_secs_f64(),
                    s.prompt_tokens,
                    s.time_to_first_token.as_secs_f64(),
                    s.completion_tokens,
                    s.completion_tokens.saturating_sub(1) as f64 / decode.max(1e-9),
                    s.finish
                );
                return Ok(ExitCode::SUCCESS);
            }
            GenEvent::Error(e) => anyhow::bail!("generation failed: {e}"),
        }
    }
    anyhow::bail!(
        "the generator stopped after {:.1}s without finishing",
        started.elapsed().as_secs_f64()
    )
}

/// The prompt as is, through the bare generator.
fn run_raw(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let (_, path) = genload::resolve_gen_model(&args.gen_model, &args.data.resolve())?;
    let dev = device::select(args.device)?;
    let mut generator =
        Generator::load(&path, &dev, args.requantise).context("loading the generator")?;
    let mut stdout = std::io::stdout();
    let started = std::time::Instant::now();
    let out = generator.generate(&args.prompt, &args.params(), |piece| {
        let _ = stdout.write_all(piece.as_bytes());
        let _ = stdout.flush();
        true
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!();
    eprintln!(
        "{} prompt tokens, {} new tokens in {secs:.2}s; finish {:?}",
        out.prompt_tokens,
        out.tokens.len(),
        out.finish
    );
    Ok(ExitCode::SUCCESS)
}
