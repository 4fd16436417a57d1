//! Reversible migrations on SQLite and PostgreSQL (`DATABASE_URL_TEST`): a database made by
//! the previous binary (the same `0001` SQL as a plain migration) keeps working; `--down N`
//! drops what the step created and empties its ledger row; `--up` brings it back; and the
//! `starpillar migrate` command line does the same.

use std::borrow::Cow;
use std::process::Command;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use starpillar::config::Secret;
use starpillar::store::Store;

use crate::common::tempdir::TempDir;
use crate::store::backends;

const UP_0001: &str = include_str!("../../migrations/0001_accounts.up.sql");

/// Migrate the way the binary did before migrations were reversible.
async fn legacy_migrate(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let legacy = Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            1,
            Cow::Borrowed("accounts"),
            MigrationType::Simple,
            Cow::Borrowed(UP_0001),
            false,
        )]),
        ..Migrator::DEFAULT
    };
    legacy.run(&pool).await.expect("legacy migration");
    pool.close().await;
}

/// Rows in `users`, or None when the table does not exist.
async fn users(url: &str) -> Option<i64> {
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let n = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .ok();
    pool.close().await;
    n
}

fn cli(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_starpillar"))
        .args(["migrate", "--database-url", url])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run starpillar migrate");
    assert!(
        out.status.success(),
        "migrate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn migrations_go_down_and_up_again_and_old_databases_keep_working() {
    for db in backends().await {
        let dir = TempDir::new();
        let url = db
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()));
        legacy_migrate(&url).await;
        let store = Store::new(Secret::new(url.clone()));
        store.migrate().await.expect("an old database opens");
        let pool = store.pool().await.expect("pool");
        sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ('u1', 1, 1)")
            .execute(pool)
            .await
            .expect("insert");
        let status = store.migration_status().await.expect("status");
        assert!(status.iter().all(|m| m.applied), "{status:?}");
        assert_eq!(users(&url).await, Some(1));

        assert_eq!(store.migrate_down(1).await.expect("down"), vec![1]);
        assert_eq!(users(&url).await, None, "{url}: users dropped");
        let status = Store::new(Secret::new(url.clone()))
            .migration_status()
            .await
            .expect("status");
        assert!(status.iter().all(|m| !m.applied), "{status:?}");
        assert!(store.migrate_down(3).await.expect("down").is_empty());

        let fresh = Store::new(Secret::new(url.clone()));
        fresh.migrate().await.expect("up again");
        assert_eq!(users(&url).await, Some(0));

        // The command line: status, down, status, up.
        assert!(cli(&url, &["--status"]).contains("applied"));
        assert!(cli(&url, &["--down", "1"]).contains("reverted migration(s) 1"));
        let listed = cli(&url, &["--status"]);
        assert!(
            listed.contains("pending") && !listed.contains("applied"),
            "{listed}"
        );
        assert_eq!(users(&url).await, None);
        assert!(cli(&url, &["--down", "1"]).contains("nothing to revert"));
        assert!(cli(&url, &["--up"]).contains("migrations applied"));
        assert_eq!(users(&url).await, Some(0));
    }
}
