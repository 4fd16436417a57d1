//! The shared store: entries in Redis with a TTL, and one sorted set per tag so purges work.
//!
//! Layout under the prefix `P` (default `starpillar:cache`):
//! - `P:e:<key hex>`: a hash `{b: body, r: route, p: prompt version, c: corpus version}` with
//!   the entry's TTL;
//! - `P:tag:all`, `P:tag:route:<route>`, `P:tag:prompt:<version>`, `P:tag:corpus:<version>`:
//!   sorted sets of key hexes scored by their expiry (ms since the epoch). Every store trims
//!   members already expired, so a tag set never outgrows the live entries by much, and the
//!   set itself expires with its last member.
//!
//! A purge deletes every entry listed in one tag set and the set itself, in one Lua script.
//! All keys of an entry are written by one script too, so a reader never sees half an entry.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{CacheError, CacheKey, Entry, Purge};

/// One round trip may take this long before the cache falls back to memory.
const TIMEOUT: Duration = Duration::from_millis(500);

/// KEYS: entry, tag sets…; ARGV: ttl ms, now ms, key hex, body, route, prompt, corpus.
const STORE_LUA: &str = r#"
redis.call("HSET", KEYS[1], "b", ARGV[4], "r", ARGV[5], "p", ARGV[6], "c", ARGV[7])
redis.call("PEXPIRE", KEYS[1], ARGV[1])
local expires = tonumber(ARGV[2]) + tonumber(ARGV[1])
for i = 2, #KEYS do
  redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", ARGV[2])
  redis.call("ZADD", KEYS[i], expires, ARGV[3])
  redis.call("PEXPIRE", KEYS[i], ARGV[1])
end
return 1
"#;

/// KEYS: one tag set; ARGV: the entry key prefix (`P:e:`). Returns the entries deleted.
const PURGE_LUA: &str = r#"
local members = redis.call("ZRANGE", KEYS[1], 0, -1)
local deleted = 0
for i = 1, #members, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #members) do
    batch[#batch + 1] = ARGV[1] .. members[j]
  end
  deleted = deleted + redis.call("DEL", unpack(batch))
end
redis.call("DEL", KEYS[1])
return deleted
"#;

/// A Redis-backed entry store (also used directly by `starpillar cache purge --redis-url`).
pub struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    store: redis::Script,
    purge: redis::Script,
}

impl RedisStore {
    /// A store for `url` (`redis://…`, `rediss://…`); connects on first use.
    pub fn new(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(|e| CacheError::InvalidUrl(e.to_string()))?;
        Ok(Self {
            client,
            conn: tokio::sync::OnceCell::new(),
            prefix: prefix.trim_end_matches(':').to_owned(),
            store: redis::Script::new(STORE_LUA),
            purge: redis::Script::new(PURGE_LUA),
        })
    }

    /// Where Redis is, without credentials (for logs and `/api/lib-health`).
    pub fn describe(&self) -> String {
        let info = self.client.get_connection_info();
        format!("redis {} (prefix {})", info.addr, self.prefix)
    }

    async fn conn(&self) -> Result<ConnectionManager, CacheError> {
        let manager = self
            .conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(TIMEOUT)
                    .set_response_timeout(TIMEOUT)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(manager.clone())
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}:e:{}", self.prefix, key.hex())
    }

    fn tag_key(&self, what: &Purge) -> String {
        match what {
            Purge::All => format!("{}:tag:all", self.prefix),
            Purge::Route(r) => format!("{}:tag:route:{r}", self.prefix),
            Purge::PromptVersion(v) => format!("{}:tag:prompt:{v}", self.prefix),
            Purge::CorpusVersion(v) => format!("{}:tag:corpus:{v}", self.prefix),
        }
    }

    /// Bound a round trip: a dead server must not hold a request.
    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        tokio::time::timeout(TIMEOUT * 2, work)
            .await
            .map_err(|_| CacheError::Timeout)?
    }

    /// The entry under `key`, if any.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Entry>, CacheError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(self.entry_key(key))
                .arg(&["b", "r", "p", "c"])
                .query_async(&mut conn)
                .await?;
            let mut it = fields.into_iter();
            let (Some(Some(body)), Some(Some(route)), Some(Some(prompt)), Some(Some(corpus))) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                return Ok(None);
            };
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            Ok(Some(Entry {
                body,
                route: text(route),
                prompt_version: text(prompt),
                corpus_version: text(corpus),
            }))
        })
        .await
    }

    /// Store an entry for `ttl`, tagged by route, prompt version and corpus version.
    pub async fn put(
        &self,
        key: &CacheKey,
        entry: &Entry,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.timed(async {
            let mut conn = self.conn().await?;
            let mut invocation = self.store.key(self.entry_key(key));
            for tag in [
                Purge::All,
                Purge::Route(entry.route.clone()),
                Purge::PromptVersion(entry.prompt_version.clone()),
                Purge::CorpusVersion(entry.corpus_version.clone()),
            ] {
                invocation.key(self.tag_key(&tag));
            }
            let _: i64 = invocation
                .arg(ttl_ms)
                .arg(now_ms)
                .arg(key.hex())
                .arg(entry.body.as_slice())
                .arg(&entry.route)
                .arg(&entry.prompt_version)
                .arg(&entry.corpus_version)
                .invoke_async(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Delete every entry the purge selects; how many existed.
    pub async fn purge(&self, what: &Purge) -> Result<u64, CacheError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            let deleted: i64 = self
                .purge
                .key(self.tag_key(what))
                .arg(format!("{}:e:", self.prefix))
                .invoke_async(&mut conn)
                .await?;
            Ok(deleted.max(0) as u64)
        })
        .await
    }
}
