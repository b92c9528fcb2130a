//! Real embedders: the bundled MiniLM through sentence-transformers, OpenAI against a local
//! compatible server (with 429/500 retries), and the Redis cache against a real redis-server.
//! Needs `make setup` and redis-server (the test command starts everything; these fail, never
//! skip, when something is missing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use rag_core::{Embedder, RagError};
use rag_embed::{CacheStats, CachedEmbedder, LocalCache, OpenAIEmbedder, OverlongInput, RedisCache, SentenceTransformerEmbedder};
use rag_testkit::{ServerProcess, free_port, http_get_json, http_post_json, spawn_python_server, spawn_redis};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[tokio::test]
async fn minilm_embeds_offline_deterministically_and_semantically() {
    let e = SentenceTransformerEmbedder::builder().batch_size(8).build().await.unwrap();
    assert_eq!(e.dimension(), 384);
    assert!(e.model_id().starts_with("sentence-transformers/model@"), "{}", e.model_id());
    let texts = vec![
        "A man is playing a guitar on stage.".to_owned(),
        "Someone performs music with a guitar.".to_owned(),
        "The stock market fell sharply on Monday.".to_owned(),
        "A man is playing a guitar on stage.".to_owned(),
    ];
    let v = e.embed(texts).await.unwrap();
    assert_eq!(v.len(), 4);
    assert!(v.iter().all(|x| x.len() == 384));
    assert_eq!(v[0], v[3], "same text, same vector");
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
    let similar = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(similar > unrelated + 0.3, "similar {similar} vs unrelated {unrelated}");
    // Input order is kept across batches.
    let many: Vec<String> = (0..20).map(|i| format!("sentence number {i}")).collect();
    let batched = e.embed(many.clone()).await.unwrap();
    let single = e.embed(vec![many[13].clone()]).await.unwrap();
    assert!(cosine(&batched[13], &single[0]) > 0.9999);
    // A model directory that does not exist is a clear error.
    let err = SentenceTransformerEmbedder::builder().model("/nonexistent/model").build().await.unwrap_err();
    assert!(matches!(err, RagError::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_minilm_calls_do_not_serialise_on_our_side() {
    let e = Arc::new(SentenceTransformerEmbedder::builder().build().await.unwrap());
    let texts: Vec<String> = (0..16).map(|i| format!("concurrent text {i}")).collect();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            let t = texts.clone();
            tokio::spawn(async move { e.embed(t).await })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().len(), 16);
    }
}

async fn control(server: &ServerProcess, body: serde_json::Value) {
    let url = format!("{}/control", server.url());
    tokio::task::spawn_blocking(move || http_post_json(&url, &body)).await.unwrap().unwrap();
}

fn get(url: &str) -> serde_json::Value {
    http_get_json(url).unwrap()
}

#[tokio::test]
async fn openai_against_a_local_server_with_retries_limits_and_permanent_errors() {
    let server = spawn_python_server("fake_openai.py", &["--max-seconds", "300"]).unwrap();
    let base = format!("{}/v1", server.url());
    let e = OpenAIEmbedder::builder()
        .base_url(&base)
        .api_key("test-key")
        .model("fake-embedding")
        .dimensions(16)
        .max_inputs_per_request(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    assert_eq!(e.dimension(), 16);
    let texts: Vec<String> = (0..7).map(|i| format!("text {i}")).collect();
    let v = e.embed(texts.clone()).await.unwrap();
    assert_eq!(v.len(), 7);
    assert!(v.iter().all(|x| x.len() == 16));
    let stats = get(&format!("{}/stats", server.url()));
    assert_eq!(stats["inputs"], serde_json::json!([3, 3, 1]), "split at 3 inputs a request");
    // 429 then 500: retried, then succeeds with the same vectors.
    control(&server, serde_json::json!({"fail": [429, 500]})).await;
    let again = e.embed(texts[..2].to_vec()).await.unwrap();
    assert_eq!(again[..], v[..2]);
    let stats = get(&format!("{}/stats", server.url()));
    assert_eq!(stats["requests"]["failed"], 2);
    // More failures than retries: a transient error comes back.
    let few = OpenAIEmbedder::builder()
        .base_url(&base)
        .api_key("k")
        .model("fake-embedding")
        .dimensions(16)
        .max_retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .await
        .unwrap();
    control(&server, serde_json::json!({"fail": [500, 500, 500]})).await;
    let err = few.embed(vec!["x".into()]).await.unwrap_err();
    assert!(matches!(err, RagError::Transient { .. }), "{err}");
    control(&server, serde_json::json!({"fail": []})).await;
    let _ = few.embed(vec!["drain".into()]).await;
    // A bad key is permanent and not retried.
    let bad = OpenAIEmbedder::builder()
        .base_url(&base)
        .api_key("bad-key")
        .model("fake-embedding")
        .dimensions(16)
        .build()
        .await
        .unwrap();
    let before = get(&format!("{}/stats", server.url()))["requests"]["embeddings"].as_u64().unwrap();
    let err = bad.embed(vec!["x".into()]).await.unwrap_err();
    assert!(matches!(&err, RagError::Permanent { message, .. } if message.contains("AuthenticationError")), "{err}");
    assert!(!format!("{err} {bad:?}").contains("bad-key"), "the key is never printed");
    let after = get(&format!("{}/stats", server.url()))["requests"]["embeddings"].as_u64().unwrap();
    assert_eq!(before, after);
    // Token limits: split averages pieces, error refuses, truncate keeps the prefix.
    let long = "word ".repeat(50);
    let split = OpenAIEmbedder::builder()
        .base_url(&base)
        .api_key("k")
        .model("fake-embedding")
        .dimensions(16)
        .max_tokens_per_input(20)
        .overlong(OverlongInput::Split)
        .build()
        .await
        .unwrap();
    let sv = split.embed(vec![long.clone()]).await.unwrap();
    assert!((sv[0].iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-4);
    let strict = OpenAIEmbedder::builder()
        .base_url(&base)
        .api_key("k")
        .model("fake-embedding")
        .dimensions(16)
        .max_tokens_per_input(20)
        .overlong(OverlongInput::Error)
        .build()
        .await
        .unwrap();
    let err = strict.embed(vec!["ok".into(), long]).await.unwrap_err();
    assert!(matches!(&err, RagError::InvalidInput { input, .. } if input.contains("#1")), "{err}");
}

fn redis_server() -> ServerProcess {
    spawn_redis(free_port().unwrap()).unwrap()
}

fn counting_mock() -> rag_core::mocks::MockEmbedder {
    let mut m = rag_core::mocks::MockEmbedder::new();
    m.expect_model_id().return_const("mock".to_owned());
    m.expect_dimension().return_const(3usize);
    m.expect_embed().returning(|t| Ok(t.iter().map(|s| vec![s.len() as f32, 0.5, -1.0]).collect()));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_counts_exactly_and_survives_redis_dying() {
    let mut server = redis_server();
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let cache = RedisCache::new(&url, Some(Duration::from_secs(3600))).unwrap();
    let e = CachedEmbedder::new(counting_mock(), Arc::new(cache));
    let batch: Vec<String> = ["a", "bb", "a", "ccc", "bb"].iter().map(|s| s.to_string()).collect();
    let first = e.embed(batch.clone()).await.unwrap();
    assert_eq!(e.stats(), CacheStats { hits: 0, misses: 5, embedded: 3, errors: 0 });
    let second = e.embed(batch.clone()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(e.stats(), CacheStats { hits: 5, misses: 5, embedded: 3, errors: 0 });
    // Kill Redis mid-test: embedding keeps working, uncached, and says so once.
    server.stop();
    let during = e.embed(vec!["a".into(), "dddd".into()]).await.unwrap();
    assert_eq!(during[1], vec![4.0, 0.5, -1.0]);
    assert!(e.is_degraded());
    let s = e.stats();
    assert!(s.errors >= 1 && s.embedded == 5, "{s:?}");
    // Redis comes back on the same port: the cache heals by itself.
    let port = server.port;
    let _server2 = spawn_redis(port).unwrap();
    let mut healed = false;
    for _ in 0..50 {
        e.embed(vec!["eeeee".into()]).await.unwrap();
        if !e.is_degraded() {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healed, "the cache is used again once Redis answers");
    let before = e.stats();
    e.embed(vec!["eeeee".into()]).await.unwrap();
    assert_eq!(e.stats().hits, before.hits + 1, "written after healing, read back from the new Redis");
}

#[tokio::test]
async fn local_cache_makes_reembedding_free() {
    let dir = tempfile::tempdir().unwrap();
    let st = SentenceTransformerEmbedder::builder().build().await.unwrap();
    let e = CachedEmbedder::new(st, Arc::new(LocalCache::open(dir.path().join("emb.redb")).unwrap()));
    let texts: Vec<String> = (0..10).map(|i| format!("cached sentence {i}")).collect();
    let a = e.embed(texts.clone()).await.unwrap();
    let b = e.embed(texts).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(e.stats(), CacheStats { hits: 10, misses: 10, embedded: 10, errors: 0 });
}
