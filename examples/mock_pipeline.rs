//! A whole pipeline from mockall mocks: no Python, no model, no server. This is how to unit-test
//! code that builds on `rag`. `cargo run --example mock_pipeline --no-default-features --features test-utils`

use std::sync::Arc;

use rag::chunk::{SemanticChunker, TokenCounter};
use rag::mocks::{MockEmbedder, MockVectorStore};
use rag::{FileSource, IngestOptions, QueryOptions, RagPipeline};

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
    // A mock answers only what it is told to: the trait's default methods (`candidates`, which
    // hybrid retrieval calls, and `chunks`) need expectations too, and the pipeline asks the
    // store to `describe` itself once, to compare dimensions. For a store that simply works,
    // use `rag::core::InMemoryStore` instead.
    let mut store = MockVectorStore::new();
    store.expect_upsert().times(1).returning(|_| Ok(()));
    store.expect_candidates().returning(|_| Ok(vec![]));
    store.expect_count().returning(|| Ok(0));
    store.expect_describe().returning(|| {
        Ok(rag::core::StoreDescription {
            backend: "mock".into(),
            collection: "mock".into(),
            dimension: Some(3),
            distance: rag::core::Distance::Cosine,
            count: 0,
            details: Default::default(),
        })
    });
    let pipeline = RagPipeline::builder()
        .data_dir(dir.join("data"))
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k()?, 8, 64)?))
        .embedder(Arc::new(embedder))
        .vector_store(Arc::new(store))
        .build()?;
    pipeline.ingest(FileSource::new([dir.join("docs")]), IngestOptions::default()).await?;
    let r = pipeline.query("What does the keyword index do?", &QueryOptions::default()).await?;
    println!("{}\n{:?}", r.answer, r.citations.iter().map(|c| &c.chunk_id).collect::<Vec<_>>());
    // The mock store found nothing; the keyword index found the passage.
    if r.citations.first().map(|c| c.doc_id.as_str()) != Some("docs/a.txt") {
        return Err(rag::RagError::Other(format!("expected a citation of docs/a.txt, got {:?}", r.citations)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
