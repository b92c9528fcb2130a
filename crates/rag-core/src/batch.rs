//! [`Coalescer`]: concurrent calls coalesced into one call of a batch-capable model.
//!
//! On 2 cores, sixteen concurrent queries that each call a model fight over the cores; one
//! padded batch of sixteen runs ~3x faster per item (docs/benchmarks.md). Callers hand their
//! request to one worker task; the worker takes everything queued (waiting up to `max_wait` for
//! more, until `max_items`), makes one call, and hands each caller its own answer. With nothing
//! else queued a call goes straight through, so a lone caller waits for nothing but the window.
//! Query embedding (`BatchingEmbedder`) and reranking (`BatchingReranker`) both run on it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::{BatchCounters, RagError, Result};

type Reply<O> = oneshot::Sender<Result<O>>;

/// The batched call: every queued request in, one answer per request out, in order.
pub type BatchCall<I, O> = Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, Result<Vec<O>>> + Send + Sync>;

/// Coalesces concurrent requests of type `I` into batched calls answering `O` each.
pub struct Coalescer<I, O> {
    queue: mpsc::UnboundedSender<(I, Reply<O>)>,
    counters: Arc<BatchCounters>,
    what: &'static str,
}

impl<I, O> std::fmt::Debug for Coalescer<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").field("what", &self.what).field("counters", &self.counters).finish()
    }
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    /// Starts the worker on the current tokio runtime. A batch holds up to `max_items` (as
    /// `size` counts them, at least one request), gathered for at most `max_wait` after its
    /// first request. `what` names the batched component in errors (`embedder`, `reranker`).
    pub fn spawn(
        what: &'static str,
        max_items: usize,
        max_wait: Duration,
        size: fn(&I) -> usize,
        call: BatchCall<I, O>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| RagError::config(format!("the {what} batcher must be started inside a tokio runtime")))?;
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(BatchCounters::default());
        let worker = Worker { rx, max_items: max_items.max(1), max_wait, size, call, counters: counters.clone(), what };
        runtime.spawn(worker.run());
        Ok(Self { queue, counters, what })
    }

    /// Queues `item` and waits for its own answer.
    pub async fn submit(&self, item: I) -> Result<O> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).map_err(|_| RagError::internal(format!("the {} batch worker has stopped", self.what)))?;
        answer.await.map_err(|e| RagError::internal_from(format!("the {} batch worker dropped a request", self.what), e))?
    }

    /// Batched calls made and the items they carried.
    pub fn counters(&self) -> Arc<BatchCounters> {
        self.counters.clone()
    }
}

struct Worker<I, O> {
    rx: mpsc::UnboundedReceiver<(I, Reply<O>)>,
    max_items: usize,
    max_wait: Duration,
    size: fn(&I) -> usize,
    call: BatchCall<I, O>,
    counters: Arc<BatchCounters>,
    what: &'static str,
}

impl<I, O> Worker<I, O> {
    async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut total = (self.size)(&first.0);
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.max_wait;
            // Everything already queued, then whatever arrives within the window.
            while total < self.max_items {
                let next = match self.rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(_) if self.max_wait.is_zero() => None,
                    Err(_) => tokio::time::timeout_at(deadline, self.rx.recv()).await.ok().flatten(),
                };
                match next {
                    Some(r) => {
                        total += (self.size)(&r.0);
                        batch.push(r);
                    }
                    None => break,
                }
            }
            self.counters.record(total);
            let n = batch.len();
            let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
            // A caller that gave up (dropped its future) is no error: `send` results are ignored.
            match (self.call)(items).await {
                Ok(outs) if outs.len() == n => {
                    for (reply, out) in replies.into_iter().zip(outs) {
                        let _ = reply.send(Ok(out));
                    }
                }
                Ok(outs) => {
                    let message = format!("returned {} answers for {n} requests", outs.len());
                    for reply in replies {
                        let _ = reply.send(Err(RagError::permanent(self.what, message.clone())));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(shared(self.what, &e)));
                    }
                }
            }
        }
    }
}

/// The batch's error for each of its callers: the same kind (so retry logic still works) and
/// message.
fn shared(what: &str, e: &RagError) -> RagError {
    match e {
        RagError::Transient { backend, message, .. } => RagError::transient(backend.clone(), message.clone()),
        RagError::Permanent { backend, message, .. } => RagError::permanent(backend.clone(), message.clone()),
        RagError::Timeout { what, after } => RagError::Timeout { what: what.clone(), after: *after },
        other => RagError::permanent(what.to_owned(), other.to_string()),
    }
}
