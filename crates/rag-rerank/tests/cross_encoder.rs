//! The real CrossEncoder code path with a tiny random BERT built locally (no trained
//! cross-encoder ships offline). Needs `make setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rag_core::{Chunk, RagError, Reranker, ScoredChunk};
use rag_rerank::CrossEncoderReranker;
use rag_testkit::models::build_tiny_cross_encoder;

fn cands(n: usize) -> Vec<ScoredChunk> {
    (0..n)
        .map(|i| ScoredChunk {
            chunk: Chunk::new(format!("c{i}"), "d", format!("passage number {i} about topic {}", i % 3)),
            score: 1.0,
        })
        .collect()
}

#[tokio::test]
async fn reranks_single_and_batched_consistently() {
    let dir = tempfile::tempdir().unwrap();
    build_tiny_cross_encoder(dir.path()).await.unwrap();
    let r = CrossEncoderReranker::builder(dir.path().display().to_string()).batch_size(4).max_length(64).build().await.unwrap();
    let out = r.rerank("topic 1".into(), cands(10), 3).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.windows(2).all(|w| w[0].score >= w[1].score), "sorted by the model's scores");
    assert!(out.iter().all(|c| c.score != 1.0), "scores come from the model");
    // The same pairs scored in one batched crossing give the same scores and order.
    let batch = r.rerank_batch(vec![("topic 1".into(), cands(10)), ("topic 2".into(), cands(6))], 3).await.unwrap();
    assert_eq!(batch.len(), 2);
    let ids = |v: &[ScoredChunk]| v.iter().map(|c| c.chunk.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&batch[0]), ids(&out));
    for (a, b) in batch[0].iter().zip(&out) {
        assert!((a.score - b.score).abs() < 1e-5);
    }
    assert!(r.model_id().starts_with("cross-encoder/"));
    assert!(r.rerank("q".into(), vec![], 3).await.unwrap().is_empty());
    let err = CrossEncoderReranker::builder("/no/such/model").build().await.unwrap_err();
    assert!(matches!(err, RagError::NotFound { .. }), "{err}");
}
