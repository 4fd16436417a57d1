//! Retrieval store suite, run against every store: the exact reference (`exact://`), embedded
//! Qdrant (`edge://`) in temp dirs, and a Qdrant server when `QDRANT_URL` is set (e.g.
//! `QDRANT_URL=http://localhost:6334`; a fresh collection per test, dropped at the end) —
//! index, re-index (nothing changes), edit one document (only its chunks change), delete one
//! (its chunks go), an interrupted run then a re-run (no duplicates, complete), dry runs, a
//! model change, filters, persistence across reopen; plus edge-vs-exact agreement of dense,
//! sparse and hybrid rankings — with a deterministic model-free embedder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use starpillar::engine::EngineError;
use starpillar::engine::embedder::{Embed, EmbedInput, EmbedReply, Embeddings};
use starpillar::retrieval::corpus::{self, ApproxTokens, ChunkConfig};
use starpillar::retrieval::hybrid::{self, Fusion, Mode};
use starpillar::retrieval::indexer::{self, IndexOptions, Manifest};
use starpillar::retrieval::sparse::{SparseConfig, query_vector};
use starpillar::retrieval::store::{ExactStore, Filter, StoreSpec, VectorStore};
use uuid::Uuid;

use crate::common::tempdir::TempDir;

/// Hashes words into a 64-d vector; fails every call after `fail_after` calls.
pub(crate) struct HashEmbed {
    name: String,
    calls: AtomicUsize,
    fail_after: usize,
}

impl HashEmbed {
    /// Embed requests made so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub(crate) fn new() -> Self {
        Self::failing_after(usize::MAX)
    }
    fn failing_after(n: usize) -> Self {
        Self {
            name: "hash-64".into(),
            calls: AtomicUsize::new(0),
            fail_after: n,
        }
    }
}

impl Embed for HashEmbed {
    fn model(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        64
    }
    fn submit(&self, input: EmbedInput) -> Result<EmbedReply, EngineError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.fail_after {
            let _ = tx.send(Err(EngineError::Compute("injected failure".into())));
            return Ok(rx);
        }
        let vectors = input
            .texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; 64];
                for w in t.split_whitespace() {
                    v[starpillar::retrieval::sparse::term_index(w) as usize % 64] += 1.0;
                }
                v[0] += 0.01;
                v
            })
            .collect();
        let _ = tx.send(Ok(Embeddings {
            vectors,
            prompt_tokens: 0,
        }));
        Ok(rx)
    }
}

fn doc(id: &str, lang: &str, topic: &str, title: &str, sections: &[(&str, &str)]) -> String {
    let mut s = format!(
        "---\nid: {id}\ntitle: \"{title}\"\nlang: {lang}\ntopic: {topic}\ntags: [test]\n---\n\n# {title}\n\nIntro of {id}.\n"
    );
    for (h, body) in sections {
        s.push_str(&format!("\n## {h}\n\n{body}\n"));
    }
    s
}

/// A four-document corpus: ko/en × saju/astrology.
pub(crate) fn write_corpus(root: &Path) {
    let files = [
        (
            "saju/ko/saju-stem-yang-wood-ko.md",
            doc(
                "saju-stem-yang-wood-ko",
                "ko",
                "saju",
                "갑목: 큰 나무",
                &[
                    (
                        "직업",
                        "갑목 일간은 곧게 자라는 나무처럼 앞장서는 일을 좋아합니다.",
                    ),
                    ("연애", "연애에서는 솔직하고 든든합니다."),
                ],
            ),
        ),
        (
            "saju/en/saju-stem-yang-wood-en.md",
            doc(
                "saju-stem-yang-wood-en",
                "en",
                "saju",
                "Gap, yang wood",
                &[
                    ("Work", "A Gap day master grows straight and likes to lead."),
                    ("Love", "In love Gap is frank and steady."),
                ],
            ),
        ),
        (
            "astrology/en/astrology-planet-saturn-en.md",
            doc(
                "astrology-planet-saturn-en",
                "en",
                "astrology",
                "Saturn",
                &[
                    (
                        "Meaning",
                        "Saturn is structure, time and the slow reward of patience.",
                    ),
                    ("Return", "The Saturn return arrives near age twenty-nine."),
                ],
            ),
        ),
        (
            "astrology/ko/astrology-planet-saturn-ko.md",
            doc(
                "astrology-planet-saturn-ko",
                "ko",
                "astrology",
                "토성",
                &[("의미", "토성은 구조와 시간, 인내의 보상을 뜻합니다.")],
            ),
        ),
    ];
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Edge,
    Qdrant,
}

