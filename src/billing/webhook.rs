//! Stripe webhooks: the `Stripe-Signature` check and the mapping from an event to its effect
//! on the store.
//!
//! Signature: `t=<unix>,v1=<hex>[,v1=<hex>…]`; each `v1` is HMAC-SHA256 over `"{t}.{raw
//! body}"` keyed with the whole `whsec_…` string. Any `v1` may match any configured secret
//! (rotation); comparisons are constant-time; a timestamp more than 300 s old is refused.

mod signature;

use serde_json::Value;

use crate::config::Secret;
use crate::store::billing::{BillingEffect, StripeEventRecord, SubscriptionChange};

use super::BillingConfig;

pub use signature::{SignatureError, TOLERANCE_SECS};

/// Event types with an effect; others are acknowledged and ignored.
pub const HANDLED: &[&str] = &[
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
];

/// Verify a delivery's signature header against the raw body (rules in `webhook/signature.rs`).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<(), SignatureError> {
    let keys: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
    signature::verify(header, body, &keys, now)
}

/// An event body that is not a Stripe event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct BadEvent(pub &'static str);

/// Parse an event and decide its effect.
pub fn interpret(
    body: &[u8],
    config: &BillingConfig,
) -> Result<(StripeEventRecord, BillingEffect), BadEvent> {
    let event: Value = serde_json::from_slice(body).map_err(|_| BadEvent("invalid JSON"))?;
    let id = str_at(&event, &["id"]).ok_or(BadEvent("no id"))?;
    let event_type = str_at(&event, &["type"]).ok_or(BadEvent("no type"))?;
    let created = event["created"].as_i64().ok_or(BadEvent("no created"))?;
    let object = &event["data"]["object"];
    if !object.is_object() {
        return Err(BadEvent("no data.object"));
    }
    let record = StripeEventRecord {
        id,
        event_type: event_type.clone(),
        created,
    };
    let effect = match event_type.as_str() {
        "checkout.session.completed" => checkout_completed(object, config),
        "customer.subscription.created" => subscription(object, config, 1),
        "customer.subscription.updated" => subscription(object, config, 2),
        "customer.subscription.deleted" => subscription(object, config, 3),
        "invoice.paid" => invoice(object, "active"),
        "invoice.payment_failed" => invoice(object, "past_due"),
        _ => BillingEffect::Nothing,
    };
    Ok((record, effect))
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// An id field that may be a string or an expanded object.
fn id_at(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn checkout_completed(object: &Value, config: &BillingConfig) -> BillingEffect {
    let Some(user_id) = str_at(object, &["client_reference_id"])
        .or_else(|| str_at(object, &["metadata", "userId"]))
    else {
        return BillingEffect::Nothing;
    };
    let paid = matches!(
        object["payment_status"].as_str(),
        Some("paid" | "no_payment_required")
    );
    let plan = str_at(object, &["metadata", "plan"]).filter(|p| config.plans.contains_key(p));
    let customer_id = id_at(object, "customer");
    let subscription = id_at(object, "subscription").map(|id| SubscriptionChange {
        id,
        user_id: Some(user_id.clone()),
        customer_id: customer_id.clone(),
        plan: plan.clone(),
        price_id: None,
        status: if paid { "active" } else { "incomplete" }.to_owned(),
        current_period_end: None,
        rank: 0,
    });
    BillingEffect::CheckoutCompleted {
        session_id: str_at(object, &["id"]).unwrap_or_default(),
        user_id,
        email: str_at(object, &["customer_details", "email"])
            .or_else(|| str_at(object, &["customer_email"])),
        customer_id,
        plan,
        paid,
        subscription,
    }
}

fn subscription(object: &Value, config: &BillingConfig, rank: i64) -> BillingEffect {
    let Some(id) = str_at(object, &["id"]) else {
        return BillingEffect::Nothing;
    };
    let item = &object["items"]["data"][0];
    let price_id = str_at(item, &["price", "id"]);
    let plan = str_at(object, &["metadata", "plan"])
        .filter(|p| config.plans.contains_key(p))
        .or_else(|| {
            price_id
                .as_deref()
                .and_then(|p| config.plan_for_price(p))
                .map(|p| p.name.clone())
        });
    let status = if rank == 3 {
        "canceled".to_owned()
    } else {
        str_at(object, &["status"]).unwrap_or_else(|| "incomplete".to_owned())
    };
    BillingEffect::Subscription(SubscriptionChange {
        id,
        user_id: str_at(object, &["metadata", "userId"]),
        customer_id: id_at(object, "customer"),
        plan,
        price_id,
        status,
        // Top-level before API version 2025-03-31, per item since.
        current_period_end: object["current_period_end"]
            .as_i64()
            .or_else(|| item["current_period_end"].as_i64()),
        rank,
    })
}

fn invoice(object: &Value, status: &str) -> BillingEffect {
    let sub = id_at(object, "subscription")
        .or_else(|| str_at(object, &["parent", "subscription_details", "subscription"]));
    let Some(id) = sub else {
        return BillingEffect::Nothing;
    };
    let period_end = object["lines"]["data"][0]["period"]["end"].as_i64();
    BillingEffect::Subscription(SubscriptionChange {
        id,
        customer_id: id_at(object, "customer"),
        status: status.to_owned(),
        current_period_end: if status == "active" { period_end } else { None },
        rank: 2,
        ..SubscriptionChange::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_tried_in_turn() {
        let s = [Secret::new("whsec_x")];
        assert_eq!(verify(None, b"", &s, 0), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("t=1,v1=abcd"), b"", &s, 0),
            Err(SignatureError::Mismatch)
        );
    }
}
