//! `starpillar bench readings`: latency of the reading routes at 1, 4 and 16 concurrent clients
//! — chart-only `/api/saju` and `/api/astrology`, a cached reading, a composed reading that
//! misses the cache (JSON), a streamed composed reading (time to the first `delta` event and
//! to `done`) and the same streamed with `mode: generate` — as p50/p95/p99 against the SLO
//! (P95 < 800 ms for the chart routes; the reading rows show where they stand). Against
//! `--base-url` (any deployment) or, by default, a server started in this process on
//! 127.0.0.1:0 with the real models and the data dir's index (hybrid search when the index was
//! built from the corpus with the embedder, keyword search over the corpus otherwise).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{DataDirArgs, ServeArgs, ServeConfig};
use crate::engine::{EngineArgs, EngineError, GenRequest, GenStream, Generate};
use crate::retrieval::args::StoreArgs;
use crate::state::{AppState, SharedState};

/// The SLO: P95 under this many milliseconds (DESIGN.md; chart routes).
pub const SLO_P95_MS: f64 = 800.0;

/// `starpillar bench readings` flags.
#[derive(Debug, Args)]
pub struct ReadingsBenchArgs {
    /// Benchmark this deployment (e.g. `http://127.0.0.1:8080`) instead of a server started in
    /// this process. Its quota and rate limits apply: use a session or a deployment without.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Concurrent clients per level (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 4, 16])]
    pub clients: Vec<usize>,
    /// Requests per row and level (at least one per client).
    #[arg(long, default_value_t = 48)]
    pub requests: usize,
    /// Requests per level with `mode: generate` (0: one per client).
    #[arg(long, default_value_t = 0)]
    pub generate_requests: usize,
    /// Leave out the `mode: generate` rows.
    #[arg(long)]
    pub no_generate: bool,
    /// In-process server: stop generated readings after this many tokens (0: as the API asks,
    /// 512). The rows then say so.
    #[arg(long, default_value_t = 0)]
    pub generate_max_tokens: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// A bearer session token to send (against `--base-url`).
    #[arg(long, env = "STARPILLAR_BENCH_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// In-process server: the corpus the index must have been built from (else it is indexed
    /// in memory for keyword search).
    #[arg(long, default_value = "corpus")]
    pub corpus: PathBuf,
    /// In-process server: the index (default: the data dir's `index/edge`).
    #[command(flatten)]
    pub store: StoreArgs,
    /// In-process server: the models (`--embed-model`, `--gen-model`, threads).
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// What one row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    SajuChart,
    AstrologyChart,
    Cached,
    Composed,
    StreamCompose,
    StreamGenerate,
}

