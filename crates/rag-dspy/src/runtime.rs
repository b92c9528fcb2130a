//! Everything that runs DSPy (feature `runtime`): the generator, the Rust retriever, the
//! modules, the optimiser, the local model.

mod generator;
mod lm;
mod local;
mod modules;
mod optimize;
mod retriever;

pub use generator::{DspyGenerator, DspyGeneratorBuilder};
pub use lm::LmConfig;
pub use local::{LocalModel, default_local_model};
pub use modules::{BasicRag, DspyProgram, Hop, MultiHopRag, PassageRef, RagAnswer};
pub use optimize::{
    CompiledProgram, Example, Metric, MetricFn, OptimizeOptions, OptimizeReport, Optimizer, ProgramSpec, optimize, read_examples,
    report_path,
};
pub use retriever::{Passage, RustRetriever};

use std::sync::OnceLock;

use rag_core::{RagError, Result};
use rag_python::PyResultExt;
use rag_python::classify::{ErrorKind, ErrorRule, ErrorRules, OPENAI_COMPATIBLE};
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::PyModule;
use rag_python::store::EmbeddedModule;

/// The embedded `rag_dspy.py` module, imported once (after pointing DSPy's disk cache at
/// `cache_dir` or a temp directory, so nothing writes to `~/.dspy_cache`).
pub(crate) fn ops(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    static OPS: EmbeddedModule = EmbeddedModule::new(c"rag_dspy", c"rag_dspy.py", include_str!("rag_dspy.py"));
    static CACHE_SET: OnceLock<()> = OnceLock::new();
    if CACHE_SET.get().is_some() {
        return OPS.bind(py);
    }
    let os = rag_python::import(py, "os")?;
    let environ = os.getattr("environ").py_context(py)?;
    let default_cache = std::env::temp_dir().join("rag-dspy-cache").display().to_string();
    environ.call_method1("setdefault", ("DSPY_CACHEDIR", default_cache)).py_context(py)?;
    let m = OPS.bind(py)?;
    let _ = CACHE_SET.set(());
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

/// LM failures by class: rate limits, timeouts, connection problems and 5xx are transient;
/// authentication and other 4xx are permanent ([`rag_python::classify::OPENAI_COMPATIBLE`]).
/// A reply DSPy cannot parse into the signature's fields is the LM's failure too, not rag's:
/// permanent (the same prompt gets the same reply), with what to change.
pub(crate) fn classify(e: RagError) -> RagError {
    const ERRORS: ErrorRules = ErrorRules { backend: "dspy LM", rules: OPENAI_COMPATIBLE };
    const UNPARSED: ErrorRules = ErrorRules {
        backend: "dspy LM",
        rules: &[ErrorRule::new(
            "dspy.utils.exceptions.AdapterParseError",
            ErrorKind::Permanent,
            "the LM's reply lacks the signature's output fields, most often because it was cut off: \
             raise generator.max_tokens, or use a model that follows DSPy's format",
        )],
    };
    UNPARSED.classify(ERRORS.classify(e, "generation"), "generation")
}
