//! `store.index = engine` against a real Qdrant server (`../shared/bin/qdrant`, started here):
//! BM25 as sparse vectors with IDF kept by Qdrant, hybrid fusion in one `query_points` (RRF and
//! DBSF; convex in Rust over the engine's two lists), filters inside both prefetches, and the
//! collection as the ingest record (unchanged / changed / removed decided by asking the store,
//! a half-finished write repaired, two pipelines ingesting at once ending as one). Nothing is
//! written to the data directory. Needs `make setup` (MiniLM); fails, never skips, without it.
#![cfg(all(feature = "qdrant", feature = "sentence-transformers"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;

use rag::assemble::{Needs, build_pipeline};
use rag::config::{CacheBackend, Fusion, IndexPlacement, RagConfig, RetrievalMode, StoreBackend};
use rag::qdrant::QdrantClient;
use rag::{Document, Filter, IngestOptions, QueryOptions, RagPipeline};
use rag_core::{EmbeddedChunk, MetadataValue, ledger_keys};

/// The first `n` SciFact abstracts as documents, tagged `half = a|b` alternately.
fn scifact(n: usize) -> Vec<Document> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets/scifact/corpus.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take(n)
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = format!("{}\n\n{}", v["title"].as_str().unwrap(), v["text"].as_str().unwrap());
            let mut d = Document::new(v["_id"].as_str().unwrap(), text);
            d.metadata.insert("half".into(), MetadataValue::Str(if i % 2 == 0 { "a" } else { "b" }.into()));
            d.metadata.insert("title".into(), MetadataValue::Str(v["title"].as_str().unwrap().into()));
            d
        })
        .collect()
}

fn config(data: &std::path::Path, node: &rag_testkit::QdrantNode, collection: &str) -> RagConfig {
    let mut cfg = RagConfig { data_dir: data.to_owned(), collection: collection.into(), ..RagConfig::default() };
    cfg.store.backend = StoreBackend::Qdrant;
    cfg.store.qdrant.mode = QdrantClient::Server;
    cfg.store.qdrant.url = Some(node.url());
    cfg.store.qdrant.grpc_port = node.grpc_port;
    cfg.store.index = IndexPlacement::Engine;
    cfg.cache.backend = CacheBackend::None;
    cfg
}

