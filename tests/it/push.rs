//! Web Push end to end: a browser subscription (keys made by node's crypto), a Stripe event
//! that activates a plan, and a local HTTP endpoint standing in for the push service; the
//! push is decrypted independently (`http_ece`, scripts/oracles/node/push_oracle.cjs) with
//! the subscriber's private key, and its VAPID JWT verified with node's crypto.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use starpillar::auth::{AuthConfig, AuthMode};
use starpillar::push::crypto::Vapid;
use starpillar::push::{Delivery, PushConfig};
use starpillar::store::push::PushSubscriptionRow;

use crate::auth::{mint, v4};
use crate::billing::{
    WHSEC, billing_config, case, deliver, invoice_event, sign, subscription_event,
};
use crate::common::{body_json, send, tempdir::TempDir};
use crate::store::app_with;

const SECRET: &str = "push-session-secret";

fn oracle(input: &Value) -> Value {
    use std::io::Write;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/oracles/node/push_oracle.cjs");
    let cache = std::env::var_os("STARPILLAR_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/starpillar")
        });
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .env("NODE_PATH", cache.join("node/node_modules"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("node");
    assert!(
        out.status.success(),
        "push oracle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle JSON")
}

type Received = Arc<Mutex<Vec<(String, Vec<(String, String)>, Vec<u8>)>>>;

/// A push service: `/ok/*` answers 201, `/gone/*` 410; records everything.
async fn push_service() -> (String, Received) {
    let seen: Received = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_owned();
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let gone = path.starts_with("/gone");
            log.lock()
                .expect("lock")
                .push((path, headers, body.to_vec()));
            if gone {
                StatusCode::GONE
            } else {
                StatusCode::CREATED
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

async fn wait_for(seen: &Received, n: usize) {
    for _ in 0..100 {
        if seen.lock().expect("lock").len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the push service did not receive {n} pushes");
}

async fn call(app: &axum::Router, method: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let r = send(
        app,
        Request::builder()
            .method(method)
            .uri("/api/push/subscription")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await;
    let s = r.status();
    (s, body_json(r).await)
}

#[tokio::test]
async fn plan_activation_and_payment_failure_are_pushed_and_decrypt() {
    let keys = oracle(&json!({"op": "keys"}));
    let (vapid_pub, vapid_priv) = (
        keys["vapid"]["publicKey"].as_str().expect("k").to_owned(),
        keys["vapid"]["privateKey"].as_str().expect("k").to_owned(),
    );
    let sub = &keys["subscriber"];
    let (base, seen) = push_service().await;
    let token = mint(&[v4(SECRET, 3600, json!({"sub": "u_push"}))]).remove(0);
    let dir = TempDir::new();
    let vapid = Vapid::new(&vapid_pub, &vapid_priv, "mailto:ops@example.com").expect("vapid");
    let (app, state) = app_with(dir.path(), &None, |cfg| {
        cfg.auth = AuthConfig::with_secrets(AuthMode::Optional, &[SECRET]);
        cfg.billing = billing_config("http://127.0.0.1:9", WHSEC, true);
        cfg.push = PushConfig {
            enabled: true,
            vapid: Some(vapid),
            allow_http_endpoints: true,
        };
    });
    let endpoint = format!("{base}/ok/device-1");
    let browser = json!({"endpoint": endpoint, "expirationTime": null,
        "keys": {"p256dh": sub["p256dh"], "auth": sub["auth"]}});
    let (s, b) = call(&app, "POST", &token, browser.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["vapid_public_key"], vapid_pub);
    // Bad keys and endpoints are 422 naming the field.
    let mut bad = browser.clone();
    bad["keys"]["p256dh"] = json!("AAAA");
    let (s, b) = call(&app, "POST", &token, bad).await;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("keys.p256dh"))
    );
    let mut bad = browser.clone();
    bad["endpoint"] = json!("ftp://push.example/x");
    assert_eq!(
        call(&app, "POST", &token, bad).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // The plan becomes active (webhook), then a payment fails: two pushes.
    let t0 = chrono::Utc::now().timestamp();
    let active = subscription_event("evt_push_1", "created", t0, "sub_push", "u_push", "active");
    let failed = invoice_event("evt_push_2", "payment_failed", t0 + 5, "sub_push", "u_push");
    let (headers, _) = sign(vec![
        case(&active, &[WHSEC], 0, "v1"),
        case(&failed, &[WHSEC], 0, "v1"),
    ]);
    assert_eq!(deliver(&app, &active, &headers[0]).await.0, StatusCode::OK);
    wait_for(&seen, 1).await;
    assert_eq!(deliver(&app, &failed, &headers[1]).await.0, StatusCode::OK);
    wait_for(&seen, 2).await;

    let got = seen.lock().expect("lock").clone();
    let mut kinds = Vec::new();
    for (path, hdrs, body) in &got {
        assert_eq!(path, "/ok/device-1");
        let h = |k: &str| {
            hdrs.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(h("content-encoding"), "aes128gcm");
        assert!(h("ttl").parse::<u64>().is_ok());
        let opened = oracle(&json!({
            "op": "open",
            "body": base64::engine::general_purpose::STANDARD.encode(body),
            "privateKey": sub["privateKey"], "p256dh": sub["p256dh"], "auth": sub["auth"],
            "authorization": h("authorization"), "audience": base,
        }));
        assert_eq!(opened["vapid"]["valid"], true, "{opened}");
        assert_eq!(opened["vapid"]["k"], vapid_pub);
        assert_eq!(opened["vapid"]["claims"]["sub"], "mailto:ops@example.com");
        let message: Value =
            serde_json::from_str(opened["plaintext"].as_str().expect("text")).expect("json");
        kinds.push(message["type"].as_str().expect("type").to_owned());
    }
    assert_eq!(kinds, ["plan_active", "payment_failed"]);

    // A push service answering 410: the subscription is deleted.
    let gone = PushSubscriptionRow {
        endpoint: format!("{base}/gone/device-2"),
        user_id: "u_push".into(),
        p256dh: sub["p256dh"].as_str().expect("k").into(),
        auth: sub["auth"].as_str().expect("k").into(),
    };
    state.store.save_push(&gone).await.expect("save");
    assert_eq!(
        state
            .store
            .push_subscriptions("u_push")
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(
        state.push.send(&state.store, &gone, b"{}").await,
        Delivery::Gone
    );
    assert_eq!(
        state
            .store
            .push_subscriptions("u_push")
            .await
            .expect("list")
            .len(),
        1
    );

    let (s, b) = call(&app, "DELETE", &token, json!({"endpoint": endpoint})).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("deleted")));
    assert!(
        state
            .store
            .push_subscriptions("u_push")
            .await
            .expect("list")
            .is_empty()
    );

    // Push off: the routes are 404.
    let (app, _) = app_with(dir.path(), &None, |cfg| {
        cfg.auth = AuthConfig::with_secrets(AuthMode::Optional, &[SECRET]);
    });
    assert_eq!(
        call(&app, "POST", &token, browser).await.0,
        StatusCode::NOT_FOUND
    );
}
