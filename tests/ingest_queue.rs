//! One ingest spread over worker tasks through the in-memory work queue (no Python, no Redis):
//! the batches are shared out, a refused document goes to the dead letters with its id and
//! reason while the rest of its batch is stored, a batch whose worker vanished is delivered
//! again and the run's totals still count it once, and pruning after the run removes only
//! what the run no longer yields. The Redis queue runs the same worker in
//! crates/rag-cli/tests/queue.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use rag::core::queue::BatchTally;
use rag::core::{InMemoryQueue, IngestQueue};
use rag::queue::{EnqueueOptions, IngestWorker, enqueue, wait_for_run};
use rag::{Document, InMemorySource, RagPipeline, RetrievalMode};

fn pipeline() -> Arc<RagPipeline> {
    Arc::new(RagPipeline::builder().in_memory().mode(RetrievalMode::Bm25).build().unwrap())
}

fn docs(n: usize) -> Vec<Document> {
    (0..n).map(|i| Document::new(format!("d{i}"), format!("Document number {i} is about topic {}.", i % 7))).collect()
}

fn options(batch: usize) -> EnqueueOptions {
    let mut o = EnqueueOptions::default();
    o.batch_documents = batch;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_run_and_a_refused_document_is_a_dead_letter() {
    let p = pipeline();
    let queue = Arc::new(InMemoryQueue::new(Duration::from_secs(30)));
    let mut corpus = docs(40);
    corpus.insert(17, Document::new("poison", "A document with a metadata key no store accepts.").with_metadata("$where", "x"));
    let run = enqueue(queue.as_ref(), InMemorySource::new(corpus).origin("notes"), &options(5)).await.unwrap();
    assert_eq!((run.batches, run.documents), (9, 41));

    let stop = Arc::new(tokio::sync::Notify::new());
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let w = IngestWorker::new(p.clone(), queue.clone(), format!("w{i}"));
            let stop = stop.clone();
            tokio::spawn(async move { w.run(async move { stop.notified().await }).await.unwrap() })
        })
        .collect();
    let status = wait_for_run(queue.as_ref(), &run.run, None).await.unwrap();
    stop.notify_waiters();
    let reports: Vec<_> = futures::future::join_all(workers).await.into_iter().map(Result::unwrap).collect();

    assert_eq!((status.tally.documents, status.tally.failed, status.acked_batches), (40, 1, 9), "{status:?}");
    assert_eq!(reports.iter().map(|r| r.batches).sum::<u64>(), 9);
    assert_eq!(status.workers.values().map(|s| s.documents).sum::<u64>(), 41);
    let dead = queue.dead_letters(&run.run, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].doc_ids, vec!["poison".to_owned()]);
    assert!(dead[0].reason.contains("$where"), "the reason names the key: {}", dead[0].reason);
    let stats = p.stats().await.unwrap();
    assert_eq!(stats.documents, 40, "every other document of the poison's batch is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_workers_batch_is_redone_counted_once_and_pruning_follows_the_run() {
    let p = pipeline();
    let queue = Arc::new(InMemoryQueue::new(Duration::from_millis(300)));
    let first = enqueue(queue.as_ref(), InMemorySource::new(docs(12)).origin("notes"), &options(4)).await.unwrap();
    // A worker takes the first batch and vanishes without acknowledging it.
    let lost = queue.next("ghost", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(lost.batch.seq, 0);
    let worker = IngestWorker::new(p.clone(), queue.clone(), "w").until_idle(Duration::from_millis(100));
    let report = worker.run(std::future::pending()).await.unwrap();
    assert_eq!(report.batches, 3, "the lost batch was delivered again after the visibility timeout");
    let status = queue.status(&first.run).await.unwrap();
    assert!(status.is_complete());
    assert_eq!(status.tally, BatchTally { documents: 12, chunks: 12, ..BatchTally::default() });
    // The ghost's late acknowledgement adds nothing.
    assert!(!queue.ack("ghost", &lost, BatchTally { documents: 4, ..BatchTally::default() }, Vec::new()).await.unwrap());
    assert_eq!(queue.status(&first.run).await.unwrap().tally.documents, 12);

    // The same origin again without d0..d3: everything left is unchanged, pruning removes 4.
    let second = enqueue(queue.as_ref(), InMemorySource::new(docs(12).split_off(4)).origin("notes"), &options(4)).await.unwrap();
    let worker = IngestWorker::new(p.clone(), queue.clone(), "w").until_idle(Duration::from_millis(100));
    worker.run(std::future::pending()).await.unwrap();
    let status = wait_for_run(queue.as_ref(), &second.run, None).await.unwrap();
    assert_eq!((status.tally.unchanged, status.tally.chunks), (8, 0));
    assert_eq!(p.prune_run(&second).await.unwrap(), 4);
    assert_eq!(p.stats().await.unwrap().documents, 8);
}

#[tokio::test]
async fn a_producer_refuses_a_run_with_a_repeated_id_before_sealing_it() {
    let queue = InMemoryQueue::default();
    let mut corpus = docs(3);
    corpus.push(Document::new("d1", "again"));
    let err = enqueue(&queue, corpus, &options(2)).await.unwrap_err().to_string();
    assert!(err.contains("d1") && err.contains("twice"), "{err}");
}
