//! Monitoring as code (ops/): `promtool` checks the Prometheus rules and runs their unit tests,
//! the Grafana dashboard parses and its queries are valid PromQL, every alert carries severity,
//! summary, description and the README runbook pointer and has a firing and a silent test case,
//! and every metric the rules, tests and dashboard name is one DESIGN.md §10 defines (or a
//! recording rule of ops/prometheus/recording.yml) — so renaming a metric breaks this test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metric families of DESIGN.md §10 (without the `starpillar_` prefix), plus the ones the
/// operations issue adds: token-verification failures (as src/auth registers them), readiness,
/// build info, load shedding.
const DESIGN_METRICS: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "time_to_first_token_seconds",
    "time_per_output_token_seconds",
    "generated_tokens_total",
    "prompt_tokens_total",
    "embed_batch_size",
    "embed_duration_seconds",
    "retrieval_duration_seconds",
    "cache_requests_total",
    "queue_depth",
    "rate_limited_total",
    "stripe_webhooks_total",
    "auth_token_failures_total",
    "ready",
    "build_info",
    "load_shed_total",
];

/// Series Prometheus itself writes for every scrape target.
const PROMETHEUS_METRICS: &[&str] = &["up"];

/// PromQL words that look like metric names: aggregations, set operators, modifiers.
const PROMQL_WORDS: &str = "sum min max avg count stddev stdvar topk bottomk quantile \
    count_values group and or unless by without on ignoring group_left group_right offset bool \
    inf nan atan2";

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Run promtool; panics with its output unless it succeeds.
fn promtool(args: &[&str], files: &[PathBuf]) {
    let out = Command::new("promtool")
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's `prometheus` package")
        });
    assert!(
        out.status.success(),
        "promtool {args:?} {files:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rule_files() -> Vec<PathBuf> {
    let dir = ops().join("prometheus");
    vec![dir.join("recording.yml"), dir.join("alerts.yml")]
}

fn test_files() -> Vec<PathBuf> {
    let dir = ops().join("prometheus/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no promtool tests in {}", dir.display());
    files
}

/// The value of every `key:` in a YAML file we wrote: plain, quoted, or a `|`/`>` block.
/// (A deliberately small reader for our own rule files; promtool validates the real syntax.)
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut values = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        i += 1;
        let Some(rest) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let indent = line.len() - line.trim_start().len();
            let mut block = String::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push_str(lines[i].trim());
                block.push(' ');
                i += 1;
            }
            values.push(block.trim().to_owned());
        } else if let Some(q) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            values.push(q.replace("''", "'"));
        } else if let Some(q) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            values.push(q.replace("\\\"", "\""));
        } else {
            values.push(rest.to_owned());
        }
    }
    values
}

/// Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges,
/// grouping lists, function calls and PromQL keywords. Grafana variables (`$job`) are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut after_grouping_word = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if after_grouping_word => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                after_grouping_word = false;
            }
            '$' | '0'..='9' | '.' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_.".contains(chars[i]))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let is_call = chars.get(j) == Some(&'(');
                let grouping = [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ];
                if grouping.contains(&word.as_str()) {
                    after_grouping_word = is_call;
                } else if !is_call && !PROMQL_WORDS.split_whitespace().any(|w| w == word) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Names a rule, test or panel may use: DESIGN.md §10's families with their histogram series,
/// Prometheus' own, and the recording rules.
fn known_names(records: &BTreeSet<String>) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = records.clone();
    for base in DESIGN_METRICS {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            known.insert(format!("starpillar_{base}{suffix}"));
        }
    }
    known.extend(PROMETHEUS_METRICS.iter().map(|s| (*s).to_owned()));
    known
}

fn recording_names() -> BTreeSet<String> {
    let text = read(&ops().join("prometheus/recording.yml"));
    let records: BTreeSet<String> = yaml_values(&text, "record").into_iter().collect();
    assert!(
        records.len() >= 10,
        "too few recording rules found: {records:?}"
    );
    records
}

