//! Retrieval tuning over the user's own judged queries (`rag tune`): the settings that need no
//! re-ingest (mode; fusion and its weight or constant; candidates per side; reranking on or off
//! and its depth) and, over corpora ingested with other chunkings (`rag tune --reingest`), the
//! chunking; searched on one seeded half of the queries and reported on the other, with a
//! paired bootstrap interval for the difference from the current configuration.
//!
//! Each setting retrieves every query twice: 30 chunks (enough to rank 10 distinct documents;
//! the setting's own candidates per side, as a production query of a few chunks would use
//! them) for nDCG@10 and MRR@10, and 300 for Recall@100 (as `rag eval` does). Latency is the
//! first retrieval's (and its reranking's), one query at a time, with the query embeddings
//! cached (every query is embedded once before the first setting, so the model's time is alike
//! for all).
//!
//! Reranking is searched where the pipeline has a reranker, after the first-stage search: each
//! corpus's best first-stage setting is tried with the reranker at depths 20, 50 and 100 (and
//! the configuration's own), since a cross-encoder over every setting would cost hundreds of
//! times more than the rest of the search.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use rag_core::{Embedder, RagError, Reranker, Result, RetrievalQuery, ScoredChunk};
use rag_embed::OnnxPrecision;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use rag_core::metrics::{dedup_documents, mrr_at_k, ndcg_at_k, recall_at_k};

use crate::config::{ChunkerConfig, ChunkerKind, RagConfig};
use crate::eval::BeirDataset;
use crate::pipeline::{Progress, RagPipeline};
use crate::retrieve::{Fusion, RetrievalMode, RetrievalSettings};

/// Chunks retrieved for the top-10 metrics: SciFact's documents average ~2.2 chunks, so 30
/// chunks rank at least 10 distinct documents for nearly every query.
const TOP_CHUNKS: usize = 30;
/// Chunks retrieved for Recall@100 (as `rag eval`).
const DEEP_CHUNKS: usize = 300;
/// Bootstrap resamples of the paired difference.
const RESAMPLES: usize = 2000;
/// Fewer report-half queries than this cannot tell most settings apart: said in the report.
pub const MIN_REPORT_QUERIES: usize = 30;
/// Reranking depths (first-stage candidates handed to the reranker) tried beside the
/// configuration's own.
pub const RERANK_DEPTHS: [usize; 3] = [20, 50, 100];
/// Chunk sizes (tokens) `--reingest` tries when none are given.
pub const DEFAULT_CHUNK_SIZES: [usize; 3] = [128, 256, 512];

/// How a tuning run is made.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Seed of the query split and the bootstrap.
    pub seed: u64,
    /// Evaluate at most this many judged queries (all: `None`).
    pub limit: Option<usize>,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self { seed: 42, limit: None }
    }
}

/// Whether a setting reranks, and how many first-stage candidates the reranker sees
/// (`[rerank]`'s `enabled` and `initial_k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RerankChoice {
    /// Rerank every query.
    pub enabled: bool,
    /// First-stage candidates handed to the reranker.
    pub initial_k: usize,
}

/// Everything one searched point fixes: retrieval, reranking and (with re-ingest) chunking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunedSetting {
    /// The retrieval settings (its `k` is the configuration's).
    #[serde(rename = "settings")]
    pub retrieval: RetrievalSettings,
    /// Reranking.
    pub rerank: RerankChoice,
    /// How the corpus was chunked (`None`: as the collection was ingested, not searched).
    pub chunking: Option<ChunkerConfig>,
    /// Queries embedded at this precision against the stored vectors (`None`: as the
    /// pipeline embeds them).
    pub query_precision: Option<OnnxPrecision>,
}

impl TunedSetting {
    /// The configuration's own setting: `[retrieval]`, `[rerank]` and `[chunker]`.
    pub fn from_config(cfg: &RagConfig) -> Self {
        Self {
            retrieval: cfg.retrieval.clone(),
            rerank: RerankChoice { enabled: cfg.rerank.enabled, initial_k: cfg.rerank.initial_k },
            chunking: Some(cfg.chunker.clone()),
            query_precision: None,
        }
    }

    /// A short name (`hybrid rrf k=60 candidates=100 + rerank 50`, with the chunking first when
    /// chunkings are compared).
    pub fn label(&self, with_chunking: bool) -> String {
        let mut out = String::new();
        if let (true, Some(c)) = (with_chunking, &self.chunking) {
            out.push_str(&chunking_label(c));
            out.push_str(" | ");
        }
        out.push_str(&label(&self.retrieval));
        if self.rerank.enabled {
            out.push_str(&format!(" + rerank {}", self.rerank.initial_k));
        }
        if let Some(p) = self.query_precision {
            out.push_str(&format!(" + {p} queries"));
        }
        out
    }
}

/// One corpus the search runs over: a pipeline whose collection holds the judged corpus, and
/// the chunking it was ingested with (`None` when it is not being compared).
#[derive(Clone, Copy)]
pub struct TuneCorpus<'a> {
    /// The pipeline (its reranker, if any, is searched too).
    pub pipeline: &'a RagPipeline,
    /// The chunking its collection was ingested with.
    pub chunking: Option<&'a ChunkerConfig>,
    /// Other query embedders to try on the best dense or hybrid setting: the same model at
    /// another precision (`PipelineFactory::onnx_query_embedder`), vectors in the stored space.
    pub query_embedders: &'a [(OnnxPrecision, Arc<dyn Embedder>)],
}

