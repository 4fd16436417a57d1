//! Integration tests: one binary, one module per topic.

mod common;
mod binary;
mod foundation;
mod saju_api;
mod saju_edges;
mod saju_oracles;
mod retrieval;
mod retrieval_eval;
mod engine;
mod engine_gen;
mod openai;
mod models;
mod store;
mod astro_api;
mod astro_ephemeris;
mod astro_houses;
mod astro_support;
mod auth;
mod ops;
mod billing;
mod ratelimit;
mod push;
