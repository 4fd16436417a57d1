//! `POST /api/push/subscription` stores the browser's `PushSubscription`;
//! `DELETE /api/push/subscription` removes it. 404 unless `ENABLE_PUSH` is on.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::json::AppJson;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::push::crypto::{self, PushCryptoError};
use crate::state::SharedState;
use crate::store::push::PushSubscriptionRow;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new().routes(routes!(subscribe, unsubscribe))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    /// The browser's P-256 public key, base64url.
    p256dh: String,
    /// The 16-byte auth secret, base64url.
    auth: String,
}

/// A browser `PushSubscription` as `JSON.stringify(subscription)` gives it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionRequest {
    endpoint: String,
    /// Accepted as the browser sends it; push services report expiry with 404/410 anyway.
    #[schema(value_type = Option<f64>)]
    #[allow(dead_code, reason = "part of the browser's shape")]
    expiration_time: Option<serde_json::Value>,
    keys: PushKeys,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeRequest {
    endpoint: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushAck {
    /// `saved` or `deleted` / `absent`.
    status: &'static str,
    /// The server's VAPID public key (the `applicationServerKey`).
    vapid_public_key: Option<String>,
}

#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error type"
)]
fn enabled(state: &SharedState) -> ApiResult<()> {
    if state.push.config.enabled {
        Ok(())
    } else {
        Err(ApiError::not_found("no route for /api/push/subscription"))
    }
}

#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error type"
)]
fn check_endpoint(state: &SharedState, endpoint: &str) -> ApiResult<()> {
    let https = endpoint.starts_with("https://");
    let http_ok = state.push.config.allow_http_endpoints && endpoint.starts_with("http://");
    if !(https || http_ok) || crypto::origin(endpoint).is_none() || endpoint.len() > 2048 {
        return Err(ApiError::invalid(
            "endpoint",
            "invalid_endpoint",
            "endpoint must be the push service's https:// URL",
        ));
    }
    Ok(())
}

/// Save this browser's push subscription for the signed-in user.
#[utoipa::path(post, path = "/api/push/subscription", tag = "billing",
    request_body = SubscriptionRequest,
    responses((status = 200, body = PushAck), (status = 404, description = "push disabled"),
        (status = 422, description = "bad endpoint or keys")))]
async fn subscribe(
    State(state): State<SharedState>,
    AuthUser(session): AuthUser,
    AppJson(request): AppJson<SubscriptionRequest>,
) -> ApiResult<Json<PushAck>> {
    enabled(&state)?;
    check_endpoint(&state, &request.endpoint)?;
    crypto::validate_keys(&request.keys.p256dh, &request.keys.auth).map_err(|e| {
        let field = match e {
            PushCryptoError::BadAuth => "keys.auth",
            _ => "keys.p256dh",
        };
        ApiError::invalid(field, "invalid_key", e.to_string())
    })?;
    state
        .store
        .save_push(&PushSubscriptionRow {
            endpoint: request.endpoint,
            user_id: session.user_id,
            p256dh: request.keys.p256dh,
            auth: request.keys.auth,
        })
        .await?;
    Ok(Json(PushAck {
        status: "saved",
        vapid_public_key: state
            .push
            .config
            .vapid
            .as_ref()
            .map(|v| v.public_key().to_owned()),
    }))
}

/// Remove one of the signed-in user's push subscriptions.
#[utoipa::path(delete, path = "/api/push/subscription", tag = "billing",
    request_body = UnsubscribeRequest,
    responses((status = 200, body = PushAck), (status = 404, description = "push disabled")))]
async fn unsubscribe(
    State(state): State<SharedState>,
    AuthUser(session): AuthUser,
    AppJson(request): AppJson<UnsubscribeRequest>,
) -> ApiResult<Json<PushAck>> {
    enabled(&state)?;
    let deleted = state
        .store
        .delete_push(&request.endpoint, Some(&session.user_id))
        .await?;
    Ok(Json(PushAck {
        status: if deleted { "deleted" } else { "absent" },
        vapid_public_key: None,
    }))
}
