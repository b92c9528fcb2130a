//! Builds a [`RagPipeline`] from a [`RagConfig`], with each backend behind its Cargo feature.

use std::sync::Arc;
use std::time::Duration;

use rag_chunk::{ContextWindow, EmbedderTokenizer, FitToEmbedder, MarkdownChunker, SemanticChunker, TokenChunker, TokenCounter};
#[allow(unused_imports)]
use rag_core::{Chunker, Embedder, Generator, RagError, Reranker, Result, VectorStore};
use rag_keyword::KeywordIndex;

#[allow(unused_imports)]
use crate::config::{CacheBackend, ChromaModeSetting, ChunkerKind, EmbedderBackend, QdrantModeSetting, StoreBackend};
use crate::config::{RagConfig, RetrievalMode};
use crate::pipeline::RagPipeline;

/// Which parts of the pipeline a command needs (a bm25 query needs no model at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Everything the configuration names.
    All,
    /// Only what keyword retrieval and generation need (no embedder, no vector store).
    KeywordOnly,
}

/// The main and the Markdown chunker; with `fit`, both split chunks the embedder would truncate.
fn chunkers(cfg: &RagConfig, fit: Option<&EmbedderTokenizer>) -> Result<(Arc<dyn Chunker>, Arc<dyn Chunker>)> {
    let counter = TokenCounter::new(cfg.chunker.encoding)?;
    let c = &cfg.chunker;
    let main: Arc<dyn Chunker> = match c.kind {
        ChunkerKind::Token => Arc::new(TokenChunker::new(counter.clone(), c.chunk_size, c.overlap)?),
        ChunkerKind::Markdown => Arc::new(MarkdownChunker::new(counter.clone(), c.min_tokens, c.max_tokens)?),
        ChunkerKind::Semantic => Arc::new(SemanticChunker::new(counter.clone(), c.min_tokens, c.max_tokens)?),
    };
    let markdown: Arc<dyn Chunker> = Arc::new(MarkdownChunker::new(counter.clone(), c.min_tokens, c.max_tokens)?);
    Ok(match fit {
        Some(t) => (
            Arc::new(FitToEmbedder::new(main, t.clone(), counter.clone())),
            Arc::new(FitToEmbedder::new(markdown, t.clone(), counter)),
        ),
        None => (main, markdown),
    })
}

/// Starts the embedded interpreter with the configured venv and workers (once per process).
#[cfg(feature = "python")]
pub fn start_python(cfg: &RagConfig) -> Result<()> {
    rag_python::init(rag_python::PythonConfig { venv: cfg.python.venv.clone(), workers: cfg.python.workers.max(1) }).map(|_| ())
}

/// What the embedder part of a pipeline is made of.
#[derive(Clone)]
#[allow(dead_code)] // built only with an embedder feature
struct EmbedderParts {
    embedder: Arc<dyn Embedder>,
    probe: Option<crate::pipeline::CacheProbe>,
    label: String,
    tokenizer: Option<EmbedderTokenizer>,
    batches: Option<Arc<rag_core::BatchCounters>>,
}

