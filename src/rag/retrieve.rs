//! Retrieval per fact: every query of a fact is searched under the reading's language and the
//! fact's topic, the lists are fused by reciprocal rank, and chunks are boosted when their
//! document carries the fact's tags, is the fact's own document, or their section heading
//! names the fact. Each fact keeps its best chunk(s) not already taken by a weightier fact; a
//! second (or later) chunk only when it is on the fact's topic — it carries one of the fact's
//! tags, is the fact's own document or its heading names the fact — or scores at least
//! [`FOLLOW_UP_MIN_RATIO`] of the fact's first chunk (a chunk that matched one query by chance
//! drifts off topic).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;

use super::facts::Fact;
use super::metrics::RagMetrics;
use super::{Locale, RagError, Topic};
use crate::retrieval::retriever::Retriever;
use crate::retrieval::store::{Filter, Hit};

/// Results per query.
const PER_QUERY: usize = 12;
/// Reciprocal-rank constant.
const RRF_K: f32 = 60.0;
const TAG_BONUS: f32 = 0.02;
const DOC_BONUS: f32 = 0.04;
const SECTION_BONUS: f32 = 0.03;
/// A fact's later chunk without a tag, document or heading match needs at least this share of
/// the fused score of the fact's first chunk.
pub const FOLLOW_UP_MIN_RATIO: f32 = 0.5;

/// A retrieved chunk, numbered in the order it is cited.
#[derive(Debug, Clone, Serialize)]
pub struct Passage {
    /// 1-based: the `[n]` the reading uses.
    pub n: usize,
    /// The chunk id (the citation id).
    pub id: Uuid,
    pub doc_id: String,
    pub title: String,
    pub source: String,
    pub chunk_index: usize,
    /// Fused retrieval score.
    pub score: f32,
    /// The fact it was retrieved for (`question` for the question itself).
    pub fact: String,
    #[serde(skip)]
    pub text: String,
}

/// A citation as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Citation {
    /// The `[n]` that refers to it in the text.
    pub n: usize,
    /// The chunk's UUID (stable: derived from its source path and text).
    pub id: String,
    pub title: String,
    /// `<corpus path>#<chunk index>`.
    pub source: String,
    pub score: f32,
    pub doc_id: String,
}

impl Passage {
    pub fn citation(&self) -> Citation {
        Citation {
            n: self.n,
            id: self.id.to_string(),
            title: self.title.clone(),
            source: format!("{}#{}", self.source, self.chunk_index),
            score: (self.score * 10_000.0).round() / 10_000.0,
            doc_id: self.doc_id.clone(),
        }
    }

    /// The chunk's section heading (`## …` line), if any.
    pub fn heading(&self) -> &str {
        heading(&self.text)
    }
}

fn heading(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("## "))
        .unwrap_or("")
}

/// Search every query of `fact`, fuse and boost; best first.
pub async fn search_fact(
    retriever: &Retriever,
    fact: &Fact,
    locale: Locale,
    fallback_topic: Option<Topic>,
    metrics: &RagMetrics,
) -> Result<Vec<(Hit, f32)>, RagError> {
    let filter = Filter {
        lang: Some(locale.code().to_owned()),
        topic: fact
            .search
            .topic
            .or(fallback_topic)
            .map(|t| t.name().to_owned()),
    };
    let mut fused: HashMap<Uuid, (Hit, f32)> = HashMap::new();
    for query in fact.queries(locale) {
        let start = Instant::now();
        let hits = retriever.search(query, &filter, PER_QUERY).await?;
        metrics
            .retrieval_seconds
            .observe(start.elapsed().as_secs_f64());
        for (rank, hit) in hits.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            fused
                .entry(hit.id)
                .and_modify(|e| e.1 += add)
                .or_insert((hit, add));
        }
    }
    let mut out: Vec<(Hit, f32)> = fused
        .into_values()
        .map(|(hit, score)| {
            let bonus = bonus(fact, locale, &hit);
            (hit, score + bonus)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    Ok(out)
}

/// What a chunk earns for being on the fact's topic: its tags, its document, its heading.
fn bonus(fact: &Fact, locale: Locale, hit: &Hit) -> f32 {
    let mut bonus = 0.0;
    let tags = fact
        .search
        .tags
        .iter()
        .filter(|t| hit.payload.tags.contains(t))
        .count();
    bonus += TAG_BONUS * tags as f32;
    let own_doc = fact
        .search
        .doc
        .as_ref()
        .map(|d| format!("{d}-{}", locale.code()));
    if own_doc.as_deref() == Some(hit.payload.doc_id.as_str()) {
        bonus += DOC_BONUS;
    }
    let head = heading(&hit.payload.text).to_lowercase();
    if !head.is_empty()
        && fact
            .search
            .sections
            .iter()
            .any(|s| head.contains(&s.to_lowercase()))
    {
        bonus += SECTION_BONUS;
    }
    bonus
}

/// The chunks a fact keeps out of its fresh hits (best first): the first, then up to
/// `limit - 1` more that are on topic or score near the first.
fn keep_for_fact(
    fact: &Fact,
    locale: Locale,
    fresh: impl Iterator<Item = (Hit, f32)>,
    limit: usize,
) -> Vec<(Hit, f32)> {
    let mut kept: Vec<(Hit, f32)> = Vec::new();
    for (hit, score) in fresh {
        if kept.len() >= limit {
            break;
        }
        let relevant = match kept.first() {
            None => true,
            Some((_, first)) => {
                bonus(fact, locale, &hit) > 0.0 || score >= FOLLOW_UP_MIN_RATIO * first
            }
        };
        if relevant {
            kept.push((hit, score));
        }
    }
    kept
}

/// Passages for every fact (concurrently), each fact taking up to `per_fact(fact)` chunks no
/// weightier fact took, numbered in fact order.
pub async fn for_facts(
    retriever: &Retriever,
    facts: &[Fact],
    locale: Locale,
    fallback_topic: Option<Topic>,
    per_fact: &(dyn Fn(&Fact) -> usize + Sync),
    metrics: &RagMetrics,
) -> Result<Vec<Passage>, RagError> {
    let searches = facts
        .iter()
        .map(|f| search_fact(retriever, f, locale, fallback_topic, metrics));
    let results = futures::future::try_join_all(searches).await?;
    let mut taken: HashSet<Uuid> = HashSet::new();
    let mut passages = Vec::new();
    for (fact, hits) in facts.iter().zip(results) {
        let fresh = hits.into_iter().filter(|(h, _)| !taken.contains(&h.id));
        let fresh = keep_for_fact(fact, locale, fresh, per_fact(fact));
        for (hit, score) in fresh {
            taken.insert(hit.id);
            passages.push(Passage {
                n: passages.len() + 1,
                id: hit.id,
                doc_id: hit.payload.doc_id,
                title: hit.payload.title,
                source: hit.payload.source,
                chunk_index: hit.payload.chunk_index,
                score,
                fact: fact.id.clone(),
                text: hit.payload.text,
            });
        }
    }
    Ok(passages)
}
