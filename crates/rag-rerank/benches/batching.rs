//! Reranking under concurrency: 16 queries in flight, each reranking 20 SciFact passages, with
//! one model call per query (`CrossEncoderReranker`) and with concurrent reranks sharing calls
//! (`BatchingReranker`), alternating, 2 rounds each, on a randomly initialised cross-encoder of
//! ms-marco-MiniLM-L-6-v2's shape (no trained one ships offline; the compute is the same).
//!
//! `cargo bench -p rag-rerank --bench batching`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_core::{Chunk, Reranker, ScoredChunk};
use rag_rerank::{BatchingReranker, CrossEncoderReranker};
use rag_testkit::models::{CrossEncoderShape, build_cross_encoder};

const CONCURRENCY: usize = 16;
const QUERIES: usize = 96;

/// Passages per query (`RAG_BENCH_CANDIDATES`, default 20: `rerank.initial_k`'s default).
fn candidates() -> usize {
    std::env::var("RAG_BENCH_CANDIDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

fn passages() -> Vec<String> {
    let path = std::env::var_os("RAG_SCIFACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact")))
        .join("corpus.jsonl");
    let file = std::fs::File::open(&path).unwrap();
    std::io::BufReader::new(file)
        .lines()
        .take(QUERIES * candidates())
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs every query's rerank with `CONCURRENCY` in flight; returns reranks per second.
async fn run(r: Arc<dyn Reranker>, texts: &[String]) -> f64 {
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let t = Instant::now();
    let tasks: Vec<_> = texts
        .chunks(candidates())
        .enumerate()
        .map(|(q, group)| {
            let (r, sem) = (r.clone(), sem.clone());
            let cands: Vec<ScoredChunk> = group
                .iter()
                .enumerate()
                .map(|(i, t)| ScoredChunk { chunk: Chunk::new(format!("{q}-{i}"), "d", t.clone()), score: 0.0 })
                .collect();
            tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                r.rerank(format!("question {q} about cells"), cands, 5).await.unwrap().len().min(5)
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap() >= 1);
    }
    QUERIES as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    build_cross_encoder(dir.path(), CrossEncoderShape::MiniLmL6).await.unwrap();
    let model: Arc<dyn Reranker> = Arc::new(
        CrossEncoderReranker::builder(dir.path().display().to_string()).batch_size(64).max_length(256).build().await.unwrap(),
    );
    let batching: Arc<dyn Reranker> = Arc::new(BatchingReranker::new(model.clone(), 512, Duration::ZERO).unwrap());
    let texts = passages();
    run(model.clone(), &texts[..candidates() * 4]).await; // warm-up
    let (mut direct, mut batched) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        direct.push(run(model.clone(), &texts).await);
        batched.push(run(batching.clone(), &texts).await);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("rerank, {QUERIES} queries x {} passages, concurrency {CONCURRENCY}, MiniLM-L6-shaped cross-encoder", candidates());
    println!("  one model call per query: {:.1} reranks/s (rounds {direct:.1?})", best(&direct));
    println!("  shared calls (BatchingReranker): {:.1} reranks/s (rounds {batched:.1?})", best(&batched));
    println!("  ratio: {:.2}x", best(&batched) / best(&direct));
}
