//! The settings for size reach a real Qdrant server (`../shared/bin/qdrant`, started here): a
//! new collection's quantization (int8, binary), vectors and HNSW graph on disk, HNSW `m` and
//! `ef_construct`, the indexing threshold and the tenant index are read back from the
//! collection's info; with rescoring on, quantized search returns the exact cosine scores, and
//! with it off the quantized ones. Local mode refuses them by name. No model: vectors are made
//! here. Needs `make setup` (the Qdrant binary, the venv); fails, never skips, without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rag_core::{Chunk, Distance, EmbeddedChunk, StoreContext, VectorQuery, VectorStore};
use rag_vector_qdrant::{QdrantClient, QdrantQuantization, QdrantSettings, QdrantStore};
use serde_json::Value;

const DIM: usize = 32;
const POINTS: usize = 600;

/// Deterministic unit vectors (a small LCG: no rand dependency).
fn vectors() -> Vec<Vec<f32>> {
    let mut state = 42u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    (0..POINTS)
        .map(|_| {
            let v: Vec<f32> = (0..DIM).map(|_| next()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect()
        })
        .collect()
}

fn settings(node: &rag_testkit::QdrantNode) -> QdrantSettings {
    QdrantSettings {
        mode: QdrantClient::Server,
        url: Some(node.url()),
        grpc_port: node.grpc_port,
        hnsw_m: 8,
        hnsw_ef_construct: 32,
        on_disk: Some(true),
        hnsw_on_disk: true,
        indexing_threshold_kb: Some(1),
        tenant_keys: vec!["tenant".into()],
        ..QdrantSettings::default()
    }
}

fn ctx(dir: &std::path::Path, collection: &str) -> StoreContext {
    StoreContext { collection: collection.into(), dir: dir.to_owned(), distance: Distance::Cosine, dimension: DIM }
}

fn info(node: &rag_testkit::QdrantNode, collection: &str) -> Value {
    let (status, body) = rag_testkit::http_request("GET", &format!("{}/collections/{collection}", node.url()), None).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["result"].clone()
}

/// Fills `collection` and waits until Qdrant has indexed (and quantized) every vector.
async fn fill(store: &QdrantStore, node: &rag_testkit::QdrantNode, collection: &str, vs: &[Vec<f32>]) {
    let chunks = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut c = Chunk::new(format!("d{i}#0"), format!("d{i}"), format!("text {i}"));
            c.metadata.insert("tenant".into(), rag_core::MetadataValue::Str(format!("t{}", i % 10)));
            EmbeddedChunk { chunk: c, embedding: v.clone() }
        })
        .collect();
    store.upsert(chunks).await.unwrap();
    for _ in 0..300 {
        let i = info(node, collection);
        if i["status"] == "green" && i["indexed_vectors_count"].as_u64().unwrap_or(0) >= vs.len() as u64 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("Qdrant never indexed {collection}: {}", info(node, collection));
}

/// The top hit's score for query `q` (near vector `target`), and the exact cosine of that hit.
async fn top(store: &QdrantStore, vs: &[Vec<f32>], target: usize) -> (f32, f32) {
    let q: Vec<f32> = vs[target].iter().zip(&vs[(target + 1) % POINTS]).map(|(a, b)| a + 0.3 * b).collect();
    let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
    let q: Vec<f32> = q.into_iter().map(|x| x / n).collect();
    let hits = store.query(VectorQuery { vector: q.clone(), k: 3, filter: None }).await.unwrap();
    let hit = &hits[0];
    let i: usize = hit.chunk.doc_id.trim_start_matches('d').parse().unwrap();
    let exact: f32 = vs[i].iter().zip(&q).map(|(a, b)| a * b).sum();
    (hit.score, exact)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_for_size_reach_the_collection_and_rescoring_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let node = rag_testkit::spawn_qdrant(&dir.path().join("qdrant")).unwrap();
    let vs = vectors();

    for (collection, quantization) in [("int8", QdrantQuantization::Int8), ("binary", QdrantQuantization::Binary)] {
        let rescored = QdrantSettings { quantization: Some(quantization), ..settings(&node) };
        let store = QdrantStore::from_settings(&rescored, &ctx(dir.path(), collection), None).await.unwrap();
        fill(&store, &node, collection, &vs).await;

        let i = info(&node, collection);
        let c = &i["config"];
        let q = &c["quantization_config"];
        match quantization {
            QdrantQuantization::Int8 => assert_eq!(q["scalar"]["type"], "int8", "{c}"),
            _ => assert!(q["binary"].is_object(), "{c}"),
        }
        assert_eq!((c["hnsw_config"]["m"].as_u64(), c["hnsw_config"]["ef_construct"].as_u64()), (Some(8), Some(32)), "{c}");
        assert_eq!(
            (c["hnsw_config"]["on_disk"].as_bool(), c["params"]["vectors"]["on_disk"].as_bool()),
            (Some(true), Some(true)),
            "{c}"
        );
        assert_eq!(c["optimizer_config"]["indexing_threshold"], 1, "{c}");
        assert_eq!(i["payload_schema"]["tenant"]["params"]["is_tenant"], true, "{i}");
        assert_eq!(i["payload_schema"]["tenant"]["points"], POINTS, "{i}");

        // Rescoring on: the scores are the exact cosines.
        for target in [3, 77, 301] {
            let (score, exact) = top(&store, &vs, target).await;
            assert!((score - exact).abs() < 1e-4, "{collection} rescored: {score} vs exact {exact}");
        }
        // Rescoring off: the quantized scores, which differ from the exact ones.
        let raw = QdrantSettings { rescore: false, oversampling: 1.0, ..rescored.clone() };
        let store = QdrantStore::from_settings(&raw, &ctx(dir.path(), collection), None).await.unwrap();
        let mut off = 0.0f32;
        for target in [3, 77, 301] {
            let (score, exact) = top(&store, &vs, target).await;
            off = off.max((score - exact).abs());
        }
        assert!(off > 1e-3, "{collection} without rescoring returns quantized scores (max difference {off})");
    }

    // A server collection made with the defaults gets the measured default: int8 kept in RAM,
    // the originals on disk, m 16.
    let defaults = QdrantSettings { mode: QdrantClient::Server, url: Some(node.url()), ..QdrantSettings::default() };
    QdrantStore::from_settings(&defaults, &ctx(dir.path(), "defaults"), None).await.unwrap();
    let c = &info(&node, "defaults")["config"];
    assert_eq!(c["quantization_config"]["scalar"]["type"], "int8", "{c}");
    assert_eq!(c["quantization_config"]["scalar"]["always_ram"], true, "{c}");
    assert_eq!((c["hnsw_config"]["m"].as_u64(), c["params"]["vectors"]["on_disk"].as_bool()), (Some(16), Some(true)), "{c}");
    // `quantization = "none"` said out loud: Qdrant's plain collection, vectors in RAM.
    let plain = QdrantSettings { quantization: Some(QdrantQuantization::None), ..defaults };
    QdrantStore::from_settings(&plain, &ctx(dir.path(), "plain"), None).await.unwrap();
    let c = &info(&node, "plain")["config"];
    assert!(c["quantization_config"].is_null(), "{c}");
    assert!(!c["params"]["vectors"]["on_disk"].as_bool().unwrap_or(false), "{c}");
}
