//! The reading cache: exact keys, hits and misses, single-flight (N concurrent lookups → one
//! leader; a dropped leader hands over), TTL, the byte budget, purges by tag, `--cache-ttl 0`;
//! the same against a real Redis (`REDIS_URL_TEST`, from scripts/services.sh) shared by two
//! instances; the fallback to memory when Redis is down; the admin purge route and the
//! `starpillar cache purge` command.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use starpillar::cache::{
    CacheConfig, CacheKey, Entry, KeyParts, Lookup, Purge, ResponseCache, redis::RedisStore,
};
use starpillar::config::Secret;

use crate::common::{body_json, error_code, send, tempdir::TempDir};

fn key(n: u32, route: &str) -> CacheKey {
    let chart = json!({ "pillars": { "day": "甲子" }, "n": n });
    CacheKey::new(&KeyParts {
        route,
        chart: &chart,
        question: "올해 직업운은?",
        locale: "ko",
        options: &json!({ "mode": "compose" }),
        model: "compose",
        model_hash: "-",
        prompt_version: "p1",
        corpus_version: "c1",
    })
}

fn entry(text: &str, route: &str, prompt: &str, corpus: &str) -> Entry {
    Entry {
        body: json!({ "reading": { "text": text }, "meta": {} })
            .to_string()
            .into_bytes(),
        route: route.into(),
        prompt_version: prompt.into(),
        corpus_version: corpus.into(),
    }
}

fn memory(ttl: Duration, max_bytes: u64) -> ResponseCache {
    ResponseCache::new(CacheConfig {
        ttl,
        max_bytes,
        flight_wait: Duration::from_secs(10),
        ..CacheConfig::default()
    })
}

async fn fill(cache: &ResponseCache, key: &CacheKey, e: Entry) {
    match cache.lookup(key).await {
        Lookup::Miss(flight) => flight.complete(e).await,
        Lookup::Hit(_) => panic!("expected a miss for {key}"),
    }
}

async fn expect_hit(cache: &ResponseCache, key: &CacheKey) -> Arc<Entry> {
    match cache.lookup(key).await {
        Lookup::Hit(e) => e,
        Lookup::Miss(_) => panic!("expected a hit for {key}"),
    }
}

async fn expect_miss(cache: &ResponseCache, key: &CacheKey) {
    if let Lookup::Hit(_) = cache.lookup(key).await {
        panic!("expected a miss for {key}");
    }
}

#[tokio::test]
async fn miss_complete_hit_and_exact_keys() {
    let cache = memory(Duration::from_secs(60), 1 << 20);
    let k = key(1, "/api/saju");
    fill(&cache, &k, entry("첫 풀이", "/api/saju", "p1", "c1")).await;
    let hit = expect_hit(&cache, &k).await;
    assert_eq!(hit.body, entry("첫 풀이", "/api/saju", "p1", "c1").body);
    // Another chart, another route: misses (computed separately).
    expect_miss(&cache, &key(2, "/api/saju")).await;
    expect_miss(&cache, &key(1, "/api/astrology")).await;
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 3, 1), "{s:?}");
}

