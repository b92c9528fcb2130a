//! `rag_rs._native`: the rag pipeline as a CPython extension module, built by maturin into the
//! `rag_rs` wheel (crates/rag-py/pyproject.toml). The Python half of the package
//! (`python/rag_rs`) turns what this returns into typed objects and adds the framework adapters.
//!
//! Every call that does pipeline work releases the GIL for its whole duration
//! ([`Python::detach`]) and runs on this module's Tokio runtime, so Python threads calling
//! `query` at once run in parallel; backends that are Python themselves (ChromaDB, DSPy) take the
//! GIL back only for their own calls, on rag-python's worker threads. Inputs and results cross
//! the boundary as JSON text: one parse per call, no per-field FFI.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use rag::assemble::{Needs, PipelineFactory};
use rag::core::{Document, Filter, GenerationEvent, RagError, StreamSource};
use rag::{FileSource, IngestOptions, QueryOptions, RagConfig, RagPipeline, RetrievalMode};
use serde::Deserialize;

/// The module's Tokio runtime: one per process, started on first use.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("rag-rs")
                .build()
                .map_err(|e| format!("rag_rs could not start its async runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(e.clone()))
}

/// The `rag_rs.errors` class an error is raised as: the caller can catch by kind (`except
/// rag_rs.NotFoundError`) or by the standard class each also derives from (`KeyError`, ...).
fn error_class(err: &RagError) -> &'static str {
    match err {
        RagError::Config { .. } => "ConfigError",
        RagError::InvalidInput { .. } | RagError::Json { .. } | RagError::DimensionMismatch { .. } => "InvalidInputError",
        RagError::NotFound { .. } => "NotFoundError",
        RagError::EmptyCollection { .. } => "EmptyCollectionError",
        RagError::Transient { .. } | RagError::Remote { .. } => "TransientError",
        RagError::Timeout { .. } => "RagTimeoutError",
        RagError::Busy { .. } => "BusyError",
        RagError::PythonPackageMissing { .. } => "MissingPackageError",
        RagError::Io { .. } => "RagIOError",
        RagError::Python { .. } => "BackendError",
        _ => "RagError",
    }
}

/// A [`RagError`] as the Python exception of its kind (`rag_rs.errors`), its message the
/// error's own text.
fn to_py(err: RagError) -> PyErr {
    let message = err.to_string();
    let class = error_class(&err);
    Python::attach(|py| {
        let raised = py
            .import("rag_rs.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from))
            .map(|ty| PyErr::from_type(ty, (message.clone(),)));
        raised.unwrap_or_else(|e| e)
    })
}

/// Runs `f` (pipeline work) with the GIL released, on the module's runtime.
fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Future<Output = rag::core::Result<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    py.detach(|| rt.block_on(f)).map_err(to_py)
}

fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(format!("rag_rs could not encode a result: {e}")))
}

/// Query options as the Python layer sends them (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PyQueryOptions {
    k: Option<usize>,
    mode: Option<String>,
    rerank: Option<bool>,
    filter: Option<serde_json::Value>,
}

impl PyQueryOptions {
    fn parse(json: &str) -> rag::core::Result<QueryOptions> {
        let raw: PyQueryOptions =
            serde_json::from_str(json).map_err(|e| RagError::invalid_input("query options", e.to_string()))?;
        let mut opts = QueryOptions::new();
        if let Some(k) = raw.k {
            opts = opts.k(k);
        }
        if let Some(mode) = raw.mode {
            let mode: RetrievalMode = mode.parse().map_err(|e: RagError| RagError::invalid_input("mode", e.to_string()))?;
            opts = opts.mode(mode);
        }
        if let Some(yes) = raw.rerank {
            opts = opts.rerank(yes);
        }
        if let Some(filter) = raw.filter {
            let filter: Filter = serde_json::from_value(filter).map_err(|e| {
                RagError::invalid_input("filter", format!("{e} (the form is {{\"eq\": [\"field\", value]}}, {{\"and\": [...]}})"))
            })?;
            opts = opts.filter(filter);
        }
        Ok(opts)
    }
}

/// Opens the pipeline a configuration describes: `config` (a rag.toml; `None`: ./rag.toml if
/// present, else the defaults), the `RAG_*` environment, then `settings` (dotted keys, as
/// `rag --set`), `data_dir` and `collection`.
#[pyfunction]
#[pyo3(signature = (config=None, data_dir=None, collection=None, settings=Vec::new()))]
fn open(
    py: Python<'_>,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    collection: Option<String>,
    settings: Vec<(String, String)>,
) -> PyResult<Pipeline> {
    let mut cfg = RagConfig::load(config.as_deref()).map_err(to_py)?;
    for (key, value) in &settings {
        cfg.set(key, value).map_err(to_py)?;
    }
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(c) = collection {
        cfg.collection = c;
    }
    cfg.validate().map_err(to_py)?;
    let factory = factory(cfg.clone()).map_err(to_py)?;
    let collection = cfg.collection.clone();
    let pipeline = run(py, async move { factory.pipeline(&collection).await })?;
    Ok(Pipeline { inner: Arc::new(pipeline) })
}

