//! [`PineconeStore`]: a [`VectorStore`](rag_core::VectorStore) over a Pinecone index through the Python `pinecone` client.
//!
//! * `Pinecone(api_key)` with an index name (resolved, and created as a serverless index with
//!   dimension, metric, cloud and region if missing) or an index host; namespaces.
//! * Upserts are split within Pinecone's request limits (1,000 vectors and 2 MB a request);
//!   the chunk text is kept in metadata (`text`), and a vector whose metadata exceeds Pinecone's
//!   40 KB is refused with an error naming the chunk.
//! * The typed filter becomes Pinecone's operators (`$eq $ne $in $nin $gt $gte $lt $lte $and $or`).
//! * Scores: cosine and dotproduct as returned; euclidean (a distance) as `-distance`.
//! * Pinecone stores numbers as floats: integer metadata comes back as `Float`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod settings;
pub use settings::*;

#[cfg(feature = "store")]
mod store;
#[cfg(feature = "store")]
pub use store::*;
