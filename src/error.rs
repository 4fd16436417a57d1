//! The one error type of the HTTP layer and its JSON body.
//!
//! Every non-`/v1` error answers `{"error":{"code":"snake_case","message":"…","field":"a.b"}}`
//! (DESIGN.md §3). Library errors convert into [`ApiError`] with `From`; internal errors are
//! logged with the request's span and answered with a generic message.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong, which decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request (syntax): 400.
    BadRequest,
    /// Well-formed but invalid input: 422.
    Invalid,
    /// No or invalid session: 401.
    Unauthorized,
    /// Quota used up: 402.
    PaymentRequired,
    /// Revoked or forbidden: 403.
    Forbidden,
    NotFound,
    /// The route exists but not with this method: 405.
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    /// Rate limited: 429 with `Retry-After`.
    TooManyRequests,
    /// The server has no such capability yet: 501.
    NotImplemented,
    /// An upstream (Stripe, Redis, …) failed: 502.
    BadGateway,
    /// Overloaded or a dependency is down: 503 with `Retry-After`.
    Unavailable,
    /// A bug or an unexpected failure: 500, generic message.
    Internal,
}

impl From<ErrorKind> for StatusCode {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered to an HTTP client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    /// Stable snake_case code a client can switch on.
    pub code: Cow<'static, str>,
    /// Human-readable explanation.
    pub message: String,
    /// The offending input field as a dotted path (`birth.date`), when one is to blame.
    pub field: Option<String>,
    /// Seconds for `Retry-After` (429/503).
    pub retry_after: Option<u64>,
    /// Extra members merged into the `error` object (e.g. `upgrade` for 402).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            field: None,
            retry_after: None,
            extra: None,
        }
    }

    /// 400 with a code and message.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    /// 422 naming the offending field.
    pub fn invalid(
        field: impl Into<String>,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Invalid, code, message).with_field(field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", message)
    }

    pub fn not_implemented(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, code, message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        retry_after: u64,
    ) -> Self {
        Self::new(ErrorKind::Unavailable, code, message).with_retry_after(retry_after)
    }

    /// 500: logs the cause, answers a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        crate::telemetry::sentry::note_cause(&cause);
        Self::new(
            ErrorKind::Internal,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.into()
    }

    /// The JSON body, `{"error":{…}}`.
    pub fn body(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
        }
        let mut inner = serde_json::to_value(Inner {
            code: &self.code,
            message: &self.message,
            field: self.field.as_deref(),
        })
        .unwrap_or_default();
        if let (Some(extra), Some(obj)) = (&self.extra, inner.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        serde_json::json!({ "error": inner })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        let tag = crate::telemetry::sentry::ErrorTag(self.code.clone());
        response.extensions_mut().insert(tag);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
