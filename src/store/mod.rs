//! The account store: users' plans, Stripe events and subscriptions, session revocations,
//! push subscriptions and daily usage, in SQLite (embedded default, a file under the data
//! directory) or PostgreSQL (`DATABASE_URL=postgres://…`).
//!
//! Both backends run the same portable SQL through sqlx's `Any` driver (runtime queries with
//! `$1` placeholders, which SQLite accepts too), and the same migrations from `migrations/`,
//! applied on first use (`starpillar migrate` applies them ahead of time). The pool is opened
//! lazily, so building the application state never blocks or fails; a database that is down
//! surfaces as [`StoreError::Unavailable`] (503) on the requests that need it — fast: a
//! PostgreSQL pool waits at most [`PG_ACQUIRE_TIMEOUT`] for a connection, and once the database
//! is found unreachable a circuit breaker ([`breaker`]) answers 503 at once, probing in the
//! background until it answers again.

pub mod billing;
pub mod breaker;
pub mod push;
pub mod sessions;
pub mod usage;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use clap::Args;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::config::{ConfigError, Secret};
use crate::error::ApiError;

pub use usage::{Charge, Quota};

/// The longest a request waits for a PostgreSQL connection (and the first connect) before
/// answering 503; SQLite, a local file behind one connection, waits [`SQLITE_ACQUIRE_TIMEOUT`].
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
pub const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `migrate` (start-up and `starpillar migrate`) keeps trying a database that is
/// slow to accept its first connection (a serverless one waking up, say).
const MIGRATE_PATIENCE: Duration = Duration::from_secs(5);

/// One reversible migration: `migrations/NNNN_name.up.sql` and its `.down.sql`.
struct Step {
    version: i64,
    name: &'static str,
    up: &'static str,
    down: &'static str,
}

/// The migrations, embedded in the binary, oldest first; versions are the file-name prefixes.
/// Every step is reversible (`starpillar migrate --down N`). The up SQL of a released step
/// never changes: sqlx records its checksum, and databases made before the step became
/// reversible (from `0001_accounts.sql`, the same text) keep working.
const MIGRATIONS: &[Step] = &[Step {
    version: 1,
    name: "accounts",
    up: include_str!("../../migrations/0001_accounts.up.sql"),
    down: include_str!("../../migrations/0001_accounts.down.sql"),
}];

/// A migration as `starpillar migrate --status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub name: &'static str,
    pub applied: bool,
}

/// Store flags, flattened into `serve` and `migrate`. (The group id keeps clap from confusing
/// it with the vector store's `retrieval::args::StoreArgs`, also flattened into `serve`.)
#[derive(Debug, Clone, Default, Args)]
#[group(id = "database_args")]
pub struct StoreArgs {
    /// Database: `postgres://user:pass@host/db` for PostgreSQL, or `sqlite://PATH`.
    /// Unset: an embedded SQLite file, `<data dir>/starpillar.db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<Secret>,
}

impl StoreArgs {
    /// The database URL to open: the flag, else the embedded SQLite file under `data_dir`.
    pub fn resolve(&self, data_dir: &Path) -> Result<Secret, ConfigError> {
        let url = match &self.database_url {
            Some(url) if !url.expose().trim().is_empty() => url.expose().trim().to_owned(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("starpillar.db").display()
            ),
        };
        Backend::of(&url)?;
        Ok(Secret::new(url))
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self, ConfigError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(ConfigError::Invalid(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:".into(),
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or the pool is exhausted): 503.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The circuit breaker is open: the database was unreachable moments ago.
    #[error("database unreachable (failing fast for {0:?} more)")]
    CircuitOpen(Duration),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            other => Self::Query(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::unavailable("store_unavailable", "the database is unavailable", 5)
            }
            StoreError::CircuitOpen(left) => ApiError::unavailable(
                "store_unavailable",
                "the database is unavailable",
                left.as_secs().clamp(1, 5),
            ),
            other => ApiError::internal(other),
        }
    }
}

