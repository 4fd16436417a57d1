//! `starpillar smoke --base-url URL`: the runbook's smoke tests against any deployment —
//! health, readiness, versions, the database, a saju and an astrology chart, a reading
//! (uncached, then the same request cached) and, given Stripe test keys, a test-mode checkout
//! and a webhook replay (a synthetic signed event posted twice: accepted once, deduplicated
//! once). Prints one row per check (result, latency) and exits non-zero if any check failed.
//!
//! Readiness is polled for up to `--wait-ready` seconds (a fresh server loads its models
//! first). Two calls are metered — the fresh reading, charged one unit of the caller's daily
//! quota, and the same reading again, a free cache hit. The quota is checked before the cache,
//! so an anonymous caller (3 a day by default) passes every check twice a day from one address;
//! a third run spends the last unit on its fresh reading and is refused the cached one (402).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use serde_json::{Value, json};

use crate::config::Secret;

/// `starpillar smoke` flags.
#[derive(Debug, Clone, Args)]
pub struct SmokeArgs {
    /// The deployment to test, e.g. `https://api.example.com` or `http://127.0.0.1:8080`.
    #[arg(long, env = "STARPILLAR_SMOKE_BASE_URL", value_name = "URL")]
    pub base_url: String,
    /// A Stripe **test-mode** secret key (`sk_test_…`/`rk_test_…`; live keys are refused):
    /// enables the checkout check, which then reads the session back from Stripe.
    #[arg(
        long,
        env = "STARPILLAR_SMOKE_STRIPE_SECRET_KEY",
        hide_env_values = true
    )]
    pub stripe_secret_key: Option<Secret>,
    /// The deployment's `whsec_…` webhook secret: enables the webhook replay check.
    #[arg(
        long,
        env = "STARPILLAR_SMOKE_STRIPE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub stripe_webhook_secret: Option<Secret>,
    /// Where the checkout session is read back (a local stand-in in tests).
    #[arg(long, env = "STRIPE_API_BASE", default_value = crate::billing::STRIPE_API_BASE)]
    pub stripe_api_base: String,
    /// The whitelisted price to check out (one of the deployment's `STRIPE_PRICE_*`).
    #[arg(long, env = "STARPILLAR_SMOKE_PRICE_ID")]
    pub price_id: Option<String>,
    /// The deployment's `NEXTAUTH_SECRET`: the smoke test signs in as `smoke-test` with a
    /// five-minute session it mints (needed for checkout; readings then use its quota).
    #[arg(long, env = "NEXTAUTH_SECRET", hide_env_values = true)]
    pub nextauth_secret: Option<Secret>,
    /// A session token to send instead of minting one.
    #[arg(long, env = "STARPILLAR_SMOKE_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<Secret>,
    /// Count a deployment without readings (501) as a failure rather than a skip.
    #[arg(long)]
    pub require_readings: bool,
    /// Seconds each request may take.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Seconds to wait for `/readyz` to answer ready (a fresh server loads its models first).
    #[arg(long, default_value_t = 120)]
    pub wait_ready: u64,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Skip,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Skip => "SKIP",
            Self::Fail => "FAIL",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub latency_ms: f64,
    pub detail: String,
}

/// A response: status, parsed JSON (Null when not JSON), latency.
struct Answer {
    status: u16,
    body: Value,
    ms: f64,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let start = Instant::now();
        let response = req
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Answer, String> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body.to_string());
        self.send(req).await
    }
}

fn check(name: &'static str, verdict: Verdict, ms: f64, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        latency_ms: ms,
        detail: detail.into(),
    }
}

/// The error code and message of an error body, for details.
fn why(a: &Answer) -> String {
    let err = &a.body["error"];
    match (err["code"].as_str(), err["message"].as_str()) {
        (Some(code), Some(msg)) => format!("HTTP {}: {code}: {msg}", a.status),
        _ => format!("HTTP {}", a.status),
    }
}

