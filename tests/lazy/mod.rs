//! Shared by `lazy_model.rs` (torch) and `lazy_onnx.rs` (the default): each runs in its own test
//! binary, because the load counter is per process.

use rag::assemble::{Needs, build_pipeline};
use rag::config::RagConfig;
use rag::embed::models_loaded;
use rag::{Document, IngestOptions, QueryOptions};

/// With `embedder.backend = backend`: assembling a pipeline loads no model, the first text to
/// embed loads it once, an unchanged re-ingest (a new pipeline, as a new `rag ingest` process
/// would build) loads nothing, and a changed document loads that pipeline's model once.
pub async fn an_unchanged_reingest_never_loads(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RagConfig { data_dir: dir.path().to_owned(), ..RagConfig::default() };
    cfg.set("embedder.backend", backend).unwrap();
    let docs = || {
        vec![
            Document::new("a", "Vitamin D supports bone health and calcium absorption."),
            Document::new("b", "Statins lower cholesterol and cardiovascular risk."),
        ]
    };
    // The model describes itself from its files.
    let first = build_pipeline(&cfg, Needs::All).await.unwrap();
    assert_eq!(models_loaded(), 0, "{backend}: assembling a pipeline loads no model");
    assert_eq!(first.embedder().unwrap().dimension(), 384);
    let report = first.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!(report.chunks, 2);
    assert_eq!(models_loaded(), 1, "{backend}: the first text to embed loads the model, once");
    let hits = first.search("bone calcium", &QueryOptions::new().k(1)).await.unwrap().hits;
    assert_eq!(hits[0].doc_id, "a");
    drop(first);

    let second = build_pipeline(&cfg, Needs::All).await.unwrap();
    let report = second.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.chunks, report.embedded), (2, 0, 0));
    assert_eq!(models_loaded(), 1, "{backend}: an unchanged re-ingest never loads the model");
    // The lazy embedder's id is the loaded model's: the manifest saw no change of model.
    let changed = vec![Document::new("a", "Vitamin D and fractures in the elderly.")];
    let report = second.ingest(changed, IngestOptions::default()).await.unwrap();
    assert_eq!((report.unchanged, report.chunks), (0, 1));
    assert_eq!(models_loaded(), 2, "{backend}: a changed document loads this pipeline's model to embed it");
}