/// The store handle kept in the application state; cheap to share behind `Arc`.
pub struct Store {
    url: Secret,
    backend: Backend,
    pool: tokio::sync::OnceCell<AnyPool>,
    /// PostgreSQL only: open while the database is unreachable.
    breaker: std::sync::Arc<breaker::Breaker>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

static DRIVERS: Once = Once::new();

impl Store {
    /// A store for a URL checked by [`StoreArgs::resolve`]; connects on first use (an
    /// unchecked URL that is not PostgreSQL's is tried as SQLite and fails then).
    pub fn new(url: Secret) -> Self {
        let backend = Backend::of(url.expose()).unwrap_or(Backend::Sqlite);
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        Self {
            url,
            backend,
            pool: tokio::sync::OnceCell::new(),
            breaker: breaker::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the data lives, without credentials (for logs and `/api/lib-health`).
    pub fn describe(&self) -> String {
        let url = self.url.expose();
        match self.backend {
            Backend::Sqlite => url.split('?').next().unwrap_or(url).to_owned(),
            Backend::Postgres => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
                let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
                format!("postgres://{}", host.split('?').next().unwrap_or(host))
            }
        }
    }

    /// The connection pool, opened and migrated on first use. A failed attempt is retried by
    /// a later call; while the circuit breaker is open (PostgreSQL unreachable moments ago),
    /// fails at once with [`StoreError::CircuitOpen`].
    pub async fn pool(&self) -> Result<&AnyPool, StoreError> {
        if let Some(left) = self.breaker.open_for() {
            return Err(StoreError::CircuitOpen(left));
        }
        self.pool.get_or_try_init(|| self.open()).await
    }

    async fn open(&self) -> Result<AnyPool, StoreError> {
        let opened = async {
            let pool = self.connect().await?;
            migrator().run(&pool).await?;
            Ok::<_, StoreError>(pool)
        }
        .await;
        match opened {
            Ok(pool) => {
                tracing::info!(store = %self.describe(), "store open and migrated");
                self.breaker.close();
                if self.backend == Backend::Postgres {
                    let url = self.url.expose().to_owned();
                    breaker::spawn_probe(std::sync::Arc::downgrade(&self.breaker), url);
                }
                Ok(pool)
            }
            Err(err) => {
                if self.backend == Backend::Postgres && matches!(err, StoreError::Unavailable(_)) {
                    self.breaker.trip(&err);
                }
                Err(err)
            }
        }
    }

    /// A new pool, without migrating (the migration commands use their own).
    async fn connect(&self) -> Result<AnyPool, StoreError> {
        let url = self.url.expose();
        let options = match self.backend {
            Backend::Sqlite => {
                if let Some(path) = sqlite_path(url)
                    && let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
                }
                // One connection: SQLite has one writer anyway, and a single connection makes
                // every transaction serialisable without `SQLITE_BUSY` upgrades.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode=WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout=5000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
            }
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(PG_ACQUIRE_TIMEOUT),
        };
        options.connect(url).await.map_err(StoreError::Unavailable)
    }

    /// Apply pending migrations (opening the store if needed), retrying an unreachable
    /// database for up to [`MIGRATE_PATIENCE`] (the breaker does not apply here).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + MIGRATE_PATIENCE;
        loop {
            match self.pool.get_or_try_init(|| self.open()).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Every known migration and whether the database has it.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        let applied = self.applied_versions().await?;
        Ok(MIGRATIONS
            .iter()
            .map(|m| MigrationState {
                version: m.version,
                name: m.name,
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    /// Revert the newest `steps` applied migrations (their `.down.sql`, each in a
    /// transaction); returns the versions reverted, newest first. Reverting more steps than
    /// are applied reverts them all.
    pub async fn migrate_down(&self, steps: usize) -> Result<Vec<i64>, StoreError> {
        let mut applied = self.applied_versions().await?;
        applied.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(unknown) = applied
            .iter()
            .find(|v| !MIGRATIONS.iter().any(|m| m.version == **v))
        {
            return Err(StoreError::Migrate(
                sqlx::migrate::MigrateError::VersionMissing(*unknown),
            ));
        }
        let reverted: Vec<i64> = applied.iter().take(steps).copied().collect();
        let target = applied.get(steps).copied().unwrap_or(0);
        if !reverted.is_empty() {
            let pool = self.connect().await?;
            migrator().undo(&pool, target).await?;
            pool.close().await;
            tracing::info!(store = %self.describe(), ?reverted, "migrations reverted");
        }
        Ok(reverted)
    }

    /// Versions recorded in sqlx's ledger (`_sqlx_migrations`), created empty if missing.
    async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        use sqlx::migrate::Migrate;
        let pool = self.connect().await?;
        let mut conn = pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        let applied = conn.list_applied_migrations().await?;
        drop(conn);
        pool.close().await;
        Ok(applied.into_iter().map(|m| m.version).collect())
    }

    /// Round-trip a trivial query; the latency on success.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        let pool = self.pool().await?;
        sqlx::query("SELECT 1").execute(pool).await?;
        Ok(start.elapsed())
    }
}

/// The embedded migrations as a sqlx migrator: each step as a reversible up/down pair.
fn migrator() -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .flat_map(|m| {
            [
                (MigrationType::ReversibleUp, m.up),
                (MigrationType::ReversibleDown, m.down),
            ]
            .map(|(kind, sql)| {
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.name),
                    kind,
                    Cow::Borrowed(sql),
                    false,
                )
            })
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// The file path of a `sqlite://PATH?…` URL (None for in-memory databases).
fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_is_sqlite_under_the_data_dir() {
        let url = StoreArgs::default().resolve(Path::new("/tmp/x")).unwrap();
        assert_eq!(url.expose(), "sqlite:///tmp/x/starpillar.db?mode=rwc");
        assert_eq!(
            sqlite_path(url.expose()),
            Some(Path::new("/tmp/x/starpillar.db"))
        );
    }

    #[test]
    fn postgres_description_hides_the_password() {
        let store = Store::new(Secret::new(
            "postgres://u:hunter2@db:5432/sp?sslmode=require",
        ));
        assert_eq!(store.describe(), "postgres://db:5432/sp");
        assert!(Backend::of("mysql://x").is_err());
    }
}
