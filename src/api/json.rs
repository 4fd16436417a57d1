//! `AppJson<T>`: a JSON extractor whose rejections come back in our error shape, naming the
//! offending field (`birth.date`) — malformed JSON is 400, a wrong or unknown field is 422,
//! a body over the limit is 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorKind};

/// JSON in and out, with our error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse(&bytes).map(AppJson)
    }
}

/// A body that could not be read: 413 over the limit, 400 otherwise.
pub fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::bad_request("unreadable_body", rejection.body_text())
    }
}

/// Parse JSON bytes into `T`, mapping errors to our shape with the field path.
// ApiError is 128 bytes, exactly clippy's threshold; handlers return it by value anyway.
#[allow(clippy::result_large_err)]
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request body is empty; send a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = (path != ".").then_some(path);
        match inner.classify() {
            serde_json::error::Category::Data => {
                let e = ApiError::new(ErrorKind::Invalid, "invalid_field", clean_message(&inner));
                match field {
                    Some(f) => e.with_field(f),
                    None => e,
                }
            }
            _ => {
                let e = ApiError::bad_request(
                    "malformed_json",
                    format!("malformed JSON: {}", clean_message(&inner)),
                );
                match field {
                    Some(f) => e.with_field(f),
                    None => e,
                }
            }
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("trailing characters after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

/// serde_json messages end with " at line 1 column 42": keep that, it helps; but drop the
/// duplicated path noise serde_path_to_error would add.
fn clean_message(err: &serde_json::Error) -> String {
    err.to_string()
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        birth: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        date: String,
    }

    #[test]
    fn unknown_field_is_422_with_path() {
        let err = parse::<Outer>(br#"{"birth":{"date":"x","dat":1}}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert_eq!(err.field.as_deref(), Some("birth.dat"));
    }

    #[test]
    fn wrong_type_names_field() {
        let err = parse::<Outer>(br#"{"birth":{"date":5}}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert_eq!(err.field.as_deref(), Some("birth.date"));
    }

    #[test]
    fn syntax_error_is_400() {
        let err = parse::<Outer>(br#"{"birth":"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert_eq!(err.code, "malformed_json");
    }
}
