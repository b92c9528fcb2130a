//! An unchanged re-ingest never loads the torch embedding model: the embedder's id, dimension
//! and window come from the model's files, and the weights load on the first text to embed.
//! Needs `make setup` (the real MiniLM and ChromaDB); fails, never skips, without it.
#![cfg(all(feature = "chroma", feature = "sentence-transformers"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod lazy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reingest_never_constructs_the_model() {
    lazy::an_unchanged_reingest_never_loads("sentence-transformers").await;
}
