//! `qdrant://host:6334[/collection]`: a Qdrant server or cluster through `qdrant-client`
//! (gRPC; `https://host:6334` for TLS; the API key from `--qdrant-api-key` / `QDRANT_API_KEY`).
//!
//! The collection has the schema of the embedded store ([`super::edge`]): a named dense vector
//! `dense` (cosine) and a named sparse vector `sparse` with `Modifier::Idf`; keyword payload
//! indexes on `lang`, `topic` and `source` are created right after the collection, before any
//! upload; the [`StoreMeta`] lives in the collection's metadata (Qdrant ≥ 1.16). Upserts go in
//! the indexer's batches with `wait = true` (durable when the call returns); hybrid search is
//! fused as [`super::hybrid`] says: the default, weighted DBSF, is not expressible in
//! Qdrant's API (its `Fusion::Dbsf` has no weights), so it runs as two plain queries (dense,
//! sparse) fused here by the code the other stores use; RRF runs as one `query` call with a
//! dense and a sparse prefetch fused on the server (`Rrf { k, weights }`, the same formula).
//!
//! The client connects lazily; every call has a deadline, and a transport failure or timeout
//! is [`RetrievalError::Unavailable`] (a 503 upstream), never a hang.

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter as QFilter, GetPointsBuilder, Modifier,
    PayloadIncludeSelector, PointId, PointStruct, PointsIdsList, PrefetchQueryBuilder, Query,
    QueryPointsBuilder, RrfBuilder, ScoredPoint, ScrollPointsBuilder, SetPayloadPointsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpdateCollectionBuilder,
    UpsertPointsBuilder, VectorInput, VectorParamsBuilder, VectorsConfigBuilder, VectorsSelector,
    point_id::PointIdOptions,
};
use qdrant_client::{Payload as QPayload, Qdrant, QdrantError};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::RetrievalError;
use super::corpus::Payload;
use super::edge::{DENSE, INDEXED_FIELDS, SPARSE};
use super::hybrid::{Fusion, Method};
use super::sparse::SparseVector;
use super::store::{Filter, Hit, Point, StoreMeta, VectorStoreRead, VectorStoreWrite};

type Res<T> = Result<T, RetrievalError>;

/// The collection used when the URL names none.
pub const DEFAULT_COLLECTION: &str = "starpillar";
/// Deadline of one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The collection-metadata key holding the [`StoreMeta`].
const META_KEY: &str = "starpillar";
const PAGE: u32 = 1024;
/// Points per upsert request (each acknowledged with `wait`), well under gRPC's message limit.
const UPSERT_BATCH: usize = 256;

/// Where the server is.
#[derive(Clone, PartialEq, Eq)]
pub struct QdrantSpec {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    pub collection: String,
    pub api_key: Option<String>,
    /// Deadline of one call (`?timeout=<seconds>` in the URL; [`CALL_TIMEOUT`] by default).
    pub timeout: Duration,
}

impl std::fmt::Debug for QdrantSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantSpec")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::fmt::Display for QdrantSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.url.strip_prefix("http://") {
            Some(rest) => format!("qdrant://{rest}"),
            None => self.url.clone(),
        };
        write!(f, "{shown}/{}", self.collection)
    }
}

impl QdrantSpec {
    /// `qdrant://host:port[/collection][?timeout=<seconds>]` (plain), `https://…` (TLS) or
    /// `http://…`; `Ok(None)` when `spec` is not a Qdrant URL.
    pub fn parse(spec: &str, api_key: Option<&str>) -> Res<Option<Self>> {
        let (address, timeout) = match spec.split_once('?') {
            Some((a, query)) => (a, Some(parse_timeout(spec, query)?)),
            None => (spec, None),
        };
        let Some(mut parsed) = Self::parse_address(address, api_key)? else {
            return Ok(None);
        };
        if let Some(t) = timeout {
            parsed.timeout = t;
        }
        Ok(Some(parsed))
    }

