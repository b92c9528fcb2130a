//! [`QdrantStore`]: a [`VectorStore`](rag_core::VectorStore) over Qdrant through the Python `qdrant-client`.
//!
//! * Modes: local on-disk (`QdrantClient(path=...)`), in-memory, and server (`url`, `api_key`,
//!   gRPC preference) for users who outgrow one machine.
//! * Creates the collection if missing with size and distance (Cosine, Euclid, Dot); refuses a
//!   dimension or distance mismatch clearly.
//! * String ids map to deterministic UUIDs (v5; Qdrant accepts only unsigned ints or UUIDs); the
//!   original id is kept in the payload (`chunk_id`) and returned.
//! * Queries use `query_points` (`.search` is gone in 1.20); the typed filter becomes real
//!   `models.Filter` / `FieldCondition` / `Range` / `MatchAny` objects.
//! * Scores: Cosine and Dot as Qdrant returns them; Euclid as `-distance`. Higher is more similar.
//! * With a [`SparseEncoder`](rag_core::SparseEncoder) ([`QdrantStoreBuilder::sparse`]) the collection also holds BM25 as
//!   the sparse vector `bm25` with `modifier = IDF` (Qdrant keeps the corpus statistics), and
//!   the store is everything a pipeline keeps: [`KeywordSearch`](rag_core::KeywordSearch) (sparse queries),
//!   [`HybridSearch`](rag_core::HybridSearch) (one `query_points` with a dense and a sparse prefetch, fused by Qdrant with
//!   RRF or DBSF, the filter inside both prefetches) and the ingest record ([`IngestLedger`](rag_core::IngestLedger),
//!   read back from each chunk's payload). Several workers can then share one collection.
//! * Idempotent requests are retried when a node is unreachable or answers 5xx (a cluster node
//!   lost mid-request), five times with doubling backoff from 0.2 s.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod settings;
pub use settings::*;

#[cfg(feature = "store")]
mod store;
#[cfg(feature = "store")]
pub use store::*;
