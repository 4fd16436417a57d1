//! `starpillar generate "prompt"`: chat with the local generator (SmolLM2 by default),
//! streaming the answer to the terminal as it decodes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::engine::generator::{GenParams, Generator, chatml};
use crate::engine::{device, fetch, manifest};

/// `starpillar generate` flags.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The user's message.
    pub prompt: String,
    /// Generation model: a manifest name or a local GGUF file.
    #[arg(
        long,
        env = "STARPILLAR_GEN_MODEL",
        default_value = "smollm2-135m-instruct"
    )]
    pub gen_model: String,
    /// A system message (default: the model's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Rewrite Q4_x/Q5_x weights as Q8_0 at load (candle has fast kernels only for the latter).
    #[arg(long)]
    pub requantise: bool,
    /// Send the prompt as is, without the chat template.
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

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let path = std::path::Path::new(&args.gen_model);
    let path = if path.is_file() {
        path.to_path_buf()
    } else {
        let entry = manifest::find(&args.gen_model)?;
        let dir = fetch::fetch(&fetch::cache_root(&args.data.resolve()), &entry)?;
        dir.join(&entry.main)
    };
    let dev = device::select(args.device)?;
    let started = std::time::Instant::now();
    let mut generator =
        Generator::load(&path, &dev, args.requantise).context("loading the generator")?;
    let load = started.elapsed();
    let prompt = if args.raw {
        args.prompt.clone()
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(("system".to_owned(), system.clone()));
        }
        messages.push(("user".to_owned(), args.prompt.clone()));
        chatml(&messages)
    };
    let params = GenParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        stop: args.stop.clone(),
        ..GenParams::default()
    };
    let mut stdout = std::io::stdout();
    let started = std::time::Instant::now();
    let out = generator.generate(&prompt, &params, |piece| {
        let _ = stdout.write_all(piece.as_bytes());
        let _ = stdout.flush();
        true
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!();
    eprintln!(
        "load {:.2}s; {} prompt tokens, {} new tokens in {secs:.2}s ({:.1} tok/s); finish {:?}",
        load.as_secs_f64(),
        out.prompt_tokens,
        out.tokens.len(),
        out.tokens.len() as f64 / secs.max(1e-9),
        out.finish
    );
    Ok(ExitCode::SUCCESS)
}
