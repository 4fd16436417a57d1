//! The `Stripe-Signature` check (src/billing/webhook/signature.rs): the first byte picks
//! what the rest is.
//! - 0: `header NUL body`, both arbitrary: always refused (nobody can forge the HMAC), never a
//!   panic;
//! - 1: a body and a timestamp offset, signed here: accepted when fresh, `Stale` otherwise;
//! - 2: arbitrary header items around a valid signature: any outcome, but no panic.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use starpillar_fuzz::stripe_signature::{SignatureError, TOLERANCE_SECS, verify};

const SECRETS: [&[u8]; 2] = [b"whsec_old", b"whsec_fuzz"];
const NOW: i64 = 1_700_000_000;

fn sign(t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRETS[1]).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let (header, body) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let header = String::from_utf8_lossy(header);
            let result = verify(Some(&header), body, &SECRETS, NOW);
            assert!(result.is_err(), "a forged signature was accepted");
        }
        1 => {
            let Some((offset, body)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let age = i64::from(i16::from_le_bytes(*offset));
            let t = NOW - age;
            let header = format!("t={t},v1={}", sign(t, body));
            let want = if age > TOLERANCE_SECS {
                Err(SignatureError::Stale)
            } else {
                Ok(())
            };
            assert_eq!(verify(Some(&header), body, &SECRETS, NOW), want);
        }
        _ => {
            let (before, after) = rest.split_at(rest.len() / 2);
            let (before, after) = (
                String::from_utf8_lossy(before),
                String::from_utf8_lossy(after),
            );
            let header = format!("{before},t={NOW},v1={},{after}", sign(NOW, b"{}"));
            let _ = verify(Some(&header), b"{}", &SECRETS, NOW);
        }
    }
});
