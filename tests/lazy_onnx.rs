//! The ONNX embedder is lazy too: assembling a pipeline with `embedder.backend = "onnx"` reads
//! the export's description only, the sessions load on the first text to embed, and an
//! unchanged re-ingest never loads them. Needs `make setup` (the ONNX export and ChromaDB);
//! fails, never skips, without it. Its own test binary: the load counter is per process.
#![cfg(all(feature = "chroma", feature = "onnx"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rag::assemble::{Needs, build_pipeline};
use rag::config::RagConfig;
use rag::embed::models_loaded;
use rag::{Document, IngestOptions, QueryOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reingest_never_loads_the_onnx_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RagConfig { data_dir: dir.path().to_owned(), ..RagConfig::default() };
    cfg.set("embedder.backend", "onnx").unwrap();
    let docs = || {
        vec![
            Document::new("a", "Vitamin D supports bone health and calcium absorption."),
            Document::new("b", "Statins lower cholesterol and cardiovascular risk."),
        ]
    };
    let first = build_pipeline(&cfg, Needs::All).await.unwrap();
    assert_eq!(models_loaded(), 0, "assembling a pipeline loads no model");
    assert_eq!(first.embedder().unwrap().dimension(), 384);
    assert!(first.embedder().unwrap().model_id().contains("onnx fp32"));
    let report = first.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!(report.chunks, 2);
    assert_eq!(models_loaded(), 1, "the first text to embed loads the sessions, once");
    let hits = first.search("bone calcium", &QueryOptions::new().k(1)).await.unwrap().hits;
    assert_eq!(hits[0].chunk.doc_id, "a");
    drop(first);

    let second = build_pipeline(&cfg, Needs::All).await.unwrap();
    let report = second.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.chunks, report.embedded), (2, 0, 0));
    assert_eq!(models_loaded(), 1, "an unchanged re-ingest never loads the sessions");
    let changed = vec![Document::new("a", "Vitamin D and fractures in the elderly.")];
    let report = second.ingest(changed, IngestOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.chunks), (0, 1));
    assert_eq!(models_loaded(), 2, "a changed document loads this pipeline's sessions to embed it");
}
