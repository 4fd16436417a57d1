//! `edge://<dir>`: the default store, embedded Qdrant through `qdrant-edge` (the same segment
//! engine as the Qdrant server, in-process). One shard under `<dir>/shard` with a named dense
//! vector `dense` (cosine) and a named sparse vector `sparse` (`Modifier::Idf`, so scores are
//! Σ query · doc · IDF over the collection, exactly what [`super::store::ExactStore`] computes);
//! keyword payload indexes on `lang`, `topic` and `source`; the [`StoreMeta`] beside it in
//! `<dir>/meta.json`.
//!
//! `qdrant-edge` is synchronous: every call runs on a blocking thread. Writes are serialised
//! and flushed before their future resolves (the shard does not replay its WAL on load, so a
//! write is durable only once flushed), which makes an interrupted indexing run lose at most
//! the batch in flight. Search is exact until [`EdgeStore::optimize`] builds HNSW for segments
//! above the indexing threshold; at corpus sizes (a few thousand chunks) exact search takes
//! about a millisecond and is what the store does (see `benches/retrieval.rs`). Once HNSW
//! exists, filtered searches use ACORN ([`FilteredSearch`]), which keeps recall@10 at 1.0
//! where plain filtered HNSW dropped to 0.93.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures::FutureExt;
use futures::future::BoxFuture;
use qdrant_edge::{
    AcornSearchParams, Condition, CountRequest, CreateIndex, Distance, EdgeConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParams, FieldCondition, FieldIndexOperations,
    Filter as QFilter, JsonPath, Match, Modifier, NamedQuery, PayloadFieldSchema, PayloadOps,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStructPersisted,
    QueryEnum, QueryRequest, ScoredPoint, ScoringQuery, ScrollRequest, SearchParams, SetPayloadOp,
    UpdateOperation, ValueVariants, VectorInternal, VectorStructInternal, VectorStructPersisted,
    WithPayloadInterface, WithVector,
};
use uuid::Uuid;

use super::RetrievalError;
use super::corpus::Payload;
use super::sparse::SparseVector;
use super::store::{
    Filter, Hit, Point, StoreMeta, VectorStoreRead, VectorStoreWrite, write_atomic,
};

type Res<T> = Result<T, RetrievalError>;

/// The dense vector's name in the collection (also used by the Qdrant server store).
pub const DENSE: &str = "dense";
/// The sparse vector's name in the collection.
pub const SPARSE: &str = "sparse";
/// Payload fields with a keyword index.
pub const INDEXED_FIELDS: [&str; 3] = ["lang", "topic", "source"];

const META: &str = "meta.json";
const SHARD: &str = "shard";
/// Points per scroll page when listing ids.
const PAGE: usize = 1024;

/// How a filtered search runs once HNSW exists. Measured at 100k points
/// (`benches/retrieval.rs`): plain HNSW kept recall@10 at 0.999 under a `lang` filter (half
/// the points) but fell to 0.93 under `lang`+`topic` (a quarter); ACORN gave 1.000 under both
/// at about a quarter of exact search's latency, so it is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredSearch {
    /// Plain HNSW, the filter checked while walking the graph.
    Hnsw,
    /// HNSW with ACORN (neighbours of filtered-out nodes explored too), at any selectivity.
    Acorn,
    /// Exact search over the points the filter selects (through the payload index).
    Exact,
}

/// How searches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeOptions {
    /// Search every vector exactly even where an HNSW index exists.
    pub exact: bool,
    /// `hnsw_ef` for approximate searches.
    pub hnsw_ef: Option<usize>,
    /// How searches with a payload filter run.
    pub filtered: FilteredSearch,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            exact: false,
            hnsw_ef: Some(128),
            filtered: FilteredSearch::Acorn,
        }
    }
}

