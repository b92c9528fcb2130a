//! What the process tests share: a `rag serve` child process, a slice of SciFact, and a Qdrant
//! collection's points read back.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A `rag serve` child process on a free port, killed on drop.
pub struct Served {
    pub child: Child,
    pub url: String,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `rag` (already given its global flags) as `serve` on a free port, and waits until
/// `/readyz` answers 200 (the model warmed up).
pub fn serve(mut rag: Command) -> Served {
    let mut child = rag.args(["serve", "--addr", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {line}");
    let served = Served { child, url, _stdout: stdout };
    for _ in 0..1200 {
        if rag_testkit::http_request("GET", &format!("{}/readyz", served.url), None).is_ok_and(|(s, _)| s == 200) {
            return served;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("rag serve at {} never became ready", served.url);
}

/// The first `n` documents of SciFact as a JSONL file in `dir`.
pub fn scifact_slice(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact/corpus.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let out = dir.join(format!("scifact-{n}.jsonl"));
    std::fs::write(&out, text.lines().take(n).collect::<Vec<_>>().join("\n")).unwrap();
    out
}

/// Every point of `collection` as (chunk id, document hash, text), read over Qdrant's REST API.
pub async fn state(node: &rag_testkit::QdrantNode, collection: &str) -> std::collections::BTreeSet<(String, String, String)> {
    let client = reqwest::Client::new();
    let mut out = std::collections::BTreeSet::new();
    let mut offset = serde_json::Value::Null;
    loop {
        let body = serde_json::json!({"limit": 256, "with_payload": true, "with_vector": false, "offset": offset});
        let url = format!("{}/collections/{collection}/points/scroll", node.url());
        let v: serde_json::Value = client.post(url).json(&body).send().await.unwrap().json().await.unwrap();
        for p in v["result"]["points"].as_array().unwrap() {
            let pl = &p["payload"];
            out.insert((
                pl["chunk_id"].as_str().unwrap().to_owned(),
                pl["rag_doc_hash"].as_str().unwrap().to_owned(),
                pl["text"].as_str().unwrap().to_owned(),
            ));
        }
        offset = v["result"]["next_page_offset"].clone();
        if offset.is_null() {
            return out;
        }
    }
}

/// Points in `collection` (an exact count; 0 while it does not exist).
pub async fn count(node: &rag_testkit::QdrantNode, collection: &str) -> u64 {
    let url = format!("{}/collections/{collection}/points/count", node.url());
    let response = reqwest::Client::new().post(url).json(&serde_json::json!({"exact": true})).send().await.unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return 0;
    }
    let v: serde_json::Value = response.json().await.unwrap();
    v["result"]["count"].as_u64().unwrap()
}
