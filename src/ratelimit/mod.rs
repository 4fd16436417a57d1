//! Rate limits per caller (user id, else IP) and route class, answered with `429`,
//! `Retry-After` and `RateLimit-Limit/Remaining/Reset` headers.
//!
//! The algorithm is `@upstash/ratelimit`'s sliding window: a counter per fixed window under
//! `<prefix>:<identifier>:<window index>` (prefix `@upstash/ratelimit`, identifier
//! `<class>:<user:ID|ip:ADDR>`), and the previous window's count weighted by how much of it
//! still overlaps the sliding window. In-process by default; with `REDIS_URL` (or
//! `UPSTASH_REDIS_REST_URL` + token) the counters live in Redis under the very keys the
//! Next.js app's `Ratelimit.slidingWindow` uses, so both count against one budget. When Redis
//! is unreachable the limiter fails open: the request passes, a metric counts it, and a
//! warning is logged at most once a minute.

mod backend;
pub mod middleware;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use clap::Args;
use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::config::{ConfigError, Secret};

pub use middleware::limit;

/// `@upstash/ratelimit`'s default key prefix.
pub const DEFAULT_PREFIX: &str = "@upstash/ratelimit";

/// Rate-limit flags, flattened into `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct RateLimitArgs {
    /// Redis shared with the Next.js app (`redis://…` or `rediss://…`); unset: in-process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis_url: Option<Secret>,
    /// Upstash Redis REST endpoint (used when REDIS_URL is unset).
    #[arg(long, env = "UPSTASH_REDIS_REST_URL", value_name = "URL")]
    pub upstash_redis_rest_url: Option<String>,
    /// Upstash Redis REST token.
    #[arg(
        long,
        env = "UPSTASH_REDIS_REST_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub upstash_redis_rest_token: Option<Secret>,
    /// Limits per route class, `class=REQUESTS/SECONDS`, comma-separated (classes: ai,
    /// account, default). Defaults: ai=30/60, account=20/60, default=300/60.
    #[arg(
        long,
        env = "STARPILLAR_RATE_LIMITS",
        value_delimiter = ',',
        value_name = "CLASS=N/SECS"
    )]
    pub rate_limits: Vec<String>,
    /// Key prefix in Redis (the Next.js app's `Ratelimit({ prefix })`).
    #[arg(long, env = "STARPILLAR_RATELIMIT_PREFIX", default_value = DEFAULT_PREFIX)]
    pub ratelimit_prefix: String,
}

/// Where the counters live.
#[derive(Debug, Clone, Default)]
pub enum BackendConfig {
    #[default]
    Memory,
    Redis(Secret),
    Upstash {
        url: String,
        token: Secret,
    },
}

/// One class's budget: `tokens` requests per sliding `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub tokens: i64,
    pub window_ms: i64,
}

/// Validated rate-limit settings.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub backend: BackendConfig,
    pub limits: BTreeMap<String, Limit>,
    pub prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::from_args(&RateLimitArgs::default()).unwrap_or_else(|_| unreachable!("defaults"))
    }
}

/// The route classes.
pub const CLASSES: &[&str] = &["ai", "account", "default"];

