//! Process faults against the real binary (issue #8, "Faults"):
//! - SIGTERM while 20 generated readings stream over SSE: every stream ends with `done` or an
//!   `error` event (never cut without one), the process exits 0 within the grace period, and
//!   after a restart on the same data dir and Redis every request is either a clean cache hit
//!   holding the whole reading or a miss — never a truncated text.
//! - kill -9 during `starpillar index`: the re-run resumes, and the store then holds exactly
//!   the points of a clean index of the same corpus (ids and count), with a consistent manifest.
//! - kill -9 during a burst of signed Stripe webhooks (SQLite, and PostgreSQL when
//!   `DATABASE_URL_TEST` is set): every acknowledged event is stored, and after Stripe-style
//!   redelivery of the unacknowledged ones every event is stored exactly once and the
//!   subscriptions end in the right state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use starpillar::config::Secret;
use starpillar::store::Store;

use crate::common::tempdir::TempDir;
use crate::smoke::{Server, collect_lines};

/// Variables of the caller's environment that would change the binaries under test.
const SCRUBBED_ENV: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "SENTRY_DSN",
    "NEXTAUTH_SECRET",
    "AUTH_SECRET",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "ENABLE_WEBHOOKS",
    "STARPILLAR_LISTEN",
    "STARPILLAR_DATA_DIR",
    "STARPILLAR_EMBED_MODEL",
    "STARPILLAR_GEN_MODEL",
    "STARPILLAR_CACHE_REDIS_URL",
    "STARPILLAR_RATE_LIMITS",
    "STARPILLAR_PLAN_QUOTAS",
];

/// Where fetched models live (shared with the other tests, so nothing is downloaded twice).
fn model_cache() -> String {
    std::env::var("STARPILLAR_CACHE")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/starpillar")
        })
}

/// `starpillar <args>` with a scrubbed environment plus `envs`.
fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_starpillar"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("STARPILLAR_CACHE", model_cache());
    cmd.envs(envs.iter().copied());
    cmd
}

/// Start `serve` on a free port over `data` with `args` (the models are the caller's).
fn serve(data: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
    let data = data.to_str().expect("utf-8 path");
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--log-format", "json"];
    all.extend(["--data-dir", data]);
    all.extend(args);
    let child = command(&all, envs).spawn().expect("start starpillar serve");
    Server::attach(child, Duration::from_secs(120))
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success());
}

/// Wait for `child` to exit, at most `within`.
fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// --- 1. SIGTERM during 20 streaming readings ---------------------------------------------

/// A Redis for the cache: `REDIS_URL_TEST`, else a private `redis-server` (killed on drop),
/// else none.
struct Redis {
    url: String,
    own: Option<Child>,
}

