//! The settings the configuration reads for each embedder (`[embedder.onnx]`,
//! `[embedder.sentence-transformers]`, `[embedder.openai]`): plain data, defined whatever
//! features are on, so a configuration naming any embedder loads in every build.

rag_core::choice! {
    /// Which exported model the ONNX embedder runs.
    #[derive(Default)]
    OnnxPrecision {
        /// The fp32 export: the same vectors as torch (cosine 1.0 to sentence-transformers).
        Fp32 = "fp32",
        /// Dynamically quantised int8 weights, one scale per output channel (AVX-512 VNNI):
        /// about twice fp32's speed, vectors within cosine 0.99 of fp32's, and SciFact nDCG@10
        /// as good (docs/benchmarks.md), so the default.
        #[default]
        Int8 = "int8",
    }
}

/// The ONNX embedder's settings: `[embedder.onnx]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnnxSettings {
    /// `int8` (default) or `fp32`.
    pub precision: OnnxPrecision,
    /// Another precision for the queries only (documents keep `precision`): int8 queries
    /// against fp32 documents make queries about three times as cheap while the stored
    /// vectors stay fp32's. Unset: `precision`. Changing it re-embeds nothing.
    pub query_precision: Option<OnnxPrecision>,
    /// Sessions run at once (one per core is best on CPU), 1 to 64.
    pub sessions: usize,
}

impl Default for OnnxSettings {
    fn default() -> Self {
        Self { precision: OnnxPrecision::Int8, query_precision: None, sessions: 2 }
    }
}

impl OnnxSettings {
    /// The precision queries are embedded with.
    pub fn effective_query_precision(&self) -> OnnxPrecision {
        self.query_precision.unwrap_or(self.precision)
    }
}

/// The sentence-transformers embedder's settings: `[embedder.sentence-transformers]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentenceTransformersSettings {
    /// The torch device (`cpu`, `cuda`).
    pub device: String,
}

impl Default for SentenceTransformersSettings {
    fn default() -> Self {
        Self { device: "cpu".into() }
    }
}

/// The OpenAI-compatible embedder's settings: `[embedder.openai]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiSettings {
    /// The API's base URL; unset: OpenAI's.
    pub api_base: Option<String>,
    /// Environment variable holding the API key; the key is never logged.
    pub api_key_env: String,
    /// `dimensions` to ask the model for (text-embedding-3 models).
    pub dimensions: Option<usize>,
}

impl Default for OpenAiSettings {
    fn default() -> Self {
        Self { api_base: None, api_key_env: "OPENAI_API_KEY".into(), dimensions: None }
    }
}
