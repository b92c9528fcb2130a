//! Chunking and context-window packing, native and exact.
//!
//! * [`TokenCounter`]: tiktoken-rs encodings (cl100k_base default, o200k_base, p50k_base),
//!   embedded in the binary, loaded once, shared.
//! * [`TokenChunker`], [`SemanticChunker`], [`MarkdownChunker`]: each implements
//!   [`rag_core::Chunker`]; every chunk has its parent id, index, byte span (so
//!   `&doc.text[span.start..span.end] == chunk.text`), exact token count and content hash, and a
//!   deterministic id `"{doc_id}#{index}"`.
//! * [`FitToEmbedder`]: splits any chunk the embedding model would truncate, counted with the
//!   model's own tokenizer ([`EmbedderTokenizer`]).
//! * [`ContextWindow`]: packs ranked chunks into a token budget.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod chunkers;
mod fit;
mod tokens;
mod window;

pub use chunkers::{MarkdownChunker, SemanticChunker, TokenChunker};
pub use fit::{EmbedderTokenizer, FitToEmbedder};
pub use tokens::{Encoding, TokenCounter};
pub use window::{ContextOrder, ContextWindow, PackedChunk, PackedContext};
