#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod assemble;
pub mod bench;
pub mod config;
pub mod eval;
pub mod feedback;
pub mod generate;
pub mod guide;
pub mod ingest;
pub mod manifest;
pub mod pipeline;
pub mod query;
pub mod queue;
pub mod retrieve;
pub mod scale;
pub mod sources;
pub mod sys;
pub mod tune;

pub use config::RagConfig;
pub use generate::ExtractiveGenerator;
pub use ingest::{IngestOptions, IngestReport};
pub use pipeline::{OriginCounts, RagPipeline, RagPipelineBuilder, Stats};
pub use query::{Citation, Hit, Pages, PipelineRetriever, QueryOptions, QueryResult, Rerank, Retrieval, SearchResult};
pub use retrieve::{DenseSide, Fusion, HybridRetriever, RetrievalMode, RetrievalSettings};
pub use sources::FileSource;

/// Chunking and context windows (`rag-chunk`).
pub use rag_chunk as chunk;
/// The core traits, types and error (re-exported from `rag-core`).
pub use rag_core as core;
pub use rag_core::{
    Chunk, Document, DocumentSource, Filter, InMemorySource, RagError, Result, SourceDocument, SourceItem, StreamSource,
    TextFormat,
};
/// The BM25 keyword index (`rag-keyword`).
pub use rag_keyword as keyword;
pub use rag_keyword::{KeywordConfig, KeywordIndex};

/// DSPy: the `[generator]` settings always; generators, the Rust retriever for DSPy, BasicRag,
/// MultiHopRag with feature `dspy`.
pub use rag_dspy as dspy;
/// Embedders and the embedding cache: the local cache and the settings always, each embedder
/// with its feature (`onnx`, `sentence-transformers`, `openai`), Redis with `redis-cache`.
pub use rag_embed as embed;
/// The embedded Python runtime.
#[cfg(feature = "python")]
pub use rag_python as python;
/// The ingest work queue on Redis Streams: its settings always, the queue with feature
/// `redis-queue`.
pub use rag_queue_redis as redis_queue;
/// Reranking: the `[rerank.cross-encoder]` settings always, the cross-encoder with feature `cross-encoder`.
pub use rag_rerank as rerank;
/// ChromaDB vector store: its settings always, the store with feature `chroma`.
pub use rag_vector_chroma as chroma;
/// Pinecone vector store: its settings always, the store with feature `pinecone`.
pub use rag_vector_pinecone as pinecone;
/// Qdrant vector store: its settings always, the store with feature `qdrant`.
pub use rag_vector_qdrant as qdrant;

/// mockall mocks of every core trait (feature `test-utils`).
#[cfg(feature = "test-utils")]
pub use rag_core::mocks;
