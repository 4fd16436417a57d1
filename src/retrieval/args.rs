//! Command-line flags shared by `index`, `search` and `eval` (flattened with clap).

use std::path::Path;

use clap::Args;

use super::RetrievalError;
use super::corpus::ChunkConfig;
use super::sparse::{KoreanMode, SparseConfig};
use super::store::StoreSpec;

/// Where the index lives.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// The vector store: `edge://<dir>` (embedded Qdrant), `qdrant://host:6334[/collection]`
    /// (a Qdrant server; `https://host:6334` for TLS) or `exact://<dir>` (exact reference
    /// store). Default: `edge://<data-dir>/index/edge`.
    #[arg(long, env = "STARPILLAR_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// API key of the Qdrant server (`qdrant://` stores).
    #[arg(
        long,
        env = "QDRANT_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub qdrant_api_key: Option<String>,
}

impl StoreArgs {
    pub fn spec(&self, data_dir: &Path) -> Result<StoreSpec, RetrievalError> {
        match &self.store {
            Some(s) => StoreSpec::parse_with_key(s, self.qdrant_api_key.as_deref()),
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

/// Retrieval flags of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeRetrievalArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The corpus `serve` indexes when the store is empty or was built from another corpus or
    /// model. Default: `./corpus`, else `/usr/share/starpillar/corpus` (the container's).
    #[arg(long, env = "STARPILLAR_CORPUS_DIR", value_name = "DIR")]
    pub corpus_dir: Option<std::path::PathBuf>,

    /// Do not index at start: search whatever the store holds.
    #[arg(long, env = "STARPILLAR_NO_AUTO_INDEX")]
    pub no_auto_index: bool,
}

impl ServeRetrievalArgs {
    /// The corpus folder: the flag, else the first of the default places that exists.
    pub fn corpus_dir(&self) -> Option<std::path::PathBuf> {
        if let Some(d) = &self.corpus_dir {
            return Some(d.clone());
        }
        ["corpus", "/usr/share/starpillar/corpus"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_dir())
    }
}
