//! DSPy modules driven from Rust with typed results, and user programs loaded from files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rag_core::{RagError, Result, Retriever};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::PyDict;
use serde::Serialize;

use crate::runtime::lm::{LmConfig, make_lm};
use crate::runtime::retriever::RustRetriever;
use crate::runtime::{classify, ops};

/// A passage in a typed result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassageRef {
    /// Chunk id (empty if the passage did not come from this retriever).
    pub id: String,
    /// Parent document id.
    pub doc_id: String,
    /// Retrieval score.
    pub score: f32,
    /// Text.
    pub text: String,
}

/// One retrieval hop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hop {
    /// The search query used.
    pub query: String,
    /// What it retrieved.
    pub passages: Vec<PassageRef>,
}

/// The result of [`BasicRag`] / [`MultiHopRag`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RagAnswer {
    /// The answer.
    pub answer: String,
    /// The model's reasoning.
    pub reasoning: Option<String>,
    /// Hops, in order (one for BasicRag).
    pub hops: Vec<Hop>,
    /// The de-duplicated context the answer was generated from.
    pub passages: Vec<PassageRef>,
}

/// A DSPy module + LM + Rust retriever, runnable from Rust.
pub(crate) struct Bound3 {
    pub(crate) module: Arc<Py<PyAny>>,
    pub(crate) lm: Arc<Py<PyAny>>,
    pub(crate) rm: Arc<Py<RustRetriever>>,
}

impl Bound3 {
    pub(crate) async fn new(
        retriever: Arc<dyn Retriever>,
        lm: LmConfig,
        default_k: usize,
        make: impl for<'py> FnOnce(
            Python<'py>,
            &rag_python::pyo3::Bound<'py, rag_python::pyo3::types::PyModule>,
        ) -> Result<rag_python::pyo3::Bound<'py, PyAny>>
        + Send
        + 'static,
    ) -> Result<Self> {
        let rm = RustRetriever::new(retriever, default_k)?;
        let (module, lm, rm) = rag_python::runtime()?
            .run(move |py| {
                let ops = ops(py)?;
                let module = make(py, &ops)?.unbind();
                let lm = make_lm(py, &lm)?;
                let rm = Py::new(py, rm).py_context(py)?;
                Ok((module, lm, rm))
            })
            .await?;
        Ok(Self { module: Arc::new(module), lm: Arc::new(lm), rm: Arc::new(rm) })
    }

    async fn run(&self, inputs: BTreeMap<String, String>) -> Result<(Py<PyAny>, Arc<Py<RustRetriever>>)> {
        let (module, lm, rm) = (self.module.clone(), self.lm.clone(), self.rm.clone());
        let rm2 = rm.clone();
        let pred = rag_python::runtime()?
            .run(move |py| {
                let kw = PyDict::new(py);
                for (k, v) in &inputs {
                    kw.set_item(k, v).py_context(py)?;
                }
                Ok(ops(py)?
                    .getattr("run_module")
                    .and_then(|f| f.call1((module.bind(py), lm.bind(py), rm.bind(py), kw)))
                    .py_context(py)?
                    .unbind())
            })
            .await
            .map_err(classify)?;
        Ok((pred, rm2))
    }

    pub(crate) async fn answer(&self, question: &str) -> Result<RagAnswer> {
        let (pred, rm) = self.run(BTreeMap::from([("question".to_owned(), question.to_owned())])).await?;
        rag_python::runtime()?
            .run(move |py| {
                let pred = pred.bind(py);
                let rm = rm.get();
                let refs = |texts: Vec<String>| -> Vec<PassageRef> {
                    texts
                        .into_iter()
                        .map(|t| match rm.lookup(&t) {
                            Some(p) => PassageRef { id: p.id, doc_id: p.doc_id, score: p.score, text: t },
                            None => PassageRef { id: String::new(), doc_id: String::new(), score: 0.0, text: t },
                        })
                        .collect()
                };
                let answer: String = pred.getattr("answer").and_then(|a| a.str()).map(|s| s.to_string()).py_context(py)?;
                let reasoning = pred
                    .call_method1("get", ("reasoning",))
                    .ok()
                    .filter(|r| !r.is_none())
                    .and_then(|r| r.str().ok().map(|s| s.to_string()));
                let hops_py = pred.getattr("hops").py_context(py)?;
                let mut hops = Vec::new();
                for h in hops_py.try_iter().py_context(py)? {
                    let h = h.py_context(py)?;
                    let query: String = h.get_item("query").and_then(|q| q.str()).map(|s| s.to_string()).py_context(py)?;
                    let passages: Vec<String> = h.get_item("passages").and_then(|p| p.extract()).py_context(py)?;
                    hops.push(crate::Hop { query, passages: refs(passages) });
                }
                let passages: Vec<String> = pred.getattr("passages").and_then(|p| p.extract()).py_context(py)?;
                Ok(RagAnswer { answer, reasoning, hops, passages: refs(passages) })
            })
            .await
    }
}

/// Retrieve `k` passages through a Rust retriever, then ChainOfThought.
pub struct BasicRag(Bound3);

