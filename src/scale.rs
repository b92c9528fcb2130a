//! `rag bench --scale N`: how a collection behaves at N chunks, without embedding N texts.
//!
//! SciFact goes in as it is (its real chunks, their real vectors from the embedding cache),
//! then N distractor documents go in through the same [`RagPipeline::ingest`]: texts sampled
//! from the corpus's own words (so BM25 walks real postings) and vectors drawn near real chunk
//! vectors (so the ANN graph has real neighbourhoods), both from a seed. A wrapping embedder
//! hands out the distractors' vectors instead of calling the model; everything else (chunking,
//! the ingest record, the keyword index, the store's upserts) is the normal write path.
//!
//! Measured: the load, the wait for the store's index, memory and disk, dense and hybrid
//! latency at each concurrency (query vectors cached), ANN recall@10 against an exact search
//! over every vector, and SciFact nDCG@10 without and with the distractors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rag_core::{
    Document, DocumentSource, DocumentStream, Embedder, Filter, RagError, Result, SourceDocument, SourceItem, TextFormat,
    VectorQuery, VectorStore,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::bench::percentile;
use crate::eval::{BeirDataset, run_eval};
use crate::ingest::IngestOptions;
use crate::pipeline::{Progress, RagPipeline};
use crate::query::QueryOptions;
use crate::retrieve::RetrievalMode;
use crate::sources::FileSource;

/// The metadata key that carries a distractor's tenant (`t0` to `t{tenants - 1}`).
pub const TENANT_KEY: &str = "tenant";
/// The origin of the distractor documents (`rag ingest --prune` of other origins leaves them).
pub const DISTRACTOR_ORIGIN: &str = "scale-distractors";
/// Words in a distractor text. At most 90 keeps each one a single chunk under the shipped
/// chunkers and inside MiniLM's 256-token window, so every distractor has exactly one vector.
const WORDS: (usize, usize) = (30, 90);
/// The cosine between a distractor and the real chunk it is drawn near: close enough to crowd
/// real neighbourhoods, far enough not to be a copy.
const NEAR: (f32, f32) = (0.55, 0.85);
/// How long the store may take to finish indexing before the benchmark gives up.
const INDEX_WAIT: Duration = Duration::from_secs(3 * 3600);
/// Rounds over the test queries at each latency level (600 queries: a p99 of 6 samples).
const LATENCY_ROUNDS: usize = 2;
/// At most this many one-tenant queries a level, one round: without a tenant index each one
/// scans, seconds apiece at a million chunks.
const TENANT_QUERIES: usize = 100;
/// The k of the recall and latency queries.
const K: usize = 10;

/// Told each phase of a scale run as it starts.
pub type PhaseReport = Arc<dyn Fn(&str) + Send + Sync>;

/// What to build and measure.
#[derive(Clone)]
pub struct ScaleOptions {
    /// Distractor documents (one chunk each) added to SciFact.
    pub distractors: usize,
    /// Test queries whose ANN top 10 is compared with an exact search (the first ones by id).
    pub recall_queries: usize,
    /// Tenants the distractors are spread over (`tenant` = `t0`...); 0 gives them no tenant.
    /// With tenants, dense latency is also measured with a one-tenant filter (on the first
    /// 100 test queries, once).
    pub tenants: usize,
    /// Queries in flight at once: one latency level each.
    pub concurrency: Vec<usize>,
    /// Seed of the distractors' texts and vectors.
    pub seed: u64,
    /// Called with each phase as it starts (`"loading 1000000 distractors"`).
    pub on_phase: Option<PhaseReport>,
    /// Progress of the distractor load (documents done, total).
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for ScaleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleOptions")
            .field("distractors", &self.distractors)
            .field("recall_queries", &self.recall_queries)
            .field("tenants", &self.tenants)
            .field("concurrency", &self.concurrency)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl ScaleOptions {
    /// `distractors` distractors, recall on 200 queries, no tenants, concurrency 1 and 16, seed 42.
    pub fn new(distractors: usize) -> Self {
        Self { distractors, recall_queries: 200, tenants: 0, concurrency: vec![1, 16], seed: 42, on_phase: None, progress: None }
    }

    fn phase(&self, what: &str) {
        tracing::info!("{what}");
        if let Some(f) = &self.on_phase {
            f(what);
        }
    }
}

/// Which query path a latency level measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyPath {
    /// The vector store's nearest-neighbour query alone (no model, no fusion).
    Dense,
    /// The pipeline's hybrid retrieval (dense + keyword, fused), query embedding cached.
    Hybrid,
    /// The store's query with a one-tenant filter (`tenant = tN`).
    TenantDense,
}