    fn parse_address(spec: &str, api_key: Option<&str>) -> Res<Option<Self>> {
        let (scheme, rest) = if let Some(r) = spec.strip_prefix("qdrant://") {
            ("http", r)
        } else if let Some(r) = spec.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = spec.strip_prefix("http://") {
            ("http", r)
        } else {
            return Ok(None);
        };
        let (host, collection) = match rest.split_once('/') {
            Some((h, c)) => (h, c.trim_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(RetrievalError::StoreSpec(spec.to_owned()));
        }
        let collection = if collection.is_empty() {
            DEFAULT_COLLECTION
        } else {
            collection
        };
        if !collection
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(RetrievalError::Invalid(format!(
                "{spec}: the collection name may hold letters, digits, '_' and '-' only"
            )));
        }
        Ok(Some(Self {
            url: format!("{scheme}://{host}"),
            collection: collection.to_owned(),
            api_key: api_key.filter(|k| !k.is_empty()).map(str::to_owned),
            timeout: CALL_TIMEOUT,
        }))
    }
}

/// `timeout=<seconds>` (0.05 to 600) from a store URL's query string.
fn parse_timeout(spec: &str, query: &str) -> Res<Duration> {
    let bad = || {
        RetrievalError::Invalid(format!(
            "{spec}: the only URL option is timeout=<seconds> (0.05 to 600)"
        ))
    };
    let value = query.strip_prefix("timeout=").ok_or_else(bad)?;
    let secs: f64 = value.parse().map_err(|_| bad())?;
    if !(0.05..=600.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A Qdrant server collection.
pub struct QdrantStore {
    spec: QdrantSpec,
    client: Qdrant,
    /// The metadata, read once per process (and kept current by `set_meta`).
    meta: tokio::sync::RwLock<Option<Option<StoreMeta>>>,
    exists: OnceCell<()>,
}

/// gRPC codes that mean "down, slow or refusing us" rather than "bad request": Cancelled,
/// Unknown (transport), DeadlineExceeded, PermissionDenied, ResourceExhausted, Unavailable,
/// Unauthenticated.
const TRANSIENT_GRPC_CODES: [i32; 7] = [1, 2, 4, 7, 8, 14, 16];

fn q_err(what: &str, e: QdrantError) -> RetrievalError {
    let transient = match &e {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => {
            let code: i32 = status.code().into();
            TRANSIENT_GRPC_CODES.contains(&code)
        }
        QdrantError::Io(_) => true,
        _ => false,
    };
    if transient {
        RetrievalError::Unavailable(format!("qdrant {what}: {e}"))
    } else {
        RetrievalError::Invalid(format!("qdrant {what}: {e}"))
    }
}

/// Bound a call by `limit` (the spec's timeout).
async fn timed_by<T>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = Result<T, QdrantError>>,
) -> Res<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| q_err(what, e)),
        Err(_) => Err(RetrievalError::Unavailable(format!(
            "qdrant {what}: no answer in {:.1} s",
            limit.as_secs_f64()
        ))),
    }
}

fn to_filter(filter: &Filter, source: Option<&str>) -> Option<QFilter> {
    let mut must = Vec::new();
    if let Some(l) = &filter.lang {
        must.push(Condition::matches("lang", l.clone()));
    }
    if let Some(t) = &filter.topic {
        must.push(Condition::matches("topic", t.clone()));
    }
    if let Some(s) = source {
        must.push(Condition::matches("source", s.to_owned()));
    }
    (!must.is_empty()).then(|| QFilter::must(must))
}

fn uuid_of(id: Option<&PointId>) -> Option<Uuid> {
    match id?.point_id_options.as_ref()? {
        PointIdOptions::Uuid(s) => Uuid::parse_str(s).ok(),
        PointIdOptions::Num(_) => None,
    }
}

fn payload_of(map: HashMap<String, qdrant_client::qdrant::Value>) -> Option<Payload> {
    let json: serde_json::Map<String, serde_json::Value> =
        map.into_iter().map(|(k, v)| (k, v.into())).collect();
    serde_json::from_value(serde_json::Value::Object(json)).ok()
}

fn to_hits(points: Vec<ScoredPoint>) -> Vec<Hit> {
    points
        .into_iter()
        .filter_map(|p| {
            Some(Hit {
                id: uuid_of(p.id.as_ref())?,
                score: p.score,
                payload: payload_of(p.payload)?,
            })
        })
        .collect()
}

fn ids(ids: &[Uuid]) -> Vec<PointId> {
    ids.iter().map(|u| PointId::from(u.to_string())).collect()
}

