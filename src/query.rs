//! Querying: retrieval (built-in or your own [`rag_core::Retriever`]), reranking, context packing and
//! generation, each stage timed, every degradation reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;
use rag_core::{
    Embedder, Filter, GenerationEvent, GenerationRequest, MetadataValue, RagError, Result, RetrievalQuery, ScoredChunk,
    StageTimings,
};
use serde::Serialize;

use crate::pipeline::RagPipeline;
use crate::pipeline::{check_range, defaults};
use crate::retrieve::RetrievalMode;
use crate::retrieve::{DenseSide, HybridRetriever, RetrievalSettings};

/// Per-query overrides of the pipeline's defaults, built with its methods:
/// `QueryOptions::new().k(3).mode(RetrievalMode::Bm25).filter(f)`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct QueryOptions {
    /// Chunks to retrieve and pack (1 to [`defaults::MAX_K`]); `None`: the pipeline's.
    pub k: Option<usize>,
    /// Retrieval side(s); `None`: the pipeline's.
    pub mode: Option<RetrievalMode>,
    /// Whether to rerank.
    pub rerank: Rerank,
    /// Metadata filter.
    pub filter: Option<Filter>,
}

/// Whether a query is reranked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rerank {
    /// As the pipeline is configured.
    #[default]
    Default,
    /// Rerank (the pipeline needs a reranker).
    On,
    /// Do not rerank.
    Off,
}

impl QueryOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }
    /// Chunks to retrieve and pack.
    pub fn k(mut self, k: usize) -> Self {
        self.k = Some(k);
        self
    }
    /// Retrieval side(s).
    pub fn mode(mut self, mode: RetrievalMode) -> Self {
        self.mode = Some(mode);
        self
    }
    /// Rerank or not (`true` needs a reranker).
    pub fn rerank(mut self, yes: bool) -> Self {
        self.rerank = if yes { Rerank::On } else { Rerank::Off };
        self
    }
    /// Metadata filter (all stores and the keyword index apply it before ranking).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// One ranked hit of a retrieval.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Hit {
    /// Rank, from 1.
    pub rank: usize,
    /// Chunk id.
    pub chunk_id: String,
    /// Parent document id.
    pub doc_id: String,
    /// Retrieval (fused or reranker) score.
    pub score: f32,
    /// Byte span of the chunk in its document.
    pub span: [usize; 2],
    /// The chunk text.
    pub text: String,
    /// Source file as named under its ingest root, when known.
    pub source: Option<String>,
    /// The document's title, when it has one.
    pub title: Option<String>,
    /// The pages the chunk covers, for a paged document (PDF).
    pub pages: Option<Pages>,
}

impl Hit {
    /// How a reader names the passage: its document's title (and pages), else its id.
    pub fn label(&self) -> String {
        label(&self.doc_id, self.title.as_deref(), self.pages)
    }
}

/// A passage's name for readers: `title p. 4`, `title`, or the document id (with its pages).
fn label(doc_id: &str, title: Option<&str>, pages: Option<Pages>) -> String {
    let name = title.filter(|t| !t.trim().is_empty()).unwrap_or(doc_id);
    match pages {
        Some(p) => format!("{name} {p}"),
        None => name.to_owned(),
    }
}

/// The pages (from 1) a chunk of a paged document covers; displays as `p. 4` or `pp. 4-5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Pages {
    /// The first page.
    pub first: u32,
    /// The last page (equal to `first` for a chunk on one page).
    pub last: u32,
}

impl Pages {
    /// The pages recorded on a chunk at ingest (`page`, `page_end`), if any.
    pub fn of(chunk: &rag_core::Chunk) -> Option<Self> {
        let page = |key: &str| match chunk.metadata.get(key) {
            Some(MetadataValue::Int(n)) => u32::try_from(*n).ok(),
            Some(MetadataValue::Float(f)) if f.fract() == 0.0 && *f >= 1.0 => Some(*f as u32),
            _ => None,
        };
        let first = page(rag_core::PAGE_KEY)?;
        Some(Self { first, last: page(rag_core::PAGE_END_KEY).unwrap_or(first).max(first) })
    }
}

impl std::fmt::Display for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last { write!(f, "p. {}", self.first) } else { write!(f, "pp. {}-{}", self.first, self.last) }
    }
}

impl Hit {
    fn new(rank: usize, h: &ScoredChunk) -> Self {
        Self {
            rank,
            chunk_id: h.chunk.id.clone(),
            doc_id: h.chunk.doc_id.clone(),
            score: h.score,
            span: [h.chunk.span.start, h.chunk.span.end],
            text: h.chunk.text.clone(),
            source: source(&h.chunk),
            title: title(&h.chunk),
            pages: Pages::of(&h.chunk),
        }
    }
}

