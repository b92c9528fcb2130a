//! [`RagPipeline`] and its builder: the parts a pipeline is made of. What it does lives beside
//! it: [`crate::ingest`] (indexing), [`crate::query`] (retrieval and answers).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rag_chunk::ContextWindow;
use rag_core::{
    Chunker, Embedder, Generator, HybridSearch, IngestLedger, KeywordSearch, RagError, Reranker, Result, Retriever, VectorStore,
};
use serde::Serialize;

use crate::config::{RetrievalMode, check_range, defaults};
use crate::generate::ExtractiveGenerator;
use crate::manifest::Manifest;
use crate::retrieve::Fusion;
use rag_chunk::EmbedderTokenizer;

/// Hit / miss counters of the embedding cache, if there is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheCounters {
    /// Texts served from the cache.
    pub hits: u64,
    /// Texts actually embedded.
    pub embedded: u64,
}

/// Reads the cache counters of the pipeline's embedder.
pub type CacheProbe = Arc<dyn Fn() -> CacheCounters + Send + Sync>;

/// Progress of a long operation: `(done, total)`; `total` is 0 while unknown.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Collection statistics.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Collection name.
    pub collection: String,
    /// Documents in the ingest record (the manifest, or the store when it is the record).
    pub documents: usize,
    /// Chunks in the vector store (or the keyword index without one).
    pub chunks: usize,
    /// Chunks in the keyword index.
    pub keyword_chunks: usize,
    /// The embedding model's input window in its own tokens, when known.
    pub embedder_max_tokens: Option<usize>,
    /// Stored chunks longer than that window (the model truncates them when embedding); `None`
    /// when the window or the model's tokenizer is unknown.
    pub chunks_over_embedder_limit: Option<usize>,
    /// Mean analysed terms per stored chunk (the value for `keyword.avg_chunk_terms`).
    pub mean_chunk_terms: Option<f64>,
    /// Backends and models.
    pub backends: BTreeMap<String, String>,
    /// Vector store details.
    pub store: Option<rag_core::StoreDescription>,
}

/// The file of a collection's local ingest record (the manifest), under its directory: a
/// directory holding it is a collection.
pub const MANIFEST_FILE: &str = "manifest.redb";

/// The documents and chunks that came from some origins (a tenant's, a folder's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OriginCounts {
    /// Documents with a final ingest record.
    pub documents: usize,
    /// Their chunks.
    pub chunks: usize,
}

/// Builder for [`RagPipeline`]. Every default comes from [`crate::config::defaults`], the
/// same source the configuration file uses.
pub struct RagPipelineBuilder {
    collection: String,
    data_dir: Option<PathBuf>,
    chunker: Option<Arc<dyn Chunker>>,
    markdown_chunker: Option<Arc<dyn Chunker>>,
    embedder: Option<Arc<dyn Embedder>>,
    embedder_tokenizer: Option<EmbedderTokenizer>,
    cache_probe: Option<CacheProbe>,
    embed_batches: Option<Arc<rag_core::BatchCounters>>,
    store: Option<Arc<dyn VectorStore>>,
    keyword: Option<Arc<dyn KeywordSearch>>,
    engine: Option<Arc<dyn HybridSearch>>,
    ledger: Option<Arc<dyn IngestLedger>>,
    retriever: Option<Arc<dyn Retriever>>,
    reranker: Option<Arc<dyn Reranker>>,
    generator: Option<Arc<dyn Generator>>,
    window: Option<ContextWindow>,
    keyword_config: rag_keyword::KeywordConfig,
    index_fingerprint: Option<String>,
    mode: RetrievalMode,
    fusion: Fusion,
    k: usize,
    candidates: usize,
    rerank: bool,
    initial_k: usize,
    final_k: usize,
    generation_timeout: Duration,
    embed_batch: usize,
    backends: BTreeMap<String, String>,
}

