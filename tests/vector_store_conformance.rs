//! One conformance suite (`rag_testkit::conformance`), run against every VectorStore
//! configuration: Chroma embedded (on disk), Chroma server (`chroma run`, started and stopped
//! here), Qdrant local mode, and Pinecone against the local data-plane server in
//! `python/testing/` (no Pinecone emulator exists).
//! Needs `make setup`; fails (never skips) without it.
#![cfg(any(feature = "chroma", feature = "qdrant", feature = "pinecone"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use rag_core::{Distance, EmbeddedChunk, MetadataValue, RagError, VectorQuery, VectorStore};
use rag_testkit::conformance::{DIM, Factory, chunk, run_conformance, vector};

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
        let mut server = rag_testkit::spawn_chroma(dir.path()).unwrap();
        let port = server.port;
        let mode = ChromaMode::Http { host: "127.0.0.1".into(), port, ssl: false, headers: Default::default() };
        run_conformance("chroma-server", factory(mode.clone()), true).await;
        // Server down: a transient error, not a panic.
        server.stop();
        let err = ChromaStore::builder(mode).collection("after-stop").build().await.unwrap_err();
        assert!(matches!(err, RagError::Transient { .. } | RagError::Python { .. }), "{err}");
    }

    /// Concurrent unfiltered candidate queries share `collection.query` calls, and each gets
    /// exactly what it gets alone (same ids, same order, same scores), whatever its `k`; a
    /// filtered query still goes alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_queries_answer_exactly_as_single_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mode = ChromaMode::Persistent(dir.path().to_owned());
        let batched = ChromaStore::builder(mode.clone())
            .collection("batched")
            .dimension(DIM)
            .query_batching(64, std::time::Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        batched.upsert((0..300).map(|i| chunk(i, &format!("text {i}"))).collect()).await.unwrap();
        let single = ChromaStore::builder(mode).collection("batched").dimension(DIM).no_query_batching().build().await.unwrap();
        assert!(single.query_batches().is_none());
        let queries: Vec<VectorQuery> =
            (0..24).map(|i| VectorQuery { vector: vector(i * 7 + 3), k: [5, 20, 100][i % 3], filter: None }).collect();
        let together = futures::future::join_all(queries.iter().map(|q| batched.candidates(q.clone()))).await;
        for (q, got) in queries.iter().zip(together) {
            let got = got.unwrap();
            let alone = single.candidates(q.clone()).await.unwrap();
            assert_eq!(got.len(), q.k);
            let pairs = |c: &[rag_core::Candidate]| c.iter().map(|c| (c.id.clone(), c.score)).collect::<Vec<_>>();
            assert_eq!(pairs(&got), pairs(&alone), "k = {}", q.k);
        }
        let counters = batched.query_batches().unwrap();
        assert_eq!(counters.items(), 24);
        assert!(counters.calls() <= 4, "24 concurrent queries in {} calls", counters.calls());
        // A filter is per call: such a query goes alone, and still answers right.
        let filtered = VectorQuery { vector: vector(3), k: 5, filter: Some(rag_core::Filter::eq("lang", "en")) };
        let (a, b) = (batched.candidates(filtered.clone()).await.unwrap(), single.candidates(filtered).await.unwrap());
        assert_eq!(a.iter().map(|c| &c.id).collect::<Vec<_>>(), b.iter().map(|c| &c.id).collect::<Vec<_>>());
        assert_eq!(counters.items(), 24, "the filtered query was not batched");
        // A query of the wrong dimension is refused before it is queued.
        let err = batched.candidates(VectorQuery { vector: vec![1.0; DIM + 1], k: 5, filter: None }).await.unwrap_err();
        assert!(err.to_string().contains("dimension"), "{err}");
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
        let python = rag_testkit::venv_bin().unwrap().join("python");
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

    fn server_factory(node: &rag_testkit::QdrantNode, prefer_grpc: bool, sparse: bool) -> Factory {
        let mode = QdrantMode::Server { url: node.url(), api_key: None, prefer_grpc, grpc_port: node.grpc_port };
        Arc::new(move |name, create| {
            let mode = mode.clone();
            Box::pin(async move {
                let mut b = QdrantStore::builder(mode).collection(name).dimension(DIM).create_if_missing(create);
                if sparse {
                    b = b.sparse(Arc::new(rag_keyword::Bm25Encoder::new(&Default::default())?));
                }
                Ok(Arc::new(b.build().await?) as Arc<dyn VectorStore>)
            })
        })
    }

    /// A real Qdrant server (`../shared/bin/qdrant`, started here): over REST, and over gRPC with
    /// the BM25 sparse vectors written beside the dense ones (`store.index = engine`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qdrant_server_conformance_rest_and_grpc() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = rag_testkit::spawn_qdrant(dir.path()).unwrap();
        run_conformance("qdrant-server-rest", server_factory(&node, false, false), true).await;
        run_conformance("qdrant-server-grpc-sparse", server_factory(&node, true, true), true).await;
        // Server gone: a transient error naming the collection after the retries, not a panic.
        node.kill();
        let err = match server_factory(&node, false, false)(String::from("after-stop"), true).await {
            Ok(_) => panic!("a stopped server must not open a collection"),
            Err(e) => e,
        };
        assert!(matches!(err, RagError::Transient { .. }), "{err}");
    }
}

#[cfg(feature = "pinecone")]
mod pinecone {
    use super::*;
    use rag::pinecone::{PineconeIndex, PineconeStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pinecone_local_server_conformance() {
        let server = Arc::new(rag_testkit::spawn_python_server("fake_pinecone.py", &["--max-seconds", "600"]).unwrap());
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
        let stats = rag_testkit::http_get_json(&format!("{}/stats", server.url())).unwrap();
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
