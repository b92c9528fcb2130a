//! The ONNX embedder (the default) is lazy too: assembling a pipeline reads the export's
//! description only, ONNX Runtime and the sessions load on the first text to embed, and an
//! unchanged re-ingest never loads them. Needs `make setup` (the ONNX export and ChromaDB);
//! fails, never skips, without it.
#![cfg(all(feature = "chroma", feature = "onnx"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod lazy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reingest_never_loads_the_onnx_sessions() {
    lazy::an_unchanged_reingest_never_loads("onnx").await;
}
