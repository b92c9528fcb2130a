//! `rag bench --scale` at a small N on a small BEIR set cut from SciFact: on the embedded
//! default (ChromaDB + tantivy) and on a real Qdrant server with int8 quantization and a tenant
//! index. Checks the report's shape and facts (every distractor one chunk, recall against the
//! exact search, a latency level per path and concurrency, the tenant filter, the quantization
//! read back from the server) and that a server collection already holding points is refused,
//! untouched. This is the benchmark's correctness, not its speed. Needs `make setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn scifact() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact"))
}

/// A BEIR folder: the first `queries` test queries, their judged documents and `extra` more.
fn small_beir(dir: &Path, queries: usize, extra: usize) -> PathBuf {
    let src = scifact();
    let out = dir.join("beir");
    std::fs::create_dir_all(out.join("qrels")).unwrap();
    let qrels = std::fs::read_to_string(src.join("qrels/test.tsv")).unwrap();
    let mut lines = qrels.lines();
    let header = lines.next().unwrap();
    let mut kept_queries = BTreeSet::new();
    let mut docs = BTreeSet::new();
    let mut kept = vec![header.to_owned()];
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        if kept_queries.len() == queries && !kept_queries.contains(cols[0]) {
            continue;
        }
        kept_queries.insert(cols[0].to_owned());
        docs.insert(cols[1].to_owned());
        kept.push(line.to_owned());
    }
    std::fs::write(out.join("qrels/test.tsv"), kept.join("\n") + "\n").unwrap();
    let mut corpus = std::fs::File::create(out.join("corpus.jsonl")).unwrap();
    let mut others = 0;
    for line in std::fs::read_to_string(src.join("corpus.jsonl")).unwrap().lines() {
        let id = serde_json::from_str::<Value>(line).unwrap()["_id"].as_str().unwrap().to_owned();
        let judged = docs.contains(&id);
        if judged || others < extra {
            others += usize::from(!judged);
            writeln!(corpus, "{line}").unwrap();
        }
    }
    let mut q = std::fs::File::create(out.join("queries.jsonl")).unwrap();
    for line in std::fs::read_to_string(src.join("queries.jsonl")).unwrap().lines() {
        let id = serde_json::from_str::<Value>(line).unwrap()["_id"].as_str().unwrap().to_owned();
        if kept_queries.contains(&id) {
            writeln!(q, "{line}").unwrap();
        }
    }
    out
}

fn rag(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rag")).arg("--data-dir").arg(data).args(args).output().unwrap()
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "rag failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What every scale report must say, whatever the store.
fn check(r: &Value, distractors: u64, queries: u64, levels: &[u64], tenant_paths: bool) {
    assert_eq!(r["distractor_chunks"], distractors, "every distractor is one chunk: {r}");
    let real = r["real_chunks"].as_u64().unwrap();
    assert!(real > 100, "{r}");
    assert_eq!(r["chunks"].as_u64().unwrap(), real + distractors, "the store holds SciFact and the distractors: {r}");
    assert!(r["load_chunks_per_s"].as_f64().unwrap() > 0.0);
    // A small collection is searched nearly exactly; a broken comparison (wrong ids) gives ~0.
    assert!(r["recall_at_10"].as_f64().unwrap() >= 0.9, "recall against exact search: {r}");
    assert_eq!(r["recall_queries"], queries.min(20));
    let mut paths = vec!["dense", "hybrid"];
    if tenant_paths {
        paths.push("tenant_dense");
    }
    let lat = r["latency"].as_array().unwrap();
    assert_eq!(lat.len(), paths.len() * levels.len(), "{r}");
    for p in &paths {
        for c in levels {
            let l =
                lat.iter().find(|l| l["path"] == *p && l["concurrency"] == *c).unwrap_or_else(|| panic!("no {p} at {c}: {r}"));
            let expected = if *p == "tenant_dense" { queries.min(100) } else { 2 * queries };
            assert_eq!(l["queries"], expected, "two rounds of the test queries, one of at most 100 for one tenant");
            assert!(l["p50_ms"].as_f64().unwrap() > 0.0 && l["p99_ms"].as_f64().unwrap() >= l["p50_ms"].as_f64().unwrap());
        }
    }
    let ndcg = r["ndcg_at_10"].as_array().unwrap();
    assert_eq!(ndcg.len(), 2);
    for m in ndcg {
        let (without, with) = (m["without"].as_f64().unwrap(), m["with"].as_f64().unwrap());
        assert!(without > 0.3 && with > 0.0 && with <= without + 0.05, "{m}");
    }
}

#[test]
fn scale_bench_on_the_embedded_default() {
    let tmp = tempfile::tempdir().unwrap();
    let beir = small_beir(tmp.path(), 15, 60);
    let data = tmp.path().join("data");
    let args = ["--json", "bench", "--dataset", beir.to_str().unwrap(), "--scale", "300", "--tenants", "3"];
    let r = report(&rag(&data, &[&args[..], &["--recall-queries", "20", "--concurrency", "1,4"]].concat()));
    check(&r, 300, 15, &[1, 4], true);
    assert_eq!(r["collection"], "scale-300");
    assert!(r["backends"]["store"].as_str().unwrap().starts_with("chroma"), "{r}");
    assert!(r["disk_mb"].as_f64().unwrap() > 0.0, "the embedded store's disk is measured: {r}");
    assert!(r["peak_rss_mb"].as_f64().unwrap() >= r["rss_mb"].as_f64().unwrap());
}

#[test]
fn scale_bench_on_a_qdrant_server_with_int8_and_a_tenant_index() {
    let tmp = tempfile::tempdir().unwrap();
    let node = rag_testkit::spawn_qdrant(&tmp.path().join("qdrant")).unwrap();
    let beir = small_beir(tmp.path(), 12, 40);
    let data = tmp.path().join("data");
    let config = tmp.path().join("rag.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nbackend = \"qdrant\"\nindex = \"engine\"\n\n[store.qdrant]\nmode = \"server\"\nurl = \"{}\"\n\
             quantization = \"int8\"\ntenant_keys = [\"tenant\"]\nindexing_threshold_kb = 1\n",
            node.url()
        ),
    )
    .unwrap();
    let base = ["--config", config.to_str().unwrap(), "--json", "--collection", "sc"];
    let bench = ["bench", "--dataset", beir.to_str().unwrap(), "--scale", "200", "--tenants", "5", "--recall-queries", "20"];
    let r = report(&rag(&data, &[&base[..], &bench[..]].concat()));
    check(&r, 200, 12, &[1, 16], true);
    assert_eq!(r["collection"], "sc");
    assert_eq!(r["store_details"]["status"], "green", "the run waited for the index: {r}");
    let info = rag_testkit::http_get_json(&format!("{}/collections/sc", node.url())).unwrap();
    let info = &info["result"];
    assert!(info["config"]["quantization_config"]["scalar"]["type"] == "int8", "{info}");
    assert_eq!(info["payload_schema"]["tenant"]["params"]["is_tenant"], true, "{info}");
    assert_eq!(info["payload_schema"]["tenant"]["points"], 200, "only distractors carry a tenant: {info}");

    // The collection now holds points: a second run is refused and leaves it as it was.
    let again = rag(&data, &[&base[..], &bench[..]].concat());
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds") && err.contains("sc"), "{err}");
    let after = rag_testkit::http_get_json(&format!("{}/collections/sc", node.url())).unwrap();
    assert_eq!(after["result"]["points_count"], info["points_count"]);
}
