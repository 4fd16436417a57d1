//! `starpillar embed "text"…`: embed texts with the configured model and print the vectors
//! (one JSON array per line) or, with `--similarity`, the cosine similarity matrix.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DataDirArgs;
use crate::engine::embedder::{EmbedInput, EmbedKind, EmbedMetrics};
use crate::engine::{Embed, EngineArgs};

/// `starpillar embed` flags.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// Embed as documents (`passage: ` prefix) instead of queries (`query: `).
    #[arg(long)]
    pub passage: bool,
    /// Print the cosine similarity of every pair instead of the vectors.
    #[arg(long)]
    pub similarity: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let metrics = EmbedMetrics::new();
    let embedder = crate::engine::load_embedder(&args.engine, &args.data.resolve(), &metrics)
        .context("loading the embedding model")?;
    let reply = embedder.submit(EmbedInput {
        texts: args.texts.clone(),
        kind: if args.passage {
            EmbedKind::Passage
        } else {
            EmbedKind::Query
        },
    })?;
    let out = reply
        .blocking_recv()
        .context("the embedder stopped")?
        .context("embedding")?;
    if args.similarity {
        for (i, a) in out.vectors.iter().enumerate() {
            let row: Vec<String> = out
                .vectors
                .iter()
                .map(|b| format!("{:.4}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()))
                .collect();
            println!("{}\t{}", row.join(" "), args.texts[i]);
        }
    } else {
        for v in &out.vectors {
            println!("{}", serde_json::to_string(v)?);
        }
    }
    eprintln!(
        "{} texts, {} tokens, model {}",
        out.vectors.len(),
        out.prompt_tokens,
        embedder.model()
    );
    Ok(ExitCode::SUCCESS)
}
