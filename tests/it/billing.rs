//! Billing end to end: Checkout against a local recording server standing in for Stripe's API
//! (exact form body and headers), webhooks signed in this run by the official `stripe` Python
//! package (scripts/oracles/stripe_sign.py), dedupe and ordering, plans, quotas and `/api/me`
//! — on SQLite and on PostgreSQL when `DATABASE_URL_TEST` is set.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use starpillar::auth::{AuthConfig, AuthMode};
use starpillar::billing::{BillingArgs, BillingConfig};
use starpillar::config::Secret;
use starpillar::store::billing::BillingTable;
use tower::ServiceExt;

use crate::auth::{mint, v4};
use crate::common::{body_json, error_code, run_oracle, send, tempdir::TempDir};
use crate::store::{Db, app_with, backends};

const SESSION_SECRET: &str = "billing-session-secret";
pub const WHSEC: &str = "whsec_test_current_5c1d";
const WHSEC_OLD: &str = "whsec_test_previous_9a0e";
const PREMIUM_PRICE: &str = "price_premium_monthly";
const LIFETIME_PRICE: &str = "price_lifetime_once";

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A local HTTP server standing in for Stripe: records every request, answers `reply`.
async fn fake_stripe(reply: (StatusCode, Value)) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let log = log.clone();
        let reply = reply.clone();
        async move {
            let path = req.uri().path().to_owned();
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            log.lock().expect("lock").push(Recorded {
                path,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
            (reply.0, axum::Json(reply.1))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

pub fn billing_config(api_base: &str, webhook_secrets: &str, webhooks: bool) -> BillingConfig {
    let args = BillingArgs {
        stripe_secret_key: Some(Secret::new("sk_test_123")),
        stripe_webhook_secret: Some(Secret::new(webhook_secrets)),
        stripe_api_base: api_base.to_owned(),
        enable_webhooks: webhooks,
        plan_quotas: vec!["anonymous=1".into(), "free=2".into(), "premium=5".into()],
        one_time_plans: vec!["lifetime".into()],
        checkout_success_url: Some("https://app.example/ok".into()),
        checkout_cancel_url: Some("https://app.example/cancel".into()),
        ..BillingArgs::default()
    };
    let env = vec![
        ("STRIPE_PRICE_PREMIUM".to_owned(), PREMIUM_PRICE.to_owned()),
        (
            "STRIPE_PRICE_LIFETIME".to_owned(),
            LIFETIME_PRICE.to_owned(),
        ),
    ];
    BillingConfig::from_args(&args, env).expect("valid billing config")
}

fn billing_app(
    dir: &std::path::Path,
    db: &Db,
    billing: BillingConfig,
) -> (axum::Router, starpillar::state::SharedState) {
    app_with(dir, db, |cfg| {
        cfg.auth = AuthConfig::with_secrets(AuthMode::Optional, &[SESSION_SECRET]);
        cfg.billing = billing;
    })
}

async fn post(
    app: &axum::Router,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = send(app, req.body(Body::from(body.to_owned())).expect("request")).await;
    let status = response.status();
    (status, body_json(response).await)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn checkout_posts_the_exact_form_to_stripe() {
    let tokens = mint(&[v4(
        SESSION_SECRET,
        3600,
        json!({"sub": "user_42", "email": "buyer@example.com"}),
    )]);
    let token = tokens[0].as_str();
    let reply =
        json!({"id": "cs_test_abc", "url": "https://checkout.stripe.com/c/pay/cs_test_abc"});
    let (base, seen) = fake_stripe((StatusCode::OK, reply)).await;
    let dir = TempDir::new();
    let (app, _) = billing_app(dir.path(), &None, billing_config(&base, WHSEC, false));

    let (s, b) = post(
        &app,
        "/api/checkout",
        Some(token),
        &format!(r#"{{"price_id":"{PREMIUM_PRICE}"}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"id": "cs_test_abc", "url": "https://checkout.stripe.com/c/pay/cs_test_abc"})
    );
    let (s, _) = post(
        &app,
        "/api/checkout",
        Some(token),
        &format!(r#"{{"price_id":"{LIFETIME_PRICE}","success_url":"https://x.example/s","cancel_url":"https://x.example/c"}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2);
    let sub = &requests[0];
    assert_eq!(sub.path, "/v1/checkout/sessions");
    let header = |r: &Recorded, k: &str| {
        r.headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header(sub, "authorization"), "Bearer sk_test_123");
    assert_eq!(
        header(sub, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert!(
        uuid::Uuid::parse_str(&header(sub, "idempotency-key")).is_ok(),
        "{sub:?}"
    );
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&sub.body).expect("form body");
    assert_eq!(
        form,
        pairs(&[
            ("mode", "subscription"),
            ("line_items[0][price]", PREMIUM_PRICE),
            ("line_items[0][quantity]", "1"),
            ("success_url", "https://app.example/ok"),
            ("cancel_url", "https://app.example/cancel"),
            ("client_reference_id", "user_42"),
            ("customer_email", "buyer@example.com"),
            ("metadata[userId]", "user_42"),
            ("metadata[plan]", "premium"),
            ("subscription_data[metadata][userId]", "user_42"),
            ("subscription_data[metadata][plan]", "premium"),
        ])
    );
    let once: Vec<(String, String)> = serde_urlencoded::from_str(&requests[1].body).expect("form");
    assert_eq!(
        once,
        pairs(&[
            ("mode", "payment"),
            ("line_items[0][price]", LIFETIME_PRICE),
            ("line_items[0][quantity]", "1"),
            ("success_url", "https://x.example/s"),
            ("cancel_url", "https://x.example/c"),
            ("client_reference_id", "user_42"),
            ("customer_email", "buyer@example.com"),
            ("metadata[userId]", "user_42"),
            ("metadata[plan]", "lifetime"),
        ])
    );
    assert_ne!(
        header(sub, "idempotency-key"),
        header(&requests[1], "idempotency-key")
    );

    // Not whitelisted: 400, and Stripe is never called.
    let (s, b) = post(
        &app,
        "/api/checkout",
        Some(token),
        r#"{"price_id":"price_evil"}"#,
    )
    .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "unknown_price".into())
    );
    let (s, _) = post(
        &app,
        "/api/checkout",
        None,
        &format!(r#"{{"price_id":"{PREMIUM_PRICE}"}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = post(
        &app,
        "/api/checkout",
        Some(token),
        &format!(r#"{{"price_id":"{PREMIUM_PRICE}","success_url":"javascript:x"}}"#),
    )
    .await;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("success_url"))
    );
    assert_eq!(seen.lock().expect("lock").len(), 2);

    // Stripe refuses: 502 carrying Stripe's message.
    let msg = "No such price: 'price_premium_monthly'";
    let (bad_base, _) = fake_stripe((
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": msg, "type": "invalid_request_error"}}),
    ))
    .await;
    let (app, _) = billing_app(dir.path(), &None, billing_config(&bad_base, WHSEC, false));
    let (s, b) = post(
        &app,
        "/api/checkout",
        Some(token),
        &format!(r#"{{"price_id":"{PREMIUM_PRICE}"}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(b["error"]["message"], msg);
}

/// Sign payloads with the stripe package: (headers, stripe's own verdicts).
pub fn sign(cases: Vec<Value>) -> (Vec<String>, Vec<bool>) {
    let out = run_oracle("stripe_sign.py", &json!({ "cases": cases }));
    let headers = out["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h.as_str().expect("str").to_owned())
        .collect();
    let accepts = out["stripe_accepts"]
        .as_array()
        .expect("accepts")
        .iter()
        .map(|a| a.as_bool().expect("bool"))
        .collect();
    (headers, accepts)
}

pub fn case(payload: &str, sign_with: &[&str], offset: i64, scheme: &str) -> Value {
    json!({"payload": payload, "sign_with": sign_with, "offset": offset, "scheme": scheme, "verify_with": WHSEC})
}

pub async fn deliver(app: &axum::Router, payload: &str, signature: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(
            Request::post("/api/webhook/stripe")
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .body(Body::from(payload.to_owned()))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status();
    (status, body_json(response).await)
}

pub fn subscription_event(
    id: &str,
    kind: &str,
    created: i64,
    sub: &str,
    user: &str,
    status: &str,
) -> String {
    json!({
        "id": id, "object": "event", "type": format!("customer.subscription.{kind}"),
        "created": created, "livemode": false, "api_version": "2024-06-20",
        "data": {"object": {
            "id": sub, "object": "subscription", "customer": format!("cus_{user}"),
            "status": status, "current_period_end": created + 30 * 86_400,
            "metadata": {"userId": user, "plan": "premium"},
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": PREMIUM_PRICE}}]}
        }}
    })
    .to_string()
}

pub fn invoice_event(id: &str, kind: &str, created: i64, sub: &str, user: &str) -> String {
    json!({
        "id": id, "object": "event", "type": format!("invoice.{kind}"), "created": created,
        "data": {"object": {
            "id": format!("in_{id}"), "object": "invoice", "subscription": sub,
            "customer": format!("cus_{user}"),
            "lines": {"data": [{"period": {"start": created, "end": created + 31 * 86_400}}]}
        }}
    })
    .to_string()
}

#[tokio::test]
async fn webhook_signatures_from_the_stripe_package() {
    let good = subscription_event(
        "evt_sig_1",
        "created",
        1_700_000_000,
        "sub_sig",
        "u_sig",
        "active",
    );
    let (headers, stripe_says) = sign(vec![
        case(&good, &[WHSEC], 0, "v1"),
        case(&good, &[WHSEC], -301, "v1"),
        case(&good, &[WHSEC], -290, "v1"),
        case(&good, &[WHSEC], 0, "v0"),
        case(&good, &[WHSEC_OLD], 0, "v1"),
        case(&good, &[WHSEC_OLD, WHSEC], 0, "v1"),
    ]);
    // The reference agrees with what we expect of each header.
    assert_eq!(stripe_says, [true, false, true, false, false, true]);
    let dir = TempDir::new();
    let (app, state) = billing_app(
        dir.path(),
        &None,
        billing_config("http://127.0.0.1:9", WHSEC, true),
    );
    let tampered = good.replace("\"active\"", "\"trialing\"");
    assert_ne!(tampered, good);
    let cases = [
        (
            "tampered",
            tampered.as_str(),
            &headers[0],
            StatusCode::BAD_REQUEST,
        ),
        ("stale 301 s", &good, &headers[1], StatusCode::BAD_REQUEST),
        ("missing v1", &good, &headers[3], StatusCode::BAD_REQUEST),
        (
            "old secret only",
            &good,
            &headers[4],
            StatusCode::BAD_REQUEST,
        ),
        ("no header", &good, &String::new(), StatusCode::BAD_REQUEST),
        ("valid", &good, &headers[0], StatusCode::OK),
        ("290 s old, two v1", &good, &headers[5], StatusCode::OK),
        ("within tolerance", &good, &headers[2], StatusCode::OK),
    ];
    for (what, body, header, want) in cases {
        let (s, b) = deliver(&app, body, header).await;
        assert_eq!(s, want, "{what}: {b}");
        if want != StatusCode::OK {
            assert_eq!(error_code(&b), "invalid_signature", "{what}");
        }
    }
    assert_eq!(
        state
            .store
            .count(BillingTable::StripeEvents)
            .await
            .expect("n"),
        1
    );
    let metrics = send(
        &app,
        Request::get("/metrics").body(Body::empty()).expect("r"),
    )
    .await;
    let text = String::from_utf8(crate::common::body_bytes(metrics).await).expect("utf8");
    assert!(
        text.contains("# HELP starpillar_stripe_webhooks_total"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"starpillar_stripe_webhooks_total{outcome="invalid_signature",type="other"} 5"#
        ),
        "{text}"
    );
    // Rotation: with both secrets configured, the old-secret-only delivery is accepted.
    let (app, _) = billing_app(
        dir.path(),
        &None,
        billing_config("http://127.0.0.1:9", &format!("{WHSEC},{WHSEC_OLD}"), true),
    );
    assert_eq!(deliver(&app, &good, &headers[4]).await.0, StatusCode::OK);
    // Disabled: 404.
    let (app, _) = billing_app(
        dir.path(),
        &None,
        billing_config("http://127.0.0.1:9", WHSEC, false),
    );
    assert_eq!(
        deliver(&app, &good, &headers[0]).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A deterministic shuffle (xorshift), so a failure can be replayed from the printed seed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[tokio::test]
async fn duplicates_and_shuffled_concurrent_events_leave_the_right_rows() {
    let seed = 0x5EED_2026_u64;
    println!("shuffle seed {seed:#x}");
    let t0 = 1_763_000_000;
    // Five users; each subscription goes created → updated(active) → invoice.paid, and the
    // odd ones are then deleted: 5 × 3 + 3 (deleted: u1, u3) + 2 (payment_failed later: u0)…
    let mut events: Vec<(String, String)> = Vec::new(); // (id, payload)
    for u in 0..5 {
        let (user, sub) = (format!("u{u}"), format!("sub_u{u}"));
        let e = |n: &str| format!("evt_{n}_{u}");
        events.push((
            e("c"),
            subscription_event(&e("c"), "created", t0, &sub, &user, "incomplete"),
        ));
        events.push((
            e("u"),
            subscription_event(&e("u"), "updated", t0 + 10, &sub, &user, "active"),
        ));
        events.push((e("p"), invoice_event(&e("p"), "paid", t0 + 11, &sub, &user)));
        if u % 2 == 1 {
            events.push((
                e("d"),
                subscription_event(&e("d"), "deleted", t0 + 20, &sub, &user, "canceled"),
            ));
        } else {
            events.push((e("x"), json!({"id": e("x"), "type": "charge.refunded", "created": t0, "data": {"object": {"id": "ch_1"}}}).to_string()));
        }
    }
    assert_eq!(events.len(), 20);
    shuffle(&mut events, seed);
    let (headers, _) = sign(
        events
            .iter()
            .map(|(_, p)| case(p, &[WHSEC], 0, "v1"))
            .collect(),
    );
    let dup = subscription_event("evt_dup", "created", t0, "sub_dup", "udup", "active");
    let (dup_header, _) = sign(vec![case(&dup, &[WHSEC], 0, "v1")]);
    let session = mint(&[
        v4(
            SESSION_SECRET,
            3600,
            json!({"sub": "u0", "email": "u0@example.com"}),
        ),
        v4(SESSION_SECRET, 3600, json!({"sub": "u1"})),
    ]);

    for db in backends().await {
        let dir = TempDir::new();
        let (app, state) = billing_app(
            dir.path(),
            &db,
            billing_config("http://127.0.0.1:9", WHSEC, true),
        );
        // The same event three times: applied once, then duplicates; one row.
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let (s, b) = deliver(&app, &dup, &dup_header[0]).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            outcomes.push(b["outcome"].as_str().expect("outcome").to_owned());
        }
        assert_eq!(outcomes, ["applied", "duplicate", "duplicate"]);
        // 20 shuffled events, all in flight at once.
        let tasks: Vec<_> = events
            .iter()
            .zip(&headers)
            .map(|((_, payload), header)| {
                let (app, payload, header) = (app.clone(), payload.clone(), header.clone());
                tokio::spawn(async move { deliver(&app, &payload, &header).await })
            })
            .collect();
        for t in tasks {
            let (s, b) = t.await.expect("join");
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let store = &state.store;
        assert_eq!(
            store.count(BillingTable::StripeEvents).await.expect("n"),
            21
        );
        assert_eq!(
            store.count(BillingTable::Subscriptions).await.expect("n"),
            6
        );
        for u in 0..5 {
            let row = store
                .subscription(&format!("sub_u{u}"))
                .await
                .expect("q")
                .expect("row");
            let want = if u % 2 == 1 { "canceled" } else { "active" };
            assert_eq!(row.2, want, "u{u}");
            assert_eq!(row.0.as_deref(), Some(format!("u{u}").as_str()));
            assert_eq!(row.1.as_deref(), Some("premium"));
            if u % 2 == 0 {
                assert_eq!(
                    row.3,
                    Some(t0 + 11 + 31 * 86_400),
                    "invoice period end wins"
                );
            }
        }
        // /api/me: u0 is premium until the invoice's period end; u1 fell back to free.
        let me = |t: String| {
            let app = app.clone();
            async move {
                let r = send(
                    &app,
                    Request::get("/api/me")
                        .header("authorization", format!("Bearer {t}"))
                        .body(Body::empty())
                        .expect("r"),
                )
                .await;
                let s = r.status();
                (s, body_json(r).await)
            }
        };
        let (s, b) = me(session[0].clone()).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["plan"], "premium");
        assert_eq!(b["user"]["email"], "u0@example.com");
        assert_eq!(b["quota"]["limit"], 5);
        assert_eq!(b["quota"]["left"], 5);
        assert!(
            b["renews_at"]
                .as_str()
                .is_some_and(|r| r.starts_with("2025-12-14")),
            "{b}"
        );
        let (_, b) = me(session[1].clone()).await;
        assert_eq!(
            (b["plan"].clone(), b["quota"]["limit"].clone()),
            (json!("free"), json!(2))
        );
    }
}

#[tokio::test]
async fn quotas_charge_on_success_and_402_says_how_to_upgrade() {
    for db in backends().await {
        let dir = TempDir::new();
        let (_, state) = billing_app(
            dir.path(),
            &db,
            billing_config("http://127.0.0.1:9", WHSEC, true),
        );
        let billing = &state.billing;
        // Anonymous: 1 a day, keyed by IP.
        let q = billing
            .quota_for(&state.store, AuthMode::Optional, None, "203.0.113.9")
            .await
            .expect("q")
            .expect("metered");
        assert_eq!(
            (q.subject.as_str(), q.plan.as_str(), q.limit),
            ("ip:203.0.113.9", "anonymous", 1)
        );
        assert!(matches!(
            state.store.charge(&q).await.expect("c"),
            starpillar::store::Charge::Charged { used: 1 }
        ));
        let q = billing
            .quota_for(&state.store, AuthMode::Optional, None, "203.0.113.9")
            .await
            .expect("q")
            .expect("metered");
        assert!(q.exhausted());
        let response = axum::response::IntoResponse::into_response(billing.exhausted(&q));
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let body = body_json(response).await;
        assert_eq!(error_code(&body), "quota_exhausted");
        let mut prices: Vec<String> =
            serde_json::from_value(body["error"]["upgrade"]["price_ids"].clone()).expect("ids");
        prices.sort();
        assert_eq!(prices, [LIFETIME_PRICE, PREMIUM_PRICE]);
        // Another address has its own budget; sessions off means no metering at all.
        let other = billing
            .quota_for(&state.store, AuthMode::Optional, None, "203.0.113.10")
            .await
            .expect("q")
            .expect("m");
        assert_eq!(other.remaining(), 1);
        assert!(
            billing
                .quota_for(&state.store, AuthMode::Off, None, "x")
                .await
                .expect("q")
                .is_none()
        );
    }
}

fn checkout_completed(id: &str, user: &str, mode: &str, plan: &str, sub: Option<&str>) -> String {
    json!({
        "id": id, "object": "event", "type": "checkout.session.completed",
        "created": 1_763_000_100,
        "data": {"object": {
            "id": format!("cs_{id}"), "object": "checkout.session", "mode": mode,
            "client_reference_id": user, "customer": format!("cus_{user}"),
            "customer_details": {"email": format!("{user}@example.com")},
            "payment_status": "paid", "subscription": sub,
            "metadata": {"userId": user, "plan": plan}
        }}
    })
    .to_string()
}

#[tokio::test]
async fn checkout_completion_grants_one_time_plans_and_links_customers() {
    let life = checkout_completed("evt_cs_1", "u_life", "payment", "lifetime", None);
    let subbed = checkout_completed(
        "evt_cs_2",
        "u_sub",
        "subscription",
        "premium",
        Some("sub_x"),
    );
    // A later update that only names the customer (no metadata) still finds the user.
    let update = json!({
        "id": "evt_cs_3", "type": "customer.subscription.updated", "created": 1_763_000_200,
        "data": {"object": {"id": "sub_x", "customer": "cus_u_sub", "status": "past_due",
            "items": {"data": [{"price": {"id": PREMIUM_PRICE}}]}}}
    })
    .to_string();
    let (headers, _) = sign(vec![
        case(&life, &[WHSEC], 0, "v1"),
        case(&subbed, &[WHSEC], 0, "v1"),
        case(&update, &[WHSEC], 0, "v1"),
    ]);
    let tokens = mint(&[
        v4(SESSION_SECRET, 3600, json!({"sub": "u_life"})),
        v4(SESSION_SECRET, 3600, json!({"sub": "u_sub"})),
    ]);
    for db in backends().await {
        let dir = TempDir::new();
        let (app, state) = billing_app(
            dir.path(),
            &db,
            billing_config("http://127.0.0.1:9", WHSEC, true),
        );
        for (payload, header) in [&life, &subbed].into_iter().zip(&headers) {
            let (s, b) = deliver(&app, payload, header).await;
            assert_eq!(
                (s, b["outcome"].clone()),
                (StatusCode::OK, json!("applied")),
                "{b}"
            );
        }
        let me = |t: String| {
            let app = app.clone();
            async move {
                let r = send(
                    &app,
                    Request::get("/api/me")
                        .header("authorization", format!("Bearer {t}"))
                        .body(Body::empty())
                        .expect("r"),
                )
                .await;
                body_json(r).await
            }
        };
        let b = me(tokens[0].clone()).await;
        assert_eq!(
            (b["plan"].clone(), b["quota"]["limit"].clone()),
            (json!("lifetime"), json!(100)),
            "{b}"
        );
        assert_eq!(b["status"], "paid");
        let b = me(tokens[1].clone()).await;
        assert_eq!(b["plan"], "premium", "{b}");
        assert_eq!(state.store.count(BillingTable::Users).await.expect("n"), 2);
        assert_eq!(
            state
                .store
                .count(BillingTable::Entitlements)
                .await
                .expect("n"),
            1
        );
        let (s, _) = deliver(&app, &update, &headers[2]).await;
        assert_eq!(s, StatusCode::OK);
        let row = state
            .store
            .subscription("sub_x")
            .await
            .expect("q")
            .expect("row");
        assert_eq!(
            (row.0.as_deref(), row.2.as_str()),
            (Some("u_sub"), "past_due")
        );
        let b = me(tokens[1].clone()).await;
        assert_eq!(b["plan"], "free", "past_due does not grant the plan: {b}");
    }
}

/// A metered route as the AI handlers will write it: `Metered`, work, then `charge`.
async fn metered_reading(
    axum::extract::State(state): axum::extract::State<starpillar::state::SharedState>,
    metered: starpillar::billing::Metered,
    body: String,
) -> Result<axum::Json<Value>, starpillar::error::ApiError> {
    if body == "fail" {
        return Err(starpillar::error::ApiError::bad_request(
            "failed",
            "the work failed",
        ));
    }
    metered.charge(&state).await?;
    Ok(axum::Json(
        json!({"left": metered.quota.map(|q| q.remaining() - 1)}),
    ))
}

#[tokio::test]
async fn metered_routes_charge_only_on_success() {
    let token = mint(&[v4(SESSION_SECRET, 3600, json!({"sub": "reader"}))]).remove(0);
    let dir = TempDir::new();
    let state = crate::store::state_with(dir.path(), &None, |cfg| {
        cfg.auth = AuthConfig::with_secrets(AuthMode::Optional, &[SESSION_SECRET]);
        cfg.billing = billing_config("http://127.0.0.1:9", WHSEC, false);
    });
    let router = axum::Router::new().route("/metered", axum::routing::post(metered_reading));
    let app = starpillar::api::with_middleware(router, state.clone());
    let call = |body: &'static str| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let r = send(
                &app,
                Request::post("/metered")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::from(body))
                    .expect("r"),
            )
            .await;
            let s = r.status();
            (s, body_json(r).await)
        }
    };
    // The free plan allows 2 a day; failures are free.
    assert_eq!(call("fail").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call("fail").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call("ok").await, (StatusCode::OK, json!({"left": 1})));
    assert_eq!(call("ok").await, (StatusCode::OK, json!({"left": 0})));
    let (s, b) = call("ok").await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{b}");
    assert_eq!(error_code(&b), "quota_exhausted");
    assert!(
        b["error"]["upgrade"]["price_ids"]
            .as_array()
            .is_some_and(|a| a.len() == 2),
        "{b}"
    );
    let me = state
        .store
        .quota("user:reader", "free", 2)
        .await
        .expect("quota");
    assert_eq!(me.used, 2);
}