#[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
async fn embedder(cfg: &RagConfig) -> Result<EmbedderParts> {
    use rag_embed::{CachedEmbedder, EmbeddingCache, LocalCache};

    let (base, tokenizer_file): (Arc<dyn Embedder>, Option<std::path::PathBuf>) = match cfg.embedder.backend {
        #[cfg(feature = "openai")]
        EmbedderBackend::Openai => {
            let mut b = rag_embed::OpenAIEmbedder::builder()
                .model(cfg.embedder.model.clone().unwrap_or_else(|| "text-embedding-3-small".into()));
            if let Some(url) = &cfg.embedder.api_base {
                b = b.base_url(url);
            }
            if let Ok(key) = std::env::var(&cfg.embedder.api_key_env) {
                b = b.api_key(key);
            }
            if let Some(d) = cfg.embedder.dimensions {
                b = b.dimensions(d);
            }
            (Arc::new(b.build().await?), None)
        }
        #[cfg(feature = "sentence-transformers")]
        EmbedderBackend::SentenceTransformers => {
            let mut b = rag_embed::SentenceTransformerEmbedder::builder()
                .batch_size(cfg.embedder.batch_size)
                .device(&cfg.embedder.device);
            if let Some(m) = &cfg.embedder.model {
                b = b.model(m);
            }
            // Lazily where the model describes itself: an unchanged re-ingest never loads it.
            match b.clone().build_lazy().await? {
                Some(lazy) => {
                    let file = lazy.tokenizer_file().map(std::path::Path::to_path_buf);
                    (Arc::new(lazy), file)
                }
                None => {
                    let e = b.build().await?;
                    let file = e.tokenizer_file().map(std::path::Path::to_path_buf);
                    (Arc::new(e), file)
                }
            }
        }
        #[cfg(feature = "onnx")]
        EmbedderBackend::Onnx => {
            let mut b =
                rag_embed::OnnxEmbedder::builder().sessions(cfg.embedder.onnx_sessions).precision(match cfg.embedder.precision {
                    crate::config::OnnxPrecisionSetting::Fp32 => rag_embed::OnnxPrecision::Fp32,
                    crate::config::OnnxPrecisionSetting::Int8 => rag_embed::OnnxPrecision::Int8,
                });
            if let Some(m) = &cfg.embedder.model {
                b = b.model_dir(m);
            }
            let e = b.build().await?;
            let file = e.tokenizer_file().to_path_buf();
            (Arc::new(e), Some(file))
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(RagError::config(format!(
                "embedder.backend = `{other}` is not compiled into this build (enable its Cargo feature)"
            )));
        }
    };
    // Concurrent queries share model calls; ingest batches (>= batch_size texts) go straight through.
    let (base, batches): (Arc<dyn Embedder>, _) = if cfg.embedder.batch_queries {
        let wait = Duration::from_millis(cfg.embedder.batch_wait_ms);
        let batching = rag_embed::BatchingEmbedder::new(base, cfg.embedder.batch_size, wait)?;
        let counters = batching.stats();
        (Arc::new(batching), Some(counters))
    } else {
        (base, None)
    };
    let tokenizer = match (tokenizer_file, base.max_input_tokens()) {
        (Some(file), Some(max)) => Some(EmbedderTokenizer::from_file(&file, max)?),
        _ => None,
    };
    let cache: Option<Arc<dyn EmbeddingCache>> = match cfg.cache.backend {
        CacheBackend::None => None,
        #[cfg(feature = "redis-cache")]
        CacheBackend::Redis => {
            let ttl = (cfg.cache.ttl_secs > 0).then(|| Duration::from_secs(cfg.cache.ttl_secs));
            Some(Arc::new(rag_embed::RedisCache::new(&cfg.cache.redis_url, ttl)?))
        }
        CacheBackend::Local => Some(Arc::new(LocalCache::open(cfg.data_dir.join("cache").join("embeddings.redb"))?)),
        #[allow(unreachable_patterns)]
        other => {
            return Err(RagError::config(format!(
                "cache.backend = `{other}` is not compiled into this build (enable the redis-cache feature)"
            )));
        }
    };
    let model = base.model_id();
    Ok(match cache {
        None => EmbedderParts { embedder: base, probe: None, label: model, tokenizer, batches },
        Some(c) => {
            let describe = c.describe();
            let cached = Arc::new(CachedEmbedder::new(base, c));
            let probe_src = cached.clone();
            let probe: crate::pipeline::CacheProbe = Arc::new(move || {
                let s = probe_src.stats();
                crate::pipeline::CacheCounters { hits: s.hits, embedded: s.embedded }
            });
            EmbedderParts {
                embedder: cached,
                probe: Some(probe),
                label: format!("{model} (cache: {describe})"),
                tokenizer,
                batches,
            }
        }
    })
}

