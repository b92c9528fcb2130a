//! [`OnnxEmbedder`]: all-MiniLM-L6-v2 exported to ONNX (`make setup` runs
//! `python/tools/export_onnx.py`), run by ONNX Runtime from Rust with the model's own tokenizer:
//! no Python and no GIL on the hot path.
//!
//! On 2 cores ONNX Runtime gains from concurrent single-text calls, not from padded batches
//! (`../shared/notes/onnx-embedding.md`): so the embedder holds one session per core with one
//! intra-op thread each, and every text runs alone (no padding), the texts of a call spread over
//! the sessions. The runtime library is the venv's onnxruntime wheel's, loaded at run time.
//!
//! The default export is int8 with per-channel weights: about twice fp32's speed with vectors
//! within cosine 0.99 of fp32's and the same SciFact nDCG@10 (docs/benchmarks.md, "A quantised
//! embedder that keeps its quality").

use crate::settings::{OnnxPrecision, OnnxSettings};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use ort::session::Session;
use ort::value::Tensor;
use rag_core::{Embedder, RagError, Result};

/// The export file of a precision, and what the model id calls it.
trait ExportFile {
    fn file(self) -> &'static str;
    fn id_label(self) -> &'static str;
}

impl ExportFile for OnnxPrecision {
    fn file(self) -> &'static str {
        match self {
            Self::Fp32 => "model.onnx",
            Self::Int8 => "model-int8.onnx",
        }
    }
    /// The int8 recipe is part of the id: vectors of the earlier per-tensor export keyed the
    /// cache and each document's hash as "int8", so they are never taken for this one's.
    fn id_label(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Int8 => "int8 per-channel",
        }
    }
}

/// What `make setup`'s export writes into `source.sha256` once its int8 file has per-channel
/// weights (python/tools/export_onnx.py's `INT8_RECIPE`).
const INT8_RECIPE: &str = "int8: dynamic, per-channel weights";

/// Refuses an int8 export that `make setup` made before int8 became per-channel: its vectors
/// are further from fp32's (cosine 0.91 against 0.99) and would carry the new recipe's id. An
/// export without the marker is someone else's, and is taken as it is.
fn check_int8_recipe(dir: &Path) -> Result<()> {
    let marker = dir.join("source.sha256");
    match std::fs::read_to_string(&marker) {
        Ok(text) if !text.contains(INT8_RECIPE) => Err(RagError::config(format!(
            "the int8 export in {} has per-tensor weights (made before per-channel int8): run `make setup` to export it again",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Where `make setup` puts the export: `$RAG_ONNX_DIR`, else `$XDG_CACHE_HOME/rag/onnx/all-MiniLM-L6-v2`
/// (`~/.cache/...`).
pub fn default_model_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RAG_ONNX_DIR") {
        return Some(PathBuf::from(d));
    }
    Some(rag_python::venv::setup_cache_dir()?.join("onnx").join("all-MiniLM-L6-v2"))
}

/// The ONNX Runtime shared library of the venv's `onnxruntime` wheel.
/// Inside a host's interpreter (the Python package), the wheel is looked for on the host's
/// `sys.path`.
pub fn venv_runtime_library() -> Result<PathBuf> {
    let (site_dirs, place) = match rag_python::host_sys_path() {
        Some(path) => (path.to_vec(), "the host Python's sys.path".to_owned()),
        None => {
            let venv = rag_python::venv::find_venv(None)?;
            let lib = venv.join("lib");
            let entries = std::fs::read_dir(&lib).map_err(|e| RagError::io(&lib, e))?;
            (entries.flatten().map(|python| python.path().join("site-packages")).collect(), venv.display().to_string())
        }
    };
    for site in site_dirs {
        let capi = site.join("onnxruntime").join("capi");
        if let Ok(files) = std::fs::read_dir(&capi) {
            for f in files.flatten() {
                if f.file_name().to_string_lossy().starts_with("libonnxruntime.so") {
                    return Ok(f.path());
                }
            }
        }
    }
    Err(RagError::PythonPackageMissing { package: "onnxruntime".into(), venv: place, setup_command: "make setup".into() })
}

/// The process's one ONNX Runtime environment (the library loads once).
fn environment(library: &Path) -> Result<ort::environment::Environment> {
    static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let builder = ort::init_from(library).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?;
        builder.with_name("rag").build().map_err(|e| format!("ONNX Runtime environment: {e}"))
    })
    .clone()
    .map_err(RagError::config)
}

/// Builder for [`OnnxEmbedder`].
#[derive(Debug, Clone)]
pub struct OnnxEmbedderBuilder {
    dir: Option<PathBuf>,
    precision: OnnxPrecision,
    sessions: usize,
    library: Option<PathBuf>,
}

/// MiniLM through ONNX Runtime, natively (cheap to clone: the sessions are shared).
#[derive(Clone)]
pub struct OnnxEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    /// Loaded on the first text to embed: work that embeds nothing (an unchanged re-ingest)
    /// never loads ONNX Runtime or the model.
    sessions: tokio::sync::OnceCell<Vec<Mutex<Session>>>,
    loader: SessionLoader,
    /// Round-robin start, so concurrent single-text calls land on different sessions.
    next: std::sync::atomic::AtomicUsize,
    tokenizer: tokenizers::Tokenizer,
    dimension: usize,
    max_tokens: usize,
    model_id: String,
    tokenizer_file: PathBuf,
}