/// The Grafana dashboard, parsed.
fn dashboard() -> serde_json::Value {
    let path = ops().join("grafana/starpillar.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: panel queries and template-variable selectors.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                exprs.push(expr.to_owned());
            }
        }
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let query = var["query"]["query"].as_str().or(var["query"].as_str());
        // `label_values(selector, label)`: the selector is the PromQL part.
        if let Some(q) = query {
            let selector = q
                .strip_prefix("label_values(")
                .and_then(|rest| rest.split_once(',').map(|(sel, _)| sel))
                .unwrap_or(q);
            exprs.push(selector.trim().to_owned());
        }
    }
    exprs
}

#[test]
fn promtool_checks_the_rule_files() {
    promtool(&["check", "rules"], &rule_files());
}

#[test]
fn promtool_unit_tests_pass() {
    // One promtool per test file, in parallel: together they take a few seconds.
    let handles: Vec<_> = test_files()
        .into_iter()
        .map(|file| std::thread::spawn(move || promtool(&["test", "rules"], &[file])))
        .collect();
    let failed = handles.into_iter().filter_map(|h| h.join().err()).count();
    assert_eq!(
        failed, 0,
        "{failed} promtool test file(s) failed (output above)"
    );
}

#[test]
fn every_alert_is_documented_and_tested_both_ways() {
    let alerts_text = read(&ops().join("prometheus/alerts.yml"));
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    assert!(
        readme.lines().any(|l| l.trim() == "## Operations"),
        "README.md lost its Operations section, the runbook the alerts point to"
    );
    let tests: Vec<String> = test_files().iter().map(|p| read(p)).collect();
    let blocks: Vec<&str> = alerts_text.split("- alert: ").skip(1).collect();
    assert!(
        blocks.len() >= 12,
        "expected at least 12 alerts, found {}",
        blocks.len()
    );
    for block in blocks {
        let name = block.lines().next().unwrap_or_default().trim();
        let severity = yaml_values(block, "severity");
        assert!(
            matches!(
                severity.first().map(String::as_str),
                Some("critical" | "warning")
            ),
            "{name}: severity must be critical or warning, got {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                yaml_values(block, key)
                    .first()
                    .is_some_and(|v| v.len() > 10),
                "{name}: no {key}"
            );
        }
        assert_eq!(
            yaml_values(block, "runbook_url")
                .first()
                .map(String::as_str),
            Some("README.md#operations"),
            "{name}: runbook_url"
        );
        // Firing case: `alertname: X` then a non-empty `exp_alerts:`; silent case: `exp_alerts: []`.
        let (mut fires, mut silent) = (false, false);
        for text in &tests {
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for (k, line) in lines.iter().enumerate() {
                if *line == format!("alertname: {name}") {
                    match lines.get(k + 1) {
                        Some(&"exp_alerts: []") => silent = true,
                        Some(&"exp_alerts:") => fires = true,
                        _ => {}
                    }
                }
            }
        }
        assert!(fires, "{name}: no promtool test where it fires");
        assert!(silent, "{name}: no promtool test where it stays silent");
    }
}

#[test]
fn dashboard_parses_and_queries_are_valid_promql() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion < 36"
    );
    let inputs = dash["__inputs"].as_array().cloned().unwrap_or_default();
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS datasource input"
    );
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in dash["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64()),
            "duplicate panel id in {title}"
        );
        let grid = &panel["gridPos"];
        let right = grid["x"].as_u64().unwrap_or(99) + grid["w"].as_u64().unwrap_or(99);
        assert!(right <= 24, "{title}: gridPos beyond 24 columns");
        if panel["type"] == "row" {
            continue;
        }
        titles.push(title.to_lowercase());
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: datasource"
        );
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no query");
    }
    for wanted in [
        "availability",
        "error budget",
        "p95",
        "per-stage",
        "tokens per second",
        "queue depth",
        "cache hit ratio",
        "webhook",
        "rate limited",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel about {wanted}"
        );
    }
    // promtool parses every query: wrap them as recording rules with Grafana's variables filled.
    let dir = crate::common::tempdir::TempDir::new();
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in dashboard_exprs(&dash).iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "5m").replace("$job", ".+");
        let quoted = serde_json::to_string(&expr).unwrap_or_default();
        yaml.push_str(&format!(
            "      - record: dashboard:panel_{n}\n        expr: {quoted}\n"
        ));
    }
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, yaml).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    promtool(&["check", "rules"], &[file]);
}

