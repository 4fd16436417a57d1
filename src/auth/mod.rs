//! Sessions: NextAuth v4 / Auth.js v5 session tokens (JWE) from cookies or
//! `Authorization: Bearer`, checked for expiry and revocation, as the [`AuthUser`] and
//! [`MaybeAuthUser`] extractors.
//!
//! Secrets come from `NEXTAUTH_SECRET` (else `AUTH_SECRET`), comma-separated for rotation:
//! every secret is tried. Which routes need a session is `STARPILLAR_AUTH`.

pub mod cookies;
pub mod extract;
pub mod jwe;

use clap::{Args, ValueEnum};
use prometheus::{IntCounterVec, Opts};

use crate::config::Secret;

pub use extract::{AuthUser, MaybeAuthUser};

/// Leeway on `exp` and `nbf`, seconds.
pub const CLOCK_SKEW_SECS: i64 = 15;

/// The v5 cookie names, which are also the v5 key salts.
pub const V5_COOKIES: &[&str] = &["__Secure-authjs.session-token", "authjs.session-token"];
/// The v4 cookie names.
pub const V4_COOKIES: &[&str] = &[
    "__Secure-next-auth.session-token",
    "next-auth.session-token",
];

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

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user id (`sub`).
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub jti: Option<String>,
    pub issued_at: Option<i64>,
    pub expires_at: i64,
}

/// Why a token was refused (all answer 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Jwe(#[from] jwe::JweError),
    #[error("the session has expired")]
    Expired,
    #[error("the session is not valid yet")]
    NotYetValid,
    #[error("the session token has no usable claims")]
    BadClaims,
    #[error("sessions are not configured (NEXTAUTH_SECRET is unset)")]
    NoSecret,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Jwe(e) => e.reason(),
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadClaims => "bad_claims",
            Self::NoSecret => "no_secret",
        }
    }
}

/// Keys derived from the secrets, and the failure metric.
pub struct Sessions {
    pub mode: AuthMode,
    /// Trust `X-Forwarded-For` for the caller's address.
    pub trust_proxy: bool,
    v4_keys: Vec<[u8; 32]>,
    /// Per v5 salt (cookie name), one key per secret.
    v5_keys: Vec<(String, Vec<[u8; 64]>)>,
    secrets: Vec<Secret>,
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
            v4_keys: bytes.iter().map(|s| jwe::v4_key(s)).collect(),
            v5_keys: V5_COOKIES
                .iter()
                .map(|salt| {
                    let keys = bytes.iter().map(|s| jwe::v5_key(s, salt)).collect();
                    ((*salt).to_owned(), keys)
                })
                .collect(),
            secrets: cfg.secrets.clone(),
            failures,
        }
    }

    /// Decrypt and check a token. `salt` is the v5 cookie name it came in (None for a bearer
    /// token: every v5 cookie name is tried). `now` is Unix seconds.
    pub fn verify(&self, token: &str, salt: Option<&str>, now: i64) -> Result<Session, TokenError> {
        if self.secrets.is_empty() {
            return Err(TokenError::NoSecret);
        }
        let compact = jwe::parse(token)?;
        let plaintext = match compact.enc {
            jwe::Enc::A256Gcm => self
                .v4_keys
                .iter()
                .find_map(|k| compact.decrypt_gcm(k).ok()),
            jwe::Enc::A256CbcHs512 => {
                let mut found = None;
                for (cookie, keys) in &self.v5_keys {
                    if salt.is_some_and(|s| s != cookie) {
                        continue;
                    }
                    found = keys.iter().find_map(|k| compact.decrypt_cbc_hs512(k).ok());
                    if found.is_some() {
                        break;
                    }
                }
                // A salt we have no precomputed key for (a custom cookie name).
                if found.is_none()
                    && let Some(s) = salt.filter(|s| !V5_COOKIES.contains(s))
                {
                    found = self.secrets.iter().find_map(|secret| {
                        compact
                            .decrypt_cbc_hs512(&jwe::v5_key(secret.expose().as_bytes(), s))
                            .ok()
                    });
                }
                found
            }
        }
        .ok_or(TokenError::Jwe(jwe::JweError::Decrypt))?;
        claims(&plaintext, now)
    }

    /// Count a refusal.
    pub fn count_failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}

/// Check the decrypted claims.
fn claims(plaintext: &[u8], now: i64) -> Result<Session, TokenError> {
    let value: serde_json::Value =
        serde_json::from_slice(plaintext).map_err(|_| TokenError::BadClaims)?;
    let obj = value.as_object().ok_or(TokenError::BadClaims)?;
    let time = |k: &str| {
        obj.get(k)
            .and_then(|v| v.as_f64())
            .map(|f| f.floor() as i64)
    };
    let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let expires_at = time("exp").ok_or(TokenError::BadClaims)?;
    if now > expires_at + CLOCK_SKEW_SECS {
        return Err(TokenError::Expired);
    }
    if time("nbf").is_some_and(|nbf| now + CLOCK_SKEW_SECS < nbf) {
        return Err(TokenError::NotYetValid);
    }
    let user_id = text("sub")
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::BadClaims)?;
    Ok(Session {
        user_id,
        email: text("email"),
        name: text("name"),
        jti: text("jti"),
        issued_at: time("iat"),
        expires_at,
    })
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

    #[test]
    fn claims_window_has_fifteen_seconds_of_skew() {
        let t = br#"{"sub":"u","exp":1000,"nbf":500}"#;
        assert!(claims(t, 1015).is_ok());
        assert_eq!(claims(t, 1016).err(), Some(TokenError::Expired));
        assert!(claims(t, 485).is_ok());
        assert_eq!(claims(t, 484).err(), Some(TokenError::NotYetValid));
        assert_eq!(
            claims(br#"{"exp":1000}"#, 0).err(),
            Some(TokenError::BadClaims)
        );
    }
}
