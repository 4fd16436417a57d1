//! `src/auth`'s token files, siblings here as there (they import each other via `super::`).

#[path = "../../src/auth/cookies.rs"]
pub mod cookies;
#[path = "../../src/auth/jwe.rs"]
pub mod jwe;
#[path = "../../src/auth/token.rs"]
pub mod token;
