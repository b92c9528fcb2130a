//! The queue's own cost, with no ingest work at all (a no-op worker): batches of 32
//! SciFact-sized documents (1.5 KB each) pushed, then taken and acknowledged by 1 and by 4
//! consumers, against a real redis-server started here. Prints batches/s; an ingest batch of
//! the same size costs about 1.3 s of MiniLM on this machine, so the queue's share is the
//! ratio of the two. Needs redis-server (`make setup`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use rag_core::queue::{BatchTally, WorkBatch};
use rag_core::{Document, IngestQueue, SourceDocument, TextFormat};
use rag_queue_redis::{QueueSettings, RedisQueue};

const BATCHES: u64 = 2000;
const DOCS: usize = 32;

fn batch(run: &str, seq: u64) -> WorkBatch {
    let text = "Spemann's organizer plays a key role in dorsal-ventral patterning. ".repeat(22);
    let documents = (0..DOCS)
        .map(|i| SourceDocument::new(Document::new(format!("{seq}-{i}"), text.clone()), TextFormat::Plain, "bench"))
        .collect();
    WorkBatch { run: run.into(), seq, documents }
}

async fn drain(url: &str, collection: &str, consumers: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..consumers)
        .map(|i| {
            let (url, collection) = (url.to_owned(), collection.to_owned());
            tokio::spawn(async move {
                let q = RedisQueue::connect(&url, &collection, &QueueSettings::default()).await.unwrap();
                let name = format!("c{i}");
                while let Some(d) = q.next(&name, Duration::from_millis(200)).await.unwrap() {
                    let tally = BatchTally { documents: d.batch.documents.len() as u64, ..BatchTally::default() };
                    q.ack(&name, &d, tally, Vec::new()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // The last 200 ms wait for nothing: not the queue's work.
    BATCHES as f64 / (start.elapsed().as_secs_f64() - 0.2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let port = rag_testkit::free_port().unwrap();
    let _redis = rag_testkit::spawn_redis(port).unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    for consumers in [1, 4] {
        let collection = format!("bench-{consumers}");
        let q = RedisQueue::connect(&url, &collection, &QueueSettings::default()).await.unwrap();
        let batches: Vec<WorkBatch> = (0..BATCHES).map(|s| batch("run", s)).collect();
        let start = Instant::now();
        for b in &batches {
            q.push(b).await.unwrap();
        }
        q.seal("run", BATCHES, BATCHES * DOCS as u64).await.unwrap();
        let pushed = BATCHES as f64 / start.elapsed().as_secs_f64();
        let drained = drain(&url, &collection, consumers).await;
        let status = q.status("run").await.unwrap();
        assert!(status.is_complete() && status.tally.documents == BATCHES * DOCS as u64, "{status:?}");
        println!(
            "queue_overhead consumers={consumers} batches={BATCHES} docs_per_batch={DOCS}: push {pushed:.0} batches/s, take+ack {drained:.0} batches/s ({:.0} documents/s)",
            drained * DOCS as f64
        );
    }
}
