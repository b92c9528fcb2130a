//! A whole pipeline from mockall mocks: no Python, no model, no server. This is how to unit-test
//! code that builds on `rag`. `cargo run --example mock_pipeline --no-default-features`

use std::sync::Arc;

use rag::chunk::{SemanticChunker, TokenCounter};
use rag::{FileSource, IngestOptions, QueryOptions, RagPipeline};
use rag_core::mocks::{MockEmbedder, MockVectorStore};

#[tokio::main]
async fn main() -> rag::Result<()> {
    let dir = std::env::temp_dir().join(format!("rag-mock-example-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("docs")).map_err(|e| rag::RagError::io(&dir, e))?;
    std::fs::write(dir.join("docs/a.txt"), "The mock store keeps nothing. The keyword index still answers.")
        .map_err(|e| rag::RagError::io(&dir, e))?;
    let mut embedder = MockEmbedder::new();
    embedder.expect_dimension().return_const(3usize);
    embedder.expect_model_id().return_const("mock".to_owned());
    embedder.expect_max_input_tokens().return_const(None);
    embedder.expect_embed().returning(|t| Ok(vec![vec![1.0, 0.0, 0.0]; t.len()]));
    let mut store = MockVectorStore::new();
    store.expect_upsert().returning(|_| Ok(()));
    store.expect_query().returning(|_| Ok(vec![]));
    store.expect_count().returning(|| Ok(0));
    let pipeline = RagPipeline::builder()
        .data_dir(dir.join("data"))
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k()?, 8, 64)?))
        .embedder(Arc::new(embedder))
        .vector_store(Arc::new(store))
        .build()?;
    pipeline.ingest(FileSource::new([dir.join("docs")]), IngestOptions::default()).await?;
    let r = pipeline.query("What does the keyword index do?", &QueryOptions::default()).await?;
    println!("{}\n{:?}", r.answer, r.citations.iter().map(|c| &c.chunk_id).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
