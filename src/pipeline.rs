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

use crate::generate::ExtractiveGenerator;
use crate::manifest::Manifest;
use crate::retrieve::{RetrievalMode, RetrievalSettings};
use rag_chunk::EmbedderTokenizer;

/// The one source of defaults, shared by [`RagPipelineBuilder`] and the configuration file
/// ([`crate::RagConfig`]).
pub mod defaults {
    /// Chunks returned / packed per query.
    pub const K: usize = 5;
    /// Candidates taken from each retrieval side before fusion.
    pub const CANDIDATES: usize = 100;
    /// Convex fusion weight of the dense side: measured best on SciFact (docs/benchmarks.md).
    pub const ALPHA: f32 = 0.5;
    /// RRF constant.
    pub const RRF_K: f32 = 60.0;
    /// First-stage candidates when reranking.
    pub const RERANK_INITIAL_K: usize = 20;
    /// Kept after reranking.
    pub const RERANK_FINAL_K: usize = 5;
    /// Seconds before a generation is abandoned for the extractive answer.
    pub const GENERATION_TIMEOUT_SECS: u64 = 60;
    /// Texts per embedding model call.
    pub const EMBED_BATCH: usize = 64;
    /// Context window in tokens.
    pub const CONTEXT_TOKENS: usize = 4096;
    /// Smallest chunk the semantic and Markdown chunkers close at a paragraph break.
    pub const CHUNK_MIN_TOKENS: usize = 64;
    /// Largest chunk of the semantic and Markdown chunkers.
    pub const CHUNK_MAX_TOKENS: usize = 256;
    /// Largest `k` a query may ask for.
    pub const MAX_K: usize = 1000;
}

/// `lo <= v <= hi`, or an [`RagError::InvalidInput`] naming `key` and the range: the one range
/// rule of the configuration, the builder and query options.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(key: &str, v: T, lo: T, hi: T) -> Result<()> {
    if v >= lo && v <= hi { Ok(()) } else { Err(RagError::invalid_input(key, format!("{v} is out of range: use {lo} to {hi}"))) }
}

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

/// Builder for [`RagPipeline`]. Every default comes from [`defaults`], the
/// same source the configuration file uses: the chunkers (semantic, and Markdown-aware for
/// Markdown), the context window, the extractive generator, hybrid retrieval and its numbers.
pub struct RagPipelineBuilder {
    collection: String,
    data_dir: Option<PathBuf>,
    chunker: Option<Arc<dyn Chunker>>,
    markdown_chunker: Option<Arc<dyn Chunker>>,
    embedder: Option<Arc<dyn Embedder>>,
    query_embedder: Option<Arc<dyn Embedder>>,
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
    retrieval: RetrievalSettings,
    rerank: bool,
    initial_k: usize,
    final_k: usize,
    generation_timeout: Duration,
    embed_batch: usize,
    backends: BTreeMap<String, String>,
    in_memory: bool,
}

