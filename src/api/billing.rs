//! `POST /api/checkout` (session required) and `POST /api/webhook/stripe` (when
//! `ENABLE_WEBHOOKS` is on; 404 otherwise).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::json::AppJson;
use crate::auth::AuthUser;
use crate::billing::webhook::{self, HANDLED};
use crate::error::{ApiError, ApiResult};
use crate::state::SharedState;
use crate::store::billing::{BillingEffect, EventOutcome};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(stripe_webhook))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// A price from the `STRIPE_PRICE_*` whitelist.
    price_id: String,
    /// Where Stripe sends the buyer after paying (default: the server's configured URL).
    success_url: Option<String>,
    /// Where Stripe sends the buyer after cancelling.
    cancel_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutResponse {
    /// The Checkout Session id (`cs_…`).
    id: String,
    /// Stripe's hosted checkout page.
    url: Option<String>,
}

#[allow(
    clippy::result_large_err,
    reason = "ApiError is the handlers' error type"
)]
fn redirect_url(given: Option<String>, default: Option<&String>, field: &str) -> ApiResult<String> {
    let url = given
        .or_else(|| default.cloned())
        .ok_or_else(|| ApiError::invalid(field, "missing_url", format!("{field} is required")))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
        return Err(ApiError::invalid(
            field,
            "invalid_url",
            format!("{field} must be an http(s) URL"),
        ));
    }
    Ok(url)
}

/// Create a Stripe Checkout Session for a whitelisted price.
#[utoipa::path(post, path = "/api/checkout", tag = "billing", request_body = CheckoutRequest,
    responses((status = 200, body = CheckoutResponse),
        (status = 400, description = "price not in the whitelist"),
        (status = 401, description = "no valid session"),
        (status = 502, description = "Stripe refused or failed")))]
async fn checkout(
    State(state): State<SharedState>,
    AuthUser(session): AuthUser,
    AppJson(request): AppJson<CheckoutRequest>,
) -> ApiResult<Json<CheckoutResponse>> {
    let billing = &state.billing;
    let Some(plan) = billing.config.plan_for_price(&request.price_id) else {
        return Err(ApiError::bad_request(
            "unknown_price",
            "price_id is not one of this server's prices",
        )
        .with_field("price_id"));
    };
    let success = redirect_url(
        request.success_url,
        billing.config.success_url.as_ref(),
        "success_url",
    )?;
    let cancel = redirect_url(
        request.cancel_url,
        billing.config.cancel_url.as_ref(),
        "cancel_url",
    )?;
    let created = billing
        .create_checkout(&session, plan, &request.price_id, &success, &cancel)
        .await?;
    Ok(Json(CheckoutResponse {
        id: created.id,
        url: created.url,
    }))
}

/// Push to the user when a paid plan becomes active or a payment fails (in the background:
/// the webhook is acknowledged without waiting for push services).
fn notify(state: &SharedState, event_type: &str, effect: &BillingEffect) {
    if !state.push.config.enabled {
        return;
    }
    let (sub_id, message) = match (event_type, effect) {
        ("invoice.payment_failed", BillingEffect::Subscription(s)) => (
            s.id.clone(),
            serde_json::json!({"type": "payment_failed", "title": "Payment failed",
                "body": "Your last payment did not go through; please update your card."}),
        ),
        (_, BillingEffect::Subscription(s)) if s.status == "active" && s.plan.is_some() => (
            s.id.clone(),
            serde_json::json!({"type": "plan_active", "plan": s.plan,
                "title": "Your plan is active", "body": "Thank you! Your readings are unlocked."}),
        ),
        _ => return,
    };
    let state = state.clone();
    tokio::spawn(async move {
        let user = match state.store.subscription(&sub_id).await {
            Ok(Some((Some(user), ..))) => user,
            _ => return,
        };
        state.push.notify_user(&state.store, &user, &message).await;
    });
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    received: bool,
    /// `applied`, `duplicate` or `ignored`.
    outcome: &'static str,
}

/// Receive a Stripe event: verify its signature over the raw body, record its id, apply it.
#[utoipa::path(post, path = "/api/webhook/stripe", tag = "billing",
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = WebhookAck),
        (status = 400, description = "bad signature or not an event"),
        (status = 404, description = "webhooks are disabled")))]
async fn stripe_webhook(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let billing = &state.billing;
    if !billing.config.enable_webhooks {
        return Err(ApiError::not_found("no route for /api/webhook/stripe"));
    }
    let count = |event_type: &str, outcome: &str| {
        let label = if HANDLED.contains(&event_type) {
            event_type
        } else {
            "other"
        };
        billing
            .webhooks_total
            .with_label_values(&[label, outcome])
            .inc();
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(err) = webhook::verify(
        signature,
        &body,
        &billing.config.webhook_secrets,
        crate::store::now(),
    ) {
        count("other", "invalid_signature");
        return Err(ApiError::bad_request("invalid_signature", err.to_string()));
    }
    let (event, effect) = webhook::interpret(&body, &billing.config).map_err(|err| {
        count("other", "bad_payload");
        ApiError::bad_request("invalid_event", err.to_string())
    })?;
    let outcome = match state.store.apply_stripe_event(&event, &effect).await {
        Ok(outcome) => outcome,
        Err(err) => {
            count(&event.event_type, "error");
            return Err(err.into());
        }
    };
    let label = match (outcome, &effect) {
        (EventOutcome::Duplicate, _) => "duplicate",
        (EventOutcome::Applied, BillingEffect::Nothing) => "ignored",
        (EventOutcome::Applied, _) => "applied",
    };
    count(&event.event_type, label);
    if outcome == EventOutcome::Applied {
        notify(&state, &event.event_type, &effect);
    }
    tracing::info!(event = %event.id, r#type = %event.event_type, outcome = label, "stripe webhook");
    Ok(Json(WebhookAck {
        received: true,
        outcome: label,
    }))
}
