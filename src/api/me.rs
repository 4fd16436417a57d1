//! `GET /api/me`: the signed-in user, their plan, today's quota and the renewal date.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(me))
}

#[derive(Serialize, ToSchema)]
pub struct MeUser {
    id: String,
    email: Option<String>,
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MeQuota {
    /// UTC day the counts are for.
    day: String,
    limit: i64,
    used: i64,
    left: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    user: MeUser,
    /// `free` or a paid plan's name.
    plan: String,
    /// The subscription's status when one grants the plan (`active`, `trialing`, `paid`).
    status: Option<String>,
    /// When the plan renews (RFC 3339), for subscriptions.
    renews_at: Option<String>,
    quota: MeQuota,
}

/// Who is signed in, their plan and what is left of today's quota.
#[utoipa::path(get, path = "/api/me", tag = "billing",
    responses((status = 200, body = Me), (status = 401, description = "no valid session")))]
async fn me(State(state): State<SharedState>, AuthUser(session): AuthUser) -> ApiResult<Json<Me>> {
    let (plan, renews, status) = state
        .billing
        .user_plan(&state.store, &session.user_id)
        .await?;
    let limit = state
        .billing
        .config
        .plans
        .get(&plan)
        .map(|p| p.daily_quota)
        .unwrap_or(0);
    let quota = state
        .store
        .quota(&format!("user:{}", session.user_id), &plan, limit)
        .await?;
    Ok(Json(Me {
        user: MeUser {
            id: session.user_id,
            email: session.email,
            name: session.name,
        },
        plan,
        status,
        renews_at: renews
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339()),
        quota: MeQuota {
            left: quota.remaining(),
            day: quota.day,
            limit: quota.limit,
            used: quota.used,
        },
    }))
}
