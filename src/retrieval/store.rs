//! Vector stores: the [`VectorStoreRead`] / [`VectorStoreWrite`] traits and [`ExactStore`], an
//! exact in-process store (brute-force cosine over f32, BM25 with collection IDF over sparse
//! vectors) persisted under the data dir.
//!
//! The traits return boxed futures so a network store (`qdrant://`, through `qdrant-client`)
//! and an embedded one run on a blocking thread (`edge://`, through `qdrant-edge`) implement
//! them unchanged; [`StoreSpec`] is where they join. The exact store is the correctness
//! baseline that approximate (HNSW) stores are measured against.
//!
//! Persistence: a snapshot (`points.json`, replaced atomically: temp file, fsync, rename) and a
//! write-ahead log (`wal.jsonl`, one fsynced line per write call). Opening replays the log on
//! the snapshot and ignores a torn last line, so a killed writer loses at most its last batch,
//! never the store. Replaying is idempotent, so a crash between snapshot and log truncation is
//! harmless.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RetrievalError;
use super::corpus::Payload;
use super::sparse::{SparseConfig, SparseVector, idf};

/// One stored chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: Uuid,
    pub dense: Vec<f32>,
    pub sparse: SparseVector,
    pub payload: Payload,
}

/// Payload conditions (all that are set must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub lang: Option<String>,
    pub topic: Option<String>,
}

impl Filter {
    pub fn matches(&self, p: &Payload) -> bool {
        self.lang.as_ref().is_none_or(|l| *l == p.lang)
            && self.topic.as_ref().is_none_or(|t| *t == p.topic)
    }
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    pub score: f32,
    pub payload: Payload,
}

/// What a collection was built with; a store built with another model or sparse analysis is
/// rebuilt, not mixed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub model: String,
    pub dim: usize,
    pub sparse: Option<SparseConfig>,
    pub corpus_version: String,
}

type Res<T> = Result<T, RetrievalError>;

/// The read half.
pub trait VectorStoreRead: Send + Sync {
    /// Where the store lives, for logs and errors.
    fn describe(&self) -> String;
    fn meta(&self) -> BoxFuture<'_, Res<Option<StoreMeta>>>;
    fn count<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Res<usize>>;
    /// (id, source) of every point, or of one source's points.
    fn list_ids<'a>(&'a self, source: Option<&'a str>) -> BoxFuture<'a, Res<Vec<(Uuid, String)>>>;
    /// Stored dense vectors of the ids that exist.
    fn dense_vectors<'a>(&'a self, ids: &'a [Uuid]) -> BoxFuture<'a, Res<HashMap<Uuid, Vec<f32>>>>;
    /// Cosine similarity, best first.
    fn search_dense<'a>(
        &'a self,
        vector: &'a [f32],
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>>;
    /// Σ query · doc · IDF over the collection, best first; zero scores are not hits.
    fn search_sparse<'a>(
        &'a self,
        vector: &'a SparseVector,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>>;
    /// Dense and sparse candidate lists (`prefetch` each) fused by `fusion` (weighted
    /// reciprocal-rank fusion), `limit` best. The default runs both searches and fuses them
    /// here ([`super::hybrid::fuse`]); a server store fuses on the server, by the same formula.
    fn search_hybrid<'a>(
        &'a self,
        dense: &'a [f32],
        sparse: &'a SparseVector,
        filter: &'a Filter,
        fusion: &'a super::hybrid::Fusion,
        prefetch: usize,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        async move {
            let d = self.search_dense(dense, filter, prefetch).await?;
            let s = self.search_sparse(sparse, filter, prefetch).await?;
            Ok(super::hybrid::fuse(d, s, fusion, limit))
        }
        .boxed()
    }
}

/// The write half.
pub trait VectorStoreWrite: VectorStoreRead {
    fn set_meta<'a>(&'a self, meta: &'a StoreMeta) -> BoxFuture<'a, Res<()>>;
    /// Insert or replace; durable when the future resolves.
    fn upsert(&self, points: Vec<Point>) -> BoxFuture<'_, Res<()>>;
    fn delete<'a>(&'a self, ids: &'a [Uuid]) -> BoxFuture<'a, Res<()>>;
    /// Set `corpus_version` in every payload (a payload-only update; vectors stay).
    fn set_corpus_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Res<()>>;
}

