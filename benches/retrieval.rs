//! Retrieval benchmarks over synthetic chunks (384-d clustered unit vectors like E5-small's,
//! Zipf-like sparse vectors, half `ko` / half `en`, two topics), at 10k and 100k points:
//!
//! - upsert throughput into the embedded store (chunks/s, embedding excluded; the embedding
//!   share of a real run is what `starpillar index` prints);
//! - dense search latency (p50 / p99 over a fixed query set) of the exact reference store
//!   (brute force), the embedded Qdrant store searching exactly, and the embedded store after
//!   `optimize()` built HNSW — unfiltered and with a `lang` filter;
//! - recall@10 of the HNSW search against the brute-force top 10 over the same vectors.
//!
//! `cargo bench --bench bench_main -- retrieval` prints the figure table once and then times
//! the searches with criterion. Under `cargo test` (no `--bench`) it runs on 1,000 points
//! only, as a smoke test.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use starpillar::retrieval::corpus::Payload;
use starpillar::retrieval::edge::{EdgeOptions, EdgeStore, FilteredSearch};
use starpillar::retrieval::sparse::SparseVector;
use starpillar::retrieval::store::{
    ExactStore, Filter, Point, StoreMeta, VectorStoreRead, VectorStoreWrite,
};
use uuid::Uuid;

const DIM: usize = 384;
const CLUSTERS: usize = 256;
const SEED: u64 = 0x5eed_2026;

/// SplitMix64: a tiny deterministic generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-7), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Points around random centroids, so nearest neighbours are meaningful.
struct Data {
    centroids: Vec<Vec<f32>>,
    rng: Rng,
}

impl Data {
    fn new() -> Self {
        let mut rng = Rng(SEED);
        let centroids = (0..CLUSTERS)
            .map(|_| normalise((0..DIM).map(|_| rng.gauss()).collect()))
            .collect();
        Self { centroids, rng }
    }

    fn vector(&mut self) -> Vec<f32> {
        let c = (self.rng.next() % CLUSTERS as u64) as usize;
        let v = self.centroids[c]
            .iter()
            .map(|x| x + 0.06 * self.rng.gauss())
            .collect();
        normalise(v)
    }

    fn sparse(&mut self) -> SparseVector {
        let pairs: Vec<(u32, f32)> = (0..30)
            .map(|_| {
                let u = self.rng.unit();
                ((u * u * u * 20_000.0) as u32, 0.5 + self.rng.unit())
            })
            .collect();
        SparseVector::from_pairs(pairs)
    }

    fn point(&mut self, i: usize) -> Point {
        Point {
            id: Uuid::from_u128(i as u128 + 1),
            dense: self.vector(),
            sparse: self.sparse(),
            payload: Payload {
                doc_id: format!("doc-{}", i / 8),
                source: format!("synthetic/{}.md", i / 8),
                title: String::new(),
                lang: if i.is_multiple_of(2) { "ko" } else { "en" }.to_owned(),
                topic: if i % 4 < 2 { "saju" } else { "astrology" }.to_owned(),
                tags: vec![],
                chunk_index: i % 8,
                text: format!("chunk {i}"),
                corpus_version: String::new(),
            },
        }
    }
}

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("starpillar-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Stores {
    n: usize,
    exact: ExactStore,
    /// One embedded store, optimised (HNSW built); searches switch settings on it.
    edge: Arc<EdgeStore>,
    dir: PathBuf,
    queries: Vec<Vec<f32>>,
    upsert_rate: f64,
    optimize_seconds: f64,
}

