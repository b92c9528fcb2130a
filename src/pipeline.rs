//! [`RagPipeline`]: ingest and query over any set of backends.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use rag_chunk::ContextWindow;
use rag_core::{
    Chunk, Chunker, Document, EmbeddedChunk, Embedder, Filter, GenerationEvent, GenerationRequest, Generator, MetadataValue,
    RagError, Reranker, Result, RetrievalQuery, ScoredChunk, VectorStore, content_hash,
};
use serde::Serialize;

use crate::generate::ExtractiveGenerator;
use crate::keyword::KeywordIndex;
use crate::manifest::{Manifest, ManifestEntry};
use crate::readers::{self, JsonlReader, Skipped, SourceKind};
use crate::retrieve::{DenseSide, Fusion, HybridRetriever, StageTimings};

/// Which side(s) retrieval uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMode {
    /// Vector search only.
    Dense,
    /// BM25 only.
    Bm25,
    /// Both, fused.
    Hybrid,
}

impl std::str::FromStr for RetrievalMode {
    type Err = RagError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dense" => Ok(Self::Dense),
            "bm25" | "keyword" => Ok(Self::Bm25),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(RagError::invalid_input("retriever", format!("`{other}`: use dense, bm25 or hybrid"))),
        }
    }
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

/// Progress of a long operation: `(done, total)`.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Documents seen (changed + unchanged).
    pub documents: u64,
    /// Chunks written this run.
    pub chunks: u64,
    /// Texts sent to the embedding model (cache misses).
    pub embedded: u64,
    /// Texts served from the embedding cache.
    pub cache_hits: u64,
    /// Documents skipped because their content hash had not changed.
    pub unchanged: u64,
    /// Documents removed by `--prune`.
    pub removed: u64,
    /// Files that were not ingested, with the reason.
    pub skipped: Vec<Skipped>,
    /// Wall time.
    pub seconds: f64,
    /// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere).
    pub peak_rss_mb: Option<f64>,
}

/// Peak resident set size of this process (`VmHWM`), in MiB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// One cited chunk of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// The passage's number in the context the generator saw (what `[n]` in the answer means).
    pub number: usize,
    /// Chunk id.
    pub chunk_id: String,
    /// Parent document id.
    pub doc_id: String,
    /// Retrieval (or reranker) score.
    pub score: f32,
    /// The chunk text as given to the generator.
    pub text: String,
    /// Byte span of the text in the parent document.
    pub span: [usize; 2],
    /// Source file, when known.
    pub source: Option<String>,
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The answer.
    pub answer: String,
    /// Which generator answered (`extractive`, `dspy:...`).
    pub generator: String,
    /// The model's reasoning, when it gives one.
    pub reasoning: Option<String>,
    /// Cited chunks, in context order.
    pub citations: Vec<Citation>,
    /// Per-stage wall time in milliseconds (`embed_query`, `vector_search`, `keyword_search`,
    /// `fusion`, `retrieve` (all of retrieval, wall time), `rerank`, `pack`, `generate`, `total`).
    pub timings_ms: BTreeMap<String, f64>,
    /// Components that failed and what stood in for them.
    pub degraded: Vec<String>,
}

/// Per-query overrides.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Chunks to retrieve / pack.
    pub k: Option<usize>,
    /// Retrieval side(s).
    pub mode: Option<RetrievalMode>,
    /// Rerank (needs a reranker).
    pub rerank: Option<bool>,
    /// Metadata filter.
    pub filter: Option<Filter>,
}

/// Collection statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Collection name.
    pub collection: String,
    /// Documents in the manifest.
    pub documents: usize,
    /// Chunks in the vector store (or the keyword index without one).
    pub chunks: usize,
    /// Chunks in the keyword index.
    pub keyword_chunks: usize,
    /// Backends and models.
    pub backends: BTreeMap<String, String>,
    /// Vector store details.
    pub store: Option<rag_core::StoreDescription>,
}

