//! Upsert throughput and query latency of each local VectorStore (Chroma embedded, Qdrant local)
//! at 10,000 and 100,000 vectors of dimension 384, beside the same operations done directly
//! from Python in the same process (the cost of going through Rust, as a ratio).
//!
//! `cargo bench --bench vector_stores --features qdrant` (sizes: `RAG_BENCH_VECTORS=10000,100000`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use rag::python::PyResultExt;
use rag::python::pyo3::prelude::*;
use rag::python::pyo3::types::PyModule;
use rag_core::{Chunk, EmbeddedChunk, VectorQuery, VectorStore};

const DIM: usize = 384;
const QUERIES: usize = 200;

fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..DIM)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect()
        })
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    rag::bench::percentile(v, p)
}

async fn rust_side(store: Arc<dyn VectorStore>, data: &[Vec<f32>], queries: &[Vec<f32>]) -> (f64, f64, f64) {
    let chunks: Vec<EmbeddedChunk> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut c = Chunk::new(format!("c{i}"), format!("d{}", i / 3), format!("text {i}"));
            c.metadata.insert("group".into(), ((i % 10) as i64).into());
            EmbeddedChunk { chunk: c, embedding: v.clone() }
        })
        .collect();
    let t = Instant::now();
    for batch in chunks.chunks(5000) {
        store.upsert(batch.to_vec()).await.unwrap();
    }
    let upsert = data.len() as f64 / t.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for q in queries {
        let t = Instant::now();
        store.query(VectorQuery { vector: q.clone(), k: 10, filter: None }).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (upsert, pct(&mut lat, 50.0), pct(&mut lat, 95.0))
}

/// The same work in Python: upserts in batches of 5,000 with numpy vectors and the same metadata,
/// then one query at a time, each timed by `time.perf_counter` inside Python.
const PY: &std::ffi::CStr = c"
import time, numpy as np
def chroma(path, name, data, queries):
    import chromadb
    c = chromadb.PersistentClient(path=path).get_or_create_collection(name, metadata={'hnsw:space': 'cosine'}, embedding_function=None)
    return run(lambda ids, v, m, d: c.upsert(ids=ids, embeddings=v, metadatas=m, documents=d),
               lambda q: c.query(query_embeddings=q[None, :], n_results=10, include=['documents', 'metadatas', 'distances']), data, queries)
def qdrant(path, name, data, queries):
    from qdrant_client import QdrantClient, models
    c = QdrantClient(path=path)
    c.create_collection(name, vectors_config=models.VectorParams(size=data.shape[1], distance=models.Distance.COSINE))
    def up(ids, v, m, d):
        import uuid
        c.upsert(name, points=models.Batch(ids=[str(uuid.uuid5(uuid.NAMESPACE_URL, i)) for i in ids], vectors=v.tolist(),
                 payloads=[dict(mm, text=dd, chunk_id=i) for mm, dd, i in zip(m, d, ids)]), wait=True)
    out = run(up, lambda q: c.query_points(name, query=q.tolist(), limit=10, with_payload=True), data, queries)
    c.close()
    return out
def run(upsert, query, data, queries):
    n = len(data)
    t = time.perf_counter()
    for s in range(0, n, 5000):
        ids = [f'c{i}' for i in range(s, min(n, s + 5000))]
        # The same payload ChromaStore / QdrantStore write: metadata plus the chunk's own fields.
        upsert(ids, data[s:s + 5000], [{'group': i % 10, 'doc_id': f'd{i // 3}', 'chunk_index': 0, 'span_start': 0, 'span_end': len(f'text {i}'),
                                        'token_count': 0, 'content_hash': '0' * 32} for i in range(s, min(n, s + 5000))],
               [f'text {i}' for i in range(s, min(n, s + 5000))])
    rate = n / (time.perf_counter() - t)
    lat = []
    for q in queries:
        t = time.perf_counter(); query(q); lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return rate, lat[int(len(lat) * 0.5) - 1], lat[int(len(lat) * 0.95) - 1]
";

fn python_side(kind: &'static str, path: String, data: Vec<Vec<f32>>, queries: Vec<Vec<f32>>) -> (f64, f64, f64) {
    rag::python::runtime()
        .unwrap()
        .run_blocking(move |py| {
            let m = PyModule::from_code(py, PY, c"bench_direct.py", c"bench_direct").py_context(py)?;
            let data = rag::python::convert::matrix_to_numpy(py, &data)?;
            let queries = rag::python::convert::matrix_to_numpy(py, &queries)?;
            m.getattr(kind).and_then(|f| f.call1((path, "direct", data, queries))).and_then(|r| r.extract()).py_context(py)
        })
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("RAG_BENCH_VECTORS")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("dimension {DIM}, cosine; upsert in batches of 5,000 with metadata; {QUERIES} single queries, k = 10");
    println!(
        "{:<16} {:>8} {:>14} {:>14} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "backend", "n", "rust upsert/s", "python upsert/s", "ratio", "rust p50", "py p50", "rust p95", "py p95"
    );
    for &n in &sizes {
        let data = vectors(n, 1);
        let queries = vectors(QUERIES, 2);
        for kind in ["chroma", "qdrant"] {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn VectorStore> = match kind {
                "chroma" => Arc::new(
                    rag::chroma::ChromaStore::builder(rag::chroma::ChromaMode::Persistent(dir.path().join("rust")))
                        .collection("bench")
                        .dimension(DIM)
                        .build()
                        .await
                        .unwrap(),
                ),
                #[cfg(feature = "qdrant")]
                _ => Arc::new(
                    rag::qdrant::QdrantStore::builder(rag::qdrant::QdrantMode::Local(dir.path().join("rust")))
                        .collection("bench")
                        .dimension(DIM)
                        .build()
                        .await
                        .unwrap(),
                ),
                #[cfg(not(feature = "qdrant"))]
                _ => continue,
            };
            let (ru, rp50, rp95) = rust_side(store, &data, &queries).await;
            let path = dir.path().join("python").display().to_string();
            let (d, q) = (data.clone(), queries.clone());
            let (pu, pp50, pp95) = tokio::task::spawn_blocking(move || python_side(kind, path, d, q)).await.unwrap();
            println!(
                "{:<16} {:>8} {:>14.0} {:>14.0} {:>8.2} {:>9.2}ms {:>9.2}ms {:>9.2}ms {:>9.2}ms",
                kind,
                n,
                ru,
                pu,
                ru / pu,
                rp50,
                pp50,
                rp95,
                pp95
            );
        }
    }
}
