//! One ingest spread over many workers through an [`IngestQueue`]: [`enqueue`] reads any
//! [`DocumentSource`] into batches, [`IngestWorker`]s ingest them wherever they run, and
//! [`wait_for_run`] follows the run to its end (then [`RagPipeline::prune_run`] prunes once).
//!
//! The store is the ingest record, so the effect is exactly once however often a batch is
//! delivered: a batch redelivered after its worker died finds what that worker wrote unchanged.
//! Documents the pipeline refuses (invalid metadata, say) go to the queue's dead letters with
//! the reason; the rest of their batch is stored. Any other failure leaves the batch to be
//! delivered again after the visibility timeout, up to the queue's delivery limit, then its
//! documents go to the dead letters too.
//!
//! ```no_run
//! # async fn demo(pipeline: std::sync::Arc<rag::RagPipeline>) -> rag::Result<()> {
//! use std::sync::Arc;
//! use rag::core::InMemoryQueue;
//! use rag::queue::{EnqueueOptions, IngestWorker, enqueue, wait_for_run};
//! let queue = Arc::new(InMemoryQueue::default());
//! let docs = vec![rag::Document::new("a", "Rust has no garbage collector.")];
//! let run = enqueue(queue.as_ref(), docs, &EnqueueOptions::default()).await?;
//! let worker = IngestWorker::new(pipeline, queue.clone(), "worker-1");
//! tokio::spawn(async move { worker.run(std::future::pending()).await });
//! let status = wait_for_run(queue.as_ref(), &run.run, None).await?;
//! assert_eq!(status.tally.documents, 1);
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rag_core::queue::{BatchTally, DeadLetter, Delivery, RunStatus, WorkBatch};
use rag_core::{DocumentSource, DocumentStream, IngestQueue, RagError, Result, Skipped, SourceDocument, SourceItem};
use serde::Serialize;

use crate::ingest::{IngestOptions, IngestReport, check_id_present, check_id_unique};
use crate::pipeline::{Progress, RagPipeline};

/// How [`enqueue`] cuts a source into batches.
#[derive(Clone)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// Documents a batch holds at most.
    pub batch_documents: usize,
    /// Text a batch holds at most, in bytes (a batch closes early on long documents).
    pub batch_bytes: usize,
    /// Waits while this many batches are queued or in flight.
    pub max_backlog_batches: u64,
    /// Called with `(enqueued, total)` documents (`total` 0 while unknown).
    pub progress: Option<Progress>,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        let s = rag_queue_redis::QueueSettings::default();
        Self::from_settings(&s)
    }
}

impl std::fmt::Debug for EnqueueOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueOptions")
            .field("batch_documents", &self.batch_documents)
            .field("batch_bytes", &self.batch_bytes)
            .field("max_backlog_batches", &self.max_backlog_batches)
            .finish_non_exhaustive()
    }
}

impl EnqueueOptions {
    /// The batch sizes and backlog limit of the `[queue]` settings.
    pub fn from_settings(s: &rag_queue_redis::QueueSettings) -> Self {
        Self {
            batch_documents: s.batch_documents.max(1),
            batch_bytes: s.batch_bytes.max(1),
            max_backlog_batches: s.max_backlog_batches.max(1),
            progress: None,
        }
    }

    /// Reports `(enqueued, total)` documents as they go into the queue.
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// What [`enqueue`] put into the queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EnqueuedRun {
    /// The run's id: the key of its status, its dead letters and its batches.
    pub run: String,
    /// Batches pushed.
    pub batches: u64,
    /// Documents pushed.
    pub documents: u64,
    /// Inputs the source passed over (unreadable files), with the reason.
    pub skipped: Vec<Skipped>,
    /// The origins the source covers (pruning is limited to them).
    pub origins: Vec<String>,
    /// Every document id pushed (pruning keeps these).
    #[serde(skip)]
    pub ids: HashSet<String>,
}

/// A new run id: the time and this process, unique enough across producers.
fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{:x}-{:x}-{:x}", now.as_millis(), std::process::id(), now.subsec_nanos() & 0xffff)
}