/// Builder for [`RagPipeline`].
pub struct RagPipelineBuilder {
    collection: String,
    data_dir: Option<PathBuf>,
    chunker: Option<Arc<dyn Chunker>>,
    markdown_chunker: Option<Arc<dyn Chunker>>,
    embedder: Option<Arc<dyn Embedder>>,
    cache_probe: Option<CacheProbe>,
    store: Option<Arc<dyn VectorStore>>,
    keyword: Option<Arc<KeywordIndex>>,
    reranker: Option<Arc<dyn Reranker>>,
    generator: Option<Arc<dyn Generator>>,
    window: Option<ContextWindow>,
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
            cache_probe: None,
            store: None,
            keyword: None,
            reranker: None,
            generator: None,
            window: None,
            mode: RetrievalMode::Hybrid,
            fusion: Fusion::default(),
            k: 5,
            candidates: 100,
            rerank: false,
            initial_k: 20,
            final_k: 5,
            generation_timeout: Duration::from_secs(60),
            embed_batch: 128,
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
        /// Chunker for text and JSONL documents.
        chunker: Arc<dyn Chunker> => chunker,
        /// Chunker for Markdown files (default: the main chunker).
        markdown_chunker: Arc<dyn Chunker> => markdown_chunker,
        /// Embedder (needed for dense and hybrid retrieval).
        embedder: Arc<dyn Embedder> => embedder,
        /// Reads the embedding cache's counters.
        cache_probe: CacheProbe => cache_probe,
        /// Vector store (needed for dense and hybrid retrieval).
        vector_store: Arc<dyn VectorStore> => store,
        /// Keyword index (default: on disk under the data directory).
        keyword_index: Arc<KeywordIndex> => keyword,
        /// Reranker.
        reranker: Arc<dyn Reranker> => reranker,
        /// Generator (default: extractive).
        generator: Arc<dyn Generator> => generator,
        /// Context window (default: 4,096 tokens, cl100k).
        context_window: ContextWindow => window,
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

