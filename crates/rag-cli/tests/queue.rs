//! Ingest over many workers: `rag ingest --queue` and `rag worker` processes over a real
//! redis-server (the work queue and the shared embedding cache) and a real Qdrant server with
//! `store.index = engine` (the ingest record all workers share). Three workers and a producer
//! on 600 SciFact documents end exactly as a one-process ingest, each doing part of it; a
//! worker SIGKILLed holding a half-written batch loses nothing (another claims the batch after
//! the visibility timeout); a worker started after the producer finished drains the stream,
//! and a re-run ends all unchanged; a document the store refuses is a dead letter with its id
//! and reason while the rest is stored; Redis SIGKILLed and restarted mid-run (it persists)
//! and the run completes. Needs `make setup` (MiniLM, redis-server); fails, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use rag::core::IngestQueue;
use rag_testkit::{QdrantNode, free_port, spawn_qdrant, spawn_redis_persistent};
use serde_json::Value;

type State = BTreeSet<(String, String, String)>;

struct Setup {
    dir: tempfile::TempDir,
    qdrant: QdrantNode,
    redis_port: u16,
    _redis: rag_testkit::ServerProcess,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let qdrant = spawn_qdrant(&dir.path().join("qdrant")).unwrap();
        let redis_port = free_port().unwrap();
        std::fs::create_dir_all(dir.path().join("redis")).unwrap();
        let redis = spawn_redis_persistent(redis_port, &dir.path().join("redis")).unwrap();
        Self { dir, qdrant, redis_port, _redis: redis }
    }

    fn queue_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.redis_port)
    }

    /// `rag` with the settings every process shares, on `collection`, in its own data dir.
    fn rag(&self, name: &str, collection: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rag"));
        cmd.arg("--data-dir").arg(self.dir.path().join(name)).arg("--collection").arg(collection);
        for s in [
            "store.backend=qdrant".to_owned(),
            "store.qdrant.mode=server".into(),
            format!("store.qdrant.url={}", self.qdrant.url()),
            format!("store.qdrant.grpc_port={}", self.qdrant.grpc_port),
            "store.index=engine".into(),
            "cache.backend=redis".into(),
            format!("cache.redis_url=redis://127.0.0.1:{}/1", self.redis_port),
            format!("queue.url={}", self.queue_url()),
            "queue.batch_documents=16".into(),
            "queue.visibility_timeout_secs=3".into(),
        ] {
            cmd.arg("--set").arg(s);
        }
        cmd
    }

    fn worker(&self, name: &str, collection: &str, extra: &[&str]) -> Child {
        self.rag(name, collection)
            .args(["worker", "--json", "--name", name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn producer(&self, collection: &str, corpus: &Path, wait: bool) -> Child {
        let mut cmd = self.rag("producer", collection);
        cmd.args(["ingest", corpus.to_str().unwrap(), "--queue", "--json"]);
        if wait {
            cmd.arg("--wait");
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap()
    }

    /// What one process ingesting `corpus` into `collection` stores: the reference state
    /// (the document hash covers the file's path, so each corpus file has its own).
    async fn solo(&self, collection: &str, corpus: &Path) -> State {
        let r = report(self.rag("solo", collection).args(["ingest", corpus.to_str().unwrap(), "--json"]).output().unwrap());
        assert!(r["documents"].as_u64().unwrap() > 0, "{r}");
        common::state(&self.qdrant, collection).await
    }

    async fn queue(&self, collection: &str) -> rag::redis_queue::RedisQueue {
        let settings = rag::redis_queue::QueueSettings::default();
        rag::redis_queue::RedisQueue::connect(&self.queue_url(), collection, &settings).await.unwrap()
    }
}

/// Waits until the worker says it is working (its pipeline built, its first read issued), then
/// drains its stderr into the test's, so the pipe never fills.
fn await_started(child: &mut Child) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("working") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the worker ended before it started working");
    }
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            eprintln!("worker: {l}");
        }
    });
}