impl EdgeOptions {
    /// The engine's search parameters for a search with (`filtered`) or without a filter.
    fn params(self, filtered: bool) -> SearchParams {
        let policy = if filtered {
            self.filtered
        } else {
            FilteredSearch::Hnsw
        };
        SearchParams {
            exact: self.exact || policy == FilteredSearch::Exact,
            hnsw_ef: self.hnsw_ef,
            acorn: (policy == FilteredSearch::Acorn).then_some(AcornSearchParams {
                enable: true,
                max_selectivity: Some(qdrant_edge::external::ordered_float::OrderedFloat(1.0)),
            }),
            ..SearchParams::default()
        }
    }
}

/// The embedded Qdrant store.
pub struct EdgeStore {
    dir: PathBuf,
    options: RwLock<EdgeOptions>,
    meta: RwLock<Option<StoreMeta>>,
    /// `None` until the dense dimension is known (first metadata or upsert).
    shard: RwLock<Option<Arc<EdgeShard>>>,
    /// Serialises writes, flushes and optimisation.
    writer: Arc<Mutex<()>>,
}

fn edge_err(what: &str, e: impl std::fmt::Display) -> RetrievalError {
    RetrievalError::Invalid(format!("edge store: {what}: {e}"))
}

/// Run `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Res<T> + Send + 'static) -> Res<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RetrievalError::Unavailable(format!("edge store task failed: {e}")))?
}

fn keyword(field: &str, value: &str) -> Res<Condition> {
    let key = JsonPath::try_from(field).map_err(|()| edge_err("payload key", field))?;
    Ok(Condition::Field(FieldCondition::new_match(
        key,
        Match::new_value(ValueVariants::String(value.to_owned())),
    )))
}

/// Our filter as a Qdrant filter (`None` when it matches everything).
fn to_filter(filter: &Filter, source: Option<&str>) -> Res<Option<QFilter>> {
    let mut must = Vec::new();
    if let Some(l) = &filter.lang {
        must.push(keyword("lang", l)?);
    }
    if let Some(t) = &filter.topic {
        must.push(keyword("topic", t)?);
    }
    if let Some(s) = source {
        must.push(keyword("source", s)?);
    }
    Ok((!must.is_empty()).then(|| QFilter {
        must: Some(must),
        ..QFilter::default()
    }))
}

fn point_uuid(id: &PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(u) => Some(*u),
        PointId::NumId(_) => None,
    }
}

fn payload_of(map: Option<qdrant_edge::Payload>) -> Option<Payload> {
    let map = map?.0;
    serde_json::from_value(serde_json::Value::Object(map.into_iter().collect())).ok()
}

fn to_hits(points: Vec<ScoredPoint>) -> Vec<Hit> {
    points
        .into_iter()
        .filter_map(|p| {
            Some(Hit {
                id: point_uuid(&p.id)?,
                score: p.score,
                payload: payload_of(p.payload)?,
            })
        })
        .collect()
}

fn to_persisted(p: Point) -> Res<PointStructPersisted> {
    let mut named: HashMap<String, VectorInternal> = HashMap::new();
    if !p.dense.is_empty() {
        named.insert(DENSE.to_owned(), VectorInternal::Dense(p.dense));
    }
    if !p.sparse.is_empty() {
        let v = qdrant_edge::SparseVector::new(p.sparse.indices, p.sparse.values)
            .map_err(|e| edge_err("sparse vector", e))?;
        named.insert(SPARSE.to_owned(), VectorInternal::Sparse(v));
    }
    let serde_json::Value::Object(map) =
        serde_json::to_value(&p.payload).map_err(|e| edge_err("payload", e))?
    else {
        return Err(edge_err("payload", "not an object"));
    };
    Ok(PointStructPersisted {
        id: PointId::Uuid(p.id),
        vector: VectorStructPersisted::from(VectorStructInternal::Named(named)),
        payload: Some(qdrant_edge::Payload(map.into_iter().collect())),
    })
}

