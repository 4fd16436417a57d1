//! Where the sliding-window counters live: in process, in Redis (RESP, `REDIS_URL`), or in
//! Upstash Redis over its REST API. The Redis variants run one Lua script atomically, with
//! the same keys, arguments and counter values as `@upstash/ratelimit`'s sliding window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{BackendConfig, weighted_previous};
use crate::config::Secret;

/// KEYS: current window, previous window. ARGV: tokens, now (ms), window (ms), increment.
/// Returns the tokens left after this request, or -1 when refused (nothing is counted).
const SLIDING_WINDOW_LUA: &str = r#"
local cur = tonumber(redis.call("GET", KEYS[1]) or "0")
local prev = tonumber(redis.call("GET", KEYS[2]) or "0")
local tokens = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local inc = tonumber(ARGV[4])
prev = math.floor((1 - (now % window) / window) * prev)
if inc > 0 and prev + cur >= tokens then
  return -1
end
local value = redis.call("INCRBY", KEYS[1], inc)
if value == inc then
  redis.call("PEXPIRE", KEYS[1], window * 2 + 1000)
end
return tokens - (value + prev)
"#;

/// A backend failure (the limiter then fails open).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("upstash: {0}")]
    Upstash(String),
    #[error("timed out")]
    Timeout,
}

#[allow(clippy::large_enum_variant, reason = "one per process")]
pub enum Backend {
    Memory(Mutex<HashMap<String, (i64, i64)>>),
    Redis {
        client: Option<redis::Client>,
        conn: tokio::sync::OnceCell<ConnectionManager>,
        script: redis::Script,
    },
    Upstash {
        url: String,
        token: Secret,
        http: reqwest::Client,
    },
}

const TIMEOUT: Duration = Duration::from_millis(750);

impl Backend {
    pub fn new(cfg: &BackendConfig) -> Self {
        match cfg {
            BackendConfig::Memory => Self::Memory(Mutex::new(HashMap::new())),
            BackendConfig::Redis(url) => Self::Redis {
                client: redis::Client::open(url.expose()).ok(),
                conn: tokio::sync::OnceCell::new(),
                script: redis::Script::new(SLIDING_WINDOW_LUA),
            },
            BackendConfig::Upstash { url, token } => Self::Upstash {
                url: url.clone(),
                token: token.clone(),
                http: reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .build()
                    .unwrap_or_default(),
            },
        }
    }

    /// Count one request; the tokens left (negative: refused).
    pub async fn spend(
        &self,
        current: &str,
        previous: &str,
        tokens: i64,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<i64, BackendError> {
        match self {
            Self::Memory(map) => Ok(memory_spend(
                map, current, previous, tokens, now_ms, window_ms,
            )),
            Self::Redis {
                client,
                conn,
                script,
            } => {
                let client = client
                    .as_ref()
                    .ok_or_else(|| BackendError::Upstash("invalid REDIS_URL".into()))?;
                let work = async {
                    let manager = conn
                        .get_or_try_init(|| async {
                            let config = redis::aio::ConnectionManagerConfig::new()
                                .set_connection_timeout(TIMEOUT)
                                .set_response_timeout(TIMEOUT)
                                .set_number_of_retries(1);
                            ConnectionManager::new_with_config(client.clone(), config).await
                        })
                        .await?;
                    let mut manager = manager.clone();
                    let left: i64 = script
                        .key(current)
                        .key(previous)
                        .arg(tokens)
                        .arg(now_ms)
                        .arg(window_ms)
                        .arg(1)
                        .invoke_async(&mut manager)
                        .await?;
                    Ok::<i64, BackendError>(left)
                };
                tokio::time::timeout(TIMEOUT * 2, work)
                    .await
                    .map_err(|_| BackendError::Timeout)?
            }
            Self::Upstash { url, token, http } => {
                let command = serde_json::json!([
                    "EVAL",
                    SLIDING_WINDOW_LUA,
                    "2",
                    current,
                    previous,
                    tokens.to_string(),
                    now_ms.to_string(),
                    window_ms.to_string(),
                    "1"
                ]);
                let response = http
                    .post(url)
                    .bearer_auth(token.expose())
                    .header("content-type", "application/json")
                    .body(command.to_string())
                    .send()
                    .await
                    .map_err(|e| BackendError::Upstash(e.to_string()))?;
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| BackendError::Upstash(e.to_string()))?;
                let body: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| BackendError::Upstash(e.to_string()))?;
                body["result"]
                    .as_i64()
                    .ok_or_else(|| BackendError::Upstash(body["error"].to_string()))
            }
        }
    }
}

/// The in-process sliding window: the same arithmetic as the script. Entries are
/// `key → (window expiry ms, count)`; expired ones are swept when the map grows.
fn memory_spend(
    map: &Mutex<HashMap<String, (i64, i64)>>,
    current: &str,
    previous: &str,
    tokens: i64,
    now_ms: i64,
    window_ms: i64,
) -> i64 {
    let mut map = match map.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if map.len() > 100_000 {
        map.retain(|_, (expires, _)| *expires > now_ms);
    }
    let live = |e: Option<&(i64, i64)>| e.filter(|(exp, _)| *exp > now_ms).map_or(0, |(_, n)| *n);
    let cur = live(map.get(current));
    let prev = weighted_previous(live(map.get(previous)), now_ms, window_ms);
    if prev + cur >= tokens {
        return -1;
    }
    let entry = map
        .entry(current.to_owned())
        .or_insert((now_ms + window_ms * 2 + 1000, 0));
    if entry.0 <= now_ms {
        *entry = (now_ms + window_ms * 2 + 1000, 0);
    }
    entry.1 += 1;
    tokens - (entry.1 + prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_window_slides() {
        let map = Mutex::new(HashMap::new());
        let w = 1000;
        // Window 0: 3 of 3 used.
        for left in [2, 1, 0] {
            assert_eq!(memory_spend(&map, "k:0", "k:-1", 3, 100, w), left);
        }
        assert_eq!(memory_spend(&map, "k:0", "k:-1", 3, 900, w), -1);
        // 25% into window 1: the previous 3 weigh floor(0.75*3) = 2, so one more fits.
        assert_eq!(memory_spend(&map, "k:1", "k:0", 3, 1250, w), 0);
        assert_eq!(memory_spend(&map, "k:1", "k:0", 3, 1260, w), -1);
    }
}