fn to_point(p: Point) -> Res<PointStruct> {
    let mut vectors: HashMap<String, qdrant_client::qdrant::Vector> = HashMap::new();
    if !p.dense.is_empty() {
        vectors.insert(
            DENSE.to_owned(),
            qdrant_client::qdrant::Vector::new_dense(p.dense),
        );
    }
    if !p.sparse.is_empty() {
        vectors.insert(
            SPARSE.to_owned(),
            qdrant_client::qdrant::Vector::new_sparse(p.sparse.indices, p.sparse.values),
        );
    }
    let json = serde_json::to_value(&p.payload)
        .map_err(|e| RetrievalError::Invalid(format!("payload: {e}")))?;
    let payload =
        QPayload::try_from(json).map_err(|e| RetrievalError::Invalid(format!("payload: {e}")))?;
    Ok(PointStruct::new(p.id.to_string(), vectors, payload))
}

impl QdrantStore {
    /// A client for `spec` (no connection is made until the first call).
    pub fn new(spec: &QdrantSpec) -> Res<Self> {
        let client = Qdrant::from_url(&spec.url)
            .api_key(spec.api_key.clone())
            .timeout(spec.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(spec.timeout))
            .skip_compatibility_check()
            .build()
            .map_err(|e| q_err("client", e))?;
        Ok(Self {
            spec: spec.clone(),
            client,
            meta: tokio::sync::RwLock::new(None),
            exists: OnceCell::new(),
        })
    }

    /// Delete the collection (tests clean up with it).
    pub async fn drop_collection(&self) -> Res<()> {
        if self.collection_exists().await? {
            self.timed(
                "delete_collection",
                self.client.delete_collection(self.name()),
            )
            .await?;
        }
        *self.meta.write().await = None;
        Ok(())
    }

    fn name(&self) -> &str {
        &self.spec.collection
    }

    /// Bound a call by the spec's timeout.
    async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, QdrantError>>,
    ) -> Res<T> {
        timed_by(self.spec.timeout, what, f).await
    }

    async fn collection_exists(&self) -> Res<bool> {
        if self.exists.initialized() {
            return Ok(true);
        }
        let found = self
            .timed(
                "collection_exists",
                self.client.collection_exists(self.name()),
            )
            .await?;
        if found {
            let _ = self.exists.set(());
        }
        Ok(found)
    }

    async fn read_meta(&self) -> Res<Option<StoreMeta>> {
        if let Some(m) = self.meta.read().await.as_ref() {
            return Ok(m.clone());
        }
        let meta = if self.collection_exists().await? {
            let info = self
                .timed("collection_info", self.client.collection_info(self.name()))
                .await?;
            info.result
                .and_then(|r| r.config)
                .and_then(|c| c.metadata.get(META_KEY).cloned())
                .and_then(|v| serde_json::from_value(serde_json::Value::from(v)).ok())
        } else {
            None
        };
        *self.meta.write().await = Some(meta.clone());
        Ok(meta)
    }

    fn dim(&self, meta: Option<&StoreMeta>) -> Option<usize> {
        meta.map(|m| m.dim).filter(|d| *d > 0)
    }

    /// Create the collection for `dim`-dimensional vectors with its payload indexes
    /// (recreating it when it exists with another dimension).
    async fn ensure_collection(&self, dim: usize, meta: &StoreMeta) -> Res<()> {
        let current = self.read_meta().await?;
        let exists = self.collection_exists().await?;
        if exists && self.dim(current.as_ref()) == Some(dim) {
            return Ok(());
        }
        if exists {
            self.timed(
                "delete_collection",
                self.client.delete_collection(self.name()),
            )
            .await?;
        }
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(
            DENSE,
            VectorParamsBuilder::new(dim as u64, Distance::Cosine),
        );
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        let create = CreateCollectionBuilder::new(self.name())
            .vectors_config(vectors)
            .sparse_vectors_config(sparse)
            .metadata(meta_map(meta)?);
        self.timed("create_collection", self.client.create_collection(create))
            .await?;
        for field in INDEXED_FIELDS {
            let index =
                CreateFieldIndexCollectionBuilder::new(self.name(), field, FieldType::Keyword)
                    .wait(true);
            self.timed("create_field_index", self.client.create_field_index(index))
                .await?;
        }
        let _ = self.exists.set(());
        Ok(())
    }

    async fn query(
        &self,
        query: VectorInput,
        using: &str,
        filter: &Filter,
        limit: usize,
    ) -> Res<Vec<Hit>> {
        if limit == 0 || !self.collection_exists().await? {
            return Ok(Vec::new());
        }
        let mut q = QueryPointsBuilder::new(self.name())
            .query(Query::new_nearest(query))
            .using(using)
            .limit(limit as u64)
            .with_payload(true);
        if let Some(f) = to_filter(filter, None) {
            q = q.filter(f);
        }
        let r = self.timed("query", self.client.query(q)).await?;
        Ok(to_hits(r.result))
    }
}

