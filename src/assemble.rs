//! Builds a [`RagPipeline`] from a [`RagConfig`], with each backend behind its Cargo feature.

use std::sync::Arc;
use std::time::Duration;

use rag_chunk::{ContextWindow, Encoding, MarkdownChunker, SemanticChunker, TokenChunker, TokenCounter};
#[allow(unused_imports)]
use rag_core::{Chunker, Embedder, Generator, RagError, Reranker, Result, VectorStore};

use crate::config::RagConfig;
use crate::keyword::KeywordIndex;
use crate::pipeline::{RagPipeline, RetrievalMode};
use crate::retrieve::Fusion;

/// Which parts of the pipeline a command needs (a bm25 query needs no model at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Everything the configuration names.
    All,
    /// Only what keyword retrieval and generation need (no embedder, no vector store).
    KeywordOnly,
}

fn chunkers(cfg: &RagConfig) -> Result<(Arc<dyn Chunker>, Arc<dyn Chunker>)> {
    let counter = TokenCounter::new(cfg.chunker.encoding.parse::<Encoding>()?)?;
    let c = &cfg.chunker;
    let main: Arc<dyn Chunker> = match c.kind.as_str() {
        "token" => Arc::new(TokenChunker::new(counter.clone(), c.chunk_size, c.overlap)?),
        "markdown" => Arc::new(MarkdownChunker::new(counter.clone(), c.min_tokens, c.max_tokens)?),
        _ => Arc::new(SemanticChunker::new(counter.clone(), c.min_tokens, c.max_tokens)?),
    };
    let markdown: Arc<dyn Chunker> = Arc::new(MarkdownChunker::new(counter, c.min_tokens, c.max_tokens)?);
    Ok((main, markdown))
}

/// Starts the embedded interpreter with the configured venv and workers (once per process).
#[cfg(feature = "python")]
pub fn start_python(cfg: &RagConfig) -> Result<()> {
    rag_python::init(rag_python::PythonConfig { venv: cfg.python.venv.clone(), workers: cfg.python.workers.max(1) }).map(|_| ())
}

#[cfg(any(feature = "sentence-transformers", feature = "openai"))]
async fn embedder(cfg: &RagConfig) -> Result<(Arc<dyn Embedder>, Option<crate::pipeline::CacheProbe>, String)> {
    use rag_embed::{CachedEmbedder, EmbeddingCache, LocalCache};

    let base: Arc<dyn Embedder> = match cfg.embedder.backend.as_str() {
        #[cfg(feature = "openai")]
        "openai" => {
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
            Arc::new(b.build().await?)
        }
        #[cfg(feature = "sentence-transformers")]
        "sentence-transformers" => {
            let mut b = rag_embed::SentenceTransformerEmbedder::builder()
                .batch_size(cfg.embedder.batch_size)
                .device(&cfg.embedder.device);
            if let Some(m) = &cfg.embedder.model {
                b = b.model(m);
            }
            Arc::new(b.build().await?)
        }
        other => {
            return Err(RagError::config(format!(
                "embedder.backend = `{other}` is not compiled into this build (enable its Cargo feature)"
            )));
        }
    };
    let cache: Option<Arc<dyn EmbeddingCache>> = match cfg.cache.backend.as_str() {
        "none" => None,
        #[cfg(feature = "redis-cache")]
        "redis" => {
            let ttl = (cfg.cache.ttl_secs > 0).then(|| Duration::from_secs(cfg.cache.ttl_secs));
            Some(Arc::new(rag_embed::RedisCache::new(&cfg.cache.redis_url, ttl)?))
        }
        "local" => Some(Arc::new(LocalCache::open(cfg.data_dir.join("cache").join("embeddings.redb"))?)),
        other => {
            return Err(RagError::config(format!(
                "cache.backend = `{other}` is not compiled into this build (enable the redis-cache feature)"
            )));
        }
    };
    let model = base.model_id();
    match cache {
        None => Ok((base, None, model)),
        Some(c) => {
            let describe = c.describe();
            let cached = Arc::new(CachedEmbedder::new(base, c));
            let probe_src = cached.clone();
            let probe: crate::pipeline::CacheProbe = Arc::new(move || {
                let s = probe_src.stats();
                crate::pipeline::CacheCounters { hits: s.hits, embedded: s.embedded }
            });
            Ok((cached, Some(probe), format!("{model} (cache: {describe})")))
        }
    }
}

