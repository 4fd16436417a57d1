//! Sessions: NextAuth v4 / Auth.js v5 session tokens (JWE) from cookies or
//! `Authorization: Bearer`, checked for expiry and revocation, as the [`AuthUser`] and
//! [`MaybeAuthUser`] extractors.
//!
//! Secrets come from `NEXTAUTH_SECRET` (else `AUTH_SECRET`), comma-separated for rotation:
//! every secret is tried. Which routes need a session is `STARPILLAR_AUTH`.

pub mod cookies;
pub mod extract;
pub mod jwe;
pub mod token;

use clap::{Args, ValueEnum};
use prometheus::{IntCounterVec, Opts};

use crate::config::Secret;

pub use extract::{AuthUser, MaybeAuthUser};
pub use token::{CLOCK_SKEW_SECS, Session, TokenError, V4_COOKIES, V5_COOKIES};

/// Which routes need a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Every metered route needs a valid session.
    Required,
    /// Sessions are honoured; anonymous callers get the anonymous plan, keyed by IP.
    #[default]
    Optional,
    /// Sessions are not read at all (single-user, self-hosted).
    Off,
}

/// Session flags, flattened into `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// NextAuth/Auth.js secret; several comma-separated secrets for rotation (all accepted).
    #[arg(
        long,
        env = "NEXTAUTH_SECRET",
        hide_env_values = true,
        value_name = "SECRET[,SECRET…]"
    )]
    pub nextauth_secret: Option<Secret>,
    /// Fallback when NEXTAUTH_SECRET is unset (Auth.js v5's name).
    #[arg(
        long,
        env = "AUTH_SECRET",
        hide_env_values = true,
        value_name = "SECRET[,SECRET…]"
    )]
    pub auth_secret: Option<Secret>,
    /// Which routes need a session: required, optional (anonymous callers are metered by IP)
    /// or off.
    #[arg(
        long = "auth-mode",
        env = "STARPILLAR_AUTH",
        value_enum,
        default_value = "optional"
    )]
    pub auth_mode: AuthMode,
    /// Take the caller's address from `X-Forwarded-For` / `X-Real-IP` (set this only behind a
    /// reverse proxy that overwrites them; otherwise callers could pick their own address).
    #[arg(long, env = "STARPILLAR_TRUST_PROXY", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_proxy: bool,
}

/// Validated session settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub secrets: Vec<Secret>,
    /// Trust `X-Forwarded-For` for the caller's address.
    pub trust_proxy: bool,
}

impl AuthConfig {
    pub fn from_args(args: &AuthArgs) -> Self {
        let raw = args
            .nextauth_secret
            .as_ref()
            .filter(|s| !s.expose().trim().is_empty())
            .or(args.auth_secret.as_ref());
        Self {
            mode: args.auth_mode,
            secrets: raw.map(|s| split_secrets(s.expose())).unwrap_or_default(),
            trust_proxy: args.trust_proxy,
        }
    }

    /// Settings with the given secrets (tests and tools).
    pub fn with_secrets(mode: AuthMode, secrets: &[&str]) -> Self {
        Self {
            mode,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            trust_proxy: true,
        }
    }
}

fn split_secrets(raw: &str) -> Vec<Secret> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

/// Keys derived from the secrets, and the failure metric.
pub struct Sessions {
    pub mode: AuthMode,
    /// Trust `X-Forwarded-For` for the caller's address.
    pub trust_proxy: bool,
    keys: token::Keys,
    /// `starpillar_auth_token_failures_total{reason}`.
    pub failures: IntCounterVec,
}

impl Sessions {
    pub fn new(cfg: &AuthConfig) -> Self {
        let bytes: Vec<&[u8]> = cfg.secrets.iter().map(|s| s.expose().as_bytes()).collect();
        let failures = IntCounterVec::new(
            Opts::new(
                "starpillar_auth_token_failures_total",
                "Session tokens refused, by reason (malformed, decrypt, expired, revoked, …).",
            ),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable!("static metric definition"));
        Self {
            mode: cfg.mode,
            trust_proxy: cfg.trust_proxy,
            keys: token::Keys::new(&bytes),
            failures,
        }
    }

    /// Decrypt and check a token. `salt` is the v5 cookie name it came in (None for a bearer
    /// token: every v5 cookie name is tried). `now` is Unix seconds.
    pub fn verify(&self, token: &str, salt: Option<&str>, now: i64) -> Result<Session, TokenError> {
        self.keys.verify(token, salt, now)
    }

    /// Count a refusal.
    pub fn count_failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_split_on_commas_and_fall_back_to_auth_secret() {
        let args = AuthArgs {
            nextauth_secret: None,
            auth_secret: Some(Secret::new(" new , old ,")),
            auth_mode: AuthMode::Optional,
            trust_proxy: false,
        };
        let cfg = AuthConfig::from_args(&args);
        let got: Vec<&str> = cfg.secrets.iter().map(|s| s.expose()).collect();
        assert_eq!(got, ["new", "old"]);
    }
}
