//! A local language model: llama.cpp's OpenAI-compatible server started inside the embedded
//! Python through the `xllamacpp` wheel (a prebuilt CPU build), from a GGUF file that `make
//! setup` assembles and verifies. DSPy then talks to it like any OpenAI-compatible server.

use std::path::PathBuf;

use rag_core::{RagError, Result};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;

use crate::runtime::ops;

/// The GGUF model `make setup` assembles (Qwen2.5-Coder-0.5B-Instruct Q4_K_M): `$RAG_LOCAL_MODEL`,
/// else `$XDG_CACHE_HOME/rag/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf` (`~/.cache/...`).
pub fn default_local_model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAG_LOCAL_MODEL") {
        return Some(PathBuf::from(p));
    }
    Some(rag_python::venv::setup_cache_dir()?.join("models").join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
}

/// A local model to serve in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    /// The GGUF file.
    pub path: PathBuf,
    /// Context window in tokens.
    pub context: usize,
    /// CPU threads for generation.
    pub threads: usize,
    /// Requests served at once in parallel slots (continuous batching), each with `context`.
    pub parallel: usize,
}

impl LocalModel {
    /// `path` with a 4,096-token context, 2 threads and [`crate::LOCAL_PARALLEL`] slots.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), context: 4096, threads: 2, parallel: crate::LOCAL_PARALLEL }
    }

    /// Starts the server (once per model, context, threads and slots in a process; later calls
    /// return the running one) and returns its base URL, `http://127.0.0.1:PORT`.
    pub async fn start(&self) -> Result<String> {
        if !self.path.is_file() {
            return Err(RagError::not_found(
                format!("local model {}", self.path.display()),
                Some("run `make setup` (it assembles and verifies the GGUF), or set generator.local_model"),
            ));
        }
        let (path, context, threads, parallel) = (self.path.display().to_string(), self.context, self.threads, self.parallel);
        rag_python::runtime()?
            .run(move |py| {
                // A clear message when the wheel is missing, rather than a ModuleNotFoundError.
                rag_python::import(py, "xllamacpp")?;
                let url =
                    ops(py)?.getattr("start_local").and_then(|f| f.call1((path, context, threads, parallel))).py_context(py)?;
                url.extract::<String>().py_context(py)
            })
            .await
    }
}