/// Mean retrieval quality over a set of queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Mean Recall@100.
    pub recall_at_100: f64,
    /// Mean MRR@10.
    pub mrr_at_10: f64,
}

/// One searched setting and how it did.
#[derive(Debug, Clone, Serialize)]
pub struct SettingResult {
    /// A short name (`hybrid convex alpha=0.5 candidates=100`), unique within a run.
    pub label: String,
    /// What the setting fixes (flattened: `settings`, `rerank`, `chunking`).
    #[serde(flatten)]
    pub setting: TunedSetting,
    /// Quality on the tuning half.
    pub tune: Quality,
    /// Quality on the report half.
    pub report: Quality,
    /// Median retrieval latency (ms, one query at a time, reranking included).
    pub p50_ms: f64,
    /// 99th percentile retrieval latency (ms).
    pub p99_ms: f64,
    /// Whether no other setting is both better on the tuning half's nDCG@10 and faster (p50).
    pub pareto: bool,
    #[serde(skip)]
    report_ndcg: Vec<f64>,
}

/// A paired bootstrap 95% interval of a mean difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The observed mean difference.
    pub mean: f64,
    /// 2.5th percentile of the resampled means.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
}

impl Interval {
    /// Whether the interval excludes zero (the difference is real at 95%).
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// What `rag tune` found.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    /// The seed of the split and the bootstrap.
    pub seed: u64,
    /// Query ids settings were chosen on (half A).
    pub tune_queries: Vec<String>,
    /// Query ids the choice is reported on (half B, disjoint from A).
    pub report_queries: Vec<String>,
    /// The configuration's own settings, measured the same way.
    pub current: SettingResult,
    /// The best setting on half A by nDCG@10 (ties: the faster).
    pub chosen: SettingResult,
    /// Chosen minus current nDCG@10 on half B, with its paired bootstrap 95% interval.
    pub difference: Interval,
    /// Every setting searched, in search order.
    pub settings: Vec<SettingResult>,
    /// Why the result may not be trusted (too few queries, an interval that includes 0).
    pub warnings: Vec<String>,
}

/// The first-stage settings searched from `current`: dense, bm25, and hybrid with each fusion
/// (convex alpha 0.3 to 0.7, RRF k 10/30/60, DBSF) at 50, 100 and 200 candidates a side;
/// `current` first. Without a dense side (`has_dense` false) only bm25.
pub fn search_space(current: &RetrievalSettings, has_dense: bool) -> Vec<RetrievalSettings> {
    let mut out = vec![current.clone()];
    let mut push = |s: RetrievalSettings| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    let base = RetrievalSettings { k: current.k, ..RetrievalSettings::default() };
    push(RetrievalSettings { mode: RetrievalMode::Bm25, ..base.clone() });
    if !has_dense {
        out.retain(|s| s.mode == RetrievalMode::Bm25);
        return out;
    }
    push(RetrievalSettings { mode: RetrievalMode::Dense, ..base.clone() });
    for candidates in [50, 100, 200] {
        let hybrid = RetrievalSettings { mode: RetrievalMode::Hybrid, candidates, ..base.clone() };
        for alpha in [0.3, 0.4, 0.5, 0.6, 0.7] {
            push(RetrievalSettings { fusion: Fusion::Convex, alpha, ..hybrid.clone() });
        }
        for rrf_k in [10.0, 30.0, 60.0] {
            push(RetrievalSettings { fusion: Fusion::Rrf, rrf_k, ..hybrid.clone() });
        }
        push(RetrievalSettings { fusion: Fusion::Dbsf, ..hybrid.clone() });
    }
    out
}

