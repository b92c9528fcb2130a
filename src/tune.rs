//! Retrieval tuning over the user's own judged queries (`rag tune`): the settings that need no
//! re-ingest (mode; fusion and its weight or constant; candidates per side) searched on one
//! seeded half of the queries and reported on the other, with a paired bootstrap interval for
//! the difference from the current configuration.
//!
//! Each setting retrieves every query twice: 30 chunks (enough to rank 10 distinct documents;
//! the setting's own candidates per side, as a production query of a few chunks would use
//! them) for nDCG@10 and MRR@10, and 300 for Recall@100 (as `rag eval` does). Latency is the
//! first retrieval's, one query at a time, with the query embeddings cached (every query is
//! embedded once before the first setting, so the model's time is alike for all).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rag_core::{RagError, Result, RetrievalQuery};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use rag_core::metrics::{dedup_documents, mrr_at_k, ndcg_at_k, recall_at_k};

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
    /// A short name (`hybrid convex alpha=0.5 candidates=100`).
    pub label: String,
    /// The retrieval settings (its `k` is the configuration's).
    pub settings: RetrievalSettings,
    /// Quality on the tuning half.
    pub tune: Quality,
    /// Quality on the report half.
    pub report: Quality,
    /// Median retrieval latency (ms, one query at a time).
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
    /// The configuration's own retrieval settings, measured the same way.
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

/// The settings searched from `current`: dense, bm25, and hybrid with each fusion (convex
/// alpha 0.3 to 0.7, RRF k 10/30/60, DBSF) at 50, 100 and 200 candidates a side; `current`
/// first. Without a dense side (`has_dense` false) only bm25.
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

/// A setting's short name.
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

async fn score(pipeline: &RagPipeline, settings: &RetrievalSettings, data: &BeirDataset, ids: &[String]) -> Result<Scored> {
    let retriever = pipeline.retriever_with(settings)?;
    let mut s = Scored { ndcg: HashMap::new(), recall: HashMap::new(), mrr: HashMap::new(), latencies: Vec::new() };
    for qid in ids {
        let question = &data.queries[qid];
        let qrels = &data.qrels[qid];
        let start = Instant::now();
        let (top, _) = retriever.retrieve_timed(RetrievalQuery { text: question.clone(), k: TOP_CHUNKS, filter: None }).await?;
        s.latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        let docs = dedup_documents(top.iter().map(|h| h.chunk.doc_id.as_str()));
        s.ndcg.insert(qid.clone(), ndcg_at_k(&docs, qrels, 10));
        s.mrr.insert(qid.clone(), mrr_at_k(&docs, qrels, 10));
        let (deep, _) = retriever.retrieve_timed(RetrievalQuery { text: question.clone(), k: DEEP_CHUNKS, filter: None }).await?;
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

/// Searches [`search_space`] on `data`'s judged queries over `pipeline` (whose collection holds
/// the corpus), choosing on one half and reporting on the other.
pub async fn tune(
    pipeline: &RagPipeline,
    data: &BeirDataset,
    current: &RetrievalSettings,
    options: &TuneOptions,
    progress: Option<Progress>,
) -> Result<TuneReport> {
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
    // Every query embedded once up front: the embedding cache then serves each setting alike,
    // so the first setting measured does not pay for the model (latency is retrieval's own).
    if let Some(embedder) = pipeline.embedder() {
        let questions: Vec<String> = ids.iter().map(|q| data.queries[q].clone()).collect();
        for batch in questions.chunks(64) {
            embedder.embed(batch.to_vec()).await?;
        }
    }
    let space = search_space(current, pipeline.vector_store().is_some());
    let total = space.len() as u64;
    let mut results = Vec::with_capacity(space.len());
    for (i, settings) in space.iter().enumerate() {
        let scored = score(pipeline, settings, data, &ids).await?;
        let mut lat = scored.latencies.clone();
        lat.sort_by(f64::total_cmp);
        results.push(SettingResult {
            label: label(settings),
            settings: settings.clone(),
            tune: quality(&scored, &tune_ids),
            report: quality(&scored, &report_ids),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            pareto: false,
            report_ndcg: report_ids.iter().map(|q| scored.ndcg[q]).collect(),
        });
        if let Some(p) = &progress {
            p(i as u64 + 1, total);
        }
    }
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

/// The `[retrieval]` keys of `chosen` that differ from `current`, as (dotted key, TOML value).
pub fn changed_keys(current: &RetrievalSettings, chosen: &RetrievalSettings) -> BTreeMap<&'static str, toml_edit::Value> {
    let mut out = BTreeMap::new();
    if chosen.mode != current.mode {
        out.insert("mode", toml_edit::Value::from(chosen.mode.to_string()));
    }
    if chosen.fusion != current.fusion {
        out.insert("fusion", toml_edit::Value::from(chosen.fusion.to_string()));
    }
    if chosen.candidates != current.candidates {
        out.insert("candidates", toml_edit::Value::from(chosen.candidates as i64));
    }
    if chosen.alpha != current.alpha {
        out.insert("alpha", toml_edit::Value::from(f64::from(chosen.alpha)));
    }
    if chosen.rrf_k != current.rrf_k {
        out.insert("rrf_k", toml_edit::Value::from(f64::from(chosen.rrf_k)));
    }
    out
}

/// `text` (a rag.toml, possibly empty) with the `[retrieval]` keys of `changes` set, every
/// other line (comments included) kept as it was.
pub fn apply_to_toml(text: &str, changes: &BTreeMap<&'static str, toml_edit::Value>) -> Result<String> {
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| RagError::invalid_input("rag.toml", e.to_string()))?;
    let table = doc
        .entry("retrieval")
        .or_insert(toml_edit::table())
        .as_table_mut()
        .ok_or_else(|| RagError::invalid_input("rag.toml", "`retrieval` is not a table"))?;
    for (key, value) in changes {
        table[key] = toml_edit::Item::Value(value.clone());
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn apply_writes_exactly_the_changed_keys_and_keeps_comments() {
        let current = RetrievalSettings::default();
        let chosen = RetrievalSettings { fusion: Fusion::Rrf, rrf_k: 30.0, ..current.clone() };
        let changes = changed_keys(&current, &chosen);
        assert_eq!(changes.keys().copied().collect::<Vec<_>>(), ["fusion", "rrf_k"]);
        let text = "# mine\ncollection = \"c\"\n\n[retrieval]\nk = 7 # keep\n";
        let out = apply_to_toml(text, &changes).unwrap();
        assert!(out.contains("# mine") && out.contains("k = 7 # keep"), "{out}");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        let r = parsed["retrieval"].as_table().unwrap();
        assert_eq!((r["fusion"].as_str(), r["rrf_k"].as_float(), r.len()), (Some("rrf"), Some(30.0), 3));
        assert!(apply_to_toml("", &changes).unwrap().contains("[retrieval]"));
    }
}
