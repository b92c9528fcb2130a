//! [`BatchingReranker`]: concurrent reranks (one per query) coalesced into one model call,
//! on [`rag_core::batch::Coalescer`]: the (query, passage) pairs of every queued query go to
//! [`Reranker::rerank_batch`] together, and each caller gets its own top k back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rag_core::batch::Coalescer;
use rag_core::{BatchCounters, Reranker, Result, ScoredChunk};

/// One caller's rerank: query, candidates, how many to keep.
type Request = (String, Vec<ScoredChunk>, usize);

/// Wraps a reranker so concurrent queries share model calls. A request of `max_pairs`
/// candidates or more goes straight to the model.
pub struct BatchingReranker {
    inner: Arc<dyn Reranker>,
    batcher: Coalescer<Request, Vec<ScoredChunk>>,
    max_pairs: usize,
}

impl std::fmt::Debug for BatchingReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingReranker").field("max_pairs", &self.max_pairs).field("batcher", &self.batcher).finish()
    }
}

impl BatchingReranker {
    /// Starts the worker on the current tokio runtime: batches of up to `max_pairs` (query,
    /// passage) pairs, waiting at most `max_wait` after the first request for more.
    pub fn new(inner: Arc<dyn Reranker>, max_pairs: usize, max_wait: Duration) -> Result<Self> {
        let model = inner.clone();
        let call = Arc::new(move |requests: Vec<Request>| {
            let model = model.clone();
            async move {
                // One call keeps the most any caller asked for; each caller's list is then cut
                // to its own k (the lists are best first, so the cut is that caller's top k).
                let widest = requests.iter().map(|r| r.2).max().unwrap_or(0);
                let keep: Vec<usize> = requests.iter().map(|r| r.2).collect();
                let batch = requests.into_iter().map(|(q, c, _)| (q, c)).collect();
                let ranked = model.rerank_batch(batch, widest).await?;
                Ok(ranked
                    .into_iter()
                    .zip(keep)
                    .map(|(mut list, k)| {
                        list.truncate(k);
                        list
                    })
                    .collect())
            }
            .boxed()
        });
        let max_pairs = max_pairs.max(1);
        let batcher = Coalescer::spawn("reranker", max_pairs, max_wait, |r: &Request| r.1.len(), call)?;
        Ok(Self { inner, batcher, max_pairs })
    }

    /// Model calls and the pairs they carried.
    pub fn stats(&self) -> Arc<BatchCounters> {
        self.batcher.counters()
    }
}

#[async_trait]
impl Reranker for BatchingReranker {
    async fn rerank(&self, query: String, candidates: Vec<ScoredChunk>, top_k: usize) -> Result<Vec<ScoredChunk>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        if candidates.len() >= self.max_pairs {
            return self.inner.rerank(query, candidates, top_k).await;
        }
        self.batcher.submit((query, candidates, top_k)).await
    }

    async fn rerank_batch(&self, batch: Vec<(String, Vec<ScoredChunk>)>, top_k: usize) -> Result<Vec<Vec<ScoredChunk>>> {
        self.inner.rerank_batch(batch, top_k).await
    }

    fn model_id(&self) -> String {
        // Batching does not change the scores.
        self.inner.model_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::Chunk;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Scores a passage by how many times the query's word occurs in it; counts model calls.
    #[derive(Default)]
    struct WordCount {
        calls: AtomicUsize,
        fail_next: AtomicBool,
    }

    #[async_trait]
    impl Reranker for WordCount {
        async fn rerank(&self, query: String, candidates: Vec<ScoredChunk>, top_k: usize) -> Result<Vec<ScoredChunk>> {
            Ok(self.rerank_batch(vec![(query, candidates)], top_k).await?.remove(0))
        }

        async fn rerank_batch(&self, batch: Vec<(String, Vec<ScoredChunk>)>, top_k: usize) -> Result<Vec<Vec<ScoredChunk>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(rag_core::RagError::transient("cross-encoder", "model crashed"));
            }
            Ok(batch
                .into_iter()
                .map(|(q, cs)| {
                    let mut scored: Vec<ScoredChunk> = cs
                        .into_iter()
                        .map(|c| ScoredChunk { score: c.chunk.text.matches(q.as_str()).count() as f32, chunk: c.chunk })
                        .collect();
                    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
                    scored.truncate(top_k);
                    scored
                })
                .collect())
        }

        fn model_id(&self) -> String {
            "word-count".into()
        }
    }

    fn candidates(word: &str) -> Vec<ScoredChunk> {
        (0..6)
            .map(|i| ScoredChunk { chunk: Chunk::new(format!("{word}-{i}"), "d", format!("{word} ").repeat(i)), score: 0.0 })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_top_k_and_calls_are_shared() {
        let model = Arc::new(WordCount::default());
        let r = Arc::new(BatchingReranker::new(model.clone(), 1000, Duration::from_millis(20)).unwrap());
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move {
                    let word = format!("w{i}");
                    let k = 1 + i % 4;
                    (word.clone(), k, r.rerank(word.clone(), candidates(&word), k).await.unwrap())
                })
            })
            .collect();
        for t in tasks {
            let (word, k, got) = t.await.unwrap();
            let ids: Vec<String> = got.iter().map(|h| h.chunk.id.clone()).collect();
            let want: Vec<String> = (0..k).map(|j| format!("{word}-{}", 5 - j)).collect();
            assert_eq!(ids, want, "{word} k={k}");
        }
        let calls = model.calls.load(Ordering::SeqCst);
        assert!(calls < 32, "32 concurrent reranks shared model calls: {calls}");
        assert_eq!(r.stats().items(), 32 * 6);

        model.fail_next.store(true, Ordering::SeqCst);
        let (a, b) = tokio::join!(r.rerank("x".into(), candidates("x"), 2), r.rerank("y".into(), candidates("y"), 2));
        for e in [a.unwrap_err(), b.unwrap_err()] {
            assert!(e.to_string().contains("model crashed") && e.is_retryable(), "{e}");
        }
        assert_eq!(r.rerank("z".into(), candidates("z"), 1).await.unwrap()[0].chunk.id, "z-5", "the next batch works");
    }
}
