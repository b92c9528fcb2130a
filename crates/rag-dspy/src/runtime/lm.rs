//! LM configuration, per generator or module.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// Which LM a DSPy program calls.
#[derive(Clone, PartialEq)]
pub enum LmConfig {
    /// `dspy.LM(model, ...)`: OpenAI or any OpenAI-compatible server (llama.cpp, vLLM, Ollama).
    /// Use `openai/NAME` for OpenAI; `hosted_vllm/NAME` for servers that honour `max_tokens` but
    /// ignore `max_completion_tokens` (llama.cpp's server).
    Lm {
        /// litellm model string.
        model: String,
        /// Base URL of an OpenAI-compatible server.
        api_base: Option<String>,
        /// API key. Never logged.
        api_key: Option<String>,
        /// Max tokens per completion.
        max_tokens: usize,
        /// Sampling temperature.
        temperature: f32,
        /// Retries inside litellm.
        retries: u32,
        /// Request timeout.
        timeout: Duration,
        /// DSPy's response cache.
        cache: bool,
    },
    /// `dspy.utils.DummyLM(answers)`: scripted answers, one dict of output fields per LM call
    /// (offline tests and demos).
    Dummy(Vec<BTreeMap<String, String>>),
}

impl std::fmt::Debug for LmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lm { model, api_base, api_key, max_tokens, temperature, retries, timeout, cache } => f
                .debug_struct("Lm")
                .field("model", model)
                .field("api_base", api_base)
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field("max_tokens", max_tokens)
                .field("temperature", temperature)
                .field("retries", retries)
                .field("timeout", timeout)
                .field("cache", cache)
                .finish(),
            Self::Dummy(a) => f.debug_tuple("Dummy").field(&a.len()).finish(),
        }
    }
}

impl LmConfig {
    /// An LM by model string with defaults (512 tokens, temperature 0, 2 retries, 60 s).
    pub fn model(model: impl Into<String>) -> Self {
        Self::Lm {
            model: model.into(),
            api_base: None,
            api_key: None,
            max_tokens: 512,
            temperature: 0.0,
            retries: 2,
            timeout: Duration::from_secs(60),
            cache: true,
        }
    }

    /// Scripted answers for `DummyLM`.
    pub fn dummy<I, M, K, V>(answers: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::Dummy(answers.into_iter().map(|m| m.into_iter().map(|(k, v)| (k.into(), v.into())).collect()).collect())
    }

    /// The LM named by `RAG_LM` (with `RAG_LM_API_BASE`, and the key from `RAG_LM_API_KEY` or
    /// `OPENAI_API_KEY`), if `RAG_LM` is set.
    pub fn from_env() -> Option<Self> {
        let model = std::env::var("RAG_LM").ok().filter(|m| !m.is_empty())?;
        let mut lm = Self::model(model);
        if let Self::Lm { api_base, api_key, .. } = &mut lm {
            *api_base = std::env::var("RAG_LM_API_BASE").ok().filter(|s| !s.is_empty());
            *api_key = std::env::var("RAG_LM_API_KEY").or_else(|_| std::env::var("OPENAI_API_KEY")).ok();
        }
        Some(lm)
    }

    /// A short label for results and logs.
    pub fn label(&self) -> String {
        match self {
            Self::Lm { model, .. } => model.clone(),
            Self::Dummy(_) => "DummyLM".into(),
        }
    }

    /// The spec `rag_dspy.make_lm` reads.
    pub(crate) fn spec(&self) -> Value {
        match self {
            Self::Lm { model, api_base, api_key, max_tokens, temperature, retries, timeout, cache } => json!({
                "kind": "lm", "model": model, "api_base": api_base, "api_key": api_key, "max_tokens": max_tokens,
                "temperature": temperature, "num_retries": retries, "timeout": timeout.as_secs_f64(), "cache": cache,
            }),
            Self::Dummy(answers) => json!({"kind": "dummy", "answers": answers}),
        }
    }
}

/// Builds the Python LM object.
pub(crate) fn make_lm(
    py: rag_python::pyo3::Python<'_>,
    cfg: &LmConfig,
) -> rag_core::Result<rag_python::pyo3::Py<rag_python::pyo3::PyAny>> {
    use rag_python::PyResultExt;
    use rag_python::pyo3::prelude::*;
    let spec = rag_python::convert::json_to_py(py, &cfg.spec())?;
    Ok(crate::runtime::ops(py)?.getattr("make_lm").and_then(|f| f.call1((spec,))).py_context(py)?.unbind())
}
