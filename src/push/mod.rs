//! Web Push (when `ENABLE_PUSH` is on): RFC 8291 message encryption (`aes128gcm`, RFC 8188)
//! and RFC 8292 VAPID authentication, pure RustCrypto (p256, hkdf, aes-gcm).
//!
//! starpillar pushes when a paid plan becomes active and when a payment fails; endpoints the
//! push service reports gone (404/410) are deleted.

pub mod crypto;

use clap::Args;

use crate::config::{ConfigError, Secret};
use crate::store::Store;
use crate::store::push::PushSubscriptionRow;

/// Push flags, flattened into `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct PushArgs {
    /// Accept browser push subscriptions and send pushes.
    #[arg(long, env = "ENABLE_PUSH", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_push: bool,
    /// VAPID public key: base64url of the uncompressed P-256 point (as `web-push` prints it).
    #[arg(long, env = "VAPID_PUBLIC_KEY", value_name = "KEY")]
    pub vapid_public_key: Option<String>,
    /// VAPID private key: base64url of the 32-byte P-256 scalar.
    #[arg(
        long,
        env = "VAPID_PRIVATE_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub vapid_private_key: Option<Secret>,
    /// VAPID contact, `mailto:…` or `https://…`.
    #[arg(long, env = "VAPID_SUBJECT", value_name = "URI")]
    pub vapid_subject: Option<String>,
}

/// Validated push settings.
#[derive(Debug, Clone, Default)]
pub struct PushConfig {
    pub enabled: bool,
    pub vapid: Option<crypto::Vapid>,
    /// Accept `http://` endpoints (tests only; browsers always give `https://`).
    pub allow_http_endpoints: bool,
}

impl PushConfig {
    pub fn from_args(args: &PushArgs) -> Result<Self, ConfigError> {
        if !args.enable_push {
            return Ok(Self::default());
        }
        let (Some(public), Some(private)) = (&args.vapid_public_key, &args.vapid_private_key)
        else {
            return Err(ConfigError::Invalid(
                "ENABLE_PUSH needs VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY".into(),
            ));
        };
        let subject = args
            .vapid_subject
            .clone()
            .unwrap_or_else(|| "mailto:admin@localhost".into());
        let vapid = crypto::Vapid::new(public, private.expose(), &subject)
            .map_err(|e| ConfigError::Invalid(format!("VAPID keys: {e}")))?;
        Ok(Self {
            enabled: true,
            vapid: Some(vapid),
            allow_http_endpoints: false,
        })
    }
}

/// Sending pushes.
pub struct Push {
    pub config: PushConfig,
    http: reqwest::Client,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent(u16),
    /// 404/410: the subscription is gone and was deleted.
    Gone,
    Failed(String),
}

impl Push {
    pub fn new(config: PushConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self { config, http }
    }

    /// Encrypt `payload` for one subscription and POST it to the push service.
    pub async fn send(&self, store: &Store, sub: &PushSubscriptionRow, payload: &[u8]) -> Delivery {
        let Some(vapid) = &self.config.vapid else {
            return Delivery::Failed("push is not configured".into());
        };
        let body = match crypto::encrypt(&sub.p256dh, &sub.auth, payload) {
            Ok(body) => body,
            Err(e) => return Delivery::Failed(e.to_string()),
        };
        let auth = match vapid.authorization(&sub.endpoint, crate::store::now()) {
            Ok(a) => a,
            Err(e) => return Delivery::Failed(e.to_string()),
        };
        let result = self
            .http
            .post(&sub.endpoint)
            .header("authorization", auth)
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", "86400")
            .header("urgency", "normal")
            .body(body)
            .send()
            .await;
        match result {
            Ok(r) if r.status().as_u16() == 404 || r.status().as_u16() == 410 => {
                if let Err(e) = store.delete_push(&sub.endpoint, None).await {
                    tracing::warn!(error = %e, "could not delete a gone push subscription");
                }
                Delivery::Gone
            }
            Ok(r) if r.status().is_success() => Delivery::Sent(r.status().as_u16()),
            Ok(r) => Delivery::Failed(format!("push service answered {}", r.status())),
            Err(e) => Delivery::Failed(e.to_string()),
        }
    }

    /// Push a JSON notification to every subscription of a user (best effort).
    pub async fn notify_user(&self, store: &Store, user_id: &str, message: &serde_json::Value) {
        if !self.config.enabled {
            return;
        }
        let subs = match store.push_subscriptions(user_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "push: cannot list subscriptions");
                return;
            }
        };
        let payload = message.to_string();
        for sub in subs {
            let outcome = self.send(store, &sub, payload.as_bytes()).await;
            tracing::info!(user = user_id, outcome = ?outcome, "push delivery");
        }
    }
}
