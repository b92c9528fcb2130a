//! [`BatchingEmbedder`]: concurrent embedding calls (queries) coalesced into one model call,
//! on [`rag_core::batch::Coalescer`]; each caller gets its own vectors, in order.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rag_core::batch::Coalescer;
use rag_core::{Embedder, RagError, Result};

/// Counters of a [`BatchingEmbedder`]: model calls and the texts they carried.
pub type BatchStats = rag_core::BatchCounters;

/// Wraps an embedder so concurrent small calls (queries) share model calls. Calls of
/// `max_batch` texts or more (ingest) go straight to the model.
pub struct BatchingEmbedder {
    inner: Arc<dyn Embedder>,
    batcher: Coalescer<Vec<String>, Vec<Vec<f32>>>,
    max_batch: usize,
}

impl std::fmt::Debug for BatchingEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingEmbedder").field("max_batch", &self.max_batch).field("batcher", &self.batcher).finish()
    }
}

impl BatchingEmbedder {
    /// Starts the worker on the current tokio runtime: batches of up to `max_batch` texts (at
    /// least 1), waiting at most `max_wait` after the first request for more.
    pub fn new(inner: Arc<dyn Embedder>, max_batch: usize, max_wait: Duration) -> Result<Self> {
        let model = inner.clone();
        let call = Arc::new(move |requests: Vec<Vec<String>>| {
            let model = model.clone();
            async move {
                let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
                let total: usize = sizes.iter().sum();
                let vectors = model.embed(requests.into_iter().flatten().collect()).await?;
                if vectors.len() != total {
                    return Err(RagError::permanent("embedder", format!("returned {} vectors for {total} texts", vectors.len())));
                }
                let mut vectors = vectors.into_iter();
                Ok(sizes.into_iter().map(|n| vectors.by_ref().take(n).collect()).collect())
            }
            .boxed()
        });
        let max_batch = max_batch.max(1);
        let batcher = Coalescer::spawn("embedder", max_batch, max_wait, Vec::len, call)?;
        Ok(Self { inner, batcher, max_batch })
    }

    /// Calls and texts so far.
    pub fn stats(&self) -> Arc<BatchStats> {
        self.batcher.counters()
    }
}

#[async_trait]
impl Embedder for BatchingEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if texts.len() >= self.max_batch {
            return self.inner.embed(texts).await;
        }
        self.batcher.submit(texts).await
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn model_id(&self) -> String {
        // Batching does not change the vectors.
        self.inner.model_id()
    }

    fn max_input_tokens(&self) -> Option<usize> {
        self.inner.max_input_tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Each text's vector encodes the text, so a caller can tell its vectors from another's.
    struct Echo {
        calls: Mutex<Vec<usize>>,
        fail_next: AtomicBool,
    }

    #[async_trait]
    impl Embedder for Echo {
        async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
            tokio::time::sleep(Duration::from_millis(5)).await; // a model call takes a while
            self.calls.lock().unwrap().push(texts.len());
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(RagError::transient("echo", "model crashed"));
            }
            Ok(texts.iter().map(|t| vec![t.parse::<f32>().unwrap_or(-1.0), t.len() as f32]).collect())
        }
        fn dimension(&self) -> usize {
            2
        }
        fn model_id(&self) -> String {
            "echo".into()
        }
    }

    fn echo() -> Arc<Echo> {
        Arc::new(Echo { calls: Mutex::new(Vec::new()), fail_next: AtomicBool::new(false) })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixty_four_concurrent_callers_each_get_their_own_vectors_in_order() {
        let model = echo();
        let b = Arc::new(BatchingEmbedder::new(model.clone(), 32, Duration::from_millis(2)).unwrap());
        let calls = (0..64).map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                // Callers with one, two or three texts each.
                let texts: Vec<String> = (0..=(i % 3)).map(|j| (i * 10 + j).to_string()).collect();
                let got = b.embed(texts.clone()).await.unwrap();
                (texts, got)
            })
        });
        for call in futures::future::join_all(calls).await {
            let (texts, got) = call.unwrap();
            let expect: Vec<Vec<f32>> = texts.iter().map(|t| vec![t.parse::<f32>().unwrap(), t.len() as f32]).collect();
            assert_eq!(got, expect);
        }
        let calls = model.calls.lock().unwrap().clone();
        let texts: usize = (0..64).map(|i| i % 3 + 1).sum();
        assert_eq!(calls.iter().sum::<usize>(), texts, "every text embedded once");
        assert!(calls.len() < 64, "calls were coalesced: {calls:?}");
        assert!(calls.iter().all(|n| *n <= 32 + 2), "batches stay near max_batch: {calls:?}");
        assert!(b.stats().mean_batch() > 2.0, "{:?}", b.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_model_fails_every_waiting_caller_and_the_next_batch_works() {
        let model = echo();
        let b = Arc::new(BatchingEmbedder::new(model.clone(), 64, Duration::from_millis(20)).unwrap());
        model.fail_next.store(true, Ordering::SeqCst);
        let calls = (0..8).map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.embed(vec![i.to_string()]).await })
        });
        let results = futures::future::join_all(calls).await;
        let failed = results.iter().filter(|r| matches!(r.as_ref().unwrap(), Err(RagError::Transient { .. }))).count();
        assert!(failed >= 1, "the failing batch's callers see the error");
        assert_eq!(failed, model.calls.lock().unwrap()[0], "every caller in the failed batch got the error, no more");
        // The worker lives on.
        assert_eq!(b.embed(vec!["7".into()]).await.unwrap(), vec![vec![7.0, 1.0]]);
        // Large calls bypass the queue.
        let big: Vec<String> = (0..64).map(|i| i.to_string()).collect();
        assert_eq!(b.embed(big).await.unwrap().len(), 64);
    }
}
