//! Past one machine: `rag` workers over a real 3-node Qdrant cluster (`../shared/bin/qdrant`,
//! started here on free ports) with `store.index = engine` (BM25, hybrid fusion and the ingest
//! record inside Qdrant) and one Redis embedding cache. A collection of 3 shards with
//! replication factor 2; an ingest killed half-way and re-run by another worker equals a clean
//! ingest; two workers ingesting at once equal one; two `rag serve` workers answer a stream of
//! hybrid queries while one Qdrant node is SIGKILLed, and none fails, and no chunk is lost.
//! Needs `make setup` (MiniLM, redis-server); fails, never skips, without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use rag_testkit::{QdrantCluster, QdrantNode, free_port, spawn_redis};
use serde_json::{Value, json};

const DOCS: usize = 100;

/// The settings every worker shares, pointed at `node`.
fn worker(node: &QdrantNode, redis_port: u16, collection: &str) -> Vec<String> {
    vec![
        format!("collection={collection}"),
        "store.backend=qdrant".into(),
        "store.qdrant.mode=server".into(),
        format!("store.qdrant.url={}", node.url()),
        format!("store.qdrant.grpc_port={}", node.grpc_port),
        "store.index=engine".into(),
        "store.qdrant.shards=3".into(),
        "store.qdrant.replication=2".into(),
        "retrieval.fusion=rrf".into(),
        "cache.backend=redis".into(),
        format!("cache.redis_url=redis://127.0.0.1:{redis_port}/"),
    ]
}

fn rag(data: &Path, sets: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rag"));
    cmd.arg("--data-dir").arg(data);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd
}

fn report(out: Output) -> Value {
    assert!(out.status.success(), "rag failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serve(data: &Path, sets: &[String]) -> common::Served {
    common::serve(rag(data, sets))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_a_three_node_qdrant_cluster_and_survive_losing_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = QdrantCluster::start(&dir.path().join("qdrant"), 3).unwrap();
    let redis_port = free_port().unwrap();
    let _redis = spawn_redis(redis_port).unwrap();
    let corpus = common::scifact_slice(dir.path(), DOCS);
    let corpus = corpus.to_str().unwrap();
    let [n0, n1, n2] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];

    // A clean ingest (worker on node 2) is what every other path must end equal to.
    let clean = report(
        rag(&dir.path().join("w2"), &worker(n2, redis_port, "clean")).args(["ingest", corpus, "--json"]).output().unwrap(),
    );
    assert_eq!(clean["documents"], DOCS);
    let expected = common::state(n0, "clean").await;
    assert_eq!(expected.len() as u64, clean["chunks"].as_u64().unwrap());
    let info: Value = reqwest::get(format!("{}/collections/clean", n0.url())).await.unwrap().json().await.unwrap();
    let params = &info["result"]["config"]["params"];
    assert_eq!((params["shard_number"].as_u64(), params["replication_factor"].as_u64()), (Some(3), Some(2)), "{info}");
    assert_eq!(params["sparse_vectors"]["bm25"]["modifier"], "idf", "{info}");

    // Worker A (node 0) dies right after its first batch of 64 documents is written (the CLI's
    // fault hook, driven by a count); worker B (node 1) re-runs the ingest.
    let status = rag(&dir.path().join("wa"), &worker(n0, redis_port, "scifact"))
        .args(["ingest", corpus, "--json"])
        .env("RAG_TEST_ABORT_AFTER_DOCS", "40")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "worker A was killed mid-ingest");
    let partial = common::count(n0, "scifact").await;
    assert!(partial > 0 && partial < expected.len() as u64, "the kill landed mid-ingest: {partial} points");
    let rerun = report(
        rag(&dir.path().join("wb"), &worker(n1, redis_port, "scifact")).args(["ingest", corpus, "--json"]).output().unwrap(),
    );
    assert_eq!((rerun["documents"].as_u64(), rerun["unchanged"].as_u64()), (Some(DOCS as u64), Some(64)), "{rerun}");
    assert_eq!(common::state(n0, "scifact").await, expected, "the re-run by another worker equals a clean ingest");

    // Two workers ingesting the same corpus at once end in the state of one.
    let spawn = |node: &QdrantNode, name: &str| {
        rag(&dir.path().join(name), &worker(node, redis_port, "twice"))
            .args(["ingest", corpus, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(n0, "wa2"), spawn(n1, "wb2"));
    report(a.wait_with_output().unwrap());
    report(b.wait_with_output().unwrap());
    assert_eq!(common::state(n2, "twice").await, expected, "two concurrent ingests equal one");

    // A collection created with one copy of each shard on this 3-node cluster is warned about.
    let mut single = worker(n0, redis_port, "single");
    single.retain(|s| !s.starts_with("store.qdrant.replication"));
    single.push("store.qdrant.replication=1".into());
    let out = rag(&dir.path().join("ws"), &single).args(["ingest", corpus, "--json"]).output().unwrap();
    let warned = String::from_utf8_lossy(&out.stderr).into_owned();
    report(out);
    assert!(warned.contains("one copy of each shard") && warned.contains("store.qdrant.replication >= 2"), "{warned}");

    // Two `rag serve` workers, on nodes 0 and 1, answer hybrid queries; node 2 is SIGKILLed
    // a third of the way through. No query fails (the store retries on a lost node) and every
    // query still finds its document.
    let sa = serve(&dir.path().join("sa"), &worker(n0, redis_port, "scifact"));
    let single_served = serve(&dir.path().join("ss"), &single);
    let sb = serve(&dir.path().join("sb"), &worker(n1, redis_port, "scifact"));
    let titles: Vec<(String, String)> = std::fs::read_to_string(corpus)
        .unwrap()
        .lines()
        .take(30)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap().to_owned(), v["title"].as_str().unwrap().to_owned())
        })
        .collect();
    let http = reqwest::Client::new();
    let mut answered = 0;
    for (i, (id, title)) in titles.iter().enumerate() {
        if i == 10 {
            cluster.nodes[2].kill();
        }
        let base = if i % 2 == 0 { &sa.url } else { &sb.url };
        let resp = http
            .post(format!("{base}/v1/collections/scifact/search"))
            .json(&json!({"question": title, "k": 5}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "query {i} ({}): {body}", if i >= 10 { "after the kill" } else { "before" });
        let docs: Vec<&str> = body["hits"].as_array().unwrap().iter().map(|h| h["doc_id"].as_str().unwrap()).collect();
        assert!(docs.contains(&id.as_str()), "query {i}: `{title}` should find {id}: {docs:?}");
        answered += 1;
    }
    assert_eq!(answered, titles.len());
    // The single-copy collection lost a shard with node 2: a query says which, and what survives
    // a node loss, as a 503 to retry (the node may come back), not a bare 500.
    let resp = http
        .post(format!("{}/v1/collections/single/search", single_served.url))
        .json(&json!({"question": titles[0].1, "k": 5}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 503, "{body}");
    assert!(
        message.contains("shard") && message.contains("does not answer") && message.contains("store.qdrant.replication >= 2"),
        "{body}"
    );
    // Nothing lost: every chunk is still there, read through a surviving node.
    let n0 = &cluster.nodes[0];
    assert_eq!(common::count(n0, "scifact").await, expected.len() as u64);
    assert_eq!(common::state(n0, "scifact").await, expected);
}
