//! Browser push subscriptions (Web Push): one row per endpoint, owned by a user.

use sqlx::Row;

use super::{Store, StoreError, now};

/// A stored browser subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscriptionRow {
    pub endpoint: String,
    pub user_id: String,
    /// The browser's P-256 public key, base64url (65-byte uncompressed point).
    pub p256dh: String,
    /// The 16-byte auth secret, base64url.
    pub auth: String,
}

impl Store {
    /// Save (or move to this user and refresh) a subscription.
    pub async fn save_push(&self, row: &PushSubscriptionRow) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint) DO UPDATE SET \
             user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth",
        )
        .bind(&row.endpoint)
        .bind(&row.user_id)
        .bind(&row.p256dh)
        .bind(&row.auth)
        .bind(now())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Delete an endpoint; `user_id` restricts it to that user's subscription. True when a
    /// row went away.
    pub async fn delete_push(
        &self,
        endpoint: &str,
        user_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let done = match user_id {
            Some(user) => {
                sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2")
                    .bind(endpoint)
                    .bind(user)
                    .execute(pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1")
                    .bind(endpoint)
                    .execute(pool)
                    .await?
            }
        };
        Ok(done.rows_affected() > 0)
    }

    /// Every subscription of a user.
    pub async fn push_subscriptions(
        &self,
        user_id: &str,
    ) -> Result<Vec<PushSubscriptionRow>, StoreError> {
        let pool = self.pool().await?;
        let rows = sqlx::query(
            "SELECT endpoint, user_id, p256dh, auth FROM push_subscriptions WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PushSubscriptionRow {
                    endpoint: r.try_get(0)?,
                    user_id: r.try_get(1)?,
                    p256dh: r.try_get(2)?,
                    auth: r.try_get(3)?,
                })
            })
            .collect()
    }
}
