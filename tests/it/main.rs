//! Integration tests: one binary, one module per topic.

mod astro_api;
mod astro_ephemeris;
mod astro_houses;
mod astro_support;
mod auth;
mod billing;
mod binary;
mod common;
mod engine;
mod engine_gen;
mod foundation;
mod models;
mod openai;
mod ops;
mod push;
mod ratelimit;
mod retrieval;
mod retrieval_eval;
mod saju_api;
mod saju_edges;
mod saju_oracles;
mod store;
