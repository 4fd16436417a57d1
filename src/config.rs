//! Settings of `starpillar serve`: every flag has a long name and an environment variable;
//! secrets are redacted whenever the configuration is printed or logged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

/// The directory for everything the binary keeps when `--data-dir` is not given:
/// `$XDG_DATA_HOME/starpillar` (usually `~/.local/share/starpillar`), else `./.starpillar`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .map(|d| d.join("starpillar"))
        .unwrap_or_else(|| PathBuf::from(".starpillar"))
}

/// Options shared by every subcommand that keeps files.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Directory for everything starpillar keeps (models, index, database, cache).
    /// Default: `$XDG_DATA_HOME/starpillar` (usually `~/.local/share/starpillar`).
    #[arg(long, env = "STARPILLAR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    pub fn resolve(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

/// `starpillar serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "STARPILLAR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub data: DataDirArgs,

    #[command(flatten)]
    pub engine: crate::engine::EngineArgs,

    /// Origins allowed to call the API from a browser, comma-separated
    /// (e.g. `https://app.example.com,http://localhost:3000`). Unset: any origin, without
    /// credentials; set: exactly these origins, with credentials (cookies).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Seconds a request may take before its response starts (503 after that). Streaming
    /// bodies are not cut by this limit.
    #[arg(long, env = "STARPILLAR_REQUEST_TIMEOUT", default_value_t = 60)]
    pub request_timeout_secs: u64,

    /// Largest accepted request body in bytes (413 above it).
    #[arg(long, env = "STARPILLAR_BODY_LIMIT", default_value_t = 1 << 20)]
    pub body_limit_bytes: usize,

    /// Requests handled at once; more are shed with 503 + `Retry-After`.
    #[arg(long, env = "STARPILLAR_MAX_CONCURRENCY", default_value_t = 256)]
    pub max_concurrency: usize,

    /// Seconds to let in-flight requests and streams finish after SIGINT/SIGTERM.
    #[arg(long, env = "STARPILLAR_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    #[command(flatten)]
    pub store: crate::store::StoreArgs,

    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,

    #[command(flatten)]
    pub billing: crate::billing::BillingArgs,

    #[command(flatten)]
    pub ratelimit: crate::ratelimit::RateLimitArgs,

    #[command(flatten)]
    pub push: crate::push::PushArgs,

    #[command(flatten)]
    pub cache: crate::cache::CacheArgs,

    #[command(flatten)]
    pub retrieval: crate::retrieval::args::ServeRetrievalArgs,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data: DataDirArgs { data_dir: None },
            engine: crate::engine::EngineArgs::default(),
            cors_origins: Vec::new(),
            request_timeout_secs: 60,
            body_limit_bytes: 1 << 20,
            max_concurrency: 256,
            shutdown_grace_secs: 30,
            store: Default::default(),
            auth: Default::default(),
            billing: Default::default(),
            ratelimit: Default::default(),
            push: Default::default(),
            cache: Default::default(),
            retrieval: Default::default(),
        }
    }
}

/// The validated server configuration handed to [`crate::state::AppState`].
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub max_concurrency: usize,
    pub shutdown_grace: Duration,
    /// The database (`DATABASE_URL`, else SQLite under the data directory).
    pub database_url: Secret,
    /// Session secrets and which routes need a session.
    pub auth: crate::auth::AuthConfig,
    /// Stripe, the price whitelist and the plan table.
    pub billing: crate::billing::BillingConfig,
    /// Rate limits per route class and where the counters live.
    pub ratelimit: crate::ratelimit::RateLimitConfig,
    /// Web Push (VAPID keys), when enabled.
    pub push: crate::push::PushConfig,
    /// Inference engine options (models, device, threads).
    pub engine: crate::engine::EngineArgs,
    /// The reading cache (TTL, byte budget, Redis) and the admin token.
    pub cache: crate::cache::CacheConfig,
    /// The vector store, the corpus to index at start, and whether to.
    pub retrieval: crate::retrieval::args::ServeRetrievalArgs,
}

impl ServeConfig {
    /// Validate raw flags into a configuration.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        if args.max_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "--max-concurrency must be at least 1".into(),
            ));
        }
        for origin in &args.cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "CORS origin {origin:?} must start with http:// or https://"
                )));
            }
        }
        Ok(Self {
            listen: args.listen,
            data_dir: args.data.resolve(),
            engine: args.engine.clone(),
            cors_origins: args
                .cors_origins
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            body_limit_bytes: args.body_limit_bytes,
            max_concurrency: args.max_concurrency,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            database_url: args.store.resolve(&args.data.resolve())?,
            auth: crate::auth::AuthConfig::from_args(&args.auth),
            billing: crate::billing::BillingConfig::from_args(&args.billing, std::env::vars())?,
            ratelimit: crate::ratelimit::RateLimitConfig::from_args(&args.ratelimit)?,
            push: crate::push::PushConfig::from_args(&args.push)?,
            cache: crate::cache::CacheConfig::from_args(
                &args.cache,
                args.ratelimit.redis_url.as_ref(),
            ),
            retrieval: {
                let spec = args.retrieval.store.spec(&args.data.resolve());
                spec.map_err(|e| ConfigError::Invalid(format!("--store: {e}")))?;
                args.retrieval.clone()
            },
        })
    }

    /// A configuration for tests: defaults, with the data directory given.
    pub fn for_tests(data_dir: &Path) -> Self {
        let mut cfg = Self::from_args(&ServeArgs::default()).expect("defaults are valid");
        cfg.data_dir = data_dir.to_path_buf();
        cfg.database_url = crate::store::StoreArgs::default()
            .resolve(data_dir)
            .expect("the default database URL is valid");
        cfg.ratelimit = crate::ratelimit::RateLimitConfig::unlimited();
        cfg
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A secret value that never prints: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[empty]"
        } else {
            "[redacted]"
        })
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("whsec_abc");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "whsec_abc");
    }

    #[test]
    fn bad_cors_origin_is_rejected() {
        let args = ServeArgs {
            cors_origins: vec!["example.com".into()],
            ..ServeArgs::default()
        };
        assert!(ServeConfig::from_args(&args).is_err());
    }
}
