//! Liveness (`/healthz`), readiness (`/readyz`), what is loaded (`/api/lib-health`) and the
//! Prometheus scrape endpoint (`/metrics`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::{ComponentStatus, SharedState};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(lib_health))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok` while the process answers.
    status: &'static str,
    uptime_seconds: f64,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Alive)))]
async fn healthz(State(state): State<SharedState>) -> Json<Alive> {
    Json(Alive {
        status: "ok",
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
    components: BTreeMap<String, ComponentStatus>,
}

/// Every component (models, store, index) is loaded and open: 200; otherwise 503 saying which.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    let components = state.components();
    let ready = components.values().all(|c| c.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(Readiness { ready, components })).into_response();
    if !ready {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    response
}

#[derive(Serialize, ToSchema)]
pub struct LibHealth {
    status: &'static str,
    version: &'static str,
    uptime_seconds: f64,
    data_dir: String,
    components: BTreeMap<String, ComponentStatus>,
    /// Versions of the algorithms and data that shape answers.
    versions: BTreeMap<&'static str, String>,
}

/// What is loaded: models, store, cache, database, and the versions of everything.
#[utoipa::path(get, path = "/api/lib-health", tag = "health", responses((status = 200, body = LibHealth)))]
async fn lib_health(State(state): State<SharedState>) -> Json<LibHealth> {
    let components = state.components();
    let ready = components.values().all(|c| c.ready);
    let mut versions = BTreeMap::new();
    versions.insert("starpillar", crate::VERSION.to_owned());
    versions.insert("tzdb", chrono_tz::IANA_TZDB_VERSION.to_owned());
    Json(LibHealth {
        status: if ready { "ok" } else { "degraded" },
        version: crate::VERSION,
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        data_dir: state.config.data_dir.display().to_string(),
        components,
        versions,
    })
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain")))]
async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
