//! Command-line flags shared by `index`, `search` and `eval` (flattened with clap).

use std::path::Path;

use clap::Args;

use super::RetrievalError;
use super::corpus::ChunkConfig;
use super::sparse::{KoreanMode, SparseConfig};
use super::store::StoreSpec;

/// Where the index lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The vector store: `exact://<dir>` (exact in-process search). Default: `exact://` under
    /// the data dir (`<data-dir>/index/exact`).
    #[arg(long, env = "STARPILLAR_STORE", value_name = "URL")]
    pub store: Option<String>,
}

impl StoreArgs {
    pub fn spec(&self, data_dir: &Path) -> Result<StoreSpec, RetrievalError> {
        match &self.store {
            Some(s) => StoreSpec::parse(s),
            None => Ok(StoreSpec::default_for(data_dir)),
        }
    }
}

/// How documents become chunks and keyword vectors.
#[derive(Debug, Clone, Args)]
pub struct AnalysisArgs {
    /// Most tokens (of the embedder's tokenizer) per chunk.
    #[arg(long, env = "STARPILLAR_CHUNK_TOKENS", default_value_t = ChunkConfig::default().max_tokens)]
    pub chunk_tokens: usize,

    /// Tokens carried over between consecutive chunks of a long section.
    #[arg(long, env = "STARPILLAR_CHUNK_OVERLAP", default_value_t = ChunkConfig::default().overlap_tokens)]
    pub chunk_overlap: usize,

    /// Korean keyword analysis: character bigrams, particle-stripped words, or both.
    #[arg(long, env = "STARPILLAR_KOREAN", value_enum, default_value = "both")]
    pub korean: KoreanMode,
}

impl AnalysisArgs {
    pub fn chunk(&self) -> ChunkConfig {
        ChunkConfig {
            max_tokens: self.chunk_tokens,
            overlap_tokens: self.chunk_overlap,
        }
    }

    pub fn sparse(&self) -> SparseConfig {
        SparseConfig {
            korean: self.korean,
            ..SparseConfig::default()
        }
    }
}

/// A progress bar on stderr with rate and ETA (hidden when stderr is not a terminal).
pub fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let template =
        format!("{what} {{bar:40.cyan/blue}} {{pos}}/{{len}} chunks  {{per_sec}}  ETA {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
