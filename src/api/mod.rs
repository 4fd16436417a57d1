//! The HTTP API: one router per feature, merged here under the tower stack of DESIGN.md §2
//! (request id, trace span, CORS, load shedding, timeout, body limit, metrics).
//!
//! Handlers extract and validate, call the core, and convert back; no model code lives here.
//! Every route is registered through [`utoipa_axum`] so `/openapi.json` describes exactly the
//! routes that exist.

pub mod admin;
pub mod ask;
pub mod astrology;
pub mod auth;
pub mod billing;
pub mod console;
pub mod health;
pub mod json;
pub mod me;
pub mod middleware;
pub mod openai;
pub mod push;
pub mod saju;
pub mod sse;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::{AppState, SharedState};

/// The OpenAPI document's header; paths are added by each feature router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "starpillar",
        description = "Saju (Four Pillars) and Western astrology charts and grounded readings."
    ),
    tags(
        (name = "health", description = "Liveness, readiness, versions, metrics"),
        (name = "auth", description = "Sessions (NextAuth/Auth.js) and revocation"),
        (name = "billing", description = "Stripe Checkout, webhooks, plans and quotas"),
        (name = "openai", description = "OpenAI-compatible embeddings and models (/v1)"),
        (name = "saju", description = "Four Pillars charts and readings"),
        (name = "astrology", description = "Natal charts (planets, houses, aspects) and readings"),
        (name = "admin", description = "Operator routes (STARPILLAR_ADMIN_TOKEN)"),
        (name = "console", description = "The console page to try the API in a browser"),
        (name = "readings", description = "Grounded answers to free questions (/api/ask)"),
    )
)]
pub struct ApiDoc;

/// Every feature router, with its OpenAPI paths.
fn feature_routers() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(saju::router())
        .merge(astrology::router())
        .merge(ask::router())
        .merge(store::router())
        .merge(auth::router())
        .merge(billing::router())
        .merge(me::router())
        .merge(push::router())
        .merge(openai::router())
        .merge(admin::router())
        .merge(console::router())
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = feature_routers().split_for_parts();
    api
}

/// Build the whole application: routes, `/openapi.json`, fallback and middleware.
pub fn app(state: SharedState) -> Router {
    let (router, api) = feature_routers().split_for_parts();
    let api = Arc::new(api);
    let router = router.route(
        "/openapi.json",
        axum::routing::get(move || {
            let api = Arc::clone(&api);
            async move { axum::Json(api.as_ref().clone()) }
        }),
    );
    with_middleware(router, state)
}

/// Wrap routes in the fallback and the middleware stack. Public so tests can put their own
/// routes (a deliberately slow handler, say) under exactly the production stack.
pub fn with_middleware(router: Router<SharedState>, state: SharedState) -> Router {
    let cfg = &state.config;
    let request_id = HeaderName::from_static("x-request-id");
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::limit,
        ))
        // Inside the metrics and Sentry layers: shed and timed-out requests are counted per
        // route and reported like any other 5xx.
        .layer(axum::middleware::from_fn_with_state(
            middleware::Guard::new(
                cfg.max_concurrency,
                cfg.request_timeout,
                state.metrics.load_shed_total.clone(),
            ),
            middleware::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track_http,
        ))
        .layer(axum::middleware::from_fn(
            crate::telemetry::sentry::report_5xx,
        ))
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .layer(cors_layer(&cfg.cors_origins))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(middleware::make_span))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// CORS: any origin without credentials when none are configured; the listed origins with
/// credentials otherwise. Exposes the headers a browser client needs to read.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let exposed = [
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("server-timing"),
        header::RETRY_AFTER,
        HeaderName::from_static("ratelimit-limit"),
        HeaderName::from_static("ratelimit-remaining"),
        HeaderName::from_static("ratelimit-reset"),
    ];
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .expose_headers(exposed)
        .max_age(Duration::from_secs(600));
    if origins.is_empty() || origins.iter().any(|o| o == "*") {
        base.allow_origin(Any).allow_headers(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                HeaderName::from_static("x-request-id"),
            ])
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        crate::error::ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        format!("{method} is not supported on {}", uri.path()),
    )
}

/// Build state for tests and tools: defaults with the given data directory.
pub fn test_state(data_dir: &std::path::Path) -> SharedState {
    Arc::new(AppState::new(crate::config::ServeConfig::for_tests(
        data_dir,
    )))
}