impl Default for RagPipelineBuilder {
    fn default() -> Self {
        Self {
            collection: "rag".into(),
            data_dir: None,
            chunker: None,
            markdown_chunker: None,
            embedder: None,
            query_embedder: None,
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
            retrieval: RetrievalSettings::default(),
            rerank: false,
            initial_k: defaults::RERANK_INITIAL_K,
            final_k: defaults::RERANK_FINAL_K,
            generation_timeout: Duration::from_secs(defaults::GENERATION_TIMEOUT_SECS),
            embed_batch: defaults::EMBED_BATCH * 2,
            backends: BTreeMap::new(),
            in_memory: false,
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
        /// Directory for the manifest and the keyword index (unless both are given, or [`RagPipelineBuilder::in_memory`]).
        data_dir: PathBuf => data_dir,
        /// Chunker for plain-text documents (default: semantic, cl100k, 64 to 256 tokens).
        chunker: Arc<dyn Chunker> => chunker,
        /// Chunker for Markdown documents (default: the main chunker when one is set, else the Markdown-aware default).
        markdown_chunker: Arc<dyn Chunker> => markdown_chunker,
        /// Embedder (needed for dense and hybrid retrieval).
        embedder: Arc<dyn Embedder> => embedder,
        /// Another embedder for queries only (default: the embedder): the same model at another precision, whose vectors share the stored ones' space.
        query_embedder: Arc<dyn Embedder> => query_embedder,
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
        /// The retrieval settings, whole (mode, k, candidates, fusion): `[retrieval]` of the configuration.
        retrieval: RetrievalSettings => retrieval,
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

    /// The default retrieval mode (`retrieval.mode`).
    pub fn mode(mut self, mode: RetrievalMode) -> Self {
        self.retrieval.mode = mode;
        self
    }

    /// The default chunks per query (`retrieval.k`).
    pub fn k(mut self, k: usize) -> Self {
        self.retrieval.k = k;
        self
    }

    /// Keeps the keyword index and the ingest record in memory (unless given), so the pipeline
    /// needs no data directory and writes nothing to disk: for prototypes and tests, with
    /// [`rag_core::InMemoryStore`] as the vector store.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Assembles the pipeline; a missing part or a number out of range is an error naming it.
    /// Everything is checked before anything is created on disk, and a build that fails after
    /// creating the keyword index or the manifest removes what it created.
    pub fn build(self) -> Result<RagPipeline> {
        self.retrieval.validate()?;
        for (name, v) in [("final_k", self.final_k), ("embed_batch", self.embed_batch)] {
            check_range(name, v, 1, usize::MAX)?;
        }
        if self.retriever.is_none()
            && self.retrieval.mode != RetrievalMode::Bm25
            && (self.embedder.is_none() || self.store.is_none())
        {
            return Err(RagError::config(
                "dense and hybrid retrieval need an embedder and a vector store: add both, or use bm25",
            ));
        }
        if self.store.is_some() != self.embedder.is_some() {
            return Err(RagError::config("a vector store needs an embedder (and an embedder a vector store)"));
        }
        if self.query_embedder.is_some() && self.embedder.is_none() {
            return Err(RagError::config("a query embedder needs the embedder of the documents (and a vector store)"));
        }
        let on_disk = !self.in_memory && (self.keyword.is_none() || self.ledger.is_none());
        if on_disk && self.data_dir.is_none() {
            return Err(RagError::config(
                "the pipeline needs a data directory (for its keyword index and manifest): set data_dir, or build it in_memory",
            ));
        }
        let (chunker, markdown_chunker) = match (self.chunker, self.markdown_chunker) {
            (Some(c), Some(m)) => (c, m),
            (Some(c), None) => (c.clone(), c),
            (None, markdown) => {
                let (c, m) = default_chunkers()?;
                (c, markdown.unwrap_or(m))
            }
        };
        let window = match self.window {
            Some(w) => w,
            None => ContextWindow::new(rag_chunk::TokenCounter::cl100k()?, defaults::CONTEXT_TOKENS),
        };
        let terms = rag_keyword::Bm25Encoder::new(&self.keyword_config)?;
        // Only now is anything created; `created` undoes it if a later step fails.
        let mut created = Created::default();
        let opened = (|| -> Result<(Arc<dyn KeywordSearch>, Arc<dyn IngestLedger>)> {
            let keyword: Arc<dyn KeywordSearch> = match (self.keyword, &self.data_dir) {
                (Some(k), _) => k,
                (None, Some(dir)) if !self.in_memory => {
                    created.note(dir);
                    created.note(&dir.join(KEYWORD_DIR));
                    Arc::new(rag_keyword::KeywordIndex::open(Some(&dir.join(KEYWORD_DIR)), &self.keyword_config)?)
                }
                (None, _) => Arc::new(rag_keyword::KeywordIndex::in_memory(&self.keyword_config)?),
            };
            let ledger: Arc<dyn IngestLedger> = match (self.ledger, &self.data_dir) {
                (Some(l), _) => l,
                (None, Some(dir)) if !self.in_memory => {
                    created.note(dir);
                    created.note(&dir.join(MANIFEST_FILE));
                    Arc::new(Manifest::open(&dir.join(MANIFEST_FILE))?)
                }
                (None, _) => Arc::new(Manifest::in_memory()?),
            };
            Ok((keyword, ledger))
        })();
        let (keyword, ledger) = match opened {
            Ok(parts) => parts,
            Err(e) => {
                created.undo();
                return Err(e);
            }
        };
        let mut backends = self.backends;
        let generator: Arc<dyn Generator> = self.generator.unwrap_or_else(|| Arc::new(ExtractiveGenerator::default()));
        backends.entry("generator".into()).or_insert_with(|| generator.name());
        backends.entry("chunker".into()).or_insert_with(|| chunker.fingerprint());
        if let Some(e) = &self.embedder {
            backends.entry("embedder".into()).or_insert_with(|| e.model_id());
        }
        if let Some(e) = &self.query_embedder {
            backends.entry("query_embedder".into()).or_insert_with(|| e.model_id());
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
            data_dir: self.data_dir.filter(|_| on_disk),
            markdown_chunker,
            chunker,
            embedder: self.embedder,
            query_embedder: self.query_embedder,
            embedder_tokenizer: self.embedder_tokenizer,
            cache_probe: self.cache_probe,
            embed_batches: self.embed_batches,
            store: self.store,
            dimensions_checked: tokio::sync::OnceCell::new(),
            keyword,
            retriever: self.retriever,
            reranker: self.reranker,
            generator,
            fallback: ExtractiveGenerator::default(),
            window,
            terms,
            index_fingerprint: self.index_fingerprint,
            retrieval: self.retrieval,
            rerank: self.rerank,
            initial_k: self.initial_k.max(self.final_k),
            final_k: self.final_k,
            generation_timeout: self.generation_timeout,
            embed_batch: self.embed_batch,
            backends,
        })
    }
}

/// The keyword index's directory under a data directory.
pub const KEYWORD_DIR: &str = "keyword";

/// The default chunkers: semantic for text, Markdown-aware for Markdown, both cl100k within
/// [`defaults::CHUNK_MIN_TOKENS`]..=[`defaults::CHUNK_MAX_TOKENS`] (the configuration's defaults).
fn default_chunkers() -> Result<(Arc<dyn Chunker>, Arc<dyn Chunker>)> {
    let counter = rag_chunk::TokenCounter::cl100k()?;
    let (min, max) = (defaults::CHUNK_MIN_TOKENS, defaults::CHUNK_MAX_TOKENS);
    Ok((
        Arc::new(rag_chunk::SemanticChunker::new(counter.clone(), min, max)?),
        Arc::new(rag_chunk::MarkdownChunker::new(counter, min, max)?),
    ))
}

/// Paths a build created, removed again when it fails.
#[derive(Default)]
struct Created(Vec<PathBuf>);

impl Created {
    /// Remembers `path` if it does not exist yet (it is about to be created).
    fn note(&mut self, path: &std::path::Path) {
        if !path.exists() && !self.0.iter().any(|p| p == path) {
            self.0.push(path.to_owned());
        }
    }

