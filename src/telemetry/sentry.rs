//! Error reporting to Sentry. With `SENTRY_DSN` set, every 5xx response and every panic
//! becomes a Sentry event, posted as an envelope (`POST {scheme}://{host}/api/{project}/
//! envelope/` with an `X-Sentry-Auth` header) by one background thread. Capturing never
//! waits: events go through a bounded queue and are dropped (and counted) when it is full or
//! Sentry is slow. Without a DSN nothing is installed and requests take the same path as before.
//!
//! Events carry the method, the matched route, the path, the status, the error code, the
//! logged cause of a 500 and the request id — never headers, bodies or query strings.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// Events that may wait for the sender; more are dropped.
pub const QUEUE: usize = 64;

/// A DSN that is not `{scheme}://{key}[:{secret}]@{host}[:{port}]/[{path}/]{project}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SENTRY_DSN: {0}")]
pub struct DsnError(&'static str);

/// A parsed DSN: where envelopes go and how they authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The DSN as given (it travels in the envelope header).
    raw: String,
    public_key: String,
    secret_key: Option<String>,
    /// `{scheme}://{host}[:{port}]{path}/api/{project}/envelope/`.
    envelope_url: String,
}

impl std::str::FromStr for Dsn {
    type Err = DsnError;
    fn from_str(raw: &str) -> Result<Self, DsnError> {
        let url = reqwest::Url::parse(raw.trim()).map_err(|_| DsnError("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DsnError("the scheme must be http or https"));
        }
        if url.username().is_empty() {
            return Err(DsnError("no public key before the @"));
        }
        let host = url.host_str().ok_or(DsnError("no host"))?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = url.path().trim_end_matches('/');
        let (prefix, project) = path.rsplit_once('/').ok_or(DsnError("no project id"))?;
        if project.is_empty() || !project.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DsnError("the project id must be a number"));
        }
        Ok(Self {
            raw: raw.trim().to_owned(),
            public_key: url.username().to_owned(),
            secret_key: url.password().map(str::to_owned),
            envelope_url: format!(
                "{}://{host}{port}{prefix}/api/{project}/envelope/",
                url.scheme()
            ),
        })
    }
}

impl Dsn {
    pub fn envelope_url(&self) -> &str {
        &self.envelope_url
    }

    /// The `X-Sentry-Auth` header value.
    pub fn auth_header(&self) -> String {
        let mut auth = format!(
            "Sentry sentry_version=7, sentry_client=starpillar/{}, sentry_key={}",
            crate::VERSION,
            self.public_key
        );
        if let Some(secret) = &self.secret_key {
            auth.push_str(&format!(", sentry_secret={secret}"));
        }
        auth
    }
}

enum Msg {
    Envelope(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Counts of what became of captured events.
#[derive(Debug, Default)]
pub struct Stats {
    pub queued: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    pub sent: AtomicU64,
    /// Sentry could not be reached or refused the envelope.
    pub failed: AtomicU64,
}

/// The sender: a bounded queue drained by one background thread.
pub struct Reporter {
    dsn: Dsn,
    environment: String,
    tx: SyncSender<Msg>,
    pub stats: Arc<Stats>,
}

impl Reporter {
    /// Start the sender thread for `dsn`, with a queue of `queue` events.
    pub fn new(dsn: Dsn, environment: &str, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let stats = Arc::new(Stats::default());
        let (url, auth, thread_stats) =
            (dsn.envelope_url.clone(), dsn.auth_header(), stats.clone());
        std::thread::Builder::new()
            .name("starpillar-sentry".into())
            .spawn(move || send_loop(rx, &url, &auth, &thread_stats))?;
        Ok(Self {
            dsn,
            environment: environment.to_owned(),
            tx,
            stats,
        })
    }

    /// Queue an event (the fields of Sentry's event payload); never blocks.
    pub fn capture(&self, mut event: Value) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = chrono::Utc::now();
        if let Some(obj) = event.as_object_mut() {
            let defaults = [
                ("event_id", json!(id)),
                ("timestamp", json!(now.timestamp_millis() as f64 / 1000.0)),
                ("platform", json!("native")),
                ("logger", json!("starpillar")),
                ("release", json!(format!("starpillar@{}", crate::VERSION))),
                ("environment", json!(self.environment)),
                (
                    "sdk",
                    json!({"name": "starpillar", "version": crate::VERSION}),
                ),
            ];
            for (k, v) in defaults {
                obj.entry(k).or_insert(v);
            }
        }
        let payload = event.to_string();
        let head = json!({"event_id": id, "dsn": self.dsn.raw, "sent_at": now.to_rfc3339()});
        let item = json!({"type": "event", "length": payload.len(),
            "content_type": "application/json"});
        let envelope = format!("{head}\n{item}\n{payload}\n").into_bytes();
        match self.tx.try_send(Msg::Envelope(envelope)) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Wait up to `timeout` for every event queued so far to be sent (or to fail).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

fn send_loop(rx: Receiver<Msg>, url: &str, auth: &str, stats: &Stats) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::error!("the Sentry sender could not start; events will be dropped");
        return;
    };
    let client = {
        let _context = runtime.enter();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
    };
    let Ok(client) = client else {
        tracing::error!("the Sentry HTTP client could not start; events will be dropped");
        return;
    };
    while let Ok(msg) = rx.recv() {
        let body = match msg {
            Msg::Envelope(body) => body,
            Msg::Flush(done) => {
                let _ = done.try_send(());
                continue;
            }
        };
        let sent = runtime.block_on(async {
            client
                .post(url)
                .header("x-sentry-auth", auth)
                .header("content-type", "application/x-sentry-envelope")
                .body(body)
                .send()
                .await
        });
        match sent {
            Ok(r) if r.status().is_success() => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(status = %r.status(), "Sentry refused an event");
            }
            Err(err) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %err, "Sentry unreachable; event lost");
            }
        }
    }
}

