//! `starpillar bench readings` with tiny counts against its in-process server (a fresh data
//! dir: keyword search over the corpus, the real embedder when it is fetched): every row is
//! there at every level, no request failed, the percentiles are ordered, and the SLO column
//! binds the chart rows only. The `mode: generate` rows are left out (`--no-generate`): a
//! generated reading prefills a prompt of ~2,000 tokens, tens of seconds on a busy 2-core
//! machine, beyond this test's 30 s.

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::common::tempdir::TempDir;

const ROWS: [&str; 6] = [
    "saju chart",
    "astrology chart",
    "reading cached",
    "reading composed",
    "stream composed: first delta",
    "stream composed: full",
];

#[tokio::test]
async fn bench_readings_reports_every_row_without_errors() {
    let dir = TempDir::new();
    let data = dir.path().join("data");
    let offline = |model: &str| starpillar::retrieval::embedding::available_offline(model, &data);
    let mut args: Vec<String> = ["bench", "readings", "--clients", "1,2", "--requests", "2"]
        .map(str::to_owned)
        .to_vec();
    args.extend(["--no-generate".into(), "--json".into()]);
    args.extend(["--data-dir".into(), data.display().to_string()]);
    if !offline("multilingual-e5-small") {
        args.extend(["--embed-model".into(), "none".into()]);
    }
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_starpillar"))
            .args(&args)
            .env_remove("STARPILLAR_STORE")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .output()
            .expect("run starpillar bench readings")
    })
    .await
    .expect("join");
    let seconds = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n({seconds:.1} s)");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}\n{stderr}"));
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(
        report["retrieval"]
            .as_str()
            .is_some_and(|r| r.starts_with("keyword search")),
        "a fresh data dir has no index: {}",
        report["retrieval"]
    );
    let rows = report["rows"].as_array().expect("rows");
    for clients in [1, 2] {
        for name in ROWS {
            let row = rows
                .iter()
                .find(|r| r["row"] == name && r["clients"] == clients)
                .unwrap_or_else(|| panic!("no row {name} × {clients}: {report}"));
            assert_eq!(row["errors"], 0, "{row}");
            assert!(row["requests"].as_u64().is_some_and(|n| n >= 1), "{row}");
            let p = |k: &str| row[k].as_f64().expect("a percentile");
            assert!(
                0.0 < p("p50_ms") && p("p50_ms") <= p("p95_ms") && p("p95_ms") <= p("p99_ms"),
                "{row}"
            );
            let chart = name.ends_with("chart");
            assert_eq!(row["slo_bound"], chart, "{row}");
        }
    }
    assert_eq!(rows.len(), ROWS.len() * 2, "{report}");
    // A first delta comes before the end of the same streams.
    let first = rows
        .iter()
        .find(|r| r["row"] == "stream composed: first delta");
    let full = rows.iter().find(|r| r["row"] == "stream composed: full");
    if let (Some(first), Some(full)) = (first, full) {
        assert!(first["p50_ms"].as_f64() <= full["p50_ms"].as_f64());
    }
    assert!(seconds < 30.0, "took {seconds:.1} s");
}
