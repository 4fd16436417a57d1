//! Request guards: global load shedding (503 + `Retry-After` when more than
//! `--max-concurrency` requests are in flight), a response-head timeout, and the tracing span
//! that carries the request id. The guard sits inside the metrics and Sentry layers, so its
//! 503s are counted per route (`starpillar_http_requests_total{status="503"}`) and reported
//! like any other 5xx; `starpillar_load_shed_total{reason}` counts them by cause.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::IntCounterVec;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Shared by every route: one semaphore for the whole server.
#[derive(Clone)]
pub struct Guard {
    permits: Arc<Semaphore>,
    timeout: Duration,
    shed: IntCounterVec,
}

impl Guard {
    /// `shed` is `starpillar_load_shed_total` (label `reason`).
    pub fn new(max_concurrency: usize, timeout: Duration, shed: IntCounterVec) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            timeout,
            shed,
        }
    }
}

/// Shed load beyond the concurrency limit and time out slow handlers, both as 503.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Ok(_permit) = guard.permits.clone().try_acquire_owned() else {
        guard.shed.with_label_values(&["overloaded"]).inc();
        return ApiError::unavailable("overloaded", "the server is at capacity; retry shortly", 1)
            .into_response();
    };
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            guard.shed.with_label_values(&["timeout"]).inc();
            ApiError::unavailable(
                "timeout",
                format!("the request took longer than {} s", guard.timeout.as_secs()),
                2,
            )
            .into_response()
        }
    }
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The per-request span: method, path and request id.
pub fn make_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
}
