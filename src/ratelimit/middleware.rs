//! The rate-limit middleware: classify the route, identify the caller (session user, else
//! IP), check the limiter, and answer 429 or decorate the response with `RateLimit-*`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Decision;
use crate::auth::{AuthMode, cookies};
use crate::error::{ApiError, ErrorKind};
use crate::state::SharedState;

/// The class of a path, or `None` for routes that are never limited (health, metrics,
/// OpenAPI, the Stripe webhook, CORS preflights).
pub fn class_of(method: &Method, path: &str) -> Option<&'static str> {
    if method == Method::OPTIONS {
        return None;
    }
    const EXEMPT: &[&str] = &[
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/api/lib-health",
        "/api/db-ping",
        "/api/webhook/stripe",
    ];
    if EXEMPT.contains(&path) {
        return None;
    }
    const AI: &[&str] = &["/api/saju", "/api/astrology", "/api/ask"];
    if AI
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        || path.starts_with("/v1/")
    {
        return Some("ai");
    }
    if path == "/api/checkout"
        || path == "/api/me"
        || path.starts_with("/api/auth/")
        || path.starts_with("/api/push/")
    {
        return Some("account");
    }
    Some("default")
}

/// Middleware: 429 with `Retry-After` when over the limit; `RateLimit-*` headers always.
pub async fn limit(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(class) = class_of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let subject = caller(&state, &request);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let identifier = format!("{class}:{subject}");
    let Some(decision) = state.ratelimit.check(class, &identifier, now_ms).await else {
        return next.run(request).await;
    };
    let retry = ((decision.reset_ms - now_ms).max(0) as u64)
        .div_ceil(1000)
        .max(1);
    if !decision.allowed {
        state
            .ratelimit
            .limited_total
            .with_label_values(&[class])
            .inc();
        let mut response = ApiError::new(
            ErrorKind::TooManyRequests,
            "rate_limited",
            format!("too many requests; retry in {retry} s"),
        )
        .with_retry_after(retry)
        .into_response();
        headers(response.headers_mut(), &decision, retry);
        return response;
    }
    let mut response = next.run(request).await;
    headers(response.headers_mut(), &decision, retry);
    response
}

fn headers(map: &mut HeaderMap, d: &Decision, reset_secs: u64) {
    let set = |map: &mut HeaderMap, name: &'static str, v: i64| {
        map.insert(HeaderName::from_static(name), HeaderValue::from(v));
    };
    set(map, "ratelimit-limit", d.limit);
    set(map, "ratelimit-remaining", d.remaining);
    set(map, "ratelimit-reset", reset_secs as i64);
}

/// `user:<id>` when a valid session token is presented (revocation is the handler's
/// business), else `ip:<address>`.
fn caller(state: &SharedState, request: &Request) -> String {
    if state.auth.mode != AuthMode::Off
        && let Some(presented) = cookies::find_token(request.headers())
        && let Ok(session) =
            state
                .auth
                .verify(&presented.token, presented.cookie, crate::store::now())
    {
        return format!("user:{}", session.user_id);
    }
    let (parts, ()) = clone_parts(request);
    format!(
        "ip:{}",
        crate::auth::extract::client_ip(&parts, state.auth.trust_proxy)
    )
}

/// The parts `client_ip` reads (headers and the peer address), without the body.
fn clone_parts(request: &Request) -> (axum::http::request::Parts, ()) {
    let mut builder = axum::http::Request::builder();
    if let Some(h) = builder.headers_mut() {
        for name in ["x-forwarded-for", "x-real-ip"] {
            if let Some(v) = request.headers().get(name) {
                h.insert(name, v.clone());
            }
        }
    }
    if let Some(ci) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        builder = builder.extension(*ci);
    }
    match builder.body(()) {
        Ok(r) => r.into_parts(),
        Err(_) => axum::http::Request::new(()).into_parts(),
    }
}
