//! The pure parsing core of starpillar, compiled from the main crate's own source files (no
//! copies): each `#[path]` below names a file of `../src` that has no server dependencies.
//! Modules sit at the same paths as in the main crate (`crate::domain::…`), so the files'
//! own `crate::`/`super::` imports resolve unchanged. The fuzz targets use only this.

/// The saju and astrology engines (`src/domain`, whole).
#[path = "../../src/domain/mod.rs"]
pub mod domain;

/// The request body of `/api/saju`.
#[path = "../../src/api/saju/request.rs"]
pub mod saju_request;

/// The request body of `/api/astrology`, and its mapping to the engine's input.
#[path = "../../src/api/astrology/request.rs"]
pub mod astrology_request;

/// Session tokens: the cookie jar, compact JWE, and the claims check.
pub mod auth;

/// The `Stripe-Signature` header check.
#[path = "../../src/billing/webhook/signature.rs"]
pub mod stripe_signature;

/// Corpus front-matter parsing and Markdown chunking.
#[path = "../../src/retrieval/corpus/markdown.rs"]
pub mod corpus;

/// `AppJson`'s parsing (src/api/json.rs, which needs the server's error type): serde_json
/// through serde_path_to_error, then nothing but whitespace may follow.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            // The handler reports the path and message: build both.
            let _ = (e.path().to_string(), e.inner().to_string());
        })
        .ok()?;
    de.end().ok()?;
    Some(value)
}