#[test]
fn every_metric_name_is_a_design_metric_or_a_recording_rule() {
    let records = recording_names();
    let known = known_names(&records);
    let mut used: Vec<(String, String)> = Vec::new();
    let mut note = |source: &str, exprs: Vec<String>| {
        for expr in exprs {
            for name in metric_names(&expr) {
                used.push((name, source.to_owned()));
            }
        }
    };
    let shown = |file: &Path| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        file.strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string()
    };
    for file in rule_files() {
        note(&shown(&file), yaml_values(&read(&file), "expr"));
    }
    for file in test_files() {
        let text = read(&file);
        note(&shown(&file), yaml_values(&text, "expr"));
        note(&shown(&file), yaml_values(&text, "series"));
    }
    note("ops/grafana/starpillar.json", dashboard_exprs(&dashboard()));
    let names: BTreeSet<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "starpillar_http_requests_total",
        "starpillar_stripe_webhooks_total",
        "up",
    ] {
        assert!(
            names.contains(expected),
            "the scan missed {expected}: {names:?}"
        );
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(n, _)| !known.contains(n))
        .map(|(n, src)| format!("{n} (in {src})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "metric names neither in DESIGN.md §10 nor recorded in recording.yml:\n{}",
        unknown.join("\n")
    );
    // Every recording rule serves an alert or a panel.
    let consumers: Vec<String> = yaml_values(&read(&ops().join("prometheus/alerts.yml")), "expr")
        .into_iter()
        .chain(dashboard_exprs(&dashboard()))
        .chain(yaml_values(
            &read(&ops().join("prometheus/recording.yml")),
            "expr",
        ))
        .collect();
    let consumed: BTreeSet<String> = consumers.iter().flat_map(|e| metric_names(e)).collect();
    let unused: Vec<&String> = records.iter().filter(|r| !consumed.contains(*r)).collect();
    assert!(
        unused.is_empty(),
        "recording rules no alert or panel reads: {unused:?}"
    );
}

#[test]
fn design_metrics_registered_in_the_source_are_spelled_as_designed() {
    // Names the code registers, read from string literals under src/.
    let mut literals = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                for piece in read(&path).split('"').skip(1).step_by(2) {
                    literals.insert(piece.to_owned());
                }
            }
        }
    }
    let registered =
        |base: &str| literals.contains(&format!("starpillar_{base}")) || literals.contains(base);
    // Metrics already registered must keep these names (the alerts read them); the others are
    // reported until the feature that owns them registers them — then move them up here.
    let required = [
        "http_requests_total",
        "http_request_duration_seconds",
        "build_info",
        "embed_batch_size",
        "rate_limited_total",
        "stripe_webhooks_total",
        "auth_token_failures_total",
        "load_shed_total",
    ];
    for base in required {
        assert!(
            registered(base),
            "src/ no longer registers starpillar_{base}"
        );
    }
    let missing: Vec<&&str> = DESIGN_METRICS.iter().filter(|b| !registered(b)).collect();
    if !missing.is_empty() {
        eprintln!("design metrics not registered anywhere under src/ yet: {missing:?}");
    }
}

#[test]
fn the_metric_name_scanner_finds_names_and_only_names() {
    let expr = r#"sum by (job, le) (rate(starpillar_x_bucket{route=~"/api/.+", le="0.8"}[5m]
        offset 30m)) / on (job) group_left sum without (instance) (starpillar:y:ratio_rate5m)
        > bool 14.4 * 0.005 and up{job=~"$job"} or histogram_quantile(0.95, z[$__rate_interval])"#;
    let found: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        found,
        [
            "starpillar:y:ratio_rate5m",
            "starpillar_x_bucket",
            "up",
            "z"
        ]
    );
    let yaml = "  - record: a:b:c\n    expr: |\n      sum(x)\n      / 2\n  - expr: 'y{a=\"b\"}'\n";
    assert_eq!(yaml_values(yaml, "expr"), ["sum(x) / 2", "y{a=\"b\"}"]);
    assert_eq!(yaml_values(yaml, "record"), ["a:b:c"]);
}
