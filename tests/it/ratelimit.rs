//! Rate limits: 429 + `Retry-After` + `RateLimit-*` in process; the same sliding window in a
//! real Redis (`REDIS_URL_TEST`, started by scripts/services.sh) under `@upstash/ratelimit`'s
//! keys, checked step by step against the in-process implementation and against counters
//! seeded as the Next.js app would leave them; failing open when Redis is down.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use starpillar::config::Secret;
use starpillar::ratelimit::{
    BackendConfig, RateLimitArgs, RateLimitConfig, RateLimiter, weighted_previous,
};

use crate::common::{send, tempdir::TempDir};
use crate::store::app_with;

fn config(limits: &[&str], backend: BackendConfig) -> RateLimitConfig {
    let args = RateLimitArgs {
        rate_limits: limits.iter().map(|s| (*s).to_owned()).collect(),
        ..RateLimitArgs::default()
    };
    let mut cfg = RateLimitConfig::from_args(&args).expect("valid limits");
    cfg.backend = backend;
    cfg
}

async fn hit(app: &axum::Router, path: &str, ip: &str) -> axum::response::Response {
    send(
        app,
        Request::get(path)
            .header("x-forwarded-for", ip)
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

fn header(r: &axum::response::Response, name: &str) -> Option<i64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

#[tokio::test]
async fn in_process_limit_answers_429_with_headers() {
    let dir = TempDir::new();
    let (app, _) = app_with(dir.path(), &None, |cfg| {
        cfg.auth.trust_proxy = true;
        cfg.ratelimit = config(&["account=3/60"], BackendConfig::Memory);
    });
    for left in [2, 1, 0] {
        let r = hit(&app, "/api/auth/session", "198.51.100.1").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, "ratelimit-limit"), Some(3));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(left));
        assert!(header(&r, "ratelimit-reset").is_some_and(|s| (1..=60).contains(&s)));
    }
    let r = hit(&app, "/api/auth/session", "198.51.100.1").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = header(&r, "retry-after").expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(header(&r, "ratelimit-remaining"), Some(0));
    let body = crate::common::body_json(r).await;
    assert_eq!(crate::common::error_code(&body), "rate_limited");
    // Another caller has its own budget; health routes are never limited.
    let r = hit(&app, "/api/auth/session", "198.51.100.2").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for _ in 0..5 {
        assert_eq!(
            hit(&app, "/healthz", "198.51.100.1").await.status(),
            StatusCode::OK
        );
    }
    // Without STARPILLAR_TRUST_PROXY a client cannot pick its address with X-Forwarded-For.
    let (untrusting, _) = app_with(dir.path(), &None, |cfg| {
        cfg.ratelimit = config(&["account=1/60"], BackendConfig::Memory);
    });
    assert_eq!(
        hit(&untrusting, "/api/auth/session", "1.1.1.1")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let spoofed = hit(&untrusting, "/api/auth/session", "2.2.2.2").await;
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    let metrics = hit(&app, "/metrics", "x").await;
    let text = String::from_utf8(crate::common::body_bytes(metrics).await).expect("utf8");
    assert!(
        text.contains(r#"starpillar_rate_limited_total{class="account"} 1"#),
        "{text}"
    );
}

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL_TEST") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("REDIS_URL_TEST unset: Redis half skipped (source scripts/services.sh)");
            None
        }
    }
}

#[tokio::test]
async fn redis_matches_the_in_process_window_step_by_step() {
    let Some(url) = redis_url() else { return };
    let redis = RateLimiter::new(config(&["ai=5/10"], BackendConfig::Redis(Secret::new(url))));
    let memory = RateLimiter::new(config(&["ai=5/10"], BackendConfig::Memory));
    let id = format!("ai:user:{}", uuid::Uuid::new_v4().simple());
    // Synthetic clock (ms) across three 10 s windows, bursts and gaps included.
    // A multiple of the window, so the offsets below land where their comments say.
    let base = 1_900_000_000_000_i64;
    let times = [
        0, 10, 20, 30, 40, 50, 60, 9_999, 10_000, 10_500, 12_000, 14_000, 15_000, 15_001, 16_000,
        19_000, 21_000, 25_000, 29_999, 30_000, 31_000, 45_000,
    ];
    let mut allowed = 0;
    for dt in times {
        let a = redis.check("ai", &id, base + dt).await.expect("class");
        let b = memory.check("ai", &id, base + dt).await.expect("class");
        assert_eq!(a, b, "t+{dt} ms");
        allowed += usize::from(a.allowed);
    }
    assert_eq!(
        redis.backend_errors_total.get(),
        0,
        "Redis must have answered"
    );
    assert!(allowed > 5 && allowed < times.len(), "{allowed}");
}

#[tokio::test]
async fn redis_counters_are_shared_with_upstash_keys() {
    let Some(url) = redis_url() else { return };
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis up");
    let dir = TempDir::new();
    let (app, state) = app_with(dir.path(), &None, |cfg| {
        cfg.auth.trust_proxy = true;
        cfg.ratelimit = config(
            &["account=10/3600"],
            BackendConfig::Redis(Secret::new(url.clone())),
        );
    });
    let ip = format!("10.{}.{}.{}", rand_octet(), rand_octet(), rand_octet());
    let identifier = format!("account:ip:{ip}");
    let now = chrono::Utc::now().timestamp_millis();
    let window = now.div_euclid(3_600_000);
    // The Next.js app (Ratelimit.slidingWindow(10, "3600 s")) already counted 4 in the
    // previous window and 3 in this one, under its own keys.
    let prev_key = format!("@upstash/ratelimit:{identifier}:{}", window - 1);
    let cur_key = format!("@upstash/ratelimit:{identifier}:{window}");
    let _: () = redis::cmd("SET")
        .arg(&prev_key)
        .arg(4)
        .query_async(&mut conn)
        .await
        .expect("set");
    let _: () = redis::cmd("SET")
        .arg(&cur_key)
        .arg(3)
        .query_async(&mut conn)
        .await
        .expect("set");
    let budget = 10 - 3 - weighted_previous(4, now, 3_600_000);
    let mut passed = 0;
    for _ in 0..12 {
        let r = hit(&app, "/api/auth/session", &ip).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        passed += 1;
    }
    assert_eq!(passed, budget, "shared budget (window {window})");
    let count: i64 = redis::cmd("GET")
        .arg(&cur_key)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(
        count,
        3 + budget,
        "our requests were counted under the same key"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&cur_key)
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert_eq!(
        ttl, -1,
        "a key created by someone else keeps its own expiry policy"
    );
    assert_eq!(state.ratelimit.backend_errors_total.get(), 0);
}

fn rand_octet() -> u8 {
    (uuid::Uuid::new_v4().as_u128() % 250) as u8 + 1
}

#[tokio::test]
async fn redis_down_fails_open_and_counts() {
    let dir = TempDir::new();
    let down = BackendConfig::Redis(Secret::new("redis://127.0.0.1:1/"));
    let (app, state) = app_with(dir.path(), &None, |cfg| {
        cfg.auth.trust_proxy = true;
        cfg.ratelimit = config(&["account=1/60"], down);
    });
    for _ in 0..3 {
        let r = hit(&app, "/api/auth/session", "192.0.2.1").await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "fail open, never 429 or 5xx"
        );
    }
    assert_eq!(state.ratelimit.backend_errors_total.get(), 3);
}