    /// Assembles the pipeline.
    pub fn build(self) -> Result<RagPipeline> {
        let data_dir = self.data_dir.ok_or_else(|| RagError::config("the pipeline needs a data directory (for its manifest)"))?;
        let chunker = self.chunker.ok_or_else(|| RagError::config("the pipeline needs a chunker"))?;
        let keyword = match self.keyword {
            Some(k) => k,
            None => Arc::new(KeywordIndex::open(Some(&data_dir.join("keyword")), &Default::default())?),
        };
        if self.mode != RetrievalMode::Bm25 && (self.embedder.is_none() || self.store.is_none()) {
            return Err(RagError::config(
                "dense and hybrid retrieval need an embedder and a vector store: add both, or use bm25",
            ));
        }
        if self.store.is_some() != self.embedder.is_some() {
            return Err(RagError::config("a vector store needs an embedder (and an embedder a vector store)"));
        }
        let window = match self.window {
            Some(w) => w,
            None => ContextWindow::new(rag_chunk::TokenCounter::cl100k()?, 4096),
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
        Ok(RagPipeline {
            collection: self.collection,
            manifest: Manifest::open(&data_dir.join("manifest.redb"))?,
            data_dir,
            markdown_chunker: self.markdown_chunker.unwrap_or_else(|| chunker.clone()),
            chunker,
            embedder: self.embedder,
            cache_probe: self.cache_probe,
            store: self.store,
            keyword,
            reranker: self.reranker,
            generator,
            fallback: ExtractiveGenerator::default(),
            window,
            mode: self.mode,
            fusion: self.fusion,
            k: self.k.max(1),
            candidates: self.candidates.max(1),
            rerank: self.rerank,
            initial_k: self.initial_k.max(1),
            final_k: self.final_k.max(1),
            generation_timeout: self.generation_timeout,
            embed_batch: self.embed_batch.max(1),
            backends,
        })
    }
}

/// A complete RAG pipeline: ingest sources, answer questions with citations.
pub struct RagPipeline {
    collection: String,
    data_dir: PathBuf,
    manifest: Manifest,
    chunker: Arc<dyn Chunker>,
    markdown_chunker: Arc<dyn Chunker>,
    embedder: Option<Arc<dyn Embedder>>,
    cache_probe: Option<CacheProbe>,
    store: Option<Arc<dyn VectorStore>>,
    keyword: Arc<KeywordIndex>,
    reranker: Option<Arc<dyn Reranker>>,
    generator: Arc<dyn Generator>,
    fallback: ExtractiveGenerator,
    window: ContextWindow,
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

impl std::fmt::Debug for RagPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagPipeline")
            .field("collection", &self.collection)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

/// A document waiting to be written.
struct Pending {
    doc_id: String,
    hash: String,
    root: String,
    chunks: Vec<Chunk>,
    old: Option<ManifestEntry>,
}

impl RagPipeline {
    /// A builder.
    pub fn builder() -> RagPipelineBuilder {
        RagPipelineBuilder::default()
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The keyword index.
    pub fn keyword_index(&self) -> &Arc<KeywordIndex> {
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

    fn counters(&self) -> CacheCounters {
        self.cache_probe.as_ref().map(|p| p()).unwrap_or_default()
    }

    fn doc_hash(&self, doc: &Document, markdown: bool) -> String {
        let meta = serde_json::to_string(&doc.metadata).unwrap_or_default();
        let chunker = if markdown { self.markdown_chunker.fingerprint() } else { self.chunker.fingerprint() };
        let model = self.embedder.as_ref().map(|e| e.model_id()).unwrap_or_default();
        content_hash(&format!("{}\u{0}{meta}\u{0}{chunker}\u{0}{model}", doc.text))
    }

    /// Ingests files and folders (`.txt`, `.md`, BEIR `.jsonl`). Unchanged documents are skipped
    /// without embedding; changed ones have their chunks replaced; with `prune`, documents that
    /// came from these roots before and are gone now are removed. Safe to interrupt at any point:
    /// re-running converges on the state of one clean ingest.
    pub async fn ingest(&self, paths: &[PathBuf], prune: bool, progress: Option<Progress>) -> Result<IngestReport> {
        let start = Instant::now();
        let before = self.counters();
        let (files, mut skipped) = readers::scan(paths)?;
        // Every JSONL line is checked before anything is written: a malformed corpus loses nothing.
        let mut total = 0u64;
        for f in &files {
            total += if f.kind == SourceKind::Jsonl { readers::validate_jsonl(&f.path)? as u64 } else { 1 };
        }
        let roots: BTreeSet<String> = files
            .iter()
            .map(|f| f.root.clone())
            .chain(paths.iter().filter_map(|p| p.canonicalize().ok()).map(|p| p.display().to_string()))
            .collect();
        let mut report = IngestReport::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut batch: Vec<Pending> = Vec::new();
        let mut batch_chunks = 0usize;
        let mut done = 0u64;
        for file in &files {
            let docs: Box<dyn Iterator<Item = Result<Document>>> = match file.kind {
                SourceKind::Jsonl => Box::new(JsonlReader::open(&file.path)?),
                _ => match readers::read_text(file)? {
                    Ok(d) => Box::new(std::iter::once(Ok(d))),
                    Err(skip) => {
                        tracing::warn!(path = %skip.path, reason = %skip.reason, "skipped");
                        skipped.push(skip);
                        done += 1;
                        continue;
                    }
                },
            };
            let markdown = file.kind == SourceKind::Markdown;
            for doc in docs {
                let doc = doc?;
                done += 1;
                if !seen.insert(doc.id.clone()) {
                    return Err(RagError::invalid_input(
                        file.path.display().to_string(),
                        format!("document id `{}` appears twice in this ingest: ids must be unique", doc.id),
                    ));
                }
                report.documents += 1;
                let hash = self.doc_hash(&doc, markdown);
                let old = self.manifest.get(&doc.id)?;
                if old.as_ref().is_some_and(|e| e.hash.as_deref() == Some(hash.as_str())) {
                    report.unchanged += 1;
                    continue;
                }
                let chunker = if markdown { &self.markdown_chunker } else { &self.chunker };
                let chunks = chunker.chunk(&doc).await?;
                batch_chunks += chunks.len();
                batch.push(Pending { doc_id: doc.id, hash, root: file.root.clone(), chunks, old });
                if batch.len() >= 64 || batch_chunks >= 512 {
                    report.chunks += self.write_batch(std::mem::take(&mut batch)).await?;
                    batch_chunks = 0;
                    if let Some(p) = &progress {
                        p(done, total);
                    }
                }
            }
        }
        report.chunks += self.write_batch(batch).await?;
        if let Some(p) = &progress {
            p(total, total);
        }
        if prune {
            report.removed = self.prune(&roots, &seen).await?;
        }
        let after = self.counters();
        report.embedded = after.embedded - before.embedded;
        report.cache_hits = after.hits - before.hits;
        if self.cache_probe.is_none() {
            report.embedded = report.chunks * u64::from(self.embedder.is_some());
        }
        report.skipped = skipped;
        report.seconds = start.elapsed().as_secs_f64();
        report.peak_rss_mb = peak_rss_mb();
        Ok(report)
    }

    /// Writes documents: pending manifest entries, then vectors and keyword entries, then stale
    /// deletions, then final manifest entries. Returns chunks written.
    async fn write_batch(&self, batch: Vec<Pending>) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let pending: Vec<(String, ManifestEntry)> = batch
            .iter()
            .map(|p| {
                let mut ids: BTreeSet<String> = p.chunks.iter().map(|c| c.id.clone()).collect();
                if let Some(o) = &p.old {
                    ids.extend(o.chunk_ids.iter().cloned());
                }
                (p.doc_id.clone(), ManifestEntry { hash: None, chunk_ids: ids.into_iter().collect(), root: p.root.clone() })
            })
            .collect();
        self.manifest.put_many(&pending)?;
        let chunks: Vec<&Chunk> = batch.iter().flat_map(|p| p.chunks.iter()).collect();
        // Embed and upsert in slices so memory stays bounded by the slice, not the batch.
        if let (Some(embedder), Some(store)) = (&self.embedder, &self.store) {
            for slice in chunks.chunks(self.embed_batch) {
                let texts: Vec<String> = slice.iter().map(|c| readers::titled_text(c)).collect();
                let vectors = embedder.embed(texts).await?;
                if vectors.len() != slice.len() {
                    return Err(RagError::permanent(
                        "embedder",
                        format!("returned {} vectors for {} chunks", vectors.len(), slice.len()),
                    ));
                }
                let embedded =
                    slice.iter().zip(vectors).map(|(c, v)| EmbeddedChunk { chunk: (*c).clone(), embedding: v }).collect();
                store.upsert(embedded).await?;
            }
        }
        let owned: Vec<Chunk> = chunks.iter().map(|c| (*c).clone()).collect();
        let stale: Vec<String> = batch
            .iter()
            .flat_map(|p| {
                let new: HashSet<&str> = p.chunks.iter().map(|c| c.id.as_str()).collect();
                p.old
                    .iter()
                    .flat_map(|o| o.chunk_ids.iter())
                    .filter(move |id| !new.contains(id.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some(store) = &self.store
            && !stale.is_empty()
        {
            store.delete(stale.clone()).await?;
        }
        self.keyword_write(move |k| {
            k.upsert(&owned)?;
            k.delete(&stale)
        })
        .await?;
        let fin: Vec<(String, ManifestEntry)> = batch
            .iter()
            .map(|p| {
                (
                    p.doc_id.clone(),
                    ManifestEntry {
                        hash: Some(p.hash.clone()),
                        chunk_ids: p.chunks.iter().map(|c| c.id.clone()).collect(),
                        root: p.root.clone(),
                    },
                )
            })
            .collect();
        self.manifest.put_many(&fin)?;
        Ok(chunks.len() as u64)
    }

    /// Applies `f` to the keyword index and commits, off the async runtime (tantivy blocks).
    async fn keyword_write(&self, f: impl FnOnce(&KeywordIndex) -> Result<()> + Send + 'static) -> Result<()> {
        let keyword = self.keyword.clone();
        tokio::task::spawn_blocking(move || {
            f(&keyword)?;
            keyword.commit()
        })
        .await
        .map_err(|e| RagError::Other(format!("keyword index task failed: {e}")))?
    }

    async fn prune(&self, roots: &BTreeSet<String>, seen: &HashSet<String>) -> Result<u64> {
        let gone: Vec<(String, ManifestEntry)> =
            self.manifest.all()?.into_iter().filter(|(id, e)| roots.contains(&e.root) && !seen.contains(id)).collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = gone.iter().flat_map(|(_, e)| e.chunk_ids.iter().cloned()).collect();
        if let Some(store) = &self.store {
            store.delete(ids.clone()).await?;
        }
        self.keyword_write(move |k| k.delete(&ids)).await?;
        let doc_ids: Vec<String> = gone.iter().map(|(id, _)| id.clone()).collect();
        self.manifest.remove_many(&doc_ids)?;
        Ok(doc_ids.len() as u64)
    }

    /// The retriever for `mode`, built from the pipeline's parts.
    pub fn retriever(&self, mode: RetrievalMode) -> Result<HybridRetriever> {
        let dense = match (&self.embedder, &self.store) {
            (Some(e), Some(s)) => Some(DenseSide { embedder: e.clone(), store: s.clone() }),
            _ => None,
        };
        let r = match (mode, dense) {
            (RetrievalMode::Bm25, _) => HybridRetriever::keyword_only(self.keyword.clone()),
            (RetrievalMode::Dense, Some(d)) => HybridRetriever::dense_only(d),
            (RetrievalMode::Hybrid, Some(d)) => HybridRetriever::hybrid(d, self.keyword.clone(), self.fusion),
            (m, None) => {
                return Err(RagError::config(format!(
                    "{m:?} retrieval needs an embedder and a vector store; this pipeline has none (use bm25)"
                )));
            }
        };
        Ok(r.candidates(self.candidates))
    }

    async fn ensure_not_empty(&self) -> Result<()> {
        // Ingest writes both; the in-memory keyword count settles it without a store round trip.
        if self.keyword.count() > 0 {
            return Ok(());
        }
        let vectors = match &self.store {
            Some(s) => s.count().await?,
            None => 0,
        };
        if vectors == 0 {
            return Err(RagError::not_found(
                format!("anything in collection `{}` ({})", self.collection, self.data_dir.display()),
                Some("it is empty: run `rag ingest PATH` first"),
            ));
        }
        Ok(())
    }

    /// Retrieves (and reranks, if asked) the chunks for `question`, recording timings and
    /// degradations.
    pub async fn retrieve(
        &self,
        question: &str,
        opts: &QueryOptions,
        timings: &mut StageTimings,
        degraded: &mut Vec<String>,
    ) -> Result<Vec<ScoredChunk>> {
        let mode = opts.mode.unwrap_or(self.mode);
        let k = opts.k.unwrap_or(self.k);
        let rerank = opts.rerank.unwrap_or(self.rerank);
        if rerank && self.reranker.is_none() {
            return Err(RagError::config("reranking was asked for, but no reranker is configured (set rerank.model)"));
        }
        let first_k = if rerank { self.initial_k.max(k) } else { k };
        let mut q = RetrievalQuery::new(question, first_k);
        q.filter = opts.filter.clone();
        let start = Instant::now();
        let (hits, t) = self.retriever(mode)?.retrieve_timed(q).await?;
        timings.extend(t);
        // Wall time of retrieval (the two sides run concurrently, so this is not their sum).
        timings.insert("retrieve".into(), start.elapsed().as_secs_f64() * 1000.0);
        match (&self.reranker, rerank) {
            (Some(r), true) if !hits.is_empty() => {
                let start = Instant::now();
                let final_k = opts.k.unwrap_or(self.final_k);
                let result = r.rerank(question.to_owned(), hits.clone(), final_k).await;
                timings.insert("rerank".into(), start.elapsed().as_secs_f64() * 1000.0);
                match result {
                    Ok(reranked) => Ok(reranked),
                    Err(e) => {
                        tracing::warn!(error = %e, "reranker failed: using first-stage order");
                        degraded.push(format!("reranker failed ({e}); used the first-stage order"));
                        Ok(hits.into_iter().take(final_k).collect())
                    }
                }
            }
            _ => Ok(hits),
        }
    }

    fn citations(&self, packed: &rag_chunk::PackedContext, used: &[String]) -> Vec<Citation> {
        let cite = |(i, p): (usize, &rag_chunk::PackedChunk)| Citation {
            number: i + 1,
            chunk_id: p.chunk.chunk.id.clone(),
            doc_id: p.chunk.chunk.doc_id.clone(),
            score: p.chunk.score,
            text: p.chunk.chunk.text.clone(),
            span: [p.chunk.chunk.span.start, p.chunk.chunk.span.end],
            source: p.chunk.chunk.metadata.get("source").and_then(MetadataValue::as_str).map(str::to_owned),
        };
        let all = packed.chunks.iter().enumerate();
        let cited: Vec<Citation> = all.clone().filter(|(_, p)| used.contains(&p.chunk.chunk.id)).map(cite).collect();
        if cited.is_empty() { all.map(cite).collect() } else { cited }
    }

    /// Answers `question`: retrieve, rerank if configured, pack the context window, generate.
    /// A failing reranker, LM or cache degrades (and says so in `degraded`); it does not fail.
    pub async fn query(&self, question: &str, opts: &QueryOptions) -> Result<QueryResult> {
        if question.trim().is_empty() {
            return Err(RagError::invalid_input("question", "the question is empty"));
        }
        let start = Instant::now();
        self.ensure_not_empty().await?;
        let mut timings = StageTimings::new();
        let mut degraded = Vec::new();
        let hits = self.retrieve(question, opts, &mut timings, &mut degraded).await?;
        let t = Instant::now();
        let packed = self.window.pack(question, &hits);
        timings.insert("pack".into(), t.elapsed().as_secs_f64() * 1000.0);
        let request = GenerationRequest { question: question.to_owned(), context: packed.passages() };
        let t = Instant::now();
        let generation = match tokio::time::timeout(self.generation_timeout, self.generator.generate(request.clone())).await {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "generator failed: answering extractively");
                degraded.push(format!("generator `{}` failed ({e}); answered extractively", self.generator.name()));
                self.fallback.answer(&request)
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.generation_timeout, "generator timed out: answering extractively");
                degraded.push(format!(
                    "generator `{}` timed out after {:?}; answered extractively",
                    self.generator.name(),
                    self.generation_timeout
                ));
                self.fallback.answer(&request)
            }
        };
        timings.insert("generate".into(), t.elapsed().as_secs_f64() * 1000.0);
        timings.insert("total".into(), start.elapsed().as_secs_f64() * 1000.0);
        Ok(QueryResult {
            citations: self.citations(&packed, &generation.used_context_ids),
            answer: generation.answer,
            generator: generation.generator,
            reasoning: generation.reasoning,
            timings_ms: timings,
            degraded,
        })
    }

    /// Answers many questions with at most `concurrency` in flight; results keep input order.
    pub async fn batch_query(&self, questions: &[String], opts: &QueryOptions, concurrency: usize) -> Vec<Result<QueryResult>> {
        futures::stream::iter(questions.iter().map(|q| self.query(q, opts))).buffered(concurrency.max(1)).collect().await
    }

    /// Like [`RagPipeline::query`], but the answer arrives as a stream of events; the returned
    /// result carries citations and retrieval timings (its `answer` is empty).
    pub async fn stream_query(
        &self,
        question: &str,
        opts: &QueryOptions,
    ) -> Result<(QueryResult, BoxStream<'static, Result<GenerationEvent>>)> {
        if question.trim().is_empty() {
            return Err(RagError::invalid_input("question", "the question is empty"));
        }
        self.ensure_not_empty().await?;
        let mut timings = StageTimings::new();
        let mut degraded = Vec::new();
        let hits = self.retrieve(question, opts, &mut timings, &mut degraded).await?;
        let packed = self.window.pack(question, &hits);
        let request = GenerationRequest { question: question.to_owned(), context: packed.passages() };
        let stream = match self.generator.generate_stream(request.clone()).await {
            Ok(s) => s,
            Err(e) => {
                degraded.push(format!("generator `{}` failed ({e}); answered extractively", self.generator.name()));
                let g = self.fallback.answer(&request);
                Box::pin(futures::stream::once(async move { Ok(GenerationEvent::Final(g)) }))
            }
        };
        let head = QueryResult {
            answer: String::new(),
            generator: self.generator.name(),
            reasoning: None,
            citations: self.citations(&packed, &[]),
            timings_ms: timings,
            degraded,
        };
        Ok((head, stream))
    }

    /// Counts, backends and models.
    pub async fn stats(&self) -> Result<Stats> {
        let store = match &self.store {
            Some(s) => Some(s.describe().await?),
            None => None,
        };
        let mut backends = self.backends.clone();
        backends.insert("data_dir".into(), self.data_dir.display().to_string());
        Ok(Stats {
            collection: self.collection.clone(),
            documents: self.manifest.documents()?,
            chunks: store.as_ref().map_or(self.keyword.count(), |s| s.count),
            keyword_chunks: self.keyword.count(),
            backends,
            store,
        })
    }
}
