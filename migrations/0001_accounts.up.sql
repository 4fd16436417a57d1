-- The web/auth/billing tables. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are Unix seconds (BIGINT); flags are BIGINT 0/1.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT,
    stripe_customer_id TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The plan table from configuration, mirrored at start-up so SQL reports can join on it.
CREATE TABLE plans (
    name TEXT PRIMARY KEY,
    daily_quota BIGINT NOT NULL,
    price_id TEXT,
    updated_at BIGINT NOT NULL
);

-- One-time purchases (Checkout in `payment` mode) that grant a plan.
CREATE TABLE entitlements (
    user_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    plan TEXT NOT NULL,
    active BIGINT NOT NULL,
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, source_id)
);

-- Every Stripe event id ever accepted: the deduplication key of the webhook.
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    created BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);

-- Subscriptions as the latest event (by Stripe's `created`, then lifecycle rank) left them.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    customer_id TEXT,
    plan TEXT,
    price_id TEXT,
    status TEXT NOT NULL,
    current_period_end BIGINT,
    event_created BIGINT NOT NULL,
    event_rank BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX subscriptions_user ON subscriptions (user_id);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

-- Revoked session tokens (by `jti`) and per-user "everything issued before" cut-offs.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE TABLE user_revocations (
    user_id TEXT PRIMARY KEY,
    revoked_before BIGINT NOT NULL
);

-- Browser push subscriptions (Web Push).
CREATE TABLE push_subscriptions (
    endpoint TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- Daily usage per subject (`user:<id>` or `ip:<address>`), day = UTC `YYYY-MM-DD`.
CREATE TABLE usage_counters (
    subject TEXT NOT NULL,
    day TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (subject, day)
);