fn new_shard(path: &Path, dim: usize) -> Res<EdgeShard> {
    std::fs::create_dir_all(path).map_err(|e| RetrievalError::io(path, e))?;
    let config = EdgeConfig::builder()
        .vector(
            DENSE,
            EdgeVectorParams::builder(dim, Distance::Cosine).build(),
        )
        .sparse_vector(
            SPARSE,
            EdgeSparseVectorParams::builder()
                .modifier(Modifier::Idf)
                .build(),
        )
        .build();
    let shard = EdgeShard::new(path, config).map_err(|e| edge_err("create", e))?;
    for field in INDEXED_FIELDS {
        let field_name = JsonPath::try_from(field).map_err(|()| edge_err("payload key", field))?;
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name,
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                }),
            ))
            .map_err(|e| edge_err("payload index", e))?;
    }
    Ok(shard)
}

/// Flush, turning a panic inside the engine (it `expect`s its locks) into an error.
fn flush(shard: &EdgeShard) -> Res<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush()))
        .map_err(|_| edge_err("flush", "the engine panicked while flushing"))
}

fn shard_dim(shard: &EdgeShard) -> Option<usize> {
    shard.config().vectors.get(DENSE).map(|v| v.size)
}

/// Stores open in this process by folder: the shard's WAL is locked (`flock`) by its opener,
/// so a second open in the same process shares the first instead of failing.
static OPEN: Mutex<Vec<(PathBuf, std::sync::Weak<EdgeStore>)>> = Mutex::new(Vec::new());

impl EdgeStore {
    /// Open the store in `dir` (created if missing) with default search options.
    pub fn open(dir: &Path) -> Res<Self> {
        Self::open_with(dir, EdgeOptions::default())
    }

    /// The store in `dir`, shared with any other holder in this process.
    pub fn open_shared(dir: &Path) -> Res<Arc<Self>> {
        std::fs::create_dir_all(dir).map_err(|e| RetrievalError::io(dir, e))?;
        let key = dir.canonicalize().map_err(|e| RetrievalError::io(dir, e))?;
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(store) = open
            .iter()
            .find(|(p, _)| *p == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(store);
        }
        let store = Arc::new(Self::open(dir)?);
        open.push((key, Arc::downgrade(&store)));
        Ok(store)
    }

