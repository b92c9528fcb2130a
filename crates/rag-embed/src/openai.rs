//! OpenAI embeddings through the Python `openai` client, with request limits and retries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rag_core::{Embedder, RagError, Result};
use rag_python::PyResultExt;
use rag_python::classify::{ErrorRules, OPENAI_COMPATIBLE};
use rag_python::convert::matrix_from_py;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyList};

/// What to do with an input longer than the model's token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlongInput {
    /// Keep the first `max_tokens_per_input` tokens (with a warning).
    #[default]
    Truncate,
    /// Embed each piece and average the vectors, weighted by tokens (with a warning).
    Split,
    /// Fail with [`RagError::InvalidInput`].
    Error,
}

/// Builder for [`OpenAIEmbedder`].
#[derive(Clone)]
pub struct OpenAIEmbedderBuilder {
    model: String,
    dimensions: Option<usize>,
    base_url: Option<String>,
    api_key: Option<String>,
    max_inputs_per_request: usize,
    max_tokens_per_input: usize,
    max_tokens_per_request: usize,
    overlong: OverlongInput,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for OpenAIEmbedderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAIEmbedderBuilder")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Default for OpenAIEmbedderBuilder {
    fn default() -> Self {
        Self {
            model: "text-embedding-3-small".into(),
            dimensions: None,
            base_url: None,
            api_key: None,
            // OpenAI's documented limits: 2048 inputs a request, 8191 tokens an input, 300k tokens a request.
            max_inputs_per_request: 2048,
            max_tokens_per_input: 8191,
            max_tokens_per_request: 300_000,
            overlong: OverlongInput::Truncate,
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            timeout: Duration::from_secs(60),
        }
    }
}

impl OpenAIEmbedderBuilder {
    /// Model name (default `text-embedding-3-small`).
    pub fn model(mut self, m: impl Into<String>) -> Self {
        self.model = m.into();
        self
    }
    /// Shortened output dimension (text-embedding-3 models).
    pub fn dimensions(mut self, d: usize) -> Self {
        self.dimensions = Some(d);
        self
    }
    /// Any OpenAI-compatible server (`http://127.0.0.1:8080/v1`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// API key; unset reads `OPENAI_API_KEY`. Never logged.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Inputs per request.
    pub fn max_inputs_per_request(mut self, n: usize) -> Self {
        self.max_inputs_per_request = n.max(1);
        self
    }
    /// Tokens per input (cl100k, counted with tiktoken-rs).
    pub fn max_tokens_per_input(mut self, n: usize) -> Self {
        self.max_tokens_per_input = n.max(1);
        self
    }
    /// Policy for inputs over the token limit.
    pub fn overlong(mut self, p: OverlongInput) -> Self {
        self.overlong = p;
        self
    }
    /// Retries of transient failures (429, 5xx, connection errors).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// First backoff and cap (exponential, with jitter).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }
    /// Per-request timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Creates the client (no request is made unless the dimension must be probed).
    pub async fn build(self) -> Result<OpenAIEmbedder> {
        let api_key = self.api_key.clone().or_else(|| std::env::var("OPENAI_API_KEY").ok()).ok_or_else(|| {
            RagError::config(
                "OpenAI embedder: no API key: set OPENAI_API_KEY or the `api_key` setting (any value for a local server)",
            )
        })?;
        let (base_url, timeout) = (self.base_url.clone(), self.timeout.as_secs_f64());
        let client = rag_python::runtime()?
            .run(move |py| {
                let openai = rag_python::import(py, "openai")?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("api_key", api_key).py_context(py)?;
                if let Some(url) = base_url {
                    kwargs.set_item("base_url", url).py_context(py)?;
                }
                // Retries happen in Rust, where they are bounded, logged and classified.
                kwargs.set_item("max_retries", 0).py_context(py)?;
                kwargs.set_item("timeout", timeout).py_context(py)?;
                Ok(openai.getattr("OpenAI").and_then(|c| c.call((), Some(&kwargs))).py_context(py)?.unbind())
            })
            .await?;
        let bpe = tiktoken_rs::cl100k_base().map_err(|e| RagError::config(format!("tiktoken cl100k_base: {e}")))?;
        let mut embedder = OpenAIEmbedder { client: Arc::new(client), dimension: 0, cfg: self, bpe: Arc::new(bpe) };
        embedder.dimension = match (embedder.cfg.dimensions, embedder.cfg.model.as_str()) {
            (Some(d), _) => d,
            (None, "text-embedding-3-small" | "text-embedding-ada-002") => 1536,
            (None, "text-embedding-3-large") => 3072,
            (None, _) => embedder.request(vec!["dimension probe".into()]).await?.first().map_or(0, Vec::len),
        };
        Ok(embedder)
    }
}

/// Embeds through OpenAI's embeddings endpoint (or any compatible server).
pub struct OpenAIEmbedder {
    client: Arc<Py<PyAny>>,
    dimension: usize,
    cfg: OpenAIEmbedderBuilder,
    bpe: Arc<tiktoken_rs::CoreBPE>,
}

impl std::fmt::Debug for OpenAIEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAIEmbedder").field("cfg", &self.cfg).field("dimension", &self.dimension).finish()
    }
}

/// Transient: rate limits, server errors, connection problems, timeouts.
/// The openai client's exceptions by class ([`rag_python::classify::OPENAI_COMPATIBLE`]).
fn classify(e: RagError) -> RagError {
    const ERRORS: ErrorRules = ErrorRules { backend: "openai", rules: OPENAI_COMPATIBLE };
    ERRORS.classify(e, "embedding")
}

impl OpenAIEmbedder {
    /// A builder with OpenAI's defaults.
    pub fn builder() -> OpenAIEmbedderBuilder {
        OpenAIEmbedderBuilder::default()
    }

