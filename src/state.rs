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
    components: RwLock<BTreeMap<String, ComponentStatus>>,
}

impl AppState {
    pub fn new(config: ServeConfig) -> Self {
        let state = Self {
            config,
            metrics: Arc::new(Metrics::new()),
            started: Instant::now(),
            components: RwLock::new(BTreeMap::new()),
        };
        state.set_component(
            "domain",
            true,
            "saju and astrology engines (pure, always ready)",
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

    /// True when every registered component is ready.
    pub fn is_ready(&self) -> bool {
        self.components().values().all(|c| c.ready)
    }
}

/// The state as handlers receive it.
pub type SharedState = Arc<AppState>;