/// The vector store, its label for `stats`, and what it also serves with `store.index = engine`.
#[allow(dead_code)] // the engine parts are built only with the qdrant feature
struct StoreParts {
    store: Arc<dyn VectorStore>,
    label: String,
    engine: Option<EngineParts>,
}

/// A store that is also the keyword index, the hybrid engine and the ingest record.
#[allow(dead_code)] // read only with an embedder feature
struct EngineParts {
    keyword: Arc<dyn rag_core::KeywordSearch>,
    hybrid: Arc<dyn rag_core::HybridSearch>,
    ledger: Arc<dyn rag_core::IngestLedger>,
    /// The sparse encoder's fingerprint: a change of it re-ingests.
    fingerprint: String,
}

#[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
#[allow(unused_variables)]
async fn store(cfg: &RagConfig, dimension: usize) -> Result<StoreParts> {
    let s = &cfg.store;
    match s.backend {
        #[cfg(feature = "chroma")]
        StoreBackend::Chroma => {
            use rag_vector_chroma::{ChromaMode, ChromaStore};
            let mode = match s.chroma_mode {
                ChromaModeSetting::Memory => ChromaMode::InMemory,
                ChromaModeSetting::Http => ChromaMode::Http {
                    host: s.chroma_host.clone(),
                    port: s.chroma_port,
                    ssl: s.chroma_ssl,
                    headers: Default::default(),
                },
                ChromaModeSetting::Persistent => ChromaMode::Persistent(cfg.collection_dir().join("chroma")),
            };
            let store = ChromaStore::builder(mode.clone())
                .collection(chroma_name(&cfg.collection))
                .distance(s.distance)
                .dimension(dimension)
                .build()
                .await?;
            Ok(StoreParts { store: Arc::new(store), label: format!("chroma ({mode:?})"), engine: None })
        }
        #[cfg(feature = "qdrant")]
        StoreBackend::Qdrant => {
            use rag_vector_qdrant::{QdrantMode, QdrantStore};
            let mode = match s.qdrant_mode {
                QdrantModeSetting::Memory => QdrantMode::InMemory,
                QdrantModeSetting::Server => QdrantMode::Server {
                    url: s
                        .qdrant_url
                        .clone()
                        .ok_or_else(|| RagError::config("store.qdrant_mode = server needs store.qdrant_url"))?,
                    api_key: std::env::var(&s.qdrant_api_key_env).ok(),
                    prefer_grpc: s.qdrant_prefer_grpc,
                    grpc_port: s.qdrant_grpc_port,
                },
                QdrantModeSetting::Local => QdrantMode::Local(cfg.collection_dir().join("qdrant")),
            };
            let label = match &mode {
                QdrantMode::Server { url, .. } => format!("qdrant (server {url})"),
                m => format!("qdrant ({m:?})"),
            };
            let mut b = QdrantStore::builder(mode).collection(&cfg.collection).distance(s.distance).dimension(dimension);
            // With the index in the engine, BM25 is the collection's sparse vectors.
            let fingerprint = if s.index == crate::config::IndexPlacement::Engine {
                let encoder = Arc::new(rag_keyword::Bm25Encoder::new(&cfg.keyword)?);
                let fingerprint = rag_core::SparseEncoder::fingerprint(&*encoder);
                b = b.sparse(encoder);
                Some(fingerprint)
            } else {
                None
            };
            if let Some(n) = s.qdrant_shards {
                b = b.shards(n);
            }
            if let Some(n) = s.qdrant_replication {
                b = b.replication_factor(n);
            }
            let store = Arc::new(b.build().await?);
            let engine = fingerprint.map(|fingerprint| EngineParts {
                keyword: store.clone(),
                hybrid: store.clone(),
                ledger: store.clone(),
                fingerprint,
            });
            let label = if engine.is_some() { format!("{label}, bm25 + hybrid + ingest record in the engine") } else { label };
            Ok(StoreParts { store, label, engine })
        }
        #[cfg(feature = "pinecone")]
        StoreBackend::Pinecone => {
            use rag_vector_pinecone::{PineconeIndex, PineconeStore};
            let index = match (&s.pinecone_host, &s.pinecone_index) {
                (Some(h), _) => PineconeIndex::Host(h.clone()),
                (None, Some(n)) => PineconeIndex::Name(n.clone()),
                (None, None) => PineconeIndex::Name(cfg.collection.clone()),
            };
            let mut b = PineconeStore::builder(index.clone())
                .namespace(&s.pinecone_namespace)
                .distance(s.distance)
                .dimension(dimension)
                .serverless(&s.pinecone_cloud, &s.pinecone_region);
            if let Ok(k) = std::env::var(&s.pinecone_api_key_env) {
                b = b.api_key(k);
            }
            if let Some(h) = &s.pinecone_control_host {
                b = b.control_host(h);
            }
            Ok(StoreParts { store: Arc::new(b.build().await?), label: format!("pinecone ({index:?})"), engine: None })
        }
        #[allow(unreachable_patterns)]
        other => {
            Err(RagError::config(format!("store.backend = `{other}` is not compiled into this build (enable its Cargo feature)")))
        }
    }
}

