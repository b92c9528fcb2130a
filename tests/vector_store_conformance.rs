//! One conformance suite, run against every VectorStore configuration:
//! Chroma embedded (on disk), Chroma server (`chroma run`, started and stopped here), Qdrant
//! local mode, and Pinecone against the local data-plane server in `python/testing/`
//! (no Pinecone emulator exists).
//! Needs `make setup`; fails (never skips) without it.
#![cfg(any(feature = "chroma", feature = "qdrant", feature = "pinecone"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rag_core::{Chunk, Distance, EmbeddedChunk, Filter, Metadata, MetadataValue, RagError, VectorQuery, VectorStore};

const DIM: usize = 8;

type Factory =
    Arc<dyn Fn(String, bool) -> Pin<Box<dyn Future<Output = rag_core::Result<Arc<dyn VectorStore>>> + Send>> + Send + Sync>;

fn vector(i: usize) -> Vec<f32> {
    // Pseudo-random, distinct for every i (splitmix64): the i-th vector is closest to itself.
    let mut state = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    v[i % DIM] += 0.5;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn meta(i: usize) -> Metadata {
    let mut m = Metadata::new();
    m.insert("year".into(), MetadataValue::Int(2015 + (i % 8) as i64));
    m.insert("lang".into(), MetadataValue::Str(["en", "de", "fr"][i % 3].into()));
    m.insert("score".into(), MetadataValue::Float((i % 10) as f64 / 10.0));
    m.insert("ok".into(), MetadataValue::Bool(i.is_multiple_of(2)));
    m
}

fn chunk(i: usize, text: &str) -> EmbeddedChunk {
    let mut c = Chunk::new(format!("c{i}"), format!("doc{}", i / 4), text);
    c.index = i % 4;
    c.token_count = 3;
    c.metadata = meta(i);
    EmbeddedChunk { chunk: c, embedding: vector(i) }
}

fn ids(hits: &[rag_core::ScoredChunk]) -> BTreeSet<String> {
    hits.iter().map(|h| h.chunk.id.clone()).collect()
}

async fn run_conformance(name: &str, factory: Factory, persists: bool) {
    let coll = format!("conf-{}-{}", name, std::process::id());
    let store = factory(coll.clone(), true).await.unwrap();

    // Empty collection.
    assert_eq!(store.count().await.unwrap(), 0, "{name}: empty count");
    let q = VectorQuery { vector: vector(0), k: 5, filter: None };
    assert!(store.query(q.clone()).await.unwrap().is_empty(), "{name}: empty query");

    // Upsert, nearest first, scores descending (higher is more similar).
    let n = 40;
    let texts: Vec<String> = (0..n).map(|i| format!("chunk number {i}")).collect();
    store.upsert((0..n).map(|i| chunk(i, &texts[i])).collect()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), n, "{name}: count after upsert");
    for probe in [0usize, 7, 23] {
        let hits = store.query(VectorQuery { vector: vector(probe), k: 5, filter: None }).await.unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].chunk.id, format!("c{probe}"), "{name}: nearest first");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{name}: scores descending");
        assert!((hits[0].score - 1.0).abs() < 1e-3, "{name}: cosine self-similarity is 1, got {}", hits[0].score);
        let c = &hits[0].chunk;
        assert_eq!(c.text, texts[probe]);
        assert_eq!(c.doc_id, format!("doc{}", probe / 4));
        assert_eq!(c.index, probe % 4);
        assert_eq!(c.span.end, texts[probe].len());
        assert_eq!(c.metadata.get("lang"), meta(probe).get("lang"));
        assert_eq!(c.metadata.get("year").and_then(MetadataValue::as_f64), Some((2015 + probe % 8) as f64));
    }

    // Every filter operator agrees with the reference semantics.
    let filters = vec![
        Filter::eq("lang", "de"),
        Filter::ne("lang", "de"),
        Filter::is_in("lang", ["en", "fr"]),
        Filter::not_in("lang", ["en", "fr"]),
        Filter::gt("year", 2018),
        Filter::gte("year", 2018),
        Filter::lt("score", 0.3),
        Filter::lte("score", 0.3),
        Filter::eq("ok", true),
        Filter::eq("year", 2020),
        Filter::eq("lang", "en").and(Filter::gte("year", 2019)),
        Filter::eq("lang", "fr").or(Filter::lt("year", 2016)),
        Filter::eq("ok", false).and(Filter::eq("lang", "de").or(Filter::gt("score", 0.75))),
    ];
    for f in filters {
        let expected: BTreeSet<String> = (0..n).filter(|i| f.matches(&meta(*i))).map(|i| format!("c{i}")).collect();
        let hits = store.query(VectorQuery { vector: vector(3), k: 100, filter: Some(f.clone()) }).await.unwrap();
        assert_eq!(ids(&hits), expected, "{name}: filter {f}");
    }
    // A malformed filter is an InvalidInput error, not a Python exception.
    let err = store.query(VectorQuery { vector: vector(3), k: 3, filter: Some(Filter::And(vec![])) }).await.unwrap_err();
    assert!(matches!(err, RagError::InvalidInput { .. }), "{name}: {err}");

    // k larger than the collection.
    assert_eq!(
        store.query(VectorQuery { vector: vector(1), k: 1000, filter: None }).await.unwrap().len(),
        n,
        "{name}: k > count"
    );

    // Idempotent re-upsert.
    store.upsert((0..10).map(|i| chunk(i, &texts[i])).collect()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), n, "{name}: re-upsert keeps count");

    // Delete by id, then by filter.
    store.delete(vec!["c0".into(), "c1".into(), "nope".into()]).await.unwrap();
    assert_eq!(store.count().await.unwrap(), n - 2, "{name}: delete by id");
    let hits = store.query(VectorQuery { vector: vector(0), k: 3, filter: None }).await.unwrap();
    assert!(!ids(&hits).contains("c0"));
    store.delete_by_filter(Filter::eq("lang", "fr")).await.unwrap();
    let remaining = (2..n).filter(|i| i % 3 != 2).count();
    assert_eq!(store.count().await.unwrap(), remaining, "{name}: delete by filter");
    store.delete_by_filter(Filter::eq("doc_id", "doc9")).await.unwrap();
    let hits = store.query(VectorQuery { vector: vector(37), k: 100, filter: None }).await.unwrap();
    assert!(hits.iter().all(|h| h.chunk.doc_id != "doc9"), "{name}: delete by the reserved doc_id field");

    // Dimension mismatch on upsert and on query: a typed error.
    let mut bad = chunk(99, "bad");
    bad.embedding = vec![0.5; DIM + 1];
    let err = store.upsert(vec![bad]).await.unwrap_err();
    assert!(matches!(err, RagError::DimensionMismatch { expected: DIM, .. }), "{name}: {err}");
    let err = store.query(VectorQuery { vector: vec![0.1; DIM - 1], k: 1, filter: None }).await.unwrap_err();
    assert!(matches!(err, RagError::DimensionMismatch { .. }), "{name}: {err}");

    // Unicode and long texts round-trip.
    let unicode = "Ünïcödé — 日本語のテキスト 🎉 \"quotes\" and \\backslashes\\ \n newline";
    let long = "long text ".repeat(2000);
    store.upsert(vec![chunk(100, unicode), chunk(101, &long)]).await.unwrap();
    let hit = store.query(VectorQuery { vector: vector(100), k: 1, filter: None }).await.unwrap();
    assert_eq!(hit[0].chunk.text, unicode, "{name}: unicode");
    let hit = store.query(VectorQuery { vector: vector(101), k: 1, filter: None }).await.unwrap();
    assert_eq!(hit[0].chunk.text.len(), long.len(), "{name}: long text");

    let desc = store.describe().await.unwrap();
    assert_eq!(desc.dimension, Some(DIM));
    assert_eq!(desc.distance, Distance::Cosine);
    assert_eq!(desc.count, store.count().await.unwrap());

    // Persistence across reopen.
    let before = store.count().await.unwrap();
    drop(store);
    if persists {
        let reopened = factory(coll.clone(), false).await.unwrap();
        assert_eq!(reopened.count().await.unwrap(), before, "{name}: persisted across reopen");
        drop(reopened);
    }

    // An unknown collection is NotFound when creation is off.
    let err = factory(format!("missing-{coll}"), false).await.map(|_| ()).unwrap_err();
    assert!(matches!(err, RagError::NotFound { .. }), "{name}: {err}");

    // 10,000 vectors in batches.
    let big = factory(format!("big-{coll}"), true).await.unwrap();
    let many: Vec<EmbeddedChunk> = (0..10_000).map(|i| chunk(i, "x")).collect();
    big.upsert(many).await.unwrap();
    assert_eq!(big.count().await.unwrap(), 10_000, "{name}: 10,000 vectors");
    let hits = big.query(VectorQuery { vector: vector(5), k: 10, filter: Some(Filter::eq("lang", "de")) }).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.chunk.metadata.get("lang") == Some(&MetadataValue::Str("de".into()))));
}