/// A store that can be read and written.
pub trait VectorStore: VectorStoreWrite {}
impl<T: VectorStoreWrite> VectorStore for T {}

/// Where a store lives, parsed from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `exact://<dir>`: [`ExactStore`], the exact reference.
    Exact(PathBuf),
    /// `edge://<dir>`: [`super::edge::EdgeStore`], embedded Qdrant (the default).
    Edge(PathBuf),
    /// `qdrant://host:6334[/collection]` (plain gRPC), `https://host:6334[/collection]` (TLS)
    /// or `http://…`: [`super::qdrant::QdrantStore`].
    Qdrant(super::qdrant::QdrantSpec),
}

impl StoreSpec {
    /// Parse `--store`; `api_key` (from `--qdrant-api-key` / `QDRANT_API_KEY`) is used by
    /// `qdrant://` stores only.
    pub fn parse(spec: &str) -> Res<Self> {
        Self::parse_with_key(spec, None)
    }

    pub fn parse_with_key(spec: &str, api_key: Option<&str>) -> Res<Self> {
        for (scheme, make) in [
            ("exact://", Self::Exact as fn(PathBuf) -> Self),
            ("edge://", Self::Edge),
        ] {
            if let Some(dir) = spec.strip_prefix(scheme) {
                if dir.is_empty() {
                    break;
                }
                return Ok(make(PathBuf::from(dir)));
            }
        }
        if let Some(q) = super::qdrant::QdrantSpec::parse(spec, api_key)? {
            return Ok(Self::Qdrant(q));
        }
        Err(RetrievalError::StoreSpec(spec.to_owned()))
    }

    /// The default store under the data dir: embedded Qdrant in `<data-dir>/index/edge`.
    pub fn default_for(data_dir: &Path) -> Self {
        Self::Edge(data_dir.join("index").join("edge"))
    }

    /// Open the store (a `qdrant://` store connects lazily, on its first call).
    pub fn open(&self) -> Res<std::sync::Arc<dyn VectorStore>> {
        match self {
            Self::Exact(dir) => Ok(std::sync::Arc::new(ExactStore::open(dir)?)),
            Self::Edge(dir) => Ok(super::edge::EdgeStore::open_shared(dir)?),
            Self::Qdrant(q) => Ok(std::sync::Arc::new(super::qdrant::QdrantStore::new(q)?)),
        }
    }

    /// True for a store kept on this machine that has never been written.
    pub fn is_local_and_missing(&self) -> bool {
        match self {
            Self::Exact(dir) | Self::Edge(dir) => !dir.exists(),
            Self::Qdrant(_) => false,
        }
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(dir) => write!(f, "exact://{}", dir.display()),
            Self::Edge(dir) => write!(f, "edge://{}", dir.display()),
            Self::Qdrant(q) => write!(f, "{q}"),
        }
    }
}

