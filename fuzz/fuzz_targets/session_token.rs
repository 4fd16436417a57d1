//! Session tokens (src/auth): the first byte picks what the rest is.
//! - 0: a raw token (bearer or cookie value) → `Keys::verify`: always an error, never a panic;
//! - 1, 2: the claims JSON of a token that really decrypts (v4 `A256GCM`, v5
//!   `A256CBC-HS512`, encrypted here with the test secret) → the claims check;
//! - 3: `Cookie`/`Authorization` header lines → `find_token` → `verify`.
#![no_main]

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha512;
use starpillar_fuzz::auth::token::{Keys, V5_COOKIES};
use starpillar_fuzz::auth::{cookies, jwe};

const SECRET: &[u8] = b"fuzz-secret";
/// A fixed "now": 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;

fn v4_token(claims: &[u8]) -> Option<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"dir","enc":"A256GCM"}"#);
    let iv = [7u8; 12];
    let cipher = Aes256Gcm::new_from_slice(&jwe::v4_key(SECRET)).ok()?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: claims,
                aad: header.as_bytes(),
            },
        )
        .ok()?;
    let (ct, tag) = sealed.split_at(sealed.len() - 16);
    Some(format!("{header}..{}.{}.{}", b64(&iv), b64(ct), b64(tag)))
}

fn v5_token(claims: &[u8], salt: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"dir","enc":"A256CBC-HS512"}"#);
    let iv = [9u8; 16];
    let key = jwe::v5_key(SECRET, salt);
    let (mac_key, enc_key) = key.split_at(32);
    let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(enc_key, &iv)
        .ok()?
        .encrypt_padded_vec_mut::<Pkcs7>(claims);
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(mac_key).ok()?;
    mac.update(header.as_bytes());
    mac.update(&iv);
    mac.update(&ct);
    mac.update(&((header.len() as u64) * 8).to_be_bytes());
    let tag = mac.finalize().into_bytes();
    Some(format!(
        "{header}..{}.{}.{}",
        b64(&iv),
        b64(&ct),
        b64(&tag[..32])
    ))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = Keys::new(&[b"other-secret", SECRET]);
    match mode % 4 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let _ = jwe::parse(&token);
            for salt in [None, Some(V5_COOKIES[1]), Some("custom.session-token")] {
                let result = keys.verify(&token, salt, NOW);
                assert!(result.is_err(), "a forged token was accepted: {result:?}");
            }
        }
        1 | 2 => {
            let token = if mode % 4 == 1 {
                v4_token(rest)
            } else {
                v5_token(rest, V5_COOKIES[1])
            };
            let Some(token) = token else { return };
            let salt = (mode % 4 == 2).then_some(V5_COOKIES[1]);
            match keys.verify(&token, salt, NOW) {
                Ok(session) => {
                    assert!(!session.user_id.is_empty());
                    assert!(NOW <= session.expires_at.saturating_add(15));
                }
                Err(err) => {
                    // The token decrypts: only the claims can be wrong.
                    assert!(!matches!(
                        err,
                        starpillar_fuzz::auth::token::TokenError::Jwe(_)
                    ));
                    let _ = (err.reason(), err.to_string());
                }
            }
        }
        _ => {
            let mut headers = HeaderMap::new();
            for (i, line) in rest.split(|&b| b == b'\n').enumerate() {
                let Ok(value) = HeaderValue::from_bytes(line) else {
                    continue;
                };
                let name = if i == 0 {
                    header::AUTHORIZATION
                } else {
                    header::COOKIE
                };
                headers.append(name, value);
            }
            if let Some(found) = cookies::find_token(&headers) {
                assert!(!found.token.is_empty());
                assert!(keys.verify(&found.token, found.cookie, NOW).is_err());
            }
        }
    }
});