/// What loading the sessions needs: the runtime library, the model file, how many.
#[derive(Debug, Clone)]
struct SessionLoader {
    library: PathBuf,
    model: PathBuf,
    count: usize,
}

impl SessionLoader {
    fn load(&self) -> Result<Vec<Mutex<Session>>> {
        let env = environment(&self.library)?;
        let ort_err = |what: &str| {
            let what = what.to_owned();
            move |e: ort::Error| RagError::Permanent {
                backend: "onnxruntime".into(),
                message: format!("{what}: {e}"),
                source: None,
            }
        };
        let mut sessions = Vec::with_capacity(self.count);
        for _ in 0..self.count {
            let mut builder = Session::builder(&env).map_err(ort_err("session builder"))?;
            builder = builder.with_intra_threads(1).map_err(|e| ort_err("intra-op threads")(e.into()))?;
            let session = builder.commit_from_file(&self.model).map_err(ort_err(&format!("loading {}", self.model.display())))?;
            sessions.push(Mutex::new(session));
        }
        crate::note_model_loaded();
        Ok(sessions)
    }
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("model_id", &self.inner.model_id)
            .field("sessions", &self.inner.loader.count)
            .field("loaded", &self.inner.sessions.initialized())
            .finish_non_exhaustive()
    }
}

impl Default for OnnxEmbedderBuilder {
    fn default() -> Self {
        Self { dir: None, precision: OnnxPrecision::Int8, sessions: 2, library: None }
    }
}