impl Default for RagPipelineBuilder {
    fn default() -> Self {
        Self {
            collection: "rag".into(),
            data_dir: None,
            chunker: None,
            markdown_chunker: None,
            embedder: None,
            embedder_tokenizer: None,
            cache_probe: None,
            embed_batches: None,
            store: None,
            keyword: None,
            engine: None,
            ledger: None,
            retriever: None,
            reranker: None,
            generator: None,
            window: None,
            keyword_config: Default::default(),
            index_fingerprint: None,
            mode: RetrievalMode::Hybrid,
            fusion: Fusion::default(),
            k: defaults::K,
            candidates: defaults::CANDIDATES,
            rerank: false,
            initial_k: defaults::RERANK_INITIAL_K,
            final_k: defaults::RERANK_FINAL_K,
            generation_timeout: Duration::from_secs(defaults::GENERATION_TIMEOUT_SECS),
            embed_batch: defaults::EMBED_BATCH * 2,
            backends: BTreeMap::new(),
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty => $field:ident),* $(,)?) => {$(
        #[$doc]
        pub fn $name(mut self, v: $ty) -> Self {
            self.$field = v.into();
            self
        }
    )*};
}

impl RagPipelineBuilder {
    setter! {
        /// Collection name (reported in stats and errors).
        collection: impl Into<String> => collection,
        /// Directory for the manifest (and the keyword index if none is given).
        data_dir: PathBuf => data_dir,
        /// Chunker for plain-text documents.
        chunker: Arc<dyn Chunker> => chunker,
        /// Chunker for Markdown documents (default: the main chunker).
        markdown_chunker: Arc<dyn Chunker> => markdown_chunker,
        /// Embedder (needed for dense and hybrid retrieval).
        embedder: Arc<dyn Embedder> => embedder,
        /// The embedding model's tokenizer, so `stats` can count chunks over its window.
        embedder_tokenizer: EmbedderTokenizer => embedder_tokenizer,
        /// Reads the embedding cache's counters.
        cache_probe: CacheProbe => cache_probe,
        /// Counters of the query-embedding batcher (model calls, texts), for reports.
        embed_batch_counters: Arc<rag_core::BatchCounters> => embed_batches,
        /// Vector store (needed for dense and hybrid retrieval).
        vector_store: Arc<dyn VectorStore> => store,
        /// Keyword index (default: a tantivy index on disk under the data directory).
        keyword_index: Arc<dyn KeywordSearch> => keyword,
        /// A store that fuses dense and keyword results itself (hybrid with RRF or DBSF is then one request to it).
        hybrid_engine: Arc<dyn HybridSearch> => engine,
        /// The ingest record (default: the manifest file under the data directory; a shared store can be its own).
        ingest_ledger: Arc<dyn IngestLedger> => ledger,
        /// A retriever of your own, replacing the built-in dense / BM25 / hybrid one.
        retriever: Arc<dyn Retriever> => retriever,
        /// Reranker.
        reranker: Arc<dyn Reranker> => reranker,
        /// Generator (default: extractive).
        generator: Arc<dyn Generator> => generator,
        /// Context window (default: 4,096 tokens, cl100k).
        context_window: ContextWindow => window,
        /// Keyword analysis (for the default keyword index and `stats`).
        keyword_config: rag_keyword::KeywordConfig => keyword_config,
        /// What else shapes the stored chunks (a store's sparse encoder): part of each document's hash, so a change re-ingests.
        index_fingerprint: String => index_fingerprint,
        /// Default retrieval mode.
        retrieval_mode: RetrievalMode => mode,
        /// Fusion for hybrid retrieval.
        fusion: Fusion => fusion,
        /// Default chunks per query.
        k: usize => k,
        /// Candidates per side before fusion.
        candidates: usize => candidates,
        /// Rerank by default.
        rerank: bool => rerank,
        /// First-stage candidates when reranking.
        initial_k: usize => initial_k,
        /// Kept after reranking.
        final_k: usize => final_k,
        /// Generation deadline before falling back to an extractive answer.
        generation_timeout: Duration => generation_timeout,
        /// Texts per embedding call during ingest.
        embed_batch: usize => embed_batch,
    }

    /// Records a backend description for `stats` (`store`, `embedder`, ...).
    pub fn describe(mut self, key: &str, value: impl Into<String>) -> Self {
        self.backends.insert(key.to_owned(), value.into());
        self
    }