/// PASS when the request answered 200 and `ok` accepts the body; FAIL otherwise.
fn judge(
    name: &'static str,
    answer: Result<Answer, String>,
    ok: impl Fn(&Value) -> Result<String, String>,
) -> Check {
    match answer {
        Err(e) => check(name, Verdict::Fail, 0.0, e),
        Ok(a) if a.status != 200 => check(name, Verdict::Fail, a.ms, why(&a)),
        Ok(a) => match ok(&a.body) {
            Ok(detail) => check(name, Verdict::Pass, a.ms, detail),
            Err(detail) => check(name, Verdict::Fail, a.ms, detail),
        },
    }
}

const SAJU: &str = r#"{"birth":{"date":"1990-05-15","time":"14:30","calendar":"solar",
    "timezone":"Asia/Seoul","longitude":126.978},"sex":"female","reading":false}"#;
const ASTRO: &str = r#"{"birth":{"datetime":"1990-05-15T12:30","timezone":"Asia/Seoul",
    "latitude":37.5665,"longitude":126.978},"house_system":"placidus","reading":false}"#;

/// Run every check in order against `args.base_url`.
pub async fn run_checks(args: &SmokeArgs) -> anyhow::Result<Vec<Check>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .user_agent(concat!("starpillar-smoke/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let token = match (&args.session_token, &args.nextauth_secret) {
        (Some(t), _) if !t.is_empty() => Some(t.expose().to_owned()),
        (_, Some(s)) if !s.is_empty() => Some(mint_session(s.expose(), "smoke-test")?),
        _ => None,
    };
    let c = Client {
        http,
        base: args.base_url.trim_end_matches('/').to_owned(),
        token,
    };
    let mut out = vec![judge("healthz", c.get("/healthz").await, |b| {
        (b["status"] == "ok")
            .then(|| "alive".to_owned())
            .ok_or_else(|| format!("unexpected body {b}"))
    })];
    out.push(
        match wait_ready(&c, Duration::from_secs(args.wait_ready)).await {
            Err(e) => check("readyz", Verdict::Fail, 0.0, e),
            Ok(a) if a.status == 200 && a.body["ready"] == true => {
                check("readyz", Verdict::Pass, a.ms, "ready")
            }
            Ok(a) => {
                let down: Vec<String> = a.body["components"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, c)| c["ready"] != true)
                    .map(|(n, c)| format!("{n}: {}", c["detail"].as_str().unwrap_or("?")))
                    .collect();
                let detail = format!("HTTP {}: not ready: {}", a.status, down.join("; "));
                check("readyz", Verdict::Fail, a.ms, detail)
            }
        },
    );
    out.push(judge("lib-health", c.get("/api/lib-health").await, |b| {
        b["version"]
            .as_str()
            .map(|v| format!("version {v}, status {}", b["status"]))
            .ok_or_else(|| "no version".to_owned())
    }));
    out.push(judge("db-ping", c.get("/api/db-ping").await, |b| {
        Ok(format!("{} {:.1} ms", b["backend"], b["latency_ms"]))
    }));
    let saju: Value = serde_json::from_str(SAJU)?;
    out.push(judge("saju chart", c.post("/api/saju", &saju).await, |b| {
        b["chart"]
            .is_object()
            .then(|| "chart".to_owned())
            .ok_or_else(|| "no chart in the answer".to_owned())
    }));
    let astro: Value = serde_json::from_str(ASTRO)?;
    out.push(judge(
        "astrology chart",
        c.post("/api/astrology", &astro).await,
        |b| match b["chart"]["planets"].as_array() {
            Some(p) if !p.is_empty() => Ok(format!("{} planets", p.len())),
            _ => Err("no planets in the chart".to_owned()),
        },
    ));
    out.extend(readings(&c, args.require_readings).await?);
    out.push(checkout(&c, args).await);
    out.push(webhook_replay(&c, args).await);
    Ok(out)
}

