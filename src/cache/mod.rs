//! The response cache of finished readings (DESIGN.md §7): an exact key over everything that
//! makes a reading differ ([`CacheKey`]), an in-process LRU with a TTL and a byte budget, or
//! Redis when `REDIS_URL` is set so instances share entries, and single-flight so concurrent
//! identical requests compute once.
//!
//! A handler calls [`ResponseCache::lookup`]: a [`Lookup::Hit`] carries the stored body; a
//! [`Lookup::Miss`] carries a [`Flight`] the handler completes with the finished reading
//! ([`Flight::complete`]). While a flight is open, identical lookups wait for it (at most
//! `--cache-flight-wait`) and receive its entry; if the leader drops its flight without
//! completing (an error, a client that went away), the waiters retry and one of them leads.
//!
//! With Redis configured, entries live only there (so a purge from any instance or from
//! `starpillar cache purge --redis-url` is seen by every instance); when Redis fails, the cache
//! falls back to the in-process store for a few seconds at a time, counts it and logs it, and
//! never fails the request. Purges ([`Purge`]) act on both stores.

mod key;
mod memory;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tokio::sync::watch;

use crate::config::Secret;

pub use key::{CacheKey, KeyParts, canonical_json, normalize_question};
pub use memory::entry_size;

/// After a Redis failure, the cache uses memory for this long before trying Redis again.
const REDIS_BACKOFF: Duration = Duration::from_secs(5);

/// Cache flags, flattened into `serve`. Redis is `--cache-redis-url`, else `REDIS_URL` (the
/// rate limiter's).
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Seconds a finished reading stays cached; 0 disables the cache.
    #[arg(
        long,
        env = "STARPILLAR_CACHE_TTL",
        default_value_t = 86_400,
        value_name = "SECS"
    )]
    pub cache_ttl: u64,
    /// Bytes the in-process cache may hold (least recently used entries go first).
    #[arg(
        long,
        env = "STARPILLAR_CACHE_MAX_BYTES",
        default_value_t = 64 << 20,
        value_name = "BYTES"
    )]
    pub cache_max_bytes: u64,
    /// Redis for the cache when it should differ from `REDIS_URL`.
    #[arg(
        long,
        env = "STARPILLAR_CACHE_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub cache_redis_url: Option<Secret>,
    /// Key prefix of cache entries and tag sets in Redis.
    #[arg(long, env = "STARPILLAR_CACHE_PREFIX", default_value = DEFAULT_PREFIX)]
    pub cache_prefix: String,
    /// Seconds an identical concurrent request waits for the first one's reading before it
    /// computes its own.
    #[arg(
        long,
        env = "STARPILLAR_CACHE_FLIGHT_WAIT",
        default_value_t = 120,
        value_name = "SECS"
    )]
    pub cache_flight_wait: u64,
    /// Bearer token of the admin routes (`POST /api/admin/cache/purge`); unset: they answer
    /// 404.
    #[arg(
        long,
        env = "STARPILLAR_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<Secret>,
}

/// The default Redis key prefix.
pub const DEFAULT_PREFIX: &str = "starpillar:cache";

impl Default for CacheArgs {
    fn default() -> Self {
        Self {
            cache_ttl: 86_400,
            cache_max_bytes: 64 << 20,
            cache_redis_url: None,
            cache_prefix: DEFAULT_PREFIX.into(),
            cache_flight_wait: 120,
            admin_token: None,
        }
    }
}

/// Validated cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Zero: disabled.
    pub ttl: Duration,
    pub max_bytes: u64,
    pub redis_url: Option<Secret>,
    pub prefix: String,
    pub flight_wait: Duration,
    /// The admin routes' bearer token (`None`: admin routes disabled).
    pub admin_token: Option<Secret>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::from_args(&CacheArgs::default(), None)
    }
}

