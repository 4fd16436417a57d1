//! `starpillar bench engine`: generation throughput of the serving scheduler with 1, 4, 8…
//! concurrent streams (aggregate tok/s, TTFT, time per output token) and the time to first
//! token of a request arriving while the others decode. Levels run in alternation for
//! `--rounds` rounds (a loaded machine drifts); the median round is reported. On a shared
//! machine wall time lies: the table also gives tokens per CPU-second of this process (all its
//! threads, from `/proc/self/task/*/schedstat`, Linux only), which other processes barely move.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::DataDirArgs;
use crate::engine::generator::GenParams;
use crate::engine::scheduler::{GenMetrics, Scheduler};
use crate::engine::{
    ChatMessage, EngineArgs, GenEvent, GenRequest, GenStream, GenSummary, Generate, genload,
};

/// `starpillar bench` subcommands.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Generation: aggregate decode tok/s and TTFT with several concurrent streams.
    Engine(EngineBenchArgs),
    /// Readings: p50/p95/p99 of charts, cached, composed and streamed readings at 1, 4, 16
    /// concurrent clients, against the SLO.
    Readings(super::bench_readings::ReadingsBenchArgs),
}

/// `starpillar bench engine` flags.
#[derive(Debug, Args)]
pub struct EngineBenchArgs {
    /// Concurrent streams per level (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 4, 8])]
    pub streams: Vec<usize>,
    /// New tokens per stream.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Rounds over all levels (median reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// One level's measurements.
#[derive(Debug, Clone, serde::Serialize)]
struct Level {
    streams: usize,
    tokens: usize,
    seconds: f64,
    /// All streams' tokens over the wall time of the burst.
    aggregate_tok_s: f64,
    /// All streams' tokens over the CPU time this process spent on the burst (NaN where
    /// unknown).
    tok_per_cpu_s: f64,
    /// Tokens after the first over the time after the last first token.
    decode_tok_s: f64,
    ttft_mean_s: f64,
    ttft_max_s: f64,
    tpot_mean_s: f64,
    /// TTFT of one more request sent while `streams` others decode.
    ttft_under_load_s: f64,
}

fn prompt(i: usize) -> GenRequest {
    GenRequest {
        messages: vec![ChatMessage::new(
            "user",
            format!("Count from {} to 500, separated by commas.", 1 + i % 3),
        )],
        params: GenParams::default(),
    }
}

fn with_tokens(mut r: GenRequest, max_tokens: usize) -> GenRequest {
    r.params.max_tokens = max_tokens;
    r
}

/// Wait for a stream's end; the instant its first delta arrived and its summary.
fn finish(mut stream: GenStream) -> anyhow::Result<GenSummary> {
    while let Some(event) = stream.events.blocking_recv() {
        match event {
            GenEvent::Delta(_) => {}
            GenEvent::Done(s) => return Ok(s),
            GenEvent::Error(e) => anyhow::bail!("generation failed: {e}"),
        }
    }
    anyhow::bail!("the generator stopped")
}

/// CPU time of every thread of this process so far (Linux), in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(ns as f64 * 1e-9)
}

