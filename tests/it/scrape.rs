//! A real Prometheus (Debian's `prometheus`) scrapes a running `starpillar serve` every second,
//! with ops/prometheus/recording.yml loaded, and answers PromQL over what it scraped: the
//! runbook's P95 query and the per-route P95 recording rule both come back as numbers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::tempdir::TempDir;
use crate::smoke::{Server, free_port};

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One instant query; the first sample's value when there is one.
async fn query(http: &reqwest::Client, prom: &str, promql: &str) -> Option<f64> {
    let body = serde_urlencoded::to_string([("query", promql)]).ok()?;
    let response = http
        .post(format!("{prom}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .ok()?;
    let answer: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    assert_eq!(answer["status"], "success", "{promql}: {answer}");
    let value = answer["data"]["result"][0]["value"][1].as_str()?;
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_starpillar_and_answers_the_p95_query() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path().join("data"), &[], &[]);
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/prometheus/recording.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: starpillar\n    static_configs:\n      - targets: [\"{}\"]\n",
            recording.display(),
            server.addr
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let prom = format!("http://127.0.0.1:{port}");
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): apt install prometheus")),
    );
    // Traffic while Prometheus scrapes: charts and health checks.
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let traffic = {
        let (stop, http, base) = (stop.clone(), http.clone(), server.url());
        tokio::spawn(async move {
            let chart = r#"{"birth":{"date":"1990-05-15","time":"14:30","timezone":"Asia/Seoul"},"reading":false}"#;
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = http.get(format!("{base}/healthz")).send().await;
                let _ = http
                    .post(format!("{base}/api/saju"))
                    .header("content-type", "application/json")
                    .body(chart)
                    .send()
                    .await;
                sent += 2;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        })
    };
    let p95 = "histogram_quantile(0.95, sum by (le) \
        (rate(starpillar_http_request_duration_seconds_bucket[1m])))";
    let rule = r#"starpillar:http_request_duration_seconds:p95_rate5m{route="/api/saju"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut up, mut p95_value, mut rule_value) = (None, None, None);
    while Instant::now() < deadline && (up.is_none() || p95_value.is_none() || rule_value.is_none())
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        up = up.or(query(&http, &prom, r#"up{job="starpillar"}"#).await);
        p95_value = p95_value.or(query(&http, &prom, p95).await);
        rule_value = rule_value.or(query(&http, &prom, rule).await);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.await.expect("traffic");
    eprintln!(
        "requests sent {sent}; up {up:?}; p95 {p95_value:?} s; /api/saju p95 {rule_value:?} s"
    );
    assert_eq!(up, Some(1.0), "Prometheus never scraped starpillar");
    let p95_value = p95_value.expect("the P95 query answered no number within 60 s");
    assert!(p95_value > 0.0 && p95_value < 5.0, "P95 {p95_value} s");
    let rule_value = rule_value.expect("the recording rule produced no number within 60 s");
    assert!(
        rule_value > 0.0 && rule_value < 5.0,
        "saju P95 {rule_value} s"
    );
}