/// Reads `source` into batches on `queue` and seals the run. Ids are checked here (not empty,
/// unique in the run), as a one-process ingest checks them; everything else about a document
/// is the workers' to judge. Waits whenever the queue holds `max_backlog_batches`, so memory
/// in Redis stays bounded whatever the corpus.
pub async fn enqueue(queue: &dyn IngestQueue, source: impl DocumentSource, options: &EnqueueOptions) -> Result<EnqueuedRun> {
    let DocumentStream { total, origins, mut items } = source.open().await?;
    let total = total.unwrap_or(0);
    let mut run = EnqueuedRun { run: new_run_id(), origins, ..EnqueuedRun::default() };
    let mut batch: Vec<SourceDocument> = Vec::new();
    let mut bytes = 0usize;
    while let Some(item) = items.next().await {
        let d = match item? {
            SourceItem::Skipped(s) => {
                tracing::warn!(path = %s.path, reason = %s.reason, "skipped");
                run.skipped.push(s);
                continue;
            }
            SourceItem::Document(d) => d,
        };
        check_id_present(&d)?;
        check_id_unique(&d, &mut run.ids)?;
        bytes += d.document.text.len();
        batch.push(d);
        if batch.len() >= options.batch_documents || bytes >= options.batch_bytes {
            push(queue, &mut run, std::mem::take(&mut batch), options, total).await?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        push(queue, &mut run, batch, options, total).await?;
    }
    queue.seal(&run.run, run.batches, run.documents).await?;
    Ok(run)
}

async fn push(
    queue: &dyn IngestQueue,
    run: &mut EnqueuedRun,
    documents: Vec<SourceDocument>,
    options: &EnqueueOptions,
    total: u64,
) -> Result<()> {
    let mut waited = Instant::now();
    while queue.backlog().await? >= options.max_backlog_batches {
        if waited.elapsed() > Duration::from_secs(60) {
            tracing::warn!(
                backlog = options.max_backlog_batches,
                "the queue is full and not draining: is a `rag worker` running?"
            );
            waited = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = documents.len() as u64;
    let batch = WorkBatch { run: run.run.clone(), seq: run.batches, documents };
    retrying("pushing a batch", || queue.push(&batch)).await?;
    run.batches += 1;
    run.documents += n;
    if let Some(p) = &options.progress {
        p(run.documents, total);
    }
    Ok(())
}

/// Runs `op` again while it fails with a retryable error (Redis restarting), for up to a
/// minute; any other error, or one past that, is returned.
async fn retrying<T, F, Fut>(what: &str, op: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Err(e) if e.is_retryable() && start.elapsed() < Duration::from_secs(60) => {
                tracing::warn!(error = %e, "{what}: the queue is unreachable, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Follows `run` until every batch is acknowledged, reporting `(settled, total)` documents
/// (ingested, passed over or given up on) to `progress`. A queue that is briefly unreachable
/// is waited for; nothing moving for a minute is logged (no worker running?).
pub async fn wait_for_run(queue: &dyn IngestQueue, run: &str, progress: Option<Progress>) -> Result<RunStatus> {
    let mut last = (u64::MAX, Instant::now());
    loop {
        let status = retrying("following the run", || queue.status(run)).await?;
        if let Some(p) = &progress {
            p(status.tally.settled(), status.documents);
        }
        if status.is_complete() {
            return Ok(status);
        }
        if status.acked_batches != last.0 {
            last = (status.acked_batches, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            tracing::warn!(
                run,
                acked = status.acked_batches,
                of = status.batches,
                "no batch acknowledged for a minute: is a `rag worker` running?"
            );
            last.1 = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A finished run, summed over every worker: what `rag ingest --queue --wait` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueRunReport {
    /// The run.
    pub run: String,
    /// Batches.
    pub batches: u64,
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
    /// Documents given up on (see `dead_letters`).
    pub failed: u64,
    /// Documents removed by pruning.
    pub removed: u64,
    /// Inputs passed over by the producer (unreadable files) or by workers (no text).
    pub skipped: Vec<Skipped>,
    /// Documents with no text, passed over by the workers.
    pub skipped_by_workers: u64,
    /// What each worker did.
    pub workers: std::collections::BTreeMap<String, rag_core::queue::WorkerShare>,
    /// The documents given up on, with why (the first 100).
    pub dead_letters: Vec<DeadLetter>,
    /// Wall time from the first batch to the end of the run.
    pub seconds: f64,
}

impl QueueRunReport {
    /// The report of a run that `enqueued` started and `status` ended.
    pub fn new(enqueued: &EnqueuedRun, status: RunStatus, dead_letters: Vec<DeadLetter>, seconds: f64) -> Self {
        let t = status.tally;
        Self {
            run: status.run,
            batches: status.batches,
            documents: t.documents,
            chunks: t.chunks,
            embedded: t.embedded,
            cache_hits: t.cache_hits,
            unchanged: t.unchanged,
            failed: t.failed,
            removed: 0,
            skipped: enqueued.skipped.clone(),
            skipped_by_workers: t.skipped,
            workers: status.workers,
            dead_letters,
            seconds,
        }
    }
}

impl RagPipeline {
    /// Prunes after a queued run has finished: removes documents of the run's origins that it
    /// did not push. Call it once, after [`wait_for_run`] (a worker cannot: it sees one batch).
    pub async fn prune_run(&self, run: &EnqueuedRun) -> Result<u64> {
        let origins: BTreeSet<String> = run.origins.iter().cloned().collect();
        self.prune(&origins, &run.ids).await
    }
}

/// The documents of one batch, as a source for [`RagPipeline::ingest`].
struct BatchSource(Vec<SourceDocument>);

#[async_trait::async_trait]
impl DocumentSource for BatchSource {
    async fn open(&self) -> Result<DocumentStream> {
        let origins: BTreeSet<String> = self.0.iter().map(|d| d.origin.clone()).collect();
        let items: Vec<Result<SourceItem>> = self.0.iter().cloned().map(|d| Ok(SourceItem::Document(d))).collect();
        Ok(DocumentStream {
            total: Some(items.len() as u64),
            origins: origins.into_iter().collect(),
            items: futures::stream::iter(items).boxed(),
        })
    }
}

fn tally_of(report: &IngestReport) -> BatchTally {
    BatchTally {
        documents: report.documents,
        chunks: report.chunks,
        embedded: report.embedded,
        cache_hits: report.cache_hits,
        unchanged: report.unchanged,
        skipped: report.skipped.len() as u64,
        failed: 0,
    }
}

/// What an [`IngestWorker`] did with one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    /// Ingested (some documents perhaps sent to the dead letters) and acknowledged.
    Acked {
        /// What it did.
        tally: BatchTally,
        /// Whether this was the batch's first acknowledgement (its tally counted).
        first: bool,
    },
    /// Failed, not for a document's sake: left for the queue to deliver again.
    Released {
        /// Why.
        error: String,
        /// Whether the error was a transient one (a store or network hiccup).
        retryable: bool,
    },
}

/// What a worker did until it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerReport {
    /// The worker's name.
    pub worker: String,
    /// Batches it acknowledged.
    pub batches: u64,
    /// Batches it left for another try.
    pub released: u64,
    /// Its acknowledged batches' tallies, summed (a batch acknowledged before by another worker
    /// included: what this worker did, not what the run counted).
    pub tally: BatchTally,
}

/// A worker name unique among a queue's workers: `HOST-PID`.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "worker".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

/// A worker: takes batches from a queue and ingests them into its pipeline until told to stop.
pub struct IngestWorker {
    pipeline: Arc<RagPipeline>,
    queue: Arc<dyn IngestQueue>,
    name: String,
    max_deliveries: u32,
    keep_every: Duration,
    poll: Duration,
    until_idle: Option<Duration>,
    ingest_options: Option<IngestOptions>,
}

impl std::fmt::Debug for IngestWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestWorker")
            .field("name", &self.name)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

/// Consecutive batches that fail whole, with an error that is not the documents', before a
/// worker stops: a worker that cannot write (a wrong key, a store it cannot reach) leaves the
/// queue to healthy workers instead of spending every batch's deliveries.
const BROKEN_AFTER: u32 = 3;

impl IngestWorker {
    /// A worker named `name` (unique among the queue's workers: the queue counts each worker's
    /// share by it) ingesting into `pipeline`.
    pub fn new(pipeline: Arc<RagPipeline>, queue: Arc<dyn IngestQueue>, name: impl Into<String>) -> Self {
        let s = rag_queue_redis::QueueSettings::default();
        Self {
            pipeline,
            queue,
            name: name.into(),
            max_deliveries: s.max_deliveries,
            keep_every: Duration::from_secs(s.visibility_timeout_secs) / 3,
            poll: Duration::from_secs(2),
            until_idle: None,
            ingest_options: None,
        }
    }

    /// The queue's delivery limit and visibility timeout (the worker touches its batch every
    /// third of it).
    pub fn settings(mut self, s: &rag_queue_redis::QueueSettings) -> Self {
        self.max_deliveries = s.max_deliveries.max(1);
        self.keep_every = (Duration::from_secs(s.visibility_timeout_secs) / 3).max(Duration::from_millis(100));
        self
    }

    /// Stops once the queue has had nothing to do (no batch waiting or in flight) for `idle`.
    pub fn until_idle(mut self, idle: Duration) -> Self {
        self.until_idle = Some(idle);
        self
    }

    /// Ingests each batch with these options (a progress callback, a cache namespace) instead
    /// of the defaults (one write batch a delivery).
    pub fn ingest_options(mut self, options: IngestOptions) -> Self {
        self.ingest_options = Some(options);
        self
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Works the queue until `stop` completes (the batch in hand is finished first), or, with
    /// [`IngestWorker::until_idle`], until the queue is idle. A queue that is briefly
    /// unreachable is waited for. Returns an error only when the worker itself cannot work
    /// (three batches in a row failed whole with an error that is not about their documents).
    pub async fn run(&self, stop: impl Future<Output = ()>) -> Result<WorkerReport> {
        let mut report = WorkerReport { worker: self.name.clone(), ..WorkerReport::default() };
        let mut stop = std::pin::pin!(stop);
        let mut idle_since: Option<Instant> = None;
        let mut broken = 0u32;
        let mut unreachable = Duration::from_millis(100);
        loop {
            let next = tokio::select! {
                () = &mut stop => return Ok(report),
                next = self.queue.next(&self.name, self.poll) => next,
            };
            let delivery = match next {
                Ok(Some(d)) => d,
                Ok(None) => {
                    if let Some(idle) = self.until_idle
                        && self.queue.backlog().await.unwrap_or(1) == 0
                    {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= idle {
                            return Ok(report);
                        }
                    } else {
                        idle_since = None;
                    }
                    continue;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "the queue is unreachable; retrying");
                    tokio::time::sleep(unreachable).await;
                    unreachable = (unreachable * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(e) => return Err(e),
            };
            unreachable = Duration::from_millis(100);
            idle_since = None;
            match self.work(delivery).await {
                Ok(BatchOutcome::Acked { tally, .. }) => {
                    broken = 0;
                    report.batches += 1;
                    report.tally.add(&tally);
                }
                Ok(BatchOutcome::Released { retryable: true, .. }) => {
                    // The store or the network hiccuped: every batch would fail alike for now.
                    report.released += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(BatchOutcome::Released { error, retryable: false }) => {
                    report.released += 1;
                    broken += 1;
                    if broken >= BROKEN_AFTER {
                        return Err(RagError::config(format!(
                            "worker `{}` stopped: {broken} batches in a row failed whole, the last with: {error} \
                             (their batches stay in the queue for other workers; fix this worker's store or settings)",
                            self.name
                        )));
                    }
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "could not acknowledge a batch; it will be delivered again")
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ingests one delivery and acknowledges it, touching it meanwhile so no other worker
    /// takes it; a delivery past the limit goes to the dead letters unread.
    pub async fn work(&self, delivery: Delivery) -> Result<BatchOutcome> {
        if delivery.deliveries > self.max_deliveries {
            let reason = format!(
                "delivered {} times and never acknowledged (it stops or kills every worker that takes it)",
                delivery.deliveries - 1
            );
            return self.give_up(&delivery, reason).await;
        }
        let ingest = self.ingest(&delivery);
        let keep = async {
            loop {
                tokio::time::sleep(self.keep_every).await;
                if let Err(e) = self.queue.keep(&self.name, &delivery).await {
                    tracing::warn!(error = %e, "could not touch the batch in hand");
                }
            }
        };
        let result = tokio::select! {
            r = ingest => r,
            () = keep => Err(RagError::internal("the batch's keep-alive loop ended")),
        };
        match result {
            Ok((tally, dead)) => {
                let first = self.queue.ack(&self.name, &delivery, tally, dead).await?;
                Ok(BatchOutcome::Acked { tally, first })
            }
            Err(e) if delivery.deliveries >= self.max_deliveries => self.give_up(&delivery, e.to_string()).await,
            Err(e) => {
                tracing::warn!(error = %e, seq = delivery.batch.seq, deliveries = delivery.deliveries, "batch failed; left for another try");
                Ok(BatchOutcome::Released { error: e.to_string(), retryable: e.is_retryable() })
            }
        }
    }

    /// Sends every document of `delivery` to the dead letters with `reason`, and acknowledges it.
    async fn give_up(&self, delivery: &Delivery, reason: String) -> Result<BatchOutcome> {
        let docs = &delivery.batch.documents;
        let letter = self.letter(delivery, ids_of(docs), reason);
        let tally = BatchTally { failed: docs.len() as u64, ..BatchTally::default() };
        let first = self.queue.ack(&self.name, delivery, tally, vec![letter]).await?;
        Ok(BatchOutcome::Acked { tally, first })
    }

    fn letter(&self, delivery: &Delivery, doc_ids: Vec<String>, reason: String) -> DeadLetter {
        DeadLetter {
            run: delivery.batch.run.clone(),
            seq: delivery.batch.seq,
            doc_ids,
            reason,
            deliveries: delivery.deliveries,
            worker: self.name.clone(),
        }
    }

    /// The batch whole; if the pipeline refuses it for one document's sake, document by
    /// document, so only the refused ones go to the dead letters. An error that is not about
    /// a document's content (the store is down) fails the delivery.
    async fn ingest(&self, delivery: &Delivery) -> Result<(BatchTally, Vec<DeadLetter>)> {
        let docs = &delivery.batch.documents;
        let options = || self.ingest_options.clone().unwrap_or_else(|| IngestOptions::new().batch_size(docs.len().max(1)));
        match self.pipeline.ingest(BatchSource(docs.clone()), options()).await {
            Ok(report) => return Ok((tally_of(&report), Vec::new())),
            Err(e) if !refuses_the_document(&e) => return Err(e),
            Err(e) if docs.len() == 1 => {
                let letter = self.letter(delivery, ids_of(docs), e.to_string());
                return Ok((BatchTally { failed: 1, ..BatchTally::default() }, vec![letter]));
            }
            Err(e) => tracing::info!(error = %e, "a document of the batch was refused; ingesting it document by document"),
        }
        let mut tally = BatchTally::default();
        let mut dead = Vec::new();
        for d in docs {
            match self.pipeline.ingest(BatchSource(vec![d.clone()]), options()).await {
                Ok(report) => tally.add(&tally_of(&report)),
                Err(e) if refuses_the_document(&e) => {
                    tally.failed += 1;
                    dead.push(self.letter(delivery, vec![d.document.id.clone()], e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((tally, dead))
    }
}

fn ids_of(docs: &[SourceDocument]) -> Vec<String> {
    docs.iter().map(|d| d.document.id.clone()).collect()
}

/// Whether `e` says the document itself is unacceptable (so retrying cannot help).
fn refuses_the_document(e: &RagError) -> bool {
    matches!(e, RagError::InvalidInput { .. })
}
