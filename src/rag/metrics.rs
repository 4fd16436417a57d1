//! The reading pipeline's Prometheus metrics: time per stage, retrieval latency, citations
//! dropped as invalid, readings cancelled by a departed client, readings by mode and outcome.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::metrics::LATENCY_BUCKETS;

/// Reading metrics (register them with [`RagMetrics::collectors`]).
#[derive(Clone)]
pub struct RagMetrics {
    pub stage_seconds: HistogramVec,
    pub retrieval_seconds: Histogram,
    pub citations_invalid: IntCounter,
    pub cancelled: IntCounterVec,
    pub readings: IntCounterVec,
}

impl Default for RagMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RagMetrics {
    #[allow(clippy::expect_used, reason = "constant, valid metric definitions")]
    pub fn new() -> Self {
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "starpillar_reading_stage_seconds",
                "Time spent in each stage of a reading (chart, facts, retrieval, compose, \
                 prompt, first_token, generate, total).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid metric");
        let retrieval_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "starpillar_retrieval_duration_seconds",
                "Time of one retrieval query (embedding plus search).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let citations_invalid = IntCounter::with_opts(Opts::new(
            "starpillar_citations_invalid_total",
            "Citations in generated readings that named no passage given to the model (dropped).",
        ))
        .expect("valid metric");
        let cancelled = IntCounterVec::new(
            Opts::new(
                "starpillar_reading_cancelled_total",
                "Readings abandoned because the client went away, by mode.",
            ),
            &["mode"],
        )
        .expect("valid metric");
        let readings = IntCounterVec::new(
            Opts::new(
                "starpillar_readings_total",
                "Readings produced, by mode and outcome (ok, error, cancelled, cached).",
            ),
            &["mode", "outcome"],
        )
        .expect("valid metric");
        Self {
            stage_seconds,
            retrieval_seconds,
            citations_invalid,
            cancelled,
            readings,
        }
    }

    /// Every collector, for a registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.stage_seconds.clone()),
            Box::new(self.retrieval_seconds.clone()),
            Box::new(self.citations_invalid.clone()),
            Box::new(self.cancelled.clone()),
            Box::new(self.readings.clone()),
        ]
    }

    /// Record one stage's duration.
    pub fn stage(&self, stage: &str, seconds: f64) {
        self.stage_seconds
            .with_label_values(&[stage])
            .observe(seconds);
    }
}