/// The process's pipeline factory for a configuration (its collection aside): two `Rag`s over
/// collections of one data directory share the models and the embedding cache, which one
/// process may open only once.
fn factory(cfg: RagConfig) -> rag::core::Result<Arc<PipelineFactory>> {
    static FACTORIES: OnceLock<Mutex<HashMap<String, Arc<PipelineFactory>>>> = OnceLock::new();
    let key = {
        let mut shared = cfg.clone();
        shared.collection = String::new();
        serde_json::to_string(&shared).map_err(|e| RagError::internal_from("the configuration as a key", e))?
    };
    let mut factories = FACTORIES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = factories.get(&key) {
        return Ok(f.clone());
    }
    let f = Arc::new(PipelineFactory::new(cfg, Needs::All)?);
    factories.insert(key, f.clone());
    Ok(f)
}

/// An open pipeline (`rag_rs.Rag` wraps it).
#[pyclass(frozen, module = "rag_rs._native")]
struct Pipeline {
    inner: Arc<RagPipeline>,
}

#[pymethods]
impl Pipeline {
    /// The collection's name.
    #[getter]
    fn collection(&self) -> String {
        self.inner.collection().to_owned()
    }

    /// Ingests files and folders (every format `rag ingest` reads); the report as JSON.
    #[pyo3(signature = (paths, prune=false))]
    fn ingest_paths(&self, py: Python<'_>, paths: Vec<PathBuf>, prune: bool) -> PyResult<String> {
        let p = self.inner.clone();
        let report = run(py, async move { p.ingest(FileSource::new(paths), IngestOptions::new().prune(prune)).await })?;
        to_json(&report)
    }

