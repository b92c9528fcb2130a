#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod batch;
mod choice;
/// The vector-store conformance suite (feature `conformance`).
#[cfg(feature = "conformance")]
pub mod conformance;
mod engine;
mod error;
pub mod feedback;
mod filter;
pub mod fusion;
pub mod memory;
pub mod metrics;
pub mod qa;
pub mod queue;
pub mod rules;
mod source;
mod traits;
mod types;

pub use engine::{
    HybridQuery, HybridSearch, IngestLedger, LedgerEntry, SparseEncoder, SparseVector, entries_from_chunks, ledger_keys,
};
pub use error::{BoxError, RagError, Result};
pub use feedback::{Feedback, FeedbackScope, FeedbackStore, InMemoryFeedbackStore, JudgedQueries, Judgment};
pub use filter::Filter;
pub use memory::InMemoryStore;
pub use qa::{QaExample, read_qa_examples};
pub use queue::{InMemoryQueue, IngestQueue};
pub use source::{
    DocumentSource, DocumentStream, InMemorySource, MEMORY_ORIGIN, PAGE_END_KEY, PAGE_KEY, Skipped, SourceDocument, SourceItem,
    StreamSource, TextFormat,
};
pub use traits::{
    Chunker, Embedder, Generator, KeywordSearch, NamespacedEmbedding, Reranker, Retriever, VectorStore, through_final,
};

/// 32 random hex digits (128 bits): the tail of answer and judgment ids, unguessable so one
/// client cannot name another's answer.
pub fn random_hex_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Per-stage wall time of one operation, in milliseconds, by stage name.
pub type StageTimings = std::collections::BTreeMap<String, f64>;
pub use types::{
    BatchCounters, Candidate, Chunk, ContextPassage, Distance, Document, EmbeddedChunk, Generation, GenerationEvent,
    GenerationRequest, Metadata, MetadataValue, RetrievalQuery, ScoredChunk, Span, StoreContext, StoreDescription, VectorQuery,
    content_hash,
};

/// mockall mocks of every core trait, for tests that assemble pipelines without Python.
#[cfg(any(test, feature = "test-utils"))]
pub mod mocks {
    pub use crate::engine::{MockHybridSearch, MockIngestLedger};
    pub use crate::feedback::MockFeedbackStore;
    pub use crate::queue::MockIngestQueue;
    pub use crate::source::MockDocumentSource;
    pub use crate::traits::{
        MockChunker, MockEmbedder, MockGenerator, MockKeywordSearch, MockReranker, MockRetriever, MockVectorStore,
    };
}
