//! `rag bench`: ingestion throughput and end-to-end query latency on a BEIR dataset.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rag_core::{RagError, Result};
use serde::Serialize;

use crate::ingest::{IngestOptions, IngestReport};
use crate::pipeline::RagPipeline;
use crate::query::QueryOptions;
use crate::sources::FileSource;

/// What `rag bench --json` prints: the ingest, then one entry per concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Documents ingested.
    pub documents: u64,
    /// Ingestion throughput.
    pub ingest_docs_per_s: f64,
    /// What the ingest did (cache hits show whether the embedding model ran).
    pub ingest: IngestReport,
    /// The queries at each concurrency level, in the order asked.
    pub levels: Vec<QueryLevel>,
    /// The embedding model's own throughput on these queries in batched calls (queries/s): the
    /// ceiling of a model-bound pipeline, measured in the same run (absent without an embedder).
    pub model_ceiling_qps: Option<f64>,
    /// Seconds to load the embedding model and make its first call, before the ingest is timed
    /// (absent without an embedder).
    pub model_load_seconds: Option<f64>,
    /// CPU time per query of the ceiling run (ms): what the model alone costs the machine.
    pub model_cpu_ms_per_query: Option<f64>,
}

/// CPU milliseconds per item between `before` and now.
fn cpu_ms_per(before: Option<f64>, items: usize) -> Option<f64> {
    let used = crate::sys::cpu_seconds()? - before?;
    Some(1000.0 * used / items.max(1) as f64)
}

/// The queries of one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct QueryLevel {
    /// In flight at once.
    pub concurrency: usize,
    /// Queries run.
    pub queries: usize,
    /// Median end-to-end query latency.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Queries per second over the whole level.
    pub qps: f64,
    /// Mean texts per embedding-model call while this level ran (the batcher's work; absent
    /// when the embedder does not batch queries).
    pub mean_embed_batch: Option<f64>,
    /// Embedding-model calls while this level ran.
    pub embed_calls: Option<u64>,
    /// Hybrid retrieval latency excluding the embedding model (retrieve - embed_query), median.
    pub retrieval_excl_embed_p50_ms: f64,
    /// The same, 95th percentile.
    pub retrieval_excl_embed_p95_ms: f64,
    /// Each stage's share of the summed per-query time of the sequential stages (embed_query,
    /// retrieval without the model, rerank, pack, generate).
    pub stage_share: BTreeMap<String, f64>,
    /// Mean milliseconds per stage.
    pub stage_mean_ms: BTreeMap<String, f64>,
    /// CPU time the process used while this level ran, per query (ms, every thread; absent
    /// without `/proc`). Unlike the stage times it does not count waiting, so it says what
    /// each query costs the machine: with [`BenchReport::model_cpu_ms_per_query`], how much
    /// of it is the model and how much is everything else.
    pub cpu_ms_per_query: Option<f64>,
}

/// Percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Writes the first `docs` documents of `dataset/corpus.jsonl` to `out` (a bench corpus).
pub fn slice_corpus(dataset: &Path, docs: usize, out: &Path) -> Result<u64> {
    use std::io::BufRead;
    let src = dataset.join("corpus.jsonl");
    let f = std::fs::File::open(&src).map_err(|e| RagError::io(&src, e))?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| RagError::io(out, e))?);
    let mut n = 0u64;
    for line in std::io::BufReader::new(f).lines().take(docs) {
        let line = line.map_err(|e| RagError::io(&src, e))?;
        writeln!(w, "{line}").map_err(|e| RagError::io(out, e))?;
        n += 1;
    }
    w.flush().map_err(|e| RagError::io(out, e))?;
    Ok(n)
}

/// Ingests `corpus` into `pipeline`, then runs each concurrency level of `levels` in turn (a
/// sweep: `1, 4, 16, 64`), each on its own equal share of `questions`, so no level is served
/// from embeddings an earlier level cached.
pub async fn run_bench(pipeline: &RagPipeline, corpus: &Path, questions: &[String], levels: &[usize]) -> Result<BenchReport> {
    if levels.is_empty() || levels.contains(&0) {
        return Err(RagError::invalid_input("--concurrency", "give one or more levels of at least 1 (e.g. 1,4,16,64)"));
    }
    // The model loads (and makes its first call) before the clock starts, as the Python
    // pipeline's does: ingest throughput is the pipeline's; the load is reported apart.
    let model_load_seconds = match pipeline.embedder() {
        Some(e) => {
            let start = Instant::now();
            e.embed(vec!["warm-up".into()]).await?;
            if let Some(q) = pipeline.query_embedder.as_ref() {
                q.embed(vec!["warm-up".into()]).await?;
            }
            Some(start.elapsed().as_secs_f64())
        }
        None => None,
    };
    let ingest = pipeline.ingest(FileSource::new([corpus]), IngestOptions::default()).await?;
    let ingest_docs_per_s = ingest.documents as f64 / ingest.seconds.max(1e-9);
    // Warm-up: model loading and first-call costs are not query latency.
    let warm = questions.iter().take(2).cloned().collect::<Vec<_>>();
    for r in pipeline.batch_query(&warm, &QueryOptions::default(), 1).await {
        r?;
    }
    let per_level = (questions.len() / levels.len()).max(1);
    let mut out = Vec::with_capacity(levels.len());
    for (&concurrency, share) in levels.iter().zip(questions.chunks(per_level)) {
        out.push(run_level(pipeline, share, concurrency).await?);
    }
    // The queries' model (another precision, where embedder.onnx.query_precision says so).
    let (model_ceiling_qps, model_cpu_ms_per_query) = match pipeline.query_embedder() {
        Some(e) => {
            let (qps, cpu) = model_ceiling(e.as_ref(), questions).await?;
            (Some(qps), cpu)
        }
        None => (None, None),
    };
    Ok(BenchReport {
        documents: ingest.documents,
        ingest_docs_per_s,
        ingest,
        levels: out,
        model_ceiling_qps,
        model_load_seconds,
        model_cpu_ms_per_query,
    })
}

