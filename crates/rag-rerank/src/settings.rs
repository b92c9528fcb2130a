//! The settings the configuration reads for the reranker (`[rerank.cross-encoder]`): plain
//! data, built without Python (no `runtime` feature needed).

/// The cross-encoder's settings: `[rerank.cross-encoder]`. Whether and how deep to rerank is
/// the pipeline's (`[rerank]` `enabled`, `initial_k`, `final_k`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrossEncoderSettings {
    /// Cross-encoder model directory or name (none ships offline).
    pub model: Option<String>,
    /// Pairs per model call.
    pub batch_size: usize,
    /// Max tokens of a (query, passage) pair.
    pub max_length: usize,
    /// Concurrent queries' reranks share model calls (up to `batch_pairs` pairs in one call).
    pub batch_queries: bool,
    /// The most (query, passage) pairs one shared call carries.
    pub batch_pairs: usize,
    /// How long a rerank waits for others to share its call (0: only those already waiting).
    pub batch_wait_ms: u64,
}

impl Default for CrossEncoderSettings {
    fn default() -> Self {
        Self {
            model: None,
            batch_size: 32,
            max_length: 512,
            // Measured: no gain on 2 cores (pairs are long, the model is compute-bound), docs/benchmarks.md.
            batch_queries: false,
            batch_pairs: 512,
            batch_wait_ms: 0,
        }
    }
}