impl Stores {
    /// Close the store, then delete its folder (a shard flushes when dropped).
    fn remove(self) {
        let dir = self.dir.clone();
        drop(self);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Points per upsert call (each call is flushed, as the indexer's are).
const UPSERT_BATCH: usize = 256;

/// The search settings compared on the optimised store.
fn settings() -> [(&'static str, EdgeOptions); 3] {
    let hnsw = EdgeOptions {
        exact: false,
        hnsw_ef: Some(128),
        filtered: FilteredSearch::Hnsw,
    };
    [
        (
            "edge, exact search",
            EdgeOptions {
                exact: true,
                ..hnsw
            },
        ),
        ("edge, HNSW ef=128", hnsw),
        (
            "edge, HNSW+ACORN",
            EdgeOptions {
                filtered: FilteredSearch::Acorn,
                ..hnsw
            },
        ),
    ]
}

fn build(rt: &tokio::runtime::Runtime, n: usize, queries: usize) -> Stores {
    let mut data = Data::new();
    let points: Vec<Point> = (0..n).map(|i| data.point(i)).collect();
    let qs = (0..queries).map(|_| data.vector()).collect();
    let meta = StoreMeta {
        model: "synthetic".into(),
        dim: DIM,
        sparse: None,
        corpus_version: String::new(),
    };
    let dir = scratch(&format!("edge-{n}"));
    rt.block_on(async {
        let exact = ExactStore::in_memory();
        exact.upsert(points.clone()).await.expect("exact upsert");
        let edge = Arc::new(EdgeStore::open(&dir).expect("edge opens"));
        edge.set_meta(&meta).await.expect("meta");
        let t = Instant::now();
        for batch in points.chunks(UPSERT_BATCH) {
            edge.upsert(batch.to_vec()).await.expect("edge upsert");
        }
        let upsert_rate = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        edge.optimize().await.expect("optimize");
        let optimize_seconds = t.elapsed().as_secs_f64();
        Stores {
            n,
            exact,
            edge,
            dir,
            queries: qs,
            upsert_rate,
            optimize_seconds,
        }
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// p50 and p99 (ms) of `store`'s dense search over the query set, and its top-10 ids.
fn latencies(
    rt: &tokio::runtime::Runtime,
    store: &dyn VectorStoreRead,
    queries: &[Vec<f32>],
    filter: &Filter,
) -> (f64, f64, Vec<Vec<Uuid>>) {
    let mut times = Vec::with_capacity(queries.len());
    let mut tops = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let hits = rt
            .block_on(store.search_dense(q, filter, 10))
            .expect("search");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        tops.push(hits.into_iter().map(|h| h.id).collect());
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99), tops)
}

fn recall(found: &[Vec<Uuid>], truth: &[Vec<Uuid>]) -> f64 {
    let (mut hit, mut all) = (0usize, 0usize);
    for (f, t) in found.iter().zip(truth) {
        all += t.len();
        hit += f.iter().filter(|id| t.contains(id)).count();
    }
    hit as f64 / all.max(1) as f64
}

/// Passage embedding throughput of the configured model over real corpus chunks, when the
/// model is available offline (chunks/s), so the embedding share of indexing can be stated.
fn embedding_rate(rt: &tokio::runtime::Runtime, chunks: usize) -> Option<f64> {
    use starpillar::retrieval::{corpus, embedding};
    let data_dir = starpillar::config::default_data_dir();
    let args = starpillar::engine::EngineArgs::default();
    if !embedding::available_offline(&args.embed_model, &data_dir) {
        return None;
    }
    let loaded = embedding::load(&args, &data_dir).ok()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let corpus = corpus::load_dir(&root).ok()?;
    let texts: Vec<String> =
        corpus::chunk_corpus(&corpus, corpus::ChunkConfig::default(), &loaded.tokenizer)
            .into_iter()
            .take(chunks)
            .map(|c| c.payload.text)
            .collect();
    let kind = starpillar::engine::EmbedKind::Passage;
    let t = Instant::now();
    let vectors = rt
        .block_on(embedding::embed_all(
            loaded.embedder.as_ref(),
            &texts,
            kind,
            |_| (),
        ))
        .ok()?;
    Some(vectors.len() as f64 / t.elapsed().as_secs_f64())
}

fn print_figures(rt: &tokio::runtime::Runtime, s: &Stores) {
    eprintln!(
        "\nretrieval figures: {} points, {DIM}-d, {} queries, seed {SEED:#x}",
        s.n,
        s.queries.len()
    );
    eprintln!(
        "  edge upsert: {:.0} chunks/s (batches of {UPSERT_BATCH}, flushed); optimize (HNSW \
         build): {:.1} s, {} vectors indexed",
        s.upsert_rate,
        s.optimize_seconds,
        s.edge.indexed_vectors()
    );
    eprintln!("  store                    filter      p50 ms   p99 ms   recall@10");
    let filters = [
        ("none", Filter::default()),
        (
            "lang",
            Filter {
                lang: Some("ko".into()),
                topic: None,
            },
        ),
        (
            "lang+topic",
            Filter {
                lang: Some("en".into()),
                topic: Some("astrology".into()),
            },
        ),
    ];
    let before = s.edge.options();
    for (fname, filter) in &filters {
        let (p50, p99, truth) = latencies(rt, &s.exact, &s.queries, filter);
        eprintln!("  exact (brute force)      {fname:<10} {p50:>7.2}  {p99:>7.2}   1.000");
        for (name, options) in settings() {
            s.edge.set_options(options);
            let (p50, p99, found) = latencies(rt, s.edge.as_ref(), &s.queries, filter);
            eprintln!(
                "  {name:<24} {fname:<10} {p50:>7.2}  {p99:>7.2}   {:.3}",
                recall(&found, &truth)
            );
        }
    }
    s.edge.set_options(before);
}

fn retrieval(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let sizes: &[usize] = if full_run() {
        &[10_000, 100_000]
    } else {
        &[1_000]
    };
    let queries = if full_run() { 200 } else { 10 };
    if full_run() {
        match embedding_rate(&rt, 64) {
            Some(rate) => eprintln!(
                "\nembedding (default model, 64 corpus chunks as passages): {rate:.1} chunks/s"
            ),
            None => eprintln!("\nembedding: the default model is not available offline"),
        }
    }
    for &n in sizes {
        let stores = build(&rt, n, queries);
        print_figures(&rt, &stores);
        let q = stores.queries[0].clone();
        let ko = Filter {
            lang: Some("ko".into()),
            topic: None,
        };
        let mut group = c.benchmark_group(format!("retrieval_dense_{}k", n / 1000));
        group.sample_size(30);
        group.bench_function("exact_bruteforce", |b| {
            b.iter(|| rt.block_on(stores.exact.search_dense(black_box(&q), &ko, 10)))
        });
        for (name, options) in [
            ("edge_exact", settings()[0].1),
            ("edge_hnsw", settings()[1].1),
        ] {
            stores.edge.set_options(options);
            group.bench_function(name, |b| {
                b.iter(|| rt.block_on(stores.edge.search_dense(black_box(&q), &ko, 10)))
            });
        }
        group.finish();
        stores.remove();
    }
}

criterion_group!(benches, retrieval);
