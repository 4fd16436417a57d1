//! Billing: the plan table and price whitelist (`STRIPE_PRICE_<PLAN>=<price id>`), daily
//! quotas, Stripe Checkout ([`checkout`]) and webhooks ([`webhook`]).
//!
//! The quota API the metered (AI) routes use: the [`Metered`] extractor (402
//! `quota_exhausted` with `upgrade.price_ids` when nothing is left), then
//! [`Metered::charge`] only after the work succeeded. Underneath: [`Billing::quota_for`],
//! [`Billing::exhausted`] and `Store::charge`.

pub mod checkout;
pub mod metered;
pub mod webhook;

pub use metered::Metered;

use std::collections::BTreeMap;

use clap::Args;
use prometheus::{IntCounterVec, Opts};

use crate::auth::{AuthMode, Session};
use crate::config::{ConfigError, Secret};
use crate::error::{ApiError, ErrorKind};
use crate::store::{Quota, Store, StoreError};

/// Stripe's API.
pub const STRIPE_API_BASE: &str = "https://api.stripe.com";
/// The plan of anonymous callers and of signed-in users without a paid plan.
pub const ANONYMOUS: &str = "anonymous";
pub const FREE: &str = "free";

/// Billing flags, flattened into `serve`. Prices come from `STRIPE_PRICE_<PLAN>` variables
/// (or `--stripe-price PLAN=PRICE`).
#[derive(Debug, Clone, Default, Args)]
pub struct BillingArgs {
    /// Stripe secret API key (`sk_…`), for creating Checkout Sessions.
    #[arg(
        long,
        env = "STRIPE_SECRET_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub stripe_secret_key: Option<Secret>,
    /// Webhook signing secret(s) (`whsec_…`), comma-separated during rotation.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "WHSEC[,WHSEC…]"
    )]
    pub stripe_webhook_secret: Option<Secret>,
    /// Base URL of Stripe's API (tests point it at a local server).
    #[arg(long, env = "STRIPE_API_BASE", default_value = STRIPE_API_BASE)]
    pub stripe_api_base: String,
    /// Accept Stripe webhooks at `POST /api/webhook/stripe` (404 when off).
    #[arg(long, env = "ENABLE_WEBHOOKS", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_webhooks: bool,
    /// Extra price whitelist entries, `PLAN=PRICE_ID` (added to `STRIPE_PRICE_*`).
    #[arg(long = "stripe-price", value_name = "PLAN=PRICE")]
    pub stripe_prices: Vec<String>,
    /// Daily reading quotas per plan, `plan=N,…` (defaults: anonymous=3, free=10, any paid
    /// plan 100).
    #[arg(
        long,
        env = "STARPILLAR_PLAN_QUOTAS",
        value_delimiter = ',',
        value_name = "PLAN=N"
    )]
    pub plan_quotas: Vec<String>,
    /// Plans sold as one-time payments (Checkout `payment` mode); others are subscriptions.
    #[arg(
        long,
        env = "STARPILLAR_ONE_TIME_PLANS",
        value_delimiter = ',',
        value_name = "PLAN"
    )]
    pub one_time_plans: Vec<String>,
    /// Where Stripe sends the buyer after paying, when the request gives no `success_url`.
    #[arg(long, env = "STARPILLAR_CHECKOUT_SUCCESS_URL", value_name = "URL")]
    pub checkout_success_url: Option<String>,
    /// Where Stripe sends the buyer after cancelling, when the request gives no `cancel_url`.
    #[arg(long, env = "STARPILLAR_CHECKOUT_CANCEL_URL", value_name = "URL")]
    pub checkout_cancel_url: Option<String>,
}

/// One plan: its daily quota and (for paid plans) its Stripe price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub daily_quota: i64,
    pub price_id: Option<String>,
    pub one_time: bool,
}