/// The reranking depths tried: [`RERANK_DEPTHS`] and the configuration's own, ascending.
pub fn rerank_depths(current: usize) -> Vec<usize> {
    let mut out: Vec<usize> = RERANK_DEPTHS.iter().copied().chain([current]).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The chunkings `rag tune --reingest` compares, `current` first: each of `sizes` as the
/// largest chunk (semantic and markdown; their smallest kept at most half of it) or as the
/// window (token, each with no overlap and with an eighth of the window); and, where there is
/// a dense side to fit chunks to (`has_dense`), the current chunking with fitting to the
/// embedder's window switched.
pub fn chunking_space(current: &ChunkerConfig, sizes: &[usize], has_dense: bool) -> Vec<ChunkerConfig> {
    let mut out = vec![current.clone()];
    let mut push = |c: ChunkerConfig| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    for &size in sizes {
        match current.kind {
            ChunkerKind::Token => {
                for overlap in [0, size / 8] {
                    push(ChunkerConfig { chunk_size: size, overlap, ..current.clone() });
                }
            }
            ChunkerKind::Semantic | ChunkerKind::Markdown => {
                push(ChunkerConfig { max_tokens: size, min_tokens: current.min_tokens.min(size / 2).max(1), ..current.clone() });
            }
        }
    }
    if has_dense {
        push(ChunkerConfig { fit_to_embedder: !current.fit_to_embedder, ..current.clone() });
    }
    out
}

/// A chunking's short name (`semantic 64-512`, `token 256/32`, `unfitted` when chunks are
/// not fitted to the embedder's window).
pub fn chunking_label(c: &ChunkerConfig) -> String {
    let size = match c.kind {
        ChunkerKind::Token => format!("token {}/{}", c.chunk_size, c.overlap),
        kind => format!("{kind} {}-{}", c.min_tokens, c.max_tokens),
    };
    if c.fit_to_embedder { size } else { format!("{size} unfitted") }
}

/// A first-stage setting's short name.
pub fn label(s: &RetrievalSettings) -> String {
    match (s.mode, s.fusion) {
        (RetrievalMode::Hybrid, Fusion::Convex) => format!("hybrid convex alpha={} candidates={}", s.alpha, s.candidates),
        (RetrievalMode::Hybrid, Fusion::Rrf) => format!("hybrid rrf k={} candidates={}", s.rrf_k, s.candidates),
        (RetrievalMode::Hybrid, f) => format!("hybrid {f} candidates={}", s.candidates),
        (m, _) => m.to_string(),
    }
}

/// Splits query ids into two disjoint halves by a seeded shuffle: (tune, report), each sorted.
pub fn split(ids: &[String], seed: u64) -> (Vec<String>, Vec<String>) {
    let mut shuffled = ids.to_vec();
    shuffled.sort();
    shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let report = shuffled.split_off(shuffled.len() / 2);
    let (mut tune, mut report) = (shuffled, report);
    tune.sort();
    report.sort();
    (tune, report)
}

/// The paired bootstrap 95% interval of `mean(a - b)` (same queries, same order).
pub fn paired_bootstrap(a: &[f64], b: &[f64], seed: u64) -> Interval {
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = diffs.len();
    if n == 0 {
        return Interval { mean: 0.0, low: 0.0, high: 0.0 };
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut means: Vec<f64> =
        (0..RESAMPLES).map(|_| (0..n).map(|_| diffs[rand::Rng::random_range(&mut rng, 0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((p * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Interval { mean, low: at(0.025), high: at(0.975) }
}

/// Per-query scores of one setting.
struct Scored {
    ndcg: HashMap<String, f64>,
    recall: HashMap<String, f64>,
    mrr: HashMap<String, f64>,
    latencies: Vec<f64>,
}

/// `hits` with its first `depth` reordered by `reranker` (the rest keep the first-stage order).
async fn reranked(
    reranker: &Arc<dyn Reranker>,
    question: &str,
    mut hits: Vec<ScoredChunk>,
    depth: usize,
) -> Result<Vec<ScoredChunk>> {
    let rest = hits.split_off(depth.min(hits.len()));
    let n = hits.len();
    let mut out = reranker.rerank(question.to_owned(), hits, n).await?;
    out.extend(rest);
    Ok(out)
}

async fn score(
    pipeline: &RagPipeline,
    setting: &TunedSetting,
    queries: Option<&Arc<dyn Embedder>>,
    data: &BeirDataset,
    ids: &[String],
) -> Result<Scored> {
    let retriever = pipeline.retriever_embedding_with(&setting.retrieval, queries.or(pipeline.query_embedder()))?;
    let reranker = match (setting.rerank.enabled, &pipeline.reranker) {
        (false, _) => None,
        (true, Some(r)) => Some((r, setting.rerank.initial_k)),
        (true, None) => return Err(RagError::config("a reranking setting was asked for, but the pipeline has no reranker")),
    };
    let mut s = Scored { ndcg: HashMap::new(), recall: HashMap::new(), mrr: HashMap::new(), latencies: Vec::new() };
    for qid in ids {
        let question = &data.queries[qid];
        let qrels = &data.qrels[qid];
        let start = Instant::now();
        let first_k = reranker.map_or(TOP_CHUNKS, |(_, depth)| depth.max(TOP_CHUNKS));
        let (mut top, _) = retriever.retrieve_timed(RetrievalQuery { text: question.clone(), k: first_k, filter: None }).await?;
        if let Some((r, depth)) = reranker {
            top = reranked(r, question, top, depth).await?;
        }
        s.latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        let docs = dedup_documents(top.iter().map(|h| h.chunk.doc_id.as_str()));
        s.ndcg.insert(qid.clone(), ndcg_at_k(&docs, qrels, 10));
        s.mrr.insert(qid.clone(), mrr_at_k(&docs, qrels, 10));
        let (deep, _) = retriever.retrieve_timed(RetrievalQuery { text: question.clone(), k: DEEP_CHUNKS, filter: None }).await?;
        // Reranking reorders only the head: the reranked list, then the deep list's others.
        let deep = match reranker {
            Some(_) => {
                let seen: HashSet<&str> = top.iter().map(|h| h.chunk.id.as_str()).collect();
                top.iter().chain(deep.iter().filter(|h| !seen.contains(h.chunk.id.as_str()))).cloned().collect()
            }
            None => deep,
        };
        let docs = dedup_documents(deep.iter().map(|h| h.chunk.doc_id.as_str()));
        s.recall.insert(qid.clone(), recall_at_k(&docs, qrels, 100));
    }
    Ok(s)
}

fn quality(s: &Scored, ids: &[String]) -> Quality {
    let mean = |m: &HashMap<String, f64>| ids.iter().map(|q| m[q]).sum::<f64>() / ids.len().max(1) as f64;
    Quality { ndcg_at_10: mean(&s.ndcg), recall_at_100: mean(&s.recall), mrr_at_10: mean(&s.mrr) }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

/// The state of one search: the judged queries, their halves, and what has been measured.
struct Search<'a> {
    data: &'a BeirDataset,
    ids: Vec<String>,
    tune_ids: Vec<String>,
    report_ids: Vec<String>,
    with_chunking: bool,
    results: Vec<SettingResult>,
    progress: Option<Progress>,
    total: u64,
}

impl Search<'_> {
    /// Measures `setting` over `pipeline` (its queries embedded by `queries`, else as the
    /// pipeline embeds them) unless it was measured already; returns its index.
    async fn measure(
        &mut self,
        pipeline: &RagPipeline,
        setting: TunedSetting,
        queries: Option<&Arc<dyn Embedder>>,
    ) -> Result<usize> {
        if let Some(i) = self.results.iter().position(|r| r.setting == setting) {
            return Ok(i);
        }
        let scored = score(pipeline, &setting, queries, self.data, &self.ids).await?;
        let mut lat = scored.latencies.clone();
        lat.sort_by(f64::total_cmp);
        self.results.push(SettingResult {
            label: setting.label(self.with_chunking),
            tune: quality(&scored, &self.tune_ids),
            report: quality(&scored, &self.report_ids),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            pareto: false,
            report_ndcg: self.report_ids.iter().map(|q| scored.ndcg[q]).collect(),
            setting,
        });
        if let Some(p) = &self.progress {
            let done = self.results.len() as u64;
            p(done, self.total.max(done));
        }
        Ok(self.results.len() - 1)
    }

    /// The best of `among` on the tuning half by nDCG@10 (ties: the faster).
    fn best(&self, among: impl Iterator<Item = usize>) -> Option<usize> {
        among.max_by(|&a, &b| {
            let (a, b) = (&self.results[a], &self.results[b]);
            a.tune.ndcg_at_10.total_cmp(&b.tune.ndcg_at_10).then(b.p50_ms.total_cmp(&a.p50_ms))
        })
    }
}

/// Searches [`search_space`] (and reranking, where the pipeline has a reranker) on `data`'s
/// judged queries over `pipeline` (whose collection holds the corpus), choosing on one half
/// and reporting on the other.
pub async fn tune(
    pipeline: &RagPipeline,
    data: &BeirDataset,
    current: &TunedSetting,
    options: &TuneOptions,
    progress: Option<Progress>,
) -> Result<TuneReport> {
    let corpus = TuneCorpus { pipeline, chunking: current.chunking.as_ref(), query_embedders: &[] };
    tune_corpora(&[corpus], data, current, options, progress).await
}

/// [`tune`] over several corpora, each the same documents chunked another way (see
/// [`chunking_space`]); the first must be chunked as `current` is, since the current setting
/// is measured on it.
pub async fn tune_corpora(
    corpora: &[TuneCorpus<'_>],
    data: &BeirDataset,
    current: &TunedSetting,
    options: &TuneOptions,
    progress: Option<Progress>,
) -> Result<TuneReport> {
    let Some(first) = corpora.first() else {
        return Err(RagError::invalid_input("corpora", "tuning needs at least one ingested corpus"));
    };
    let ids: Vec<String> =
        data.qrels.keys().filter(|q| data.queries.contains_key(*q)).take(options.limit.unwrap_or(usize::MAX)).cloned().collect();
    if ids.len() < 2 {
        return Err(RagError::invalid_input(
            "judged queries",
            format!(
                "{} queries with both text and judgments: tuning needs at least 2 (a few hundred to tell settings apart)",
                ids.len()
            ),
        ));
    }
    let (tune_ids, report_ids) = split(&ids, options.seed);
    let plan = |c: &TuneCorpus<'_>| {
        let depths = if c.pipeline.reranker.is_some() { rerank_depths(current.rerank.initial_k).len() } else { 0 };
        search_space(&current.retrieval, c.pipeline.vector_store().is_some()).len() + depths + c.query_embedders.len()
    };
    let total = corpora.iter().map(plan).sum::<usize>() as u64 + 1;
    let mut search =
        Search { data, ids, tune_ids, report_ids, with_chunking: corpora.len() > 1, results: Vec::new(), progress, total };
    if current.rerank.enabled && first.pipeline.reranker.is_none() {
        return Err(RagError::config(
            "the configuration reranks (rerank.enabled), but the pipeline has no reranker: set rerank.cross-encoder.model",
        ));
    }
    // Every query embedded once up front: the embedding cache then serves each setting alike,
    // so the first setting measured does not pay for the model.
    let questions: Vec<String> = search.ids.iter().map(|q| data.queries[q].clone()).collect();
    for corpus in corpora {
        let alternatives = corpus.query_embedders.iter().map(|(_, e)| e);
        for embedder in corpus.pipeline.query_embedder().into_iter().chain(alternatives) {
            for batch in questions.chunks(64) {
                embedder.embed(batch.to_vec()).await?;
            }
        }
    }
    search.measure(first.pipeline, current.clone(), None).await?;
    let off = RerankChoice { enabled: false, ..current.rerank };
    for corpus in corpora {
        let chunking = corpus.chunking.cloned();
        let mut first_stage = Vec::new();
        for retrieval in search_space(&current.retrieval, corpus.pipeline.vector_store().is_some()) {
            let setting = TunedSetting { retrieval, rerank: off, chunking: chunking.clone(), query_precision: None };
            first_stage.push(search.measure(corpus.pipeline, setting, None).await?);
        }
        let mut measured = first_stage.clone();
        if let (Some(_), Some(best)) = (&corpus.pipeline.reranker, search.best(first_stage.into_iter())) {
            let retrieval = search.results[best].setting.retrieval.clone();
            for initial_k in rerank_depths(current.rerank.initial_k) {
                let rerank = RerankChoice { enabled: true, initial_k };
                let setting =
                    TunedSetting { retrieval: retrieval.clone(), rerank, chunking: chunking.clone(), query_precision: None };
                measured.push(search.measure(corpus.pipeline, setting, None).await?);
            }
        }
        // Query precision matters only where queries are embedded: the best dense or hybrid
        // setting of this corpus (reranked or not) with each other query embedder.
        let dense = measured.into_iter().filter(|&i| search.results[i].setting.retrieval.mode != RetrievalMode::Bm25);
        if let Some(best) = search.best(dense) {
            let base = search.results[best].setting.clone();
            for (precision, embedder) in corpus.query_embedders {
                let setting = TunedSetting { query_precision: Some(*precision), ..base.clone() };
                search.measure(corpus.pipeline, setting, Some(embedder)).await?;
            }
        }
    }
    let Search { mut results, tune_ids, report_ids, .. } = search;
    mark_pareto(&mut results);
    let best = results
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| a.tune.ndcg_at_10.total_cmp(&b.tune.ndcg_at_10).then(b.p50_ms.total_cmp(&a.p50_ms)))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let (current_result, chosen) = (results[0].clone(), results[best].clone());
    let difference = paired_bootstrap(&chosen.report_ndcg, &current_result.report_ndcg, options.seed);
    let mut warnings = Vec::new();
    if report_ids.len() < MIN_REPORT_QUERIES {
        warnings.push(format!(
            "only {} report queries: too few to tell settings apart (judge at least {} queries, {MIN_REPORT_QUERIES} a half)",
            report_ids.len(),
            2 * MIN_REPORT_QUERIES
        ));
    }
    if best != 0 && !difference.excludes_zero() {
        warnings.push(format!(
            "the chosen setting's gain on the report half ({:+.4} nDCG@10, 95% interval {:+.4} to {:+.4}) includes 0: \
             it may be noise; keeping the current settings is as good on this evidence",
            difference.mean, difference.low, difference.high
        ));
    }
    Ok(TuneReport {
        seed: options.seed,
        tune_queries: tune_ids,
        report_queries: report_ids,
        current: current_result,
        chosen,
        difference,
        settings: results,
        warnings,
    })
}

/// Marks the settings no other setting beats on both tuning nDCG@10 and p50 latency.
fn mark_pareto(results: &mut [SettingResult]) {
    let points: Vec<(f64, f64)> = results.iter().map(|r| (r.tune.ndcg_at_10, r.p50_ms)).collect();
    for (i, r) in results.iter_mut().enumerate() {
        let (q, t) = points[i];
        r.pareto = !points.iter().enumerate().any(|(j, &(q2, t2))| j != i && q2 >= q && t2 <= t && (q2 > q || t2 < t));
    }
}

/// The configuration keys of `chosen` that differ from `current`, as (dotted key, TOML value):
/// `retrieval.*`, `rerank.enabled` / `rerank.initial_k`, `embedder.onnx.query_precision`, and
/// `chunker.*` where both name a chunking.
pub fn changed_keys(current: &TunedSetting, chosen: &TunedSetting) -> BTreeMap<&'static str, toml_edit::Value> {
    let mut out = BTreeMap::new();
    let (cur, new) = (&current.retrieval, &chosen.retrieval);
    if new.mode != cur.mode {
        out.insert("retrieval.mode", toml_edit::Value::from(new.mode.to_string()));
    }
    if new.fusion != cur.fusion {
        out.insert("retrieval.fusion", toml_edit::Value::from(new.fusion.to_string()));
    }
    if new.candidates != cur.candidates {
        out.insert("retrieval.candidates", toml_edit::Value::from(new.candidates as i64));
    }
    if new.alpha != cur.alpha {
        out.insert("retrieval.alpha", toml_edit::Value::from(f64::from(new.alpha)));
    }
    if new.rrf_k != cur.rrf_k {
        out.insert("retrieval.rrf_k", toml_edit::Value::from(f64::from(new.rrf_k)));
    }
    if chosen.rerank.enabled != current.rerank.enabled {
        out.insert("rerank.enabled", toml_edit::Value::from(chosen.rerank.enabled));
    }
    if chosen.rerank.enabled && chosen.rerank.initial_k != current.rerank.initial_k {
        out.insert("rerank.initial_k", toml_edit::Value::from(chosen.rerank.initial_k as i64));
    }
    if let Some(p) = chosen.query_precision.filter(|p| current.query_precision != Some(*p)) {
        out.insert("embedder.onnx.query_precision", toml_edit::Value::from(p.as_str()));
    }
    if let (Some(cur), Some(new)) = (&current.chunking, &chosen.chunking) {
        let sizes = [
            ("chunker.min_tokens", cur.min_tokens, new.min_tokens),
            ("chunker.max_tokens", cur.max_tokens, new.max_tokens),
            ("chunker.chunk_size", cur.chunk_size, new.chunk_size),
            ("chunker.overlap", cur.overlap, new.overlap),
        ];
        for (key, a, b) in sizes {
            if a != b {
                out.insert(key, toml_edit::Value::from(b as i64));
            }
        }
        if cur.fit_to_embedder != new.fit_to_embedder {
            out.insert("chunker.fit_to_embedder", toml_edit::Value::from(new.fit_to_embedder));
        }
    }
    out
}

/// `text` (a rag.toml, possibly empty) with the dotted keys of `changes` (`retrieval.mode`)
/// set in their tables, every other line (comments included) kept as it was.
pub fn apply_to_toml(text: &str, changes: &BTreeMap<&'static str, toml_edit::Value>) -> Result<String> {
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| RagError::invalid_input("rag.toml", e.to_string()))?;
    for (dotted, value) in changes {
        let Some((section, key)) = dotted.split_once('.') else {
            return Err(RagError::invalid_input("key", format!("`{dotted}` is not a section.key")));
        };
        let table = doc
            .entry(section)
            .or_insert(toml_edit::table())
            .as_table_mut()
            .ok_or_else(|| RagError::invalid_input("rag.toml", format!("`{section}` is not a table")))?;
        table[key] = toml_edit::Item::Value(value.clone());
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::Document;

    #[test]
    fn the_split_is_seeded_disjoint_and_whole() {
        let ids: Vec<String> = (0..101).map(|i| format!("q{i}")).collect();
        let (a, b) = split(&ids, 7);
        assert_eq!((a.len(), b.len()), (50, 51));
        assert!(a.iter().all(|q| !b.contains(q)));
        assert_eq!(split(&ids, 7), (a.clone(), b));
        assert_ne!(split(&ids, 8).0, a);
    }

    #[test]
    fn the_bootstrap_tells_a_real_difference_from_noise() {
        let base: Vec<f64> = (0..100).map(|i| f64::from(i % 10) / 10.0).collect();
        let better: Vec<f64> = base.iter().map(|x| x + 0.1).collect();
        let real = paired_bootstrap(&better, &base, 1);
        assert!(real.excludes_zero() && (real.mean - 0.1).abs() < 1e-9, "{real:?}");
        let noisy: Vec<f64> = base.iter().enumerate().map(|(i, x)| if i % 2 == 0 { x + 0.05 } else { x - 0.05 }).collect();
        let noise = paired_bootstrap(&noisy, &base, 1);
        assert!(!noise.excludes_zero(), "{noise:?}");
    }

    #[test]
    fn the_space_starts_with_the_current_settings_and_has_no_repeats() {
        let current = RetrievalSettings::default();
        let space = search_space(&current, true);
        assert_eq!(space[0], current);
        assert!(space.iter().enumerate().all(|(i, s)| !space[i + 1..].contains(s)));
        assert!(space.iter().any(|s| s.mode == RetrievalMode::Dense) && space.len() > 20);
        assert!(search_space(&current, false).iter().all(|s| s.mode == RetrievalMode::Bm25));
    }

    fn current(mode: RetrievalMode) -> TunedSetting {
        TunedSetting {
            retrieval: RetrievalSettings { mode, ..RetrievalSettings::default() },
            rerank: RerankChoice { enabled: false, initial_k: 50 },
            chunking: Some(ChunkerConfig::default()),
            query_precision: None,
        }
    }

    #[test]
    fn apply_writes_exactly_the_changed_keys_and_keeps_comments() {
        let current = current(RetrievalMode::Hybrid);
        let mut chosen = current.clone();
        chosen.retrieval = RetrievalSettings { fusion: Fusion::Rrf, rrf_k: 30.0, ..current.retrieval.clone() };
        let changes = changed_keys(&current, &chosen);
        assert_eq!(changes.keys().copied().collect::<Vec<_>>(), ["retrieval.fusion", "retrieval.rrf_k"]);
        let text = "# mine\ncollection = \"c\"\n\n[retrieval]\nk = 7 # keep\n";
        let out = apply_to_toml(text, &changes).unwrap();
        assert!(out.contains("# mine") && out.contains("k = 7 # keep"), "{out}");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        let r = parsed["retrieval"].as_table().unwrap();
        assert_eq!((r["fusion"].as_str(), r["rrf_k"].as_float(), r.len()), (Some("rrf"), Some(30.0), 3));
        assert!(apply_to_toml("", &changes).unwrap().contains("[retrieval]"));
    }

    #[test]
    fn reranking_and_chunking_changes_are_keys_of_their_own_tables() {
        let current = current(RetrievalMode::Hybrid);
        let chunking = ChunkerConfig { max_tokens: 128, ..ChunkerConfig::default() };
        let chosen =
            TunedSetting { rerank: RerankChoice { enabled: true, initial_k: 20 }, chunking: Some(chunking), ..current.clone() };
        let changes = changed_keys(&current, &chosen);
        assert_eq!(changes.keys().copied().collect::<Vec<_>>(), ["chunker.max_tokens", "rerank.enabled", "rerank.initial_k"]);
        let out = apply_to_toml("[rerank]\nfinal_k = 5\n", &changes).unwrap();
        let parsed: RagConfig = toml::from_str(&out).unwrap();
        assert_eq!((parsed.rerank.enabled, parsed.rerank.initial_k, parsed.rerank.final_k), (true, 20, 5));
        assert_eq!(parsed.chunker.max_tokens, 128);
        // Turning reranking off leaves its depth alone; the same depth writes nothing.
        let off = TunedSetting { rerank: RerankChoice { enabled: false, initial_k: 20 }, ..current.clone() };
        assert_eq!(changed_keys(&chosen, &off).keys().copied().collect::<Vec<_>>(), ["chunker.max_tokens", "rerank.enabled"]);
        assert!(changed_keys(&current, &current).is_empty());
    }

    #[test]
    fn the_chunking_space_starts_with_the_current_one_and_has_no_repeats() {
        let semantic = ChunkerConfig::default();
        let space = chunking_space(&semantic, &[128, 256, 512], true);
        assert_eq!(space[0], semantic);
        assert!(space.iter().enumerate().all(|(i, s)| !space[i + 1..].contains(s)));
        assert!(space.iter().all(|c| c.min_tokens <= c.max_tokens));
        assert!(space.iter().any(|c| c.max_tokens == 512) && space.iter().any(|c| !c.fit_to_embedder));
        assert!(chunking_space(&semantic, &[128], false).iter().all(|c| c.fit_to_embedder), "no embedder: nothing to fit to");
        let token = ChunkerConfig { kind: ChunkerKind::Token, ..ChunkerConfig::default() };
        let windows = chunking_space(&token, &[64], false);
        let shapes: Vec<(usize, usize)> = windows.iter().map(|c| (c.chunk_size, c.overlap)).collect();
        assert_eq!(shapes, [(256, 32), (64, 0), (64, 8)]);
        assert_eq!(rerank_depths(50), [20, 50, 100]);
        assert_eq!(rerank_depths(30), [20, 30, 50, 100]);
    }

    /// A reranker that knows the answer: chunks saying "gold" first, the rest in their order.
    struct GoldReranker;

    #[async_trait::async_trait]
    impl Reranker for GoldReranker {
        async fn rerank(&self, _query: String, mut candidates: Vec<ScoredChunk>, top_k: usize) -> Result<Vec<ScoredChunk>> {
            candidates.sort_by_key(|c| !c.chunk.text.contains("gold"));
            candidates.truncate(top_k);
            Ok(candidates)
        }
        fn model_id(&self) -> String {
            "gold".into()
        }
    }

    fn keyword_pipeline(dir: &std::path::Path, window: usize, reranker: bool) -> RagPipeline {
        let counter = rag_chunk::TokenCounter::cl100k().unwrap();
        let mut b = RagPipeline::builder()
            .data_dir(dir.to_path_buf())
            .chunker(Arc::new(rag_chunk::TokenChunker::new(counter, window, 0).unwrap()))
            .mode(RetrievalMode::Bm25);
        if reranker {
            b = b.reranker(Arc::new(GoldReranker));
        }
        b.build().unwrap()
    }

    fn judged(n: usize, query: impl Fn(usize) -> String, relevant: &str) -> BeirDataset {
        BeirDataset {
            queries: (0..n).map(|i| (format!("q{i:02}"), query(i))).collect(),
            qrels: (0..n).map(|i| (format!("q{i:02}"), HashMap::from([(format!("{relevant}{i}"), 1)]))).collect(),
        }
    }

    #[tokio::test]
    async fn tune_turns_on_a_reranker_that_finds_what_the_first_stage_ranks_second() {
        let tmp = tempfile::tempdir().unwrap();
        let pipeline = keyword_pipeline(tmp.path(), 256, true);
        // BM25 puts the short document saying the topic three times first; only the longer one
        // is relevant, and only the reranker knows it.
        let docs: Vec<Document> = (0..64)
            .flat_map(|i| {
                [
                    Document::new(format!("r{i}"), format!("topic{i} gold. The committee met and agreed to meet again.")),
                    Document::new(format!("d{i}"), format!("topic{i} topic{i} topic{i} plain.")),
                ]
            })
            .collect();
        pipeline.ingest(docs, crate::IngestOptions::default()).await.unwrap();
        let data = judged(64, |i| format!("topic{i}"), "r");
        let current = current(RetrievalMode::Bm25);
        let report = tune(&pipeline, &data, &current, &TuneOptions::default(), None).await.unwrap();
        assert!(report.current.tune.ndcg_at_10 < 0.7, "{:?}", report.current);
        let chosen = &report.chosen.setting;
        assert!(chosen.rerank.enabled && report.chosen.label.contains("+ rerank"), "{:?}", report.chosen);
        assert!(report.chosen.report.ndcg_at_10 > 0.99 && report.difference.excludes_zero(), "{report:?}");
        let depths: Vec<usize> =
            report.settings.iter().filter(|s| s.setting.rerank.enabled).map(|s| s.setting.rerank.initial_k).collect();
        assert_eq!(depths, [20, 50, 100], "each depth tried once, on the best first stage");
        let changes = changed_keys(&current, chosen);
        assert!(changes.contains_key("rerank.enabled") && !changes.keys().any(|k| k.starts_with("retrieval.")), "{changes:?}");
        // Without a reranker, reranking is not searched; asking for it is an error, not a skip.
        let plain = keyword_pipeline(&tmp.path().join("plain"), 256, false);
        plain
            .ingest(vec![Document::new("r0", "topic0 gold"), Document::new("r1", "topic1 gold")], crate::IngestOptions::default())
            .await
            .unwrap();
        let small = judged(2, |i| format!("topic{i}"), "r");
        let report = tune(&plain, &small, &current, &TuneOptions::default(), None).await.unwrap();
        assert!(report.settings.iter().all(|s| !s.setting.rerank.enabled));
        let reranking = TunedSetting { rerank: RerankChoice { enabled: true, initial_k: 50 }, ..current.clone() };
        let err = tune(&plain, &small, &reranking, &TuneOptions::default(), None).await.unwrap_err().to_string();
        assert!(err.contains("rerank.cross-encoder.model"), "{err}");
    }

    #[tokio::test]
    async fn tune_over_two_chunkings_picks_the_one_that_keeps_both_terms_in_a_chunk() {
        // Each relevant document names its two query terms twenty words apart: 8-token windows
        // split them (and the documents repeating one term win), whole-document chunks keep
        // them together.
        let filler = "the committee reviewed the report discussed staffing budgets and facilities approved the minutes and agreed to meet again next month";
        let docs: Vec<Document> = (0..64)
            .flat_map(|i| {
                [
                    Document::new(format!("r{i}"), format!("alpha{i} {filler} beta{i}")),
                    Document::new(format!("a{i}"), format!("alpha{i} alpha{i} {filler}")),
                    Document::new(format!("b{i}"), format!("beta{i} beta{i} {filler}")),
                ]
            })
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let (narrow, wide) =
            (keyword_pipeline(&tmp.path().join("8"), 8, false), keyword_pipeline(&tmp.path().join("256"), 256, false));
        for p in [&narrow, &wide] {
            p.ingest(docs.clone(), crate::IngestOptions::default()).await.unwrap();
        }
        let shape = |chunk_size| ChunkerConfig { kind: ChunkerKind::Token, chunk_size, overlap: 0, ..ChunkerConfig::default() };
        let (narrow_cfg, wide_cfg) = (shape(8), shape(256));
        let current = TunedSetting { chunking: Some(narrow_cfg.clone()), ..current(RetrievalMode::Bm25) };
        let corpora = [
            TuneCorpus { pipeline: &narrow, chunking: Some(&narrow_cfg), query_embedders: &[] },
            TuneCorpus { pipeline: &wide, chunking: Some(&wide_cfg), query_embedders: &[] },
        ];
        let data = judged(64, |i| format!("alpha{i} beta{i}"), "r");
        let report = tune_corpora(&corpora, &data, &current, &TuneOptions::default(), None).await.unwrap();
        assert_eq!(report.settings.len(), 2, "bm25 on each chunking: {:?}", report.settings);
        assert_eq!(report.chosen.setting.chunking.as_ref(), Some(&wide_cfg));
        assert!(report.chosen.label.starts_with("token 256/0 | bm25"), "{}", report.chosen.label);
        assert!(
            report.difference.excludes_zero() && report.chosen.report.ndcg_at_10 > report.current.report.ndcg_at_10 + 0.2,
            "{report:?}"
        );
        let changes = changed_keys(&current, &report.chosen.setting);
        assert_eq!(changes.keys().copied().collect::<Vec<_>>(), ["chunker.chunk_size"]);
    }

    /// Embeds the number in a word like "n7" or "q7" as a one-hot vector (`blind`: every text
    /// alike).
    struct NumberEmbedder {
        blind: bool,
    }

    #[async_trait::async_trait]
    impl Embedder for NumberEmbedder {
        async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
            let number = |t: &str| t.split_whitespace().find_map(|w| w[1..].parse::<usize>().ok()).unwrap_or(0);
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.01; 65];
                    v[if self.blind { 64 } else { number(t) % 64 }] = 1.0;
                    v
                })
                .collect())
        }
        fn dimension(&self) -> usize {
            65
        }
        fn model_id(&self) -> String {
            format!("number blind={}", self.blind)
        }
    }

    #[tokio::test]
    async fn tune_tries_the_other_query_embedder_on_the_best_dense_setting_and_names_its_key() {
        let tmp = tempfile::tempdir().unwrap();
        // Documents embedded well, queries (as configured) blindly: the other query embedder
        // (standing for another precision of the same model) is what dense search needs.
        let pipeline = RagPipeline::builder()
            .data_dir(tmp.path().to_path_buf())
            .embedder(Arc::new(NumberEmbedder { blind: false }))
            .query_embedder(Arc::new(NumberEmbedder { blind: true }))
            .vector_store(Arc::new(rag_core::memory::InMemoryStore::new("numbers")))
            .mode(RetrievalMode::Dense)
            .build()
            .unwrap();
        let docs: Vec<Document> = (0..64).map(|i| Document::new(format!("d{i}"), format!("n{i} is a number"))).collect();
        pipeline.ingest(docs, crate::IngestOptions::default()).await.unwrap();
        // Queries share no word with the documents, so keyword search cannot find them.
        let data = judged(64, |i| format!("q{i}"), "d");
        let good: Arc<dyn Embedder> = Arc::new(NumberEmbedder { blind: false });
        let alternatives = [(OnnxPrecision::Int8, good)];
        let corpus = TuneCorpus { pipeline: &pipeline, chunking: None, query_embedders: &alternatives };
        let current = TunedSetting { chunking: None, ..current(RetrievalMode::Dense) };
        let report = tune_corpora(&[corpus], &data, &current, &TuneOptions::default(), None).await.unwrap();
        let other: Vec<&SettingResult> = report.settings.iter().filter(|s| s.setting.query_precision.is_some()).collect();
        assert_eq!(other.len(), 1, "one try, on the best dense or hybrid setting: {:?}", report.settings);
        assert_ne!(other[0].setting.retrieval.mode, RetrievalMode::Bm25);
        assert!(other[0].label.ends_with("+ int8 queries"), "{}", other[0].label);
        let base =
            report.settings.iter().find(|s| s.setting == TunedSetting { query_precision: None, ..other[0].setting.clone() });
        assert!(other[0].tune.ndcg_at_10 > base.unwrap().tune.ndcg_at_10 + 0.3, "{:?}", report.settings);
        let changes = changed_keys(&current, &TunedSetting { query_precision: Some(OnnxPrecision::Int8), ..current.clone() });
        assert_eq!(changes.get("embedder.onnx.query_precision").map(|v| v.to_string()), Some("\"int8\"".into()));
        // The query embedder is what dense search uses, and a store's dimension is checked
        // against it too.
        assert_eq!(pipeline.query_embedder().unwrap().model_id(), "number blind=true");
    }
}