    /// Open the store in `dir` (created if missing).
    pub fn open_with(dir: &Path, options: EdgeOptions) -> Res<Self> {
        std::fs::create_dir_all(dir).map_err(|e| RetrievalError::io(dir, e))?;
        let meta_path = dir.join(META);
        let meta = match std::fs::read(&meta_path) {
            Ok(bytes) => Some(serde_json::from_slice::<StoreMeta>(&bytes).map_err(|e| {
                RetrievalError::Corrupt {
                    path: meta_path.display().to_string(),
                    problem: e.to_string(),
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(RetrievalError::io(&meta_path, e)),
        };
        let shard_path = dir.join(SHARD);
        let shard = if shard_path.join("edge_config.json").is_file() {
            let shard = EdgeShard::load(&shard_path, None).map_err(|e| {
                RetrievalError::Invalid(format!(
                    "cannot open the edge store {}: {e} (one process at a time may open it: \
                     is a `starpillar serve` or `index` using it?)",
                    dir.display()
                ))
            })?;
            Some(Arc::new(shard))
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            options: RwLock::new(options),
            meta: RwLock::new(meta),
            shard: RwLock::new(shard),
            writer: Arc::new(Mutex::new(())),
        })
    }

    /// The search options in force.
    pub fn options(&self) -> EdgeOptions {
        *self.options.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Change how later searches run (the bench compares settings on one built index).
    pub fn set_options(&self, options: EdgeOptions) {
        *self.options.write().unwrap_or_else(|p| p.into_inner()) = options;
    }

    fn shard(&self) -> Option<Arc<EdgeShard>> {
        match self.shard.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn stored_meta(&self) -> Option<StoreMeta> {
        match self.meta.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn dim(&self) -> Option<usize> {
        self.shard()
            .and_then(|s| shard_dim(&s))
            .or_else(|| self.stored_meta().map(|m| m.dim).filter(|d| *d > 0))
    }

    /// The shard for a write of `dim`-dimensional vectors, created (or, when the dimension
    /// changed, recreated empty) as needed. Call with the writer lock held.
    fn shard_for_write(&self, dim: Option<usize>) -> Res<Arc<EdgeShard>> {
        let current = self.shard();
        let want = dim.or_else(|| current.as_deref().and_then(shard_dim));
        match (current, want) {
            (Some(s), Some(d)) if shard_dim(&s) == Some(d) => Ok(s),
            (Some(s), None) => Ok(s),
            (_, Some(d)) if d > 0 => {
                let path = self.dir.join(SHARD);
                {
                    let mut guard = self.shard.write().unwrap_or_else(|p| p.into_inner());
                    if let Some(old) = guard.take() {
                        if Arc::strong_count(&old) > 1 {
                            *guard = Some(old);
                            return Err(edge_err(
                                "dimension change",
                                "the shard is in use; retry when searches finish",
                            ));
                        }
                        drop(old);
                    }
                }
                if path.exists() {
                    std::fs::remove_dir_all(&path).map_err(|e| RetrievalError::io(&path, e))?;
                }
                let shard = Arc::new(new_shard(&path, d)?);
                *self.shard.write().unwrap_or_else(|p| p.into_inner()) = Some(shard.clone());
                Ok(shard)
            }
            _ => Err(RetrievalError::Invalid(
                "edge store: the dense dimension is unknown; set the store's metadata first"
                    .to_owned(),
            )),
        }
    }

    /// Run a write on a blocking thread with the writer lock held, then flush.
    fn write_op(
        &self,
        dim: Option<usize>,
        op: impl FnOnce(&EdgeShard) -> Res<()> + Send + 'static,
    ) -> BoxFuture<'_, Res<()>> {
        async move {
            let writer = self.writer.clone();
            let shard = {
                let _g = writer.lock().unwrap_or_else(|p| p.into_inner());
                self.shard_for_write(dim)?
            };
            blocking(move || {
                let _g = writer.lock().unwrap_or_else(|p| p.into_inner());
                op(&shard)?;
                flush(&shard)
            })
            .await
        }
        .boxed()
    }

    fn read_op<T: Send + 'static>(
        &self,
        empty: T,
        op: impl FnOnce(&EdgeShard) -> Res<T> + Send + 'static,
    ) -> BoxFuture<'_, Res<T>> {
        let shard = self.shard();
        async move {
            match shard {
                None => Ok(empty),
                Some(s) => blocking(move || op(&s)).await,
            }
        }
        .boxed()
    }

    fn query(
        &self,
        vector: VectorInternal,
        using: &str,
        filter: &Filter,
        limit: usize,
    ) -> BoxFuture<'_, Res<Vec<Hit>>> {
        let params = self.options().params(*filter != Filter::default());
        let filter = to_filter(filter, None);
        let using = using.to_owned();
        self.read_op(Vec::new(), move |s| {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let request = QueryRequest {
                prefetches: vec![],
                query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                    query: vector,
                    using: Some(using),
                }))),
                filter: filter?,
                score_threshold: None,
                limit,
                offset: 0,
                params: Some(params),
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(true),
            };
            s.query(request)
                .map(to_hits)
                .map_err(|e| edge_err("query", e))
        })
    }

    /// Build HNSW indexes for segments above the indexing threshold and vacuum deleted
    /// points (blocking; minutes at 100k points). Returns whether anything changed.
    pub async fn optimize(&self) -> Res<bool> {
        let Some(shard) = self.shard() else {
            return Ok(false);
        };
        let writer = self.writer.clone();
        blocking(move || {
            let _g = writer.lock().unwrap_or_else(|p| p.into_inner());
            let changed = shard.optimize().map_err(|e| edge_err("optimize", e))?;
            flush(&shard)?;
            Ok(changed)
        })
        .await
    }

    /// Points that sit in an HNSW index (0 while search is exact).
    pub fn indexed_vectors(&self) -> usize {
        self.shard().map_or(0, |s| s.info().indexed_vectors_count)
    }
}

