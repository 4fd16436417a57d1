//! The `Stripe-Signature` header: `t=<unix>,v1=<hex>[,v1=<hex>…]`; each `v1` is HMAC-SHA256
//! over `"{t}.{raw body}"` keyed with the whole `whsec_…` string. Any `v1` may match any
//! secret (rotation); comparisons are constant-time; a timestamp more than
//! [`TOLERANCE_SECS`] old is refused.
//!
//! Self-contained (hmac, sha2, subtle), so the fuzz crate in `fuzz/` compiles this file as it
//! is; [`super::verify`] is the entry point the webhook handler uses.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Seconds a signature stays valid.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("no v1 signature in Stripe-Signature")]
    NoV1,
    #[error("signature timestamp outside the 300 s tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Verify a delivery's signature header against the raw body, with the secrets' bytes.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&[u8]],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let (k, v) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            "v1" => {
                if let Some(sig) = decode_hex(v) {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1);
    }
    let mut matched = false;
    for secret in secrets {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        for sig in &v1 {
            // Evaluate every pair: no early exit that would leak which one matched.
            matched |= bool::from(expected.as_slice().ct_eq(sig.as_slice()));
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if t < now - TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_header_parsing_never_panic() {
        assert_eq!(decode_hex("0aff"), Some(vec![10, 255]));
        assert_eq!(decode_hex("0af"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é0"), None);
        let s: [&[u8]; 1] = [b"whsec_x"];
        assert_eq!(verify(None, b"", &s, 0), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("garbage"), b"", &s, 0),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1,v0=ab"), b"", &s, 0),
            Err(SignatureError::NoV1)
        );
        assert_eq!(
            verify(Some("t=x,v1=ab"), b"", &s, 0),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1,v1=abcd"), b"", &s, 0),
            Err(SignatureError::Mismatch)
        );
    }
}