impl CacheConfig {
    /// Settings from flags; `shared_redis` is `REDIS_URL` (used unless the cache has its own).
    pub fn from_args(args: &CacheArgs, shared_redis: Option<&Secret>) -> Self {
        let nonempty = |s: &&Secret| !s.is_empty();
        Self {
            ttl: Duration::from_secs(args.cache_ttl),
            max_bytes: args.cache_max_bytes,
            redis_url: args
                .cache_redis_url
                .as_ref()
                .filter(nonempty)
                .or(shared_redis.filter(nonempty))
                .cloned(),
            prefix: args.cache_prefix.clone(),
            flight_wait: Duration::from_secs(args.cache_flight_wait),
            admin_token: args.admin_token.clone().filter(|t| !t.is_empty()),
        }
    }
}

/// A finished reading as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The JSON `{reading, meta}` of the finished reading.
    pub body: Vec<u8>,
    pub route: String,
    pub prompt_version: String,
    pub corpus_version: String,
}

/// The answer of [`ResponseCache::lookup`].
pub enum Lookup {
    Hit(Arc<Entry>),
    /// Compute the reading, then [`Flight::complete`] it.
    Miss(Flight),
}

/// Which entries a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    All,
    Route(String),
    PromptVersion(String),
    CorpusVersion(String),
}

impl Purge {
    /// The metric label / log field: `all`, `route`, `prompt_version`, `corpus_version`.
    pub fn scope(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Route(_) => "route",
            Self::PromptVersion(_) => "prompt_version",
            Self::CorpusVersion(_) => "corpus_version",
        }
    }

    /// The route or version purged (`None` for `All`).
    pub fn value(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Route(v) | Self::PromptVersion(v) | Self::CorpusVersion(v) => Some(v),
        }
    }

    /// Whether this purge removes `entry`.
    pub fn selects(&self, entry: &Entry) -> bool {
        match self {
            Self::All => true,
            Self::Route(r) => entry.route == *r,
            Self::PromptVersion(v) => entry.prompt_version == *v,
            Self::CorpusVersion(v) => entry.corpus_version == *v,
        }
    }
}

/// Counters of one cache since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Hits served by waiting for an identical in-flight reading.
    pub coalesced: u64,
    pub evicted_expired: u64,
    pub evicted_size: u64,
    /// In-process entries and bytes held now.
    pub entries: usize,
    pub bytes: u64,
    pub purges: u64,
    /// Operations served by memory because Redis failed or was in back-off.
    pub redis_fallbacks: u64,
}

/// A cache backend failure (lookups and stores never return it: they fall back).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("cache redis timed out")]
    Timeout,
    #[error("invalid cache redis URL: {0}")]
    InvalidUrl(String),
}

/// The cache's Prometheus collectors.
struct CacheMetrics {
    requests: IntCounterVec,
    coalesced: IntCounter,
    evictions: IntCounterVec,
    bytes: IntGauge,
    entries: IntGauge,
    purges: IntCounterVec,
    purged_entries: IntCounter,
    fallbacks: IntCounterVec,
}

impl CacheMetrics {
    fn new() -> Self {
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        Self {
            requests: counter_vec(
                "starpillar_cache_requests_total",
                "Reading cache lookups by result (hit, miss).",
                "result",
            ),
            coalesced: IntCounter::new(
                "starpillar_cache_coalesced_total",
                "Lookups that waited for an identical in-flight reading and got it (counted as hits too).",
            )
            .expect("valid metric"),
            evictions: counter_vec(
                "starpillar_cache_evictions_total",
                "In-process cache entries evicted, by reason (expired, size).",
                "reason",
            ),
            bytes: IntGauge::new(
                "starpillar_cache_bytes",
                "Bytes held by the in-process reading cache.",
            )
            .expect("valid metric"),
            entries: IntGauge::new(
                "starpillar_cache_entries",
                "Entries held by the in-process reading cache.",
            )
            .expect("valid metric"),
            purges: counter_vec(
                "starpillar_cache_purges_total",
                "Cache purges by scope (all, route, prompt_version, corpus_version).",
                "scope",
            ),
            purged_entries: IntCounter::new(
                "starpillar_cache_purged_entries_total",
                "Cache entries removed by purges.",
            )
            .expect("valid metric"),
            fallbacks: counter_vec(
                "starpillar_cache_redis_fallbacks_total",
                "Cache operations that fell back to memory because Redis failed, by operation.",
                "op",
            ),
        }
    }
}