/// Chroma wants 3 to 512 characters: short collection names are padded predictably.
#[cfg(feature = "chroma")]
fn chroma_name(name: &str) -> String {
    if name.chars().count() < 3 { format!("rag-{name}") } else { name.to_owned() }
}

/// The LM `generator.lm` names, as DSPy programs take it (`local` starts llama.cpp's server in
/// this process first); `None` without `generator.lm`.
#[cfg(feature = "dspy")]
pub async fn lm_config(cfg: &RagConfig) -> Result<Option<rag_dspy::LmConfig>> {
    let Some(lm) = cfg.generator.lm.clone() else { return Ok(None) };
    let g = &cfg.generator;
    // `local`: llama.cpp's server in this process, then DSPy calls it like any
    // OpenAI-compatible server (`hosted_vllm/` sends `max_tokens`, which llama.cpp honours).
    let (model, api_base, api_key) = if lm == "local" {
        let path = g.local_model.clone().or_else(rag_dspy::default_local_model).ok_or_else(|| {
            RagError::config("generator.lm = local needs generator.local_model (a GGUF file), or run `make setup`")
        })?;
        let local = rag_dspy::LocalModel { path, context: g.local_context, threads: g.local_threads };
        ("hosted_vllm/local".to_owned(), Some(format!("{}/v1", local.start().await?)), Some("local".to_owned()))
    } else {
        (lm, g.api_base.clone(), std::env::var(&g.api_key_env).ok())
    };
    Ok(Some(rag_dspy::LmConfig::Lm {
        model,
        api_base,
        api_key,
        max_tokens: g.max_tokens,
        temperature: g.temperature,
        retries: g.retries,
        timeout: Duration::from_secs(g.timeout_secs),
        cache: g.cache,
    }))
}

#[allow(unused_variables)]
async fn generator(cfg: &RagConfig) -> Result<Option<Arc<dyn Generator>>> {
    let Some(lm) = cfg.generator.lm.clone() else { return Ok(None) };
    #[cfg(feature = "dspy")]
    {
        let g = &cfg.generator;
        let Some(lm) = lm_config(cfg).await? else { return Ok(None) };
        let mut b =
            rag_dspy::DspyGenerator::with_lm(lm).signature(&g.signature).cache_dir(cfg.data_dir.join("cache").join("dspy"));
        if let Some(p) = &g.program {
            b = b.program(p.clone());
        }
        Ok(Some(Arc::new(b.build().await?)))
    }
    #[cfg(not(feature = "dspy"))]
    Err(RagError::config(format!("generator.lm = `{lm}` needs the `dspy` feature, which this build lacks")))
}