/// A point as stored on disk: the dense vector as base64 of little-endian f32.
#[derive(Serialize, Deserialize)]
struct DiskPoint {
    id: Uuid,
    dense: String,
    sparse: SparseVector,
    payload: Payload,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    meta: Option<StoreMeta>,
    points: Vec<DiskPoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WalOp {
    Meta(StoreMeta),
    Upsert(Vec<DiskPoint>),
    Delete(Vec<Uuid>),
    CorpusVersion(String),
}

fn encode_dense(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_dense(s: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn to_disk(p: &Point) -> DiskPoint {
    DiskPoint {
        id: p.id,
        dense: encode_dense(&p.dense),
        sparse: p.sparse.clone(),
        payload: p.payload.clone(),
    }
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

#[derive(Default)]
struct State {
    meta: Option<StoreMeta>,
    points: HashMap<Uuid, Point>,
    /// Document frequency of every sparse index.
    df: HashMap<u32, usize>,
    wal_bytes: u64,
    snapshot_bytes: u64,
}

impl State {
    fn insert(&mut self, p: Point) {
        for i in &p.sparse.indices {
            *self.df.entry(*i).or_default() += 1;
        }
        if let Some(old) = self.points.insert(p.id, p) {
            self.forget(&old);
        }
    }

    fn remove(&mut self, id: &Uuid) {
        if let Some(old) = self.points.remove(id) {
            self.forget(&old);
        }
    }

    fn forget(&mut self, old: &Point) {
        for i in &old.sparse.indices {
            if let Some(n) = self.df.get_mut(i) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.df.remove(i);
                }
            }
        }
    }

    fn apply(&mut self, op: WalOp, path: &Path) -> Res<()> {
        match op {
            WalOp::Meta(m) => self.meta = Some(m),
            WalOp::Upsert(points) => {
                for d in points {
                    let dense = decode_dense(&d.dense).ok_or_else(|| RetrievalError::Corrupt {
                        path: path.display().to_string(),
                        problem: format!("bad vector for point {}", d.id),
                    })?;
                    self.insert(Point {
                        id: d.id,
                        dense,
                        sparse: d.sparse,
                        payload: d.payload,
                    });
                }
            }
            WalOp::Delete(ids) => ids.iter().for_each(|id| self.remove(id)),
            WalOp::CorpusVersion(v) => {
                for p in self.points.values_mut() {
                    p.payload.corpus_version.clone_from(&v);
                }
                if let Some(m) = &mut self.meta {
                    m.corpus_version = v;
                }
            }
        }
        Ok(())
    }

    fn ranked(&self, mut hits: Vec<(f32, &Point)>, limit: usize) -> Vec<Hit> {
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        hits.truncate(limit);
        hits.into_iter()
            .map(|(score, p)| Hit {
                id: p.id,
                score,
                payload: p.payload.clone(),
            })
            .collect()
    }
}

/// The exact in-process store.
pub struct ExactStore {
    /// `None`: in memory only (the eval's scratch store).
    dir: Option<PathBuf>,
    state: RwLock<State>,
}

const SNAPSHOT: &str = "points.json";
const WAL: &str = "wal.jsonl";

impl ExactStore {
    /// Open (creating the folder if needed) and load the snapshot and log.
    pub fn open(dir: &Path) -> Res<Self> {
        std::fs::create_dir_all(dir).map_err(|e| RetrievalError::io(dir, e))?;
        let mut state = State::default();
        let snap_path = dir.join(SNAPSHOT);
        match std::fs::read(&snap_path) {
            Ok(bytes) => {
                state.snapshot_bytes = bytes.len() as u64;
                let snap: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| RetrievalError::Corrupt {
                        path: snap_path.display().to_string(),
                        problem: e.to_string(),
                    })?;
                if snap.format != 1 {
                    return Err(RetrievalError::Corrupt {
                        path: snap_path.display().to_string(),
                        problem: format!("unknown format {}", snap.format),
                    });
                }
                state.meta = snap.meta;
                state.apply(WalOp::Upsert(snap.points), &snap_path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RetrievalError::io(&snap_path, e)),
        }
        let wal_path = dir.join(WAL);
        match std::fs::File::open(&wal_path) {
            Ok(f) => {
                let mut reader = std::io::BufReader::new(f);
                let mut line = String::new();
                loop {
                    line.clear();
                    let n = reader
                        .read_line(&mut line)
                        .map_err(|e| RetrievalError::io(&wal_path, e))?;
                    if n == 0 {
                        break;
                    }
                    state.wal_bytes += n as u64;
                    if !line.ends_with('\n') {
                        // A torn last write: the batch never completed.
                        tracing::warn!(path = %wal_path.display(), "ignoring a torn last log line");
                        break;
                    }
                    let op: WalOp =
                        serde_json::from_str(&line).map_err(|e| RetrievalError::Corrupt {
                            path: wal_path.display().to_string(),
                            problem: e.to_string(),
                        })?;
                    state.apply(op, &wal_path)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RetrievalError::io(&wal_path, e)),
        }
        let store = Self {
            dir: Some(dir.to_path_buf()),
            state: RwLock::new(state),
        };
        store.compact_if_needed(true)?;
        Ok(store)
    }

    /// A store that lives in memory only.
    pub fn in_memory() -> Self {
        Self {
            dir: None,
            state: RwLock::new(State::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Append one operation to the log (fsynced) and apply it.
    fn log(&self, op: WalOp) -> Res<()> {
        let Some(dir) = &self.dir else {
            return self.write().apply(op, Path::new("memory"));
        };
        let path = dir.join(WAL);
        let mut line = serde_json::to_string(&op).map_err(|e| RetrievalError::Corrupt {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        line.push('\n');
        {
            let mut state = self.write();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| RetrievalError::io(&path, e))?;
            f.write_all(line.as_bytes())
                .and_then(|()| f.sync_data())
                .map_err(|e| RetrievalError::io(&path, e))?;
            state.wal_bytes += line.len() as u64;
            state.apply(op, &path)?;
        }
        self.compact_if_needed(false)
    }

    /// Rewrite the snapshot and empty the log when the log has grown past the snapshot (or,
    /// with `force`, whenever the log is not empty).
    fn compact_if_needed(&self, force: bool) -> Res<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut state = self.write();
        let due =
            state.wal_bytes > 0 && (force || state.wal_bytes > state.snapshot_bytes.max(1 << 20));
        if !due {
            return Ok(());
        }
        let mut points: Vec<DiskPoint> = state.points.values().map(to_disk).collect();
        points.sort_by_key(|p| p.id);
        let snap = Snapshot {
            format: 1,
            meta: state.meta.clone(),
            points,
        };
        let path = dir.join(SNAPSHOT);
        let bytes = serde_json::to_vec(&snap).map_err(|e| RetrievalError::Corrupt {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        write_atomic(&path, &bytes)?;
        let wal = dir.join(WAL);
        std::fs::File::create(&wal)
            .and_then(|f| f.sync_all())
            .map_err(|e| RetrievalError::io(&wal, e))?;
        state.snapshot_bytes = bytes.len() as u64;
        state.wal_bytes = 0;
        Ok(())
    }

    /// Write the snapshot now (the log is folded in).
    pub fn compact(&self) -> Res<()> {
        self.compact_if_needed(true)
    }

    fn check_dim(&self, got: usize) -> Res<()> {
        let state = self.read();
        let want = state
            .meta
            .as_ref()
            .map(|m| m.dim)
            .filter(|d| *d > 0)
            .or_else(|| state.points.values().next().map(|p| p.dense.len()));
        match want {
            Some(want) if want != got => Err(RetrievalError::Dimension { got, want }),
            _ => Ok(()),
        }
    }

    fn dense_sync(&self, vector: &[f32], filter: &Filter, limit: usize) -> Res<Vec<Hit>> {
        self.check_dim(vector.len())?;
        let q = normalised(vector);
        let state = self.read();
        let hits = state
            .points
            .values()
            .filter(|p| filter.matches(&p.payload))
            .map(|p| (q.iter().zip(&p.dense).map(|(a, b)| a * b).sum::<f32>(), p))
            .collect();
        Ok(state.ranked(hits, limit))
    }

    fn sparse_sync(&self, vector: &SparseVector, filter: &Filter, limit: usize) -> Vec<Hit> {
        let state = self.read();
        let n = state.points.len();
        let hits = state
            .points
            .values()
            .filter(|p| filter.matches(&p.payload))
            .map(|p| {
                let s = vector.dot_with(&p.sparse, |i| {
                    idf(n, state.df.get(&i).copied().unwrap_or(0))
                });
                (s, p)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        state.ranked(hits, limit)
    }
}

/// Replace `path` with `bytes` atomically: temp file in the same folder, fsync, rename, fsync
/// the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Res<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RetrievalError::io(path, e)
    })
}

impl VectorStoreRead for ExactStore {
    fn describe(&self) -> String {
        match &self.dir {
            Some(dir) => format!("exact://{}", dir.display()),
            None => "exact (in memory)".to_owned(),
        }
    }

    fn meta(&self) -> BoxFuture<'_, Res<Option<StoreMeta>>> {
        futures::future::ready(Ok(self.read().meta.clone())).boxed()
    }

    fn count<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Res<usize>> {
        let state = self.read();
        let n = state
            .points
            .values()
            .filter(|p| filter.matches(&p.payload))
            .count();
        futures::future::ready(Ok(n)).boxed()
    }

    fn list_ids<'a>(&'a self, source: Option<&'a str>) -> BoxFuture<'a, Res<Vec<(Uuid, String)>>> {
        let state = self.read();
        let mut ids: Vec<(Uuid, String)> = state
            .points
            .values()
            .filter(|p| source.is_none_or(|s| s == p.payload.source))
            .map(|p| (p.id, p.payload.source.clone()))
            .collect();
        ids.sort();
        futures::future::ready(Ok(ids)).boxed()
    }

    fn dense_vectors<'a>(&'a self, ids: &'a [Uuid]) -> BoxFuture<'a, Res<HashMap<Uuid, Vec<f32>>>> {
        let state = self.read();
        let out = ids
            .iter()
            .filter_map(|id| state.points.get(id).map(|p| (*id, p.dense.clone())))
            .collect();
        futures::future::ready(Ok(out)).boxed()
    }

    fn search_dense<'a>(
        &'a self,
        vector: &'a [f32],
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        futures::future::ready(self.dense_sync(vector, filter, limit)).boxed()
    }

    fn search_sparse<'a>(
        &'a self,
        vector: &'a SparseVector,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<Hit>>> {
        futures::future::ready(Ok(self.sparse_sync(vector, filter, limit))).boxed()
    }
}

impl VectorStoreWrite for ExactStore {
    fn set_meta<'a>(&'a self, meta: &'a StoreMeta) -> BoxFuture<'a, Res<()>> {
        futures::future::ready(self.log(WalOp::Meta(meta.clone()))).boxed()
    }

    fn upsert(&self, points: Vec<Point>) -> BoxFuture<'_, Res<()>> {
        let result = (|| {
            if let Some(first) = points.first() {
                self.check_dim(first.dense.len())?;
                if let Some(bad) = points.iter().find(|p| p.dense.len() != first.dense.len()) {
                    return Err(RetrievalError::Dimension {
                        got: bad.dense.len(),
                        want: first.dense.len(),
                    });
                }
            } else {
                return Ok(());
            }
            let disk = points
                .iter()
                .map(|p| {
                    to_disk(&Point {
                        dense: normalised(&p.dense),
                        ..p.clone()
                    })
                })
                .collect();
            self.log(WalOp::Upsert(disk))
        })();
        futures::future::ready(result).boxed()
    }

    fn delete<'a>(&'a self, ids: &'a [Uuid]) -> BoxFuture<'a, Res<()>> {
        let result = if ids.is_empty() {
            Ok(())
        } else {
            self.log(WalOp::Delete(ids.to_vec()))
        };
        futures::future::ready(result).boxed()
    }

    fn set_corpus_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Res<()>> {
        futures::future::ready(self.log(WalOp::CorpusVersion(version.to_owned()))).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_round_trips_through_base64() {
        let v = vec![0.5, -1.25, f32::MIN_POSITIVE, 3.0];
        assert_eq!(decode_dense(&encode_dense(&v)), Some(v));
        assert_eq!(decode_dense("AAA"), None);
    }

    #[test]
    fn store_specs() {
        assert_eq!(
            StoreSpec::parse("exact:///tmp/x").unwrap(),
            StoreSpec::Exact(PathBuf::from("/tmp/x"))
        );
        assert_eq!(
            StoreSpec::parse("edge:///tmp/e").unwrap(),
            StoreSpec::Edge(PathBuf::from("/tmp/e"))
        );
        assert!(StoreSpec::parse("exact://").is_err());
        assert!(StoreSpec::parse("edge://").is_err());
        assert!(StoreSpec::parse("/tmp/x").is_err());
        assert!(matches!(
            StoreSpec::parse("qdrant://localhost:6334").unwrap(),
            StoreSpec::Qdrant(_)
        ));
        assert!(matches!(
            StoreSpec::default_for(Path::new("/d")),
            StoreSpec::Edge(p) if p == Path::new("/d/index/edge")
        ));
    }
}