/// One request's outcome.
#[derive(Debug, Clone, Default)]
struct Sample {
    ms: f64,
    /// Milliseconds to the first `delta` event (streams).
    first_ms: Option<f64>,
    error: Option<String>,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub row: String,
    pub clients: usize,
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Completed requests per second over the level's wall time.
    pub rps: f64,
    /// Whether the SLO binds this row (chart routes) or is shown for reference.
    pub slo_bound: bool,
    pub under_slo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub retrieval: String,
    pub generator: String,
    pub slo_p95_ms: f64,
    pub rows: Vec<Row>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(name: &str, clients: usize, slo_bound: bool, values: Vec<f64>, s: &Level) -> Row {
    let mut sorted = values;
    sorted.sort_by(f64::total_cmp);
    let p95 = percentile(&sorted, 95.0);
    let errors: Vec<&String> = s.samples.iter().filter_map(|x| x.error.as_ref()).collect();
    Row {
        row: name.to_owned(),
        clients,
        requests: s.samples.len(),
        errors: errors.len(),
        p50_ms: round1(percentile(&sorted, 50.0)),
        p95_ms: round1(p95),
        p99_ms: round1(percentile(&sorted, 99.0)),
        rps: round1((s.samples.len() - errors.len()) as f64 / s.seconds.max(1e-9)),
        slo_bound,
        under_slo: errors.is_empty() && !sorted.is_empty() && p95 < SLO_P95_MS,
        first_error: errors.first().map(|e| (*e).clone()),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The samples of one (probe, clients) run.
struct Level {
    samples: Vec<Sample>,
    seconds: f64,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Makes every uncached request of this run unique (a shared cache may hold earlier runs').
    run: String,
    /// Numbers the uncached requests across rows and levels.
    seq: AtomicUsize,
}

const SAJU_BIRTH: &str = r#"{"date":"1990-05-15","time":"14:30","calendar":"solar",
    "timezone":"Asia/Seoul","longitude":126.978}"#;
const QUESTIONS: [&str; 4] = [
    "How is my career looking this year?",
    "What should I know about love and relationships?",
    "How can I take care of my health?",
    "What about money and savings?",
];

impl Client {
    fn body(&self, probe: Probe, i: usize) -> (&'static str, Value) {
        let birth: Value = serde_json::from_str(SAJU_BIRTH).unwrap_or(Value::Null);
        let day = 1 + i % 28;
        match probe {
            Probe::SajuChart => {
                let mut b = birth;
                b["date"] = json!(format!("1990-05-{day:02}"));
                (
                    "/api/saju",
                    json!({"birth": b, "sex": "female", "reading": false}),
                )
            }
            Probe::AstrologyChart => (
                "/api/astrology",
                json!({"birth": {"datetime": format!("1990-05-{day:02}T12:30"),
                    "timezone": "Asia/Seoul", "latitude": 37.5665, "longitude": 126.978},
                    "reading": false}),
            ),
            Probe::Cached => (
                "/api/saju",
                json!({"birth": birth, "sex": "female", "locale": "en", "mode": "compose",
                    "question": format!("{} (bench {} cached)", QUESTIONS[0], self.run)}),
            ),
            Probe::Composed | Probe::StreamCompose | Probe::StreamGenerate => {
                let mode = if probe == Probe::StreamGenerate {
                    "generate"
                } else {
                    "compose"
                };
                let question = format!(
                    "{} (bench {} #{})",
                    QUESTIONS[i % QUESTIONS.len()],
                    self.run,
                    self.seq.fetch_add(1, Ordering::Relaxed)
                );
                (
                    "/api/saju",
                    json!({"birth": birth, "sex": if i.is_multiple_of(2) { "female" } else { "male" },
                        "locale": "en", "mode": mode, "question": question}),
                )
            }
        }
    }

    async fn one(&self, probe: Probe, i: usize) -> Sample {
        let (path, body) = self.body(probe, i);
        let stream = matches!(probe, Probe::StreamCompose | Probe::StreamGenerate);
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header(
                "accept",
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body.to_string());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let start = Instant::now();
        let result = match req.send().await {
            Err(e) => Err(format!("request failed: {e}")),
            Ok(r) if !r.status().is_success() => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                Err(format!("HTTP {status}: {}", truncate(&text)))
            }
            Ok(r) if stream => read_sse(r, start).await,
            Ok(r) => match r.bytes().await {
                Err(e) => Err(format!("reading the body: {e}")),
                Ok(bytes) => check_json(probe, &bytes).map(|()| None),
            },
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok(first_ms) => Sample {
                ms,
                first_ms,
                error: None,
            },
            Err(e) => Sample {
                ms,
                first_ms: None,
                error: Some(e),
            },
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A JSON answer must carry what the probe asked for.
fn check_json(probe: Probe, bytes: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match probe {
        Probe::SajuChart | Probe::AstrologyChart if v["chart"].is_object() => Ok(()),
        Probe::Cached if v["meta"]["cached"] != true => Err("not served from the cache".into()),
        Probe::Composed if v["meta"]["cached"] == true => Err("unexpected cache hit".into()),
        Probe::Cached | Probe::Composed
            if v["reading"]["text"]
                .as_str()
                .is_some_and(|t| !t.trim().is_empty()) =>
        {
            Ok(())
        }
        _ => Err(format!("unexpected answer: {}", truncate(&v.to_string()))),
    }
}

/// Read an SSE reading to its `done` event: milliseconds to the first `delta`.
async fn read_sse(mut r: reqwest::Response, start: Instant) -> Result<Option<f64>, String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut first = None;
    loop {
        let chunk = r
            .chunk()
            .await
            .map_err(|e| format!("reading the stream: {e}"))?;
        let Some(chunk) = chunk else {
            return Err("the stream ended without a done event".into());
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = find_blank_line(&buf) {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim)
                .unwrap_or("");
            match event {
                "delta" if first.is_none() => {
                    first = Some(start.elapsed().as_secs_f64() * 1e3);
                }
                "done" if block.contains(r#""cached":true"#) => {
                    return Err("unexpected cache hit".into());
                }
                "done" if first.is_some() => return Ok(first),
                "done" => return Err("done without any delta".into()),
                "error" => return Err(format!("error event: {}", truncate(&block))),
                _ => {}
            }
        }
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// `n` requests of `probe` from `clients` concurrent clients.
async fn level(client: &Arc<Client>, probe: Probe, clients: usize, n: usize) -> Level {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.push(client.one(probe, i).await);
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(n);
    for w in workers {
        match w.await {
            Ok(s) => samples.extend(s),
            Err(e) => samples.push(Sample {
                error: Some(format!("client task: {e}")),
                ..Sample::default()
            }),
        }
    }
    Level {
        samples,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn ok_values(level: &Level, first: bool) -> Vec<f64> {
    level
        .samples
        .iter()
        .filter(|s| s.error.is_none())
        .filter_map(|s| if first { s.first_ms } else { Some(s.ms) })
        .collect()
}

/// Every row at every level.
async fn measure(client: Arc<Client>, args: &ReadingsBenchArgs) -> anyhow::Result<Vec<Row>> {
    // Warm the cached reading (and page in the corpus and the compose path).
    let warm = client.one(Probe::Cached, 0).await;
    if let Some(e) = warm
        .error
        .filter(|e| !e.contains("not served from the cache"))
    {
        anyhow::bail!("the warm-up reading failed: {e}");
    }
    let mut rows = Vec::new();
    for &c in &args.clients {
        let c = c.max(1);
        let n = args.requests.max(c);
        for (name, probe) in [
            ("saju chart", Probe::SajuChart),
            ("astrology chart", Probe::AstrologyChart),
            ("reading cached", Probe::Cached),
            ("reading composed", Probe::Composed),
        ] {
            let l = level(&client, probe, c, n).await;
            let slo_bound = matches!(probe, Probe::SajuChart | Probe::AstrologyChart);
            rows.push(row(name, c, slo_bound, ok_values(&l, false), &l));
            progress(args, rows.last());
        }
        let mut streams = vec![("composed".to_owned(), Probe::StreamCompose, n)];
        if !args.no_generate {
            let g = if args.generate_requests == 0 {
                c
            } else {
                args.generate_requests.max(1)
            };
            let name = match args.generate_max_tokens {
                0 => "generate".to_owned(),
                t => format!("generate ≤{t} tokens"),
            };
            streams.push((name, Probe::StreamGenerate, g));
        }
        for (name, probe, n) in streams {
            let l = level(&client, probe, c, n).await;
            rows.push(row(
                &format!("stream {name}: first delta"),
                c,
                false,
                ok_values(&l, true),
                &l,
            ));
            rows.push(row(
                &format!("stream {name}: full"),
                c,
                false,
                ok_values(&l, false),
                &l,
            ));
            progress(args, rows.last());
        }
    }
    Ok(rows)
}

fn progress(args: &ReadingsBenchArgs, row: Option<&Row>) {
    if let Some(r) = row.filter(|_| !args.json) {
        eprintln!(
            "{} × {}: p95 {:.1} ms ({} errors)",
            r.row, r.clients, r.p95_ms, r.errors
        );
    }
}

/// The report as a Markdown table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "target: {}\nretrieval: {}\ngenerator: {}\n\n",
        report.target, report.retrieval, report.generator
    );
    out.push_str(&format!(
        "| row | clients | n | errors | p50 ms | p95 ms | p99 ms | req/s | SLO p95 < {:.0} ms |\n",
        report.slo_p95_ms
    ));
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in &report.rows {
        let slo = match (r.slo_bound, r.under_slo) {
            (true, true) => "PASS".to_owned(),
            (true, false) => "FAIL".to_owned(),
            (false, true) => "under (ref.)".to_owned(),
            (false, false) if r.errors > 0 => "errors (ref.)".to_owned(),
            (false, false) => format!("{:.1}× over (ref.)", r.p95_ms / report.slo_p95_ms),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.row, r.clients, r.requests, r.errors, r.p50_ms, r.p95_ms, r.p99_ms, r.rps, slo
        ));
    }
    for r in &report.rows {
        if let Some(e) = &r.first_error {
            out.push_str(&format!("error: {} × {}: {e}\n", r.row, r.clients));
        }
    }
    out
}

/// A server in this process: the real models, the data dir's index (or keyword search over the
/// corpus), no quota and no rate limits. Returns its state and base URL.
async fn start_local(args: &ReadingsBenchArgs) -> anyhow::Result<(SharedState, String, String)> {
    let mut serve = ServeArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data: args.data.clone(),
        engine: args.engine.clone(),
        ..ServeArgs::default()
    };
    serve.auth.auth_mode = crate::auth::AuthMode::Off;
    serve.retrieval.store = args.store.clone();
    // The generator is loaded below (capped when asked), not by the server.
    serve.engine.gen_model = "none".into();
    let mut config = ServeConfig::from_args(&serve)?;
    config.ratelimit = crate::ratelimit::RateLimitConfig::unlimited();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let spec = args.store.spec(&config.data_dir)?;
    let state = Arc::new(AppState::new(config));
    crate::api::store::open_at_startup(&state).await;
    crate::engine::start_loading(&state);
    let embedder = wait_for_model(&state, "embedder", &state.config.engine.embed_model)
        .await
        .and_then(|()| {
            state
                .embedder
                .get()
                .cloned()
                .ok_or_else(|| "no embedder".to_owned())
        });
    let opened = crate::rag::eval::open_retriever_with(&args.corpus, Some(&spec), embedder)
        .await
        .context("opening retrieval")?;
    let description = opened.description.clone();
    state.set_retriever(Arc::new(opened.retriever));
    state.set_component(
        crate::retrieval::startup::COMPONENT,
        true,
        description.clone(),
    );
    if !args.no_generate && !args.engine.gen_model.eq_ignore_ascii_case("none") {
        let (engine, dir) = (args.engine.clone(), state.config.data_dir.clone());
        let cap = args.generate_max_tokens;
        let loaded = tokio::task::spawn_blocking(move || {
            let gauge = prometheus::GaugeVec::new(
                prometheus::Opts::new("bench_generator_load_seconds", "Load time."),
                &["model"],
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let metrics = crate::engine::scheduler::GenMetrics::new();
            let g = crate::engine::genload::load_generator(&engine, &dir, &metrics, &gauge)?;
            let g: Arc<dyn Generate> = if cap > 0 {
                Arc::new(Capped { inner: g, cap })
            } else {
                g
            };
            anyhow::Ok(g)
        })
        .await?;
        match loaded {
            Ok(g) => {
                let _ = state.generator.set(g);
                state.set_component("generator", true, "loaded by the bench");
            }
            Err(e) => eprintln!("generator: {e}; the generate rows will fail"),
        }
    }
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    let app = crate::api::app(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok((state, format!("http://{addr}"), description))
}

/// A generator that stops every request after `cap` tokens.
struct Capped {
    inner: Arc<dyn Generate>,
    cap: usize,
}

impl Generate for Capped {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn file_hash(&self) -> &str {
        self.inner.file_hash()
    }
    fn languages(&self) -> &[String] {
        self.inner.languages()
    }
    fn submit(&self, mut request: GenRequest) -> Result<GenStream, EngineError> {
        request.params.max_tokens = request.params.max_tokens.min(self.cap);
        self.inner.submit(request)
    }
}

/// Wait until the component `name` has loaded (Ok) or failed / is off (Err, why).
async fn wait_for_model(state: &SharedState, name: &str, spec: &str) -> Result<(), String> {
    if spec.eq_ignore_ascii_case("none") {
        return Err(format!("--{name} none"));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match state.components().get(name) {
            Some(c) if c.ready => return Ok(()),
            Some(c) if c.detail.starts_with("failed") => return Err(c.detail.clone()),
            None => return Err(format!("no {name} is loading")),
            _ if Instant::now() > deadline => return Err(format!("{name} still loading")),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn run(args: ReadingsBenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (local, base, retrieval) = match &args.base_url {
            Some(url) => (
                None,
                url.trim_end_matches('/').to_owned(),
                "as deployed".to_owned(),
            ),
            None => {
                let (state, base, retrieval) = start_local(&args).await?;
                (Some(state), base, retrieval)
            }
        };
        let generator = match &local {
            Some(state) => match state.generator.get() {
                Some(g) => g.model().to_owned(),
                None => "none".to_owned(),
            },
            None => "as deployed".to_owned(),
        };
        if !args.json {
            eprintln!("benchmarking {base} (retrieval: {retrieval}; generator: {generator})");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout_secs.max(1)))
            .pool_max_idle_per_host(64)
            .build()?;
        let client = Arc::new(Client {
            http,
            base: base.clone(),
            token: args.session_token.clone().filter(|t| !t.is_empty()),
            run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            seq: AtomicUsize::new(0),
        });
        let rows = measure(client, &args).await?;
        let report = Report {
            target: match &local {
                Some(_) => format!("in-process server at {base}"),
                None => base,
            },
            retrieval,
            generator,
            slo_p95_ms: SLO_P95_MS,
            rows,
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", table(&report));
        }
        let errors = report.rows.iter().any(|r| r.errors > 0);
        Ok(if errors {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
