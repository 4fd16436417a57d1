//! Creating a Stripe Checkout Session: a form-encoded `POST {STRIPE_API_BASE}/v1/checkout/sessions`
//! with an `Idempotency-Key` (stable for the same user, price and URLs within a minute, so a
//! double click makes one session), the user id as `client_reference_id` and in `metadata`,
//! and the plan in `metadata[plan]` (and `subscription_data[metadata]` for subscriptions).

use serde::Deserialize;

use super::{Billing, Plan};
use crate::auth::Session;
use crate::error::{ApiError, ErrorKind};

/// What Stripe answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
}

/// The form fields of the Checkout Session request, in order.
pub fn form_fields(
    session: &Session,
    plan: &Plan,
    price_id: &str,
    success_url: &str,
    cancel_url: &str,
) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| f.push((k.to_owned(), v.to_owned()));
    put(
        "mode",
        if plan.one_time {
            "payment"
        } else {
            "subscription"
        },
    );
    put("line_items[0][price]", price_id);
    put("line_items[0][quantity]", "1");
    put("success_url", success_url);
    put("cancel_url", cancel_url);
    put("client_reference_id", &session.user_id);
    if let Some(email) = session.email.as_deref().filter(|e| !e.is_empty()) {
        put("customer_email", email);
    }
    put("metadata[userId]", &session.user_id);
    put("metadata[plan]", &plan.name);
    if !plan.one_time {
        put("subscription_data[metadata][userId]", &session.user_id);
        put("subscription_data[metadata][plan]", &plan.name);
    }
    f
}

/// The idempotency key: a UUIDv5 of user, price, URLs and the current minute.
pub fn idempotency_key(fields: &[(String, String)], now: i64) -> String {
    let mut material = format!("checkout:{}", now / 60);
    for (k, v) in fields {
        material.push('\n');
        material.push_str(k);
        material.push('=');
        material.push_str(v);
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, material.as_bytes()).to_string()
}

impl Billing {
    /// Create a Checkout Session for `session`'s user buying `price_id` (already whitelisted).
    pub async fn create_checkout(
        &self,
        session: &Session,
        plan: &Plan,
        price_id: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<CheckoutSession, ApiError> {
        let Some(key) = &self.config.stripe_secret_key else {
            return Err(ApiError::unavailable(
                "billing_not_configured",
                "checkout is not configured on this server (STRIPE_SECRET_KEY is unset)",
                60,
            ));
        };
        let fields = form_fields(session, plan, price_id, success_url, cancel_url);
        let body = serde_urlencoded::to_string(&fields).map_err(ApiError::internal)?;
        let url = format!("{}/v1/checkout/sessions", self.config.stripe_api_base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(key.expose())
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "idempotency-key",
                idempotency_key(&fields, crate::store::now()),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "stripe unreachable");
                ApiError::new(
                    ErrorKind::BadGateway,
                    "stripe_unreachable",
                    "Stripe could not be reached",
                )
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            ApiError::new(
                ErrorKind::BadGateway,
                "stripe_unreachable",
                format!("Stripe: {e}"),
            )
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("Stripe answered HTTP {}", status.as_u16()));
            return Err(ApiError::new(
                ErrorKind::BadGateway,
                "stripe_error",
                message,
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ErrorKind::BadGateway,
                "stripe_error",
                format!("unexpected answer from Stripe: {e}"),
            )
        })
    }
}