impl BasicRag {
    /// `k` passages a question; `lm` answers.
    pub async fn new(retriever: Arc<dyn Retriever>, lm: LmConfig, k: usize) -> Result<Self> {
        Ok(Self(
            Bound3::new(retriever, lm, k, move |py, ops| ops.getattr("BasicRag").and_then(|c| c.call1((k,))).py_context(py))
                .await?,
        ))
    }

    /// Answers `question`.
    pub async fn answer(&self, question: &str) -> Result<RagAnswer> {
        self.0.answer(question).await
    }

    /// `(query, k)` pairs the Rust retriever received.
    pub fn retriever_calls(&self) -> Vec<(String, usize)> {
        self.0.rm.get().calls()
    }
}

/// Up to `max_hops` hops of (generate a search query from the context so far, retrieve `k`
/// through Rust, de-duplicate), then ChainOfThought.
pub struct MultiHopRag(Bound3);

impl MultiHopRag {
    /// `max_hops` hops of `k` passages.
    pub async fn new(retriever: Arc<dyn Retriever>, lm: LmConfig, max_hops: usize, k: usize) -> Result<Self> {
        if max_hops == 0 {
            return Err(RagError::invalid_input("max_hops", "needs at least one hop"));
        }
        Ok(Self(
            Bound3::new(retriever, lm, k, move |py, ops| {
                ops.getattr("MultiHopRag").and_then(|c| c.call1((max_hops, k))).py_context(py)
            })
            .await?,
        ))
    }

    /// Answers `question`.
    pub async fn answer(&self, question: &str) -> Result<RagAnswer> {
        self.0.answer(question).await
    }

    /// `(query, k)` pairs the Rust retriever received.
    pub fn retriever_calls(&self) -> Vec<(String, usize)> {
        self.0.rm.get().calls()
    }
}

/// A user's DSPy program (a `dspy.Module` subclass in a `.py` file) with a Rust retriever
/// injected as its `rm`.
pub struct DspyProgram {
    path: String,
    class_name: String,
    kwargs: serde_json::Value,
    lm: LmConfig,
    retriever: Option<(Arc<dyn Retriever>, usize)>,
    bound: Option<Bound3>,
}

impl DspyProgram {
    /// Names the program: `class_name` in the file at `path`. Call [`DspyProgram::with_lm`],
    /// [`DspyProgram::with_retriever`], then [`DspyProgram::load`].
    pub fn from_file(path: impl AsRef<Path>, class_name: &str) -> Result<Self> {
        let p = path.as_ref();
        if !p.is_file() {
            return Err(RagError::not_found(format!("DSPy program file {}", p.display()), Some("give the path of a .py file")));
        }
        Ok(Self {
            path: p.display().to_string(),
            class_name: class_name.to_owned(),
            kwargs: serde_json::json!({}),
            lm: LmConfig::Dummy(Vec::new()),
            retriever: None,
            bound: None,
        })
    }

    /// Keyword arguments for the class constructor.
    pub fn with_args(mut self, kwargs: serde_json::Value) -> Self {
        self.kwargs = kwargs;
        self
    }

    /// The LM the program runs with.
    pub fn with_lm(mut self, lm: LmConfig) -> Self {
        self.lm = lm;
        self
    }

    /// The Rust retriever `dspy.Retrieve` uses inside the program (`default_k` when none is given).
    pub fn with_retriever(mut self, retriever: Arc<dyn Retriever>, default_k: usize) -> Self {
        self.retriever = Some((retriever, default_k));
        self
    }

    /// Imports the file and instantiates the class.
    pub async fn load(mut self) -> Result<Self> {
        let (path, class, kwargs) = (self.path.clone(), self.class_name.clone(), self.kwargs.clone());
        let retriever = self
            .retriever
            .clone()
            .ok_or_else(|| RagError::config("DspyProgram needs a retriever (with_retriever) before load"))?;
        let bound = Bound3::new(retriever.0, self.lm.clone(), retriever.1, move |py, ops| {
            let kw = rag_python::convert::json_to_py(py, &kwargs)?;
            ops.getattr("load_program").and_then(|f| f.call1((&path, &class, kw))).py_context(py)
        })
        .await?;
        self.bound = Some(bound);
        Ok(self)
    }

    /// Runs the program on `inputs`; returns the prediction's fields as JSON values.
    pub async fn run(&self, inputs: BTreeMap<String, String>) -> Result<BTreeMap<String, serde_json::Value>> {
        let bound = self.bound.as_ref().ok_or_else(|| RagError::config("call DspyProgram::load before run"))?;
        let (pred, _) = bound.run(inputs).await?;
        let json = rag_python::runtime()?
            .run(move |py| {
                let fields = ops(py)?.getattr("prediction_fields").and_then(|f| f.call1((pred.bind(py),))).py_context(py)?;
                let s: String = rag_python::import(py, "json")?
                    .getattr("dumps")
                    .and_then(|d| d.call1((fields,)))
                    .and_then(|s| s.extract())
                    .py_context(py)?;
                Ok(s)
            })
            .await?;
        serde_json::from_str(&json).map_err(|e| RagError::json("the program's output", e))
    }

    /// `(query, k)` pairs the Rust retriever received.
    pub fn retriever_calls(&self) -> Vec<(String, usize)> {
        self.bound.as_ref().map(|b| b.rm.get().calls()).unwrap_or_default()
    }
}