/// A store location that can be opened again (a fresh process, as far as the store can tell).
struct Place {
    kind: Kind,
    spec: StoreSpec,
}

impl Place {
    /// `None` (with a notice) for a Qdrant server when `QDRANT_URL` is not set.
    fn new(kind: Kind, tmp: &Path, test: &str) -> Option<Self> {
        let spec = match kind {
            Kind::Exact => StoreSpec::Exact(tmp.join("store-exact")),
            Kind::Edge => StoreSpec::Edge(tmp.join("store-edge")),
            Kind::Qdrant => {
                let Ok(url) = std::env::var("QDRANT_URL") else {
                    println!(
                        "QDRANT_URL is not set: skipping {test} against a Qdrant server (start \
                         one as the README says and set QDRANT_URL=http://localhost:6334)"
                    );
                    return None;
                };
                let base = url.trim_end_matches('/');
                let collection = format!("starpillar_test_{test}_{}", Uuid::new_v4().simple());
                let key = std::env::var("QDRANT_API_KEY").ok();
                StoreSpec::parse_with_key(&format!("{base}/{collection}"), key.as_deref())
                    .expect("QDRANT_URL is a http(s):// or qdrant:// URL")
            }
        };
        Some(Self { kind, spec })
    }

    fn open(&self) -> std::sync::Arc<dyn VectorStore> {
        self.spec.open().expect("the store opens")
    }

    /// Drop a server collection (local stores go with their temp dir).
    async fn cleanup(&self) {
        if let StoreSpec::Qdrant(q) = &self.spec {
            let store = starpillar::retrieval::qdrant::QdrantStore::new(q).unwrap();
            store.drop_collection().await.unwrap();
        }
    }
}

/// One `#[tokio::test]` per store for each listed suite function `fn(Kind)`.
macro_rules! for_every_store {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test]
            async fn exact() {
                super::$name(super::Kind::Exact).await;
            }
            #[tokio::test]
            async fn edge() {
                super::$name(super::Kind::Edge).await;
            }
            #[tokio::test]
            async fn qdrant_server() {
                super::$name(super::Kind::Qdrant).await;
            }
        })*
    };
}

for_every_store!(
    index_then_reindex_changes_nothing,
    editing_one_document_changes_only_its_chunks,
    deleting_one_document_removes_its_chunks,
    an_interrupted_run_resumes_without_duplicates,
    dry_run_writes_nothing_and_a_new_model_rebuilds,
    filters_restrict_dense_and_sparse_search,
    the_store_persists_across_reopen,
);

fn opts(batch: usize) -> IndexOptions {
    IndexOptions {
        sparse: SparseConfig::default(),
        batch,
        dry_run: false,
    }
}

async fn index_with(
    root: &Path,
    store: &dyn VectorStore,
    embed: &dyn Embed,
    options: &IndexOptions,
) -> Result<Manifest, starpillar::retrieval::RetrievalError> {
    let c = corpus::load_dir(root)?;
    let chunks = corpus::chunk_corpus(&c, ChunkConfig::default(), &ApproxTokens);
    let bar = indicatif::ProgressBar::hidden();
    indexer::run(store, Some(embed), embed.model(), &chunks, options, &bar).await
}

async fn index(root: &Path, store: &dyn VectorStore) -> Manifest {
    index_with(root, store, &HashEmbed::new(), &opts(2))
        .await
        .unwrap()
}

async fn ids_by_source(store: &dyn VectorStore) -> BTreeMap<String, BTreeSet<Uuid>> {
    let mut out: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for (id, source) in store.list_ids(None).await.unwrap() {
        out.entry(source).or_default().insert(id);
    }
    out
}

