//! Retrieval: indexing into the exact store in temp dirs — index, re-index (nothing changes),
//! edit one document (only its chunks change), delete one (its chunks go), an interrupted run
//! then a re-run (no duplicates, complete), dry runs, a model change, filters, persistence
//! across reopen — with a deterministic model-free embedder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use starpillar::engine::EngineError;
use starpillar::engine::embedder::{Embed, EmbedInput, EmbedReply, Embeddings};
use starpillar::retrieval::corpus::{self, ApproxTokens, ChunkConfig};
use starpillar::retrieval::indexer::{self, IndexOptions, Manifest};
use starpillar::retrieval::sparse::{SparseConfig, query_vector};
use starpillar::retrieval::store::{ExactStore, Filter, VectorStoreRead, VectorStoreWrite};
use uuid::Uuid;

use crate::common::tempdir::TempDir;

/// Hashes words into a 64-d vector; fails every call after `fail_after` calls.
struct HashEmbed {
    name: String,
    calls: AtomicUsize,
    fail_after: usize,
}

impl HashEmbed {
    fn new() -> Self {
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
fn write_corpus(root: &Path) {
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

fn opts(batch: usize) -> IndexOptions {
    IndexOptions {
        sparse: SparseConfig::default(),
        batch,
        dry_run: false,
    }
}

async fn index_with(
    root: &Path,
    store: &ExactStore,
    embed: &dyn Embed,
    options: &IndexOptions,
) -> Result<Manifest, starpillar::retrieval::RetrievalError> {
    let c = corpus::load_dir(root)?;
    let chunks = corpus::chunk_corpus(&c, ChunkConfig::default(), &ApproxTokens);
    let bar = indicatif::ProgressBar::hidden();
    indexer::run(store, Some(embed), embed.model(), &chunks, options, &bar).await
}

async fn index(root: &Path, store: &ExactStore) -> Manifest {
    index_with(root, store, &HashEmbed::new(), &opts(2))
        .await
        .unwrap()
}

async fn ids_by_source(store: &ExactStore) -> BTreeMap<String, BTreeSet<Uuid>> {
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

#[tokio::test]
async fn index_then_reindex_changes_nothing() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let store = ExactStore::open(&tmp.path().join("store")).unwrap();
    let first = index(&root, &store).await;
    assert_eq!(first.documents.added.len(), 4);
    assert!(first.chunks.upserted > 4);
    assert_eq!(ids_by_source(&store).await, expected_ids(&root));
    let meta = store.meta().await.unwrap().unwrap();
    assert_eq!(meta.corpus_version, first.corpus_version);

    let second = index(&root, &store).await;
    assert_eq!(second.documents.unchanged.len(), 4);
    assert_eq!(second.chunks.upserted, 0);
    assert_eq!(second.chunks.deleted, 0);
    assert_eq!(second.corpus_version, first.corpus_version);
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        first.chunks.total
    );
}

#[tokio::test]
async fn editing_one_document_changes_only_its_chunks() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let store = ExactStore::open(&tmp.path().join("store")).unwrap();
    let first = index(&root, &store).await;
    let before = ids_by_source(&store).await;

    let edited = "saju/en/saju-stem-yang-wood-en.md";
    let path = root.join(edited);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("likes to lead", "likes to lead and to build"),
    )
    .unwrap();
    let m = index(&root, &store).await;
    assert_eq!(m.documents.changed, [edited]);
    assert_eq!(m.documents.unchanged.len(), 3);
    assert_eq!(m.chunks.upserted, 1);
    assert_eq!(m.chunks.deleted, 1);
    assert_ne!(m.corpus_version, first.corpus_version);
    let after = ids_by_source(&store).await;
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
}

