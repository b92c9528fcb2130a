//! An unchanged re-ingest never loads the embedding model: the embedder's id, dimension and
//! window come from the model's files, and the weights load on the first text to embed.
//! Needs `make setup` (the real MiniLM and ChromaDB); fails, never skips, without it.
#![cfg(all(feature = "chroma", feature = "sentence-transformers"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rag::assemble::{Needs, build_pipeline};
use rag::config::RagConfig;
use rag::embed::models_loaded;
use rag::{Document, IngestOptions, QueryOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reingest_never_constructs_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RagConfig { data_dir: dir.path().to_owned(), ..RagConfig::default() };
    cfg.set("embedder.backend", "sentence-transformers").unwrap();
    let docs = || {
        vec![
            Document::new("a", "Vitamin D supports bone health and calcium absorption."),
            Document::new("b", "Statins lower cholesterol and cardiovascular risk."),
        ]
    };
    // Building the pipeline loads nothing: the model describes itself from its files.
    let first = build_pipeline(&cfg, Needs::All).await.unwrap();
    assert_eq!(models_loaded(), 0, "assembling a pipeline loads no model");
    assert_eq!(first.embedder().unwrap().dimension(), 384);
    let report = first.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!(report.chunks, 2);
    assert_eq!(models_loaded(), 1, "the first text to embed loads the model, once");
    let hits = first.search("bone calcium", &QueryOptions::new().k(1)).await.unwrap().hits;
    assert_eq!(hits[0].chunk.doc_id, "a");
    drop(first);

    // A new pipeline (as a new `rag ingest` process would build) over the same data.
    let second = build_pipeline(&cfg, Needs::All).await.unwrap();
    let report = second.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.chunks, report.embedded), (2, 0, 0));
    assert_eq!(models_loaded(), 1, "an unchanged re-ingest never constructs the model");
    // The lazy embedder's id is the loaded model's: the manifest saw no change of model.
    let changed = vec![Document::new("a", "Vitamin D and fractures in the elderly.")];
    let report = second.ingest(changed, IngestOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.chunks), (0, 1));
    assert_eq!(models_loaded(), 2, "a changed document loads this pipeline's model to embed it");
}
