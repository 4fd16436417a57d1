//! Billing state: Stripe events (deduplicated by id), subscriptions as the newest event left
//! them, one-time entitlements, users' Stripe customers, and the plan a user holds now.
//!
//! [`Store::apply_stripe_event`] records the event id and applies its effect in one
//! transaction: a duplicate delivery changes nothing, and a failed effect leaves no trace so
//! Stripe's retry is applied again. Subscription rows only move forward: an update carries
//! the event's `created` time and a lifecycle rank, and an older (or same-time, lower-rank)
//! event never overwrites a newer one, so out-of-order deliveries end in the right state.

use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError, now};

/// Subscription statuses that grant the plan.
pub const ENTITLED_STATUSES: &[&str] = &["active", "trialing"];

/// A change to subscription state carried by one Stripe event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub id: String,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub plan: Option<String>,
    pub price_id: Option<String>,
    /// Stripe's status (`active`, `past_due`, `canceled`, …).
    pub status: String,
    pub current_period_end: Option<i64>,
    /// Ordering of events created in the same second: created < updated < deleted.
    pub rank: i64,
}

/// What a Stripe event does to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingEffect {
    /// A Checkout Session completed: link user ↔ customer, and either a subscription or (for
    /// one-time payments) an entitlement.
    CheckoutCompleted {
        session_id: String,
        user_id: String,
        email: Option<String>,
        customer_id: Option<String>,
        plan: Option<String>,
        paid: bool,
        subscription: Option<SubscriptionChange>,
    },
    Subscription(SubscriptionChange),
    /// Recorded but without effect (event types we ignore).
    Nothing,
}

/// A Stripe event as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEventRecord {
    pub id: String,
    pub event_type: String,
    pub created: i64,
}

/// Whether an event was new or a duplicate delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    Duplicate,
}

/// The plan a user holds now, with its renewal date when a subscription grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub plan: String,
    pub renews_at: Option<i64>,
    pub status: String,
}

impl Store {
    /// Record `event` and apply `effect` atomically; duplicates change nothing.
    pub async fn apply_stripe_event(
        &self,
        event: &StripeEventRecord,
        effect: &BillingEffect,
    ) -> Result<EventOutcome, StoreError> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO stripe_events (id, type, created, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(event.created)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(EventOutcome::Duplicate);
        }
        match effect {
            BillingEffect::CheckoutCompleted {
                session_id,
                user_id,
                email,
                customer_id,
                plan,
                paid,
                subscription,
            } => {
                upsert_user(&mut tx, user_id, email.as_deref(), customer_id.as_deref()).await?;
                if let Some(sub) = subscription {
                    upsert_subscription(&mut tx, sub, event.created).await?;
                } else if let (Some(plan), true) = (plan, *paid) {
                    sqlx::query(
                        "INSERT INTO entitlements (user_id, source_id, plan, active, expires_at, \
                         updated_at) VALUES ($1, $2, $3, 1, NULL, $4) \
                         ON CONFLICT (user_id, source_id) DO NOTHING",
                    )
                    .bind(user_id)
                    .bind(session_id)
                    .bind(plan)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            BillingEffect::Subscription(sub) => {
                upsert_subscription(&mut tx, sub, event.created).await?;
            }
            BillingEffect::Nothing => {}
        }
        tx.commit().await?;
        Ok(EventOutcome::Applied)
    }

    /// Every plan `user_id` holds now (active subscriptions and entitlements).
    pub async fn holdings(&self, user_id: &str) -> Result<Vec<Holding>, StoreError> {
        let pool = self.pool().await?;
        let rows = sqlx::query(
            "SELECT plan, current_period_end, status FROM subscriptions \
             WHERE user_id = $1 AND plan IS NOT NULL AND status IN ('active', 'trialing')",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Holding {
                plan: row.try_get(0)?,
                renews_at: row.try_get(1)?,
                status: row.try_get(2)?,
            });
        }
        let rows = sqlx::query(
            "SELECT plan FROM entitlements WHERE user_id = $1 AND active = 1 \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(user_id)
        .bind(now())
        .fetch_all(pool)
        .await?;
        for row in rows {
            out.push(Holding {
                plan: row.try_get(0)?,
                renews_at: None,
                status: "paid".into(),
            });
        }
        Ok(out)
    }

    /// A subscription's current row: (user_id, plan, status, current_period_end).
    pub async fn subscription(
        &self,
        id: &str,
    ) -> Result<Option<(Option<String>, Option<String>, String, Option<i64>)>, StoreError> {
        let pool = self.pool().await?;
        let row = sqlx::query(
            "SELECT user_id, plan, status, current_period_end FROM subscriptions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)),
            None => None,
        })
    }