    /// Starts an ingest of documents pushed in batches (`IngestRun.push`); pruning removes the
    /// documents of `origin` that the run did not yield.
    #[pyo3(signature = (origin, prune=false))]
    fn begin_ingest(&self, origin: String, prune: bool) -> PyResult<IngestRun> {
        // Bounded: a producer faster than the embedder waits instead of filling memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<rag::core::Result<Document>>(256);
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|d| (d, rx)) }).boxed();
        let source = StreamSource::new(stream, origin);
        let p = self.inner.clone();
        let task = runtime()?.spawn(async move { p.ingest(source, IngestOptions::new().prune(prune)).await });
        Ok(IngestRun { sender: Mutex::new(Some(tx)), task: Mutex::new(Some(task)) })
    }

    /// Retrieves, packs and answers; the result as JSON.
    fn query(&self, py: Python<'_>, question: String, options: &str) -> PyResult<String> {
        let opts = PyQueryOptions::parse(options).map_err(to_py)?;
        let p = self.inner.clone();
        to_json(&run(py, async move { p.query(&question, &opts).await })?)
    }

    /// Retrieves only; the hits as JSON.
    fn search(&self, py: Python<'_>, question: String, options: &str) -> PyResult<String> {
        let opts = PyQueryOptions::parse(options).map_err(to_py)?;
        let p = self.inner.clone();
        to_json(&run(py, async move { p.search(&question, &opts).await })?)
    }

    /// Retrieves, then streams the answer: returns once retrieval is done (its errors raise
    /// here), with the citations and hits in `head`; the tokens come from iterating.
    fn stream(&self, py: Python<'_>, question: String, options: &str) -> PyResult<AnswerStream> {
        let opts = PyQueryOptions::parse(options).map_err(to_py)?;
        let p = self.inner.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<rag::core::Result<GenerationEvent>>(64);
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        runtime()?.spawn(async move {
            match p.stream_query(&question, &opts).await {
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                }
                Ok((head, mut events)) => {
                    if head_tx.send(Ok(head)).is_err() {
                        return;
                    }
                    while let Some(event) = events.next().await {
                        // The Python side dropped the stream: stop generating.
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let head = run(py, async move {
            head_rx.await.unwrap_or_else(|_| Err(RagError::internal("the answer stream ended before retrieval")))
        })?;
        Ok(AnswerStream { head: to_json(&head)?, events: Mutex::new(rx), last: Mutex::new(None), tokens: AtomicBool::new(false) })
    }

    /// Deletes a document (every chunk of it); an unknown id raises `NotFoundError`.
    fn delete(&self, py: Python<'_>, doc_id: String) -> PyResult<()> {
        let p = self.inner.clone();
        run(py, async move { p.delete_document(&doc_id).await })
    }

    /// Counts and backends, as JSON.
    fn stats(&self, py: Python<'_>) -> PyResult<String> {
        let p = self.inner.clone();
        to_json(&run(py, async move { p.stats().await })?)
    }
}

/// An ingest in progress: documents go in by `push`, `finish` waits for the report.
#[pyclass(frozen, module = "rag_rs._native")]
struct IngestRun {
    sender: Mutex<Option<tokio::sync::mpsc::Sender<rag::core::Result<Document>>>>,
    task: Mutex<Option<tokio::task::JoinHandle<rag::core::Result<rag::IngestReport>>>>,
}

impl IngestRun {
    fn sender(&self) -> Option<tokio::sync::mpsc::Sender<rag::core::Result<Document>>> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[pymethods]
impl IngestRun {
    /// Adds documents: a JSON array of `{"id", "text", "metadata"}`. Returns false when the
    /// ingest already stopped (its error comes from `finish`).
    fn push(&self, py: Python<'_>, documents: &str) -> PyResult<bool> {
        let docs: Vec<Document> = serde_json::from_str(documents)
            .map_err(|e| to_py(RagError::invalid_input("documents", format!("{e}: each needs a string id and text"))))?;
        let Some(tx) = self.sender() else {
            return Err(to_py(RagError::invalid_input("ingest run", "it is finished: start a new one")));
        };
        Ok(py.detach(move || docs.into_iter().all(|d| tx.blocking_send(Ok(d)).is_ok())))
    }

    /// Stops the run with an error naming `reason` (what the caller could not read): documents
    /// already written stay, nothing is pruned.
    fn abort(&self, py: Python<'_>, reason: String) {
        if let Some(tx) = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take() {
            py.detach(move || {
                let _ = tx.blocking_send(Err(RagError::invalid_input("documents", reason)));
            });
        }
    }

    /// Ends the input and waits for the ingest; its report as JSON.
    fn finish(&self, py: Python<'_>) -> PyResult<String> {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(task) = task else {
            return Err(to_py(RagError::invalid_input("ingest run", "it is finished: start a new one")));
        };
        let report =
            run(py, async move { task.await.unwrap_or_else(|e| Err(RagError::internal_from("the ingest task stopped", e))) })?;
        to_json(&report)
    }
}

/// A streamed answer: iterate for the tokens; `head` holds the citations and hits.
#[pyclass(frozen, module = "rag_rs._native")]
struct AnswerStream {
    head: String,
    events: Mutex<tokio::sync::mpsc::Receiver<rag::core::Result<GenerationEvent>>>,
    last: Mutex<Option<String>>,
    /// Whether the generator streamed any token: one that does not (the extractive answer)
    /// has its whole answer yielded as one.
    tokens: AtomicBool,
}

#[pymethods]
impl AnswerStream {
    /// The query result without its answer (citations, hits, timings), as JSON.
    #[getter]
    fn head(&self) -> String {
        self.head.clone()
    }

    /// The final generation as JSON (answer, reasoning, generator) once the stream ended.
    #[getter]
    fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next token; `None` ends the iteration (pyo3 raises StopIteration).
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            let event = py.detach(|| self.events.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv());
            match event {
                None => return Ok(None),
                Some(Err(e)) => return Err(to_py(e)),
                Some(Ok(GenerationEvent::Token(t))) => {
                    self.tokens.store(true, Ordering::Relaxed);
                    return Ok(Some(t));
                }
                Some(Ok(GenerationEvent::Final(g))) => {
                    let json = to_json(&g)?;
                    *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(json);
                    if !self.tokens.swap(true, Ordering::Relaxed) && !g.answer.is_empty() {
                        return Ok(Some(g.answer));
                    }
                }
            }
        }
    }
}

/// The version of the Rust crates this module was built from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_class::<Pipeline>()?;
    m.add_class::<IngestRun>()?;
    m.add_class::<AnswerStream>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options_are_checked_by_name() {
        let o = PyQueryOptions::parse(r#"{"k": 3, "mode": "bm25", "rerank": false}"#).unwrap();
        assert_eq!((o.k, o.mode), (Some(3), Some(RetrievalMode::Bm25)));
        let err = PyQueryOptions::parse(r#"{"mode": "bm52"}"#).unwrap_err().to_string();
        assert!(err.contains("mode") && err.contains("bm52"), "{err}");
        let err = PyQueryOptions::parse(r#"{"kk": 3}"#).unwrap_err().to_string();
        assert!(err.contains("kk"), "{err}");
        let err = PyQueryOptions::parse(r#"{"filter": {"eq": ["topic"]}}"#).unwrap_err().to_string();
        assert!(err.contains("filter"), "{err}");
        let ok = PyQueryOptions::parse(r#"{"filter": {"and": [{"eq": ["a", "x"]}, {"gte": ["y", 2020]}]}}"#).unwrap();
        assert_eq!(ok.filter, Some(Filter::eq("a", "x").and(Filter::gte("y", 2020))));
    }

    #[test]
    fn errors_are_raised_by_kind() {
        assert_eq!(error_class(&RagError::config("x")), "ConfigError");
        assert_eq!(error_class(&RagError::invalid_input("a", "b")), "InvalidInputError");
        assert_eq!(error_class(&RagError::EmptyCollection { collection: "c".into() }), "EmptyCollectionError");
    }
}
