//! RFC 8291 (Web Push message encryption, one `aes128gcm` record) and RFC 8292 (VAPID:
//! an ES256 JWT for the push service's origin, `Authorization: vapid t=…, k=…`).

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

/// Record size announced in the header (one record carries the whole message).
const RECORD_SIZE: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushCryptoError {
    #[error("p256dh is not a base64url P-256 public key")]
    BadPublicKey,
    #[error("auth is not a base64url 16-byte secret")]
    BadAuth,
    #[error("VAPID private key is not a base64url 32-byte P-256 scalar")]
    BadPrivateKey,
    #[error("VAPID public key does not match the private key")]
    KeyMismatch,
    #[error("payload too large for one record")]
    TooLarge,
    #[error("endpoint is not an http(s) URL")]
    BadEndpoint,
    #[error("encryption failed")]
    Encrypt,
}

/// Check a browser's keys (`p256dh`, `auth`) without using them.
pub fn validate_keys(p256dh: &str, auth: &str) -> Result<(), PushCryptoError> {
    public_key(p256dh)?;
    auth_secret(auth)?;
    Ok(())
}

fn public_key(b64: &str) -> Result<PublicKey, PushCryptoError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| PushCryptoError::BadPublicKey)?;
    if bytes.len() != 65 {
        return Err(PushCryptoError::BadPublicKey);
    }
    PublicKey::from_sec1_bytes(&bytes).map_err(|_| PushCryptoError::BadPublicKey)
}

fn auth_secret(b64: &str) -> Result<Vec<u8>, PushCryptoError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| PushCryptoError::BadAuth)?;
    if bytes.len() != 16 {
        return Err(PushCryptoError::BadAuth);
    }
    Ok(bytes)
}

fn expand<const N: usize>(prk: &Hkdf<Sha256>, info: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    // N ≤ 32 is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = prk.expand(info, &mut out);
    out
}

/// Encrypt `payload` for a subscriber: the `aes128gcm` body (header + one record).
pub fn encrypt(p256dh: &str, auth: &str, payload: &[u8]) -> Result<Vec<u8>, PushCryptoError> {
    let ua_public = public_key(p256dh)?;
    let auth = auth_secret(auth)?;
    if payload.len() + 1 + 16 > RECORD_SIZE as usize - 86 {
        return Err(PushCryptoError::TooLarge);
    }
    let as_secret = SecretKey::random(&mut OsRng);
    let as_public = as_secret.public_key().to_encoded_point(false);
    let ua_bytes = ua_public.to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua_public.as_affine());
    // RFC 8291 §3.3: IKM from the ECDH secret, keyed by the auth secret.
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_bytes.as_bytes());
    key_info.extend_from_slice(as_public.as_bytes());
    let ikm: [u8; 32] = expand(
        &Hkdf::<Sha256>::new(Some(&auth), shared.raw_secret_bytes()),
        &key_info,
    );
    // RFC 8188 §2.2: content key and nonce from a random salt.
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let prk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let cek: [u8; 16] = expand(&prk, b"Content-Encoding: aes128gcm\0");
    let nonce: [u8; 12] = expand(&prk, b"Content-Encoding: nonce\0");
    let mut record = payload.to_vec();
    record.push(0x02); // last-record delimiter, no padding
    let sealed = Aes128Gcm::new_from_slice(&cek)
        .map_err(|_| PushCryptoError::Encrypt)?
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .map_err(|_| PushCryptoError::Encrypt)?;
    let key_id = as_public.as_bytes();
    let mut body = Vec::with_capacity(21 + key_id.len() + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(key_id.len() as u8);
    body.extend_from_slice(key_id);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// The application server's VAPID identity.
#[derive(Clone)]
pub struct Vapid {
    key: SigningKey,
    /// base64url uncompressed public key (the `k=` parameter).
    public_b64: String,
    subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public_b64)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Vapid {
    pub fn new(
        public_b64: &str,
        private_b64: &str,
        subject: &str,
    ) -> Result<Self, PushCryptoError> {
        let scalar = URL_SAFE_NO_PAD
            .decode(private_b64.trim().trim_end_matches('='))
            .map_err(|_| PushCryptoError::BadPrivateKey)?;
        let key = SigningKey::from_slice(&scalar).map_err(|_| PushCryptoError::BadPrivateKey)?;
        let derived = key.verifying_key().to_encoded_point(false);
        let given = public_key(public_b64.trim()).map_err(|_| PushCryptoError::KeyMismatch)?;
        if given.to_encoded_point(false) != derived {
            return Err(PushCryptoError::KeyMismatch);
        }
        Ok(Self {
            key,
            public_b64: URL_SAFE_NO_PAD.encode(derived.as_bytes()),
            subject: subject.to_owned(),
        })
    }

    pub fn public_key(&self) -> &str {
        &self.public_b64
    }

    /// `vapid t=<ES256 JWT for the endpoint's origin, 12 h>, k=<public key>`.
    pub fn authorization(&self, endpoint: &str, now: i64) -> Result<String, PushCryptoError> {
        let audience = origin(endpoint).ok_or(PushCryptoError::BadEndpoint)?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience, "exp": now + 12 * 3600, "sub": self.subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        let jwt = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        );
        Ok(format!("vapid t={jwt}, k={}", self.public_b64))
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_errors_not_panics() {
        assert_eq!(
            validate_keys("", "AAAAAAAAAAAAAAAAAAAAAA"),
            Err(PushCryptoError::BadPublicKey)
        );
        let pk = URL_SAFE_NO_PAD.encode(
            SecretKey::random(&mut OsRng)
                .public_key()
                .to_encoded_point(false)
                .as_bytes(),
        );
        assert_eq!(validate_keys(&pk, "short"), Err(PushCryptoError::BadAuth));
        assert!(validate_keys(&pk, "AAAAAAAAAAAAAAAAAAAAAA").is_ok());
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/x"),
            Some("https://fcm.googleapis.com".into())
        );
        assert_eq!(origin("ftp://x"), None);
    }
}
