//! MiniLM query and passage throughput, one process, side by side: torch (sentence-transformers)
//! one query at a time and batched; ONNX Runtime from Python through PyO3 (one session, one
//! intra-op thread, two concurrent callers: the best found in ../shared/notes/onnx-embedding.md);
//! and ONNX Runtime from Rust (`OnnxEmbedder`, fp32 and int8), both with two concurrent
//! single-query callers and with a whole list per call.
//!
//! `make setup` first (the venv and the ONNX export), then
//! `cargo bench -p rag-embed --features onnx --bench onnx` (`RAG_BENCH_QUERIES`, default 256).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use rag_core::Embedder;
use rag_embed::{OnnxEmbedder, OnnxPrecision, SentenceTransformerEmbedder, default_model_dir};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::PyModule;

fn scifact(file: &str, n: usize, f: impl Fn(&serde_json::Value) -> String) -> Vec<String> {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact")).join(file);
    let reader = std::io::BufReader::new(std::fs::File::open(path).expect("SciFact at ../shared/datasets/scifact"));
    let all: Vec<String> = reader.lines().map(|l| f(&serde_json::from_str(&l.unwrap()).unwrap())).collect();
    all.iter().cycle().take(n).cloned().collect()
}

/// Runs `texts` through `embed_one` from two concurrent callers; texts per second.
async fn two_callers<F, Fut>(texts: &[String], embed_one: F) -> f64
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let t = Instant::now();
    let halves: Vec<Vec<String>> =
        vec![texts.iter().step_by(2).cloned().collect(), texts.iter().skip(1).step_by(2).cloned().collect()];
    let tasks: Vec<_> = halves
        .into_iter()
        .map(|half| {
            let f = embed_one.clone();
            tokio::spawn(async move {
                for q in half {
                    f(q).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    texts.len() as f64 / t.elapsed().as_secs_f64()
}

const PY_ORT: &std::ffi::CStr = cr#"
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

class Embedder:
    def __init__(self, directory):
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        self.session = ort.InferenceSession(directory + "/model.onnx", o, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(directory + "/tokenizer.json")
        self.tok.no_padding()
        self.tok.enable_truncation(256)

    def embed(self, text):
        e = self.tok.encode(text)
        ids = np.array([e.ids], dtype=np.int64)
        out = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                      "token_type_ids": np.array([e.type_ids], dtype=np.int64)})[0][0]
        v = out.mean(0)
        return v / np.linalg.norm(v)
"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n: usize = std::env::var("RAG_BENCH_QUERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let queries = scifact("queries.jsonl", n, |v| v["text"].as_str().unwrap().to_owned());
    let passages = scifact("corpus.jsonl", 128, |v| format!("{}\n{}", v["title"].as_str().unwrap(), v["text"].as_str().unwrap()));
    let torch = Arc::new(SentenceTransformerEmbedder::builder().batch_size(32).build().await.unwrap());
    let fp32 = Arc::new(OnnxEmbedder::builder().precision(OnnxPrecision::Fp32).build().await.unwrap());
    let int8 = Arc::new(OnnxEmbedder::builder().precision(OnnxPrecision::Int8).build().await.unwrap());
    let dir = default_model_dir().unwrap().display().to_string();
    let py: Py<PyAny> = Python::attach(|py| {
        let m = PyModule::from_code(py, PY_ORT, c"py_ort.py", c"py_ort").py_context(py).unwrap();
        m.getattr("Embedder").unwrap().call1((dir,)).unwrap().unbind()
    });
    let py = Arc::new(py);
    // Warm every path.
    for e in [&torch as &dyn Embedder, &*fp32, &*int8] {
        e.embed(queries[..8].to_vec()).await.unwrap();
    }
    println!("MiniLM query embedding, {n} SciFact queries (queries/s, higher is better), same process, same run");
    let t = Instant::now();
    for q in &queries {
        torch.embed(vec![q.clone()]).await.unwrap();
    }
    let torch_one = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    torch.embed(queries.clone()).await.unwrap();
    let torch_batched = n as f64 / t.elapsed().as_secs_f64();
    let p = py.clone();
    let py_two = two_callers(&queries, move |q| {
        let p = p.clone();
        async move {
            tokio::task::spawn_blocking(move || Python::attach(|py| p.bind(py).call_method1("embed", (q,)).map(|_| ()).unwrap()))
                .await
                .unwrap()
        }
    })
    .await;
    let mut rows = vec![
        ("torch (sentence-transformers), one query at a time", torch_one),
        ("torch, one batched call (batch 32)", torch_batched),
        ("ONNX Runtime fp32 from Python via PyO3, 2 concurrent callers", py_two),
    ];
    for (name, e) in [("fp32", fp32.clone()), ("int8", int8.clone())] {
        let e2 = e.clone();
        let two = two_callers(&queries, move |q| {
            let e = e2.clone();
            async move {
                e.embed(vec![q]).await.unwrap();
            }
        })
        .await;
        let t = Instant::now();
        e.embed(queries.clone()).await.unwrap();
        let list = n as f64 / t.elapsed().as_secs_f64();
        rows.push((
            if name == "fp32" {
                "ONNX Runtime fp32 from Rust (ort), 2 concurrent callers"
            } else {
                "ONNX Runtime int8 from Rust (ort), 2 concurrent callers"
            },
            two,
        ));
        rows.push((
            if name == "fp32" {
                "ONNX Runtime fp32 from Rust, one call of all queries (2 sessions)"
            } else {
                "ONNX Runtime int8 from Rust, one call of all queries (2 sessions)"
            },
            list,
        ));
    }
    for (name, qps) in &rows {
        println!("  {name:<70} {qps:>7.1}  ({:.2}x torch one at a time)", qps / torch_one);
    }
    println!("MiniLM passage embedding (ingest), 128 SciFact title+abstract passages (passages/s)");
    let t = Instant::now();
    torch.embed(passages.clone()).await.unwrap();
    let torch_p = passages.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    fp32.embed(passages.clone()).await.unwrap();
    let fp32_p = passages.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    int8.embed(passages.clone()).await.unwrap();
    let int8_p = passages.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "  torch batch 32 {torch_p:.1} | ONNX fp32 (Rust) {fp32_p:.1} ({:.2}x) | ONNX int8 (Rust) {int8_p:.1} ({:.2}x)",
        fp32_p / torch_p,
        int8_p / torch_p
    );
}
