//! The work-queue seam: one ingest spread over many workers.
//!
//! A producer reads a [`crate::DocumentSource`] and [`IngestQueue::push`]es its documents in
//! [`WorkBatch`]es, then [`IngestQueue::seal`]s the run with its totals. Workers take batches
//! with [`IngestQueue::next`], ingest them (the store, as the ingest record, decides what is
//! unchanged, so a batch delivered twice does no harm), and [`IngestQueue::ack`] each with what
//! it did. The queue adds a batch's [`BatchTally`] to its run **once**, however often it was
//! delivered, so the run's totals are exact; a batch a worker took and never acknowledged (the
//! worker died) is handed to another after the queue's visibility timeout, with its
//! [`Delivery::deliveries`] count, which lets a worker give up on a batch that kills every
//! worker that takes it ([`DeadLetter`]).
//!
//! [`InMemoryQueue`] is the queue inside one process (tests, one machine's worker tasks); the
//! Redis Streams queue of `rag-queue-redis` is the one shared by processes and machines.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, SourceDocument};

/// One batch of an ingest run, as it travels through a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkBatch {
    /// The run it belongs to.
    pub run: String,
    /// Its number in the run, from 0: the key that makes its tally count once.
    pub seq: u64,
    /// The documents, with their origin and format.
    pub documents: Vec<SourceDocument>,
}

/// A batch handed to one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The queue's own handle for it (a Redis stream entry id).
    pub receipt: String,
    /// The batch.
    pub batch: WorkBatch,
    /// How many times it has been handed out, this time included (1 the first time).
    pub deliveries: u32,
}

/// What a worker did with one batch, added into its run's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTally {
    /// Documents ingested (written or unchanged).
    pub documents: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Texts sent to the embedding model.
    pub embedded: u64,
    /// Texts served from the embedding cache.
    pub cache_hits: u64,
    /// Documents the ingest record already held unchanged.
    pub unchanged: u64,
    /// Documents passed over (no text).
    pub skipped: u64,
    /// Documents given up on (sent to the dead letters).
    pub failed: u64,
}

impl BatchTally {
    /// The tally's fields by name, as a queue stores them.
    pub fn fields(&self) -> [(&'static str, u64); 7] {
        [
            ("documents", self.documents),
            ("chunks", self.chunks),
            ("embedded", self.embedded),
            ("cache_hits", self.cache_hits),
            ("unchanged", self.unchanged),
            ("skipped", self.skipped),
            ("failed", self.failed),
        ]
    }

    /// Sets the field `name` (one of [`BatchTally::fields`]); false for an unknown name.
    pub fn set(&mut self, name: &str, value: u64) -> bool {
        let slot = match name {
            "documents" => &mut self.documents,
            "chunks" => &mut self.chunks,
            "embedded" => &mut self.embedded,
            "cache_hits" => &mut self.cache_hits,
            "unchanged" => &mut self.unchanged,
            "skipped" => &mut self.skipped,
            "failed" => &mut self.failed,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// Adds `other` into this tally.
    pub fn add(&mut self, other: &BatchTally) {
        self.documents += other.documents;
        self.chunks += other.chunks;
        self.embedded += other.embedded;
        self.cache_hits += other.cache_hits;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }

    /// Documents accounted for: ingested, passed over or given up on.
    pub fn settled(&self) -> u64 {
        self.documents + self.skipped + self.failed
    }
}

/// Documents a worker gave up on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The run.
    pub run: String,
    /// The batch's number in the run.
    pub seq: u64,
    /// The documents given up on.
    pub doc_ids: Vec<String>,
    /// The error, as the worker saw it.
    pub reason: String,
    /// How many times the batch had been delivered.
    pub deliveries: u32,
    /// The worker that gave up.
    pub worker: String,
}

/// What one worker did in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerShare {
    /// Batches it acknowledged first.
    pub batches: u64,
    /// Documents in them.
    pub documents: u64,
}

/// Where a run stands, summed over every worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// The run.
    pub run: String,
    /// Whether the producer has pushed its last batch.
    pub sealed: bool,
    /// Batches pushed (final once sealed).
    pub batches: u64,
    /// Documents pushed (final once sealed).
    pub documents: u64,
    /// Batches acknowledged (each counted once).
    pub acked_batches: u64,
    /// The acknowledged batches' tallies, summed.
    pub tally: BatchTally,
    /// Each worker's share, by worker name.
    pub workers: BTreeMap<String, WorkerShare>,
}

impl RunStatus {
    /// Whether every batch of a sealed run is acknowledged.
    pub fn is_complete(&self) -> bool {
        self.sealed && self.acked_batches >= self.batches
    }
}

