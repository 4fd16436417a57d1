//! `GET /api/auth/session`: who the presented session token says the caller is.
//! `POST /api/auth/revoke`: revoke the presented session token (its `jti`), or with
//! `{"all":true}` every session of the user issued up to now.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::json::AppJson;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(session))
        .routes(routes!(revoke))
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    user_id: String,
    email: Option<String>,
    name: Option<String>,
    /// Unix seconds.
    expires_at: i64,
}

/// The caller's session (401 without a valid one).
#[utoipa::path(get, path = "/api/auth/session", tag = "auth",
    responses((status = 200, body = SessionInfo), (status = 401, description = "no valid session")))]
async fn session(AuthUser(session): AuthUser) -> Json<SessionInfo> {
    Json(SessionInfo {
        user_id: session.user_id,
        email: session.email,
        name: session.name,
        expires_at: session.expires_at,
    })
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// `true`: every session of this user issued up to now; `false`: this token only.
    #[serde(default)]
    all: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    /// `token` or `all`.
    revoked: &'static str,
    user_id: String,
}

/// Revoke this session, or all of the user's sessions; revoked tokens then get 401.
#[utoipa::path(post, path = "/api/auth/revoke", tag = "auth", request_body = RevokeRequest,
    responses((status = 200, body = Revoked), (status = 401, description = "no valid session")))]
async fn revoke(
    State(state): State<SharedState>,
    AuthUser(session): AuthUser,
    AppJson(request): AppJson<RevokeRequest>,
) -> ApiResult<Json<Revoked>> {
    if request.all {
        state
            .store
            .revoke_user(&session.user_id, crate::store::now())
            .await?;
        return Ok(Json(Revoked {
            revoked: "all",
            user_id: session.user_id,
        }));
    }
    let Some(jti) = session.jti.as_deref() else {
        return Err(ApiError::invalid(
            "all",
            "token_without_jti",
            "this token has no jti; revoke all sessions with {\"all\":true}",
        ));
    };
    state
        .store
        .revoke_token(jti, &session.user_id, session.expires_at)
        .await?;
    Ok(Json(Revoked {
        revoked: "token",
        user_id: session.user_id,
    }))
}
