//! Test support for the rag workspace (a dev-dependency only; nothing here is part of a
//! production crate's API): local servers started from the venv, tiny offline models, and the
//! vector-store conformance suite every store runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod conformance;
pub mod documents;
pub mod models;
pub mod qdrant;
pub mod servers;

pub use qdrant::{QdrantCluster, QdrantNode, qdrant_bin, spawn_qdrant};
pub use servers::*;

/// Whether tests must fail, rather than skip, when something they need is missing (`CI` set).
pub fn strict() -> bool {
    std::env::var_os("CI").is_some()
}
