//! DSPy from Rust, and Rust retrieval inside DSPy.
//!
//! * [`DspyGenerator`]: `dspy.ChainOfThought` over a signature (default
//!   `"context, question -> answer"`) as a [`Generator`]; passages are numbered so answers can
//!   cite them; the LM is per generator and every call runs under `dspy.context(lm=...)`, so two
//!   pipelines with different LMs run at once; answers can stream (`dspy.streamify`).
//! * [`RustRetriever`]: a `#[pyclass]` holding an `Arc<dyn Retriever>`, usable as
//!   `dspy.configure(rm=...)` / `dspy.context(rm=...)` so that `dspy.Retrieve(k)` in any DSPy
//!   program retrieves through Rust (hybrid search, filters, reranking included).
//! * [`BasicRag`], [`MultiHopRag`]: DSPy modules whose retrieval is a Rust retriever, driven from
//!   Rust with a typed [`RagAnswer`].
//! * [`DspyProgram`]: a user's DSPy program loaded from a `.py` file, run with the Rust retriever
//!   injected.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod generator;
mod lm;
mod modules;
mod retriever;

pub use generator::{DspyGenerator, DspyGeneratorBuilder};
pub use lm::LmConfig;
pub use modules::{BasicRag, DspyProgram, Hop, MultiHopRag, PassageRef, RagAnswer};
pub use retriever::{Passage, RustRetriever};

use std::sync::OnceLock;

use rag_core::{RagError, Result};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::PyModule;

/// The embedded `rag_dspy.py` module, imported once (after pointing DSPy's disk cache at
/// `cache_dir` or a temp directory, so nothing writes to `~/.dspy_cache`).
pub(crate) fn ops(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    static OPS: OnceLock<Py<PyModule>> = OnceLock::new();
    if let Some(m) = OPS.get() {
        return Ok(m.bind(py).clone());
    }
    let os = rag_python::import(py, "os")?;
    let environ = os.getattr("environ").py_context(py)?;
    let default_cache = std::env::temp_dir().join("rag-dspy-cache").display().to_string();
    environ.call_method1("setdefault", ("DSPY_CACHEDIR", default_cache)).py_context(py)?;
    let code =
        std::ffi::CString::new(include_str!("rag_dspy.py")).map_err(|_| RagError::Other("NUL in embedded source".into()))?;
    let m = PyModule::from_code(py, code.as_c_str(), c"rag_dspy.py", c"rag_dspy").py_context(py)?;
    let _ = OPS.set(m.clone().unbind());
    Ok(m)
}

/// Sets DSPy's cache directory (must run before the first DSPy call of the process).
pub async fn set_cache_dir(dir: std::path::PathBuf) -> Result<()> {
    rag_python::runtime()?
        .run(move |py| {
            let environ = rag_python::import(py, "os")?.getattr("environ").py_context(py)?;
            environ.call_method1("setdefault", ("DSPY_CACHEDIR", dir.display().to_string())).py_context(py)?;
            Ok(())
        })
        .await
}

/// LM failures: rate limits, timeouts, connection problems and 5xx are transient.
pub(crate) fn classify(e: RagError) -> RagError {
    match e {
        RagError::Python { ref exc_type, ref message, .. } => {
            let transient = ["RateLimit", "Timeout", "APIConnection", "InternalServerError", "ServiceUnavailable", "BadGateway"]
                .iter()
                .any(|t| exc_type.contains(t) || message.contains(t));
            let auth = exc_type.contains("Authentication") || exc_type.contains("PermissionDenied");
            if transient {
                RagError::transient("dspy LM", format!("{exc_type}: {}", first_line(message)))
            } else if auth {
                RagError::permanent("dspy LM", format!("{exc_type}: {} (check the API key)", first_line(message)))
            } else {
                e
            }
        }
        other => other,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