/// Texts per call when measuring the model's batched ceiling (torch's best measured batch).
const CEILING_BATCH: usize = 32;

/// The embedder's own throughput on the bench's questions in batched calls, queries/s, and
/// its CPU milliseconds per query. Each question gets a suffix so that no cached embedding from
/// the levels flatters it.
async fn model_ceiling(embedder: &dyn rag_core::Embedder, questions: &[String]) -> Result<(f64, Option<f64>)> {
    let texts: Vec<String> = questions.iter().take(256).map(|q| format!("{q} (ceiling)")).collect();
    let cpu = crate::sys::cpu_seconds();
    let start = Instant::now();
    for batch in texts.chunks(CEILING_BATCH) {
        embedder.embed(batch.to_vec()).await?;
    }
    let qps = texts.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    Ok((qps, cpu_ms_per(cpu, texts.len())))
}

async fn run_level(pipeline: &RagPipeline, questions: &[String], concurrency: usize) -> Result<QueryLevel> {
    let counters = pipeline.embed_batch_counters();
    let before = counters.map(|c| (c.calls(), c.items()));
    let cpu = crate::sys::cpu_seconds();
    let start = Instant::now();
    let results = pipeline.batch_query(questions, &QueryOptions::default(), concurrency).await;
    let wall = start.elapsed().as_secs_f64();
    let cpu_ms_per_query = cpu_ms_per(cpu, questions.len());
    let batches = counters.zip(before).map(|(c, (calls, items))| (c.calls() - calls, c.items() - items));
    let mut totals = Vec::new();
    let mut retrieval = Vec::new();
    let mut stages: BTreeMap<String, f64> = BTreeMap::new();
    for r in results {
        let r = r?;
        let t = &r.timings_ms;
        let get = |k: &str| t.get(k).copied().unwrap_or(0.0);
        totals.push(get("total"));
        let without_model = get("retrieve") - get("embed_query");
        retrieval.push(without_model);
        // Sequential stages only: the vector and keyword searches overlap inside `retrieve`.
        for (k, v) in [
            ("embed_query", get("embed_query")),
            ("retrieval (no model)", without_model),
            ("rerank", get("rerank")),
            ("pack", get("pack")),
            ("generate", get("generate")),
        ] {
            *stages.entry(k.to_owned()).or_default() += v;
        }
    }
    stages.retain(|_, v| *v > 0.0);
    totals.sort_by(f64::total_cmp);
    retrieval.sort_by(f64::total_cmp);
    let staged: f64 = stages.values().sum();
    let n = totals.len().max(1) as f64;
    Ok(QueryLevel {
        concurrency,
        queries: totals.len(),
        p50_ms: percentile(&totals, 50.0),
        p95_ms: percentile(&totals, 95.0),
        p99_ms: percentile(&totals, 99.0),
        qps: totals.len() as f64 / wall.max(1e-9),
        mean_embed_batch: batches.map(|(calls, items)| if calls == 0 { 0.0 } else { items as f64 / calls as f64 }),
        embed_calls: batches.map(|(calls, _)| calls),
        retrieval_excl_embed_p50_ms: percentile(&retrieval, 50.0),
        retrieval_excl_embed_p95_ms: percentile(&retrieval, 95.0),
        stage_share: stages.iter().map(|(k, v)| (k.clone(), v / staged.max(1e-9))).collect(),
        stage_mean_ms: stages.iter().map(|(k, v)| (k.clone(), v / n)).collect(),
        cpu_ms_per_query,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 50.0), 50.0);
        assert_eq!(super::percentile(&v, 95.0), 95.0);
        assert_eq!(super::percentile(&v, 99.0), 99.0);
        assert_eq!(super::percentile(&[3.0], 99.0), 3.0);
        assert_eq!(super::percentile(&[], 50.0), 0.0);
    }
}
