//! Grounded readings (DESIGN.md §5a): chart → [`facts`] (stable ids) → retrieval per fact
//! ([`retrieve`]) → a reading, either assembled from passage sentences ([`compose`]) or written
//! by the LLM from the same facts and numbered passages ([`generate`]) → citations checked
//! against the passages given. [`pipeline`] runs the stages and streams [`pipeline::Event`]s;
//! [`prompt`] holds the versioned templates of `prompts/`; [`eval`] measures reading quality.
//!
//! Citation ids are chunk UUIDs (UUID v5 of the chunk's source path and text, stable across
//! re-indexing); the reading's text refers to them as `[n]`, the 1-based position in
//! `reading.citations`.

pub mod compose;
pub mod eval;
pub mod facts;
pub mod generate;
pub mod metrics;
pub mod pipeline;
pub mod prompt;
pub mod retrieve;
pub mod text;

use serde::{Deserialize, Serialize};

/// How the reading is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `generate` where the loaded model writes the locale well, else `compose`.
    #[default]
    Auto,
    /// Assembled from passage sentences with templated transitions.
    Compose,
    /// Written by the LLM from the facts and the passages.
    Generate,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Compose => "compose",
            Mode::Generate => "generate",
        }
    }

    /// Parse `auto`, `compose` or `generate`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Mode::Auto),
            "compose" => Some(Mode::Compose),
            "generate" => Some(Mode::Generate),
            _ => None,
        }
    }
}

/// The language of a reading (and of the passages it draws on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    Ko,
    En,
}

impl Locale {
    /// `ko` or `en`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ko" => Some(Locale::Ko),
            "en" => Some(Locale::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Locale::Ko => "ko",
            Locale::En => "en",
        }
    }
}

/// Which corpus a reading draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    Saju,
    Astrology,
}

impl Topic {
    pub fn name(self) -> &'static str {
        match self {
            Topic::Saju => "saju",
            Topic::Astrology => "astrology",
        }
    }
}

/// Why a reading failed after its input was accepted.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error("retrieval failed: {0}")]
    Retrieval(#[from] crate::retrieval::RetrievalError),
    #[error("generation failed: {0}")]
    Generation(String),
    #[error("the client went away")]
    Cancelled,
}