impl Drop for EdgeStore {
    /// The shard flushes in its destructor and panics if that fails (its folder deleted
    /// under it): contain that here rather than abort the process.
    fn drop(&mut self) {
        let shard = self
            .shard
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(shard) = shard {
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                drop(shard);
            }));
            if dropped.is_err() {
                tracing::error!(store = %self.dir.display(), "the edge store failed to flush on close");
            }
        }
    }
}

impl VectorStoreRead for EdgeStore {
    fn describe(&self) -> String {
        format!("edge://{}", self.dir.display())
    }

    fn meta(&self) -> BoxFuture<'_, Res<Option<StoreMeta>>> {
        futures::future::ready(Ok(self.stored_meta())).boxed()
    }

    fn count<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Res<usize>> {
        let filter = to_filter(filter, None);
        self.read_op(0, move |s| {
            s.count(CountRequest {
                filter: filter?,
                exact: true,
            })
            .map_err(|e| edge_err("count", e))
        })
    }

    fn list_ids<'a>(&'a self, source: Option<&'a str>) -> BoxFuture<'a, Res<Vec<(Uuid, String)>>> {
        let filter = to_filter(&Filter::default(), source);
        self.read_op(Vec::new(), move |s| {
            let filter = filter?;
            let key =
                JsonPath::try_from("source").map_err(|()| edge_err("payload key", "source"))?;
            let mut out = Vec::new();
            let mut offset = None;
            loop {
                let (records, next) = s
                    .scroll(ScrollRequest {
                        offset,
                        limit: Some(PAGE),
                        filter: filter.clone(),
                        with_payload: Some(WithPayloadInterface::Fields(vec![key.clone()])),
                        with_vector: WithVector::Bool(false),
                        order_by: None,
                    })
                    .map_err(|e| edge_err("scroll", e))?;
                for r in records {
                    let source = r
                        .payload
                        .as_ref()
                        .and_then(|p| p.0.get("source"))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(id) = point_uuid(&r.id) {
                        out.push((id, source));
                    }
                }
                match next {
                    Some(n) => offset = Some(n),
                    None => break,
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn dense_vectors<'a>(&'a self, ids: &'a [Uuid]) -> BoxFuture<'a, Res<HashMap<Uuid, Vec<f32>>>> {
        let ids: Vec<PointId> = ids.iter().map(|u| PointId::Uuid(*u)).collect();
        self.read_op(HashMap::new(), move |s| {
            let mut out = HashMap::new();
            for batch in ids.chunks(PAGE) {
                let records = s
                    .retrieve(
                        batch,
                        Some(WithPayloadInterface::Bool(false)),
                        Some(WithVector::Selector(vec![DENSE.to_owned()])),
                    )
                    .map_err(|e| edge_err("retrieve", e))?;
                for r in records {
                    let Some(id) = point_uuid(&r.id) else {
                        continue;
                    };
                    let dense = match r.vector {
                        Some(VectorStructInternal::Named(mut named)) => named.remove(DENSE),
                        Some(VectorStructInternal::Single(v)) => Some(VectorInternal::Dense(v)),
                        _ => None,
                    };
                    if let Some(VectorInternal::Dense(v)) = dense {
                        out.insert(id, v);
                    }
                }
            }
            Ok(out)
        })
    }

    fn search_dense<'a>(
        &'a self,
        vector: &'a [f32],
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        if let Some(want) = self.dim()
            && want != vector.len()
        {
            let err = RetrievalError::Dimension {
                got: vector.len(),
                want,
            };
            return futures::future::ready(Err(err)).boxed();
        }
        self.query(VectorInternal::Dense(vector.to_vec()), DENSE, filter, limit)
    }

    fn search_sparse<'a>(
        &'a self,
        vector: &'a SparseVector,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        if vector.is_empty() {
            return futures::future::ready(Ok(Vec::new())).boxed();
        }
        let v = match qdrant_edge::SparseVector::new(vector.indices.clone(), vector.values.clone())
        {
            Ok(v) => v,
            Err(e) => return futures::future::ready(Err(edge_err("sparse query", e))).boxed(),
        };
        let search = self.query(VectorInternal::Sparse(v), SPARSE, filter, limit);
        async move {
            let mut hits = search.await?;
            hits.retain(|h| h.score > 0.0);
            Ok(hits)
        }
        .boxed()
    }
}

impl VectorStoreWrite for EdgeStore {
    fn set_meta<'a>(&'a self, meta: &'a StoreMeta) -> BoxFuture<'a, Res<()>> {
        let meta = meta.clone();
        async move {
            let writer = self.writer.clone();
            {
                let _g = writer.lock().unwrap_or_else(|p| p.into_inner());
                if meta.dim > 0 {
                    self.shard_for_write(Some(meta.dim))?;
                }
            }
            let path = self.dir.join(META);
            let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| edge_err("meta", e))?;
            let path2 = path.clone();
            blocking(move || write_atomic(&path2, &bytes)).await?;
            *self.meta.write().unwrap_or_else(|p| p.into_inner()) = Some(meta);
            Ok(())
        }
        .boxed()
    }

    fn upsert(&self, points: Vec<Point>) -> BoxFuture<'_, Res<()>> {
        if points.is_empty() {
            return futures::future::ready(Ok(())).boxed();
        }
        let dim = points.iter().map(|p| p.dense.len()).find(|d| *d > 0);
        if let Some(d) = dim {
            let want = self.dim().unwrap_or(d);
            if let Some(bad) = points
                .iter()
                .find(|p| !p.dense.is_empty() && p.dense.len() != want)
            {
                let err = RetrievalError::Dimension {
                    got: bad.dense.len(),
                    want,
                };
                return futures::future::ready(Err(err)).boxed();
            }
        }
        let persisted: Res<Vec<PointStructPersisted>> =
            points.into_iter().map(to_persisted).collect();
        let persisted = match persisted {
            Ok(p) => p,
            Err(e) => return futures::future::ready(Err(e)).boxed(),
        };
        self.write_op(dim, move |s| {
            s.update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(persisted)),
            ))
            .map_err(|e| edge_err("upsert", e))
        })
    }

    fn delete<'a>(&'a self, ids: &'a [Uuid]) -> BoxFuture<'a, Res<()>> {
        if ids.is_empty() || self.shard().is_none() {
            return futures::future::ready(Ok(())).boxed();
        }
        let ids: Vec<PointId> = ids.iter().map(|u| PointId::Uuid(*u)).collect();
        self.write_op(None, move |s| {
            s.update(UpdateOperation::PointOperation(
                PointOperations::DeletePoints { ids },
            ))
            .map_err(|e| edge_err("delete", e))
        })
    }

    fn set_corpus_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Res<()>> {
        let version = version.to_owned();
        async move {
            let ids: Vec<PointId> = self
                .list_ids(None)
                .await?
                .into_iter()
                .map(|(id, _)| PointId::Uuid(id))
                .collect();
            if !ids.is_empty() {
                let mut map = serde_json::Map::new();
                map.insert(
                    "corpus_version".to_owned(),
                    serde_json::Value::String(version.clone()),
                );
                let payload = qdrant_edge::Payload(map.into_iter().collect());
                self.write_op(None, move |s| {
                    for batch in ids.chunks(PAGE) {
                        s.update(UpdateOperation::PayloadOperation(PayloadOps::SetPayload(
                            SetPayloadOp {
                                payload: payload.clone(),
                                points: Some(batch.to_vec()),
                                filter: None,
                                key: None,
                            },
                        )))
                        .map_err(|e| edge_err("set payload", e))?;
                    }
                    Ok(())
                })
                .await?;
            }
            let meta = self.stored_meta().map(|m| StoreMeta {
                corpus_version: version,
                ..m
            });
            if let Some(meta) = meta {
                self.set_meta(&meta).await?;
            }
            Ok(())
        }
        .boxed()
    }
}
