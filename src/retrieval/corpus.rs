//! The corpus: Markdown documents with a small front-matter (`id`, `title`, `lang`, `topic`,
//! `tags`), loaded and validated from a folder, then cut into chunks under a token budget.
//!
//! Chunks follow the document's structure: one chunk per heading section when it fits, else
//! paragraphs packed under the budget with trailing paragraphs carried over as overlap (and a
//! paragraph longer than the budget split by words). Token counts come from a [`TokenCounter`]:
//! the engine's tokenizer in production, [`ApproxTokens`] in tests. A chunk's id is a UUID v5
//! of the SHA-256 of (source path, chunk text), so an unchanged chunk keeps its id forever and
//! re-indexing is idempotent; the corpus version is a hash of every chunk id.

mod markdown;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::RetrievalError;

pub use markdown::{
    ApproxTokens, ChunkConfig, Document, DocumentError, LANGS, TOPICS, TokenCounter, chunk_texts,
};

/// The namespace of chunk ids (a fixed, random UUID owned by starpillar).
pub const CHUNK_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2a7e_93b4_4d0c_8a61_0e7d_b2c4_9f13);

impl From<DocumentError> for RetrievalError {
    fn from(e: DocumentError) -> Self {
        Self::Document {
            path: e.path,
            problem: e.problem,
        }
    }
}

impl TokenCounter for crate::engine::unigram::Unigram {
    fn count(&self, text: &str) -> usize {
        self.encode(text).len()
    }
}

/// What is stored with every chunk (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub doc_id: String,
    pub source: String,
    pub title: String,
    pub lang: String,
    pub topic: String,
    pub tags: Vec<String>,
    pub chunk_index: usize,
    pub text: String,
    pub corpus_version: String,
}

/// A chunk ready to embed.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub id: Uuid,
    pub payload: Payload,
}

/// A loaded corpus, documents sorted by source path.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub root: PathBuf,
    pub documents: Vec<Document>,
}

fn doc_err(path: &str, problem: impl Into<String>) -> RetrievalError {
    RetrievalError::Document {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Every `*.md` under `root` except README files, relative, sorted.
fn markdown_files(root: &Path) -> Result<Vec<PathBuf>, RetrievalError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| RetrievalError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RetrievalError::io(&dir, e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| RetrievalError::io(&path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md")
                && !path
                    .file_name()
                    .is_some_and(|n| n.eq_ignore_ascii_case("README.md"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load and validate every document under `root`. All problems are reported together, one
/// line each, naming the file.
pub fn load_dir(root: &Path) -> Result<Corpus, RetrievalError> {
    if !root.is_dir() {
        return Err(doc_err(
            &root.display().to_string(),
            "not a directory (expected a corpus folder)",
        ));
    }
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for path in markdown_files(root)? {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{rel}: cannot read: {e}"));
                continue;
            }
        };
        match parse_document(&rel, &text) {
            Ok(doc) => documents.push(doc),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for doc in &documents {
        if let Some(first) = seen.insert(&doc.id, &doc.source) {
            problems.push(format!(
                "{}: duplicate id {:?} (also in {first})",
                doc.source, doc.id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(RetrievalError::Invalid(format!(
            "{} invalid corpus file(s) under {}:\n  {}",
            problems.len(),
            root.display(),
            problems.join("\n  ")
        )));
    }
    Ok(Corpus {
        root: root.to_path_buf(),
        documents,
    })
}

/// Parse one file's text; `source` is its path relative to the corpus root.
pub fn parse_document(source: &str, text: &str) -> Result<Document, RetrievalError> {
    Ok(markdown::parse_document(source, text)?)
}

/// The id of a chunk: UUID v5 of SHA-256(source, NUL, text).
pub fn chunk_id(source: &str, text: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    Uuid::new_v5(&CHUNK_NAMESPACE, &h.finalize())
}

/// Chunk every document; identical chunks within one document are kept once. The payloads'
/// `corpus_version` is filled in.
pub fn chunk_corpus(
    corpus: &Corpus,
    config: ChunkConfig,
    counter: &dyn TokenCounter,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for doc in &corpus.documents {
        let mut seen = BTreeSet::new();
        let mut index = 0;
        for text in chunk_texts(doc, config, counter) {
            let id = chunk_id(&doc.source, &text);
            if !seen.insert(id) {
                continue;
            }
            chunks.push(Chunk {
                id,
                payload: Payload {
                    doc_id: doc.id.clone(),
                    source: doc.source.clone(),
                    title: doc.title.clone(),
                    lang: doc.lang.clone(),
                    topic: doc.topic.clone(),
                    tags: doc.tags.clone(),
                    chunk_index: index,
                    text,
                    corpus_version: String::new(),
                },
            });
            index += 1;
        }
    }
    let version = corpus_version(chunks.iter().map(|c| c.id));
    for c in &mut chunks {
        c.payload.corpus_version.clone_from(&version);
    }
    chunks
}

/// The corpus version: the first 16 hex digits of SHA-256 over the sorted chunk ids.
pub fn corpus_version(ids: impl IntoIterator<Item = Uuid>) -> String {
    let sorted: BTreeSet<Uuid> = ids.into_iter().collect();
    let mut h = Sha256::new();
    for id in &sorted {
        h.update(id.as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_depend_on_source_and_text_only() {
        let a = chunk_id("a.md", "text");
        assert_eq!(a, chunk_id("a.md", "text"));
        assert_ne!(a, chunk_id("b.md", "text"));
        assert_ne!(a, chunk_id("a.md", "text!"));
        assert_eq!(a.get_version_num(), 5);
        let v1 = corpus_version([a, chunk_id("b.md", "x")]);
        assert_eq!(v1, corpus_version([chunk_id("b.md", "x"), a]));
        assert_ne!(v1, corpus_version([a]));
    }
}