type FlightMap = HashMap<CacheKey, (u64, watch::Receiver<Option<Arc<Entry>>>)>;

struct Inner {
    config: CacheConfig,
    memory: Mutex<memory::Lru>,
    redis: Option<redis::RedisStore>,
    /// The Redis URL was set but could not be parsed.
    redis_invalid: Option<String>,
    /// Unix ms until which Redis is skipped after a failure.
    redis_down_until: AtomicI64,
    /// Unix ms of the last fallback warning (one a minute at most).
    last_warning: AtomicI64,
    flights: Mutex<FlightMap>,
    next_flight: AtomicU64,
    metrics: CacheMetrics,
}

/// The reading cache shared by every handler (`state.cache`).
pub struct ResponseCache {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> Self {
        let (redis, redis_invalid) = match &config.redis_url {
            None => (None, None),
            Some(url) => match redis::RedisStore::new(url.expose(), &config.prefix) {
                Ok(store) => (Some(store), None),
                Err(err) => {
                    tracing::warn!(error = %err, "cache: invalid Redis URL; using memory only");
                    (None, Some(err.to_string()))
                }
            },
        };
        Self {
            inner: Arc::new(Inner {
                memory: Mutex::new(memory::Lru::new(config.max_bytes)),
                config,
                redis,
                redis_invalid,
                redis_down_until: AtomicI64::new(0),
                last_warning: AtomicI64::new(i64::MIN / 2),
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(1),
                metrics: CacheMetrics::new(),
            }),
        }
    }

