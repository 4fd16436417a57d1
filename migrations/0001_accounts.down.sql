-- Reverts 0001_accounts.up.sql: drops every table it created (their indexes go with them).
-- `starpillar migrate --down 1` runs it; back the database up first (README: Operations).

DROP TABLE IF EXISTS usage_counters;
DROP TABLE IF EXISTS push_subscriptions;
DROP TABLE IF EXISTS user_revocations;
DROP TABLE IF EXISTS revoked_tokens;
DROP TABLE IF EXISTS subscriptions;
DROP TABLE IF EXISTS stripe_events;
DROP TABLE IF EXISTS entitlements;
DROP TABLE IF EXISTS plans;
DROP TABLE IF EXISTS users;
