//! [`CrossEncoderReranker`]: reranking with a sentence-transformers `CrossEncoder`.
//!
//! Every (query, candidate) pair is scored in one `predict` call per batch; [`Reranker::rerank_batch`](rag_core::Reranker::rerank_batch)
//! scores many queries' candidates in a single crossing into Python. No trained cross-encoder
//! ships offline here: give a local model directory (tests build a tiny random BERT one with
//! `rag_testkit::models::build_tiny_cross_encoder`).
//!
//! [`CrossEncoderSettings`] (the configuration's `[rerank.cross-encoder]` table) is always built;
//! the reranker itself needs the `runtime` feature.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod settings;
pub use settings::CrossEncoderSettings;

#[cfg(feature = "runtime")]
mod batch;
#[cfg(feature = "runtime")]
mod cross_encoder;
#[cfg(feature = "runtime")]
pub use batch::BatchingReranker;
#[cfg(feature = "runtime")]
pub use cross_encoder::*;
