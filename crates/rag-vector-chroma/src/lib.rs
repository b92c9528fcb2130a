//! [`ChromaStore`]: a [`VectorStore`](rag_core::VectorStore) over ChromaDB, driven through PyO3.
//!
//! * Modes: embedded persistent ([`ChromaMode::Persistent`], the project's default), in-memory,
//!   and client/server ([`ChromaMode::Http`], against `chroma run` or a hosted Chroma).
//! * Embeddings are always passed in; Chroma's default embedding function (which downloads a
//!   model) is never attached.
//! * Distance and dimension are recorded in the collection's metadata (`hnsw:space`,
//!   `rag:dimension`); reopening with different ones is refused with a clear error.
//! * Metadata keeps its types, so a stock Python chromadb client reading the same directory sees
//!   ids, documents and typed metadata as it expects. A chunk's own fields are stored beside the
//!   metadata under the keys in [`rag_python::store::reserved`].
//! * Scores: cosine `1 - d`; l2 `-d`; ip `1 - d` (= the dot product). Higher is more similar.
//! * List-valued metadata follows rag-core's semantics (a list equals a value it contains):
//!   Chroma's `$eq` / `$in` look at scalars only, so string conditions are sent with a
//!   `$contains` / `$not_contains` twin ([`OperatorDialect::list_membership`](rag_python::store::OperatorDialect::list_membership)).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod settings;
pub use settings::*;

#[cfg(feature = "store")]
mod store;
#[cfg(feature = "store")]
pub use store::*;