#[tokio::test]
async fn concurrent_lookups_elect_one_leader() {
    let cache = Arc::new(memory(Duration::from_secs(60), 1 << 20));
    let k = key(7, "/api/saju");
    let n = 16;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let computed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (cache, barrier, computed) = (cache.clone(), barrier.clone(), computed.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            match cache.lookup(&k).await {
                Lookup::Hit(e) => e.body.clone(),
                Lookup::Miss(flight) => {
                    computed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Long enough for every other lookup to queue behind this one.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let e = entry(&format!("leader {i}"), "/api/saju", "p1", "c1");
                    let body = e.body.clone();
                    flight.complete(e).await;
                    body
                }
            }
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.expect("task"));
    }
    assert_eq!(computed.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "everyone got the leader's reading"
    );
    let s = cache.stats();
    assert_eq!(
        (s.misses, s.hits, s.coalesced),
        (1, n as u64 - 1, n as u64 - 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_dropped_leader_hands_over_to_a_waiter() {
    let cache = Arc::new(memory(Duration::from_secs(60), 1 << 20));
    let k = key(8, "/api/saju");
    let Lookup::Miss(first) = cache.lookup(&k).await else {
        panic!("first lookup leads")
    };
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                match cache.lookup(&k).await {
                    Lookup::Hit(e) => (false, e.body.clone()),
                    Lookup::Miss(flight) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let e = entry("second leader", "/api/saju", "p1", "c1");
                        let body = e.body.clone();
                        flight.complete(e).await;
                        (true, body)
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(first); // e.g. generation failed: nothing stored, the waiters retry
    let mut leaders = 0;
    for w in waiters {
        let (led, body) = w.await.expect("task");
        leaders += usize::from(led);
        assert_eq!(body, entry("second leader", "/api/saju", "p1", "c1").body);
    }
    assert_eq!(leaders, 1, "exactly one waiter took over");
}

#[tokio::test]
async fn a_waiter_stops_waiting_after_the_flight_wait() {
    let cache = ResponseCache::new(CacheConfig {
        flight_wait: Duration::from_millis(200),
        ..CacheConfig::default()
    });
    let k = key(9, "/api/ask");
    let Lookup::Miss(_leader) = cache.lookup(&k).await else {
        panic!("first lookup leads")
    };
    let start = std::time::Instant::now();
    let Lookup::Miss(own) = cache.lookup(&k).await else {
        panic!("nothing was stored")
    };
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(!own.is_leader());
    own.complete(entry("own", "/api/ask", "p1", "c1")).await;
    assert_eq!(
        expect_hit(&cache, &k).await.body,
        entry("own", "/api/ask", "p1", "c1").body
    );
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let cache = memory(Duration::from_millis(300), 1 << 20);
    let k = key(10, "/api/saju");
    fill(&cache, &k, entry("t", "/api/saju", "p1", "c1")).await;
    expect_hit(&cache, &k).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_miss(&cache, &k).await;
    let s = cache.stats();
    assert_eq!((s.evicted_expired, s.entries, s.bytes), (1, 0, 0), "{s:?}");
}

#[tokio::test]
async fn the_byte_budget_evicts_the_least_recently_used() {
    let one = starpillar::cache::entry_size(&entry("x", "/api/saju", "p1", "c1"));
    let cache = memory(Duration::from_secs(60), one * 3);
    let keys: Vec<_> = (0..5).map(|i| key(100 + i, "/api/saju")).collect();
    for k in &keys[..3] {
        fill(&cache, k, entry("x", "/api/saju", "p1", "c1")).await;
    }
    expect_hit(&cache, &keys[0]).await; // now keys[1] is the coldest
    for k in &keys[3..] {
        fill(&cache, k, entry("x", "/api/saju", "p1", "c1")).await;
    }
    let s = cache.stats();
    assert_eq!((s.evicted_size, s.entries), (2, 3), "{s:?}");
    assert!(s.bytes <= one * 3);
    expect_hit(&cache, &keys[0]).await;
    expect_hit(&cache, &keys[4]).await;
    expect_miss(&cache, &keys[1]).await;
}

#[tokio::test]
async fn ttl_zero_disables_the_cache() {
    let cache = memory(Duration::ZERO, 1 << 20);
    assert!(!cache.is_enabled());
    let k = key(11, "/api/saju");
    fill(&cache, &k, entry("x", "/api/saju", "p1", "c1")).await;
    expect_miss(&cache, &k).await;
    assert_eq!(cache.stats().entries, 0);
}

/// Fill three routes × two prompt versions × two corpus versions; return the keys.
async fn fill_matrix(cache: &ResponseCache, salt: u32) -> Vec<(CacheKey, Entry)> {
    let mut out = Vec::new();
    let mut n = salt;
    for route in ["/api/saju", "/api/astrology", "/api/ask"] {
        for prompt in ["p1", "p2"] {
            for corpus in ["c1", "c2"] {
                n += 1;
                let k = key(n, route);
                let e = entry("r", route, prompt, corpus);
                fill(cache, &k, e.clone()).await;
                out.push((k, e));
            }
        }
    }
    out
}

/// Purge in steps and check exactly the selected entries vanished.
async fn check_purges(cache: &ResponseCache, others: &[&ResponseCache], salt: u32) {
    let all = fill_matrix(cache, salt).await;
    let steps = [
        (Purge::Route("/api/astrology".into()), 4),
        (Purge::PromptVersion("p2".into()), 4), // 2 of them were astrology
        (Purge::CorpusVersion("c1".into()), 2),
        (Purge::All, 2),
    ];
    let mut gone: Vec<&Purge> = Vec::new();
    for (purge, expected) in &steps {
        let n = cache.purge(purge).await.expect("purge");
        assert_eq!(n, *expected, "{purge:?}");
        gone.push(purge);
        for (k, e) in &all {
            let alive = !gone.iter().any(|p| p.selects(e));
            for c in std::iter::once(cache).chain(others.iter().copied()) {
                let hit = matches!(c.lookup(k).await, Lookup::Hit(_));
                assert_eq!(hit, alive, "after {purge:?}: {e:?}");
            }
        }
    }
}

#[tokio::test]
async fn purges_remove_exactly_their_tag_in_memory() {
    let cache = memory(Duration::from_secs(60), 1 << 20);
    check_purges(&cache, &[], 1000).await;
    assert_eq!(cache.stats().purges, 4);
}

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL_TEST") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "REDIS_URL_TEST unset: Redis cache tests skipped (source scripts/services.sh)"
            );
            None
        }
    }
}

