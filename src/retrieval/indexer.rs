//! The indexing run: compare the corpus's chunks with what the store holds, embed and upsert
//! only the missing chunks (in batches, each durable before the next), delete the chunks whose
//! text or source is gone, stamp the corpus version, and report a manifest.
//!
//! Chunk ids come from content, so the run is idempotent (a second run finds nothing to do)
//! and resumable (after an interruption the next run upserts exactly what is missing; nothing
//! is duplicated, and stale chunks are deleted only after every new chunk is in). A store
//! built with another embedding model or sparse analysis is rebuilt rather than mixed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RetrievalError;
use super::corpus::{Chunk, corpus_version};
use super::sparse::{SparseConfig, doc_vector};
use super::store::{Point, StoreMeta, VectorStore};
use crate::engine::embedder::{Embed, EmbedKind};

/// Indexing settings.
#[derive(Debug, Clone, Copy)]
pub struct IndexOptions {
    pub sparse: SparseConfig,
    /// Chunks embedded and upserted per batch.
    pub batch: usize,
    pub dry_run: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            sparse: SparseConfig::default(),
            batch: 64,
            dry_run: false,
        }
    }
}

/// Documents by what happened to them (source paths).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub deleted: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Chunk counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCounts {
    pub upserted: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub total: usize,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub store: String,
    pub model: String,
    pub corpus_version: String,
    pub dry_run: bool,
    /// True when the store held another model's or analysis's vectors and was rebuilt.
    pub rebuilt: bool,
    pub documents: DocChanges,
    pub chunks: ChunkCounts,
    pub seconds: f64,
    pub embed_seconds: f64,
}

/// Run the indexer over `chunks` (from [`super::corpus::chunk_corpus`]). `embedder` may be
/// `None` only for a dry run; `model` names the model either way.
pub async fn run(
    store: &dyn VectorStore,
    embedder: Option<&dyn Embed>,
    model: &str,
    chunks: &[Chunk],
    options: &IndexOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Manifest, RetrievalError> {
    let started = Instant::now();
    let version = corpus_version(chunks.iter().map(|c| c.id));
    let meta = store.meta().await?;
    let dim = embedder.map(|e| e.dim());
    let rebuilt = meta.as_ref().is_some_and(|m| {
        m.model != model || m.sparse != Some(options.sparse) || dim.is_some_and(|d| d != m.dim)
    }) || (meta.is_none() && store.count(&Default::default()).await? > 0);

    let existing = store.list_ids(None).await?;
    let mut have: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, source) in &existing {
        have.entry(source.as_str()).or_default().insert(*id);
    }
    let mut want: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    for c in chunks {
        want.entry(c.payload.source.as_str())
            .or_default()
            .insert(c.id);
    }
    let kept: HashSet<Uuid> = if rebuilt {
        HashSet::new()
    } else {
        existing.iter().map(|(id, _)| *id).collect()
    };

    let mut docs = DocChanges::default();
    for (source, ids) in &want {
        match have.get(source) {
            None => docs.added.push((*source).to_owned()),
            Some(h) if h == ids && !rebuilt => docs.unchanged.push((*source).to_owned()),
            Some(_) => docs.changed.push((*source).to_owned()),
        }
    }
    docs.deleted = have
        .keys()
        .filter(|s| !want.contains_key(*s))
        .map(|s| (*s).to_owned())
        .collect();
    let wanted: HashSet<Uuid> = chunks.iter().map(|c| c.id).collect();
    let to_upsert: Vec<&Chunk> = chunks.iter().filter(|c| !kept.contains(&c.id)).collect();
    let to_delete: Vec<Uuid> = existing
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| rebuilt || !wanted.contains(id))
        .collect();

    let mut manifest = Manifest {
        store: store.describe(),
        model: model.to_owned(),
        corpus_version: version.clone(),
        dry_run: options.dry_run,
        rebuilt,
        documents: docs,
        chunks: ChunkCounts {
            upserted: to_upsert.len(),
            deleted: to_delete.len(),
            unchanged: chunks.len() - to_upsert.len(),
            total: chunks.len(),
        },
        ..Manifest::default()
    };
    if options.dry_run {
        manifest.seconds = started.elapsed().as_secs_f64();
        return Ok(manifest);
    }
    let embedder =
        embedder.ok_or_else(|| RetrievalError::Invalid("indexing needs an embedder".to_owned()))?;

    if rebuilt {
        store.delete(&to_delete).await?;
    }
    let new_meta = StoreMeta {
        model: model.to_owned(),
        dim: embedder.dim(),
        sparse: Some(options.sparse),
        corpus_version: meta.map(|m| m.corpus_version).unwrap_or_default(),
    };
    store.set_meta(&new_meta).await?;

    progress.set_length(to_upsert.len() as u64);
    let mut embed_seconds = 0.0;
    for batch in to_upsert.chunks(options.batch.max(1)) {
        let texts: Vec<String> = batch.iter().map(|c| c.payload.text.clone()).collect();
        let t = Instant::now();
        let vectors =
            super::embedding::embed_all(embedder, &texts, EmbedKind::Passage, |_| ()).await?;
        embed_seconds += t.elapsed().as_secs_f64();
        if vectors.len() != batch.len() {
            return Err(RetrievalError::Invalid(format!(
                "the embedder returned {} vectors for {} texts",
                vectors.len(),
                batch.len()
            )));
        }
        let points = batch
            .iter()
            .zip(vectors)
            .map(|(c, dense)| Point {
                id: c.id,
                dense,
                sparse: doc_vector(&c.payload.text, &options.sparse),
                payload: c.payload.clone(),
            })
            .collect();
        store.upsert(points).await?;
        progress.inc(batch.len() as u64);
        // Durable from here: an interrupted run resumes after this batch.
        tracing::debug!(
            done = progress.position(),
            total = to_upsert.len(),
            "batch upserted"
        );
    }
    if !rebuilt {
        store.delete(&to_delete).await?;
    }
    if new_meta.corpus_version != version {
        store.set_corpus_version(&version).await?;
    }
    progress.finish_and_clear();
    manifest.seconds = started.elapsed().as_secs_f64();
    manifest.embed_seconds = embed_seconds;
    Ok(manifest)
}