fn report(out: Output) -> Value {
    assert!(out.status.success(), "rag failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Stops a worker as Ctrl-C would (it finishes the batch in hand) and returns its report.
fn stop(child: Child) -> Value {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    report(child.wait_with_output().unwrap())
}

/// Asserts two collections hold the same points, naming the chunks that differ.
fn same(got: &State, want: &State, what: &str) {
    let extra: Vec<_> = got.difference(want).map(|(c, h, _)| (c, h)).collect();
    let missing: Vec<_> = want.difference(got).map(|(c, h, _)| (c, h)).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: {} points, {} wanted; extra {extra:?}; missing {missing:?}",
        got.len(),
        want.len()
    );
}

fn slice(setup: &Setup, n: usize) -> PathBuf {
    common::scifact_slice(setup.dir.path(), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_an_ingest_and_a_killed_workers_batch_is_redone() {
    let setup = Setup::start();
    let corpus = slice(&setup, 600);

    // The reference: one process ingesting the same 600 documents (it also fills the shared
    // embedding cache, so the queued runs below cost little model time).
    let clean = report(setup.rag("solo", "clean").args(["ingest", corpus.to_str().unwrap(), "--json"]).output().unwrap());
    assert_eq!(clean["documents"], 600);
    let expected = common::state(&setup.qdrant, "clean").await;
    assert_eq!(expected.len() as u64, clean["chunks"].as_u64().unwrap());

    // Workers first, then the producer: every worker gets a share.
    let mut workers: Vec<Child> = (0..3).map(|i| setup.worker(&format!("w{i}"), "queued", &[])).collect();
    workers.iter_mut().for_each(await_started);
    let run = report(setup.producer("queued", &corpus, true).wait_with_output().unwrap());
    assert_eq!(
        (run["documents"].as_u64(), run["failed"].as_u64(), run["batches"].as_u64()),
        (Some(600), Some(0), Some(38)),
        "{run}"
    );
    let shares = run["workers"].as_object().unwrap();
    assert_eq!(shares.len(), 3, "{run}");
    assert!(shares.values().all(|s| s["documents"].as_u64().unwrap() > 0), "each worker did part of it: {run}");
    assert_eq!(shares.values().map(|s| s["documents"].as_u64().unwrap()).sum::<u64>(), 600);
    let reports: Vec<Value> = workers.into_iter().map(stop).collect();
    assert_eq!(reports.iter().map(|r| r["batches"].as_u64().unwrap()).sum::<u64>(), 38, "{reports:?}");
    same(&common::state(&setup.qdrant, "queued").await, &expected, "three workers end exactly as one process");

    // The producer first; worker K takes a batch, writes part of it and is SIGKILLed holding
    // it; worker H, started after, gets K's batch once the visibility timeout passes.
    let part = slice(&setup, 200);
    let producer = setup.producer("killed", &part, true);
    let mut k = setup
        .rag("k", "killed")
        .args(["worker", "--name", "k"])
        .env("RAG_TEST_STALL_AFTER_DOCS", "4")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(k.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("RAG_TEST: stalled mid-batch") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "worker k ended before stalling");
    }
    let written = common::count(&setup.qdrant, "killed").await;
    assert!(written > 0, "k wrote part of its batch before it was killed");
    k.kill().unwrap();
    k.wait().unwrap();
    let h = setup.worker("h", "killed", &[]);
    let run = report(producer.wait_with_output().unwrap());
    assert_eq!((run["documents"].as_u64(), run["failed"].as_u64()), (Some(200), Some(0)), "{run}");
    assert!(run["workers"].get("k").is_none() && run["workers"]["h"]["documents"] == 200, "{run}");
    let h = stop(h);
    assert_eq!(h["batches"], 13, "{h}");
    same(
        &common::state(&setup.qdrant, "killed").await,
        &setup.solo("clean-200", &part).await,
        "the killed worker's batch was redone whole",
    );

    // A worker started after the producer has finished still drains the stream; the same
    // ingest queued again ends with everything unchanged.
    let late = slice(&setup, 100);
    let queued = report(setup.producer("late", &late, false).wait_with_output().unwrap());
    assert_eq!((queued["documents"].as_u64(), queued["batches"].as_u64()), (Some(100), Some(7)), "{queued}");
    let drained = report(setup.rag("l", "late").args(["worker", "--json", "--until-idle", "1"]).output().unwrap());
    assert_eq!(drained["batches"], 7, "{drained}");
    same(&common::state(&setup.qdrant, "late").await, &setup.solo("clean-100", &late).await, "a late worker drained the stream");
    let again = setup.producer("late", &late, true);
    let w = setup.worker("l2", "late", &[]);
    let rerun = report(again.wait_with_output().unwrap());
    stop(w);
    assert_eq!(
        (rerun["documents"].as_u64(), rerun["unchanged"].as_u64(), rerun["chunks"].as_u64()),
        (Some(100), Some(100), Some(0)),
        "{rerun}"
    );

    // The same file, 10 documents shorter, with --prune: pruned once, after the whole run.
    let text = std::fs::read_to_string(&late).unwrap();
    std::fs::write(&late, text.lines().take(90).collect::<Vec<_>>().join("\n")).unwrap();
    let mut w = setup.worker("l3", "late", &[]);
    await_started(&mut w);
    let pruned = report(
        setup
            .rag("producer", "late")
            .args(["ingest", late.to_str().unwrap(), "--queue", "--wait", "--prune", "--json"])
            .output()
            .unwrap(),
    );
    stop(w);
    assert_eq!(
        (pruned["documents"].as_u64(), pruned["unchanged"].as_u64(), pruned["removed"].as_u64()),
        (Some(90), Some(90), Some(10)),
        "{pruned}"
    );
    let left: BTreeSet<String> =
        common::state(&setup.qdrant, "late").await.into_iter().map(|(c, _, _)| c.split('#').next().unwrap().to_owned()).collect();
    assert_eq!(left.len(), 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_document_is_a_dead_letter_and_a_redis_restart_loses_no_run() {
    let mut setup = Setup::start();

    // Through the library's producer, over any DocumentSource: a document with a metadata key
    // no store accepts rides among 20 good ones.
    let mut docs: Vec<rag::Document> = (0..20)
        .map(|i| rag::Document::new(format!("good-{i}"), format!("Good document {i} about cells and proteins.")))
        .collect();
    docs.insert(7, rag::Document::new("poison", "A document whose metadata no store accepts.").with_metadata("$where", "1"));
    let queue = setup.queue("poison").await;
    let mut options = rag::queue::EnqueueOptions::default();
    options.batch_documents = 8;
    let run = rag::queue::enqueue(&queue, docs, &options).await.unwrap();
    let drained = report(setup.rag("p", "poison").args(["worker", "--json", "--until-idle", "1"]).output().unwrap());
    assert_eq!((drained["batches"].as_u64(), drained["tally"]["failed"].as_u64()), (Some(3), Some(1)), "{drained}");
    let dead = queue.dead_letters(&run.run, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].doc_ids, vec!["poison".to_owned()]);
    assert!(dead[0].reason.contains("$where"), "{}", dead[0].reason);
    let stored: BTreeSet<String> = common::state(&setup.qdrant, "poison")
        .await
        .into_iter()
        .map(|(c, _, _)| c.split('#').next().unwrap().to_owned())
        .collect();
    assert_eq!(stored, (0..20).map(|i| format!("good-{i}")).collect(), "every other document is stored");
    let status = queue.status(&run.run).await.unwrap();
    assert!(status.is_complete() && status.tally.documents == 20 && status.tally.failed == 1, "{status:?}");

    // `rag serve` with queue.serve_worker works its collection's queue beside serving.
    let served = common::serve({
        let mut cmd = setup.rag("served", "served");
        cmd.args(["--set", "queue.serve_worker=true"]);
        cmd
    });
    let small = slice(&setup, 30);
    let run = report(
        setup
            .rag("producer", "served")
            .args(["ingest", small.to_str().unwrap(), "--queue", "--wait", "--json"])
            .output()
            .unwrap(),
    );
    let names: Vec<&String> = run["workers"].as_object().unwrap().keys().collect();
    assert!(run["documents"] == 30 && names.len() == 1 && names[0].starts_with("serve-"), "{run}");
    drop(served);

    // Redis SIGKILLed mid-run (appendfsync always) and started again on its files.
    let corpus = slice(&setup, 200);
    let producer = setup.producer("restart", &corpus, true);
    let w = setup.worker("r", "restart", &[]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while common::count(&setup.qdrant, "restart").await == 0 {
        assert!(Instant::now() < deadline, "no batch was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup._redis.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup._redis = spawn_redis_persistent(setup.redis_port, &setup.dir.path().join("redis")).unwrap();
    let run = report(producer.wait_with_output().unwrap());
    stop(w);
    assert_eq!((run["documents"].as_u64(), run["failed"].as_u64()), (Some(200), Some(0)), "{run}");
    same(&common::state(&setup.qdrant, "restart").await, &setup.solo("restart-clean", &corpus).await, "the run outlived Redis");
}