    /// Row counts of the billing tables, for tests and diagnostics.
    pub async fn count(&self, table: BillingTable) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let sql = match table {
            BillingTable::StripeEvents => "SELECT COUNT(*) FROM stripe_events",
            BillingTable::Subscriptions => "SELECT COUNT(*) FROM subscriptions",
            BillingTable::Users => "SELECT COUNT(*) FROM users",
            BillingTable::Entitlements => "SELECT COUNT(*) FROM entitlements",
        };
        let row = sqlx::query(sql).fetch_one(pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Mirror the configured plan table (name, daily quota, price id).
    pub async fn sync_plans(
        &self,
        plans: &[(String, i64, Option<String>)],
    ) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        for (name, quota, price) in plans {
            sqlx::query(
                "INSERT INTO plans (name, daily_quota, price_id, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET daily_quota = excluded.daily_quota, \
                 price_id = excluded.price_id, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(*quota)
            .bind(price.as_deref())
            .bind(now())
            .execute(pool)
            .await?;
        }
        Ok(())
    }
}

/// Tables [`Store::count`] can count.
#[derive(Debug, Clone, Copy)]
pub enum BillingTable {
    StripeEvents,
    Subscriptions,
    Users,
    Entitlements,
}

async fn upsert_user(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    email: Option<&str>,
    customer_id: Option<&str>,
) -> Result<(), StoreError> {
    let t = now();
    sqlx::query(
        "INSERT INTO users (id, email, stripe_customer_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO UPDATE SET \
         email = COALESCE(excluded.email, users.email), \
         stripe_customer_id = COALESCE(excluded.stripe_customer_id, users.stripe_customer_id), \
         updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(email)
    .bind(customer_id)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_subscription(
    tx: &mut Transaction<'_, Any>,
    sub: &SubscriptionChange,
    created: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO subscriptions (id, user_id, customer_id, plan, price_id, status, \
         current_period_end, event_created, event_rank, updated_at) \
         VALUES ($1, COALESCE($2, (SELECT id FROM users WHERE stripe_customer_id = $3)), \
         $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO UPDATE SET \
         user_id = COALESCE(excluded.user_id, subscriptions.user_id), \
         customer_id = COALESCE(excluded.customer_id, subscriptions.customer_id), \
         plan = COALESCE(excluded.plan, subscriptions.plan), \
         price_id = COALESCE(excluded.price_id, subscriptions.price_id), \
         status = excluded.status, \
         current_period_end = COALESCE(excluded.current_period_end, \
                                       subscriptions.current_period_end), \
         event_created = excluded.event_created, event_rank = excluded.event_rank, \
         updated_at = excluded.updated_at \
         WHERE subscriptions.event_created < excluded.event_created \
            OR (subscriptions.event_created = excluded.event_created \
                AND subscriptions.event_rank <= excluded.event_rank)",
    )
    .bind(&sub.id)
    .bind(sub.user_id.as_deref())
    .bind(sub.customer_id.as_deref())
    .bind(sub.plan.as_deref())
    .bind(sub.price_id.as_deref())
    .bind(&sub.status)
    .bind(sub.current_period_end)
    .bind(created)
    .bind(sub.rank)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    // Facts that do not depend on ordering fill in whatever an older event could not know.
    sqlx::query(
        "UPDATE subscriptions SET \
         user_id = COALESCE(user_id, $2, (SELECT id FROM users WHERE stripe_customer_id = $3)), \
         customer_id = COALESCE(customer_id, $3), plan = COALESCE(plan, $4), \
         price_id = COALESCE(price_id, $5) WHERE id = $1",
    )
    .bind(&sub.id)
    .bind(sub.user_id.as_deref())
    .bind(sub.customer_id.as_deref())
    .bind(sub.plan.as_deref())
    .bind(sub.price_id.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
