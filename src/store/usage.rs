//! Daily usage counters and the quota API the AI routes call: check [`Quota::remaining`]
//! before the work, [`super::Store::charge`] only after it succeeded. A subject is
//! `user:<id>` for signed-in callers and `ip:<address>` for anonymous ones; days are UTC.

use sqlx::Row;

use super::{Store, StoreError};

/// A subject's quota for today.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Quota {
    /// `user:<id>` or `ip:<address>`.
    pub subject: String,
    /// The plan that sets the limit.
    pub plan: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub limit: i64,
    pub used: i64,
}

impl Quota {
    pub fn remaining(&self) -> i64 {
        (self.limit - self.used).max(0)
    }
    pub fn exhausted(&self) -> bool {
        self.remaining() == 0
    }
}

/// The outcome of [`Store::charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Counted; the number used today after this charge.
    Charged { used: i64 },
    /// The limit was already reached; nothing was counted.
    Exhausted,
}

/// Today's UTC day key.
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

impl Store {
    /// How much `subject` used on `day`.
    pub async fn usage(&self, subject: &str, day: &str) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let row = sqlx::query("SELECT used FROM usage_counters WHERE subject = $1 AND day = $2")
            .bind(subject)
            .bind(day)
            .fetch_optional(pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>(0)?,
            None => 0,
        })
    }

    /// A subject's quota for today under `plan` with `limit` readings a day.
    pub async fn quota(&self, subject: &str, plan: &str, limit: i64) -> Result<Quota, StoreError> {
        let day = today();
        let used = self.usage(subject, &day).await?;
        Ok(Quota {
            subject: subject.to_owned(),
            plan: plan.to_owned(),
            day,
            limit,
            used,
        })
    }

    /// Count one unit against `quota` (atomically: never beyond its limit, even when
    /// concurrent requests race). Call only after the work succeeded.
    pub async fn charge(&self, quota: &Quota) -> Result<Charge, StoreError> {
        let pool = self.pool().await?;
        let done = sqlx::query(
            "INSERT INTO usage_counters (subject, day, used) SELECT $1, $2, 1 WHERE $3 > 0 \
             ON CONFLICT (subject, day) DO UPDATE SET used = usage_counters.used + 1 \
             WHERE usage_counters.used < $3",
        )
        .bind(&quota.subject)
        .bind(&quota.day)
        .bind(quota.limit)
        .execute(pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Charge::Exhausted);
        }
        Ok(Charge::Charged {
            used: self.usage(&quota.subject, &quota.day).await?,
        })
    }
}