impl Redis {
    fn find(dir: &Path) -> Option<Self> {
        if let Ok(url) = std::env::var("REDIS_URL_TEST")
            && !url.is_empty()
        {
            return Some(Self { url, own: None });
        }
        let port = crate::smoke::free_port().to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // Killed on drop, also when it never answers.
        let redis = Self {
            url: format!("redis://127.0.0.1:{port}"),
            own: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.own {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One reading request: a distinct birth date per index, so every key differs.
fn reading_body(i: usize, run: &str) -> String {
    json!({
        "birth": {"date": format!("19{:02}-0{}-1{}", 60 + i, 1 + i % 9, i % 10), "time": "08:15",
            "calendar": "solar", "timezone": "Asia/Seoul", "longitude": 126.978},
        "sex": if i.is_multiple_of(2) { "female" } else { "male" },
        "locale": "en", "mode": "generate",
        "question": format!("What does my chart say about work? ({run})"),
    })
    .to_string()
}

/// What a client saw of one SSE stream.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The first comment (`reading` or `reading (cached)`).
    comment: Option<String>,
    events: Vec<(String, Value)>,
    /// The body ended cleanly (as opposed to a transport error).
    clean_end: bool,
}

impl Seen {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter(|(e, _)| e == "delta")
            .filter_map(|(_, d)| d["text"].as_str())
            .collect()
    }

    fn deltas(&self) -> usize {
        self.events.iter().filter(|(e, _)| e == "delta").count()
    }

    fn last(&self) -> Option<&str> {
        self.events.last().map(|(e, _)| e.as_str())
    }
}

/// Parse complete SSE frames out of `buf` into `seen`.
fn parse_frames(buf: &mut String, seen: &mut Seen) {
    while let Some(end) = buf.find("\n\n") {
        let frame: String = buf.drain(..end + 2).collect();
        let (mut name, mut data) = (None, String::new());
        for line in frame.lines() {
            if let Some(c) = line.strip_prefix(':') {
                seen.comment.get_or_insert_with(|| c.trim().to_owned());
            } else if let Some(n) = line.strip_prefix("event:") {
                name = Some(n.trim().to_owned());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        if let Some(name) = name {
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            seen.events.push((name, value));
        }
    }
}

/// Post a reading with `Accept: text/event-stream` and read the stream, publishing progress
/// into `progress`; with `probe`, stop after the first comment unless it is a cache hit.
async fn stream(
    http: reqwest::Client,
    url: String,
    body: String,
    progress: Arc<Mutex<Seen>>,
    probe: bool,
) -> Seen {
    let response = http
        .post(url)
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send the reading");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let mut response = response;
    let mut buf = String::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                buf.push_str(&String::from_utf8_lossy(&bytes));
                let mut seen = progress.lock().expect("progress");
                parse_frames(&mut buf, &mut seen);
                if probe
                    && seen
                        .comment
                        .as_deref()
                        .is_some_and(|c| c != "reading (cached)")
                {
                    return seen.clone();
                }
            }
            Ok(None) => {
                let mut seen = progress.lock().expect("progress");
                seen.clean_end = true;
                return seen.clone();
            }
            Err(_) => return progress.lock().expect("progress").clone(),
        }
    }
}

const STREAMS: usize = 20;
const GRACE_SECS: u64 = 3;

fn reading_server(data: &Path, redis: Option<&str>, prefix: &str) -> Server {
    let grace = GRACE_SECS.to_string();
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
    let streams = STREAMS.to_string();
    let mut args = vec![
        "--embed-model",
        "none",
        "--gen-model",
        "smollm2-135m-instruct",
        "--gen-max-streams",
        &streams,
        "--corpus-dir",
        corpus,
        "--plan-quotas",
        "anonymous=1000",
        "--rate-limits",
        "ai=1000/60",
        "--shutdown-grace-secs",
        &grace,
        "--cache-prefix",
        prefix,
    ];
    if let Some(url) = redis {
        args.extend(["--cache-redis-url", url]);
    }
    serve(data, &args, &[])
}

/// The generator and the keyword index are up (`/readyz` lists both).
async fn wait_generator(server: &Server) {
    assert!(
        server.wait_ready(Duration::from_secs(120)).await,
        "not ready: {:?}",
        server.log_lines()
    );
    let ready: Value = reqwest::get(format!("{}/readyz", server.url()))
        .await
        .expect("readyz")
        .text()
        .await
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    assert_eq!(
        ready["components"]["generator"]["ready"], true,
        "the generator must be loaded: {ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_20_streaming_readings_ends_every_stream_and_caches_nothing_partial() {
    let started = Instant::now();
    let dir = TempDir::new();
    let redis = Redis::find(dir.path());
    let redis_url = redis.as_ref().map(|r| r.url.as_str());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("sp-faults-{run}");
    let data = dir.path().join("data");
    let mut server = reading_server(&data, redis_url, &prefix);
    wait_generator(&server).await;
    let url = format!("{}/api/saju", server.url());
    let http = reqwest::Client::new();
    let progress: Vec<Arc<Mutex<Seen>>> = (0..STREAMS).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = progress
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let task = stream(
                http.clone(),
                url.clone(),
                reading_body(i, &run),
                p.clone(),
                false,
            );
            tokio::spawn(task)
        })
        .collect();
    // SIGTERM once every stream has its first delta and generation is under way (some stream
    // has generated text beyond the templated opening), or after 10 s at most.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: Vec<Seen> = progress
            .iter()
            .map(|p| p.lock().expect("p").clone())
            .collect();
        let all_started = seen.iter().all(|s| s.deltas() >= 1);
        let generating = seen.iter().any(|s| s.deltas() >= 3);
        if all_started && (generating || Instant::now() > deadline) {
            let ended = seen.iter().filter(|s| s.last() == Some("done")).count();
            eprintln!(
                "SIGTERM at {:.1} s: deltas per stream {:?}, {ended} already done",
                started.elapsed().as_secs_f64(),
                seen.iter().map(Seen::deltas).collect::<Vec<_>>()
            );
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "streams never started: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&server.child);
    let signalled = Instant::now();
    let mut ends: Vec<Seen> = Vec::new();
    for task in tasks {
        let seen = tokio::time::timeout(Duration::from_secs(GRACE_SECS + 20), task)
            .await
            .expect("a stream stayed open past the grace period")
            .expect("stream task");
        ends.push(seen);
    }
    let status = tokio::task::block_in_place(|| {
        wait_exit(&mut server.child, Duration::from_secs(GRACE_SECS + 10))
    });
    let exited = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("serve still running {exited:?} after SIGTERM"));
    assert!(status.success(), "exit status {status}");
    let (mut done, mut cut) = (0, 0);
    for (i, seen) in ends.iter().enumerate() {
        assert!(seen.clean_end, "stream {i} was cut: {seen:?}");
        let terminal: Vec<usize> = (0..seen.events.len())
            .filter(|&k| matches!(seen.events[k].0.as_str(), "done" | "error"))
            .collect();
        assert_eq!(
            terminal,
            vec![seen.events.len() - 1],
            "stream {i} must end with exactly one terminal event: {seen:?}"
        );
        match seen.last() {
            Some("done") => done += 1,
            _ => {
                let code = &seen.events[seen.events.len() - 1].1["error"]["code"];
                assert_eq!(code, "shutting_down", "stream {i}: {seen:?}");
                cut += 1;
            }
        }
    }
    eprintln!(
        "after SIGTERM: {done} streams done, {cut} ended with error shutting_down; exit 0 \
         after {:.2} s (grace {GRACE_SECS} s)",
        exited.as_secs_f64()
    );
    assert!(exited < Duration::from_secs(GRACE_SECS + 5), "{exited:?}");
    let logs = server.log_lines();
    assert!(
        logs.iter().any(|l| l.contains("starpillar stopped")),
        "{logs:?}"
    );
    drop(server);