    /// The collectors to register in the server's registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let m = &self.inner.metrics;
        vec![
            Box::new(m.requests.clone()),
            Box::new(m.coalesced.clone()),
            Box::new(m.evictions.clone()),
            Box::new(m.bytes.clone()),
            Box::new(m.entries.clone()),
            Box::new(m.purges.clone()),
            Box::new(m.purged_entries.clone()),
            Box::new(m.fallbacks.clone()),
        ]
    }

    /// False with `--cache-ttl 0`: every lookup misses and nothing is stored.
    pub fn is_enabled(&self) -> bool {
        !self.inner.config.ttl.is_zero()
    }

    /// The settings in use.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Where entries live, for `/api/lib-health` and the start-up log.
    pub fn describe(&self) -> String {
        let c = &self.inner.config;
        if !self.is_enabled() {
            return "disabled (--cache-ttl 0)".into();
        }
        let memory = format!(
            "in-process LRU, ttl {} s, budget {} bytes",
            c.ttl.as_secs(),
            c.max_bytes
        );
        match (&self.inner.redis, &self.inner.redis_invalid) {
            (Some(r), _) => format!(
                "{}, ttl {} s; fallback: {memory}",
                r.describe(),
                c.ttl.as_secs()
            ),
            (None, Some(err)) => format!("{memory} ({err})"),
            (None, None) => memory,
        }
    }

    /// Counters since start (the metrics' values), for tests, `/api/lib-health` and logs.
    pub fn stats(&self) -> CacheStats {
        let m = &self.inner.metrics;
        let lru = lock(&self.inner.memory);
        let sum = |v: &IntCounterVec, labels: &[&str]| {
            labels
                .iter()
                .map(|l| v.with_label_values(&[*l]).get())
                .sum::<u64>()
        };
        CacheStats {
            hits: sum(&m.requests, &["hit"]),
            misses: sum(&m.requests, &["miss"]),
            coalesced: m.coalesced.get(),
            evicted_expired: sum(&m.evictions, &["expired"]),
            evicted_size: sum(&m.evictions, &["size"]),
            entries: lru.entries(),
            bytes: lru.bytes(),
            purges: sum(
                &m.purges,
                &["all", "route", "prompt_version", "corpus_version"],
            ),
            redis_fallbacks: sum(&m.fallbacks, &["get", "put"]),
        }
    }

    /// Find a reading, or become the one computing it (see the module docs).
    pub async fn lookup(&self, key: &CacheKey) -> Lookup {
        let inner = &self.inner;
        if !self.is_enabled() {
            return Lookup::Miss(Flight::detached(inner, *key));
        }
        let deadline = tokio::time::Instant::now() + inner.config.flight_wait;
        loop {
            if let Some(entry) = inner.get(key).await {
                inner.metrics.requests.with_label_values(&["hit"]).inc();
                return Lookup::Hit(entry);
            }
            let mut waiting = {
                let mut flights = lock(&inner.flights);
                match flights.get(key) {
                    Some((_, rx)) => rx.clone(),
                    None => {
                        // Memory-only: a leader may have stored it since `get`; look again
                        // under the lock so no second leader starts.
                        if inner.redis.is_none()
                            && let Some(entry) = inner.memory_get(key)
                        {
                            drop(flights);
                            inner.metrics.requests.with_label_values(&["hit"]).inc();
                            return Lookup::Hit(entry);
                        }
                        let id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
                        let (tx, rx) = watch::channel(None);
                        flights.insert(*key, (id, rx));
                        drop(flights);
                        inner.metrics.requests.with_label_values(&["miss"]).inc();
                        return Lookup::Miss(Flight {
                            inner: Arc::clone(inner),
                            key: *key,
                            leader: Some((id, tx)),
                        });
                    }
                }
            };
            let waited = tokio::time::timeout_at(deadline, async {
                match waiting.wait_for(Option::is_some).await {
                    Ok(entry) => entry.clone(),
                    Err(_) => None, // the leader gave up: try again
                }
            })
            .await;
            match waited {
                Ok(Some(entry)) => {
                    inner.metrics.requests.with_label_values(&["hit"]).inc();
                    inner.metrics.coalesced.inc();
                    return Lookup::Hit(entry);
                }
                Ok(None) => continue,
                Err(_) => {
                    tracing::warn!(key = %key, "cache: gave up waiting for an identical reading");
                    inner.metrics.requests.with_label_values(&["miss"]).inc();
                    return Lookup::Miss(Flight::detached(inner, *key));
                }
            }
        }
    }

    /// Remove entries from the in-process store and from Redis. A Redis failure is returned
    /// (after the in-process store was purged): the operator must know the shared cache may
    /// still hold them.
    pub async fn purge(&self, what: &Purge) -> Result<u64, CacheError> {
        let inner = &self.inner;
        let mut purged = lock(&inner.memory).purge(what);
        inner.update_gauges();
        let mut result = Ok(());
        if let Some(redis) = &inner.redis {
            match redis.purge(what).await {
                Ok(n) => purged += n,
                Err(err) => result = Err(err),
            }
        }
        inner
            .metrics
            .purges
            .with_label_values(&[what.scope()])
            .inc();
        inner.metrics.purged_entries.inc_by(purged);
        match result {
            Ok(()) => {
                tracing::info!(
                    scope = what.scope(),
                    value = what.value(),
                    purged,
                    "cache purged"
                );
                Ok(purged)
            }
            Err(err) => {
                tracing::error!(scope = what.scope(), value = what.value(), purged, error = %err,
                    "cache purge: in-process entries removed, Redis failed");
                Err(err)
            }
        }
    }
}