/// Validated billing settings.
#[derive(Debug, Clone, Default)]
pub struct BillingConfig {
    pub stripe_secret_key: Option<Secret>,
    pub webhook_secrets: Vec<Secret>,
    pub stripe_api_base: String,
    pub enable_webhooks: bool,
    /// Every plan by name (anonymous, free, and each whitelisted price's plan).
    pub plans: BTreeMap<String, Plan>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
}

impl BillingConfig {
    /// Validate flags; `env` supplies the `STRIPE_PRICE_<PLAN>` variables.
    pub fn from_args(
        args: &BillingArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut prices: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let plan = k.strip_prefix("STRIPE_PRICE_")?.to_ascii_lowercase();
                (!plan.is_empty() && !v.trim().is_empty()).then(|| (plan, v.trim().to_owned()))
            })
            .collect();
        for entry in &args.stripe_prices {
            let (plan, price) = entry.split_once('=').ok_or_else(|| {
                ConfigError::Invalid(format!("--stripe-price {entry:?}: expected PLAN=PRICE"))
            })?;
            prices.push((plan.trim().to_ascii_lowercase(), price.trim().to_owned()));
        }
        let mut quotas = BTreeMap::new();
        for entry in args.plan_quotas.iter().filter(|e| !e.trim().is_empty()) {
            let (plan, n) = entry
                .split_once('=')
                .and_then(|(p, n)| Some((p.trim().to_ascii_lowercase(), n.trim().parse().ok()?)))
                .ok_or_else(|| {
                    ConfigError::Invalid(format!("plan quota {entry:?}: expected PLAN=N"))
                })?;
            quotas.insert(plan, n);
        }
        let one_time: Vec<String> = args
            .one_time_plans
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        let mut cfg = Self {
            stripe_secret_key: args.stripe_secret_key.clone().filter(|s| !s.is_empty()),
            webhook_secrets: args
                .stripe_webhook_secret
                .as_ref()
                .map(|s| {
                    s.expose()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(Secret::new)
                        .collect()
                })
                .unwrap_or_default(),
            stripe_api_base: match args.stripe_api_base.trim().trim_end_matches('/') {
                "" => STRIPE_API_BASE.to_owned(),
                base => base.to_owned(),
            },
            enable_webhooks: args.enable_webhooks,
            plans: BTreeMap::new(),
            success_url: args.checkout_success_url.clone(),
            cancel_url: args.checkout_cancel_url.clone(),
        };
        let quota = |plan: &str, default: i64| quotas.get(plan).copied().unwrap_or(default);
        cfg.add_plan(ANONYMOUS, quota(ANONYMOUS, 3), None, false);
        cfg.add_plan(FREE, quota(FREE, 10), None, false);
        for (plan, price) in prices {
            if plan == ANONYMOUS || plan == FREE {
                return Err(ConfigError::Invalid(format!(
                    "STRIPE_PRICE_{}: the {plan} plan cannot be sold",
                    plan.to_ascii_uppercase()
                )));
            }
            let q = quota(&plan, 100);
            let once = one_time.contains(&plan);
            cfg.add_plan(&plan, q, Some(price), once);
        }
        Ok(cfg)
    }

    /// Add or replace a plan (tests and tools).
    pub fn add_plan(
        &mut self,
        name: &str,
        daily_quota: i64,
        price_id: Option<String>,
        one_time: bool,
    ) {
        self.plans.insert(
            name.to_owned(),
            Plan {
                name: name.to_owned(),
                daily_quota,
                price_id,
                one_time,
            },
        );
    }

    /// The plan a whitelisted price sells.
    pub fn plan_for_price(&self, price_id: &str) -> Option<&Plan> {
        self.plans
            .values()
            .find(|p| p.price_id.as_deref() == Some(price_id))
    }
}

/// Billing at run time: settings, the HTTP client for Stripe, metrics.
pub struct Billing {
    pub config: BillingConfig,
    pub http: reqwest::Client,
    /// `starpillar_stripe_webhooks_total{type,outcome}`.
    pub webhooks_total: IntCounterVec,
}