/// The ids the corpus should produce, by source.
fn expected_ids(root: &Path) -> BTreeMap<String, BTreeSet<Uuid>> {
    let c = corpus::load_dir(root).unwrap();
    let mut out: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for ch in corpus::chunk_corpus(&c, ChunkConfig::default(), &ApproxTokens) {
        out.entry(ch.payload.source).or_default().insert(ch.id);
    }
    out
}

/// A temp dir with the four-document corpus, and the store place for `kind`.
fn setup(kind: Kind, test: &str) -> Option<(TempDir, std::path::PathBuf, Place)> {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let place = Place::new(kind, tmp.path(), test)?;
    Some((tmp, root, place))
}

async fn index_then_reindex_changes_nothing(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "reindex") else {
        return;
    };
    let store = place.open();
    let first = index(&root, store.as_ref()).await;
    assert_eq!(first.documents.added.len(), 4);
    assert!(first.chunks.upserted > 4);
    assert_eq!(ids_by_source(store.as_ref()).await, expected_ids(&root));
    let meta = store.meta().await.unwrap().unwrap();
    assert_eq!(meta.corpus_version, first.corpus_version);

    let second = index(&root, store.as_ref()).await;
    assert_eq!(second.documents.unchanged.len(), 4);
    assert_eq!(second.chunks.upserted, 0);
    assert_eq!(second.chunks.deleted, 0);
    assert_eq!(second.corpus_version, first.corpus_version);
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        first.chunks.total
    );
    place.cleanup().await;
}

async fn editing_one_document_changes_only_its_chunks(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "edit") else {
        return;
    };
    let store = place.open();
    let first = index(&root, store.as_ref()).await;
    let before = ids_by_source(store.as_ref()).await;

    let edited = "saju/en/saju-stem-yang-wood-en.md";
    let path = root.join(edited);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("likes to lead", "likes to lead and to build"),
    )
    .unwrap();
    let m = index(&root, store.as_ref()).await;
    assert_eq!(m.documents.changed, [edited]);
    assert_eq!(m.documents.unchanged.len(), 3);
    assert_eq!(m.chunks.upserted, 1);
    assert_eq!(m.chunks.deleted, 1);
    assert_ne!(m.corpus_version, first.corpus_version);
    let after = ids_by_source(store.as_ref()).await;
    for (source, ids) in &before {
        if source == edited {
            assert_eq!(ids.intersection(&after[source]).count(), ids.len() - 1);
        } else {
            assert_eq!(ids, &after[source], "{source} changed");
        }
    }
    assert_eq!(after, expected_ids(&root));
    // Every payload carries the new corpus version.
    let hits = store
        .search_sparse(
            &query_vector("Saturn", &SparseConfig::default()),
            &Filter::default(),
            50,
        )
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter()
            .all(|h| h.payload.corpus_version == m.corpus_version)
    );
    assert_eq!(
        store.meta().await.unwrap().unwrap().corpus_version,
        m.corpus_version
    );
    place.cleanup().await;
}

async fn deleting_one_document_removes_its_chunks(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "delete") else {
        return;
    };
    let store = place.open();
    index(&root, store.as_ref()).await;
    let gone = "astrology/ko/astrology-planet-saturn-ko.md";
    std::fs::remove_file(root.join(gone)).unwrap();
    let m = index(&root, store.as_ref()).await;
    assert_eq!(m.documents.deleted, [gone]);
    assert_eq!(m.chunks.upserted, 0);
    assert!(m.chunks.deleted >= 2);
    assert!(store.list_ids(Some(gone)).await.unwrap().is_empty());
    assert_eq!(ids_by_source(store.as_ref()).await, expected_ids(&root));
    place.cleanup().await;
}

async fn an_interrupted_run_resumes_without_duplicates(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "resume") else {
        return;
    };
    {
        let store = place.open();
        let failing = HashEmbed::failing_after(2);
        let err = index_with(&root, store.as_ref(), &failing, &opts(2))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        let n = store.count(&Filter::default()).await.unwrap();
        assert_eq!(n, 4, "two batches of two were written before the failure");
    }
    // A fresh process: reopen and run again.
    let store = place.open();
    let m = index(&root, store.as_ref()).await;
    assert_eq!(m.chunks.unchanged, 4);
    assert_eq!(m.chunks.upserted, m.chunks.total - 4);
    assert_eq!(ids_by_source(store.as_ref()).await, expected_ids(&root));
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        m.chunks.total
    );
    place.cleanup().await;
}

