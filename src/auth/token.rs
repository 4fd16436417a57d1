//! Session-token verification on its own: the keys derived from the secrets, decryption of a
//! compact JWE with them, and the claims check (`exp`/`nbf` with skew, `sub`).
//!
//! Self-contained (only [`super::jwe`] and serde_json), so the fuzz crate in `fuzz/` compiles
//! this file as it is; [`super::Sessions`] wraps it with the settings and the failure metric.

use super::jwe;

/// Leeway on `exp` and `nbf`, seconds.
pub const CLOCK_SKEW_SECS: i64 = 15;

/// The v5 cookie names, which are also the v5 key salts.
pub const V5_COOKIES: &[&str] = &["__Secure-authjs.session-token", "authjs.session-token"];
/// The v4 cookie names.
pub const V4_COOKIES: &[&str] = &[
    "__Secure-next-auth.session-token",
    "next-auth.session-token",
];

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

/// The content keys of every secret (all are tried: rotation).
pub struct Keys {
    v4: Vec<[u8; 32]>,
    /// Per v5 salt (cookie name), one key per secret.
    v5: Vec<(String, Vec<[u8; 64]>)>,
    secrets: Vec<Vec<u8>>,
}

impl Keys {
    pub fn new(secrets: &[&[u8]]) -> Self {
        Self {
            v4: secrets.iter().map(|s| jwe::v4_key(s)).collect(),
            v5: V5_COOKIES
                .iter()
                .map(|salt| {
                    let keys = secrets.iter().map(|s| jwe::v5_key(s, salt)).collect();
                    ((*salt).to_owned(), keys)
                })
                .collect(),
            secrets: secrets.iter().map(|s| s.to_vec()).collect(),
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
            jwe::Enc::A256Gcm => self.v4.iter().find_map(|k| compact.decrypt_gcm(k).ok()),
            jwe::Enc::A256CbcHs512 => {
                let mut found = None;
                for (cookie, keys) in &self.v5 {
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
                    found = self
                        .secrets
                        .iter()
                        .find_map(|secret| compact.decrypt_cbc_hs512(&jwe::v5_key(secret, s)).ok());
                }
                found
            }
        }
        .ok_or(TokenError::Jwe(jwe::JweError::Decrypt))?;
        claims(&plaintext, now)
    }
}

/// Check the decrypted claims.
pub fn claims(plaintext: &[u8], now: i64) -> Result<Session, TokenError> {
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
    // Saturating: an `exp` beyond i64 (1e19, found by fuzzing) clamps to i64::MAX, and adding
    // the skew to it overflowed.
    if now > expires_at.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::Expired);
    }
    if time("nbf").is_some_and(|nbf| now.saturating_add(CLOCK_SKEW_SECS) < nbf) {
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

    #[test]
    fn times_beyond_i64_do_not_overflow() {
        let far = br#"{"sub":"u","exp":1e23,"nbf":-1e23}"#;
        assert_eq!(claims(far, i64::MAX).map(|s| s.expires_at), Ok(i64::MAX));
        let past = br#"{"sub":"u","exp":-1e23}"#;
        assert_eq!(claims(past, 0).err(), Some(TokenError::Expired));
        let future = br#"{"sub":"u","exp":1e23,"nbf":1e23}"#;
        assert_eq!(claims(future, 0).err(), Some(TokenError::NotYetValid));
    }

    #[test]
    fn no_secret_refuses_everything() {
        assert_eq!(
            Keys::new(&[]).verify("a.b.c.d.e", None, 0).err(),
            Some(TokenError::NoSecret)
        );
    }
}
