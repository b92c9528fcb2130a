//! placeholder
#[cfg(feature = "chroma")]
pub use rag_vector_chroma as chroma;
#[cfg(feature = "pinecone")]
pub use rag_vector_pinecone as pinecone;
#[cfg(feature = "qdrant")]
pub use rag_vector_qdrant as qdrant;