/// A queue of ingest work shared by a producer and any number of workers.
///
/// Implementations hand each batch to one worker at a time, hand it again to another after a
/// visibility timeout if it is not acknowledged (or [`IngestQueue::keep`]), count
/// [`Delivery::deliveries`], and add a batch's tally to its run once however often it is
/// acknowledged.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait IngestQueue: Send + Sync {
    /// Appends a batch.
    async fn push(&self, batch: &WorkBatch) -> Result<()>;
    /// Records that the run's producer is done: `batches` batches holding `documents` documents.
    async fn seal(&self, run: &str, batches: u64, documents: u64) -> Result<()>;
    /// The next batch for `worker`: first one another worker left unacknowledged past the
    /// visibility timeout, else a new one, waiting up to `wait` for it; `None` if none came.
    async fn next(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>>;
    /// Tells the queue that `worker` is still working on `delivery` (restarts its visibility
    /// timeout, so a long batch is not handed to another worker).
    async fn keep(&self, worker: &str, delivery: &Delivery) -> Result<()>;
    /// Finishes a delivery: adds `tally` to its run (unless the batch was acknowledged before),
    /// records `dead` letters, and removes the batch. True when this was the first
    /// acknowledgement.
    async fn ack(&self, worker: &str, delivery: &Delivery, tally: BatchTally, dead: Vec<DeadLetter>) -> Result<bool>;
    /// A run's status.
    async fn status(&self, run: &str) -> Result<RunStatus>;
    /// The dead letters of `run`, oldest first, at most `limit`.
    async fn dead_letters(&self, run: &str, limit: usize) -> Result<Vec<DeadLetter>>;
    /// Batches waiting or in a worker's hands, over every run.
    async fn backlog(&self) -> Result<u64>;
}

macro_rules! forward_queue {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: IngestQueue + ?Sized> IngestQueue for $ptr<T> {
            async fn push(&self, batch: &WorkBatch) -> Result<()> { (**self).push(batch).await }
            async fn seal(&self, run: &str, batches: u64, documents: u64) -> Result<()> { (**self).seal(run, batches, documents).await }
            async fn next(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>> { (**self).next(worker, wait).await }
            async fn keep(&self, worker: &str, delivery: &Delivery) -> Result<()> { (**self).keep(worker, delivery).await }
            async fn ack(&self, worker: &str, delivery: &Delivery, tally: BatchTally, dead: Vec<DeadLetter>) -> Result<bool> {
                (**self).ack(worker, delivery, tally, dead).await
            }
            async fn status(&self, run: &str) -> Result<RunStatus> { (**self).status(run).await }
            async fn dead_letters(&self, run: &str, limit: usize) -> Result<Vec<DeadLetter>> { (**self).dead_letters(run, limit).await }
            async fn backlog(&self) -> Result<u64> { (**self).backlog().await }
        }
    )*};
}

forward_queue!(Arc, Box);

/// A batch in an [`InMemoryQueue`] worker's hands.
#[derive(Debug)]
struct InFlight {
    batch: WorkBatch,
    deliveries: u32,
    since: Instant,
}

#[derive(Debug, Default)]
struct QueueState {
    next_receipt: u64,
    waiting: VecDeque<(String, WorkBatch, u32)>,
    in_flight: HashMap<String, InFlight>,
    runs: HashMap<String, RunStatus>,
    acked: HashMap<String, BTreeSet<u64>>,
    dead: Vec<DeadLetter>,
}

/// An [`IngestQueue`] inside one process, with the same semantics as a shared one (visibility
/// timeout, delivery counts, a tally counted once): for tests, and for worker tasks of one
/// process.
#[derive(Debug)]
pub struct InMemoryQueue {
    visibility: Duration,
    state: Mutex<QueueState>,
    arrived: tokio::sync::Notify,
}

