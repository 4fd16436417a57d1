//! `GET /api/db-ping`: a round trip to the database with its latency, or 503.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(db_ping))
}

#[derive(Serialize, ToSchema)]
pub struct DbPing {
    /// Always `ok` when the database answered.
    status: &'static str,
    /// `sqlite` or `postgres`.
    backend: &'static str,
    /// Round-trip time of `SELECT 1`, in milliseconds.
    latency_ms: f64,
}

/// The database answers: its backend and round-trip latency; 503 when it is down.
#[utoipa::path(get, path = "/api/db-ping", tag = "health", responses(
    (status = 200, body = DbPing), (status = 503, description = "database unavailable")))]
async fn db_ping(State(state): State<SharedState>) -> ApiResult<Json<DbPing>> {
    let latency = state.store.ping().await?;
    Ok(Json(DbPing {
        status: "ok",
        backend: state.store.backend().name(),
        latency_ms: latency.as_secs_f64() * 1000.0,
    }))
}

/// Open and migrate the store at start-up, reporting it as the `store` component of
/// `/readyz`; while the database is unreachable, retry every 5 s in the background.
pub async fn open_at_startup(state: &SharedState) {
    if try_open(state).await {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            if try_open(&state).await {
                break;
            }
        }
    });
}

async fn try_open(state: &SharedState) -> bool {
    match state.store.migrate().await {
        Ok(()) => {
            state.set_component("store", true, format!("{} (open)", state.store.describe()));
            true
        }
        Err(err) => {
            tracing::error!(error = %err, store = %state.store.describe(), "store not open");
            state.set_component("store", false, format!("{}: {err}", state.store.describe()));
            false
        }
    }
}
