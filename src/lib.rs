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
//! - [`metrics`]: the Prometheus registry (`starpillar_*`) and the HTTP metrics middleware.
//! - [`state`]: the shared application state handed to every handler.
//! - [`telemetry`]: tracing set-up (JSON or human-readable logs).
//! - [`cli`]: the `starpillar` command line; `main.rs` only calls [`cli::run`].

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod state;
pub mod telemetry;

/// The crate version, reported by `/api/lib-health`, `--version` and the build-info metric.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
