//! Builds a [`RagPipeline`] from a [`RagConfig`], with each backend behind its Cargo feature.

use std::sync::Arc;
use std::time::Duration;

use rag_chunk::{ContextWindow, EmbedderTokenizer, FitToEmbedder, MarkdownChunker, SemanticChunker, TokenChunker, TokenCounter};
#[allow(unused_imports)]
use rag_core::{Chunker, Embedder, Generator, RagError, Reranker, Result, VectorStore};

#[allow(unused_imports)]
use crate::config::{CacheBackend, ChunkerConfig, ChunkerKind, EmbedderBackend, StoreBackend};
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
    rag_python::init(cfg.python.venv.clone(), cfg.python.workers).map(|_| ())
}

/// What the embedder part of a pipeline is made of.
#[derive(Clone)]
#[allow(dead_code)] // built only with an embedder feature
struct EmbedderParts {
    embedder: Arc<dyn Embedder>,
    /// Embeds queries when they use another precision than the documents.
    query: Option<Arc<dyn Embedder>>,
    probe: Option<crate::pipeline::CacheProbe>,
    label: String,
    tokenizer: Option<EmbedderTokenizer>,
    batches: Option<Arc<rag_core::BatchCounters>>,
    /// The embedding cache (opened once a process), for query embedders built later.
    cache: Option<Arc<dyn rag_embed::EmbeddingCache>>,
}

/// An embedder and the counters of its query batcher, if it has one.
#[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
type Batched = (Arc<dyn Embedder>, Option<Arc<rag_core::BatchCounters>>);

/// `base` behind the query batcher, when `embedder.batch_queries` asks for one: concurrent
/// queries share model calls; ingest batches (>= batch_size texts) go straight through.
#[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
fn batched(cfg: &RagConfig, base: Arc<dyn Embedder>) -> Result<Batched> {
    if !cfg.embedder.batch_queries {
        return Ok((base, None));
    }
    let wait = Duration::from_millis(cfg.embedder.batch_wait_ms);
    let batching = rag_embed::BatchingEmbedder::new(base, cfg.embedder.batch_size, wait)?;
    let counters = batching.stats();
    Ok((Arc::new(batching), Some(counters)))
}

/// The ONNX embedder at `precision` for queries, batched and cached like the documents' one.
#[cfg(feature = "onnx")]
async fn onnx_query_embedder(
    cfg: &RagConfig,
    precision: rag_embed::OnnxPrecision,
    cache: Option<&Arc<dyn rag_embed::EmbeddingCache>>,
) -> Result<Batched> {
    let settings = rag_embed::OnnxSettings { precision, ..cfg.embedder.onnx.clone() };
    let base = rag_embed::OnnxEmbedder::from_settings(&settings, cfg.embedder.model.as_deref()).build().await?;
    let (batched, counters) = batched(cfg, Arc::new(base))?;
    Ok(match cache {
        Some(c) => (Arc::new(rag_embed::CachedEmbedder::new(batched, c.clone())), counters),
        None => (batched, counters),
    })
}

