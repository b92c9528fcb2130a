//! Prometheus metrics (`GET /metrics`): requests and latency per route, latency per pipeline
//! stage, in-flight requests, overload rejections, degraded answers, and, read at scrape time,
//! the embedding batcher's and the embedding cache's counters.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route (`/v1/collections/{collection}/query`), never the raw path.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Response status.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// The matched route.
    pub route: String,
    /// HTTP method.
    pub method: String,
}

/// Labels of a pipeline stage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `embed_query`, `keyword_search`, `vector_search`, `fusion`, `retrieve`, `rerank`, `pack`,
    /// `generate`, `total`.
    pub stage: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route, method and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Request latency, by route and method (to the response head; streams run on after it).
    pub latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// Pipeline stage latency.
    pub stages: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// Requests being served.
    pub in_flight: Gauge,
    /// Requests refused with 503 because the server was at its concurrency cap.
    pub overloaded: Counter,
    /// Answers that carried a degradation (a failed reranker or LM, a timeout).
    pub degraded: Counter,
    /// Judgments stored (`POST .../feedback`).
    pub feedback: Counter,
    /// Query-embedding model calls (batched).
    pub embed_batches: Gauge<u64, AtomicU64>,
    /// Texts those calls carried (`embed_batch_texts / embed_batches` = mean batch size).
    pub embed_batch_texts: Gauge<u64, AtomicU64>,
    /// Texts served from the embedding cache.
    pub cache_hits: Gauge<u64, AtomicU64>,
    /// Texts the embedding model embedded (cache misses).
    pub cache_misses: Gauge<u64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `rag_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rag");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency =
            Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let stages =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let in_flight = Gauge::default();
        let overloaded = Counter::default();
        let degraded = Counter::default();
        let feedback = Counter::default();
        let embed_batches = Gauge::<u64, AtomicU64>::default();
        let embed_batch_texts = Gauge::<u64, AtomicU64>::default();
        let cache_hits = Gauge::<u64, AtomicU64>::default();
        let cache_misses = Gauge::<u64, AtomicU64>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency to the response head", latency.clone());
        registry.register("stage_duration_seconds", "Pipeline stage latency per query", stages.clone());
        registry.register("http_requests_in_flight", "Requests being served", in_flight.clone());
        registry.register("overload_rejections", "Requests refused with 503 at the concurrency cap", overloaded.clone());
        registry.register("degraded_answers", "Answers with a degraded component", degraded.clone());
        registry.register("feedback_judgments", "Judgments of answers stored", feedback.clone());
        registry.register("embed_batches", "Query-embedding model calls made by the batcher", embed_batches.clone());
        registry.register("embed_batch_texts", "Texts carried by those calls", embed_batch_texts.clone());
        registry.register("embedding_cache_hits", "Texts served from the embedding cache", cache_hits.clone());
        registry.register("embedding_cache_misses", "Texts embedded by the model", cache_misses.clone());
        Self {
            registry,
            requests,
            latency,
            stages,
            in_flight,
            overloaded,
            degraded,
            feedback,
            embed_batches,
            embed_batch_texts,
            cache_hits,
            cache_misses,
        }
    }

    /// Records one query's stage timings (milliseconds, as the pipeline reports them).
    pub fn observe_stages<'a>(&self, timings_ms: impl IntoIterator<Item = (&'a String, &'a f64)>) {
        for (stage, ms) in timings_ms {
            self.stages.get_or_create(&StageLabels { stage: stage.clone() }).observe(ms / 1000.0);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }
}