/// Every stored chunk as (id, document hash, text): the state two ingests are compared by.
async fn state(p: &RagPipeline) -> BTreeSet<(String, String, String)> {
    p.keyword_index()
        .scan()
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let hash = c.metadata.get(ledger_keys::HASH).and_then(MetadataValue::as_str).unwrap_or("-").to_owned();
            (c.id, hash, c.text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_and_the_ingest_record_live_in_qdrant() {
    let dir = tempfile::tempdir().unwrap();
    let node = rag_testkit::spawn_qdrant(&dir.path().join("qdrant")).unwrap();
    let data = dir.path().join("data");
    let cfg = config(&data, &node, "engine");
    let docs = scifact(30);
    let p = build_pipeline(&cfg, Needs::All).await.unwrap();
    let report = p.ingest(docs.clone(), IngestOptions::default()).await.unwrap();
    assert_eq!(report.documents, 30);
    assert!(report.chunks >= 30, "{report:?}");
    assert!(!data.join("collections").exists(), "nothing of the collection is kept on local disk");
    let stats = p.stats().await.unwrap();
    assert_eq!(stats.documents, 30, "documents are counted from the store's records");
    assert_eq!(stats.chunks as u64, report.chunks);
    assert_eq!(stats.store.as_ref().unwrap().details["sparse_bm25"], "true", "{stats:?}");

    // BM25 from Qdrant's sparse index: a document's own title finds it first.
    for d in docs.iter().take(5) {
        let title = d.metadata["title"].as_str().unwrap();
        let hits = p.retrieve(title, &QueryOptions::new().k(3).mode(RetrievalMode::Bm25)).await.unwrap().hits;
        assert_eq!(
            hits[0].chunk.doc_id,
            d.id,
            "bm25 for the title `{title}`: {:?}",
            hits.iter().map(|h| &h.chunk.doc_id).collect::<Vec<_>>()
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }

    // Hybrid: RRF and DBSF run inside Qdrant (one request), convex in Rust over its two lists.
    let question = docs[4].metadata["title"].as_str().unwrap();
    for (fusion, stage) in
        [(Fusion::Rrf, "engine_hybrid_search"), (Fusion::Dbsf, "engine_hybrid_search"), (Fusion::Convex, "keyword_search")]
    {
        let mut c = cfg.clone();
        c.retrieval.fusion = fusion;
        let p = build_pipeline(&c, Needs::All).await.unwrap();
        let r = p.retrieve(question, &QueryOptions::new().k(5)).await.unwrap();
        assert_eq!(r.hits.len(), 5, "{fusion}");
        assert_eq!(r.hits[0].chunk.doc_id, docs[4].id, "{fusion}: the titled document first");
        assert!(r.timings.contains_key(stage), "{fusion}: {:?}", r.timings);
        if fusion == Fusion::Rrf {
            // Qdrant's RRF with k = 60 counts ranks from 0: first in both lists gives 2/60, and
            // a fused score above 1/60 means the chunk is in both lists.
            assert!(r.hits[0].score <= 2.0 / 60.0 + 1e-6 && r.hits[0].score > 1.0 / 60.0, "{}", r.hits[0].score);
        }
        // The filter is applied inside both prefetches: every hit is from half b.
        let only_b = QueryOptions::new().k(8).filter(Filter::eq("half", "b"));
        for mode in [RetrievalMode::Hybrid, RetrievalMode::Bm25] {
            let hits = p.retrieve(question, &only_b.clone().mode(mode)).await.unwrap().hits;
            assert_eq!(hits.len(), 8, "{fusion} {mode}");
            assert!(hits.iter().all(|h| h.chunk.metadata["half"].as_str() == Some("b")), "{fusion} {mode}");
        }
    }

    // The ingest record is the store: a new pipeline (a new process, another worker) sees
    // every document unchanged without any local manifest.
    drop(p);
    let p = build_pipeline(&cfg, Needs::All).await.unwrap();
    let again = p.ingest(docs.clone(), IngestOptions::default()).await.unwrap();
    assert_eq!((again.unchanged, again.chunks), (30, 0), "{again:?}");

    // Changed and removed: one document edited, one gone (pruned).
    let mut edited = docs.clone();
    edited[0].text.push_str("\n\nAn added sentence about tensor imaging.");
    let gone = edited.remove(1);
    let r = p.ingest(edited.clone(), IngestOptions::default().prune(true)).await.unwrap();
    assert_eq!((r.unchanged, r.removed), (28, 1), "{r:?}");
    assert!(r.chunks >= 1);
    let hits = p
        .retrieve(gone.metadata["title"].as_str().unwrap(), &QueryOptions::new().k(5).mode(RetrievalMode::Bm25))
        .await
        .unwrap()
        .hits;
    assert!(hits.iter().all(|h| h.chunk.doc_id != gone.id), "a pruned document is gone from the engine's BM25");
    assert_eq!(p.stats().await.unwrap().documents, 29);

    // A write cut short: a stale chunk of document 2 under an older hash (as a crash between
    // upserting new chunks and deleting stale ones leaves it). The store's record shows the
    // disagreement, so the next ingest redoes the document and deletes the stale chunk.
    let clean = state(&p).await;
    let store = p.vector_store().unwrap().clone();
    let mut stale = rag_core::Chunk::new(format!("{}#99", docs[2].id), docs[2].id.clone(), "stale text");
    stale.metadata.insert(ledger_keys::HASH.into(), MetadataValue::Str("an-older-hash".into()));
    stale.metadata.insert(ledger_keys::CHUNKS.into(), MetadataValue::Int(1));
    stale.metadata.insert(ledger_keys::ROOT.into(), MetadataValue::Str(rag_core::MEMORY_ORIGIN.into()));
    let mut v = vec![0.0f32; 384];
    v[0] = 1.0;
    store.upsert(vec![EmbeddedChunk { chunk: stale, embedding: v }]).await.unwrap();
    assert_ne!(state(&p).await, clean);
    let r = p.ingest(edited.clone(), IngestOptions::default()).await.unwrap();
    assert_eq!(r.unchanged, 28, "only the half-written document is redone: {r:?}");
    assert_eq!(state(&p).await, clean, "the repair leaves exactly the clean state");

    // Two pipelines ingesting the same corpus into a new collection at once end in the same
    // state as one clean ingest.
    let both = config(&data, &node, "engine-twice");
    let (a, b) = (build_pipeline(&both, Needs::All).await.unwrap(), build_pipeline(&both, Needs::All).await.unwrap());
    let (ra, rb) =
        tokio::join!(a.ingest(edited.clone(), IngestOptions::default()), b.ingest(edited.clone(), IngestOptions::default()));
    ra.unwrap();
    rb.unwrap();
    let once = config(&data, &node, "engine-once");
    let single = build_pipeline(&once, Needs::All).await.unwrap();
    single.ingest(edited, IngestOptions::default()).await.unwrap();
    assert_eq!(state(&a).await, state(&single).await);
    assert_eq!(state(&a).await, clean);
}