async fn dry_run_writes_nothing_and_a_new_model_rebuilds(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "dry") else {
        return;
    };
    let store = place.open();
    let dry = IndexOptions {
        dry_run: true,
        ..opts(2)
    };
    let m = index_with(&root, store.as_ref(), &HashEmbed::new(), &dry)
        .await
        .unwrap();
    assert_eq!(m.documents.added.len(), 4);
    assert!(m.chunks.upserted > 0);
    assert_eq!(store.count(&Filter::default()).await.unwrap(), 0);
    assert!(store.meta().await.unwrap().is_none());

    index(&root, store.as_ref()).await;
    let mut other = HashEmbed::new();
    other.name = "hash-64-v2".into();
    let m = index_with(&root, store.as_ref(), &other, &opts(8))
        .await
        .unwrap();
    assert!(m.rebuilt);
    assert_eq!(m.chunks.upserted, m.chunks.total);
    assert_eq!(store.meta().await.unwrap().unwrap().model, "hash-64-v2");
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        m.chunks.total
    );
    place.cleanup().await;
}

async fn filters_restrict_dense_and_sparse_search(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "filters") else {
        return;
    };
    let store = place.open();
    index(&root, store.as_ref()).await;
    let sparse = SparseConfig::default();
    let ko = Filter {
        lang: Some("ko".into()),
        topic: None,
    };
    let hits = store
        .search_sparse(&query_vector("갑목 토성 Saturn", &sparse), &ko, 50)
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.payload.lang == "ko"));
    let astro_en = Filter {
        lang: Some("en".into()),
        topic: Some("astrology".into()),
    };
    let q = vec![1.0f32; 64];
    let hits = store.search_dense(&q, &astro_en, 50).await.unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter()
            .all(|h| h.payload.doc_id == "astrology-planet-saturn-en")
    );
    assert_eq!(
        store.count(&astro_en).await.unwrap(),
        expected_ids(&root)["astrology/en/astrology-planet-saturn-en.md"].len()
    );
    // Sparse ranks the document that has the words first; scores are descending.
    let en = Filter {
        lang: Some("en".into()),
        topic: None,
    };
    let hits = store
        .search_sparse(&query_vector("Saturn return", &sparse), &en, 5)
        .await
        .unwrap();
    assert!(hits[0].payload.text.contains("Saturn return"));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // A query vector of the wrong dimension is an error, not a panic.
    assert!(store.search_dense(&[1.0; 3], &en, 5).await.is_err());
    place.cleanup().await;
}

async fn the_store_persists_across_reopen(kind: Kind) {
    let Some((_tmp, root, place)) = setup(kind, "reopen") else {
        return;
    };
    let q = query_vector("Saturn patience", &SparseConfig::default());
    let (before, results, meta) = {
        let store = place.open();
        index(&root, store.as_ref()).await;
        let r = store
            .search_sparse(&q, &Filter::default(), 5)
            .await
            .unwrap();
        (
            ids_by_source(store.as_ref()).await,
            r,
            store.meta().await.unwrap(),
        )
    };
    if let StoreSpec::Exact(dir) = &place.spec {
        // A writer killed mid-append leaves a torn last line; it is ignored.
        let mut wal = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("wal.jsonl"))
            .unwrap();
        std::io::Write::write_all(&mut wal, b"{\"delete\":[\"0000").unwrap();
    }
    let store = place.open();
    assert_eq!(ids_by_source(store.as_ref()).await, before);
    assert_eq!(store.meta().await.unwrap(), meta);
    let again = store
        .search_sparse(&q, &Filter::default(), 5)
        .await
        .unwrap();
    assert_eq!(ids(&again), ids(&results));
    // Deletes persist too.
    let gone: Vec<Uuid> = before.values().next().unwrap().iter().copied().collect();
    store.delete(&gone).await.unwrap();
    drop(store);
    let store = place.open();
    let n: usize = before.values().map(BTreeSet::len).sum();
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        n - gone.len()
    );
    assert!(place.kind != Kind::Exact || !gone.is_empty());
    place.cleanup().await;
}