fn redis_cache(url: &str, prefix: &str, ttl: Duration) -> ResponseCache {
    ResponseCache::new(CacheConfig {
        ttl,
        redis_url: Some(Secret::new(url)),
        prefix: prefix.into(),
        flight_wait: Duration::from_secs(10),
        ..CacheConfig::default()
    })
}

fn test_prefix() -> String {
    format!("starpillar:test:{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn redis_entries_are_shared_and_purged_across_instances() {
    let Some(url) = redis_url() else { return };
    let prefix = test_prefix();
    let a = redis_cache(&url, &prefix, Duration::from_secs(60));
    let b = redis_cache(&url, &prefix, Duration::from_secs(60));
    let k = key(2000, "/api/saju");
    fill(&a, &k, entry("공유", "/api/saju", "p1", "c1")).await;
    let got = expect_hit(&b, &k).await;
    assert_eq!(
        *got,
        entry("공유", "/api/saju", "p1", "c1"),
        "all fields survive Redis"
    );
    assert_eq!(b.stats().entries, 0, "Redis mode keeps nothing in process");
    assert!(a.purge(&Purge::All).await.expect("purge") >= 1);
    check_purges(&a, &[&b], 3000).await;
    assert_eq!(a.stats().redis_fallbacks + b.stats().redis_fallbacks, 0);
}

#[tokio::test]
async fn redis_entries_expire_and_the_cli_store_purges() {
    let Some(url) = redis_url() else { return };
    let prefix = test_prefix();
    let cache = redis_cache(&url, &prefix, Duration::from_millis(400));
    let k = key(4000, "/api/saju");
    fill(&cache, &k, entry("t", "/api/saju", "p1", "c1")).await;
    expect_hit(&cache, &k).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    expect_miss(&cache, &k).await;
    // What `starpillar cache purge --redis-url` uses: the store alone, by tag.
    let cache = redis_cache(&url, &prefix, Duration::from_secs(60));
    let (k1, k2) = (key(4001, "/api/saju"), key(4002, "/api/saju"));
    fill(&cache, &k1, entry("a", "/api/saju", "p1", "c9")).await;
    fill(&cache, &k2, entry("b", "/api/saju", "p1", "c8")).await;
    let store = RedisStore::new(&url, &prefix).expect("url");
    assert_eq!(
        store
            .purge(&Purge::CorpusVersion("c9".into()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .purge(&Purge::CorpusVersion("c9".into()))
            .await
            .unwrap(),
        0
    );
    expect_miss(&cache, &k1).await;
    expect_hit(&cache, &k2).await;
    // The real command, against the same Redis.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_starpillar"))
        .args([
            "cache",
            "purge",
            "--route",
            "/api/saju",
            "--redis-url",
            &url,
        ])
        .args(["--cache-prefix", &prefix])
        .output()
        .expect("run starpillar cache purge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("purged 1 entries (route /api/saju)"),
        "{stdout}"
    );
    expect_miss(&cache, &k2).await;
}

#[tokio::test]
async fn redis_down_falls_back_to_memory() {
    // Nothing listens on port 1.
    let cache = redis_cache(
        "redis://127.0.0.1:1",
        &test_prefix(),
        Duration::from_secs(60),
    );
    let k = key(5000, "/api/saju");
    let start = std::time::Instant::now();
    fill(&cache, &k, entry("local", "/api/saju", "p1", "c1")).await;
    let got = expect_hit(&cache, &k).await;
    assert_eq!(got.body, entry("local", "/api/saju", "p1", "c1").body);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a dead Redis never holds a request"
    );
    let s = cache.stats();
    assert!(s.redis_fallbacks >= 3, "{s:?}");
    assert_eq!(s.entries, 1);
    // A purge clears memory but reports that the shared cache could not be reached.
    assert!(cache.purge(&Purge::All).await.is_err());
    expect_miss(&cache, &k).await;
}

fn admin_app(token: Option<&str>) -> (axum::Router, starpillar::state::SharedState, TempDir) {
    let dir = TempDir::new();
    let mut cfg = starpillar::config::ServeConfig::for_tests(dir.path());
    cfg.cache.admin_token = token.map(Secret::new);
    let state = Arc::new(starpillar::state::AppState::new(cfg));
    (starpillar::api::app(state.clone()), state, dir)
}

fn purge_request(token: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post("/api/admin/cache/purge").header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn admin_route_needs_the_token_and_purges() {
    let (app, _, _dir) = admin_app(None);
    let resp = send(&app, purge_request(Some("x"), r#"{"all":true}"#)).await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "disabled without a token"
    );

    let (app, state, _dir) = admin_app(Some("s3cret-admin"));
    let resp = send(&app, purge_request(None, r#"{"all":true}"#)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body_json(resp).await), "admin_token_required");
    let resp = send(&app, purge_request(Some("s3cret-admiN"), r#"{"all":true}"#)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let cache = &state.cache;
    let saju = key(6000, "/api/saju");
    let astro = key(6001, "/api/astrology");
    fill(cache, &saju, entry("s", "/api/saju", "p1", "c1")).await;
    fill(cache, &astro, entry("a", "/api/astrology", "p1", "c1")).await;

    for bad in [
        r#"{}"#,
        r#"{"all":true,"route":"/api/saju"}"#,
        r#"{"route":" "}"#,
    ] {
        let resp = send(&app, purge_request(Some("s3cret-admin"), bad)).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let resp = send(
        &app,
        purge_request(Some("s3cret-admin"), r#"{"rout":"/x"}"#),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = send(&app, purge_request(Some("s3cret-admin"), "{")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = send(
        &app,
        purge_request(Some("s3cret-admin"), r#"{"route":"/api/saju"}"#),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_json(resp).await;
    assert_eq!(
        body,
        json!({ "purged": 1, "scope": "route", "value": "/api/saju" })
    );
    expect_miss(cache, &saju).await;
    expect_hit(cache, &astro).await;

    let metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(crate::common::body_bytes(metrics).await).unwrap();
    assert!(
        text.contains(r#"starpillar_cache_purges_total{scope="route"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"starpillar_cache_requests_total{result="hit"} 1"#),
        "{text}"
    );
}

#[test]
fn the_purge_command_needs_a_scope_and_a_target() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_starpillar"))
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("STARPILLAR_ADMIN_TOKEN")
            .output()
            .expect("run starpillar")
    };
    let out = run(&["cache", "purge", "--all"]);
    assert_eq!(out.status.code(), Some(2), "no target");
    let out = run(&["cache", "purge", "--redis-url", "redis://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "no scope");
    let out = run(&[
        "cache",
        "purge",
        "--all",
        "--route",
        "/x",
        "--redis-url",
        "redis://h",
    ]);
    assert_eq!(out.status.code(), Some(2), "two scopes");
    let out = run(&[
        "cache",
        "purge",
        "--all",
        "--redis-url",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1), "Redis down is a failure");
}
