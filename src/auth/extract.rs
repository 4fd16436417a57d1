//! The `AuthUser` (a valid session is required) and `MaybeAuthUser` (anonymous is fine, but a
//! bad token is still a 401, never silently anonymous) extractors.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{AuthMode, Session, TokenError, cookies};
use crate::error::{ApiError, ErrorKind};
use crate::state::SharedState;

/// A caller with a valid, unrevoked session.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Session);

/// A caller with a valid session, or anonymous (`None`) when none was presented or sessions
/// are off. With `STARPILLAR_AUTH=required`, anonymous callers are refused with 401.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<Session>);

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, code, message)
}

/// The session of a request: `Ok(None)` when none is presented.
async fn session_of(parts: &Parts, state: &SharedState) -> Result<Option<Session>, ApiError> {
    let sessions = &state.auth;
    let Some(presented) = cookies::find_token(&parts.headers) else {
        return Ok(None);
    };
    let now = crate::store::now();
    let session = match sessions.verify(&presented.token, presented.cookie, now) {
        Ok(session) => session,
        Err(err) => {
            sessions.count_failure(err.reason());
            let code = match err {
                TokenError::Expired => "session_expired",
                TokenError::NoSecret => "sessions_not_configured",
                _ => "invalid_session",
            };
            return Err(unauthorized(code, err.to_string()));
        }
    };
    let revoked = state
        .store
        .is_revoked(&session.user_id, session.jti.as_deref(), session.issued_at)
        .await?;
    if revoked {
        sessions.count_failure("revoked");
        return Err(unauthorized(
            "session_revoked",
            "this session has been revoked",
        ));
    }
    Ok(Some(session))
}

impl FromRequestParts<SharedState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        if state.auth.mode == AuthMode::Off {
            return Err(unauthorized(
                "sessions_disabled",
                "sessions are disabled on this server (STARPILLAR_AUTH=off)",
            ));
        }
        match session_of(parts, state).await? {
            Some(session) => Ok(Self(session)),
            None => Err(unauthorized(
                "unauthenticated",
                "sign in first: no session token",
            )),
        }
    }
}

impl FromRequestParts<SharedState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        match state.auth.mode {
            AuthMode::Off => Ok(Self(None)),
            AuthMode::Optional => Ok(Self(session_of(parts, state).await?)),
            AuthMode::Required => match session_of(parts, state).await? {
                Some(session) => Ok(Self(Some(session))),
                None => Err(unauthorized(
                    "unauthenticated",
                    "sign in first: no session token",
                )),
            },
        }
    }
}

/// The caller's address for anonymous metering: with `trust_proxy`, the first
/// `X-Forwarded-For` hop, else `X-Real-IP`; then the socket peer; else `unknown`.
pub fn client_ip(parts: &Parts, trust_proxy: bool) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty() && trust_proxy)
    };
    header("x-forwarded-for")
        .or_else(|| header("x-real-ip"))
        .or_else(|| {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