fn ids(hits: &[starpillar::retrieval::store::Hit]) -> Vec<Uuid> {
    hits.iter().map(|h| h.id).collect()
}

async fn ranked(
    store: &dyn VectorStore,
    mode: Mode,
    query: &str,
    vector: &[f32],
    sparse: &SparseConfig,
    fusion: &Fusion,
    filter: &Filter,
) -> Vec<starpillar::retrieval::store::Hit> {
    hybrid::search_with(store, mode, query, Some(vector), sparse, fusion, filter, 50)
        .await
        .unwrap()
}

/// Edge (embedded Qdrant) ranks exactly as the exact reference store: dense cosine, sparse
/// BM25 with collection IDF, and the weighted RRF fusion of both (the chosen setting and the
/// plain one), under filters; so does a Qdrant server, fusing on its side, when `QDRANT_URL`
/// is set.
#[tokio::test]
async fn edge_and_exact_rank_the_same() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let exact = ExactStore::open(&tmp.path().join("exact")).unwrap();
    let edge = StoreSpec::Edge(tmp.path().join("edge")).open().unwrap();
    index(&root, &exact).await;
    index(&root, edge.as_ref()).await;
    let server = Place::new(Kind::Qdrant, tmp.path(), "parity");
    let mut others = vec![("edge", edge)];
    if let Some(place) = &server {
        let store = place.open();
        index(&root, store.as_ref()).await;
        others.push(("qdrant", store));
    }
    let sparse = SparseConfig::default();
    let embed = HashEmbed::new();
    let queries = [
        ("Saturn return patience", None, None),
        ("갑목 나무 직업", Some("ko"), None),
        ("Gap leads in love and work", Some("en"), Some("saju")),
        ("토성 인내", Some("ko"), Some("astrology")),
    ];
    let fusions = [Fusion::default(), Fusion::PLAIN];
    for (query, lang, topic) in queries {
        let filter = Filter {
            lang: lang.map(str::to_owned),
            topic: topic.map(str::to_owned),
        };
        let reply = starpillar::engine::embedder::embed(
            &embed,
            EmbedInput {
                texts: vec![query.to_owned()],
                kind: starpillar::engine::EmbedKind::Query,
            },
        )
        .await
        .unwrap();
        for mode in [Mode::Dense, Mode::Sparse, Mode::Hybrid] {
            for fusion in &fusions {
                let v = reply.vectors[0].as_slice();
                let a = ranked(&exact, mode, query, v, &sparse, fusion, &filter).await;
                assert!(!a.is_empty(), "{query} {mode:?}");
                for (name, other) in &others {
                    let b = ranked(other.as_ref(), mode, query, v, &sparse, fusion, &filter).await;
                    let what = format!("{name}: {query} {mode:?} {}", fusion.describe());
                    assert_eq!(a.len(), b.len(), "{what}");
                    // The same chunks with the same scores; chunks tied on one side may swap
                    // ranks, which moves their fused scores, so ids and scores are compared as
                    // sets.
                    let mut sa: Vec<f32> = a.iter().map(|h| h.score).collect();
                    let mut sb: Vec<f32> = b.iter().map(|h| h.score).collect();
                    sa.sort_by(f32::total_cmp);
                    sb.sort_by(f32::total_cmp);
                    let close = sa.iter().zip(&sb).all(|(x, y)| (x - y).abs() < 1e-4);
                    assert!(close, "{what}: {sa:?} vs {sb:?}");
                    let ia: BTreeSet<Uuid> = a.iter().map(|h| h.id).collect();
                    let ib: BTreeSet<Uuid> = b.iter().map(|h| h.id).collect();
                    assert_eq!(ia, ib, "{what}");
                }
                if mode != Mode::Hybrid {
                    break;
                }
            }
        }
    }
    if let Some(place) = server {
        place.cleanup().await;
    }
}
