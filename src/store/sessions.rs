//! Session revocations: one token by its `jti`, or every token of a user issued before a
//! moment. Consulted by the `AuthUser` extractor on every authenticated request.

use sqlx::Row;

use super::{Store, StoreError, now};

impl Store {
    /// Revoke one token until it would expire anyway (`expires_at`, Unix seconds).
    pub async fn revoke_token(
        &self,
        jti: &str,
        user_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(user_id)
        .bind(expires_at)
        .bind(now())
        .execute(pool)
        .await?;
        // Expired revocations are dead weight: drop them while we are here.
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now() - 86_400)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Revoke every token of `user_id` issued at or before `before` (Unix seconds).
    pub async fn revoke_user(&self, user_id: &str, before: i64) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO user_revocations (user_id, revoked_before) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET revoked_before = excluded.revoked_before \
             WHERE user_revocations.revoked_before < excluded.revoked_before",
        )
        .bind(user_id)
        .bind(before)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Whether a token (its `jti` when it has one, its issue time `iat`) is revoked.
    pub async fn is_revoked(
        &self,
        user_id: &str,
        jti: Option<&str>,
        issued_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        if let Some(jti) = jti {
            let hit = sqlx::query("SELECT 1 FROM revoked_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(pool)
                .await?;
            if hit.is_some() {
                return Ok(true);
            }
        }
        let cutoff = sqlx::query("SELECT revoked_before FROM user_revocations WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
        Ok(match cutoff {
            // A token without `iat` cannot prove it is newer than the cut-off.
            Some(row) => {
                let before: i64 = row.try_get(0)?;
                issued_at.is_none_or(|iat| iat <= before)
            }
            None => false,
        })
    }
}