    // Restart on the same data dir and Redis: a repeat is a full hit or a miss.
    if redis.is_none() {
        eprintln!("no Redis (REDIS_URL_TEST unset, no redis-server): the restart half is skipped");
        return;
    }
    let server = reading_server(&data, redis_url, &prefix);
    wait_generator(&server).await;
    let url = format!("{}/api/saju", server.url());
    let (mut hits, mut misses) = (0, 0);
    for (i, before) in ends.iter().enumerate() {
        let again = stream(
            http.clone(),
            url.clone(),
            reading_body(i, &run),
            Arc::default(),
            true,
        )
        .await;
        if again.comment.as_deref() != Some("reading (cached)") {
            misses += 1;
            continue;
        }
        hits += 1;
        assert_eq!(again.last(), Some("done"), "cached replay {i}: {again:?}");
        let cached = again.text();
        if before.last() == Some("done") {
            assert_eq!(cached, before.text(), "stream {i}: cached text differs");
        } else {
            // Only a reading that finished may be cached; it extends what the client saw.
            assert!(
                cached.starts_with(&before.text()) && cached.len() > before.text().len(),
                "stream {i}: a cut reading left a cache entry: {cached:?}"
            );
        }
        let done_meta = &again.events[again.events.len() - 1].1["meta"];
        assert_eq!(done_meta["mode"], "generate", "{done_meta}");
    }
    eprintln!(
        "after restart: {hits} clean hits, {misses} misses; test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(hits + misses, STREAMS);
}

// --- 2. kill -9 during indexing ----------------------------------------------------------

/// Copy the first `n` documents of the bundled corpus (sorted paths, eval set excluded).
fn corpus_copy(to: &Path, n: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read corpus") {
            let path = entry.expect("entry").path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "eval") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md")
                && path.file_name().is_some_and(|n| n != "README.md")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    for f in files.into_iter().take(n) {
        let rel = f.strip_prefix(&root).expect("under corpus");
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&f, &dest).expect("copy");
    }
}

