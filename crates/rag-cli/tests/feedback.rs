//! Feedback from users, through `rag serve` as a process: judgments of answers posted with
//! tenant keys, refused when they name what the key never saw, kept across a restart, listed
//! per tenant, then exported as qrels that `rag eval` scores the collection with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

mod common;

use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789abcdef";
const ACME: &str = "acme-key-0123456789abcdef";
const GLOBEX: &str = "globex-key-0123456789abcdef";

/// Keyword-only (no model to load), extractive answers, three keys: two of them tenants.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rag.toml");
    let toml = format!(
        r#"
collection = "docs"
[store]
backend = "none"
[retrieval]
mode = "bm25"
[[server.keys]]
name = "admin"
key = "{ADMIN}"
collections = ["*"]
access = "read_write"
[[server.keys]]
name = "acme"
key = "{ACME}"
collections = ["docs"]
access = "read_write"
tenant = {{ tenant = "acme" }}
[[server.keys]]
name = "globex"
key = "{GLOBEX}"
collections = ["docs"]
access = "read_write"
tenant = {{ tenant = "globex" }}
"#
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn rag(config: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rag"));
    cmd.arg("--config").arg(config).arg("--data-dir").arg(data);
    cmd
}

async fn call(method: &str, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn query(base: &str, key: &str, question: &str) -> Value {
    let (s, r) = call("POST", &format!("{base}/query"), key, Some(json!({ "question": question }))).await;
    assert_eq!(s, 200, "{r}");
    assert!(r["query_id"].as_str().unwrap().starts_with("q-"), "every answer carries its id: {r}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judgments_stay_with_their_tenant_survive_a_restart_and_feed_rag_eval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path());
    let served = common::serve(rag(&config, &data));
    let base = format!("{}/v1/collections/docs", served.url);
    let ingest = async |key: &str, docs: Value| {
        let (s, r) = call("POST", &format!("{base}/documents"), key, Some(json!({ "documents": docs }))).await;
        assert_eq!(s, 200, "{r}");
    };
    ingest(
        ACME,
        json!([
            { "id": "vitd", "text": "Vitamin D supplementation lowers the risk of hip fractures in older adults." },
            { "id": "statins", "text": "Statins reduce cardiovascular mortality in patients with high cholesterol." },
        ]),
    )
    .await;
    ingest(GLOBEX, json!([{ "id": "gx", "text": "Globex trial: vitamin D and fractures in the moon base crew." }])).await;

    let answer = query(&base, ACME, "Does vitamin D lower the risk of hip fractures?").await;
    let qid = answer["query_id"].as_str().unwrap();
    let cited = answer["citations"][0]["chunk_id"].as_str().unwrap();
    assert_eq!(answer["citations"][0]["doc_id"], "vitd", "acme sees its own ids: {answer}");
    let feedback = format!("{base}/feedback");

    // What is refused, each naming the field, and writing nothing.
    let refused = [
        (ACME, json!({ "query_id": "q-never-given", "relevant": true }), 404, None),
        (GLOBEX, json!({ "query_id": qid, "relevant": true }), 404, None),
        (ACME, json!({ "query_id": qid, "chunk_id": "gx#0", "relevant": true }), 400, Some("chunk_id")),
        (ACME, json!({ "query_id": qid, "rating": 9 }), 400, Some("rating")),
        (ACME, json!({ "query_id": qid }), 400, Some("relevant")),
        (ACME, json!({ "query_id": qid, "relevant": "yes" }), 400, None),
        (ACME, json!({ "query_id": qid, "relevant": true, "comment": "x".repeat(2001) }), 400, Some("comment")),
        (ACME, json!({ "query_id": qid, "relevant": true, "colour": "red" }), 400, None),
    ];
    for (key, body, status, field) in refused {
        let (s, r) = call("POST", &feedback, key, Some(body.clone())).await;
        assert_eq!(s, status, "{body} -> {r}");
        if let Some(f) = field {
            assert_eq!(r["error"]["field"], f, "{r}");
        }
    }

    let (s, r) = call(
        "POST",
        &feedback,
        ACME,
        Some(json!({ "query_id": qid, "chunk_id": cited, "relevant": true, "comment": "the trial" })),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!((r["doc_id"].as_str(), r["judgment"]["relevant"].as_bool()), (Some("vitd"), Some(true)), "{r}");
    let (s, r) = call("POST", &feedback, ACME, Some(json!({ "query_id": qid, "rating": 2 }))).await;
    assert_eq!(s, 201, "a whole-answer rating: {r}");
    let globex_answer = query(&base, GLOBEX, "vitamin D fractures moon base").await;
    let gqid = globex_answer["query_id"].as_str().unwrap();
    let gcited = globex_answer["citations"][0]["chunk_id"].as_str().unwrap();
    let (s, r) = call("POST", &feedback, GLOBEX, Some(json!({ "query_id": gqid, "chunk_id": gcited, "relevant": false }))).await;
    assert_eq!(s, 201, "{r}");

    // Restart: the judgments are on disk, each tenant sees its own.
    drop(served);
    let served = common::serve(rag(&config, &data));
    let feedback = format!("{}/v1/collections/docs/feedback", served.url);
    let list = async |key: &str| {
        let (s, r) = call("GET", &feedback, key, None).await;
        assert_eq!(s, 200, "{r}");
        r["feedback"].as_array().unwrap().clone()
    };
    let acme = list(ACME).await;
    assert_eq!(acme.len(), 2, "{acme:?}");
    assert_eq!((acme[0]["query_id"].as_str(), acme[0]["doc_id"].as_str()), (Some(qid), Some("vitd")));
    assert_eq!(acme[0]["comment"], "the trial");
    assert!(acme.iter().all(|f| f.get("tenant").is_none()), "a tenant's view names no namespace: {acme:?}");
    let globex = list(GLOBEX).await;
    assert_eq!(globex.len(), 1, "{globex:?}");
    assert_eq!(globex[0]["doc_id"], "gx");
    assert_eq!(list(ADMIN).await.len(), 3, "a key without a tenant sees every judgment");
    drop(served);

    // Export: JSON Lines as stored; qrels that rag eval scores the collection with.
    let out = rag(&config, &data).args(["feedback", "export"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let only_acme = rag(&config, &data).args(["feedback", "export", "--tenant", "tenant=acme"]).output().unwrap();
    let acme_lines = String::from_utf8_lossy(&only_acme.stdout).lines().count();
    let qrels = dir.path().join("judged");
    let out = rag(&config, &data).args(["feedback", "export", "--format", "qrels", "--out"]).arg(&qrels).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tsv = std::fs::read_to_string(qrels.join("qrels/test.tsv")).unwrap();
    let rows: Vec<&str> = tsv.lines().skip(1).collect();
    // acme's thumbs up is a query with a relevant document; globex's thumbs down alone is not.
    assert_eq!(rows.len(), 1, "{tsv}");
    assert!(rows[0].starts_with(&format!("{qid}\t")) && rows[0].ends_with("\t1"), "{tsv}");
    assert!(rows[0].contains("vitd"), "{tsv}");
    let out = rag(&config, &data).args(["--json", "eval", "--mode", "bm25", "--dataset"]).arg(&qrels).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["queries"], 1, "{report}");
    assert!(report["ndcg_at_10"].as_f64().unwrap() > 0.5, "the judged document ranks near the top: {report}");
    assert_eq!(acme_lines, 2, "--tenant keeps one tenant's judgments");
    // Another collection holds nothing to score: refused by name.
    let out =
        rag(&config, &data).args(["--collection", "empty", "eval", "--mode", "bm25", "--dataset"]).arg(&qrels).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("collection `empty` is empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // qrels without --out are refused by name.
    let bad = rag(&config, &data).args(["feedback", "export", "--format", "qrels"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--out"));
}
