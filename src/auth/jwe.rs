//! Compact JWE decryption for the two session-token formats of NextAuth/Auth.js, `dir` key
//! management only:
//! - NextAuth v4: `A256GCM`, key = HKDF-SHA256(secret, salt "", info "NextAuth.js Generated
//!   Encryption Key", 32 bytes);
//! - Auth.js v5: `A256CBC-HS512` (RFC 7518 §5.2), key = HKDF-SHA256(secret, salt = cookie
//!   name, info "Auth.js Generated Encryption Key (<salt>)", 64 bytes).
//!
//! Pure RustCrypto; the authentication tag is checked in constant time before any plaintext
//! is used. Every failure is a [`JweError`], never a panic.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// The content encryptions we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    /// NextAuth v4.
    A256Gcm,
    /// Auth.js v5.
    A256CbcHs512,
}

/// Why a token could not be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("not a compact JWE")]
    Malformed,
    #[error("unsupported JWE header")]
    Unsupported,
    #[error("no key decrypts the token")]
    Decrypt,
}

impl JweError {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::Decrypt => "decrypt",
        }
    }
}

/// The v4 content key for one secret.
pub fn v4_key(secret: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(b""), secret)
        .expand(b"NextAuth.js Generated Encryption Key", &mut okm);
    okm
}

/// The v5 content key for one secret and salt (the cookie name).
pub fn v5_key(secret: &[u8], salt: &str) -> [u8; 64] {
    let mut okm = [0u8; 64];
    let info = format!("Auth.js Generated Encryption Key ({salt})");
    let _ = Hkdf::<Sha256>::new(Some(salt.as_bytes()), secret).expand(info.as_bytes(), &mut okm);
    okm
}

/// A parsed compact JWE (`dir`: no encrypted key).
pub struct Compact<'a> {
    /// The protected header segment: the AAD.
    aad: &'a [u8],
    pub enc: Enc,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

/// Split and decode a compact JWE, checking its header.
pub fn parse(token: &str) -> Result<Compact<'_>, JweError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [header, key, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Malformed);
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JweError::Malformed);
    let header_json: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| JweError::Malformed)?;
    let obj = header_json.as_object().ok_or(JweError::Malformed)?;
    if obj.get("alg").and_then(|a| a.as_str()) != Some("dir")
        || !key.is_empty()
        || obj.contains_key("zip")
        || obj.contains_key("crit")
    {
        return Err(JweError::Unsupported);
    }
    let enc = match obj.get("enc").and_then(|e| e.as_str()) {
        Some("A256GCM") => Enc::A256Gcm,
        Some("A256CBC-HS512") => Enc::A256CbcHs512,
        _ => return Err(JweError::Unsupported),
    };
    let compact = Compact {
        aad: header.as_bytes(),
        enc,
        iv: decode(iv)?,
        ciphertext: decode(ciphertext)?,
        tag: decode(tag)?,
    };
    let (iv_len, tag_len) = match enc {
        Enc::A256Gcm => (12, 16),
        Enc::A256CbcHs512 => (16, 32),
    };
    if compact.iv.len() != iv_len || compact.tag.len() != tag_len {
        return Err(JweError::Malformed);
    }
    Ok(compact)
}

impl Compact<'_> {
    /// Decrypt with a v4 key (`A256GCM`).
    pub fn decrypt_gcm(&self, key: &[u8; 32]) -> Result<Vec<u8>, JweError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| JweError::Decrypt)?;
        let mut msg = Vec::with_capacity(self.ciphertext.len() + self.tag.len());
        msg.extend_from_slice(&self.ciphertext);
        msg.extend_from_slice(&self.tag);
        cipher
            .decrypt(
                Nonce::from_slice(&self.iv),
                Payload {
                    msg: &msg,
                    aad: self.aad,
                },
            )
            .map_err(|_| JweError::Decrypt)
    }

    /// Decrypt with a v5 key (`A256CBC-HS512`): MAC first (constant time), then CBC.
    pub fn decrypt_cbc_hs512(&self, key: &[u8; 64]) -> Result<Vec<u8>, JweError> {
        let (mac_key, enc_key) = key.split_at(32);
        let mut mac =
            <Hmac<Sha512> as Mac>::new_from_slice(mac_key).map_err(|_| JweError::Decrypt)?;
        mac.update(self.aad);
        mac.update(&self.iv);
        mac.update(&self.ciphertext);
        mac.update(&((self.aad.len() as u64) * 8).to_be_bytes());
        mac.verify_truncated_left(&self.tag)
            .map_err(|_| JweError::Decrypt)?;
        cbc::Decryptor::<aes::Aes256>::new_from_slices(enc_key, &self.iv)
            .map_err(|_| JweError::Decrypt)?
            .decrypt_padded_vec_mut::<Pkcs7>(&self.ciphertext)
            .map_err(|_| JweError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for token in ["", "a.b", "....", "a.b.c.d.e.f", "!!.x.y.z.w"] {
            assert!(parse(token).is_err(), "{token}");
        }
        // A valid header with a wrong IV length.
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"dir","enc":"A256GCM"}"#);
        assert_eq!(
            parse(&format!("{h}..AAAA.AAAA.AAAA")).err(),
            Some(JweError::Malformed)
        );
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
        assert_eq!(
            parse(&format!("{h}..AAAA.AAAA.AAAA")).err(),
            Some(JweError::Unsupported)
        );
    }

    #[test]
    fn keys_depend_on_secret_and_salt() {
        assert_ne!(v4_key(b"a"), v4_key(b"b"));
        assert_ne!(v5_key(b"a", "authjs.session-token"), v5_key(b"a", "x"));
    }
}