    /// The builder for `settings` (`[embedder.openai]`) and `model` (unset:
    /// `text-embedding-3-small`), the key read from `api_key_env` now: how the configuration
    /// builds it.
    pub fn from_settings(settings: &crate::OpenAiSettings, model: Option<&str>) -> OpenAIEmbedderBuilder {
        let mut b = Self::builder().model(model.unwrap_or("text-embedding-3-small"));
        if let Some(url) = &settings.api_base {
            b = b.base_url(url);
        }
        if let Ok(key) = std::env::var(&settings.api_key_env) {
            b = b.api_key(key);
        }
        if let Some(d) = settings.dimensions {
            b = b.dimensions(d);
        }
        b
    }

    /// One request, retried with exponential backoff and jitter while the failure is transient.
    async fn request(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let mut attempt = 0u32;
        loop {
            let client = self.client.clone();
            let (model, dims, batch) = (self.cfg.model.clone(), self.cfg.dimensions, inputs.clone());
            let result = rag_python::runtime()?
                .run(move |py| {
                    let kwargs = PyDict::new(py);
                    kwargs.set_item("model", model).py_context(py)?;
                    kwargs.set_item("input", PyList::new(py, &batch).py_context(py)?).py_context(py)?;
                    kwargs.set_item("encoding_format", "float").py_context(py)?;
                    if let Some(d) = dims {
                        kwargs.set_item("dimensions", d).py_context(py)?;
                    }
                    let resp = client
                        .bind(py)
                        .getattr("embeddings")
                        .and_then(|e| e.call_method("create", (), Some(&kwargs)))
                        .py_context(py)?;
                    let rows = py
                        .eval(c"lambda r: [d.embedding for d in sorted(r.data, key=lambda d: d.index)]", None, None)
                        .and_then(|f| f.call1((resp,)))
                        .py_context(py)?;
                    matrix_from_py(py, &rows)
                })
                .await
                .map_err(classify);
            match result {
                Ok(v) if v.len() == inputs.len() => return Ok(v),
                Ok(v) => {
                    return Err(RagError::permanent(
                        "openai",
                        format!("returned {} embeddings for {} inputs", v.len(), inputs.len()),
                    ));
                }
                Err(e) if e.is_retryable() && attempt < self.cfg.max_retries => {
                    let base = self.cfg.initial_backoff.saturating_mul(1 << attempt.min(16)).min(self.cfg.max_backoff);
                    let jitter = rand::random_range(0.5..=1.0);
                    let wait = base.mul_f64(jitter);
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "OpenAI embeddings: retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies the token limit to one input: the pieces to embed (one unless split).
    fn limit(&self, index: usize, text: &str) -> Result<Vec<(String, usize)>> {
        let tokens = self.bpe.encode_ordinary(text);
        let max = self.cfg.max_tokens_per_input;
        if tokens.len() <= max {
            return Ok(vec![(text.to_owned(), tokens.len().max(1))]);
        }
        let decode = |t: &[u32]| {
            self.bpe.decode(t).map_err(|e| RagError::internal_from("tiktoken could not decode its own tokens", e.to_string()))
        };
        match self.cfg.overlong {
            OverlongInput::Error => Err(RagError::invalid_input(
                format!("embedding input #{index}"),
                format!("{} tokens > the model's limit of {max}: chunk it smaller, or allow truncation/splitting", tokens.len()),
            )),
            OverlongInput::Truncate => {
                tracing::warn!(index, tokens = tokens.len(), max, "OpenAI embeddings: input truncated to the token limit");
                Ok(vec![(decode(&tokens[..max])?, max)])
            }
            OverlongInput::Split => {
                tracing::warn!(index, tokens = tokens.len(), max, "OpenAI embeddings: input split and averaged");
                tokens.chunks(max).map(|c| Ok((decode(c)?, c.len()))).collect()
            }
        }
    }
}

#[async_trait]
impl Embedder for OpenAIEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        // Every piece to send, with the input it belongs to and its token weight.
        let mut pieces: Vec<(usize, String, usize)> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if t.is_empty() {
                return Err(RagError::invalid_input(format!("embedding input #{i}"), "empty text cannot be embedded"));
            }
            pieces.extend(self.limit(i, t)?.into_iter().map(|(p, n)| (i, p, n)));
        }
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(pieces.len());
        let mut batch: Vec<String> = Vec::new();
        let mut batch_tokens = 0usize;
        for (_, p, n) in &pieces {
            if !batch.is_empty()
                && (batch.len() >= self.cfg.max_inputs_per_request || batch_tokens + n > self.cfg.max_tokens_per_request)
            {
                vectors.extend(self.request(std::mem::take(&mut batch)).await?);
                batch_tokens = 0;
            }
            batch.push(p.clone());
            batch_tokens += n;
        }
        if !batch.is_empty() {
            vectors.extend(self.request(batch).await?);
        }
        // Average split pieces per input, weighted by tokens, then re-normalise.
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut weights = vec![0f32; texts.len()];
        for ((i, _, n), v) in pieces.iter().zip(vectors) {
            let w = *n as f32;
            if out[*i].is_empty() {
                out[*i] = v.iter().map(|x| x * w).collect();
            } else {
                out[*i].iter_mut().zip(&v).for_each(|(a, b)| *a += b * w);
            }
            weights[*i] += w;
        }
        for (v, w) in out.iter_mut().zip(weights) {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 / w.max(1.0) };
            v.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(out)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn model_id(&self) -> String {
        let dims = self.cfg.dimensions.map(|d| format!(":{d}")).unwrap_or_default();
        let host = self.cfg.base_url.as_deref().unwrap_or("api.openai.com");
        format!("openai/{}{dims}@{host}", self.cfg.model)
    }
}
