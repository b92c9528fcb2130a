//! The settings the configuration reads for the generator (`[generator]`): plain data, built
//! without Python (no `runtime` feature needed).

use std::path::PathBuf;

/// The DSPy generator's settings: the `[generator]` table of the configuration. Without `lm`,
/// the pipeline answers extractively.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorSettings {
    /// LM for DSPy (`openai/gpt-4o-mini`, `hosted_vllm/NAME`); unset: extractive answers.
    pub lm: Option<String>,
    /// OpenAI-compatible base URL.
    pub api_base: Option<String>,
    /// Environment variable holding the LM API key.
    pub api_key_env: String,
    /// Max tokens per answer.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Seconds before a generation is abandoned for the extractive answer.
    pub timeout_secs: u64,
    /// LM retries (DSPy / litellm).
    pub retries: u32,
    /// DSPy signature.
    pub signature: String,
    /// DSPy's response cache (on: a repeated question is answered from disk, without streaming).
    pub cache: bool,
    /// `lm = "local"`: the GGUF file llama.cpp serves in-process; unset: the one `make setup`
    /// assembles (`RAG_LOCAL_MODEL`, else ~/.cache/rag/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf).
    pub local_model: Option<PathBuf>,
    /// `lm = "local"`: CPU threads for generation.
    pub local_threads: usize,
    /// `lm = "local"`: context window in tokens (of each parallel slot).
    pub local_context: usize,
    /// `lm = "local"`: requests llama.cpp serves at once, in parallel slots decoded together
    /// (continuous batching), 1 to 64. Each slot holds its own `local_context` of KV cache: for
    /// the default Qwen2.5 0.5B that is 12 KiB a token, 48 MiB a slot at 4,096 tokens.
    pub local_parallel: usize,
    /// A program compiled by `rag optimize`: the generator answers with its answer predictor's
    /// demos and instructions (the pipeline's retrieval stays the pipeline's).
    pub program: Option<PathBuf>,
}

/// Parallel slots of the local model when `local_parallel` is unset: 1. Measured on this
/// project's 2-core machine (docs/benchmarks.md, "A local LM for several users"), four slots
/// gave no more answers a minute than one: reading each ~1,300-token prompt is compute-bound and
/// takes most of an answer's time. Raise it on a machine with cores to spare.
pub const LOCAL_PARALLEL: usize = 1;

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            lm: None,
            api_base: None,
            api_key_env: "OPENAI_API_KEY".into(),
            max_tokens: 512,
            temperature: 0.0,
            timeout_secs: 60,
            retries: 2,
            signature: "context, question -> answer".into(),
            cache: true,
            local_model: None,
            local_threads: 2,
            local_context: 4096,
            local_parallel: LOCAL_PARALLEL,
            program: None,
        }
    }
}