fn meta_map(meta: &StoreMeta) -> Res<HashMap<String, serde_json::Value>> {
    let v =
        serde_json::to_value(meta).map_err(|e| RetrievalError::Invalid(format!("meta: {e}")))?;
    Ok(HashMap::from([(META_KEY.to_owned(), v)]))
}

impl VectorStoreRead for QdrantStore {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    fn meta(&self) -> BoxFuture<'_, Res<Option<StoreMeta>>> {
        self.read_meta().boxed()
    }

    fn count<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Res<usize>> {
        async move {
            if !self.collection_exists().await? {
                return Ok(0);
            }
            let mut req = CountPointsBuilder::new(self.name()).exact(true);
            if let Some(f) = to_filter(filter, None) {
                req = req.filter(f);
            }
            let r = self.timed("count", self.client.count(req)).await?;
            Ok(r.result.map_or(0, |c| c.count as usize))
        }
        .boxed()
    }

    fn list_ids<'a>(&'a self, source: Option<&'a str>) -> BoxFuture<'a, Res<Vec<(Uuid, String)>>> {
        async move {
            let mut out = Vec::new();
            if !self.collection_exists().await? {
                return Ok(out);
            }
            let mut offset: Option<PointId> = None;
            loop {
                let mut req = ScrollPointsBuilder::new(self.name())
                    .limit(PAGE)
                    .with_payload(PayloadIncludeSelector {
                        fields: vec!["source".to_owned()],
                    })
                    .with_vectors(false);
                if let Some(f) = to_filter(&Filter::default(), source) {
                    req = req.filter(f);
                }
                if let Some(o) = offset.take() {
                    req = req.offset(o);
                }
                let r = self.timed("scroll", self.client.scroll(req)).await?;
                for p in r.result {
                    let source = p
                        .payload
                        .get("source")
                        .and_then(|v| {
                            serde_json::Value::from(v.clone())
                                .as_str()
                                .map(str::to_owned)
                        })
                        .unwrap_or_default();
                    if let Some(id) = uuid_of(p.id.as_ref()) {
                        out.push((id, source));
                    }
                }
                match r.next_page_offset {
                    Some(next) => offset = Some(next),
                    None => break,
                }
            }
            out.sort();
            Ok(out)
        }
        .boxed()
    }

    fn dense_vectors<'a>(
        &'a self,
        wanted: &'a [Uuid],
    ) -> BoxFuture<'a, Res<HashMap<Uuid, Vec<f32>>>> {
        async move {
            let mut out = HashMap::new();
            if wanted.is_empty() || !self.collection_exists().await? {
                return Ok(out);
            }
            for batch in wanted.chunks(PAGE as usize) {
                let req = GetPointsBuilder::new(self.name(), ids(batch))
                    .with_payload(false)
                    .with_vectors(VectorsSelector {
                        names: vec![DENSE.to_owned()],
                    });
                let r = self
                    .timed("get_points", self.client.get_points(req))
                    .await?;
                for p in r.result {
                    let Some(id) = uuid_of(p.id.as_ref()) else {
                        continue;
                    };
                    let dense = p
                        .vectors
                        .as_ref()
                        .and_then(|v| v.get_vector_by_name(DENSE))
                        .and_then(|v| match v {
                            qdrant_client::qdrant::vector_output::Vector::Dense(d) => Some(d.data),
                            _ => None,
                        });
                    if let Some(v) = dense {
                        out.insert(id, v);
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn search_dense<'a>(
        &'a self,
        vector: &'a [f32],
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        async move {
            if let Some(want) = self.dim(self.read_meta().await?.as_ref())
                && want != vector.len()
            {
                return Err(RetrievalError::Dimension {
                    got: vector.len(),
                    want,
                });
            }
            self.query(
                VectorInput::new_dense(vector.to_vec()),
                DENSE,
                filter,
                limit,
            )
            .await
        }
        .boxed()
    }

    fn search_sparse<'a>(
        &'a self,
        vector: &'a SparseVector,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        async move {
            if vector.is_empty() {
                return Ok(Vec::new());
            }
            let q = VectorInput::new_sparse(vector.indices.clone(), vector.values.clone());
            let mut hits = self.query(q, SPARSE, filter, limit).await?;
            hits.retain(|h| h.score > 0.0);
            Ok(hits)
        }
        .boxed()
    }

    fn search_hybrid<'a>(
        &'a self,
        dense: &'a [f32],
        sparse: &'a SparseVector,
        filter: &'a Filter,
        fusion: &'a Fusion,
        prefetch: usize,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        async move {
            let Method::Rrf { k } = fusion.method else {
                // Qdrant's DBSF takes no weights: two plain queries, fused here.
                let d = self.search_dense(dense, filter, prefetch).await?;
                let s = self.search_sparse(sparse, filter, prefetch).await?;
                return Ok(super::hybrid::fuse(d, s, fusion, limit));
            };
            if sparse.is_empty() {
                let hits = self.search_dense(dense, filter, prefetch).await?;
                return Ok(super::hybrid::fuse(hits, Vec::new(), fusion, limit));
            }
            if limit == 0 || !self.collection_exists().await? {
                return Ok(Vec::new());
            }
            let qfilter = to_filter(filter, None);
            let mut dense_pre = PrefetchQueryBuilder::default()
                .query(Query::new_nearest(VectorInput::new_dense(dense.to_vec())))
                .using(DENSE)
                .limit(prefetch as u64);
            let mut sparse_pre = PrefetchQueryBuilder::default()
                .query(Query::new_nearest(VectorInput::new_sparse(
                    sparse.indices.clone(),
                    sparse.values.clone(),
                )))
                .using(SPARSE)
                .limit(prefetch as u64);
            if let Some(f) = qfilter {
                dense_pre = dense_pre.filter(f.clone());
                sparse_pre = sparse_pre.filter(f);
            }
            let q = QueryPointsBuilder::new(self.name())
                .add_prefetch(dense_pre)
                .add_prefetch(sparse_pre)
                .query(Query::new_rrf(rrf_params(k, fusion)))
                .limit(limit as u64)
                .with_payload(true);
            let r = self.timed("query", self.client.query(q)).await?;
            Ok(to_hits(r.result))
        }
        .boxed()
    }
}