impl OnnxEmbedderBuilder {
    /// The export directory (default: [`default_model_dir`]).
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
    /// int8 (default) or fp32.
    pub fn precision(mut self, p: OnnxPrecision) -> Self {
        self.precision = p;
        self
    }
    /// Sessions run at once (default 2: one per core of this machine).
    pub fn sessions(mut self, n: usize) -> Self {
        self.sessions = n;
        self
    }
    /// The ONNX Runtime library (default: the venv's onnxruntime wheel's).
    pub fn runtime_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.library = Some(path.into());
        self
    }

    /// Checks the export and the runtime library are there and loads the tokenizer and the
    /// model's description (blocking work, done off the async threads). The sessions load on
    /// the first text to embed ([`OnnxEmbedder::load`] loads them now).
    pub async fn build(self) -> Result<OnnxEmbedder> {
        tokio::task::spawn_blocking(move || self.build_blocking())
            .await
            .map_err(|e| RagError::internal_from("the ONNX embedder set-up panicked", e))?
    }

    fn build_blocking(self) -> Result<OnnxEmbedder> {
        if self.sessions == 0 || self.sessions > 64 {
            return Err(RagError::invalid_input(
                "embedder.onnx.sessions",
                format!("{} is out of range: use 1 to 64", self.sessions),
            ));
        }
        let dir =
            self.dir.or_else(default_model_dir).ok_or_else(|| RagError::config("no ONNX model directory: set embedder.model"))?;
        let model = dir.join(self.precision.file());
        let fp32 = dir.join(OnnxPrecision::Fp32.file());
        if !model.is_file() && self.precision == OnnxPrecision::Int8 && fp32.is_file() {
            // An export of one's own may have only the fp32 file: int8 is the default, so say
            // how to run what is there.
            return Err(RagError::config(format!(
                "{} has no int8 export ({}): set embedder.onnx.precision = \"fp32\" to run its {}, or quantise it as `make setup` does (python/tools/export_onnx.py)",
                dir.display(),
                OnnxPrecision::Int8.file(),
                OnnxPrecision::Fp32.file()
            )));
        }
        if !model.is_file() {
            return Err(RagError::not_found(
                format!("ONNX model {}", model.display()),
                Some("run `make setup` (it exports MiniLM to ONNX), or set embedder.model to an export directory"),
            ));
        }
        if self.precision == OnnxPrecision::Int8 {
            check_int8_recipe(&dir)?;
        }
        let library = match self.library {
            Some(l) => l,
            None => venv_runtime_library()?,
        };
        let tokenizer_file = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_file)
            .map_err(|e| RagError::invalid_input(tokenizer_file.display().to_string(), e.to_string()))?;
        let max_tokens = read_json(&dir.join("sentence_bert_config.json"))?
            .get("max_seq_length")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(256) as usize;
        let dimension = read_json(&dir.join("1_Pooling").join("config.json"))?
            .get("word_embedding_dimension")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                RagError::invalid_input(dir.display().to_string(), "1_Pooling/config.json has no word_embedding_dimension")
            })? as usize;
        // tokenizer.json pads everything to 128 and truncates at 128; the model reads 256.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| RagError::invalid_input(tokenizer_file.display().to_string(), e.to_string()))?;
        let precision = self.precision.id_label();
        // The id keys the embedding cache and each document's hash: `make setup`'s export of
        // the bundled MiniLM has a name; any other export is named by its directory, so its
        // vectors can never be served for MiniLM's (or the other way round).
        let model_id = if default_model_dir().is_some_and(|d| d == dir) {
            format!("sentence-transformers/all-MiniLM-L6-v2 (onnx {precision})")
        } else {
            format!("onnx export {} ({precision})", dir.display())
        };
        Ok(OnnxEmbedder {
            inner: Arc::new(Inner {
                sessions: tokio::sync::OnceCell::new(),
                loader: SessionLoader { library, model, count: self.sessions },
                next: Default::default(),
                tokenizer,
                dimension,
                max_tokens,
                model_id,
                tokenizer_file,
            }),
        })
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| RagError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| RagError::invalid_input(path.display().to_string(), e.to_string()))
}

impl OnnxEmbedder {
    /// A builder.
    pub fn builder() -> OnnxEmbedderBuilder {
        OnnxEmbedderBuilder::default()
    }

    /// The builder for `settings` (`[embedder.onnx]`), running the export in `model_dir`
    /// (unset: the one `make setup` made): how the configuration builds it.
    pub fn from_settings(settings: &OnnxSettings, model_dir: Option<&str>) -> OnnxEmbedderBuilder {
        let b = Self::builder().precision(settings.precision).sessions(settings.sessions);
        match model_dir {
            Some(dir) => b.model_dir(dir),
            None => b,
        }
    }

    /// The model's `tokenizer.json` (what chunk fitting counts with).
    pub fn tokenizer_file(&self) -> &Path {
        &self.inner.tokenizer_file
    }

