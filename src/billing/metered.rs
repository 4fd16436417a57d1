//! `Metered`: the extractor a metered (AI) handler takes. It resolves the caller (session per
//! `STARPILLAR_AUTH`, else IP), loads today's quota, and refuses with 402 `quota_exhausted`
//! when nothing is left — before any work, so even a reading the cache holds is refused. The
//! handler charges only after the work succeeded, and only for work done (a cached reading is
//! free):
//!
//! ```ignore
//! async fn reading(State(state): State<SharedState>, metered: Metered, …) -> ApiResult<…> {
//!     let answer = do_the_work().await?;
//!     metered.charge(&state).await?;
//!     Ok(answer)
//! }
//! ```

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::{MaybeAuthUser, Session};
use crate::error::ApiError;
use crate::state::SharedState;
use crate::store::{Charge, Quota};

/// The caller of a metered route and today's quota (`None` when sessions are off).
#[derive(Debug, Clone)]
pub struct Metered {
    pub session: Option<Session>,
    pub quota: Option<Quota>,
}

impl Metered {
    /// Count one unit (call after success). A race that used the last unit meanwhile is
    /// answered 402 like an exhausted quota.
    pub async fn charge(&self, state: &SharedState) -> Result<(), ApiError> {
        let Some(quota) = &self.quota else {
            return Ok(());
        };
        match state.store.charge(quota).await? {
            Charge::Charged { .. } => Ok(()),
            Charge::Exhausted => Err(state.billing.exhausted(quota)),
        }
    }
}

impl FromRequestParts<SharedState> for Metered {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let MaybeAuthUser(session) = MaybeAuthUser::from_request_parts(parts, state).await?;
        let ip = crate::auth::extract::client_ip(parts, state.auth.trust_proxy);
        let quota = state
            .billing
            .quota_for(&state.store, state.auth.mode, session.as_ref(), &ip)
            .await?;
        if let Some(q) = &quota
            && q.exhausted()
        {
            return Err(state.billing.exhausted(q));
        }
        Ok(Self { session, quota })
    }
}