#[tokio::test]
async fn deleting_one_document_removes_its_chunks() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let store = ExactStore::open(&tmp.path().join("store")).unwrap();
    index(&root, &store).await;
    let gone = "astrology/ko/astrology-planet-saturn-ko.md";
    std::fs::remove_file(root.join(gone)).unwrap();
    let m = index(&root, &store).await;
    assert_eq!(m.documents.deleted, [gone]);
    assert_eq!(m.chunks.upserted, 0);
    assert!(m.chunks.deleted >= 2);
    assert!(store.list_ids(Some(gone)).await.unwrap().is_empty());
    assert_eq!(ids_by_source(&store).await, expected_ids(&root));
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_duplicates() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let store_dir = tmp.path().join("store");
    {
        let store = ExactStore::open(&store_dir).unwrap();
        let failing = HashEmbed::failing_after(2);
        let err = index_with(&root, &store, &failing, &opts(2))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        let n = store.count(&Filter::default()).await.unwrap();
        assert_eq!(n, 4, "two batches of two were written before the failure");
    }
    // A fresh process: reopen and run again.
    let store = ExactStore::open(&store_dir).unwrap();
    let m = index(&root, &store).await;
    assert_eq!(m.chunks.unchanged, 4);
    assert_eq!(m.chunks.upserted, m.chunks.total - 4);
    assert_eq!(ids_by_source(&store).await, expected_ids(&root));
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        m.chunks.total
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_and_a_new_model_rebuilds() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let store = ExactStore::open(&tmp.path().join("store")).unwrap();
    let dry = IndexOptions {
        dry_run: true,
        ..opts(2)
    };
    let m = index_with(&root, &store, &HashEmbed::new(), &dry)
        .await
        .unwrap();
    assert_eq!(m.documents.added.len(), 4);
    assert!(m.chunks.upserted > 0);
    assert_eq!(store.count(&Filter::default()).await.unwrap(), 0);
    assert!(store.meta().await.unwrap().is_none());

    index(&root, &store).await;
    let mut other = HashEmbed::new();
    other.name = "hash-64-v2".into();
    let m = index_with(&root, &store, &other, &opts(8)).await.unwrap();
    assert!(m.rebuilt);
    assert_eq!(m.chunks.upserted, m.chunks.total);
    assert_eq!(store.meta().await.unwrap().unwrap().model, "hash-64-v2");
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        m.chunks.total
    );
}

#[tokio::test]
async fn filters_restrict_dense_and_sparse_search() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let store = ExactStore::open(&tmp.path().join("store")).unwrap();
    index(&root, &store).await;
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
}

#[tokio::test]
async fn the_store_persists_across_reopen_and_survives_a_torn_log() {
    let tmp = TempDir::new();
    let root = tmp.path().join("corpus");
    write_corpus(&root);
    let dir = tmp.path().join("store");
    let (before, results) = {
        let store = ExactStore::open(&dir).unwrap();
        index(&root, &store).await;
        let q = query_vector("Saturn patience", &SparseConfig::default());
        let r = store
            .search_sparse(&q, &Filter::default(), 5)
            .await
            .unwrap();
        (ids_by_source(&store).await, r)
    };
    // A writer killed mid-append leaves a torn last line.
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("wal.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut wal, b"{\"delete\":[\"0000").unwrap();
    drop(wal);
    let store = ExactStore::open(&dir).unwrap();
    assert_eq!(ids_by_source(&store).await, before);
    let q = query_vector("Saturn patience", &SparseConfig::default());
    assert_eq!(
        store
            .search_sparse(&q, &Filter::default(), 5)
            .await
            .unwrap(),
        results
    );
    // Deletes persist too.
    let gone: Vec<Uuid> = before.values().next().unwrap().iter().copied().collect();
    store.delete(&gone).await.unwrap();
    drop(store);
    let store = ExactStore::open(&dir).unwrap();
    let n: usize = before.values().map(BTreeSet::len).sum();
    assert_eq!(
        store.count(&Filter::default()).await.unwrap(),
        n - gone.len()
    );
}