/// `/readyz` until it answers ready (or a request fails, or `within` has passed): the last
/// answer.
async fn wait_ready(c: &Client, within: Duration) -> Result<Answer, String> {
    let deadline = Instant::now() + within;
    loop {
        let answer = c.get("/readyz").await?;
        if (answer.status == 200 && answer.body["ready"] == true) || Instant::now() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The same reading twice with a question no one asked before: uncached (charged one unit of
/// the quota), then cached (free).
async fn readings(c: &Client, required: bool) -> anyhow::Result<Vec<Check>> {
    let mut req: Value = serde_json::from_str(SAJU)?;
    req["reading"] = json!(true);
    req["locale"] = json!("en");
    req["question"] = json!(format!(
        "Smoke test {}: how does this year look for work?",
        uuid::Uuid::new_v4().simple()
    ));
    let mut out = Vec::new();
    for (name, want_cached) in [("reading (uncached)", false), ("reading (cached)", true)] {
        let row = match c.post("/api/saju", &req).await {
            Err(e) => check(name, Verdict::Fail, 0.0, e),
            Ok(a) if a.status == 501 && !required => check(
                name,
                Verdict::Skip,
                a.ms,
                format!("{} (no readings here)", why(&a)),
            ),
            Ok(a) if a.status != 200 => check(name, Verdict::Fail, a.ms, why(&a)),
            Ok(a) => {
                let text = a.body["reading"]["text"].as_str().unwrap_or_default();
                let cached = a.body["meta"]["cached"].as_bool();
                if text.trim().is_empty() {
                    check(name, Verdict::Fail, a.ms, "empty reading text")
                } else if cached != Some(want_cached) {
                    let detail = format!("meta.cached is {cached:?}, expected {want_cached}");
                    check(name, Verdict::Fail, a.ms, detail)
                } else {
                    let charge = if want_cached { "free" } else { "charged" };
                    let detail = format!(
                        "{} chars, cached={want_cached} ({charge})",
                        text.chars().count()
                    );
                    check(name, Verdict::Pass, a.ms, detail)
                }
            }
        };
        out.push(row);
    }
    Ok(out)
}

/// A Checkout Session through the deployment, read back from Stripe: it must exist and be in
/// test mode.
async fn checkout(c: &Client, args: &SmokeArgs) -> Check {
    const NAME: &str = "checkout (test mode)";
    let Some(key) = args.stripe_secret_key.as_ref().filter(|k| !k.is_empty()) else {
        return check(NAME, Verdict::Skip, 0.0, "no --stripe-secret-key");
    };
    let key = key.expose();
    if !(key.starts_with("sk_test_") || key.starts_with("rk_test_")) {
        return check(
            NAME,
            Verdict::Fail,
            0.0,
            "refusing a key that is not test-mode",
        );
    }
    let Some(price) = &args.price_id else {
        return check(
            NAME,
            Verdict::Fail,
            0.0,
            "--price-id is required for checkout",
        );
    };
    if c.token.is_none() {
        let detail = "checkout needs a session: --nextauth-secret or --session-token";
        return check(NAME, Verdict::Fail, 0.0, detail);
    }
    let body = json!({"price_id": price, "success_url": "https://example.com/smoke-ok",
        "cancel_url": "https://example.com/smoke-cancel"});
    let a = match c.post("/api/checkout", &body).await {
        Err(e) => return check(NAME, Verdict::Fail, 0.0, e),
        Ok(a) if a.status != 200 => return check(NAME, Verdict::Fail, a.ms, why(&a)),
        Ok(a) => a,
    };
    let Some(id) = a.body["id"].as_str() else {
        return check(NAME, Verdict::Fail, a.ms, "no session id in the answer");
    };
    let url = format!(
        "{}/v1/checkout/sessions/{id}",
        args.stripe_api_base.trim_end_matches('/')
    );
    let back = c.http.get(url).basic_auth(key, Some("")).send().await;
    let session: Value = match back {
        Ok(r) if r.status().is_success() => json_of(r).await,
        Ok(r) => {
            let detail = format!("Stripe answered {} reading {id} back", r.status());
            return check(NAME, Verdict::Fail, a.ms, detail);
        }
        Err(e) => return check(NAME, Verdict::Fail, a.ms, format!("Stripe: {e}")),
    };
    if session["id"] != id || session["livemode"] != false {
        let detail = format!("{id} is not a test-mode session: {session}");
        return check(NAME, Verdict::Fail, a.ms, detail);
    }
    check(NAME, Verdict::Pass, a.ms, format!("{id}, livemode=false"))
}

async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// A synthetic event signed like Stripe signs, posted twice: accepted, then a duplicate.
async fn webhook_replay(c: &Client, args: &SmokeArgs) -> Check {
    const NAME: &str = "webhook replay";
    let Some(secret) = args
        .stripe_webhook_secret
        .as_ref()
        .filter(|k| !k.is_empty())
    else {
        return check(NAME, Verdict::Skip, 0.0, "no --stripe-webhook-secret");
    };
    let secret = secret.expose().split(',').next().unwrap_or_default().trim();
    let id = format!("evt_smoke_{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().timestamp();
    let payload = json!({"id": id, "object": "event", "type": "starpillar.smoke_test",
        "created": now, "livemode": false, "data": {"object": {"id": "smoke", "object": "smoke"}}})
    .to_string();
    let header = format!(
        "t={now},v1={}",
        sign_webhook(secret, now, payload.as_bytes())
    );
    let mut outcomes = Vec::new();
    let mut total_ms = 0.0;
    for _ in 0..2 {
        let req = c
            .http
            .post(format!("{}/api/webhook/stripe", c.base))
            .header("content-type", "application/json")
            .header("stripe-signature", &header)
            .body(payload.clone());
        match c.send(req).await {
            Err(e) => return check(NAME, Verdict::Fail, total_ms, e),
            Ok(a) if a.status != 200 => return check(NAME, Verdict::Fail, a.ms, why(&a)),
            Ok(a) => {
                total_ms += a.ms;
                outcomes.push(a.body["outcome"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
    let detail = format!("{id}: {}", outcomes.join(" then "));
    let ok = outcomes[0] != "duplicate" && outcomes[1] == "duplicate";
    check(
        NAME,
        if ok { Verdict::Pass } else { Verdict::Fail },
        total_ms / 2.0,
        detail,
    )
}

/// Stripe's `v1` signature: hex HMAC-SHA256 over `"{t}.{body}"`, keyed with the whole secret.
pub fn sign_webhook(secret: &str, t: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A NextAuth v4 session token (JWE `dir`/`A256GCM`, HKDF key) for `sub`, valid 5 minutes.
pub fn mint_session(secret: &str, sub: &str) -> anyhow::Result<String> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use rand_core::RngCore;
    let secret = secret.split(',').next().unwrap_or_default().trim();
    let key = crate::auth::jwe::v4_key(secret.as_bytes());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": sub, "name": "starpillar smoke test", "iat": now,
        "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string()});
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM"}"#);
    let mut iv = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut iv);
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| anyhow::anyhow!("key: {e}"))?;
    let plaintext = claims.to_string();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: plaintext.as_bytes(),
                aad: header.as_bytes(),
            },
        )
        .map_err(|e| anyhow::anyhow!("encrypting the session: {e}"))?;
    let (ciphertext, tag) = sealed.split_at(sealed.len().saturating_sub(16));
    Ok(format!(
        "{header}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(ciphertext),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// The report as a table.
pub fn render(checks: &[Check]) -> String {
    let mut out = format!(
        "{:<22} {:<6} {:>10}  detail\n",
        "check", "result", "latency_ms"
    );
    for c in checks {
        out.push_str(&format!(
            "{:<22} {:<6} {:>10.1}  {}\n",
            c.name,
            c.verdict.label(),
            c.latency_ms,
            c.detail
        ));
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    let skipped = checks.iter().filter(|c| c.verdict == Verdict::Skip).count();
    out.push_str(&format!(
        "{} passed, {failed} failed, {skipped} skipped\n",
        checks.len() - failed - skipped
    ));
    out
}

pub fn run(args: SmokeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let checks = runtime.block_on(run_checks(&args))?;
    if args.json {
        let rows: Vec<Value> = checks
            .iter()
            .map(|c| {
                json!({"check": c.name, "result": c.verdict.label(),
                "latency_ms": c.latency_ms, "detail": c.detail})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render(&checks));
    }
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
