//! The cross-encoder itself (feature `runtime`): sentence-transformers through PyO3.

use crate::CrossEncoderSettings;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use rag_core::{RagError, Reranker, Result, ScoredChunk};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyList, PyTuple};

/// Builder for [`CrossEncoderReranker`].
#[derive(Debug, Clone)]
pub struct CrossEncoderRerankerBuilder {
    model: String,
    batch_size: usize,
    max_length: usize,
    device: String,
}

impl CrossEncoderRerankerBuilder {
    /// Pairs per `predict` batch (default 32).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Max tokens of a (query, passage) pair (default 512).
    pub fn max_length(mut self, n: usize) -> Self {
        self.max_length = n.max(8);
        self
    }
    /// torch device.
    pub fn device(mut self, d: impl Into<String>) -> Self {
        self.device = d.into();
        self
    }

    /// Loads the model.
    pub async fn build(self) -> Result<CrossEncoderReranker> {
        let looks_like_path = self.model.starts_with('/') || self.model.starts_with('.');
        if looks_like_path && !Path::new(&self.model).is_dir() {
            return Err(RagError::not_found(
                format!("cross-encoder model directory {}", self.model),
                Some("give a local CrossEncoder directory"),
            ));
        }
        let cfg = self.clone();
        let model = rag_python::runtime()?
            .run(move |py| {
                let st = rag_python::import(py, "sentence_transformers")?;
                let kw = PyDict::new(py);
                kw.set_item("max_length", cfg.max_length).py_context(py)?;
                kw.set_item("device", &cfg.device).py_context(py)?;
                Ok(st.getattr("CrossEncoder").and_then(|c| c.call((&cfg.model,), Some(&kw))).py_context(py)?.unbind())
            })
            .await?;
        let name = Path::new(&self.model).file_name().map_or(self.model.clone(), |n| n.to_string_lossy().into_owned());
        Ok(CrossEncoderReranker { model: Arc::new(model), cfg: self, name })
    }
}

/// Scores (query, passage) pairs with a cross-encoder.
#[derive(Clone)]
pub struct CrossEncoderReranker {
    model: Arc<Py<PyAny>>,
    cfg: CrossEncoderRerankerBuilder,
    name: String,
}

impl std::fmt::Debug for CrossEncoderReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoderReranker").field("cfg", &self.cfg).finish()
    }
}

impl CrossEncoderReranker {
    /// A builder for the model at `model` (a local directory or a cached name).
    pub fn builder(model: impl Into<String>) -> CrossEncoderRerankerBuilder {
        CrossEncoderRerankerBuilder { model: model.into(), batch_size: 32, max_length: 512, device: "cpu".into() }
    }

    /// Scores every pair in one `predict` call (batched inside by `batch_size`).
    async fn score(&self, pairs: Vec<(String, String)>) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model.clone();
        let (batch_size, n) = (self.cfg.batch_size, pairs.len());
        let scores: Vec<f32> = rag_python::runtime()?
            .run(move |py| {
                let list = PyList::empty(py);
                for (q, p) in &pairs {
                    list.append(PyTuple::new(py, [q.as_str(), p.as_str()]).py_context(py)?).py_context(py)?;
                }
                let kw = PyDict::new(py);
                kw.set_item("batch_size", batch_size).py_context(py)?;
                kw.set_item("show_progress_bar", false).py_context(py)?;
                kw.set_item("convert_to_numpy", true).py_context(py)?;
                let out = model.bind(py).call_method("predict", (list,), Some(&kw)).py_context(py)?;
                // One score per pair (a 1-label model); a multi-label model would give rows.
                let flat = out.call_method1("reshape", (-1,)).py_context(py)?;
                rag_python::convert::vector_from_py(py, &flat)
            })
            .await?;
        if scores.len() != n {
            return Err(RagError::permanent(
                "cross-encoder",
                format!("{} scores for {n} pairs: the model must have one output label", scores.len()),
            ));
        }
        Ok(scores)
    }
}

fn top_k(mut candidates: Vec<ScoredChunk>, scores: &[f32], k: usize) -> Vec<ScoredChunk> {
    for (c, s) in candidates.iter_mut().zip(scores) {
        c.score = *s;
    }
    // Stable: equal scores keep first-stage order.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(k);
    candidates
}

#[async_trait]
impl Reranker for CrossEncoderReranker {
    async fn rerank(&self, query: String, candidates: Vec<ScoredChunk>, top_k_n: usize) -> Result<Vec<ScoredChunk>> {
        let pairs = candidates.iter().map(|c| (query.clone(), c.chunk.text.clone())).collect();
        let scores = self.score(pairs).await?;
        Ok(top_k(candidates, &scores, top_k_n))
    }

    async fn rerank_batch(&self, batch: Vec<(String, Vec<ScoredChunk>)>, top_k_n: usize) -> Result<Vec<Vec<ScoredChunk>>> {
        let pairs: Vec<(String, String)> =
            batch.iter().flat_map(|(q, cs)| cs.iter().map(move |c| (q.clone(), c.chunk.text.clone()))).collect();
        let scores = self.score(pairs).await?;
        let mut offset = 0;
        Ok(batch
            .into_iter()
            .map(|(_, cs)| {
                let n = cs.len();
                let out = top_k(cs, &scores[offset..offset + n], top_k_n);
                offset += n;
                out
            })
            .collect())
    }

    fn model_id(&self) -> String {
        format!("cross-encoder/{}", self.name)
    }
}

impl CrossEncoderReranker {
    /// The reranker `settings` describe (`[rerank.cross-encoder]`), coalescing concurrent
    /// queries' reranks into shared model calls when `batch_queries` is on: the one way the
    /// configuration builds it. Without a model it is an error saying so.
    pub async fn from_settings(settings: &CrossEncoderSettings) -> Result<Arc<dyn Reranker>> {
        let model = settings.model.clone().ok_or_else(|| {
            RagError::config(
                "reranking needs rerank.cross-encoder.model: a cross-encoder directory (none ships offline; see README, Reranking)",
            )
        })?;
        let r: Arc<dyn Reranker> =
            Arc::new(Self::builder(model).batch_size(settings.batch_size).max_length(settings.max_length).build().await?);
        if settings.batch_queries {
            let wait = std::time::Duration::from_millis(settings.batch_wait_ms);
            return Ok(Arc::new(crate::BatchingReranker::new(r, settings.batch_pairs, wait)?));
        }
        Ok(r)
    }
}
