//! DSPy from Rust, and Rust retrieval inside DSPy.
//!
//! * [`DspyGenerator`]: `dspy.ChainOfThought` over a signature (default
//!   `"context, question -> answer"`) as a [`rag_core::Generator`]; passages are numbered so answers can
//!   cite them; the LM is per generator and every call runs under `dspy.context(lm=...)`, so two
//!   pipelines with different LMs run at once; answers can stream (`dspy.streamify`).
//! * [`RustRetriever`]: a `#[pyclass]` holding an `Arc<dyn Retriever>`, usable as
//!   `dspy.configure(rm=...)` / `dspy.context(rm=...)` so that `dspy.Retrieve(k)` in any DSPy
//!   program retrieves through Rust (hybrid search, filters, reranking included).
//! * [`BasicRag`], [`MultiHopRag`]: DSPy modules whose retrieval is a Rust retriever, driven from
//!   Rust with a typed [`RagAnswer`].
//! * [`DspyProgram`]: a user's DSPy program loaded from a `.py` file, run with the Rust retriever
//!   injected.
//! * [`optimize`] (`rag optimize`): DSPy optimisers (BootstrapFewShot, random search,
//!   LabeledFewShot, MIPROv2) compiling a program whose retrieval is Rust, scored by a [`Metric`]
//!   before and after, saved in DSPy's JSON format; [`CompiledProgram`] loads and runs it.
//! * [`GeneratorSettings`]: the `[generator]` table (always built); everything else needs the
//!   `runtime` feature (Python through PyO3).
//! * [`LocalModel`]: llama.cpp's server inside the embedded Python (`xllamacpp`), from a local
//!   GGUF file, for DSPy to call offline.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod settings;
pub use settings::{GeneratorSettings, LOCAL_PARALLEL};

#[cfg(feature = "runtime")]
mod runtime;
#[cfg(feature = "runtime")]
pub use runtime::*;