#[allow(unused_variables)]
async fn reranker(cfg: &RagConfig) -> Result<Option<Arc<dyn Reranker>>> {
    if !cfg.rerank.enabled && cfg.rerank.model.is_none() {
        return Ok(None);
    }
    #[cfg(feature = "cross-encoder")]
    {
        let model = cfg.rerank.model.clone().ok_or_else(|| {
            RagError::config(
                "rerank.enabled needs rerank.model: a cross-encoder directory (none ships offline; see README, Reranking)",
            )
        })?;
        let r: Arc<dyn Reranker> = Arc::new(
            rag_rerank::CrossEncoderReranker::builder(model)
                .batch_size(cfg.rerank.batch_size)
                .max_length(cfg.rerank.max_length)
                .build()
                .await?,
        );
        // Concurrent queries' reranks share model calls, as their query embeddings do.
        if cfg.rerank.batch_queries {
            let wait = Duration::from_millis(cfg.rerank.batch_wait_ms);
            return Ok(Some(Arc::new(rag_rerank::BatchingReranker::new(r, cfg.rerank.batch_pairs, wait)?)));
        }
        Ok(Some(r))
    }
    #[cfg(not(feature = "cross-encoder"))]
    Err(RagError::config("reranking needs the `cross-encoder` feature, which this build lacks"))
}

/// The models a pipeline uses (embedder with its cache, reranker, generator), built once and
/// shared by every collection a [`PipelineFactory`] builds: a server holds one copy of each.
#[derive(Clone, Default)]
#[allow(dead_code)] // the embedder is read only with an embedder feature
struct Models {
    embedder: Option<EmbedderParts>,
    reranker: Option<Arc<dyn Reranker>>,
    generator: Option<Arc<dyn Generator>>,
}

/// Builds pipelines for any number of collections from one configuration, loading each model
/// (and opening the embedding cache, which one process may open only once) a single time.
pub struct PipelineFactory {
    cfg: RagConfig,
    needs: Needs,
    models: tokio::sync::OnceCell<Models>,
}

impl std::fmt::Debug for PipelineFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineFactory").field("collection", &self.cfg.collection).field("needs", &self.needs).finish()
    }
}

impl PipelineFactory {
    /// A factory for `cfg` (validated here); nothing is loaded until the first pipeline.
    pub fn new(cfg: RagConfig, needs: Needs) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, needs, models: tokio::sync::OnceCell::new() })
    }

    /// The configuration pipelines are built from.
    pub fn config(&self) -> &RagConfig {
        &self.cfg
    }

    /// Whether dense retrieval (an embedder and a vector store) is part of these pipelines.
    /// With `store.index = engine` the store is also the keyword index, so even BM25 needs it
    /// (and a store needs its embedder).
    fn dense(&self) -> bool {
        let s = &self.cfg.store;
        if s.backend != StoreBackend::None && s.index == crate::config::IndexPlacement::Engine {
            return true;
        }
        self.needs == Needs::All && s.backend != StoreBackend::None && self.cfg.retrieval.mode != RetrievalMode::Bm25
    }

    async fn models(&self) -> Result<&Models> {
        self.models
            .get_or_try_init(|| async {
                let cfg = &self.cfg;
                let python_needed = self.dense() || cfg.generator.lm.is_some() || cfg.rerank.enabled;
                if python_needed {
                    #[cfg(feature = "python")]
                    start_python(cfg)?;
                }
                let mut models = Models::default();
                if self.dense() {
                    #[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
                    {
                        models.embedder = Some(embedder(cfg).await?);
                    }
                    #[cfg(not(any(feature = "sentence-transformers", feature = "openai", feature = "onnx")))]
                    return Err(RagError::config(
                        "dense and hybrid retrieval need an embedder feature (onnx, sentence-transformers or openai); this build has none: use --retriever bm25",
                    ));
                }
                if self.needs == Needs::All {
                    models.reranker = reranker(cfg).await?;
                }
                models.generator = generator(cfg).await?;
                Ok(models)
            })
            .await
    }

    /// The pipeline for `collection` (its store, keyword index and manifest under the data
    /// directory), sharing this factory's models.
    pub async fn pipeline(&self, collection: &str) -> Result<RagPipeline> {
        let mut cfg = self.cfg.clone();
        cfg.collection = collection.to_owned();
        cfg.validate()?;
        let models = self.models().await?;
        assemble(&cfg, self.dense(), models).await
    }
}