impl InMemoryQueue {
    /// A queue that hands an unacknowledged batch to another worker after `visibility`.
    pub fn new(visibility: Duration) -> Self {
        Self { visibility, state: Mutex::new(QueueState::default()), arrived: tokio::sync::Notify::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an expired in-flight batch, else a waiting one.
    fn take(&self) -> Option<Delivery> {
        let mut s = self.state();
        let expired = s.in_flight.iter().find(|(_, f)| f.since.elapsed() >= self.visibility).map(|(r, _)| r.clone());
        if let Some(receipt) = expired {
            let f = s.in_flight.get_mut(&receipt)?;
            f.deliveries += 1;
            f.since = Instant::now();
            return Some(Delivery { receipt, batch: f.batch.clone(), deliveries: f.deliveries });
        }
        let (receipt, batch, deliveries) = s.waiting.pop_front()?;
        let deliveries = deliveries + 1;
        s.in_flight.insert(receipt.clone(), InFlight { batch: batch.clone(), deliveries, since: Instant::now() });
        Some(Delivery { receipt, batch, deliveries })
    }
}

impl Default for InMemoryQueue {
    /// A visibility timeout of 30 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[async_trait]
impl IngestQueue for InMemoryQueue {
    async fn push(&self, batch: &WorkBatch) -> Result<()> {
        {
            let mut s = self.state();
            s.next_receipt += 1;
            let receipt = s.next_receipt.to_string();
            let run =
                s.runs.entry(batch.run.clone()).or_insert_with(|| RunStatus { run: batch.run.clone(), ..RunStatus::default() });
            if !run.sealed {
                run.batches = run.batches.max(batch.seq + 1);
                run.documents += batch.documents.len() as u64;
            }
            s.waiting.push_back((receipt, batch.clone(), 0));
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn seal(&self, run: &str, batches: u64, documents: u64) -> Result<()> {
        let mut s = self.state();
        let status = s.runs.entry(run.to_owned()).or_insert_with(|| RunStatus { run: run.to_owned(), ..RunStatus::default() });
        (status.sealed, status.batches, status.documents) = (true, batches, documents);
        Ok(())
    }

    async fn next(&self, _worker: &str, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            if let Some(d) = self.take() {
                return Ok(Some(d));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Woken by a push, or soon enough to see a batch whose visibility ran out.
            let _ = tokio::time::timeout(left.min(self.visibility).min(Duration::from_millis(100)), arrived).await;
        }
    }

    async fn keep(&self, _worker: &str, delivery: &Delivery) -> Result<()> {
        if let Some(f) = self.state().in_flight.get_mut(&delivery.receipt) {
            f.since = Instant::now();
        }
        Ok(())
    }

    async fn ack(&self, worker: &str, delivery: &Delivery, tally: BatchTally, dead: Vec<DeadLetter>) -> Result<bool> {
        let mut s = self.state();
        s.in_flight.remove(&delivery.receipt);
        let run = &delivery.batch.run;
        if !s.acked.entry(run.clone()).or_default().insert(delivery.batch.seq) {
            return Ok(false);
        }
        let status = s.runs.entry(run.clone()).or_insert_with(|| RunStatus { run: run.clone(), ..RunStatus::default() });
        status.acked_batches += 1;
        status.tally.add(&tally);
        let share = status.workers.entry(worker.to_owned()).or_default();
        share.batches += 1;
        share.documents += delivery.batch.documents.len() as u64;
        s.dead.extend(dead);
        Ok(true)
    }

    async fn status(&self, run: &str) -> Result<RunStatus> {
        Ok(self.state().runs.get(run).cloned().unwrap_or_else(|| RunStatus { run: run.to_owned(), ..RunStatus::default() }))
    }

    async fn dead_letters(&self, run: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self.state().dead.iter().filter(|d| d.run == run).take(limit).cloned().collect())
    }

    async fn backlog(&self) -> Result<u64> {
        let s = self.state();
        Ok((s.waiting.len() + s.in_flight.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Document, TextFormat};

    fn batch(run: &str, seq: u64, ids: &[&str]) -> WorkBatch {
        let documents = ids
            .iter()
            .map(|id| SourceDocument::new(Document::new(*id, format!("text of {id}")), TextFormat::Plain, "o"))
            .collect();
        WorkBatch { run: run.into(), seq, documents }
    }

    #[test]
    fn a_batch_survives_json_with_its_origin_format_and_pages() {
        let mut b = batch("r", 3, &["a"]);
        b.documents[0] = b.documents[0].clone().with_page_starts(vec![0, 4]);
        b.documents[0].format = TextFormat::Markdown;
        let back: WorkBatch = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[tokio::test]
    async fn an_unacknowledged_batch_goes_to_another_worker_and_counts_once() {
        let q = InMemoryQueue::new(Duration::from_millis(50));
        q.push(&batch("r", 0, &["a", "b"])).await.unwrap();
        q.seal("r", 1, 2).await.unwrap();
        let first = q.next("w1", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(first.deliveries, 1);
        assert!(q.next("w2", Duration::ZERO).await.unwrap().is_none(), "in w1's hands until the timeout");
        let again = q.next("w2", Duration::from_secs(2)).await.unwrap().unwrap();
        assert_eq!((again.deliveries, again.batch.seq), (2, 0));
        let tally = BatchTally { documents: 2, chunks: 4, ..BatchTally::default() };
        assert!(q.ack("w2", &again, tally, Vec::new()).await.unwrap());
        assert!(!q.ack("w1", &first, tally, Vec::new()).await.unwrap(), "a second ack adds nothing");
        let status = q.status("r").await.unwrap();
        assert!(status.is_complete());
        assert_eq!((status.tally.chunks, status.workers.len(), q.backlog().await.unwrap()), (4, 1, 0));
    }

    #[test]
    fn tallies_add_field_by_field() {
        let mut t = BatchTally { documents: 1, failed: 2, ..BatchTally::default() };
        t.add(&BatchTally { documents: 3, chunks: 5, skipped: 1, ..BatchTally::default() });
        assert_eq!((t.documents, t.chunks, t.failed, t.settled()), (4, 5, 2, 7));
        assert!(!t.set("nope", 1));
    }
}
