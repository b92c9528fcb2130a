//! [`RustRetriever`]: any Rust [`Retriever`] as a DSPy retrieval model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rag_core::{Filter, RetrievalQuery, Retriever, ScoredChunk};
use rag_python::pyo3::exceptions::{PyRuntimeError, PyTypeError};
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyList, PyString};

/// One retrieved passage as DSPy sees it: `long_text` (what `dspy.Retrieve` keeps) plus the
/// chunk id, document id and score.
#[pyclass(frozen, get_all)]
#[derive(Debug, Clone)]
pub struct Passage {
    /// The passage text (`dspy.Retrieve` reads this).
    pub long_text: String,
    /// Chunk id.
    pub id: String,
    /// Parent document id.
    pub doc_id: String,
    /// Retrieval score (higher is better).
    pub score: f32,
}

#[pymethods]
impl Passage {
    fn __repr__(&self) -> String {
        format!("Passage(id={:?}, doc_id={:?}, score={:.4})", self.id, self.doc_id, self.score)
    }
}

impl From<&ScoredChunk> for Passage {
    fn from(h: &ScoredChunk) -> Self {
        Self { long_text: h.chunk.text.clone(), id: h.chunk.id.clone(), doc_id: h.chunk.doc_id.clone(), score: h.score }
    }
}

/// A Python-callable retrieval model backed by a Rust [`Retriever`]. Use it as
/// `dspy.configure(rm=retriever)` or `dspy.context(rm=retriever)`; then `dspy.Retrieve(k)(query)`
/// in any DSPy program retrieves through Rust.
#[pyclass(frozen)]
pub struct RustRetriever {
    inner: Arc<dyn Retriever>,
    handle: tokio::runtime::Handle,
    default_k: usize,
    filter: Option<Filter>,
    /// long_text -> passage, so modules can recover ids and scores after `dspy.Retrieve`.
    registry: Mutex<HashMap<String, Passage>>,
    calls: Mutex<Vec<(String, usize)>>,
}

fn fallback_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().ok()).as_ref()
}

impl RustRetriever {
    /// Wraps `inner`; `default_k` applies when DSPy passes no `k`. Retrieval futures run on the
    /// current tokio runtime (or a small dedicated one when there is none).
    pub fn new(inner: Arc<dyn Retriever>, default_k: usize) -> rag_core::Result<Self> {
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(h) => h,
            Err(_) => fallback_runtime()
                .map(|r| r.handle().clone())
                .ok_or_else(|| rag_core::RagError::internal("cannot start a tokio runtime"))?,
        };
        Ok(Self {
            inner,
            handle,
            default_k: default_k.max(1),
            filter: None,
            registry: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Applies `filter` to every retrieval.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The passage a `long_text` came from, if this retriever returned it.
    pub fn lookup(&self, long_text: &str) -> Option<Passage> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).get(long_text).cloned()
    }

    /// Every `(query, k)` DSPy asked for, in order.
    pub fn calls(&self) -> Vec<(String, usize)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn retrieve_one(&self, py: Python<'_>, query: String, k: usize) -> PyResult<Vec<Passage>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push((query.clone(), k));
        let q = RetrievalQuery { text: query, k, filter: self.filter.clone() };
        let inner = self.inner.clone();
        let handle = self.handle.clone();
        // Release the GIL while Rust retrieves: the retriever may itself call into Python
        // (a sentence-transformers query embedding, a Chroma query).
        let hits = py
            .detach(move || handle.block_on(inner.retrieve(q)))
            .map_err(|e| PyRuntimeError::new_err(format!("Rust retriever failed: {e}")))?;
        let passages: Vec<Passage> = hits.iter().map(Passage::from).collect();
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if reg.len() > 100_000 {
            reg.clear();
        }
        for p in &passages {
            reg.insert(p.long_text.clone(), p.clone());
        }
        Ok(passages)
    }
}

#[pymethods]
impl RustRetriever {
    /// `rm(query, k=None)`: a list of passages. A list of queries returns their passages merged,
    /// best score first, without duplicates (DSPy's multi-query convention).
    #[pyo3(signature = (query, k=None, **_kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        query: Bound<'_, PyAny>,
        k: Option<usize>,
        _kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Passage>> {
        let k = k.unwrap_or(self.default_k);
        if let Ok(s) = query.cast::<PyString>() {
            return self.retrieve_one(py, s.to_string(), k);
        }
        if let Ok(list) = query.cast::<PyList>() {
            let mut all: Vec<Passage> = Vec::new();
            for q in list.iter() {
                for p in self.retrieve_one(py, q.extract::<String>()?, k)? {
                    if !all.iter().any(|x| x.id == p.id) {
                        all.push(p);
                    }
                }
            }
            all.sort_by(|a, b| b.score.total_cmp(&a.score));
            all.truncate(k);
            return Ok(all);
        }
        Err(PyTypeError::new_err("the query must be a str or a list of str"))
    }

    /// The document id of a passage this retriever returned (`None` for any other text): how
    /// the optimiser's metrics map cited passages to gold documents.
    #[pyo3(name = "doc_id")]
    fn py_doc_id(&self, text: &str) -> Option<String> {
        self.lookup(text).map(|p| p.doc_id)
    }

    /// `(query, k)` pairs received so far.
    #[pyo3(name = "calls")]
    fn py_calls(&self) -> Vec<(String, usize)> {
        self.calls()
    }
}