/// Builds the pipeline `cfg` describes.
pub async fn build_pipeline(cfg: &RagConfig, needs: Needs) -> Result<RagPipeline> {
    PipelineFactory::new(cfg.clone(), needs)?.pipeline(&cfg.collection).await
}

#[allow(unused_variables)]
async fn assemble(cfg: &RagConfig, dense: bool, models: &Models) -> Result<RagPipeline> {
    let dir = cfg.collection_dir();
    // With the index in the engine nothing of the collection lives on local disk.
    let local = cfg.store.index == crate::config::IndexPlacement::Local;
    if local {
        std::fs::create_dir_all(&dir).map_err(|e| RagError::io(&dir, e))?;
    }
    let counter = TokenCounter::new(cfg.chunker.encoding)?;
    let mut window = ContextWindow::new(counter, cfg.context.max_tokens).order(cfg.context.order);
    if let Some(r) = cfg.context.reserved_for_answer {
        window = window.reserved_for_answer(r);
    }
    let mode = cfg.retrieval.mode;
    let mut b =
        RagPipeline::builder().collection(cfg.collection.clone()).data_dir(dir.clone()).keyword_config(cfg.keyword.clone());
    if local {
        b = b.keyword_index(Arc::new(KeywordIndex::open(Some(&dir.join("keyword")), &cfg.keyword)?));
    }
    let mut b = b
        .context_window(window)
        .retrieval(cfg.retrieval.clone())
        .initial_k(cfg.rerank.initial_k)
        .final_k(cfg.rerank.final_k)
        .rerank(cfg.rerank.enabled)
        .generation_timeout(Duration::from_secs(cfg.generator.timeout_secs))
        .embed_batch(cfg.embedder.batch_size * 2);
    b = b.mode(if dense { mode } else { RetrievalMode::Bm25 });
    #[allow(unused_mut)] // assigned only with an embedder feature
    let mut fit: Option<EmbedderTokenizer> = None;
    #[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
    if let Some(parts) = models.embedder.clone() {
        let s = store(cfg, parts.embedder.dimension()).await?;
        b = b.embedder(parts.embedder).vector_store(s.store).describe("embedder", parts.label).describe("store", s.label);
        if let Some(e) = s.engine {
            b = b.keyword_index(e.keyword).hybrid_engine(e.hybrid).ingest_ledger(e.ledger).index_fingerprint(e.fingerprint);
        }
        if let Some(p) = parts.probe {
            b = b.cache_probe(p);
        }
        if let Some(c) = parts.batches {
            b = b.embed_batch_counters(c);
        }
        if let Some(t) = parts.tokenizer {
            b = b.embedder_tokenizer(t.clone());
            if cfg.chunker.fit_to_embedder {
                fit = Some(t);
            }
        } else if cfg.chunker.fit_to_embedder {
            tracing::warn!("chunker.fit_to_embedder: this embedder exposes no tokenizer, so chunks are not fitted to it");
        }
    }
    if !local && !dense {
        return Err(RagError::config(
            "store.index = engine needs the vector store, which needs an embedder: this build or configuration has none",
        ));
    }
    let (chunker, markdown) = chunkers(cfg, fit.as_ref())?;
    b = b.chunker(chunker).markdown_chunker(markdown);
    if let Some(r) = models.reranker.clone() {
        b = b.reranker(r);
    }
    if let Some(g) = models.generator.clone() {
        b = b.generator(g);
    }
    b.build()
}