impl std::fmt::Display for LatencyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dense => "dense",
            Self::Hybrid => "hybrid",
            Self::TenantDense => "dense, one tenant",
        })
    }
}

/// One latency level.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleLatency {
    /// The query path.
    pub path: LatencyPath,
    /// In flight at once.
    pub concurrency: usize,
    /// Queries run.
    pub queries: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Queries per second over the level.
    pub qps: f64,
}

/// SciFact nDCG@10 of one retrieval mode before and after the distractors went in.
#[derive(Debug, Clone, Serialize)]
pub struct DistractorCost {
    /// The retrieval mode.
    pub mode: RetrievalMode,
    /// nDCG@10 of the 300 test queries on SciFact alone.
    pub without: f64,
    /// The same queries with the distractors in the collection.
    pub with: f64,
}

/// What `rag bench --scale` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// The collection built.
    pub collection: String,
    /// The pipeline's backends (`store`, `embedder`, ...).
    pub backends: BTreeMap<String, String>,
    /// The store's own description after the run (mode, status, indexed vectors).
    pub store_details: BTreeMap<String, String>,
    /// SciFact's chunks.
    pub real_chunks: usize,
    /// Distractor chunks written.
    pub distractor_chunks: u64,
    /// Chunks the store holds at the end.
    pub chunks: usize,
    /// Seconds to write the distractors through the pipeline.
    pub load_seconds: f64,
    /// Distractor chunks written per second.
    pub load_chunks_per_s: f64,
    /// Seconds the store then took to finish indexing (0 where it indexes as it writes).
    pub index_wait_seconds: f64,
    /// This process's resident memory at the end, MiB (an embedded store lives in it).
    pub rss_mb: Option<f64>,
    /// This process's peak resident memory, MiB.
    pub peak_rss_mb: Option<f64>,
    /// The collection's local directory, MiB (a server store keeps its data on the server).
    pub disk_mb: Option<f64>,
    /// Mean overlap of the store's top 10 with the exact top 10 (cosine over every vector).
    pub recall_at_10: f64,
    /// Queries in the recall measurement.
    pub recall_queries: usize,
    /// Latency levels.
    pub latency: Vec<ScaleLatency>,
    /// What the distractors cost SciFact's nDCG@10.
    pub ndcg_at_10: Vec<DistractorCost>,
    /// Seconds for the whole run.
    pub seconds: f64,
}

/// The distractors: text and vector of document `i`, each from the seed and `i` alone.
struct Distractors {
    seed: u64,
    tenants: usize,
    /// Real chunk vectors the distractors are drawn near.
    real: Arc<Vec<Vec<f32>>>,
    /// Word counts of the real chunks (a distractor is as long as its real neighbour, capped).
    real_words: Vec<usize>,
    /// Every word of the corpus in order: a uniform draw is a draw by corpus frequency.
    vocabulary: Vec<String>,
}

impl Distractors {
    fn id(i: usize) -> String {
        format!("distractor-{i:07}")
    }

    /// Document `i`'s generator for one purpose (0: vector, 1: text), reproducible anywhere.
    fn rng(&self, i: usize, purpose: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(i as u64 * 2 + purpose);
        r
    }

    /// The real chunk distractor `i` is drawn near, and how near.
    fn base(&self, r: &mut ChaCha8Rng) -> (usize, f32) {
        (r.random_range(0..self.real.len()), r.random_range(NEAR.0..NEAR.1))
    }

    fn text(&self, i: usize) -> String {
        let (base, _) = self.base(&mut self.rng(i, 0));
        let mut r = self.rng(i, 1);
        let words = self.real_words[base].clamp(WORDS.0, WORDS.1);
        let mut text = String::with_capacity(words * 9);
        for w in 0..words {
            if w > 0 {
                text.push(' ');
            }
            text.push_str(&self.vocabulary[r.random_range(0..self.vocabulary.len())]);
        }
        text
    }

