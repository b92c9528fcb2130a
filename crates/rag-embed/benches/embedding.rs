//! MiniLM throughput through `SentenceTransformerEmbedder` vs `model.encode` called directly in
//! Python on the same texts, and cached re-embedding throughput from the local cache and Redis.
//!
//! `cargo bench -p rag-embed --bench embedding` (sizes: `RAG_BENCH_SIZES=1000,10000`, the default;
//! at ~20 passages/s on 2 cores the 10,000 run takes ~8 minutes a side).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_core::Embedder;
use rag_embed::{CachedEmbedder, LocalCache, RedisCache, SentenceTransformerEmbedder};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyList};

/// SciFact passages: title + abstract, cycled to `n`.
fn passages(n: usize) -> Vec<String> {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact/corpus.jsonl"));
    let f = std::fs::File::open(path).expect("SciFact corpus at ../shared/datasets/scifact");
    let all: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            format!("{}\n{}", v["title"].as_str().unwrap_or(""), v["text"].as_str().unwrap_or(""))
        })
        .collect();
    all.iter().cycle().take(n).cloned().collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("RAG_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let batch = 64;
    let st = SentenceTransformerEmbedder::builder().batch_size(batch).build().await.unwrap();
    let model = st.python_model();
    // Warm up both paths (first-call allocation, thread pools).
    st.embed(passages(64)).await.unwrap();
    println!("MiniLM (all-MiniLM-L6-v2, cpu, batch {batch}), SciFact title+abstract passages");
    for &n in &sizes {
        let texts = passages(n);
        let t = Instant::now();
        let ours = st.embed(texts.clone()).await.unwrap();
        let ours_t = t.elapsed();
        assert_eq!(ours.len(), n);
        let m = model.clone();
        let texts2 = texts.clone();
        let direct_t = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let kw = PyDict::new(py);
                kw.set_item("batch_size", batch).unwrap();
                kw.set_item("normalize_embeddings", true).unwrap();
                kw.set_item("convert_to_numpy", true).unwrap();
                kw.set_item("show_progress_bar", false).unwrap();
                let list = PyList::new(py, &texts2).unwrap();
                let t = Instant::now();
                m.bind(py).call_method("encode", (list,), Some(&kw)).py_context(py).unwrap();
                t.elapsed()
            })
        })
        .await
        .unwrap();
        println!(
            "  n={n:>6}: SentenceTransformerEmbedder {:>7.1} passages/s | model.encode in Python {:>7.1} passages/s | ratio {:.3}",
            rate(n, ours_t),
            rate(n, direct_t),
            direct_t.as_secs_f64() / ours_t.as_secs_f64()
        );
    }
    // Cached re-embedding: fill each cache with one pass, then time a fully cached pass.
    let n = *sizes.first().unwrap_or(&1000);
    let texts = passages(n);
    let dir = tempfile::tempdir().unwrap();
    let local = CachedEmbedder::new(st.clone(), Arc::new(LocalCache::open(dir.path().join("c.redb")).unwrap()));
    local.embed(texts.clone()).await.unwrap();
    let t = Instant::now();
    local.embed(texts.clone()).await.unwrap();
    println!(
        "  cached re-embedding, local (redb) cache: {:>10.0} passages/s (n={n}, hits {})",
        rate(n, t.elapsed()),
        local.stats().hits
    );
    match redis_server() {
        Some((mut child, port)) => {
            let redis =
                CachedEmbedder::new(st.clone(), Arc::new(RedisCache::new(&format!("redis://127.0.0.1:{port}/0"), None).unwrap()));
            redis.embed(texts.clone()).await.unwrap();
            let t = Instant::now();
            redis.embed(texts.clone()).await.unwrap();
            println!(
                "  cached re-embedding, Redis (one MGET):   {:>10.0} passages/s (n={n}, hits {})",
                rate(n, t.elapsed()),
                redis.stats().hits
            );
            let _ = child.kill();
        }
        None => println!("  cached re-embedding, Redis: redis-server not found (run `make setup`)"),
    }
}

fn redis_server() -> Option<(std::process::Child, u16)> {
    let port = rag_testkit::free_port().ok()?;
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