#[cfg(feature = "chroma")]
mod chroma {
    use super::*;
    use rag::chroma::{ChromaMode, ChromaStore};

    fn factory(mode: ChromaMode) -> Factory {
        Arc::new(move |name, create| {
            let mode = mode.clone();
            Box::pin(async move {
                let s = ChromaStore::builder(mode).collection(name).dimension(DIM).create_if_missing(create).build().await?;
                Ok(Arc::new(s) as Arc<dyn VectorStore>)
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chroma_embedded_conformance() {
        let dir = tempfile::tempdir().unwrap();
        run_conformance("chroma-embedded", factory(ChromaMode::Persistent(dir.path().to_owned())), true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chroma_server_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let port = rag::python::testing::free_port().unwrap();
        let chroma = rag::python::testing::venv_bin().unwrap().join("chroma");
        let args: Vec<String> =
            ["run", "--path", &dir.path().display().to_string(), "--host", "127.0.0.1", "--port", &port.to_string()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let mut server = rag::python::testing::spawn_listening(&chroma, &args, port, std::time::Duration::from_secs(60)).unwrap();
        let mode = ChromaMode::Http { host: "127.0.0.1".into(), port, ssl: false, headers: Default::default() };
        run_conformance("chroma-server", factory(mode.clone()), true).await;
        // Server down: a transient error, not a panic.
        server.stop();
        let err = ChromaStore::builder(mode).collection("after-stop").build().await.unwrap_err();
        assert!(matches!(err, RagError::Transient { .. } | RagError::Python { .. }), "{err}");
    }

    /// A stock Python chromadb client, in another process, reads what ChromaStore wrote: the same
    /// ids, documents and typed metadata, and the same top-k for the same query vector.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stock_python_client_reads_the_same_collection() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChromaStore::builder(ChromaMode::Persistent(dir.path().to_owned()))
            .collection("shared")
            .dimension(DIM)
            .build()
            .await
            .unwrap();
        let mut chunks: Vec<EmbeddedChunk> = (0..30).map(|i| chunk(i, &format!("document text {i} é"))).collect();
        chunks[3].chunk.metadata.insert("tags".into(), MetadataValue::StrList(vec!["a".into(), "b".into()]));
        store.upsert(chunks).await.unwrap();
        let rust_top: Vec<String> = store
            .query(VectorQuery { vector: vector(11), k: 5, filter: None })
            .await
            .unwrap()
            .iter()
            .map(|h| h.chunk.id.clone())
            .collect();
        let probe = serde_json::to_string(&vector(11)).unwrap();
        let script = format!(
            r#"
import json, chromadb
c = chromadb.PersistentClient(path={path:?}).get_collection("shared")
got = c.get(ids=["c3", "c4"], include=["documents", "metadatas"])
q = c.query(query_embeddings=[{probe}], n_results=5)
print(json.dumps({{"ids": got["ids"], "docs": got["documents"], "metas": got["metadatas"], "top": q["ids"][0], "count": c.count(),
  "types": {{k: type(v).__name__ for k, v in got["metadatas"][0].items()}}}}))
"#,
            path = dir.path().display().to_string()
        );
        let python = rag::python::testing::venv_bin().unwrap().join("python");
        let out = std::process::Command::new(python).arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value =
            serde_json::from_slice(out.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap()).unwrap();
        assert_eq!(v["count"], 30);
        assert_eq!(v["ids"], serde_json::json!(["c3", "c4"]));
        assert_eq!(v["docs"][0], "document text 3 é");
        assert_eq!(v["metas"][0]["year"], 2015 + 3);
        assert_eq!(v["metas"][0]["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(v["metas"][0]["doc_id"], "doc0");
        assert_eq!(v["types"]["year"], "int", "numbers stay numbers");
        assert_eq!(v["types"]["score"], "float");
        assert_eq!(v["types"]["ok"], "bool");
        assert_eq!(v["types"]["lang"], "str");
        let py_top: Vec<String> = serde_json::from_value(v["top"].clone()).unwrap();
        assert_eq!(py_top, rust_top, "same top-k for the same query vector");
    }

    #[tokio::test]
    async fn reopening_with_another_distance_or_dimension_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mode = ChromaMode::Persistent(dir.path().to_owned());
        ChromaStore::builder(mode.clone()).collection("dist").dimension(4).build().await.unwrap();
        let err = ChromaStore::builder(mode.clone()).collection("dist").distance(Distance::L2).build().await.unwrap_err();
        assert!(matches!(err, RagError::Config { .. }) && err.to_string().contains("cosine"), "{err}");
        let err = ChromaStore::builder(mode.clone()).collection("dist").dimension(5).build().await.unwrap_err();
        assert!(matches!(err, RagError::DimensionMismatch { expected: 4, actual: 5, .. }), "{err}");
        let err = ChromaStore::builder(mode).collection("x").build().await.unwrap_err();
        assert!(matches!(err, RagError::InvalidInput { .. }), "a 1-character name: {err}");
    }
}

#[cfg(feature = "qdrant")]
mod qdrant {
    use super::*;
    use rag::qdrant::{QdrantMode, QdrantStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qdrant_local_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let factory: Factory = Arc::new(move |name, create| {
            let path = path.clone();
            Box::pin(async move {
                let s = QdrantStore::builder(QdrantMode::Local(path))
                    .collection(name)
                    .dimension(DIM)
                    .create_if_missing(create)
                    .build()
                    .await?;
                Ok(Arc::new(s) as Arc<dyn VectorStore>)
            })
        });
        run_conformance("qdrant-local", factory, true).await;
    }
}

#[cfg(feature = "pinecone")]
mod pinecone {
    use super::*;
    use rag::pinecone::{PineconeIndex, PineconeStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pinecone_local_server_conformance() {
        let server = Arc::new(rag::python::testing::spawn_python_server("fake_pinecone.py", &["--max-seconds", "600"]).unwrap());
        let s2 = server.clone();
        let factory: Factory = Arc::new(move |name, create| {
            let url = s2.url();
            Box::pin(async move {
                let s = PineconeStore::builder(PineconeIndex::Name(name))
                    .api_key("test-key")
                    .control_host(url)
                    .namespace("conformance")
                    .dimension(DIM)
                    .create_if_missing(create)
                    .build()
                    .await?;
                Ok(Arc::new(s) as Arc<dyn VectorStore>)
            })
        });
        // The local server keeps data in memory: it persists while it runs, which reopen checks.
        run_conformance("pinecone", factory, true).await;
        let stats = rag::python::testing::http_get_json(&format!("{}/stats", server.url())).unwrap();
        assert!(stats["max_vectors_per_request"].as_u64().unwrap() <= 1000, "{stats}");
        assert!(stats["max_bytes_per_request"].as_u64().unwrap() <= 2 * 1024 * 1024, "{stats}");
        // A bad key is a permanent error.
        let err = PineconeStore::builder(PineconeIndex::Name("any".into()))
            .api_key("bad-key")
            .control_host(server.url())
            .build()
            .await
            .unwrap_err();
        assert!(!matches!(err, RagError::Transient { .. }), "{err}");
    }
}
