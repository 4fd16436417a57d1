//! The store against both backends: the embedded SQLite file, and a real PostgreSQL server
//! when `DATABASE_URL_TEST` is set (scripts/services.sh starts one and exports it; each test
//! gets a fresh database there). Also the helpers the auth/billing tests use to build an app
//! over either backend.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use sqlx::Connection;
use starpillar::config::{Secret, ServeConfig};
use starpillar::state::{AppState, SharedState};
use starpillar::store::billing::{
    BillingEffect, BillingTable, EventOutcome, StripeEventRecord, SubscriptionChange,
};
use starpillar::store::{Charge, Store};

use crate::common::{get_json, tempdir::TempDir};

/// One backend to run a test against: `None` = embedded SQLite, `Some(url)` = PostgreSQL.
pub type Db = Option<String>;

/// SQLite always; PostgreSQL too when `DATABASE_URL_TEST` names a server (a fresh database
/// per call, so tests never see each other's rows).
pub async fn backends() -> Vec<Db> {
    let mut out = vec![None];
    match std::env::var("DATABASE_URL_TEST") {
        Ok(admin) if !admin.is_empty() => out.push(Some(fresh_postgres(&admin).await)),
        _ => eprintln!(
            "DATABASE_URL_TEST unset: PostgreSQL half skipped (source scripts/services.sh)"
        ),
    }
    out
}

