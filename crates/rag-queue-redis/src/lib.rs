//! [`RedisQueue`]: rag's ingest work queue ([`rag_core::IngestQueue`]) on Redis Streams, so one
//! ingest spreads over any number of worker processes and machines.
//!
//! * One stream of batches per collection, read by the consumer group `workers`: each batch
//!   goes to one worker (`XREADGROUP`), a batch a worker took and never acknowledged is claimed
//!   by another after the visibility timeout (`XAUTOCLAIM`), and a worker keeps a long batch
//!   its own by touching it (`XCLAIM ... JUSTID`).
//! * Acknowledging is one Lua script: the batch's tally is added to its run only if the batch's
//!   number was not acknowledged before (a set per run), then the entry is acknowledged and
//!   deleted, so a redelivered batch never counts twice and the stream holds only work not yet
//!   done.
//! * Dead letters go to a capped stream of their own, with the run, the documents and the
//!   reason.
//! * Every key of a collection shares one hash tag (`rag:queue:{collection}:...`), so the script
//!   runs on Redis Cluster too.
//!
//! Redis must persist (`appendonly yes`) for a queue to outlive a Redis restart.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod settings;
pub use settings::*;

#[cfg(feature = "queue")]
mod queue;
#[cfg(feature = "queue")]
pub use queue::*;