/// Hits ranked from 1, as callers see them.
fn ranked(hits: &[ScoredChunk]) -> Vec<Hit> {
    hits.iter().enumerate().map(|(i, h)| Hit::new(i + 1, h)).collect()
}

fn source(c: &rag_core::Chunk) -> Option<String> {
    c.metadata.get("source").and_then(MetadataValue::as_str).map(str::to_owned)
}

fn title(c: &rag_core::Chunk) -> Option<String> {
    c.metadata.get("title").and_then(MetadataValue::as_str).map(str::to_owned)
}

/// What retrieval returns: ranked chunks, per-stage timings, and what degraded.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieval {
    /// The chunks, best first.
    pub hits: Vec<ScoredChunk>,
    /// Per-stage wall time in milliseconds.
    pub timings: StageTimings,
    /// Components that failed and what stood in for them.
    pub degraded: Vec<String>,
}

impl Retrieval {
    /// The hits as reported to callers (rank, ids, score, span).
    pub fn ranked(&self) -> Vec<Hit> {
        ranked(&self.hits)
    }
}

/// What a search returns: the ranked hits (the same [`Hit`]s a [`QueryResult`] reports), with
/// per-stage timings and what degraded. [`RagPipeline::retrieve`] gives the chunks themselves.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SearchResult {
    /// The hits, best first, ranked from 1.
    pub hits: Vec<Hit>,
    /// Per-stage wall time in milliseconds.
    pub timings_ms: BTreeMap<String, f64>,
    /// Components that failed and what stood in for them.
    pub degraded: Vec<String>,
}

/// One cited chunk of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
    /// Source file as named under its ingest root, when known.
    pub source: Option<String>,
    /// The document's title, when it has one.
    pub title: Option<String>,
    /// The pages the passage covers, for a paged document (PDF).
    pub pages: Option<Pages>,
}