async fn fresh_postgres(admin: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("sp_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("DATABASE_URL_TEST={admin} unreachable: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

/// State over `db` with the test defaults, after `tweak` adjusted the configuration.
pub fn state_with(dir: &Path, db: &Db, tweak: impl FnOnce(&mut ServeConfig)) -> SharedState {
    let mut cfg = ServeConfig::for_tests(dir);
    if let Some(url) = db {
        cfg.database_url = Secret::new(url.clone());
    }
    tweak(&mut cfg);
    Arc::new(AppState::new(cfg))
}

/// The application over `db`.
pub fn app_with(
    dir: &Path,
    db: &Db,
    tweak: impl FnOnce(&mut ServeConfig),
) -> (Router, SharedState) {
    let state = state_with(dir, db, tweak);
    (starpillar::api::app(state.clone()), state)
}

fn label(db: &Db) -> &'static str {
    if db.is_some() { "postgres" } else { "sqlite" }
}

#[tokio::test]
async fn db_ping_answers_with_latency_on_each_backend() {
    for db in backends().await {
        let dir = TempDir::new();
        let (app, state) = app_with(dir.path(), &db, |_| {});
        let (status, body) = get_json(&app, "/api/db-ping").await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", label(&db));
        assert_eq!(body["backend"], label(&db));
        assert!(
            body["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{body}"
        );
        // Migrations are idempotent: a second store on the same database applies nothing new.
        let again = Store::new(state.config.database_url.clone());
        again.migrate().await.expect("second migration run");
        if db.is_none() {
            assert!(
                dir.path().join("starpillar.db").exists(),
                "default SQLite file"
            );
        }
    }
}

#[tokio::test]
async fn db_ping_is_503_when_the_database_is_down() {
    let dir = TempDir::new();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let db = Some("postgres://nobody@127.0.0.1:1/none".to_owned());
    let (app, _) = app_with(dir.path(), &db, |_| {});
    let response = crate::common::send(
        &app,
        axum::http::Request::get("/api/db-ping")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body = crate::common::body_json(response).await;
    assert_eq!(crate::common::error_code(&body), "store_unavailable");
}

#[tokio::test]
async fn charges_never_exceed_the_limit_under_concurrency() {
    for db in backends().await {
        let dir = TempDir::new();
        let state = state_with(dir.path(), &db, |_| {});
        let quota = state
            .store
            .quota("user:racer", "free", 3)
            .await
            .expect("quota");
        assert_eq!((quota.used, quota.remaining()), (0, 3));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let state = state.clone();
                let quota = quota.clone();
                tokio::spawn(async move { state.store.charge(&quota).await })
            })
            .collect();
        let mut charged = 0;
        for task in tasks {
            if let Charge::Charged { .. } = task.await.expect("join").expect("charge") {
                charged += 1;
            }
        }
        assert_eq!(charged, 3, "{}", label(&db));
        let after = state
            .store
            .quota("user:racer", "free", 3)
            .await
            .expect("quota");
        assert_eq!((after.used, after.exhausted()), (3, true), "{}", label(&db));
        let zero = state
            .store
            .quota("ip:1.2.3.4", "none", 0)
            .await
            .expect("quota");
        assert_eq!(
            state.store.charge(&zero).await.expect("charge"),
            Charge::Exhausted
        );
    }
}

#[tokio::test]
async fn revocations_by_jti_and_by_cutoff() {
    for db in backends().await {
        let dir = TempDir::new();
        let state = state_with(dir.path(), &db, |_| {});
        let s = &state.store;
        assert!(!s.is_revoked("u1", Some("j1"), Some(100)).await.expect("q"));
        s.revoke_token("j1", "u1", i64::MAX / 2)
            .await
            .expect("revoke");
        assert!(s.is_revoked("u1", Some("j1"), Some(100)).await.expect("q"));
        assert!(!s.is_revoked("u1", Some("j2"), Some(100)).await.expect("q"));
        s.revoke_user("u1", 1000).await.expect("revoke all");
        assert!(s.is_revoked("u1", Some("j2"), Some(1000)).await.expect("q"));
        assert!(!s.is_revoked("u1", Some("j3"), Some(1001)).await.expect("q"));
        // The cut-off never moves back.
        s.revoke_user("u1", 10).await.expect("revoke all");
        assert!(s.is_revoked("u1", Some("j4"), Some(500)).await.expect("q"));
        assert!(
            !s.is_revoked("u2", None, Some(5)).await.expect("q"),
            "{}",
            label(&db)
        );
    }
}

fn sub_event(
    id: &str,
    created: i64,
    status: &str,
    rank: i64,
) -> (StripeEventRecord, BillingEffect) {
    (
        StripeEventRecord {
            id: id.to_owned(),
            event_type: "customer.subscription.updated".into(),
            created,
        },
        BillingEffect::Subscription(SubscriptionChange {
            id: "sub_1".into(),
            user_id: (rank == 1).then(|| "u1".to_owned()),
            customer_id: Some("cus_1".into()),
            plan: Some("premium".into()),
            price_id: Some("price_p".into()),
            status: status.to_owned(),
            current_period_end: Some(created + 1000),
            rank,
        }),
    )
}

#[tokio::test]
async fn subscription_events_dedupe_and_converge_in_any_order() {
    let events = [
        sub_event("evt_a", 100, "incomplete", 1),
        sub_event("evt_b", 200, "active", 2),
        sub_event("evt_c", 300, "past_due", 2),
        sub_event("evt_d", 300, "canceled", 3),
    ];
    // Every permutation of 4 events (24) ends in the state of the newest one.
    let mut orders = vec![vec![0usize, 1, 2, 3]];
    while let Some(next) = next_permutation(orders.last().expect("one")) {
        orders.push(next);
    }
    assert_eq!(orders.len(), 24);
    for db in backends().await {
        let dir = TempDir::new();
        let state = state_with(dir.path(), &db, |_| {});
        for (round, order) in orders.iter().enumerate() {
            let sub = format!("sub_{round}");
            for &i in order {
                let (mut ev, mut effect) = events[i].clone();
                ev.id = format!("{}_{round}", ev.id);
                if let BillingEffect::Subscription(s) = &mut effect {
                    s.id = sub.clone();
                }
                let outcome = state
                    .store
                    .apply_stripe_event(&ev, &effect)
                    .await
                    .expect("apply");
                assert_eq!(outcome, EventOutcome::Applied);
                // A redelivery is a no-op.
                let again = state
                    .store
                    .apply_stripe_event(&ev, &effect)
                    .await
                    .expect("apply");
                assert_eq!(again, EventOutcome::Duplicate);
            }
            let row = state
                .store
                .subscription(&sub)
                .await
                .expect("row")
                .expect("exists");
            assert_eq!(row.0.as_deref(), Some("u1"), "{} {order:?}", label(&db));
            assert_eq!(row.2, "canceled", "{} {order:?}", label(&db));
            assert_eq!(row.3, Some(1300));
        }
        assert_eq!(
            state
                .store
                .count(BillingTable::StripeEvents)
                .await
                .expect("n"),
            96
        );
        assert_eq!(
            state
                .store
                .count(BillingTable::Subscriptions)
                .await
                .expect("n"),
            24
        );
        assert!(
            state.store.holdings("u1").await.expect("h").is_empty(),
            "all canceled"
        );
    }
}

fn next_permutation(p: &[usize]) -> Option<Vec<usize>> {
    let mut v = p.to_vec();
    let i = (0..v.len().saturating_sub(1))
        .rev()
        .find(|&i| v[i] < v[i + 1])?;
    let j = (i + 1..v.len()).rev().find(|&j| v[j] > v[i])?;
    v.swap(i, j);
    v[i + 1..].reverse();
    Some(v)
}
