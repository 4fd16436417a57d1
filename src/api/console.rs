//! `GET /`: the console page, a small form to try the API in a browser (birth data → the four
//! pillars, the natal wheel, the reading streaming in). The HTML, CSS and JavaScript under
//! `web/` are compiled into the binary (`include_str!`): no build step, no files to ship.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::SharedState;

const HTML: &str = include_str!("../../web/console.html");
const CSS: &str = include_str!("../../web/console.css");
const JS: &str = include_str!("../../web/console.js");

/// Same-origin only: the page talks to this server and nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(stylesheet))
        .routes(routes!(script))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The console page (HTML).
#[utoipa::path(get, path = "/", tag = "console", responses(
    (status = 200, description = "The console page", content_type = "text/html")))]
async fn page() -> Response {
    let mut response = asset(HTML, "text/html; charset=utf-8");
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// The console page's stylesheet.
#[utoipa::path(get, path = "/console/app.css", tag = "console", responses(
    (status = 200, description = "CSS", content_type = "text/css")))]
async fn stylesheet() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

/// The console page's script.
#[utoipa::path(get, path = "/console/app.js", tag = "console", responses(
    (status = 200, description = "JavaScript", content_type = "text/javascript")))]
async fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}
