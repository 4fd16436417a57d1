//! Overload: bursts far beyond `--max-concurrency` at in-process servers on a real socket
//! (port 0). Every answer is 200, 429 or 503; every 429/503 carries `Retry-After`; no request
//! hangs past a bound; shed and timed-out requests are counted under their route in
//! `starpillar_http_requests_total` and in `starpillar_load_shed_total`; the server answers
//! normally afterwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use starpillar::config::ServeConfig;
use starpillar::ratelimit::{RateLimitArgs, RateLimitConfig};
use starpillar::state::{AppState, SharedState};

use crate::common::tempdir::TempDir;

/// No single request may take longer than this, shed or not.
const BOUND: Duration = Duration::from_secs(10);

const SAJU: &str = r#"{"birth":{"date":"1990-05-15","time":"14:30","calendar":"solar",
    "timezone":"Asia/Seoul","longitude":126.978},"sex":"female","reading":false}"#;

fn state(dir: &TempDir, max_concurrency: usize, limits: Option<&str>) -> SharedState {
    let mut cfg = ServeConfig::for_tests(dir.path());
    cfg.max_concurrency = max_concurrency;
    cfg.request_timeout = Duration::from_secs(1);
    if let Some(limits) = limits {
        cfg.ratelimit = RateLimitConfig::from_args(&RateLimitArgs {
            rate_limits: vec![limits.to_owned()],
            ..RateLimitArgs::default()
        })
        .expect("valid limits");
    }
    Arc::new(AppState::new(cfg))
}

/// Serve `app` on 127.0.0.1:0 (with the peer address the limiter keys on).
async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    (format!("http://{addr}"), task)
}

/// One answer: status and whether it had `Retry-After`.
type Answer = (u16, bool);

/// Fire `n` requests at once (`post` with the chart body when `post`), each bounded by
/// [`BOUND`]; panics if one hangs or fails at the socket.
async fn burst(client: &reqwest::Client, url: &str, n: usize, post: bool) -> Vec<Answer> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let request = if post {
                    client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(SAJU)
                } else {
                    client.get(&url)
                };
                let started = Instant::now();
                let response = tokio::time::timeout(BOUND, request.send())
                    .await
                    .unwrap_or_else(|_| panic!("{url}: no answer within {BOUND:?}"))
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                let status = response.status().as_u16();
                let retry = response.headers().contains_key("retry-after");
                let _ = response.bytes().await;
                assert!(
                    started.elapsed() < BOUND,
                    "{url} took {:?}",
                    started.elapsed()
                );
                (status, retry)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.expect("request task"));
    }
    answers
}

fn tally(answers: &[Answer]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for (status, _) in answers {
        *counts.entry(*status).or_default() += 1;
    }
    counts
}

fn check_answers(what: &str, answers: &[Answer]) {
    for (status, retry) in answers {
        assert!(
            matches!(status, 200 | 429 | 503),
            "{what}: status {status} under overload ({:?})",
            tally(answers)
        );
        if *status != 200 {
            assert!(retry, "{what}: {status} without Retry-After");
        }
    }
}

/// The value of the first sample line starting with `prefix` and containing every `parts`.
fn sample(metrics: &str, prefix: &str, parts: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shedding_and_timeouts_answer_503_with_retry_after_and_are_counted_per_route() {
    let dir = TempDir::new();
    let state = state(&dir, 8, None);
    let routes = Router::new()
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
        .route(
            "/api/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let (base, server) = serve(starpillar::api::with_middleware(routes, state.clone())).await;
    let client = client();

    let started = Instant::now();
    // The stuck requests first (they hold 4 of the 8 permits until the 1 s timeout), then
    // the burst.
    let (stuck_url, slow_url) = (format!("{base}/api/stuck"), format!("{base}/api/slow"));
    let (stuck, slow) = tokio::join!(burst(&client, &stuck_url, 4, false), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        burst(&client, &slow_url, 200, false).await
    });
    eprintln!(
        "burst of 204 answered in {:?}: slow {:?}, stuck {:?}",
        started.elapsed(),
        tally(&slow),
        tally(&stuck)
    );
    check_answers("/api/slow", &slow);
    check_answers("/api/stuck", &stuck);
    let slow_shed = slow.iter().filter(|(s, _)| *s == 503).count();
    assert!(
        slow_shed >= 100,
        "200 requests at a limit of 8 must mostly be shed: {:?}",
        tally(&slow)
    );
    assert!(
        slow.iter().any(|(s, _)| *s == 200),
        "some requests are served"
    );
    assert!(
        stuck.iter().all(|(s, _)| *s == 503),
        "a handler past the timeout answers 503"
    );

    let metrics = state.metrics.render();
    let total = "starpillar_http_requests_total{";
    assert_eq!(
        sample(&metrics, total, &["route=\"/api/slow\"", "status=\"503\""]),
        slow_shed as u64,
        "every shed request is counted under its route:\n{metrics}"
    );
    assert_eq!(
        sample(&metrics, total, &["route=\"/api/stuck\"", "status=\"503\""]),
        stuck.iter().filter(|(s, _)| *s == 503).count() as u64,
        "shed or timed-out /api/stuck requests are counted under their route"
    );
    let shed = "starpillar_load_shed_total{";
    let overloaded = sample(&metrics, shed, &["reason=\"overloaded\""]);
    let timeouts = sample(&metrics, shed, &["reason=\"timeout\""]);
    let all_503 = (slow_shed + stuck.iter().filter(|(s, _)| *s == 503).count()) as u64;
    assert_eq!(overloaded + timeouts, all_503, "{metrics}");
    assert!(timeouts >= 1, "the stuck handler's timeout is counted");

    // Afterwards: normal service.
    for n in 0..5 {
        let response = client
            .get(format!("{base}/api/slow"))
            .send()
            .await
            .expect("after the burst");
        assert_eq!(
            response.status().as_u16(),
            200,
            "request {n} after the burst"
        );
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_burst_with_the_limiter_gives_only_200_429_503_and_recovers() {
    let dir = TempDir::new();
    let state = state(&dir, 16, Some("ai=40/3600"));
    let (base, server) = serve(starpillar::api::app(state.clone())).await;
    let client = client();
    let url = format!("{base}/api/saju");
    let started = Instant::now();
    let answers = burst(&client, &url, 300, true).await;
    eprintln!(
        "300 charts at once answered in {:?}: {:?}",
        started.elapsed(),
        tally(&answers)
    );
    check_answers("/api/saju", &answers);
    let counts = tally(&answers);
    assert!(counts.contains_key(&200), "{counts:?}");
    // Only admitted requests count against the limit (40 per hour): shed ones never reach it.
    // Each wave admits at least some, so within a few more waves the limiter must answer 429.
    let mut waves = Vec::new();
    for _ in 0..6 {
        let more = burst(&client, &url, 60, true).await;
        check_answers("/api/saju (later wave)", &more);
        let limited = more.iter().any(|(s, _)| *s == 429);
        waves.push(tally(&more));
        if limited {
            break;
        }
    }
    assert!(
        waves.last().is_some_and(|w| w.contains_key(&429)),
        "the limiter answers 429 once 40 were admitted: {waves:?}"
    );
    for path in ["/healthz", "/api/lib-health", "/metrics"] {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("after the burst");
        assert_eq!(response.status().as_u16(), 200, "{path} after the burst");
    }
    server.abort();
}