static GLOBAL: OnceLock<Reporter> = OnceLock::new();

/// Why [`install`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Dsn(#[from] DsnError),
    #[error("cannot start the Sentry sender thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("a Sentry reporter is already installed")]
    AlreadyInstalled,
}

/// Report 5xx responses and panics of this process to `dsn`.
pub fn install(dsn: &str, environment: &str) -> Result<(), InstallError> {
    let reporter = Reporter::new(dsn.parse()?, environment, QUEUE)?;
    GLOBAL
        .set(reporter)
        .map_err(|_| InstallError::AlreadyInstalled)?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(reporter) = GLOBAL.get() {
            reporter.capture(panic_event(info));
            // A panic on the main thread ends the process: give the event a moment to leave.
            if std::thread::current().name() == Some("main") {
                reporter.flush(Duration::from_secs(2));
            }
        }
        previous(info);
    }));
    tracing::info!(endpoint = %GLOBAL.get().map(|r| r.dsn.envelope_url()).unwrap_or(""),
        "errors are reported to Sentry");
    Ok(())
}

/// The installed reporter, if any.
pub fn reporter() -> Option<&'static Reporter> {
    GLOBAL.get()
}

/// Send what is queued before the process exits (no-op without a reporter).
pub fn flush(timeout: Duration) {
    if let Some(r) = GLOBAL.get() {
        r.flush(timeout);
    }
}

fn panic_event(info: &std::panic::PanicHookInfo<'_>) -> Value {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    json!({
        "level": "fatal",
        "culprit": location,
        "exception": {"values": [{"type": "panic", "value": message,
            "mechanism": {"type": "panic", "handled": false}}]},
        "tags": {"kind": "panic", "thread": thread},
        "extra": {"location": location},
    })
}

/// Put on every error response by [`crate::error::ApiError`]: its code, for the event.
#[derive(Debug, Clone)]
pub struct ErrorTag(pub Cow<'static, str>);

tokio::task_local! {
    static CAUSE: Arc<Mutex<Option<String>>>;
}

/// Remember the logged cause of an internal error for the request's event (no-op without a
/// reporter or outside a request).
pub fn note_cause(cause: &dyn std::fmt::Display) {
    if GLOBAL.get().is_none() {
        return;
    }
    let _ = CAUSE.try_with(|slot| {
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(cause.to_string());
        }
    });
}

/// At most one event per this interval for load shedding (`overloaded`), which comes in
/// floods; the other 5xx (timeouts included) are each reported.
pub const SHED_EVERY: Duration = Duration::from_secs(10);

/// Whether a load-shedding event may be sent now (one per [`SHED_EVERY`]).
fn shed_report_due() -> bool {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let last = LAST_MS.load(Ordering::Relaxed);
    let every = u64::try_from(SHED_EVERY.as_millis()).unwrap_or(u64::MAX);
    (last == 0 || now.saturating_sub(last) >= every)
        && LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Middleware: report each 5xx response (route, status, code, cause, request id); load
/// shedding at most once per [`SHED_EVERY`].
pub async fn report_5xx(request: Request, next: Next) -> Response {
    let Some(reporter) = GLOBAL.get() else {
        return next.run(request).await;
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let slot = Arc::new(Mutex::new(None));
    let response = CAUSE.scope(slot.clone(), next.run(request)).await;
    let status = response.status();
    if status.is_server_error() {
        let code = response
            .extensions()
            .get::<ErrorTag>()
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| "http_5xx".to_owned());
        if code == "overloaded" && !shed_report_due() {
            return response;
        }
        let cause = slot.lock().ok().and_then(|mut c| c.take());
        let value = cause.unwrap_or_else(|| format!("{} {code}", status.as_u16()));
        reporter.capture(json!({
            "level": "error",
            "transaction": format!("{method} {route}"),
            "message": {"formatted": format!("{} {code} on {method} {route}", status.as_u16())},
            "exception": {"values": [{"type": code, "value": value,
                "mechanism": {"type": "http", "handled": true}}]},
            "tags": {"route": route, "method": method, "status": status.as_u16().to_string(),
                "code": code, "request_id": request_id},
            "request": {"method": method, "url": path},
            "fingerprint": ["http", route, code],
        }));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_into_the_envelope_url_and_auth() {
        let dsn: Dsn = "https://abc123:s3cr3t@o1.ingest.sentry.io:8443/sub/path/42"
            .parse()
            .unwrap();
        assert_eq!(
            dsn.envelope_url(),
            "https://o1.ingest.sentry.io:8443/sub/path/api/42/envelope/"
        );
        let auth = dsn.auth_header();
        assert!(auth.starts_with("Sentry sentry_version=7, "), "{auth}");
        assert!(auth.contains("sentry_key=abc123") && auth.contains("sentry_secret=s3cr3t"));
        let plain: Dsn = "http://k@127.0.0.1:9000/7".parse().unwrap();
        assert_eq!(
            plain.envelope_url(),
            "http://127.0.0.1:9000/api/7/envelope/"
        );
        for bad in [
            "",
            "nota dsn",
            "ftp://k@h/1",
            "https://h/1",
            "https://k@h/",
            "https://k@h/x",
        ] {
            assert!(bad.parse::<Dsn>().is_err(), "{bad:?} accepted");
        }
    }
}