fn run_level(g: &Arc<Scheduler>, n: usize, max_tokens: usize) -> anyhow::Result<Level> {
    let cpu0 = process_cpu_seconds();
    let started = Instant::now();
    let streams: Vec<GenStream> = (0..n)
        .map(|i| g.submit(with_tokens(prompt(i), max_tokens)))
        .collect::<Result<_, _>>()?;
    let summaries: Vec<GenSummary> = streams.into_iter().map(finish).collect::<Result<_, _>>()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => f64::NAN,
    };
    let tokens: usize = summaries.iter().map(|s| s.completion_tokens).sum();
    let ttft: Vec<f64> = summaries
        .iter()
        .map(|s| s.time_to_first_token.as_secs_f64())
        .collect();
    let ttft_max = ttft.iter().copied().fold(0.0, f64::max);
    let after_first: usize = summaries
        .iter()
        .map(|s| s.completion_tokens.saturating_sub(1))
        .sum();
    let tpot: Vec<f64> = summaries
        .iter()
        .filter(|s| s.completion_tokens > 1)
        .map(|s| (s.total - s.time_to_first_token).as_secs_f64() / (s.completion_tokens - 1) as f64)
        .collect();
    // TTFT under load: n long streams decoding, then one more request.
    let background: Vec<GenStream> = (0..n)
        .map(|i| g.submit(with_tokens(prompt(i), max_tokens * 4)))
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_secs_f64((ttft_max * 1.5).max(0.05)));
    let probe = finish(g.submit(with_tokens(prompt(n), 1))?)?;
    drop(background);
    // Let the engine retire the cancelled streams (it does so at its next step) before the next
    // level starts, and before the process exits: a GPU context torn down under a running step
    // makes the step fail noisily.
    finish(g.submit(with_tokens(prompt(0), 1))?)?;
    Ok(Level {
        streams: n,
        tokens,
        seconds,
        aggregate_tok_s: tokens as f64 / seconds,
        tok_per_cpu_s: tokens as f64 / cpu,
        decode_tok_s: after_first as f64 / (seconds - ttft_max).max(1e-9),
        ttft_mean_s: ttft.iter().sum::<f64>() / ttft.len().max(1) as f64,
        ttft_max_s: ttft_max,
        tpot_mean_s: tpot.iter().sum::<f64>() / tpot.len().max(1) as f64,
        ttft_under_load_s: probe.time_to_first_token.as_secs_f64(),
    })
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let args = match args.what {
        BenchWhat::Engine(args) => args,
        BenchWhat::Readings(args) => return super::bench_readings::run(args),
    };
    let most = args.streams.iter().copied().max().unwrap_or(1);
    let engine = EngineArgs {
        gen_max_streams: most + 1,
        gen_queue: 4 * most + 4,
        ..args.engine.clone()
    };
    let load_seconds = prometheus::GaugeVec::new(
        prometheus::Opts::new("load_seconds", "model load time"),
        &["model"],
    )?;
    let g = genload::load_generator(
        &engine,
        &args.data.resolve(),
        &GenMetrics::new(),
        &load_seconds,
    )
    .context("loading the generator")?;
    // Warm-up (page in the weights, size the caches).
    finish(g.submit(with_tokens(prompt(0), 8))?)?;
    let mut rounds: Vec<Vec<Level>> = vec![Vec::new(); args.streams.len()];
    for round in 0..args.rounds.max(1) {
        for (i, &n) in args.streams.iter().enumerate() {
            let level = run_level(&g, n.max(1), args.max_tokens)?;
            if !args.json {
                eprintln!(
                    "round {round}: {n} streams, {:.1} tok/s aggregate",
                    level.aggregate_tok_s
                );
            }
            rounds[i].push(level);
        }
    }
    let medians: Vec<Level> = rounds
        .into_iter()
        .filter_map(|mut v| {
            let mut cpu: Vec<f64> = v.iter().map(|l| l.tok_per_cpu_s).collect();
            cpu.sort_by(f64::total_cmp);
            v.sort_by(|a, b| a.aggregate_tok_s.total_cmp(&b.aggregate_tok_s));
            let mut level = v.get(v.len() / 2).cloned()?;
            // Each column's own median.
            level.tok_per_cpu_s = cpu[cpu.len() / 2];
            Some(level)
        })
        .collect();
    let base = medians.first().map_or(1.0, |l| l.aggregate_tok_s.max(1e-9));
    let cpu_base = medians.first().map_or(1.0, |l| l.tok_per_cpu_s.max(1e-9));
    if args.json {
        let out = serde_json::json!({
            "model": g.model(),
            "threads": crate::engine::device::resolve_threads(args.engine.threads),
            "max_tokens": args.max_tokens,
            "rounds": args.rounds,
            "levels": medians,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "model {}, {} thread(s), {} new tokens per stream, median of {} round(s)",
        g.model(),
        crate::engine::device::resolve_threads(args.engine.threads),
        args.max_tokens,
        args.rounds
    );
    println!(
        "| streams | aggregate tok/s | × 1 stream | tok per CPU-s | × 1 stream (CPU) | decode tok/s | TTFT mean / max (s) | TPOT (ms) | TTFT of one more (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for l in &medians {
        println!(
            "| {} | {:.1} | {:.2}× | {:.1} | {:.2}× | {:.1} | {:.3} / {:.3} | {:.1} | {:.3} |",
            l.streams,
            l.aggregate_tok_s,
            l.aggregate_tok_s / base,
            l.tok_per_cpu_s,
            l.tok_per_cpu_s / cpu_base,
            l.decode_tok_s,
            l.ttft_mean_s,
            l.ttft_max_s,
            l.tpot_mean_s * 1000.0,
            l.ttft_under_load_s
        );
    }
    Ok(ExitCode::SUCCESS)
}