impl Citation {
    /// How a reader names the passage: its document's title (and pages), else its id.
    pub fn label(&self) -> String {
        label(&self.doc_id, self.title.as_deref(), self.pages)
    }
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueryResult {
    /// This answer's id (`q-` and 32 random hex digits): what feedback on it names.
    #[serde(default)]
    pub query_id: String,
    /// The answer.
    pub answer: String,
    /// Which generator answered (`extractive`, `dspy:...`).
    pub generator: String,
    /// The model's reasoning, when it gives one.
    pub reasoning: Option<String>,
    /// Cited chunks, in context order.
    pub citations: Vec<Citation>,
    /// The ranked retrieval list that fed the context.
    pub hits: Vec<Hit>,
    /// Per-stage wall time in milliseconds (`embed_query`, `vector_search`, `keyword_search`,
    /// `fusion`, `retrieve` (all of retrieval, wall time), `rerank`, `pack`, `generate`, `total`).
    pub timings_ms: BTreeMap<String, f64>,
    /// Components that failed and what stood in for them.
    pub degraded: Vec<String>,
}

/// A new answer id.
pub fn new_query_id() -> String {
    format!("q-{}", rag_core::random_hex_id())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

impl RagPipeline {
    /// The built-in retriever for `mode`, from the pipeline's parts.
    pub fn retriever(&self, mode: RetrievalMode) -> Result<HybridRetriever> {
        self.retriever_with(&RetrievalSettings { mode, ..self.retrieval.clone() })
    }

    /// The built-in retriever with other settings than the pipeline's (mode, fusion, its
    /// parameters, candidates): what `rag tune` compares.
    pub fn retriever_with(&self, settings: &RetrievalSettings) -> Result<HybridRetriever> {
        self.retriever_embedding_with(settings, self.query_embedder())
    }

    /// [`RagPipeline::retriever_with`], embedding queries with `queries` (an embedder whose
    /// vectors share the stored ones' space: the same model at another precision) instead of
    /// the pipeline's query embedder; `rag tune` compares them this way.
    pub fn retriever_embedding_with(
        &self,
        settings: &RetrievalSettings,
        queries: Option<&Arc<dyn Embedder>>,
    ) -> Result<HybridRetriever> {
        let mode = settings.mode;
        let dense = match (queries, &self.store) {
            (Some(e), Some(s)) => Some(DenseSide { embedder: e.clone(), store: s.clone() }),
            _ => None,
        };
        let r = match (mode, dense) {
            (RetrievalMode::Bm25, _) => HybridRetriever::keyword_only(self.keyword.clone()),
            (RetrievalMode::Dense, Some(d)) => HybridRetriever::dense_only(d),
            (RetrievalMode::Hybrid, Some(d)) => {
                let r = HybridRetriever::hybrid(d, self.keyword.clone(), settings);
                match &self.engine {
                    Some(e) => r.engine(e.clone()),
                    None => r,
                }
            }
            (m, None) => {
                return Err(RagError::config(format!(
                    "{m} retrieval needs an embedder and a vector store; this pipeline has none (use bm25)"
                )));
            }
        };
        Ok(r.candidates(settings.candidates))
    }

    async fn ensure_not_empty(&self) -> Result<()> {
        // Ingest writes both; the keyword count settles it without a store round trip.
        if self.keyword.count().await? > 0 {
            return Ok(());
        }
        let vectors = match &self.store {
            Some(s) => s.count().await?,
            None => 0,
        };
        if vectors == 0 {
            return Err(RagError::EmptyCollection { collection: self.collection.clone() });
        }
        Ok(())
    }

    fn check(question: &str, opts: &QueryOptions) -> Result<()> {
        if question.trim().is_empty() {
            return Err(RagError::invalid_input("question", "the question is empty"));
        }
        if let Some(k) = opts.k {
            check_range("k", k, 1, defaults::MAX_K)?;
        }
        if let Some(f) = &opts.filter {
            f.validate()?;
        }
        Ok(())
    }

    /// Retrieves (and reranks, if asked) the chunks for `question`, with timings and
    /// degradations. A custom retriever ([`crate::RagPipelineBuilder::retriever`]) replaces the
    /// built-in one; asking it for a retrieval mode is an error, since modes are the built-in's.
    pub async fn retrieve(&self, question: &str, opts: &QueryOptions) -> Result<Retrieval> {
        Self::check(question, opts)?;
        self.retrieve_checked(question, opts).await
    }

    /// [`RagPipeline::retrieve`] after [`RagPipeline::check`] has passed.
    async fn retrieve_checked(&self, question: &str, opts: &QueryOptions) -> Result<Retrieval> {
        let k = opts.k.unwrap_or(self.retrieval.k);
        let rerank = match opts.rerank {
            Rerank::Default => self.rerank,
            Rerank::On => true,
            Rerank::Off => false,
        };
        if rerank && self.reranker.is_none() {
            return Err(RagError::config(
                "reranking was asked for, but no reranker is configured (set rerank.cross-encoder.model)",
            ));
        }
        if self.retriever.is_none() && opts.mode.unwrap_or(self.retrieval.mode) != RetrievalMode::Bm25 {
            self.check_dimensions().await?;
        }
        let first_k = if rerank { self.initial_k.max(k) } else { k };
        let mut q = RetrievalQuery::new(question, first_k);
        q.filter = opts.filter.clone();
        let start = Instant::now();
        let (hits, mut timings) = match (&self.retriever, opts.mode) {
            (Some(_), Some(m)) => {
                return Err(RagError::invalid_input(
                    "mode",
                    format!("`{m}` selects a built-in retriever, but this pipeline uses its own: leave the mode unset"),
                ));
            }
            (Some(custom), None) => (custom.retrieve(q).await?, StageTimings::new()),
            (None, mode) => self.retriever(mode.unwrap_or(self.retrieval.mode))?.retrieve_timed(q).await?,
        };
        // Wall time of retrieval (the two sides run concurrently, so this is not their sum).
        timings.insert("retrieve".into(), ms(start));
        let mut degraded = Vec::new();
        let hits = match (&self.reranker, rerank) {
            (Some(r), true) if !hits.is_empty() => {
                let start = Instant::now();
                let final_k = opts.k.unwrap_or(self.final_k);
                let result = r.rerank(question.to_owned(), hits.clone(), final_k).await;
                timings.insert("rerank".into(), ms(start));
                match result {
                    Ok(reranked) => reranked,
                    Err(e) => {
                        tracing::warn!(error = %e, "reranker failed: using first-stage order");
                        degraded.push(format!("reranker failed ({e}); used the first-stage order"));
                        hits.into_iter().take(final_k).collect()
                    }
                }
            }
            _ => hits,
        };
        Ok(Retrieval { hits, timings, degraded })
    }

    /// Ranked hits for `question`, without generating an answer.
    pub async fn search(&self, question: &str, opts: &QueryOptions) -> Result<SearchResult> {
        let Retrieval { hits, timings, degraded } = self.search_chunks(question, opts).await?;
        Ok(SearchResult { hits: ranked(&hits), timings_ms: timings, degraded })
    }

    /// The retrieval behind a search or a query: checks the question, refuses an empty collection.
    async fn search_chunks(&self, question: &str, opts: &QueryOptions) -> Result<Retrieval> {
        Self::check(question, opts)?;
        self.ensure_not_empty().await?;
        self.retrieve_checked(question, opts).await
    }

    fn citations(&self, packed: &rag_chunk::PackedContext, used: &[String]) -> Vec<Citation> {
        let cite = |(i, p): (usize, &rag_chunk::PackedChunk)| Citation {
            number: i + 1,
            chunk_id: p.chunk.chunk.id.clone(),
            doc_id: p.chunk.chunk.doc_id.clone(),
            score: p.chunk.score,
            text: p.chunk.chunk.text.clone(),
            span: [p.chunk.chunk.span.start, p.chunk.chunk.span.end],
            source: source(&p.chunk.chunk),
            title: title(&p.chunk.chunk),
            pages: Pages::of(&p.chunk.chunk),
        };
        let all = packed.chunks.iter().enumerate();
        let cited: Vec<Citation> = all.clone().filter(|(_, p)| used.contains(&p.chunk.chunk.id)).map(cite).collect();
        if cited.is_empty() { all.map(cite).collect() } else { cited }
    }

    /// Answers `question`: retrieve, rerank if configured, pack the context window, generate.
    /// A failing reranker or LM, or one past its deadline, degrades (and says so in
    /// `degraded`); it does not fail the query.
    pub async fn query(&self, question: &str, opts: &QueryOptions) -> Result<QueryResult> {
        let start = Instant::now();
        let Retrieval { hits, mut timings, mut degraded } = self.search_chunks(question, opts).await?;
        let t = Instant::now();
        let packed = self.window.pack(question, &hits);
        timings.insert("pack".into(), ms(t));
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
        timings.insert("generate".into(), ms(t));
        timings.insert("total".into(), ms(start));
        Ok(QueryResult {
            query_id: new_query_id(),
            citations: self.citations(&packed, &generation.used_context_ids),
            hits: ranked(&hits),
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
    /// result carries citations, hits and retrieval timings (its `answer` is empty).
    pub async fn stream_query(
        &self,
        question: &str,
        opts: &QueryOptions,
    ) -> Result<(QueryResult, BoxStream<'static, Result<GenerationEvent>>)> {
        let Retrieval { hits, timings, mut degraded } = self.search_chunks(question, opts).await?;
        let packed = self.window.pack(question, &hits);
        let request = GenerationRequest { question: question.to_owned(), context: packed.passages() };
        let stream = match self.generator.generate_stream(request.clone()).await {
            Ok(s) => rag_core::through_final(s),
            Err(e) => {
                degraded.push(format!("generator `{}` failed ({e}); answered extractively", self.generator.name()));
                let g = self.fallback.answer(&request);
                Box::pin(futures::stream::once(async move { Ok(GenerationEvent::Final(g)) }))
            }
        };
        let head = QueryResult {
            query_id: new_query_id(),
            answer: String::new(),
            generator: self.generator.name(),
            reasoning: None,
            citations: self.citations(&packed, &[]),
            hits: ranked(&hits),
            timings_ms: timings,
            degraded,
        };
        Ok((head, stream))
    }
}

/// A pipeline as a [`rag_core::Retriever`] with fixed [`QueryOptions`] (mode, rerank, filter): what a DSPy
/// program retrieves through (`RustRetriever`), so it gets exactly the retrieval the pipeline
/// is configured for. A query's own filter is combined with the options' (both must hold).
#[derive(Clone)]
pub struct PipelineRetriever {
    pipeline: Arc<RagPipeline>,
    options: QueryOptions,
}

impl std::fmt::Debug for PipelineRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRetriever").field("collection", &self.pipeline.collection).finish_non_exhaustive()
    }
}

impl PipelineRetriever {
    /// Retrieves through `pipeline` with `options` (its `k` is replaced by each query's).
    pub fn new(pipeline: Arc<RagPipeline>, options: QueryOptions) -> Self {
        Self { pipeline, options }
    }
}

#[async_trait::async_trait]
impl rag_core::Retriever for PipelineRetriever {
    async fn retrieve(&self, query: rag_core::RetrievalQuery) -> Result<Vec<ScoredChunk>> {
        let mut opts = self.options.clone().k(query.k);
        opts.filter = match (opts.filter.take(), query.filter) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        };
        Ok(self.pipeline.retrieve(&query.text, &opts).await?.hits)
    }
}
