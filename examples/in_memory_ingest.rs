//! Ingest documents you already hold (no files), from a list and from a stream, then search and
//! answer. Keyword (BM25) retrieval, so it runs with no Python and no model:
//! `cargo run --example in_memory_ingest --no-default-features`

use std::sync::Arc;

use futures::StreamExt;
use rag::chunk::{SemanticChunker, TokenCounter};
use rag::{Document, IngestOptions, QueryOptions, RagPipeline, RetrievalMode, StreamSource};

#[tokio::main]
async fn main() -> rag::Result<()> {
    let dir = std::env::temp_dir().join(format!("rag-in-memory-example-{}", std::process::id()));
    let pipeline = RagPipeline::builder()
        .data_dir(dir.clone())
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k()?, 32, 128)?))
        .mode(RetrievalMode::Bm25)
        .build()?;

    // A list in memory.
    let notes = vec![
        Document::new("tides", "Tides are caused by the gravitational pull of the Moon and the Sun.")
            .with_metadata("topic", "ocean"),
        Document::new("coral", "Coral reefs are built by colonies of tiny animals called polyps.")
            .with_metadata("topic", "ocean"),
    ];
    let report = pipeline.ingest(notes, IngestOptions::default()).await?;
    println!("list: {} documents, {} chunks", report.documents, report.chunks);

    // A stream (a queue consumer, a paginated API): read once, document by document.
    let feed = futures::stream::iter((1..=3).map(|i| {
        Ok(Document::new(format!("orbit-{i}"), format!("Planet {i} orbits the Sun every {} days.", 100 * i))
            .with_metadata("topic", "space"))
    }))
    .boxed();
    let report = pipeline
        .ingest(StreamSource::new(feed, "planets"), IngestOptions::new().progress(|done, _| eprintln!("  {done} done")))
        .await?;
    println!("stream: {} documents, {} chunks", report.documents, report.chunks);

    let answer = pipeline.query("What causes tides?", &QueryOptions::new().k(2)).await?;
    println!("\n{}", answer.answer);
    for hit in &answer.hits {
        println!("  #{} {} ({:.2})", hit.rank, hit.doc_id, hit.score);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