/// The server-side RRF for `fusion`: the same formula (Qdrant's `k` is ours + 1); the weights
/// are sent only when they are not 1, in prefetch order (dense, sparse) — weighted RRF needs
/// a server whose API has `Rrf.weights` (Qdrant 1.17 or later).
fn rrf_params(k: u32, fusion: &Fusion) -> RrfBuilder {
    let rrf = RrfBuilder::with_k(k + 1);
    if fusion.dense_weight == 1.0 && fusion.sparse_weight == 1.0 {
        rrf
    } else {
        rrf.weights(vec![fusion.dense_weight, fusion.sparse_weight])
    }
}

impl VectorStoreWrite for QdrantStore {
    fn set_meta<'a>(&'a self, meta: &'a StoreMeta) -> BoxFuture<'a, Res<()>> {
        async move {
            if meta.dim > 0 {
                self.ensure_collection(meta.dim, meta).await?;
            }
            if self.collection_exists().await? {
                let update = UpdateCollectionBuilder::new(self.name()).metadata(meta_map(meta)?);
                self.timed("update_collection", self.client.update_collection(update))
                    .await?;
            }
            *self.meta.write().await = Some(Some(meta.clone()));
            Ok(())
        }
        .boxed()
    }

    fn upsert(&self, points: Vec<Point>) -> BoxFuture<'_, Res<()>> {
        async move {
            if points.is_empty() {
                return Ok(());
            }
            let meta = self.read_meta().await?;
            let dim = points.iter().map(|p| p.dense.len()).find(|d| *d > 0);
            let want = self.dim(meta.as_ref()).or(dim);
            if let (Some(want), Some(bad)) = (
                want,
                points
                    .iter()
                    .find(|p| !p.dense.is_empty() && Some(p.dense.len()) != want),
            ) {
                return Err(RetrievalError::Dimension {
                    got: bad.dense.len(),
                    want,
                });
            }
            if !self.collection_exists().await? {
                let Some(d) = want else {
                    return Err(RetrievalError::Invalid(
                        "qdrant: the dense dimension is unknown; set the store's metadata first"
                            .to_owned(),
                    ));
                };
                let meta = meta.unwrap_or(StoreMeta {
                    dim: d,
                    ..StoreMeta::default()
                });
                self.ensure_collection(d, &meta).await?;
            }
            let points: Vec<PointStruct> = points.into_iter().map(to_point).collect::<Res<_>>()?;
            for batch in points.chunks(UPSERT_BATCH) {
                let req = UpsertPointsBuilder::new(self.name(), batch.to_vec()).wait(true);
                self.timed("upsert", self.client.upsert_points(req)).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn delete<'a>(&'a self, wanted: &'a [Uuid]) -> BoxFuture<'a, Res<()>> {
        async move {
            if wanted.is_empty() || !self.collection_exists().await? {
                return Ok(());
            }
            for batch in wanted.chunks(PAGE as usize) {
                let req = DeletePointsBuilder::new(self.name())
                    .points(PointsSelectorOneOf::Points(PointsIdsList {
                        ids: ids(batch),
                    }))
                    .wait(true);
                self.timed("delete", self.client.delete_points(req)).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn set_corpus_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Res<()>> {
        async move {
            if self.collection_exists().await? {
                let all: Vec<Uuid> = self
                    .list_ids(None)
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                for batch in all.chunks(PAGE as usize) {
                    let payload =
                        QPayload::try_from(serde_json::json!({ "corpus_version": version }))
                            .map_err(|e| RetrievalError::Invalid(format!("payload: {e}")))?;
                    let req = SetPayloadPointsBuilder::new(self.name(), payload)
                        .points_selector(PointsSelectorOneOf::Points(PointsIdsList {
                            ids: ids(batch),
                        }))
                        .wait(true);
                    self.timed("set_payload", self.client.set_payload(req))
                        .await?;
                }
            }
            if let Some(meta) = self.read_meta().await? {
                let meta = StoreMeta {
                    corpus_version: version.to_owned(),
                    ..meta
                };
                self.set_meta(&meta).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_collections() {
        let s = QdrantSpec::parse("qdrant://localhost:6334", Some("k"))
            .unwrap()
            .unwrap();
        assert_eq!(s.url, "http://localhost:6334");
        assert_eq!(s.collection, DEFAULT_COLLECTION);
        assert_eq!(s.api_key.as_deref(), Some("k"));
        assert_eq!(s.to_string(), "qdrant://localhost:6334/starpillar");
        assert!(!format!("{s:?}").contains("\"k\""));
        let t = QdrantSpec::parse("https://q.example.com:6334/chunks", None)
            .unwrap()
            .unwrap();
        assert_eq!(t.url, "https://q.example.com:6334");
        assert_eq!(t.collection, "chunks");
        assert!(QdrantSpec::parse("edge:///x", None).unwrap().is_none());
        assert!(QdrantSpec::parse("qdrant://", None).is_err());
        assert!(QdrantSpec::parse("qdrant://h:1/a b", None).is_err());
        assert_eq!(t.timeout, CALL_TIMEOUT);
        let quick = QdrantSpec::parse("qdrant://h:1/c?timeout=0.5", None)
            .unwrap()
            .unwrap();
        assert_eq!(quick.timeout, Duration::from_millis(500));
        assert_eq!(quick.collection, "c");
        for bad in [
            "qdrant://h:1?timeout=0",
            "qdrant://h:1?timeout=x",
            "qdrant://h:1?wait=1",
        ] {
            assert!(QdrantSpec::parse(bad, None).is_err(), "{bad}");
        }
    }
}
