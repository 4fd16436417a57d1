//! The application state shared by every handler: configuration, metrics, readiness of each
//! component. Later layers (engine, store, retrieval, cache) hang their handles here as trait
//! objects so tests can swap them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;

use crate::config::ServeConfig;
use crate::metrics::Metrics;

/// State of one component as reported by `/readyz` and `/api/lib-health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComponentStatus {
    pub ready: bool,
    /// What is loaded or why it is not ready.
    pub detail: String,
}

/// Everything a handler may need.
pub struct AppState {
    pub config: ServeConfig,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// The embedding engine, set once the model has loaded (`/v1/embeddings` answers 503
    /// until then). Tests put a fake here.
    pub embedder: std::sync::OnceLock<Arc<dyn crate::engine::Embed>>,
    /// The text generator, set once its model has loaded (readings fall back to `compose`
    /// and `/v1/chat/completions` answers 503 until then).
    pub generator: std::sync::OnceLock<Arc<dyn crate::engine::Generate>>,
    /// Search over the indexed corpus, set once the store is open and indexed.
    pub retriever: RwLock<Option<Arc<crate::retrieval::retriever::Retriever>>>,
    /// Accounts, billing, revocations, usage (SQLite or PostgreSQL; opens on first use).
    pub store: Arc<crate::store::Store>,
    /// Session keys (NextAuth/Auth.js) and the auth mode.
    pub auth: Arc<crate::auth::Sessions>,
    /// Plans, quotas, Stripe.
    pub billing: Arc<crate::billing::Billing>,
    /// Rate limits (in-process or Redis).
    pub ratelimit: Arc<crate::ratelimit::RateLimiter>,
    /// Web Push sender.
    pub push: Arc<crate::push::Push>,
    /// Reading pipeline metrics (stages, retrieval, invalid citations, cancellations).
    pub rag_metrics: Arc<crate::rag::metrics::RagMetrics>,
    /// The reading cache (in-process or Redis).
    pub cache: Arc<crate::cache::ResponseCache>,
    /// Set to true while the server drains after SIGINT/SIGTERM, shortly before the grace
    /// period ends: open reading streams then end with an `error` event (`shutting_down`).
    pub ending_streams: tokio::sync::watch::Sender<bool>,
    components: RwLock<BTreeMap<String, ComponentStatus>>,
}

impl AppState {
    pub fn new(config: ServeConfig) -> Self {
        let store = Arc::new(crate::store::Store::new(config.database_url.clone()));
        let state = Self {
            store,
            auth: Arc::new(crate::auth::Sessions::new(&config.auth)),
            billing: Arc::new(crate::billing::Billing::new(config.billing.clone())),
            ratelimit: Arc::new(crate::ratelimit::RateLimiter::new(config.ratelimit.clone())),
            push: Arc::new(crate::push::Push::new(config.push.clone())),
            cache: Arc::new(crate::cache::ResponseCache::new(config.cache.clone())),
            rag_metrics: Arc::new(crate::rag::metrics::RagMetrics::new()),
            config,
            metrics: Arc::new(Metrics::new()),
            started: Instant::now(),
            embedder: std::sync::OnceLock::new(),
            generator: std::sync::OnceLock::new(),
            retriever: RwLock::new(None),
            ending_streams: tokio::sync::watch::Sender::new(false),
            components: RwLock::new(BTreeMap::new()),
        };
        state.set_component(
            "domain",
            true,
            "saju and astrology engines (pure, always ready)",
        );
        state
            .metrics
            .register(Box::new(state.auth.failures.clone()));
        state
            .metrics
            .register(Box::new(state.billing.webhooks_total.clone()));
        for c in state.ratelimit.collectors() {
            state.metrics.register(c);
        }
        for c in state.rag_metrics.collectors() {
            state.metrics.register(c);
        }
        for c in state.cache.collectors() {
            state.metrics.register(c);
        }
        state.set_component("cache", true, state.cache.describe());
        state.set_component(
            "store",
            true,
            format!("{} (opens on first use)", state.store.describe()),
        );
        state
    }

    /// Record a component's readiness (e.g. `embedder` false while the model loads).
    pub fn set_component(&self, name: &str, ready: bool, detail: impl Into<String>) {
        let status = ComponentStatus {
            ready,
            detail: detail.into(),
        };
        match self.components.write() {
            Ok(mut map) => {
                map.insert(name.to_owned(), status);
            }
            Err(poisoned) => {
                poisoned.into_inner().insert(name.to_owned(), status);
            }
        }
    }

    /// A snapshot of every component's status.
    pub fn components(&self) -> BTreeMap<String, ComponentStatus> {
        match self.components.read() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current retriever, if the store is open and indexed.
    pub fn retriever(&self) -> Option<Arc<crate::retrieval::retriever::Retriever>> {
        match self.retriever.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Install (or replace) the retriever.
    pub fn set_retriever(&self, retriever: Arc<crate::retrieval::retriever::Retriever>) {
        match self.retriever.write() {
            Ok(mut r) => *r = Some(retriever),
            Err(poisoned) => *poisoned.into_inner() = Some(retriever),
        }
    }

    /// True when every registered component is ready.
    pub fn is_ready(&self) -> bool {
        self.components().values().all(|c| c.ready)
    }
}

/// The state as handlers receive it.
pub type SharedState = Arc<AppState>;
