//! Prometheus metrics (`starpillar_*`, durations in seconds, bounded labels) and the HTTP
//! middleware that records them per matched route. Every metric carries HELP text so
//! `promtool check metrics` accepts `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::state::SharedState;

/// Latency buckets in seconds, from 1 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The registry and the metrics every layer shares.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub build_info: IntGaugeVec,
    /// Requests answered 503 by the guard layer: `reason` = `overloaded` (over
    /// `--max-concurrency`) or `timeout` (no response head within `--request-timeout-secs`).
    pub load_shed_total: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "starpillar_http_requests_total",
                "HTTP requests answered, by matched route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "starpillar_http_request_duration_seconds",
                "Time from request to response head, by matched route and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "starpillar_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[crate::VERSION]).set(1);
        let load_shed_total = IntCounterVec::new(
            Opts::new(
                "starpillar_load_shed_total",
                "Requests answered 503 by load shedding (overloaded) or the response timeout.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in ["overloaded", "timeout"] {
            load_shed_total.with_label_values(&[reason]);
        }
        let metrics = Self {
            registry,
            http_requests_total,
            http_request_duration_seconds,
            build_info,
            load_shed_total,
        };
        metrics.register(Box::new(metrics.http_requests_total.clone()));
        metrics.register(Box::new(metrics.http_request_duration_seconds.clone()));
        metrics.register(Box::new(metrics.build_info.clone()));
        metrics.register(Box::new(metrics.load_shed_total.clone()));
        metrics
    }

    /// Register a collector; a duplicate registration is logged, not fatal.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(err) = self.registry.register(collector) {
            tracing::warn!(error = %err, "metric registration failed");
        }
    }

    /// The text exposition format of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %err, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Middleware: count and time each request by matched route, and append the total to the
/// `server-timing` header (handlers may already have put per-stage entries there).
pub async fn track_http(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let mut response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16().to_string();
    let m = &state.metrics;
    m.http_requests_total
        .with_label_values(&[&route, &method, &status])
        .inc();
    m.http_request_duration_seconds
        .with_label_values(&[&route, &method])
        .observe(elapsed.as_secs_f64());
    let total = format!("total;dur={:.3}", elapsed.as_secs_f64() * 1000.0);
    let value = match response
        .headers()
        .get(&SERVER_TIMING)
        .and_then(|v| v.to_str().ok())
    {
        Some(existing) => format!("{existing}, {total}"),
        None => total,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(SERVER_TIMING.clone(), value);
    }
    response
}
