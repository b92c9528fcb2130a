//! Shared by the examples: a SciFact collection on the embedded default, ingested once and
//! reused (`.rag/collections/examples`), and its hybrid retriever.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use rag::RetrievalMode;
use rag::assemble::{Needs, build_pipeline};
use rag::config::RagConfig;

/// How many SciFact abstracts the examples search (first run embeds them: ~15 s).
pub const DOCS: usize = 300;

/// The pipeline over the examples collection, ingested if needed.
pub async fn scifact_pipeline() -> rag::Result<rag::RagPipeline> {
    let mut cfg = RagConfig::load(None)?;
    cfg.collection = "examples".into();
    let pipeline = build_pipeline(&cfg, Needs::All).await?;
    let dataset =
        std::env::var_os("RAG_SCIFACT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/datasets/scifact"));
    let corpus =
        std::fs::read_to_string(dataset.join("corpus.jsonl")).map_err(|e| rag::RagError::io(dataset.join("corpus.jsonl"), e))?;
    let slice = cfg.data_dir.join("examples-corpus.jsonl");
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| rag::RagError::io(&cfg.data_dir, e))?;
    std::fs::write(&slice, corpus.lines().take(DOCS).collect::<Vec<_>>().join("\n")).map_err(|e| rag::RagError::io(&slice, e))?;
    let report = pipeline.ingest(rag::FileSource::new([slice]), rag::IngestOptions::default()).await?;
    eprintln!("collection `examples`: {} documents ({} unchanged)", report.documents, report.unchanged);
    Ok(pipeline)
}

/// The pipeline's hybrid retriever as an `Arc<dyn Retriever>`.
pub fn hybrid(pipeline: &rag::RagPipeline) -> rag::Result<Arc<dyn rag::core::Retriever>> {
    Ok(Arc::new(pipeline.retriever(RetrievalMode::Hybrid)?))
}