impl RateLimitConfig {
    /// No limits at all (the test configuration; tests that exercise limits set their own).
    pub fn unlimited() -> Self {
        Self {
            backend: BackendConfig::Memory,
            limits: BTreeMap::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    pub fn from_args(args: &RateLimitArgs) -> Result<Self, ConfigError> {
        let mut limits = BTreeMap::new();
        for (class, tokens) in [("ai", 30), ("account", 20), ("default", 300)] {
            limits.insert(
                class.to_owned(),
                Limit {
                    tokens,
                    window_ms: 60_000,
                },
            );
        }
        for entry in args.rate_limits.iter().filter(|e| !e.trim().is_empty()) {
            let parsed = entry.split_once('=').and_then(|(class, spec)| {
                let (n, secs) = spec.split_once('/')?;
                let tokens: i64 = n.trim().parse().ok()?;
                let secs: i64 = secs.trim().parse().ok()?;
                (tokens >= 0 && secs > 0).then(|| (class.trim().to_owned(), tokens, secs))
            });
            let Some((class, tokens, secs)) =
                parsed.filter(|(c, _, _)| CLASSES.contains(&c.as_str()))
            else {
                return Err(ConfigError::Invalid(format!(
                    "rate limit {entry:?}: expected CLASS=REQUESTS/SECONDS with CLASS one of {CLASSES:?}"
                )));
            };
            limits.insert(
                class,
                Limit {
                    tokens,
                    window_ms: secs * 1000,
                },
            );
        }
        let backend = match (
            &args.redis_url,
            &args.upstash_redis_rest_url,
            &args.upstash_redis_rest_token,
        ) {
            (Some(url), _, _) if !url.is_empty() => BackendConfig::Redis(url.clone()),
            (_, Some(url), Some(token)) if !url.is_empty() && !token.is_empty() => {
                BackendConfig::Upstash {
                    url: url.trim_end_matches('/').to_owned(),
                    token: token.clone(),
                }
            }
            _ => BackendConfig::Memory,
        };
        let prefix = match args.ratelimit_prefix.trim() {
            "" => DEFAULT_PREFIX.to_owned(),
            p => p.to_owned(),
        };
        Ok(Self {
            backend,
            limits,
            prefix,
        })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: i64,
    pub remaining: i64,
    /// When the current fixed window ends, Unix milliseconds.
    pub reset_ms: i64,
}

/// The limiter: configuration, backend, metrics.
pub struct RateLimiter {
    pub config: RateLimitConfig,
    backend: backend::Backend,
    /// `starpillar_rate_limited_total{class}`.
    pub limited_total: IntCounterVec,
    /// `starpillar_ratelimit_backend_errors_total`.
    pub backend_errors_total: IntCounter,
    last_warning_ms: AtomicI64,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        let limited_total = IntCounterVec::new(
            Opts::new(
                "starpillar_rate_limited_total",
                "Requests refused with 429, by route class.",
            ),
            &["class"],
        )
        .unwrap_or_else(|_| unreachable!("static metric definition"));
        let backend_errors_total = IntCounter::new(
            "starpillar_ratelimit_backend_errors_total",
            "Rate-limit checks that could not reach Redis and failed open.",
        )
        .unwrap_or_else(|_| unreachable!("static metric definition"));
        Self {
            backend: backend::Backend::new(&config.backend),
            config,
            limited_total,
            backend_errors_total,
            last_warning_ms: AtomicI64::new(i64::MIN / 2),
        }
    }

    /// The metrics to register.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.limited_total.clone()),
            Box::new(self.backend_errors_total.clone()),
        ]
    }

    /// The Redis key of `identifier`'s counter for window `index`.
    pub fn key(&self, identifier: &str, index: i64) -> String {
        format!("{}:{identifier}:{index}", self.config.prefix)
    }

    /// Count one request of `identifier` in `class` at `now_ms`; `None` when the class is
    /// unknown (no limit).
    pub async fn check(&self, class: &str, identifier: &str, now_ms: i64) -> Option<Decision> {
        let limit = *self.config.limits.get(class)?;
        let window = limit.window_ms.max(1);
        let index = now_ms.div_euclid(window);
        let current = self.key(identifier, index);
        let previous = self.key(identifier, index - 1);
        let reset_ms = (index + 1) * window;
        match self
            .backend
            .spend(&current, &previous, limit.tokens, now_ms, window)
            .await
        {
            Ok(remaining) => Some(Decision {
                allowed: remaining >= 0,
                limit: limit.tokens,
                remaining: remaining.max(0),
                reset_ms,
            }),
            Err(err) => {
                self.backend_errors_total.inc();
                let last = self.last_warning_ms.load(Ordering::Relaxed);
                if now_ms - last >= 60_000
                    && self
                        .last_warning_ms
                        .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(error = %err, "rate-limit backend unreachable; failing open");
                }
                Some(Decision {
                    allowed: true,
                    limit: limit.tokens,
                    remaining: limit.tokens,
                    reset_ms,
                })
            }
        }
    }
}

/// The sliding-window arithmetic shared by the in-process backend and the Lua script:
/// `previous` weighted by the part of the previous window still inside the sliding window.
pub fn weighted_previous(previous: i64, now_ms: i64, window_ms: i64) -> i64 {
    let into = now_ms.rem_euclid(window_ms) as f64 / window_ms as f64;
    ((1.0 - into) * previous as f64).floor() as i64
}