    /// Removes what was created, newest first. Best effort: the build's own error is the one
    /// reported.
    fn undo(self) {
        for p in self.0.into_iter().rev() {
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// A complete RAG pipeline: ingest any [`rag_core::DocumentSource`], answer questions with
/// citations. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct RagPipeline {
    pub(crate) collection: String,
    /// Where the keyword index and manifest live (`None` in memory).
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) ledger: Arc<dyn IngestLedger>,
    pub(crate) engine: Option<Arc<dyn HybridSearch>>,
    pub(crate) chunker: Arc<dyn Chunker>,
    pub(crate) markdown_chunker: Arc<dyn Chunker>,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    /// Embeds queries when set (else `embedder` does).
    pub(crate) query_embedder: Option<Arc<dyn Embedder>>,
    pub(crate) embedder_tokenizer: Option<EmbedderTokenizer>,
    pub(crate) cache_probe: Option<CacheProbe>,
    pub(crate) embed_batches: Option<Arc<rag_core::BatchCounters>>,
    pub(crate) store: Option<Arc<dyn VectorStore>>,
    /// Set once the store's dimension has been compared with the embedder's.
    pub(crate) dimensions_checked: tokio::sync::OnceCell<()>,
    pub(crate) keyword: Arc<dyn KeywordSearch>,
    pub(crate) retriever: Option<Arc<dyn Retriever>>,
    pub(crate) reranker: Option<Arc<dyn Reranker>>,
    pub(crate) generator: Arc<dyn Generator>,
    pub(crate) fallback: ExtractiveGenerator,
    pub(crate) window: ContextWindow,
    /// Counts analysed terms for `stats`.
    pub(crate) terms: rag_keyword::Bm25Encoder,
    pub(crate) index_fingerprint: Option<String>,
    pub(crate) retrieval: RetrievalSettings,
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

    /// Compares the vector store's dimension with the embedder's, once per pipeline (before
    /// the first write or dense search): a collection built with another model is an error
    /// naming both, not a store error halfway through an ingest. A store that does not know
    /// its dimension yet (nothing written) passes.
    pub(crate) async fn check_dimensions(&self) -> Result<()> {
        let (Some(store), Some(documents)) = (&self.store, &self.embedder) else { return Ok(()) };
        self.dimensions_checked
            .get_or_try_init(|| async {
                let d = store.describe().await?;
                let queries = self.query_embedder.as_ref().unwrap_or(documents);
                let embedder = [documents, queries].into_iter().find(|e| d.dimension.is_some_and(|s| s != e.dimension()));
                match (d.dimension, embedder) {
                    (Some(stored), Some(embedder)) => Err(RagError::DimensionMismatch {
                        context: format!(
                            "collection `{}`: the {} store `{}` holds {stored}-dimensional vectors, the embedder `{}` makes {}",
                            self.collection,
                            d.backend,
                            d.collection,
                            embedder.model_id(),
                            embedder.dimension()
                        ),
                        expected: stored,
                        actual: embedder.dimension(),
                    }),
                    _ => Ok(()),
                }
            })
            .await
            .map(|_| ())
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

    /// The embedder queries go through: the query embedder if one is set, else the embedder.
    pub fn query_embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.query_embedder.as_ref().or(self.embedder.as_ref())
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
        let data_dir = self.data_dir.as_ref().map_or_else(|| "(in memory)".to_owned(), |d| d.display().to_string());
        backends.insert("data_dir".into(), data_dir);
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
