//! The Redis Streams queue against a real redis-server: one worker per batch, a batch left
//! unacknowledged is claimed by another after the visibility timeout and counted once, a
//! touched batch is not, a foreign stream entry is a dead letter, and a persisting Redis
//! restarted mid-run keeps the run. Needs redis-server (`make setup`); fails without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rag_core::queue::{BatchTally, DeadLetter, WorkBatch};
use rag_core::{Document, IngestQueue, SourceDocument, TextFormat};
use rag_queue_redis::{QueueSettings, RedisQueue};
use rag_testkit::{free_port, spawn_redis, spawn_redis_persistent};

fn batch(run: &str, seq: u64, n: usize) -> WorkBatch {
    let documents = (0..n)
        .map(|i| SourceDocument::new(Document::new(format!("{run}-{seq}-{i}"), "text"), TextFormat::Plain, "origin"))
        .collect();
    WorkBatch { run: run.into(), seq, documents }
}

fn settings(visibility_secs: u64) -> QueueSettings {
    QueueSettings { visibility_timeout_secs: visibility_secs, ..QueueSettings::default() }
}

#[tokio::test]
async fn batches_go_to_one_worker_and_an_abandoned_one_to_another_counted_once() {
    let port = free_port().unwrap();
    let _redis = spawn_redis(port).unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    let a = RedisQueue::connect(&url, "docs", &settings(1)).await.unwrap();
    let b = RedisQueue::connect(&url, "docs", &settings(1)).await.unwrap();
    for seq in 0..3 {
        a.push(&batch("r1", seq, 2)).await.unwrap();
    }
    a.seal("r1", 3, 6).await.unwrap();
    assert_eq!(a.backlog().await.unwrap(), 3);

    let first = a.next("A", Duration::ZERO).await.unwrap().unwrap();
    let second = b.next("B", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((first.batch.seq, second.batch.seq, first.deliveries), (0, 1, 1));
    let tally = BatchTally { documents: 2, chunks: 3, ..BatchTally::default() };
    assert!(a.ack("A", &first, tally, Vec::new()).await.unwrap());

    // B vanishes with batch 1; after the visibility timeout A claims it, as its second delivery.
    let third = a.next("A", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(third.batch.seq, 2, "batch 1 is still B's");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let claimed = a.next("A", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((claimed.batch.seq, claimed.deliveries), (1, 2));
    assert!(a.ack("A", &claimed, tally, Vec::new()).await.unwrap());
    assert!(!b.ack("B", &second, tally, Vec::new()).await.unwrap(), "B's late ack counts nothing");
    let letter = DeadLetter {
        run: "r1".into(),
        seq: 2,
        doc_ids: vec!["r1-2-1".into()],
        reason: "refused".into(),
        deliveries: 1,
        worker: "A".into(),
    };
    let t2 = BatchTally { documents: 1, failed: 1, ..BatchTally::default() };
    assert!(a.ack("A", &third, t2, vec![letter.clone()]).await.unwrap());

    let status = b.status("r1").await.unwrap();
    assert!(status.is_complete(), "{status:?}");
    assert_eq!(status.tally, BatchTally { documents: 5, chunks: 6, failed: 1, ..BatchTally::default() });
    assert_eq!((status.workers["A"].batches, status.workers.get("B")), (3, None));
    assert_eq!(b.dead_letters("r1", 10).await.unwrap(), vec![letter]);
    assert_eq!(a.backlog().await.unwrap(), 0, "acknowledged entries leave the stream");
    assert!(a.next("A", Duration::from_millis(50)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_touched_batch_stays_with_its_worker_and_a_foreign_entry_is_a_dead_letter() {
    let port = free_port().unwrap();
    let _redis = spawn_redis(port).unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    let q = RedisQueue::connect(&url, "docs", &settings(1)).await.unwrap();
    q.push(&batch("r2", 0, 1)).await.unwrap();
    let held = q.next("A", Duration::ZERO).await.unwrap().unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.keep("A", &held).await.unwrap();
        assert!(q.next("B", Duration::ZERO).await.unwrap().is_none(), "a touched batch is not claimed");
    }

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(q.stream_key())
        .arg("*")
        .arg("run")
        .arg("r2")
        .arg("batch")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(q.next("B", Duration::ZERO).await.unwrap().is_none());
    let dead = q.dead_letters("r2", 10).await.unwrap();
    assert!(dead.len() == 1 && dead[0].reason.contains("not a rag batch"), "{dead:?}");
    assert_eq!(q.backlog().await.unwrap(), 1, "only A's batch is left");
}

#[tokio::test]
async fn a_persisting_redis_restarted_mid_run_keeps_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut redis = spawn_redis_persistent(port, dir.path()).unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    let q = RedisQueue::connect(&url, "docs", &settings(30)).await.unwrap();
    for seq in 0..2 {
        q.push(&batch("r3", seq, 3)).await.unwrap();
    }
    q.seal("r3", 2, 6).await.unwrap();
    let d = q.next("A", Duration::ZERO).await.unwrap().unwrap();
    q.ack("A", &d, BatchTally { documents: 3, ..BatchTally::default() }, Vec::new()).await.unwrap();

    redis.stop();
    assert!(q.status("r3").await.unwrap_err().is_retryable(), "Redis down is a retryable error");
    let _redis = spawn_redis_persistent(port, dir.path()).unwrap();
    let mut next = None;
    for _ in 0..50 {
        match q.next("A", Duration::ZERO).await {
            Ok(d) => {
                next = d;
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let d = next.expect("the second batch survived the restart");
    assert_eq!(d.batch.seq, 1);
    q.ack("A", &d, BatchTally { documents: 3, ..BatchTally::default() }, Vec::new()).await.unwrap();
    let status = q.status("r3").await.unwrap();
    assert!(status.is_complete() && status.tally.documents == 6, "{status:?}");
}
