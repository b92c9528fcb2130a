//! `rag serve` as a process, against clients that cost it: slow and idle connections under a
//! small open-file limit; and the `rag` command run beside it on the same data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Settings for a server that needs no embedding model (BM25 only, extractive answers).
const KEYWORD_ONLY: [&str; 4] = ["--set", "store.backend=none", "--set", "retrieval.mode=bm25"];

fn rag(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rag"));
    cmd.arg("--data-dir").arg(data).args(KEYWORD_ONLY);
    cmd
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

async fn healthz_within(url: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let resp = tokio::time::timeout(limit, reqwest::Client::new().get(format!("{url}/healthz")).send()).await;
    assert!(matches!(&resp, Ok(Ok(r)) if r.status().is_success()), "/healthz did not answer within {limit:?}: {resp:?}");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_clients_cost_a_bounded_amount() {
    let dir = tempfile::tempdir().unwrap();
    // A small open-file limit, as on a tight container: 256 descriptors.
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("ulimit -n 256 && exec \"$@\"").arg("sh").arg(env!("CARGO_BIN_EXE_rag"));
    cmd.arg("--data-dir").arg(dir.path()).args(KEYWORD_ONLY).args(["--set", "server.header_read_timeout_secs=2"]);
    let served = common::serve(cmd);
    let pid = served.child.id();
    let addr = served.url.trim_start_matches("http://").to_owned();
    let baseline = open_fds(pid);

    // 300 clients that trickle their headers a byte at a time, and 300 that connect and say
    // nothing: more than the descriptors the server has.
    let started = Instant::now();
    let clients: Vec<_> = (0..600)
        .map(|i| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else { return None };
                if i % 2 == 0 {
                    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle().take(200) {
                        if s.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
                // Closed by the server: the read ends (EOF or reset) instead of waiting for ever.
                let mut buf = [0u8; 64];
                let closed = tokio::time::timeout(Duration::from_secs(60), async {
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await
                .is_ok();
                Some(started.elapsed()).filter(|_| closed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = open_fds(pid);
    // A legitimate client still gets an answer in bounded time while they hold their slots.
    let waited = healthz_within(&served.url, Duration::from_secs(30)).await;
    let mut closed_after = Vec::new();
    for c in clients {
        closed_after.push(c.await.unwrap());
    }
    let open = closed_after.iter().enumerate().filter(|(_, c)| c.is_none()).map(|(i, _)| i).collect::<Vec<_>>();
    assert!(
        open.is_empty(),
        "every slow or idle client was closed by the server; still open: {} ({:?}); the server has {} descriptors open",
        open.len(),
        &open[..open.len().min(20)],
        open_fds(pid)
    );
    let slowest = closed_after.iter().flatten().max().unwrap();
    // Afterwards the server is back where it started, and answers at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = open_fds(pid);
    let quick = healthz_within(&served.url, Duration::from_secs(2)).await;
    eprintln!(
        "fds: {baseline} before, {during} during, {after} after; /healthz during the flood in {waited:?}, after in {quick:?}; last client closed at {slowest:?}"
    );
    assert!(during < 256, "the connection cap kept the server under its open-file limit: {during}");
    assert!(after <= baseline + 4, "descriptors back to the baseline: {baseline} -> {after}");
}

/// Runs `rag` and returns its stdout, asserting success.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_works_beside_a_running_server_on_the_same_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let corpus = dir.path().join("docs");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("vitd.txt"), "Vitamin D supplementation lowers the risk of hip fractures.").unwrap();
    std::fs::write(corpus.join("rust.txt"), "Rust is a systems programming language without a garbage collector.").unwrap();
    let mut served = common::serve(rag(&data));
    let search = |q: &'static str| {
        let url = format!("{}/v1/collections/rag/search", served.url);
        async move {
            let r: Value =
                reqwest::Client::new().post(url).json(&json!({ "question": q })).send().await.unwrap().json().await.unwrap();
            r["hits"].as_array().unwrap().iter().map(|h| h["doc_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };

    // A second terminal ingests a folder into the served data directory: the server does the
    // work, and its own clients see the documents at once.
    let report: Value = serde_json::from_str(&run_ok(rag(&data).args(["ingest", "--json"]).arg(&corpus))).unwrap();
    assert_eq!((report["documents"].as_u64(), report["chunks"].as_u64()), (Some(2), Some(2)), "{report}");
    assert_eq!(search("hip fractures vitamin").await.first().map(String::as_str), Some("docs/vitd.txt"));

    // query, search, stats and delete go through the server too.
    let answer: Value =
        serde_json::from_str(&run_ok(rag(&data).args(["query", "What lowers the risk of hip fractures?", "--json"]))).unwrap();
    assert_eq!(answer["citations"][0]["doc_id"], "docs/vitd.txt", "{answer}");
    let plain = run_ok(rag(&data).args(["query", "What lowers the risk of hip fractures?"]));
    assert!(plain.contains("[1] vitd (docs/vitd.txt#0"), "{plain}");
    let hits: Value = serde_json::from_str(&run_ok(rag(&data).args(["search", "garbage collector", "--json"]))).unwrap();
    assert_eq!(hits["hits"][0]["doc_id"], "docs/rust.txt", "{hits}");
    let stats: Value = serde_json::from_str(&run_ok(rag(&data).args(["stats", "--json"]))).unwrap();
    assert_eq!(stats["documents"], 2, "{stats}");
    run_ok(rag(&data).args(["delete", "docs/rust.txt"]));
    assert!(!search("garbage collector").await.contains(&"docs/rust.txt".to_owned()), "the server no longer finds it");
    let missing = rag(&data).args(["delete", "docs/rust.txt"]).output().unwrap();
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // `rag mcp` beside the server: the same tools, answered by the server.
    let mut mcp = rag(&data).arg("mcp").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdin = mcp.stdin.take().unwrap();
    let mut stdout = BufReader::new(mcp.stdout.take().unwrap());
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    let mut response = |id: u64| -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "rag mcp closed stdout");
            let v: Value = serde_json::from_str(line.trim()).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test", "version": "0" } } }));
    assert!(response(1)["result"]["capabilities"]["tools"].is_object());
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    send(
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "search", "arguments": { "query": "hip fractures" } } }),
    );
    let text = response(2)["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains("docs/vitd.txt"), "{text}");
    drop(stdin);
    assert!(mcp.wait().unwrap().success());

    // What needs the stores to itself names the server instead of failing on a locked file.
    let eval = rag(&data).args(["eval", "--dataset"]).arg(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&eval.stderr);
    assert!(!eval.status.success() && err.contains("rag serve (pid") && err.contains("stop the server"), "{err}");
    let second = rag(&data).args(["serve", "--addr", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("already serves"), "{err}");

    // Once the server stops, the command opens the stores itself again.
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(served.child.wait().unwrap().success());
    assert!(!data.join("serve.json").exists(), "the server removes its file when it stops");
    let local = run_ok(rag(&data).args(["search", "hip fractures", "--json"]));
    assert!(local.contains("docs/vitd.txt"), "{local}");
}