impl Billing {
    pub fn new(config: BillingConfig) -> Self {
        let webhooks_total = IntCounterVec::new(
            Opts::new(
                "starpillar_stripe_webhooks_total",
                "Stripe webhook deliveries, by event type (handled types, else other) and outcome.",
            ),
            &["type", "outcome"],
        )
        .unwrap_or_else(|_| unreachable!("static metric definition"));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            webhooks_total,
        }
    }

    fn plan_quota(&self, plan: &str) -> i64 {
        self.config
            .plans
            .get(plan)
            .map(|p| p.daily_quota)
            .unwrap_or(0)
    }

    /// The plan a user holds now (the largest daily quota among active subscriptions and
    /// entitlements, else `free`), with renewal date and status.
    pub async fn user_plan(
        &self,
        store: &Store,
        user_id: &str,
    ) -> Result<(String, Option<i64>, Option<String>), StoreError> {
        let holdings = store.holdings(user_id).await?;
        Ok(holdings
            .into_iter()
            .filter(|h| self.config.plans.contains_key(&h.plan))
            .max_by_key(|h| self.plan_quota(&h.plan))
            .map(|h| (h.plan, h.renews_at, Some(h.status)))
            .unwrap_or_else(|| (FREE.to_owned(), None, None)))
    }

    /// Today's quota for a caller: the user's plan, or the anonymous plan keyed by IP.
    /// `None` when sessions are off (no metering).
    pub async fn quota_for(
        &self,
        store: &Store,
        mode: AuthMode,
        session: Option<&Session>,
        ip: &str,
    ) -> Result<Option<Quota>, StoreError> {
        if mode == AuthMode::Off {
            return Ok(None);
        }
        let (subject, plan) = match session {
            Some(s) => (
                format!("user:{}", s.user_id),
                self.user_plan(store, &s.user_id).await?.0,
            ),
            None => (format!("ip:{ip}"), ANONYMOUS.to_owned()),
        };
        let limit = self.plan_quota(&plan);
        store.quota(&subject, &plan, limit).await.map(Some)
    }

    /// Prices that buy more than `plan` gives.
    pub fn upgrade_prices(&self, plan: &str) -> Vec<String> {
        let now = self.plan_quota(plan);
        self.config
            .plans
            .values()
            .filter(|p| p.daily_quota > now)
            .filter_map(|p| p.price_id.clone())
            .collect()
    }

    /// 402 `quota_exhausted`, saying how to upgrade.
    pub fn exhausted(&self, quota: &Quota) -> ApiError {
        ApiError::new(
            ErrorKind::PaymentRequired,
            "quota_exhausted",
            format!(
                "the daily quota of the {} plan ({} readings) is used up",
                quota.plan, quota.limit
            ),
        )
        .with_extra(
            "upgrade",
            serde_json::json!({ "price_ids": self.upgrade_prices(&quota.plan) }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_come_from_env_and_flags() {
        let args = BillingArgs {
            stripe_prices: vec!["Pro=price_pro".into()],
            plan_quotas: vec!["premium=50".into(), "free=2".into()],
            ..BillingArgs::default()
        };
        let env = vec![
            ("STRIPE_PRICE_PREMIUM".to_owned(), "price_prem".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let cfg = BillingConfig::from_args(&args, env).unwrap();
        assert_eq!(cfg.plan_for_price("price_prem").unwrap().name, "premium");
        assert_eq!(cfg.plans["premium"].daily_quota, 50);
        assert_eq!(cfg.plans["pro"].daily_quota, 100);
        assert_eq!(cfg.plans["free"].daily_quota, 2);
        assert!(cfg.plan_for_price("price_free").is_none());
        let bad = BillingArgs {
            plan_quotas: vec!["premium".into()],
            ..BillingArgs::default()
        };
        assert!(BillingConfig::from_args(&bad, Vec::new()).is_err());
    }
}
