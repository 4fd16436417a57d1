//! The cache key: sha256 over length-prefixed, canonical parts of a reading request.
//!
//! The chart and the options are serialised as JSON with object keys sorted at every depth
//! (independent of any `preserve_order` feature), the question is NFC-normalised, trimmed and
//! its whitespace collapsed, the locale lower-cased. Every part is written as an 8-byte
//! little-endian length followed by its bytes, so no two different requests can collide by
//! concatenation. Exact, never "similar": a near miss would serve another person's reading.

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// Bumped whenever the canonical form changes, so old entries are never read as new ones.
const KEY_FORMAT: &str = "starpillar-cache-key-v1";

/// Everything that makes a reading differ.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The API route (`/api/saju`, `/api/astrology`, `/api/ask`).
    pub route: &'a str,
    /// The computed chart (or the input chart for `/api/ask`; `null` when none).
    pub chart: &'a serde_json::Value,
    pub question: &'a str,
    pub locale: &'a str,
    /// Reading options (mode, top_k, house system…); `null` or `{}` when none.
    pub options: &'a serde_json::Value,
    /// The model id (or `compose` when no model writes the text).
    pub model: &'a str,
    /// The model file's hash.
    pub model_hash: &'a str,
    pub prompt_version: &'a str,
    pub corpus_version: &'a str,
}

/// A sha256 cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of a request: sha256 over its canonical, length-prefixed parts.
    pub fn new(parts: &KeyParts<'_>) -> Self {
        let mut chart = String::new();
        canonical_json(parts.chart, &mut chart);
        let mut options = String::new();
        canonical_json(parts.options, &mut options);
        let question = normalize_question(parts.question);
        let locale = parts.locale.trim().to_ascii_lowercase();
        let mut hasher = Sha256::new();
        for part in [
            KEY_FORMAT,
            parts.route,
            &chart,
            &question,
            &locale,
            &options,
            parts.model,
            parts.model_hash,
            parts.prompt_version,
            parts.corpus_version,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Self(hasher.finalize().into())
    }

    /// The key as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", self.hex())
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// NFC, trimmed, every run of whitespace replaced by one space.
pub fn normalize_question(question: &str) -> String {
    let nfc: String = question.nfc().collect();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// JSON with object keys sorted (by their UTF-8 bytes) at every depth, no whitespace.
pub fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(k, out);
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        Value::String(s) => push_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn push_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(chart: serde_json::Value, question: &str, locale: &str) -> CacheKey {
        CacheKey::new(&KeyParts {
            route: "/api/saju",
            chart: &chart,
            question,
            locale,
            options: &json!({"mode": "auto"}),
            model: "m",
            model_hash: "h",
            prompt_version: "p1",
            corpus_version: "c1",
        })
    }

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":{"y":1,"x":[1,{"q":2,"p":3}]},"a":"s"}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "a" : "s", "b" : { "x" : [1, {"p":3,"q":2}], "y" : 1 } }"#)
                .unwrap();
        let mut out = String::new();
        canonical_json(&a, &mut out);
        assert_eq!(out, r#"{"a":"s","b":{"x":[1,{"p":3,"q":2}],"y":1}}"#);
        assert_eq!(key(a, "q", "ko"), key(b, "q", "ko"));
    }

    #[test]
    fn question_is_normalised_but_exact() {
        let chart = json!({"day": "甲子"});
        // U+1100 U+1161 (conjoining jamo) composes to U+AC00 under NFC.
        let decomposed = "\u{1100}\u{1161} 운세";
        let composed = "  가\t\n운세 ";
        assert_eq!(normalize_question(decomposed), "가 운세");
        assert_eq!(
            key(chart.clone(), decomposed, "ko"),
            key(chart.clone(), composed, " KO")
        );
        assert_ne!(
            key(chart.clone(), "가 운세", "ko"),
            key(chart.clone(), "가 운세?", "ko")
        );
        assert_ne!(key(chart.clone(), "q", "ko"), key(chart.clone(), "q", "en"));
        assert_ne!(
            key(chart, "q", "ko"),
            key(json!({"day": "乙丑"}), "q", "ko")
        );
    }

    #[test]
    fn parts_are_length_prefixed() {
        let chart = json!(null);
        let opts = json!(null);
        let mk = |model: &str, hash: &str| {
            CacheKey::new(&KeyParts {
                route: "/api/ask",
                chart: &chart,
                question: "q",
                locale: "en",
                options: &opts,
                model,
                model_hash: hash,
                prompt_version: "p",
                corpus_version: "c",
            })
        };
        assert_ne!(mk("ab", "c"), mk("a", "bc"));
        assert_eq!(mk("a", "b").hex().len(), 64);
    }
}
