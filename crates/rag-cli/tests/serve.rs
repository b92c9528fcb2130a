//! `rag serve` and `rag mcp` as processes: SIGTERM with requests in flight, MCP over stdio, two
//! workers sharing one `chroma run` server and one Redis cache, and the web page (answers,
//! citations, thumbs) in a real headless Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::Served;
use rag_testkit::{ServerProcess, free_port, spawn_chroma, spawn_python_server, spawn_redis};
use serde_json::{Value, json};

/// Settings for a server that needs no embedding model: BM25 only, DSPy on the fake LM.
fn keyword_only_with_lm(lm: &ServerProcess) -> Vec<String> {
    vec![
        "store.backend=none".into(),
        "retrieval.mode=bm25".into(),
        "generator.lm=openai/fake-model".into(),
        format!("generator.api_base={}/v1", lm.url()),
        "generator.api_key_env=RAG_TEST_FAKE_LM_KEY".into(),
        "generator.retries=0".into(),
    ]
}

fn serve(data: &Path, sets: &[String]) -> Served {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rag"));
    cmd.arg("--data-dir").arg(data).env("RAG_TEST_FAKE_LM_KEY", "test-key");
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    common::serve(cmd)
}

async fn post(url: impl reqwest::IntoUrl, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn docs() -> Value {
    json!({ "documents": [
        { "id": "vitd", "text": "Vitamin D supplementation lowers the risk of hip fractures in older adults." },
        { "id": "statins", "text": "Statins reduce cardiovascular mortality in patients with high cholesterol." },
        { "id": "mirna", "text": "MicroRNA molecules regulate gene expression and play a role in cancer." },
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_requests_in_flight_finish() {
    let lm = spawn_python_server("fake_openai.py", &["--max-seconds", "300"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &keyword_only_with_lm(&lm));
    let base = format!("{}/v1/collections/rag", served.url);
    assert_eq!(post(&format!("{base}/documents"), docs()).await.0, 200);
    rag_testkit::http_post_json(&format!("{}/control", lm.url()), &json!({ "delay_ms": 1500 })).unwrap();
    let questions: Vec<String> = (0..4).map(|i| format!("Question {i}: does vitamin D lower fracture risk?")).collect();
    let in_flight = questions.iter().map(|q| post(format!("{base}/query"), json!({ "question": q })));
    let terminate = async {
        // Every query is in flight (4, plus this scrape) before the signal.
        loop {
            let (_, m) = rag_testkit::http_request("GET", &format!("{}/metrics", served.url), None).unwrap();
            if m.lines().any(|l| l.starts_with("rag_http_requests_in_flight ") && l.ends_with(" 5")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = served.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(in_flight), terminate);
    for ((status, body), q) in answers.iter().zip(&questions) {
        assert_eq!(*status, 200, "a request in flight at SIGTERM was lost: {body}");
        assert!(body["answer"].as_str().unwrap().contains(q.as_str()), "{body}");
    }
    let exit = served.child.wait().unwrap();
    assert!(exit.success(), "rag serve exits cleanly after SIGTERM: {exit:?}");
    assert!(std::net::TcpStream::connect(served.url.trim_start_matches("http://")).is_err(), "no longer accepting");
}

/// Reads JSON-RPC messages from `rag mcp`'s stdout until the response with `id`.
fn rpc_response(out: &mut impl BufRead, id: u64) -> Value {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "rag mcp closed stdout before answering {id}");
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("not JSON-RPC on stdout ({e}): {line}"));
        if v["id"] == id {
            return v;
        }
    }
}

#[test]
fn rag_mcp_serves_search_and_answer_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("docs");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("vitd.txt"), "Vitamin D supplementation lowers the risk of hip fractures.").unwrap();
    std::fs::write(corpus.join("rust.txt"), "Rust is a systems programming language without a garbage collector.").unwrap();
    let data = dir.path().join("data");
    let sets = ["--set", "store.backend=none", "--set", "retrieval.mode=bm25"];
    let ingest = Command::new(env!("CARGO_BIN_EXE_rag"))
        .arg("--data-dir")
        .arg(&data)
        .args(sets)
        .arg("ingest")
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(ingest.status.success(), "{}", String::from_utf8_lossy(&ingest.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rag"))
        .arg("--data-dir")
        .arg(&data)
        .args(sets)
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test", "version": "0" } } }));
    let init = rpc_response(&mut stdout, 1);
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }));
    let tools = rpc_response(&mut stdout, 2);
    let mut names: Vec<&str> = tools["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["answer", "search"]);
    send(
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "search", "arguments": { "query": "fractures vitamin" } } }),
    );
    let hits = rpc_response(&mut stdout, 3);
    let text = hits["result"]["content"][0]["text"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed[0]["doc_id"], "docs/vitd.txt", "{text}");
    send(
        json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": { "name": "answer", "arguments": { "question": "What lowers the risk of hip fractures?" } } }),
    );
    let answer = rpc_response(&mut stdout, 4);
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Vitamin D") && text.contains("[1] vitd (docs/vitd.txt)"), "title, then id: {text}");
    send(
        json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": { "name": "search", "arguments": { "query": "x", "collection": "../etc" } } }),
    );
    let bad = rpc_response(&mut stdout, 5);
    assert_eq!(bad["result"]["isError"], true, "{bad}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_one_chroma_server_and_one_redis_cache() {
    let dir = tempfile::tempdir().unwrap();
    let chroma = spawn_chroma(&dir.path().join("chroma")).unwrap();
    let chroma_port = chroma.port;
    let redis_port = free_port().unwrap();
    let _redis = spawn_redis(redis_port).unwrap();
    let sets = vec![
        "store.chroma.mode=http".to_owned(),
        "store.chroma.host=127.0.0.1".to_owned(),
        format!("store.chroma.port={chroma_port}"),
        "cache.backend=redis".to_owned(),
        format!("cache.redis_url=redis://127.0.0.1:{redis_port}/"),
    ];
    let a = serve(&dir.path().join("worker-a"), &sets);
    let b = serve(&dir.path().join("worker-b"), &sets);
    let (status, report) = post(&format!("{}/v1/collections/rag/documents", a.url), docs()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["embedded"], 3, "{report}");
    // Dense retrieval reads the shared Chroma collection: worker B answers with what A ingested.
    for q in ["Does vitamin D prevent fractures?", "cholesterol and mortality", "gene regulation in cancer"] {
        let body = json!({ "question": q, "mode": "dense", "k": 3 });
        let (sa, ra) = post(&format!("{}/v1/collections/rag/search", a.url), body.clone()).await;
        let (sb, rb) = post(&format!("{}/v1/collections/rag/search", b.url), body).await;
        assert_eq!((sa, sb), (200, 200), "{ra} {rb}");
        let ids = |r: &Value| {
            r["hits"].as_array().unwrap().iter().map(|h| h["chunk_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(ids(&ra).len(), 3, "{ra}");
        assert_eq!(ids(&ra), ids(&rb), "both workers rank the same chunks for `{q}`");
    }
    // The keyword index is per process (docs say so): B indexes the same documents itself, and
    // every embedding comes from the shared Redis cache.
    let (_, report) = post(&format!("{}/v1/collections/rag/documents", b.url), docs()).await;
    assert_eq!((report["embedded"].as_u64(), report["cache_hits"].as_u64()), (Some(0), Some(3)), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_page_streams_an_answer_with_citations_in_a_real_browser() {
    let lm = spawn_python_server("fake_openai.py", &["--max-seconds", "300"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &keyword_only_with_lm(&lm));
    let mut titled = docs();
    titled["documents"][0]["title"] = json!("Vitamin D and fractures trial");
    assert_eq!(post(&format!("{}/v1/collections/rag/documents", served.url), titled).await.0, 200);
    let browser = rag_testkit::browser::Browser::launch();
    let mut page = browser.open(&format!("{}/", served.url)).await;
    page.wait_for("document.querySelector('#collection option[value=\"rag\"]')", Duration::from_secs(20)).await;
    // Count every change to the answer while it streams in.
    page.eval("window.answerUpdates = 0; new MutationObserver(() => window.answerUpdates++).observe(document.getElementById('answer'), { childList: true, characterData: true, subtree: true }); true").await;
    let question = "Does vitamin D lower the risk of hip fractures?";
    page.type_into("#question", question).await;
    assert_eq!(page.eval("document.getElementById('question').value").await, question);
    page.click("#submit").await;
    page.wait_for("document.querySelectorAll('#citations li').length > 0", Duration::from_secs(60)).await;
    let answer = page.eval("document.getElementById('answer').textContent").await;
    assert!(answer.as_str().unwrap().contains(question), "{answer}");
    let updates = page.eval("window.answerUpdates").await.as_u64().unwrap();
    assert!(updates >= 3, "the answer arrived in pieces ({updates} updates)");
    let first = page.eval("document.querySelector('#citations li .meta').textContent").await;
    assert!(first.as_str().unwrap().starts_with("[1] Vitamin D and fractures trial (vitd,"), "title, then id: {first}");
    let mark = page.eval("(document.querySelector('#citations li mark') || {}).textContent || ''").await;
    assert!(mark.as_str().unwrap().contains("Vitamin D"), "the cited sentence is highlighted: {mark}");

    // Thumbs up on the first citation posts a judgment of that passage of this answer.
    page.click("#citations li .thumb-up").await;
    page.wait_for("document.querySelector('#citations li').dataset.judged === 'up'", Duration::from_secs(20)).await;
    let pressed = page.eval("document.querySelector('#citations li .thumb-up').getAttribute('aria-pressed')").await;
    assert_eq!(pressed, "true");
    let listed: Value = reqwest::get(format!("{}/v1/collections/rag/feedback", served.url)).await.unwrap().json().await.unwrap();
    let judged = listed["feedback"].as_array().unwrap();
    assert_eq!(judged.len(), 1, "{listed}");
    assert_eq!((judged[0]["doc_id"].as_str(), judged[0]["judgment"]["relevant"].as_bool()), (Some("vitd"), Some(true)));
    assert_eq!(judged[0]["question"], question);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_streams_answers_and_measures_their_tokens() {
    let lm = spawn_python_server("fake_openai.py", &["--max-seconds", "300"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &keyword_only_with_lm(&lm));
    assert_eq!(post(&format!("{}/v1/collections/rag/documents", served.url), docs()).await.0, 200);
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact");
    let out = Command::new(env!("CARGO_BIN_EXE_rag"))
        .args(["--data-dir", dir.path().join("client").to_str().unwrap(), "--json", "load", "--url", &served.url])
        .args(["--dataset", dataset, "--requests", "6", "--concurrency", "3", "--stream"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["requests"].as_u64(), r["errors"].as_u64()), (Some(6), Some(0)), "{r}");
    let s = &r["stream"];
    // The fake LM streams its answer in pieces: several token events an answer, the first one
    // before the answer ends.
    assert!(s["tokens"].as_u64().unwrap() >= 6 * 3, "{r}");
    assert!(s["tokens_per_s"].as_f64().unwrap() > 0.0 && s["answers_per_min"].as_f64().unwrap() > 0.0, "{r}");
    let (ttft, p99) = (s["ttft_p50_ms"].as_f64().unwrap(), r["p99_ms"].as_f64().unwrap());
    assert!(ttft > 0.0 && ttft <= p99, "{r}");
    // Streaming is for answers only.
    let bad = Command::new(env!("CARGO_BIN_EXE_rag"))
        .args(["--data-dir", dir.path().join("client").to_str().unwrap(), "load", "--url", &served.url])
        .args(["--dataset", dataset, "--requests", "1", "--endpoint", "search", "--stream"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--stream"), "{}", String::from_utf8_lossy(&bad.stderr));
}