#[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
async fn embedder(cfg: &RagConfig) -> Result<EmbedderParts> {
    use rag_embed::{CachedEmbedder, EmbeddingCache, LocalCache};

    let e = &cfg.embedder;
    let model = e.model.as_deref();
    let (base, tokenizer_file): (Arc<dyn Embedder>, Option<std::path::PathBuf>) = match e.backend {
        #[cfg(feature = "openai")]
        EmbedderBackend::Openai => (Arc::new(rag_embed::OpenAIEmbedder::from_settings(&e.openai, model).build().await?), None),
        #[cfg(feature = "sentence-transformers")]
        EmbedderBackend::SentenceTransformers => {
            let b = rag_embed::SentenceTransformerEmbedder::from_settings(&e.sentence_transformers, model, e.batch_size);
            // Lazily where the model describes itself: an unchanged re-ingest never loads it.
            match b.clone().build_lazy().await? {
                Some(lazy) => {
                    let file = lazy.tokenizer_file().map(std::path::Path::to_path_buf);
                    (Arc::new(lazy), file)
                }
                None => {
                    let built = b.build().await?;
                    let file = built.tokenizer_file().map(std::path::Path::to_path_buf);
                    (Arc::new(built), file)
                }
            }
        }
        #[cfg(feature = "onnx")]
        EmbedderBackend::Onnx => {
            let built = rag_embed::OnnxEmbedder::from_settings(&e.onnx, model).build().await?;
            let file = built.tokenizer_file().to_path_buf();
            (Arc::new(built), Some(file))
        }
        #[allow(unreachable_patterns)]
        other => return Err(not_compiled("embedder.backend", other.as_str(), Some(other.as_str()))),
    };
    let (base, batches) = batched(cfg, base)?;
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
        other => return Err(not_compiled("cache.backend", other.as_str(), Some("redis-cache"))),
    };
    // Queries at another precision than the documents (embedder.onnx.query_precision): the
    // query batcher is then the query embedder's, and its counters are the ones reported.
    #[allow(unused_mut)]
    let (mut query, mut batches) = (None, batches);
    #[cfg(feature = "onnx")]
    if e.backend == EmbedderBackend::Onnx && e.onnx.effective_query_precision() != e.onnx.precision {
        let (q, counters) = onnx_query_embedder(cfg, e.onnx.effective_query_precision(), cache.as_ref()).await?;
        (query, batches) = (Some(q), counters);
    }
    let model = base.model_id();
    Ok(match &cache {
        None => EmbedderParts { embedder: base, query, probe: None, label: model, tokenizer, batches, cache },
        Some(c) => {
            let describe = c.describe();
            let cached = Arc::new(CachedEmbedder::new(base, c.clone()));
            let probe_src = cached.clone();
            let probe: crate::pipeline::CacheProbe = Arc::new(move || {
                let s = probe_src.stats();
                crate::pipeline::CacheCounters { hits: s.hits, embedded: s.embedded }
            });
            EmbedderParts {
                embedder: cached,
                query,
                probe: Some(probe),
                label: format!("{model} (cache: {describe})"),
                tokenizer,
                batches,
                cache: cache.clone(),
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

/// The vector store `cfg.store` names, built by its crate from its own settings table: one
/// line a backend.
#[cfg(any(feature = "sentence-transformers", feature = "openai", feature = "onnx"))]
#[allow(unused_variables)]
async fn store(cfg: &RagConfig, dimension: usize) -> Result<StoreParts> {
    let s = &cfg.store;
    let ctx =
        rag_core::StoreContext { collection: cfg.collection.clone(), dir: cfg.collection_dir(), distance: s.distance, dimension };
    let plain = |store: Arc<dyn VectorStore>, label: String| StoreParts { store, label, engine: None };
    match s.backend {
        #[cfg(feature = "chroma")]
        StoreBackend::Chroma => {
            Ok(plain(Arc::new(rag_vector_chroma::ChromaStore::from_settings(&s.chroma, &ctx).await?), s.label()))
        }
        #[cfg(feature = "qdrant")]
        StoreBackend::Qdrant => qdrant(cfg, &ctx).await,
        #[cfg(feature = "pinecone")]
        StoreBackend::Pinecone => {
            Ok(plain(Arc::new(rag_vector_pinecone::PineconeStore::from_settings(&s.pinecone, &ctx).await?), s.label()))
        }
        other => Err(not_compiled("store.backend", other.as_str(), other.feature().map(|(f, _)| f))),
    }
}

/// Qdrant, and with `store.index = engine` also the keyword index, the hybrid engine and the
/// ingest record (BM25 as the collection's sparse vectors).
#[cfg(all(feature = "qdrant", any(feature = "sentence-transformers", feature = "openai", feature = "onnx")))]
async fn qdrant(cfg: &RagConfig, ctx: &rag_core::StoreContext) -> Result<StoreParts> {
    let encoder = match cfg.store.index {
        crate::config::IndexPlacement::Engine => Some(Arc::new(rag_keyword::Bm25Encoder::new(&cfg.keyword)?)),
        crate::config::IndexPlacement::Local => None,
    };
    let sparse = encoder.clone().map(|e| e as Arc<dyn rag_core::SparseEncoder>);
    let settings = qdrant_settings(cfg);
    let store = Arc::new(rag_vector_qdrant::QdrantStore::from_settings(&settings, ctx, sparse).await?);
    let engine = encoder.map(|e| EngineParts {
        keyword: store.clone(),
        hybrid: store.clone(),
        ledger: store.clone(),
        fingerprint: rag_core::SparseEncoder::fingerprint(&*e),
    });
    let label = match engine {
        Some(_) => format!("{}, bm25 + hybrid + ingest record in the engine", cfg.store.label()),
        None => cfg.store.label(),
    };
    Ok(StoreParts { store, label, engine })
}

/// `[store.qdrant]`, with the tenant fields of the server's keys added to `tenant_keys` on a
/// server (a new collection then indexes them as Qdrant's tenant keys).
#[allow(dead_code)] // read only with the qdrant feature
fn qdrant_settings(cfg: &RagConfig) -> rag_vector_qdrant::QdrantSettings {
    let mut settings = cfg.store.qdrant.clone();
    if settings.mode == rag_vector_qdrant::QdrantClient::Server {
        for field in cfg.server.keys.iter().flat_map(|k| k.tenant.keys()) {
            if !settings.tenant_keys.contains(field) {
                settings.tenant_keys.push(field.clone());
            }
        }
    }
    settings
}

/// The error for a backend this build lacks, naming the Cargo feature that has it.
#[allow(dead_code)] // reached only in builds without some backend
fn not_compiled(key: &str, value: &str, feature: Option<&str>) -> RagError {
    match feature {
        Some(f) => RagError::config(format!(
            "{key} = \"{value}\" needs the `{f}` Cargo feature, which this build lacks: build with `--features {f}`"
        )),
        None => RagError::config(format!("{key} = \"{value}\" is not available in this build")),
    }
}

/// The LM `generator.lm` names, as DSPy programs take it (`local` starts llama.cpp's server in
/// this process first); `None` without `generator.lm`.
#[cfg(feature = "dspy")]
pub async fn lm_config(cfg: &RagConfig) -> Result<Option<rag_dspy::LmConfig>> {
    cfg.generator.lm_config().await
}

/// The generator `[generator]` describes, built by rag-dspy; `None`: extractive answers.
async fn generator(cfg: &RagConfig) -> Result<Option<Arc<dyn Generator>>> {
    let Some(lm) = &cfg.generator.lm else { return Ok(None) };
    #[cfg(feature = "dspy")]
    {
        let _ = lm;
        let built = rag_dspy::DspyGenerator::from_settings(&cfg.generator, cfg.data_dir.join("cache").join("dspy")).await?;
        Ok(built.map(|g| Arc::new(g) as Arc<dyn Generator>))
    }
    #[cfg(not(feature = "dspy"))]
    Err(not_compiled("generator.lm", lm, Some("dspy")))
}

/// The reranker `[rerank]` asks for, built by rag-rerank from `[rerank.cross-encoder]`.
async fn reranker(cfg: &RagConfig) -> Result<Option<Arc<dyn Reranker>>> {
    if !cfg.rerank.enabled && cfg.rerank.cross_encoder.model.is_none() {
        return Ok(None);
    }
    #[cfg(feature = "cross-encoder")]
    return rag_rerank::CrossEncoderReranker::from_settings(&cfg.rerank.cross_encoder).await.map(Some);
    #[cfg(not(feature = "cross-encoder"))]
    Err(not_compiled("rerank.enabled", "true", Some("cross-encoder")))
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
    pub fn dense(&self) -> bool {
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
                // A cross-encoder named but not enabled is still built (a query may ask for reranking).
                let reranks = cfg.rerank.enabled || (self.needs == Needs::All && cfg.rerank.cross_encoder.model.is_some());
                let python_needed = self.dense() || cfg.generator.lm.is_some() || reranks;
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
                        "dense and hybrid retrieval need an embedder feature (onnx, sentence-transformers or openai); this build has none: use retrieval.mode = bm25 (--mode bm25)",
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
        self.pipeline_chunked(collection, &self.cfg.chunker).await
    }

    /// The ONNX embedder at `precision` for queries, batched and cached like the pipelines' own
    /// (`rag tune` compares query precisions with it); `None` unless these pipelines embed
    /// with ONNX. The documents' or the configured query embedder when `precision` is theirs.
    pub async fn onnx_query_embedder(&self, precision: rag_embed::OnnxPrecision) -> Result<Option<Arc<dyn Embedder>>> {
        let models = self.models().await?;
        let (Some(parts), EmbedderBackend::Onnx) = (&models.embedder, self.cfg.embedder.backend) else { return Ok(None) };
        let onnx = &self.cfg.embedder.onnx;
        if precision == onnx.precision {
            return Ok(Some(parts.embedder.clone()));
        }
        if let (Some(q), true) = (&parts.query, precision == onnx.effective_query_precision()) {
            return Ok(Some(q.clone()));
        }
        #[cfg(feature = "onnx")]
        return Ok(Some(onnx_query_embedder(&self.cfg, precision, parts.cache.as_ref()).await?.0));
        #[cfg(not(feature = "onnx"))]
        Ok(None)
    }

    /// The pipeline for `collection` with another chunking than the configuration's (`rag tune
    /// --reingest` compares chunkings, each in a collection of its own), sharing the models.
    pub async fn pipeline_chunked(&self, collection: &str, chunker: &ChunkerConfig) -> Result<RagPipeline> {
        let mut cfg = self.cfg.clone();
        cfg.collection = collection.to_owned();
        cfg.chunker = chunker.clone();
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
    let counter = TokenCounter::new(cfg.chunker.encoding)?;
    let mut window = ContextWindow::new(counter, cfg.context.max_tokens).order(cfg.context.order);
    if let Some(r) = cfg.context.reserved_for_answer {
        window = window.reserved_for_answer(r);
    }
    let mode = cfg.retrieval.mode;
    // The builder opens the local keyword index and manifest under `dir` (only once everything
    // else is built, removing what it created if that fails); the engine brings its own.
    let mut b = RagPipeline::builder()
        .collection(cfg.collection.clone())
        .data_dir(dir)
        .keyword_config(cfg.keyword.clone())
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
        if let Some(q) = parts.query {
            b = b.query_embedder(q);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qdrant_server_indexes_the_tenant_fields_of_the_servers_keys() {
        let mut cfg = RagConfig::default();
        let mut key: crate::config::ApiKeyConfig = toml::from_str(
            r#"name = "acme"
key = "0123456789abcdef0123"
collections = ["*"]
tenant = { org = "acme" }"#,
        )
        .unwrap();
        key.tenant.insert("team".into(), rag_core::MetadataValue::Str("red".into()));
        cfg.server.keys.push(key);
        assert!(qdrant_settings(&cfg).tenant_keys.is_empty(), "local mode has no payload index to make");
        cfg.store.qdrant.mode = rag_vector_qdrant::QdrantClient::Server;
        cfg.store.qdrant.tenant_keys = vec!["org".into()];
        assert_eq!(qdrant_settings(&cfg).tenant_keys, vec!["org".to_owned(), "team".to_owned()]);
    }
}