impl Inner {
    fn memory_get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let (entry, evicted) = lock(&self.memory).get(key, Instant::now());
        if evicted.expired > 0 {
            self.metrics
                .evictions
                .with_label_values(&["expired"])
                .inc_by(evicted.expired);
            self.update_gauges();
        }
        entry
    }

    fn update_gauges(&self) {
        let (len, bytes) = {
            let lru = lock(&self.memory);
            (lru.entries(), lru.bytes())
        };
        self.metrics.entries.set(len as i64);
        self.metrics.bytes.set(bytes as i64);
    }

    /// Redis when it is configured and not in back-off.
    fn live_redis(&self) -> Option<&redis::RedisStore> {
        self.redis
            .as_ref()
            .filter(|_| self.redis_down_until.load(Ordering::Relaxed) <= unix_ms())
    }

    fn redis_failed(&self, op: &str, err: &CacheError) {
        let now = unix_ms();
        self.redis_down_until
            .store(now + REDIS_BACKOFF.as_millis() as i64, Ordering::Relaxed);
        self.metrics.fallbacks.with_label_values(&[op]).inc();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now - last >= 60_000
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(op, error = %err, "cache: Redis unavailable; using the in-process cache");
        }
    }

    async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        if let Some(redis) = self.live_redis() {
            match redis.get(key).await {
                Ok(entry) => return entry.map(Arc::new),
                Err(err) => self.redis_failed("get", &err),
            }
        } else if self.redis.is_some() {
            self.metrics.fallbacks.with_label_values(&["get"]).inc();
        }
        self.memory_get(key)
    }

    async fn put(&self, key: &CacheKey, entry: &Arc<Entry>) {
        if let Some(redis) = self.live_redis() {
            match redis.put(key, entry, self.config.ttl).await {
                Ok(()) => return,
                Err(err) => self.redis_failed("put", &err),
            }
        } else if self.redis.is_some() {
            self.metrics.fallbacks.with_label_values(&["put"]).inc();
        }
        let now = Instant::now();
        let evicted =
            lock(&self.memory).insert(*key, Arc::clone(entry), now + self.config.ttl, now);
        let m = &self.metrics;
        m.evictions
            .with_label_values(&["expired"])
            .inc_by(evicted.expired);
        m.evictions
            .with_label_values(&["size"])
            .inc_by(evicted.size);
        self.update_gauges();
    }
}

/// The right (and duty) to compute one reading. Complete it with the finished entry; dropping
/// it instead releases anyone waiting for it (they retry).
pub struct Flight {
    inner: Arc<Inner>,
    key: CacheKey,
    /// Set when this flight leads: waiters watch the sender.
    leader: Option<(u64, watch::Sender<Option<Arc<Entry>>>)>,
}

impl Flight {
    /// A flight nobody waits on (cache disabled, or a waiter that gave up).
    fn detached(inner: &Arc<Inner>, key: CacheKey) -> Self {
        Self {
            inner: Arc::clone(inner),
            key,
            leader: None,
        }
    }

    /// The key being computed.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// True when other identical lookups may be waiting on this flight.
    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// Store the finished reading and hand it to everyone waiting.
    pub async fn complete(mut self, entry: Entry) {
        let entry = Arc::new(entry);
        if !self.inner.config.ttl.is_zero() {
            self.inner.put(&self.key, &entry).await;
        }
        if let Some((id, tx)) = self.leader.take() {
            tx.send_replace(Some(entry));
            self.inner.end_flight(&self.key, id);
        }
    }
}

impl Inner {
    fn end_flight(&self, key: &CacheKey, id: u64) {
        let mut flights = lock(&self.flights);
        if flights.get(key).is_some_and(|(owner, _)| *owner == id) {
            flights.remove(key);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some((id, _tx)) = self.leader.take() {
            self.inner.end_flight(&self.key, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_falls_back_to_the_shared_one() {
        let shared = Secret::new("redis://shared:6379");
        let own = CacheArgs {
            cache_redis_url: Some(Secret::new("redis://own:6379")),
            ..CacheArgs::default()
        };
        let c = CacheConfig::from_args(&own, Some(&shared));
        assert_eq!(
            c.redis_url.map(|s| s.expose().to_owned()).as_deref(),
            Some("redis://own:6379")
        );
        let c = CacheConfig::from_args(&CacheArgs::default(), Some(&shared));
        assert_eq!(
            c.redis_url.map(|s| s.expose().to_owned()).as_deref(),
            Some("redis://shared:6379")
        );
        assert!(
            CacheConfig::from_args(&CacheArgs::default(), None)
                .redis_url
                .is_none()
        );
    }
}
