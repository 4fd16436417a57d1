//! starpillar: saju (사주, Four Pillars) and Western astrology readings, grounded AI, and the
//! web/auth/billing layer a Next.js frontend needs — one crate, one binary.
//!
//! # Layout
//!
//! - [`config`]: every setting of `serve`, from flags and environment, secrets redacted.
//! - [`error`]: the one HTTP error type and its JSON shape (`{"error":{code,message,field}}`).
//! - [`api`]: axum routers per feature, the tower middleware stack, OpenAPI; no model code.
//! - [`domain`]: pure calculations without I/O — [`domain::ephem`] (time scales, the Sun, the
//!   solar terms), [`domain::saju`] (만세력: pillars, ten gods, luck) and [`domain::astro`].
//! - [`engine`]: candle inference — model manifest and offline fetch, device, the batched
//!   E5 embedder (own threads, no axum).
//! - [`retrieval`]: corpus and chunking, BM25 keyword search, vector stores, hybrid RRF
//!   search, the indexer and the retrieval eval.
//! - [`rag`]: grounded readings — chart facts, retrieval per fact, `compose`/`generate`,
//!   citations, the versioned prompt templates, the reading eval.
//! - [`auth`]: NextAuth v4 / Auth.js v5 sessions (JWE), `AuthUser` extractors, revocation.
//! - [`billing`]: plans and quotas, Stripe Checkout and webhooks.
//! - [`cache`]: the exact-key reading cache (in-process LRU or Redis), single-flight, purges.
//! - [`metrics`]: the Prometheus registry (`starpillar_*`) and the HTTP metrics middleware.
//! - [`push`]: Web Push (RFC 8291 aes128gcm + RFC 8292 VAPID).
//! - [`ratelimit`]: per-caller sliding-window limits (in-process, or Redis like `@upstash/ratelimit`).
//! - [`state`]: the shared application state handed to every handler.
//! - [`store`]: SQLite or PostgreSQL: users' plans, Stripe events, revocations, push, usage.
//! - [`telemetry`]: tracing set-up (JSON or human-readable logs).
//! - [`cli`]: the `starpillar` command line; `main.rs` only calls [`cli::run`].

pub mod api;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod push;
pub mod rag;
pub mod ratelimit;
pub mod retrieval;
pub mod state;
pub mod store;
pub mod telemetry;

/// The crate version, reported by `/api/lib-health`, `--version` and the build-info metric.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
