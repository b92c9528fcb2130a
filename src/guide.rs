//! The library guide: your own backends, in-memory ingest, tests with mocks.
#![doc = include_str!("../docs/guide.md")]