/// `starpillar index` of `corpus` into the edge store `store`.
fn index_command(corpus: &Path, store: &Path, data: &Path, manifest: &Path) -> Command {
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let edge = format!("edge://{}", s(store));
    let args = [
        "index".to_owned(),
        s(corpus),
        "--store".into(),
        edge,
        "--batch".into(),
        "2".into(),
        "--threads".into(),
        "1".into(),
        "--data-dir".into(),
        s(data),
        "--manifest".into(),
        s(manifest),
        "--log-format".into(),
        "json".into(),
        "--log".into(),
        "info,starpillar::retrieval::indexer=debug".into(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    command(&refs, &[])
}

fn read_manifest(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("manifest written");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// Every (id, source) in an edge store, and its point count.
async fn edge_points(store: &Path) -> (Vec<(uuid::Uuid, String)>, usize, String) {
    use starpillar::retrieval::store::StoreSpec;
    let store = StoreSpec::Edge(store.to_path_buf())
        .open()
        .expect("open edge");
    let ids = store.list_ids(None).await.expect("list ids");
    let count = store.count(&Default::default()).await.expect("count");
    let meta = store.meta().await.expect("meta").expect("meta written");
    (ids, count, meta.corpus_version)
}

fn run_index(corpus: &Path, store: &Path, data: &Path, manifest: &Path) {
    let out = index_command(corpus, store, data, manifest)
        .stdout(Stdio::piped())
        .output()
        .expect("run index");
    assert!(
        out.status.success(),
        "index failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_indexing_then_rerun_equals_a_clean_index() {
    let started = Instant::now();
    let dir = TempDir::new();
    let corpus = dir.path().join("corpus");
    corpus_copy(&corpus, 3);
    let data = dir.path().join("data");
    let (store, manifest) = (dir.path().join("edge"), dir.path().join("manifest.json"));
    let mut child = index_command(&corpus, &store, &data, &manifest)
        .spawn()
        .expect("start index");
    let logs = collect_lines(&mut child);
    // Kill it once two batches are durable.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (done, total) = loop {
        let progress = logs.lock().expect("logs").iter().rev().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some((v["done"].as_u64()?, v["total"].as_u64()?))
        });
        if let Some((done, total)) = progress
            && done >= 4
        {
            child.kill().expect("SIGKILL");
            break (done, total);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("index ended before it could be killed ({status}): {logs:?}");
        }
        assert!(Instant::now() < deadline, "no progress: {logs:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = child.wait().expect("wait");
    assert!(!status.success(), "killed mid-way: {status}");
    assert!(done < total, "killed before the end ({done}/{total})");
    assert!(!manifest.exists(), "no manifest from a killed run");
    eprintln!("SIGKILL after {done}/{total} chunks");

    // The re-run resumes: it keeps what was durable and upserts the rest.
    run_index(&corpus, &store, &data, &manifest);
    let resumed = read_manifest(&manifest);
    let (ids, count, version) = edge_points(&store).await;
    let chunks = &resumed["chunks"];
    let total_chunks = chunks["total"].as_u64().expect("total");
    assert_eq!(count as u64, total_chunks, "{resumed}");
    assert_eq!(ids.len(), count, "list and count agree");
    let unique: BTreeSet<uuid::Uuid> = ids.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), ids.len(), "duplicate points");
    assert!(
        chunks["unchanged"].as_u64().expect("unchanged") >= done,
        "the batches before the kill were kept: {resumed}"
    );
    assert_eq!(
        chunks["unchanged"].as_u64().expect("u") + chunks["upserted"].as_u64().expect("up"),
        total_chunks,
        "{resumed}"
    );
    assert_eq!(chunks["deleted"], 0, "{resumed}");
    assert_eq!(resumed["corpus_version"].as_str(), Some(version.as_str()));

    // A clean index of the same corpus holds the same points.
    let (clean_store, clean_manifest) = (dir.path().join("clean"), dir.path().join("clean.json"));
    run_index(&corpus, &clean_store, &data, &clean_manifest);
    let clean = read_manifest(&clean_manifest);
    let (clean_ids, clean_count, clean_version) = edge_points(&clean_store).await;
    let by_id = |v: &[(uuid::Uuid, String)]| -> BTreeMap<uuid::Uuid, String> {
        v.iter().cloned().collect()
    };
    assert_eq!(by_id(&ids), by_id(&clean_ids), "same ids and sources");
    assert_eq!(count, clean_count);
    assert_eq!(version, clean_version);
    assert_eq!(clean["corpus_version"], resumed["corpus_version"]);
    assert_eq!(clean["chunks"]["total"], resumed["chunks"]["total"]);
    // And a third run finds nothing to do.
    run_index(&corpus, &store, &data, &manifest);
    let again = read_manifest(&manifest);
    assert_eq!(again["chunks"]["upserted"], 0, "{again}");
    assert_eq!(again["chunks"]["unchanged"], clean["chunks"]["total"]);
    eprintln!(
        "resumed index equals a clean one ({count} points); test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// --- 3. kill -9 during a webhook burst ---------------------------------------------------

const SUBS: usize = 40;
const PRICE: &str = "price_faults_premium";

/// A signed delivery of `payload` (signed now, as Stripe signs each attempt).
fn signed(payload: &str) -> String {
    use hmac::{Hmac, Mac};
    let now = chrono::Utc::now().timestamp();
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(crate::billing::WHSEC.as_bytes()).expect("key");
    mac.update(format!("{now}.{payload}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={now},v1={hex}")
}

/// ~200 events: per subscription created → updated (active) → invoice.paid, every fourth one
/// then deleted; plus events of types the server ignores. (id, sub, payload)
fn burst(run: &str) -> Vec<(String, String)> {
    let t0 = 1_764_000_000;
    let mut events = Vec::new();
    for s in 0..SUBS {
        let (sub, user) = (format!("sub_{run}_{s}"), format!("u_{run}_{s}"));
        let subscription = |id: String, kind: &str, created: i64, status: &str| {
            let payload = json!({
                "id": id, "object": "event", "type": format!("customer.subscription.{kind}"),
                "created": created, "data": {"object": {
                    "id": sub, "object": "subscription", "customer": format!("cus_{user}"),
                    "status": status, "current_period_end": created + 30 * 86_400,
                    "metadata": {"userId": user, "plan": "premium"},
                    "items": {"data": [{"id": "si_1", "price": {"id": PRICE}}]}
                }}
            });
            (id, payload.to_string())
        };
        events.push(subscription(
            format!("evt_{run}_c{s}"),
            "created",
            t0,
            "incomplete",
        ));
        events.push(subscription(
            format!("evt_{run}_u{s}"),
            "updated",
            t0 + 10,
            "active",
        ));
        let paid = json!({
            "id": format!("evt_{run}_p{s}"), "object": "event", "type": "invoice.paid",
            "created": t0 + 20, "data": {"object": {
                "id": format!("in_{run}_{s}"), "object": "invoice", "subscription": sub,
                "customer": format!("cus_{user}"),
                "lines": {"data": [{"period": {"start": t0, "end": t0 + 31 * 86_400}}]}
            }}
        });
        events.push((format!("evt_{run}_p{s}"), paid.to_string()));
        if s.is_multiple_of(4) {
            events.push(subscription(
                format!("evt_{run}_d{s}"),
                "deleted",
                t0 + 30,
                "canceled",
            ));
        }
        let other = json!({"id": format!("evt_{run}_o{s}"), "object": "event",
            "type": "customer.updated", "created": t0 + 5, "data": {"object": {"id": "x"}}});
        events.push((format!("evt_{run}_o{s}"), other.to_string()));
    }
    events
}

/// Deterministic Fisher–Yates (xorshift).
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Post `deliveries` (indexes into `events`) with `workers` concurrent senders; returns the
/// indexes acknowledged with a 2xx. `on_ack` runs after each acknowledgement.
async fn deliver_all(
    base: String,
    events: Arc<Vec<(String, String)>>,
    deliveries: Vec<usize>,
    workers: usize,
    acked: Arc<Mutex<Vec<usize>>>,
) {
    let queue = Arc::new(Mutex::new(deliveries));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (queue, events, acked, http) =
            (queue.clone(), events.clone(), acked.clone(), http.clone());
        let url = format!("{base}/api/webhook/stripe");
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().expect("queue").pop() else {
                    break;
                };
                let payload = &events[i].1;
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("stripe-signature", signed(payload))
                    .body(payload.clone())
                    .send()
                    .await;
                if let Ok(r) = sent
                    && r.status().is_success()
                    && r.bytes().await.is_ok()
                {
                    acked.lock().expect("acked").push(i);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
}

fn webhook_server(data: &Path, db: &Option<String>) -> Server {
    let mut envs = vec![
        ("STRIPE_WEBHOOK_SECRET", crate::billing::WHSEC),
        ("ENABLE_WEBHOOKS", "true"),
        ("STRIPE_PRICE_PREMIUM", PRICE),
    ];
    if let Some(url) = db {
        envs.push(("DATABASE_URL", url.as_str()));
    }
    serve(
        data,
        &[
            "--embed-model",
            "none",
            "--gen-model",
            "none",
            "--no-auto-index",
            "--rate-limits",
            "default=100000/60",
        ],
        &envs,
    )
}

/// Stored event ids with their row counts.
async fn stored_events(store: &Store) -> BTreeMap<String, i64> {
    use sqlx::Row;
    let pool = store.pool().await.expect("pool");
    sqlx::query("SELECT id, COUNT(*) FROM stripe_events GROUP BY id")
        .fetch_all(pool)
        .await
        .expect("query")
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_webhook_burst_loses_and_duplicates_nothing() {
    for db in crate::store::backends().await {
        let started = Instant::now();
        let dir = TempDir::new();
        let data = dir.path().join("data");
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let events = Arc::new(burst(&run));
        // Every event once, plus a second delivery of every fifth (Stripe retries), shuffled.
        let mut deliveries: Vec<usize> = (0..events.len())
            .chain((0..events.len()).step_by(5))
            .collect();
        let seed = 0x5eed_f00d;
        shuffle(&mut deliveries, seed);
        let backend = if db.is_some() { "postgres" } else { "sqlite" };
        eprintln!(
            "{backend}: {} events, {} deliveries, seed {seed:#x}",
            events.len(),
            deliveries.len()
        );

        let mut server = webhook_server(&data, &db);
        let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
        let kill_after = deliveries.len() * 2 / 5;
        let sending = tokio::spawn(deliver_all(
            server.url(),
            events.clone(),
            deliveries.clone(),
            8,
            acked.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().expect("acked").len() < kill_after {
            assert!(
                Instant::now() < deadline,
                "the burst stalled: {:?}",
                server.log_lines()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        sending.await.expect("burst");
        let acked_before: BTreeSet<usize> = acked.lock().expect("acked").iter().copied().collect();
        drop(server);

        let url = match &db {
            Some(url) => url.clone(),
            None => starpillar::store::StoreArgs::default()
                .resolve(&data)
                .expect("sqlite url")
                .expose()
                .to_owned(),
        };
        let store = Store::new(Secret::new(url));
        let stored = stored_events(&store).await;
        for &i in &acked_before {
            assert_eq!(
                stored.get(&events[i].0),
                Some(&1),
                "{backend}: acknowledged event {} is not stored once",
                events[i].0
            );
        }
        eprintln!(
            "{backend}: killed after {} acknowledged deliveries ({} distinct events); {} stored",
            acked.lock().expect("acked").len(),
            acked_before.len(),
            stored.len()
        );

        // Restart; Stripe redelivers every event it never saw acknowledged.
        let server = webhook_server(&data, &db);
        let mut redeliver: Vec<usize> = (0..events.len())
            .filter(|i| !acked_before.contains(i))
            .collect();
        shuffle(&mut redeliver, seed ^ 1);
        let again: Arc<Mutex<Vec<usize>>> = Arc::default();
        deliver_all(
            server.url(),
            events.clone(),
            redeliver.clone(),
            8,
            again.clone(),
        )
        .await;
        let again: BTreeSet<usize> = again.lock().expect("again").iter().copied().collect();
        let missing: Vec<&usize> = redeliver.iter().filter(|i| !again.contains(i)).collect();
        assert!(
            missing.is_empty(),
            "{backend}: redeliveries refused: {missing:?}"
        );

        let stored = stored_events(&store).await;
        let want: BTreeMap<String, i64> = events.iter().map(|(id, _)| (id.clone(), 1)).collect();
        assert_eq!(stored, want, "{backend}: every event stored exactly once");
        for s in 0..SUBS {
            let sub = format!("sub_{run}_{s}");
            let row = store.subscription(&sub).await.expect("subscription");
            let (user, plan, status, _) = row.unwrap_or_else(|| panic!("{sub} missing"));
            let user = user.expect("user linked");
            let deleted = s.is_multiple_of(4);
            assert_eq!(status, if deleted { "canceled" } else { "active" }, "{sub}");
            assert_eq!(plan.as_deref(), Some("premium"), "{sub}");
            let holds = store.holdings(&user).await.expect("holdings");
            let plans: Vec<&str> = holds.iter().map(|h| h.plan.as_str()).collect();
            let expected: &[&str] = if deleted { &[] } else { &["premium"] };
            assert_eq!(plans, expected, "{sub} of {user}");
        }
        eprintln!(
            "{backend}: {} redelivered, all {} events stored once, state consistent; {:.1} s",
            redeliver.len(),
            events.len(),
            started.elapsed().as_secs_f64()
        );
        drop(server);
    }
}
