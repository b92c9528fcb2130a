//! The vector-store conformance suite, which lives in rag-core (feature `conformance`) so a
//! store written outside this workspace runs it without Python.

pub use rag_core::conformance::*;