    /// Assembles the pipeline; a missing part or a number out of range is an error naming it.
    pub fn build(self) -> Result<RagPipeline> {
        let data_dir = self.data_dir.ok_or_else(|| RagError::config("the pipeline needs a data directory (for its manifest)"))?;
        let chunker = self.chunker.ok_or_else(|| RagError::config("the pipeline needs a chunker"))?;
        check_range("k", self.k, 1, defaults::MAX_K)?;
        for (name, v) in [("candidates", self.candidates), ("final_k", self.final_k), ("embed_batch", self.embed_batch)] {
            check_range(name, v, 1, usize::MAX)?;
        }
        let keyword: Arc<dyn KeywordSearch> = match self.keyword {
            Some(k) => k,
            None => Arc::new(rag_keyword::KeywordIndex::open(Some(&data_dir.join("keyword")), &self.keyword_config)?),
        };
        let ledger: Arc<dyn IngestLedger> = match self.ledger {
            Some(l) => l,
            None => Arc::new(Manifest::open(&data_dir.join(MANIFEST_FILE))?),
        };
        if self.retriever.is_none() && self.mode != RetrievalMode::Bm25 && (self.embedder.is_none() || self.store.is_none()) {
            return Err(RagError::config(
                "dense and hybrid retrieval need an embedder and a vector store: add both, or use bm25",
            ));
        }
        if self.store.is_some() != self.embedder.is_some() {
            return Err(RagError::config("a vector store needs an embedder (and an embedder a vector store)"));
        }
        let window = match self.window {
            Some(w) => w,
            None => ContextWindow::new(rag_chunk::TokenCounter::cl100k()?, defaults::CONTEXT_TOKENS),
        };
        let mut backends = self.backends;
        let generator: Arc<dyn Generator> = self.generator.unwrap_or_else(|| Arc::new(ExtractiveGenerator::default()));
        backends.entry("generator".into()).or_insert_with(|| generator.name());
        backends.entry("chunker".into()).or_insert_with(|| chunker.fingerprint());
        if let Some(e) = &self.embedder {
            backends.entry("embedder".into()).or_insert_with(|| e.model_id());
        }
        if let Some(r) = &self.reranker {
            backends.entry("reranker".into()).or_insert_with(|| r.model_id());
        }
        if self.retriever.is_some() {
            backends.insert("retriever".into(), "custom".into());
        }
        Ok(RagPipeline {
            collection: self.collection,
            ledger,
            engine: self.engine,
            data_dir,
            markdown_chunker: self.markdown_chunker.unwrap_or_else(|| chunker.clone()),
            chunker,
            embedder: self.embedder,
            embedder_tokenizer: self.embedder_tokenizer,
            cache_probe: self.cache_probe,
            embed_batches: self.embed_batches,
            store: self.store,
            keyword,
            retriever: self.retriever,
            reranker: self.reranker,
            generator,
            fallback: ExtractiveGenerator::default(),
            window,
            terms: rag_keyword::Bm25Encoder::new(&self.keyword_config)?,
            index_fingerprint: self.index_fingerprint,
            mode: self.mode,
            fusion: self.fusion,
            k: self.k,
            candidates: self.candidates,
            rerank: self.rerank,
            initial_k: self.initial_k.max(self.final_k),
            final_k: self.final_k,
            generation_timeout: self.generation_timeout,
            embed_batch: self.embed_batch,
            backends,
        })
    }
}