    /// A unit vector at cosine `c` from its real chunk: `u + t·n` with `n` a random unit
    /// direction (nearly orthogonal to `u` in 384 dimensions) and `t = sqrt(1/c² - 1)`.
    fn vector(&self, i: usize) -> Vec<f32> {
        let mut r = self.rng(i, 0);
        let (base, cos) = self.base(&mut r);
        let u = &self.real[base];
        let noise: Vec<f32> = (0..u.len()).map(|_| r.sample::<f32, _>(StandardNormal)).collect();
        let scale = (1.0 / (cos * cos) - 1.0).sqrt() / norm(&noise).max(f32::MIN_POSITIVE);
        let u_norm = norm(u).max(f32::MIN_POSITIVE);
        let v: Vec<f32> = u.iter().zip(&noise).map(|(a, n)| a / u_norm + scale * n).collect();
        let n = norm(&v).max(f32::MIN_POSITIVE);
        v.into_iter().map(|x| x / n).collect()
    }

    fn document(&self, i: usize) -> Document {
        let d = Document::new(Self::id(i), self.text(i));
        match self.tenants {
            0 => d,
            t => d.with_metadata(TENANT_KEY, format!("t{}", i % t)),
        }
    }
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Dot product in eight lanes (the compiler vectorises it; a plain fold would stay serial).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn text_key(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The distractors as a [`DocumentSource`], generated as the ingest reads them.
struct DistractorSource {
    distractors: Arc<Distractors>,
    count: usize,
}

#[async_trait]
impl DocumentSource for DistractorSource {
    async fn open(&self) -> Result<DocumentStream> {
        let d = self.distractors.clone();
        let items = futures::stream::iter(0..self.count)
            .map(move |i| Ok(SourceItem::Document(SourceDocument::new(d.document(i), TextFormat::Plain, DISTRACTOR_ORIGIN))))
            .boxed();
        Ok(DocumentStream { total: Some(self.count as u64), origins: vec![DISTRACTOR_ORIGIN.into()], items })
    }
}

/// The pipeline's embedder with the distractors' vectors in front: a distractor text gets its
/// generated vector, anything else goes to the model (through its cache) as before.
struct DistractorEmbedder {
    inner: Arc<dyn Embedder>,
    distractors: Arc<Distractors>,
    /// Text key to distractor number.
    known: HashMap<u64, u32>,
    /// Texts that went to the model while distractors were being written (must stay 0).
    model_texts: AtomicU64,
}

#[async_trait]
impl Embedder for DistractorEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> =
            texts.iter().map(|t| self.known.get(&text_key(t)).map(|&i| self.distractors.vector(i as usize))).collect();
        let missing: Vec<usize> = out.iter().enumerate().filter(|(_, v)| v.is_none()).map(|(i, _)| i).collect();
        if !missing.is_empty() {
            self.model_texts.fetch_add(missing.len() as u64, Ordering::Relaxed);
            let vectors = self.inner.embed(missing.iter().map(|&i| texts[i].clone()).collect()).await?;
            if vectors.len() != missing.len() {
                return Err(RagError::permanent(
                    "embedder",
                    format!("returned {} vectors for {} texts", vectors.len(), missing.len()),
                ));
            }
            for (i, v) in missing.into_iter().zip(vectors) {
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    /// The model's id: the real documents' ingest records stay valid with it in front.
    fn model_id(&self) -> String {
        self.inner.model_id()
    }

    fn max_input_tokens(&self) -> Option<usize> {
        self.inner.max_input_tokens()
    }
}

/// A real chunk's identity in results: (document id, position in it).
type ChunkKey = (String, usize);

/// Builds the collection in `pipeline` (which must be empty) and measures it.
pub async fn run_scale(mut pipeline: RagPipeline, dataset: &Path, opts: &ScaleOptions) -> Result<ScaleReport> {
    let start = Instant::now();
    if opts.concurrency.contains(&0) || opts.recall_queries == 0 {
        return Err(RagError::invalid_input("rag bench --scale", "concurrency levels and recall queries must be at least 1"));
    }
    // Checked before any work: the distractors are numbered in a u32.
    let count = u32::try_from(opts.distractors)
        .map_err(|_| RagError::invalid_input("--scale", format!("at most {} distractors", u32::MAX)))?;
    let (Some(embedder), Some(store)) = (pipeline.embedder.clone(), pipeline.store.clone()) else {
        return Err(RagError::config("rag bench --scale measures a vector store: configure store.backend and an embedder"));
    };
    let held = store.count().await?;
    if held > 0 {
        return Err(RagError::invalid_input(
            "rag bench --scale",
            format!(
                "collection {} already holds {held} chunks (a previous scale run?): the benchmark builds its own; \
             drop that collection on the store (or pick another with --collection) and run it again",
                pipeline.collection
            ),
        ));
    }
    let data = BeirDataset::load(dataset)?;

    opts.phase("chunking and embedding SciFact (the embedding cache makes a second run quick)");
    let (keys, real, real_words, vocabulary) = real_chunks(&pipeline, embedder.as_ref(), dataset).await?;
    let real = Arc::new(real);

    opts.phase("SciFact alone: nDCG@10, dense and hybrid");
    let mut without = Vec::new();
    for mode in [RetrievalMode::Dense, RetrievalMode::Hybrid] {
        without.push((mode, run_eval(&pipeline, dataset, mode, false, None, None).await?.ndcg_at_10));
    }

    let distractors =
        Arc::new(Distractors { seed: opts.seed, tenants: opts.tenants, real: real.clone(), real_words, vocabulary });
    let mut known = HashMap::with_capacity(opts.distractors);
    for i in 0..count {
        known.insert(text_key(&distractors.text(i as usize)), i);
    }
    let wrapped = Arc::new(DistractorEmbedder {
        inner: embedder.clone(),
        distractors: distractors.clone(),
        known,
        model_texts: AtomicU64::new(0),
    });
    pipeline.embedder = Some(wrapped.clone());

    opts.phase(&format!("loading {} distractors through the pipeline", opts.distractors));
    let load = Instant::now();
    let mut ingest = IngestOptions::new();
    if let Some(p) = opts.progress.clone() {
        ingest = ingest.progress(move |done, total| p(done, total));
    }
    let report = pipeline.ingest(DistractorSource { distractors: distractors.clone(), count: opts.distractors }, ingest).await?;
    let load_seconds = load.elapsed().as_secs_f64();
    let spilled = wrapped.model_texts.load(Ordering::Relaxed);
    if spilled > 0 || report.chunks != opts.distractors as u64 {
        return Err(RagError::internal(format!(
            "{} distractors became {} chunks and {spilled} texts reached the model: a distractor must be one chunk \
             (chunker.max_tokens below ~200?)",
            opts.distractors, report.chunks
        )));
    }

    opts.phase("waiting for the store to finish indexing");
    let index_wait_seconds = wait_indexed(store.as_ref()).await?;

    opts.phase("query vectors (cached)");
    let qids: Vec<&String> = data.qrels.keys().collect();
    let questions: Vec<String> = qids.iter().map(|q| data.queries[*q].clone()).collect();
    let vectors = embedder.embed(questions.clone()).await?;

    let n_recall = opts.recall_queries.min(vectors.len());
    opts.phase(&format!("recall@10 on {n_recall} queries against an exact search over every vector"));
    let exact = {
        let (queries, real, d, n) = (vectors[..n_recall].to_vec(), real.clone(), distractors.clone(), opts.distractors);
        tokio::task::spawn_blocking(move || exact_top(&queries, &real, &d, n, K))
            .await
            .map_err(|e| RagError::internal(format!("exact search: {e}")))?
    };
    let mut overlap = 0usize;
    for (q, truth) in vectors[..n_recall].iter().zip(&exact) {
        let found = store.query(VectorQuery { vector: q.clone(), k: K, filter: None }).await?;
        let found: HashSet<ChunkKey> = found.into_iter().map(|h| (h.chunk.doc_id, h.chunk.index)).collect();
        let truth: Vec<ChunkKey> =
            truth.iter().map(|&id| keys.get(id).cloned().unwrap_or_else(|| (Distractors::id(id - keys.len()), 0))).collect();
        overlap += truth.iter().filter(|k| found.contains(*k)).count();
    }
    let recall_at_10 = overlap as f64 / (n_recall * K) as f64;

    let mut latency = Vec::new();
    let rounds: Vec<usize> = (0..questions.len() * LATENCY_ROUNDS).map(|i| i % questions.len()).collect();
    // The store's own query, with or without a filter: no model, no fusion.
    let dense = |i: usize, filter: Option<Filter>| {
        let (store, vector) = (store.clone(), vectors[i].clone());
        async move { store.query(VectorQuery { vector, k: K, filter }).await.map(drop) }
    };
    for &c in &opts.concurrency {
        opts.phase(&format!("latency at concurrency {c}"));
        latency.push(level(LatencyPath::Dense, c, &rounds, |i| dense(i, None)).await?);
        let hybrid = QueryOptions::new().k(K).mode(RetrievalMode::Hybrid);
        latency.push(
            level(LatencyPath::Hybrid, c, &rounds, |i| {
                let (pipeline, question, hybrid) = (&pipeline, &questions[i], &hybrid);
                async move { pipeline.retrieve(question, hybrid).await.map(drop) }
            })
            .await?,
        );
        if opts.tenants > 0 {
            let one_tenant = |i| dense(i, Some(Filter::eq(TENANT_KEY, format!("t{}", i % opts.tenants))));
            latency.push(level(LatencyPath::TenantDense, c, &rounds[..TENANT_QUERIES.min(questions.len())], one_tenant).await?);
        }
    }

    opts.phase("SciFact with the distractors: nDCG@10, dense and hybrid");
    let mut ndcg_at_10 = Vec::new();
    for (mode, before) in without {
        let with = run_eval(&pipeline, dataset, mode, false, None, None).await?.ndcg_at_10;
        ndcg_at_10.push(DistractorCost { mode, without: before, with });
    }
    let described = store.describe().await?;
    Ok(ScaleReport {
        collection: pipeline.collection.clone(),
        backends: pipeline.backends.clone(),
        store_details: described.details,
        real_chunks: keys.len(),
        distractor_chunks: report.chunks,
        chunks: described.count,
        load_seconds,
        load_chunks_per_s: report.chunks as f64 / load_seconds.max(1e-9),
        index_wait_seconds,
        rss_mb: crate::sys::rss_mb(),
        peak_rss_mb: crate::sys::peak_rss_mb(),
        disk_mb: pipeline.data_dir.as_deref().map(|d| dir_bytes(d) as f64 / (1024.0 * 1024.0)),
        recall_at_10,
        recall_queries: n_recall,
        latency,
        ndcg_at_10,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// SciFact's chunks as the pipeline cuts them: their keys, vectors (through the embedder and
/// its cache) and word counts, and every word of the corpus.
async fn real_chunks(
    pipeline: &RagPipeline,
    embedder: &dyn Embedder,
    dataset: &Path,
) -> Result<(Vec<ChunkKey>, Vec<Vec<f32>>, Vec<usize>, Vec<String>)> {
    let mut stream = FileSource::new([dataset.join("corpus.jsonl")]).open().await?.items;
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        if let SourceItem::Document(d) = item? {
            chunks.extend(pipeline.chunk(&d).await?);
        }
    }
    let mut vectors = Vec::with_capacity(chunks.len());
    for batch in chunks.chunks(256) {
        vectors.extend(embedder.embed(batch.iter().map(|c| c.indexed_text()).collect()).await?);
    }
    if vectors.len() != chunks.len() {
        return Err(RagError::permanent("embedder", format!("returned {} vectors for {} chunks", vectors.len(), chunks.len())));
    }
    let words = chunks.iter().map(|c| c.text.split_whitespace().count()).collect();
    let vocabulary = chunks.iter().flat_map(|c| c.text.split_whitespace().map(str::to_owned)).collect();
    Ok((chunks.into_iter().map(|c| (c.doc_id, c.index)).collect(), vectors, words, vocabulary))
}

/// Waits until the store reports its index built (Qdrant: status green twice in a row, two
/// seconds apart, since a write's optimisation may not have begun at the first look). Stores
/// that index as they write report no status and return at once.
async fn wait_indexed(store: &dyn VectorStore) -> Result<f64> {
    let start = Instant::now();
    let mut green = 0;
    loop {
        let status = store.describe().await?.details.get("status").cloned();
        match status.as_deref() {
            None => return Ok(0.0),
            Some("green") => green += 1,
            Some(_) => green = 0,
        }
        if green >= 2 {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > INDEX_WAIT {
            return Err(RagError::transient("vector store", format!("still indexing after {} s", INDEX_WAIT.as_secs())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The exact top `k` of each query by cosine over the real vectors and the `n` distractors
/// (ids: real chunks first, then distractor `i` as `real.len() + i`), on every core.
fn exact_top(queries: &[Vec<f32>], real: &[Vec<f32>], d: &Distractors, n: usize, k: usize) -> Vec<Vec<usize>> {
    let total = real.len() + n;
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).min(total.max(1));
    let per = total.div_ceil(threads.max(1));
    let parts: Vec<Vec<Vec<(f32, usize)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut best: Vec<Vec<(f32, usize)>> = vec![Vec::with_capacity(k + 1); queries.len()];
                    for id in t * per..((t + 1) * per).min(total) {
                        let generated;
                        let v = match real.get(id) {
                            Some(v) => v,
                            None => {
                                generated = d.vector(id - real.len());
                                &generated
                            }
                        };
                        for (q, top) in queries.iter().zip(best.iter_mut()) {
                            keep_best(top, (dot(q, v), id), k);
                        }
                    }
                    best
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    (0..queries.len())
        .map(|q| {
            let mut top = Vec::with_capacity(k * threads);
            for part in &parts {
                for &hit in &part[q] {
                    keep_best(&mut top, hit, k);
                }
            }
            top.into_iter().map(|(_, id)| id).collect()
        })
        .collect()
}

/// Keeps `top` the best `k` by score, best first.
fn keep_best(top: &mut Vec<(f32, usize)>, hit: (f32, usize), k: usize) {
    if top.len() == k && top.last().is_some_and(|last| hit.0 <= last.0) {
        return;
    }
    let at = top.partition_point(|t| t.0 >= hit.0);
    top.insert(at, hit);
    top.truncate(k);
}

/// Runs `query(i)` for each `i` of `rounds`, `concurrency` at a time, and times each.
async fn level<F, Fut>(path: LatencyPath, concurrency: usize, rounds: &[usize], query: F) -> Result<ScaleLatency>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut ms: Vec<f64> = futures::stream::iter(rounds.iter().map(|&i| {
        let q = query(i);
        async move {
            let t = Instant::now();
            q.await.map(|()| t.elapsed().as_secs_f64() * 1000.0)
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<Result<f64>>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let seconds = start.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    Ok(ScaleLatency {
        path,
        concurrency,
        queries: ms.len(),
        p50_ms: percentile(&ms, 50.0),
        p99_ms: percentile(&ms, 99.0),
        qps: ms.len() as f64 / seconds.max(1e-9),
    })
}

/// Bytes under `dir` (0 where it cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distractors() -> Distractors {
        // 64 dimensions: enough for the noise to be nearly orthogonal to the real vector.
        let unit = |d: usize| (0..64).map(|i| if i == d { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
        let real = vec![unit(0), unit(1)];
        Distractors {
            seed: 7,
            tenants: 3,
            real: Arc::new(real),
            real_words: vec![40, 200],
            vocabulary: ["cell", "protein", "gene", "the", "of"].map(String::from).to_vec(),
        }
    }

    #[test]
    fn a_distractor_is_the_same_every_time_and_near_its_real_chunk() {
        let d = distractors();
        assert_eq!(d.text(5), d.text(5));
        assert_eq!(d.vector(5), d.vector(5));
        assert_ne!(d.text(5), d.text(6));
        for i in 0..50 {
            let v = d.vector(i);
            assert!((norm(&v) - 1.0).abs() < 1e-4);
            let best = d.real.iter().map(|u| dot(u, &v)).fold(f32::MIN, f32::max);
            assert!((0.4..0.97).contains(&best), "distractor {i} is not near a real chunk: {best}");
            let words = d.text(i).split(' ').count();
            assert!((WORDS.0..=WORDS.1).contains(&words), "{words} words");
        }
        assert_eq!(d.document(4).metadata.get(TENANT_KEY), Some(&rag_core::MetadataValue::Str("t1".into())));
    }

    #[test]
    fn exact_top_finds_the_nearest_over_real_and_generated_vectors() {
        let d = distractors();
        let queries = vec![d.real[0].clone(), d.vector(17)];
        let top = exact_top(&queries, &d.real, &d, 100, 3);
        assert_eq!(top[0][0], 0, "the real chunk equal to the query comes first");
        assert_eq!(top[1][0], 2 + 17, "distractor 17 is its own nearest");
        assert_eq!(top[1].len(), 3);
        let mut brute: Vec<(f32, usize)> = (0..100).map(|i| (dot(&queries[1], &d.vector(i)), 2 + i)).collect();
        brute.extend(d.real.iter().enumerate().map(|(i, u)| (dot(&queries[1], u), i)));
        brute.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert_eq!(top[1], brute.iter().take(3).map(|b| b.1).collect::<Vec<_>>());
    }

    #[test]
    fn keep_best_holds_the_top_k_in_order() {
        let mut top = Vec::new();
        for (s, id) in [(0.1, 1), (0.9, 2), (0.5, 3), (0.7, 4), (0.2, 5)] {
            keep_best(&mut top, (s, id), 3);
        }
        assert_eq!(top.iter().map(|t| t.1).collect::<Vec<_>>(), vec![2, 4, 3]);
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
    }
}