#[cfg(any(feature = "sentence-transformers", feature = "openai"))]
#[allow(unused_variables)]
async fn store(cfg: &RagConfig, dimension: usize) -> Result<(Arc<dyn VectorStore>, String)> {
    let s = &cfg.store;
    match s.backend.as_str() {
        #[cfg(feature = "chroma")]
        "chroma" => {
            use rag_vector_chroma::{ChromaMode, ChromaStore};
            let mode = match s.chroma_mode.as_str() {
                "memory" => ChromaMode::InMemory,
                "http" => ChromaMode::Http {
                    host: s.chroma_host.clone(),
                    port: s.chroma_port,
                    ssl: s.chroma_ssl,
                    headers: Default::default(),
                },
                _ => ChromaMode::Persistent(cfg.collection_dir().join("chroma")),
            };
            let store = ChromaStore::builder(mode.clone())
                .collection(chroma_name(&cfg.collection))
                .distance(s.distance)
                .dimension(dimension)
                .build()
                .await?;
            Ok((Arc::new(store), format!("chroma ({mode:?})")))
        }
        #[cfg(feature = "qdrant")]
        "qdrant" => {
            use rag_vector_qdrant::{QdrantMode, QdrantStore};
            let mode = match s.qdrant_mode.as_str() {
                "memory" => QdrantMode::InMemory,
                "server" => QdrantMode::Server {
                    url: s
                        .qdrant_url
                        .clone()
                        .ok_or_else(|| RagError::config("store.qdrant_mode = server needs store.qdrant_url"))?,
                    api_key: std::env::var(&s.qdrant_api_key_env).ok(),
                    prefer_grpc: s.qdrant_prefer_grpc,
                },
                _ => QdrantMode::Local(cfg.collection_dir().join("qdrant")),
            };
            let label = match &mode {
                QdrantMode::Server { url, .. } => format!("qdrant (server {url})"),
                m => format!("qdrant ({m:?})"),
            };
            let store =
                QdrantStore::builder(mode).collection(&cfg.collection).distance(s.distance).dimension(dimension).build().await?;
            Ok((Arc::new(store), label))
        }
        #[cfg(feature = "pinecone")]
        "pinecone" => {
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
            Ok((Arc::new(b.build().await?), format!("pinecone ({index:?})")))
        }
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

#[allow(unused_variables)]
async fn generator(cfg: &RagConfig) -> Result<Option<Arc<dyn Generator>>> {
    let Some(lm) = cfg.generator.lm.clone() else { return Ok(None) };
    #[cfg(feature = "dspy")]
    {
        let g = &cfg.generator;
        let mut b = rag_dspy::DspyGenerator::builder(lm)
            .signature(&g.signature)
            .max_tokens(g.max_tokens)
            .temperature(g.temperature)
            .timeout(Duration::from_secs(g.timeout_secs))
            .retries(g.retries)
            .cache_dir(cfg.data_dir.join("cache").join("dspy"));
        if let Some(base) = &g.api_base {
            b = b.api_base(base);
        }
        if let Ok(key) = std::env::var(&g.api_key_env) {
            b = b.api_key(key);
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
        let r = rag_rerank::CrossEncoderReranker::builder(model)
            .batch_size(cfg.rerank.batch_size)
            .max_length(cfg.rerank.max_length)
            .build()
            .await?;
        Ok(Some(Arc::new(r)))
    }
    #[cfg(not(feature = "cross-encoder"))]
    Err(RagError::config("reranking needs the `cross-encoder` feature, which this build lacks"))
}

/// Builds the pipeline `cfg` describes.
pub async fn build_pipeline(cfg: &RagConfig, needs: Needs) -> Result<RagPipeline> {
    cfg.validate()?;
    let dir = cfg.collection_dir();
    std::fs::create_dir_all(&dir).map_err(|e| RagError::io(&dir, e))?;
    let (chunker, markdown) = chunkers(cfg)?;
    let counter = TokenCounter::new(cfg.chunker.encoding.parse::<Encoding>()?)?;
    let mut window = ContextWindow::new(counter, cfg.context.max_tokens).order(cfg.context.order);
    if let Some(r) = cfg.context.reserved_for_answer {
        window = window.reserved_for_answer(r);
    }
    let mode: RetrievalMode = cfg.retrieval.mode.parse()?;
    let fusion = match cfg.retrieval.fusion.as_str() {
        "convex" => Fusion::Convex { alpha: cfg.retrieval.alpha },
        _ => Fusion::Rrf { k: cfg.retrieval.rrf_k },
    };
    let keyword = Arc::new(KeywordIndex::open(Some(&dir.join("keyword")), &cfg.keyword)?);
    let mut b = RagPipeline::builder()
        .collection(cfg.collection.clone())
        .data_dir(dir)
        .chunker(chunker)
        .markdown_chunker(markdown)
        .keyword_index(keyword)
        .context_window(window)
        .fusion(fusion)
        .k(cfg.retrieval.k)
        .candidates(cfg.retrieval.candidates)
        .initial_k(cfg.rerank.initial_k)
        .final_k(cfg.rerank.final_k)
        .rerank(cfg.rerank.enabled)
        .generation_timeout(Duration::from_secs(cfg.generator.timeout_secs))
        .embed_batch(cfg.embedder.batch_size.max(1) * 2);
    let dense = needs == Needs::All && cfg.store.backend != "none" && mode != RetrievalMode::Bm25;
    b = b.retrieval_mode(if dense { mode } else { RetrievalMode::Bm25 });
    let python_needed = dense || cfg.generator.lm.is_some() || cfg.rerank.enabled;
    if python_needed {
        #[cfg(feature = "python")]
        start_python(cfg)?;
    }
    if dense {
        #[cfg(any(feature = "sentence-transformers", feature = "openai"))]
        {
            let (e, probe, label) = embedder(cfg).await?;
            let (s, store_label) = store(cfg, e.dimension()).await?;
            b = b.embedder(e).vector_store(s).describe("embedder", label).describe("store", store_label);
            if let Some(p) = probe {
                b = b.cache_probe(p);
            }
        }
        #[cfg(not(any(feature = "sentence-transformers", feature = "openai")))]
        return Err(RagError::config(
            "dense and hybrid retrieval need an embedder feature (sentence-transformers or openai); this build has none: use --retriever bm25",
        ));
    }
    if needs == Needs::All
        && let Some(r) = reranker(cfg).await?
    {
        b = b.reranker(r);
    }
    if let Some(g) = generator(cfg).await? {
        b = b.generator(g);
    }
    b.build()
}