/// A complete RAG pipeline: ingest any [`rag_core::DocumentSource`], answer questions with
/// citations. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct RagPipeline {
    pub(crate) collection: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) ledger: Arc<dyn IngestLedger>,
    pub(crate) engine: Option<Arc<dyn HybridSearch>>,
    pub(crate) chunker: Arc<dyn Chunker>,
    pub(crate) markdown_chunker: Arc<dyn Chunker>,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    pub(crate) embedder_tokenizer: Option<EmbedderTokenizer>,
    pub(crate) cache_probe: Option<CacheProbe>,
    pub(crate) embed_batches: Option<Arc<rag_core::BatchCounters>>,
    pub(crate) store: Option<Arc<dyn VectorStore>>,
    pub(crate) keyword: Arc<dyn KeywordSearch>,
    pub(crate) retriever: Option<Arc<dyn Retriever>>,
    pub(crate) reranker: Option<Arc<dyn Reranker>>,
    pub(crate) generator: Arc<dyn Generator>,
    pub(crate) fallback: ExtractiveGenerator,
    pub(crate) window: ContextWindow,
    /// Counts analysed terms for `stats`.
    pub(crate) terms: rag_keyword::Bm25Encoder,
    pub(crate) index_fingerprint: Option<String>,
    pub(crate) mode: RetrievalMode,
    pub(crate) fusion: Fusion,
    pub(crate) k: usize,
    pub(crate) candidates: usize,
    pub(crate) rerank: bool,
    pub(crate) initial_k: usize,
    pub(crate) final_k: usize,
    pub(crate) generation_timeout: Duration,
    pub(crate) embed_batch: usize,
    pub(crate) backends: BTreeMap<String, String>,
}

impl std::fmt::Debug for RagPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagPipeline")
            .field("collection", &self.collection)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

impl RagPipeline {
    /// Counters of the query-embedding batcher, when the embedder batches concurrent queries.
    pub fn embed_batch_counters(&self) -> Option<&Arc<rag_core::BatchCounters>> {
        self.embed_batches.as_ref()
    }

    /// The embedding cache's counters since start (hits, texts embedded), when there is a cache.
    pub fn cache_counters(&self) -> Option<CacheCounters> {
        self.cache_probe.as_ref().map(|p| p())
    }

    /// A builder.
    pub fn builder() -> RagPipelineBuilder {
        RagPipelineBuilder::default()
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The keyword index.
    pub fn keyword_index(&self) -> &Arc<dyn KeywordSearch> {
        &self.keyword
    }

    /// The vector store, if any.
    pub fn vector_store(&self) -> Option<&Arc<dyn VectorStore>> {
        self.store.as_ref()
    }

    /// The embedder, if any.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// How many documents and chunks came from `origins` ([`rag_core::SourceDocument::origin`]:
    /// a folder, a feed, a tenant), from the ingest record alone: nothing of other origins is
    /// read into the answer.
    pub async fn origin_counts(&self, origins: Vec<String>) -> Result<OriginCounts> {
        let entries = self.ledger.under_roots(origins).await?;
        let done = entries.iter().filter(|(_, e)| e.hash.is_some());
        Ok(done.fold(OriginCounts::default(), |acc, (_, e)| OriginCounts {
            documents: acc.documents + 1,
            chunks: acc.chunks + e.chunk_ids.len(),
        }))
    }

    /// Counts, backends and models, and how many stored chunks exceed the embedder's window.
    pub async fn stats(&self) -> Result<Stats> {
        let store = match &self.store {
            Some(s) => Some(s.describe().await?),
            None => None,
        };
        let keyword_chunks = self.keyword.count().await?;
        let chunks = self.keyword.scan().await?;
        let over = self
            .embedder_tokenizer
            .as_ref()
            .map(|t| chunks.iter().filter(|c| t.count(&c.indexed_text()) > t.max_tokens()).count());
        let mean_chunk_terms = (!chunks.is_empty())
            .then(|| chunks.iter().map(|c| self.terms.term_count(&c.indexed_text())).sum::<usize>() as f64 / chunks.len() as f64);
        let mut backends = self.backends.clone();
        backends.insert("data_dir".into(), self.data_dir.display().to_string());
        Ok(Stats {
            collection: self.collection.clone(),
            documents: self.ledger.documents().await?,
            chunks: store.as_ref().map_or(keyword_chunks, |s| s.count),
            keyword_chunks,
            embedder_max_tokens: self.embedder_tokenizer.as_ref().map(EmbedderTokenizer::max_tokens),
            chunks_over_embedder_limit: over,
            mean_chunk_terms,
            backends,
            store,
        })
    }
}