    /// Loads ONNX Runtime and the sessions now, if the first `embed` has not yet (a server
    /// warming up before it says it is ready).
    pub async fn load(&self) -> Result<()> {
        self.sessions().await.map(|_| ())
    }

    /// Whether the sessions are loaded.
    pub fn is_loaded(&self) -> bool {
        self.inner.sessions.initialized()
    }

    async fn sessions(&self) -> Result<&Vec<Mutex<Session>>> {
        self.inner
            .sessions
            .get_or_try_init(|| async {
                let loader = self.inner.loader.clone();
                tokio::task::spawn_blocking(move || loader.load())
                    .await
                    .map_err(|e| RagError::internal_from("loading the ONNX sessions panicked", e))?
            })
            .await
    }
}

impl Inner {
    /// One text through `session`: unpadded, mean-pooled, normalised.
    fn embed_one(&self, session: &Mutex<Session>, text: &str) -> Result<Vec<f32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| RagError::invalid_input("text", format!("the tokenizer refused it: {e}")))?;
        let len = enc.get_ids().len();
        let ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        let types: Vec<i64> = enc.get_type_ids().iter().map(|&i| i64::from(i)).collect();
        let mask = vec![1_i64; len];
        let err = |e: ort::Error| RagError::Permanent { backend: "onnxruntime".into(), message: e.to_string(), source: None };
        let tensor = |v: Vec<i64>| Tensor::from_array(([1_usize, len], v)).map_err(err);
        let inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask)?,
            "token_type_ids" => tensor(types)?,
        ];
        let mut guard = session.lock().map_err(|_| RagError::internal("an ONNX session panicked earlier"))?;
        let outputs = guard.run(inputs).map_err(err)?;
        let (shape, hidden) = outputs["last_hidden_state"].try_extract_tensor::<f32>().map_err(err)?;
        let dim = shape.last().copied().unwrap_or(0) as usize;
        if dim != self.dimension || hidden.len() != len * dim {
            return Err(RagError::DimensionMismatch { context: self.model_id.clone(), expected: self.dimension, actual: dim });
        }
        // Mean pooling then unit length: with no padding every token counts, and the mean's
        // 1/len cancels in the normalisation, so the sum is normalised directly.
        let mut v = vec![0f32; dim];
        for row in hidden.chunks_exact(dim) {
            for (acc, x) in v.iter_mut().zip(row) {
                *acc += x;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        Ok(v.into_iter().map(|x| x / norm).collect())
    }
}

#[async_trait]
impl Embedder for OnnxEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let sessions = self.sessions().await?.len();
        let this = self.inner.clone();
        let texts = Arc::new(texts);
        let workers = sessions.min(texts.len());
        let start = this.next.fetch_add(workers, std::sync::atomic::Ordering::Relaxed);
        // Worker k embeds texts k, k + workers, ... on its own session: every core busy, no
        // padding anywhere, and concurrent calls spread over the sessions.
        let tasks: Vec<_> = (0..workers)
            .map(|k| {
                let this = this.clone();
                let texts = texts.clone();
                tokio::task::spawn_blocking(move || {
                    let session = this
                        .sessions
                        .get()
                        .and_then(|all| all.get((start + k) % sessions))
                        .ok_or_else(|| RagError::internal("ONNX sessions missing after loading"))?;
                    (k..texts.len())
                        .step_by(workers)
                        .map(|i| this.embed_one(session, &texts[i]).map(|v| (i, v)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = vec![Vec::new(); texts.len()];
        for t in tasks {
            let part = t.await.map_err(|e| RagError::internal_from("an ONNX embedding task panicked", e))??;
            for (i, v) in part {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn model_id(&self) -> String {
        self.inner.model_id.clone()
    }

    fn max_input_tokens(&self) -> Option<usize> {
        Some(self.inner.max_tokens)
    }
}
