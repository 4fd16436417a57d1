//! Operator routes behind `STARPILLAR_ADMIN_TOKEN`: `POST /api/admin/cache/purge` (incident
//! step "invalidate caches").
//!
//! The token is sent as `Authorization: Bearer <token>` and compared in constant time (both
//! sides hashed first, so not even the length leaks). With no token configured the admin
//! routes answer 404, as if they did not exist: there is no way to enable them by accident.
//! A missing token is 401, a wrong one 403; the body is parsed only after the token passed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::Purge;
use crate::error::{ApiError, ErrorKind};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(purge_cache))
}

/// What to purge: exactly one member.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// `true`: every entry.
    #[serde(default)]
    pub all: bool,
    /// Entries of one route, e.g. `/api/saju`.
    pub route: Option<String>,
    /// Entries written with this prompt version.
    pub prompt_version: Option<String>,
    /// Entries grounded on this corpus version.
    pub corpus_version: Option<String>,
}

impl PurgeRequest {
    /// The purge asked for, or a 422 naming the problem.
    #[allow(clippy::result_large_err)]
    pub fn to_purge(&self) -> Result<Purge, ApiError> {
        let mut chosen = Vec::new();
        if self.all {
            chosen.push(Purge::All);
        }
        let named = [
            ("route", &self.route, Purge::Route as fn(String) -> Purge),
            ("prompt_version", &self.prompt_version, Purge::PromptVersion),
            ("corpus_version", &self.corpus_version, Purge::CorpusVersion),
        ];
        for (field, value, make) in named {
            if let Some(v) = value {
                if v.trim().is_empty() {
                    return Err(ApiError::invalid(field, "empty_value", "must not be empty"));
                }
                chosen.push(make(v.clone()));
            }
        }
        match chosen.len() {
            1 => Ok(chosen.remove(0)),
            _ => Err(ApiError::new(
                ErrorKind::Invalid,
                "one_scope_required",
                "give exactly one of: all (true), route, prompt_version, corpus_version",
            )),
        }
    }
}

/// What was purged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurgeResponse {
    /// Entries removed (in-process and Redis together).
    pub purged: u64,
    /// `all`, `route`, `prompt_version` or `corpus_version`.
    pub scope: String,
    /// The route or version purged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Check the bearer token against `STARPILLAR_ADMIN_TOKEN`.
#[allow(clippy::result_large_err)]
pub fn authorize(state: &SharedState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.cache.admin_token else {
        return Err(ApiError::not_found(
            "admin routes are disabled (STARPILLAR_ADMIN_TOKEN is not set)",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::new(
            ErrorKind::Unauthorized,
            "admin_token_required",
            "send Authorization: Bearer <STARPILLAR_ADMIN_TOKEN>",
        ));
    };
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::Forbidden,
            "admin_token_invalid",
            "the admin token is not valid",
        ))
    }
}

/// Remove cached readings: all, by route, by prompt version or by corpus version, from the
/// in-process cache and from Redis. The purge is logged and counted.
#[utoipa::path(post, path = "/api/admin/cache/purge", tag = "admin",
    request_body = PurgeRequest,
    responses(
        (status = 200, body = PurgeResponse),
        (status = 401, description = "no bearer token"),
        (status = 403, description = "wrong token"),
        (status = 404, description = "admin routes disabled (STARPILLAR_ADMIN_TOKEN unset)"),
        (status = 422, description = "not exactly one scope"),
        (status = 503, description = "Redis failed; in-process entries were purged")))]
async fn purge_cache(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PurgeResponse>, ApiError> {
    authorize(&state, &headers)?;
    let request: PurgeRequest = crate::api::json::parse(&body)?;
    let purge = request.to_purge()?;
    let purged = state.cache.purge(&purge).await.map_err(|err| {
        ApiError::unavailable(
            "cache_backend_unavailable",
            format!("in-process entries were purged, but the shared cache failed: {err}"),
            5,
        )
    })?;
    Ok(Json(PurgeResponse {
        purged,
        scope: purge.scope().to_owned(),
        value: purge.value().map(str::to_owned),
    }))
}
