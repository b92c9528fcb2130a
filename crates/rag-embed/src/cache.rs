//! The caching decorator and its backends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use rag_core::{Embedder, NamespacedEmbedding, RagError, Result};
use redb::ReadableDatabase;
use sha2::{Digest, Sha256};

/// Where cached vectors live. Implementations may fail; [`CachedEmbedder`] then embeds uncached.
#[async_trait]
pub trait EmbeddingCache: Send + Sync {
    /// One entry per key, `None` for a miss.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<f32>>>>;
    /// Stores entries (overwriting).
    async fn put_many(&self, entries: Vec<(String, Vec<f32>)>) -> Result<()>;
    /// A label for logs and stats (`local:/path`, `redis://host`).
    fn describe(&self) -> String;
}

/// The cache key: SHA-256 of the model id and the text, hex. Stable across builds and machines
/// (unlike `DefaultHasher`).
pub fn cache_key(model_id: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(model_id.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

/// The cache key of a text embedded for `namespace` (a tenant): apart from every other
/// namespace's and from the shared keys of [`cache_key`].
pub fn namespaced_cache_key(namespace: &str, model_id: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"namespace\0");
    h.update((namespace.len() as u64).to_le_bytes());
    h.update(namespace.as_bytes());
    h.update(model_id.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

/// A vector as little-endian f32 bytes (4 bytes a float, no framing).
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`encode_vector`]; `None` if the length is not a multiple of 4.
pub fn decode_vector(b: &[u8]) -> Option<Vec<f32>> {
    b.len().is_multiple_of(4).then(|| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Counters of a [`CachedEmbedder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Inputs served from the cache.
    pub hits: u64,
    /// Inputs not found in the cache.
    pub misses: u64,
    /// Texts actually sent to the inner embedder (misses, de-duplicated within each batch).
    pub embedded: u64,
    /// Cache operations that failed (the batch was embedded uncached).
    pub errors: u64,
}

/// Wraps an embedder; looks every text up in `cache` first and embeds only the misses, each
/// distinct text once per batch. Results keep input order. A failing cache is logged once and
/// bypassed (embedding still succeeds); it is used again as soon as it answers.
pub struct CachedEmbedder<E> {
    inner: E,
    cache: Arc<dyn EmbeddingCache>,
    hits: AtomicU64,
    misses: AtomicU64,
    embedded: AtomicU64,
    errors: AtomicU64,
    degraded: AtomicBool,
}

impl<E: Embedder> std::fmt::Debug for CachedEmbedder<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEmbedder").field("cache", &self.cache.describe()).field("stats", &self.stats()).finish()
    }
}

impl<E: Embedder> CachedEmbedder<E> {
    /// Decorates `inner` with `cache`.
    pub fn new(inner: E, cache: Arc<dyn EmbeddingCache>) -> Self {
        Self {
            inner,
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            embedded: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        }
    }

    /// Hit / miss / embedded / error counters since creation.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            embedded: self.embedded.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// The wrapped embedder.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Whether the last cache operation failed (the cache is being bypassed).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn cache_failed(&self, op: &str, e: &RagError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(cache = %self.cache.describe(), error = %e, "embedding cache {op} failed: embedding uncached until it answers again");
        }
    }

    fn cache_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(cache = %self.cache.describe(), "embedding cache answers again");
        }
    }
}

impl<E: Embedder> CachedEmbedder<E> {
    /// Embeds `texts` through the cache under `key_of(text)`; returns the vectors and how many
    /// were cache hits.
    async fn embed_keyed(&self, texts: Vec<String>, key_of: impl Fn(&str) -> String) -> Result<(Vec<Vec<f32>>, usize)> {
        let dim = self.inner.dimension();
        let keys: Vec<String> = texts.iter().map(|t| key_of(t)).collect();
        let cached = match self.cache.get_many(&keys).await {
            Ok(c) if c.len() == keys.len() => {
                self.cache_ok();
                c
            }
            Ok(_) => {
                self.cache_failed("read", &RagError::internal("the cache returned the wrong number of entries"));
                vec![None; keys.len()]
            }
            Err(e) => {
                self.cache_failed("read", &e);
                vec![None; keys.len()]
            }
        };
        let mut out: Vec<Option<Vec<f32>>> = cached.into_iter().map(|v| v.filter(|v| v.len() == dim)).collect();
        let hits = out.iter().filter(|v| v.is_some()).count();
        self.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.misses.fetch_add((texts.len() - hits) as u64, Ordering::Relaxed);
        // Distinct missing texts, in first-seen order.
        let mut first_index: HashMap<&str, usize> = HashMap::new();
        let mut to_embed: Vec<String> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if out[i].is_none() && !first_index.contains_key(t.as_str()) {
                first_index.insert(t, to_embed.len());
                to_embed.push(t.clone());
            }
        }
        if !to_embed.is_empty() {
            let n = to_embed.len();
            let vectors = self.inner.embed(to_embed).await?;
            if vectors.len() != n {
                return Err(RagError::permanent("embedder", format!("returned {} vectors for {n} texts", vectors.len())));
            }
            self.embedded.fetch_add(n as u64, Ordering::Relaxed);
            for (i, t) in texts.iter().enumerate() {
                if out[i].is_none()
                    && let Some(&j) = first_index.get(t.as_str())
                {
                    out[i] = Some(vectors[j].clone());
                }
            }
            let entries: Vec<(String, Vec<f32>)> = first_index.iter().map(|(t, &j)| (key_of(t), vectors[j].clone())).collect();
            match self.cache.put_many(entries).await {
                Ok(()) => self.cache_ok(),
                Err(e) => self.cache_failed("write", &e),
            }
        }
        let vectors = out
            .into_iter()
            .map(|v| v.ok_or_else(|| RagError::internal("a cached embedding went missing")))
            .collect::<Result<_>>()?;
        Ok((vectors, hits))
    }
}

#[async_trait]
impl<E: Embedder> Embedder for CachedEmbedder<E> {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let model_id = self.inner.model_id();
        Ok(self.embed_keyed(texts, |t| cache_key(&model_id, t)).await?.0)
    }

    /// Looks texts up, and stores them, only under `namespace`'s keys
    /// ([`namespaced_cache_key`]): a tenant's hits are its own.
    async fn embed_in(&self, namespace: &str, texts: Vec<String>) -> Result<NamespacedEmbedding> {
        let model_id = self.inner.model_id();
        let (vectors, cache_hits) = self.embed_keyed(texts, |t| namespaced_cache_key(namespace, &model_id, t)).await?;
        Ok(NamespacedEmbedding { vectors, cache_hits })
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn model_id(&self) -> String {
        self.inner.model_id()
    }

    fn max_input_tokens(&self) -> Option<usize> {
        self.inner.max_input_tokens()
    }
}

const TABLE: redb::TableDefinition<'static, &str, &[u8]> = redb::TableDefinition::new("embeddings");

/// An on-disk cache (redb) under the data directory: re-ingesting unchanged text computes
/// nothing, with no server running.
#[derive(Clone)]
pub struct LocalCache {
    db: Arc<redb::Database>,
    path: PathBuf,
}

impl LocalCache {
    /// Opens or creates the cache file at `path` (parent directories are created).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RagError::io(parent, e))?;
        }
        let db = redb::Database::create(&path).map_err(|e| {
            RagError::permanent(
                "local embedding cache",
                format!("cannot open {}: {e} (is another `rag` process using it?)", path.display()),
            )
        })?;
        Ok(Self { db: Arc::new(db), path })
    }

    /// Number of cached vectors.
    pub fn len(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let tx = self.db.begin_read().map_err(local_err)?;
        match tx.open_table(TABLE) {
            Ok(t) => t.len().map_err(local_err),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(local_err(e)),
        }
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

fn local_err(e: impl std::fmt::Display) -> RagError {
    RagError::permanent("local embedding cache", e.to_string())
}

#[async_trait]
impl EmbeddingCache for LocalCache {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<f32>>>> {
        let db = self.db.clone();
        let keys = keys.to_vec();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(local_err)?;
            let table = match tx.open_table(TABLE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
                Err(e) => return Err(local_err(e)),
            };
            keys.iter().map(|k| Ok(table.get(k.as_str()).map_err(local_err)?.and_then(|v| decode_vector(v.value())))).collect()
        })
        .await
        .map_err(|e| RagError::internal_from("a cache task failed", e))?
    }

    async fn put_many(&self, entries: Vec<(String, Vec<f32>)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(local_err)?;
            {
                let mut table = tx.open_table(TABLE).map_err(local_err)?;
                for (k, v) in &entries {
                    table.insert(k.as_str(), encode_vector(v).as_slice()).map_err(local_err)?;
                }
            }
            tx.commit().map_err(local_err)
        })
        .await
        .map_err(|e| RagError::internal_from("a cache task failed", e))?
    }

    fn describe(&self) -> String {
        format!("local:{}", self.path.display())
    }
}

#[cfg(feature = "redis-cache")]
pub use redis_cache::RedisCache;

#[cfg(feature = "redis-cache")]
mod redis_cache {
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};

    use super::*;

    /// A Redis cache: one `MGET` per batch read, one pipeline of `SET ... EX` per batch write.
    /// The connection is lazy and reconnects by itself, so a Redis that goes away and comes
    /// back heals without intervention.
    #[derive(Clone)]
    pub struct RedisCache {
        conn: ConnectionManager,
        url: String,
        prefix: String,
        ttl: Option<Duration>,
    }

    impl RedisCache {
        /// Connects lazily to `url` (`redis://127.0.0.1:6379/0`). `ttl` of `None` keeps entries forever.
        /// Must be called inside a tokio runtime.
        pub fn new(url: &str, ttl: Option<Duration>) -> Result<Self> {
            let client = redis::Client::open(url)
                .map_err(|e| RagError::config(format!("invalid Redis URL `{url}`: {e} (use redis://host:port/db)")))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            let conn = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| RagError::config(format!("Redis connection manager for `{url}`: {e}")))?;
            Ok(Self { conn, url: url.to_owned(), prefix: "rag:emb:".into(), ttl })
        }

        /// Key prefix (default `rag:emb:`).
        pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
            self.prefix = prefix.into();
            self
        }
    }

    fn redis_err(e: redis::RedisError) -> RagError {
        RagError::transient("redis", e.to_string())
    }

    #[async_trait]
    impl EmbeddingCache for RedisCache {
        async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<f32>>>> {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = self.conn.clone();
            let full: Vec<String> = keys.iter().map(|k| format!("{}{k}", self.prefix)).collect();
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&full).query_async(&mut conn).await.map_err(redis_err)?;
            Ok(values.into_iter().map(|v| v.and_then(|b| decode_vector(&b))).collect())
        }

        async fn put_many(&self, entries: Vec<(String, Vec<f32>)>) -> Result<()> {
            if entries.is_empty() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            for (k, v) in &entries {
                let cmd = pipe.cmd("SET").arg(format!("{}{k}", self.prefix)).arg(encode_vector(v));
                if let Some(ttl) = self.ttl {
                    cmd.arg("EX").arg(ttl.as_secs().max(1));
                }
                cmd.ignore();
            }
            pipe.query_async::<()>(&mut conn).await.map_err(redis_err)
        }

        fn describe(&self) -> String {
            self.url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::mocks::MockEmbedder;

    fn mock() -> MockEmbedder {
        let mut m = MockEmbedder::new();
        m.expect_model_id().return_const("mock-v1".to_owned());
        m.expect_dimension().return_const(2usize);
        m.expect_embed().returning(|texts| Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect()));
        m
    }

    #[tokio::test]
    async fn counts_are_exact_over_a_batch_with_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(LocalCache::open(dir.path().join("c.redb")).unwrap());
        let e = CachedEmbedder::new(mock(), cache.clone());
        let v = e.embed(vec!["a".into(), "bb".into(), "a".into()]).await.unwrap();
        assert_eq!(v, vec![vec![1.0, 1.0], vec![2.0, 1.0], vec![1.0, 1.0]]);
        assert_eq!(e.stats(), CacheStats { hits: 0, misses: 3, embedded: 2, errors: 0 });
        assert_eq!(cache.len().unwrap(), 2);
        let v = e.embed(vec!["bb".into(), "ccc".into(), "a".into()]).await.unwrap();
        assert_eq!(v[1], vec![3.0, 1.0]);
        assert_eq!(e.stats(), CacheStats { hits: 2, misses: 4, embedded: 3, errors: 0 });
    }

    #[tokio::test]
    async fn survives_reopen_and_keys_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        {
            let e = CachedEmbedder::new(mock(), Arc::new(LocalCache::open(&path).unwrap()));
            e.embed(vec!["x".into()]).await.unwrap();
        }
        let mut never = MockEmbedder::new();
        never.expect_model_id().return_const("mock-v1".to_owned());
        never.expect_dimension().return_const(2usize);
        never.expect_embed().never();
        let e = CachedEmbedder::new(never, Arc::new(LocalCache::open(&path).unwrap()));
        assert_eq!(e.embed(vec!["x".into()]).await.unwrap(), vec![vec![1.0, 1.0]]);
        assert_eq!(e.stats().hits, 1);
        // Golden value: sha256(b"m\\x00t") as Python's hashlib computes it.
        assert_eq!(cache_key("m", "t"), "8481c8582a73b3ba64d6506da480d877324f34bae0fb970c71b5d24bc57c06c7");
        assert_ne!(cache_key("m1", "t"), cache_key("m2", "t"), "the model id is part of the key");
        assert_eq!(decode_vector(&encode_vector(&[1.5, -2.0])).unwrap(), vec![1.5, -2.0]);
    }

    #[tokio::test]
    async fn namespaces_never_share_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(LocalCache::open(dir.path().join("c.redb")).unwrap());
        let e = CachedEmbedder::new(mock(), cache.clone());
        // One tenant stores a text; another tenant embedding the same text gets no hit from it,
        // nor from the shared (query) entries.
        e.embed(vec!["secret".into()]).await.unwrap();
        let globex = e.embed_in("globex", vec!["secret".into()]).await.unwrap();
        assert_eq!((globex.vectors, globex.cache_hits), (vec![vec![6.0, 1.0]], 0));
        let acme = e.embed_in("acme", vec!["secret".into(), "other".into()]).await.unwrap();
        assert_eq!(acme.cache_hits, 0, "acme never sees globex's entry");
        let again = e.embed_in("globex", vec!["secret".into(), "new".into()]).await.unwrap();
        assert_eq!(again.cache_hits, 1, "globex's own entry is a hit");
        assert_eq!(cache.len().unwrap(), 5);
        assert_ne!(namespaced_cache_key("a", "m", "t"), namespaced_cache_key("b", "m", "t"));
        assert_ne!(namespaced_cache_key("ab", "m", "t"), namespaced_cache_key("a", "bm", "t"), "the namespace is length-framed");
        assert_ne!(namespaced_cache_key("", "m", "t"), cache_key("m", "t"));
    }

    struct Broken;
    #[async_trait]
    impl EmbeddingCache for Broken {
        async fn get_many(&self, _: &[String]) -> Result<Vec<Option<Vec<f32>>>> {
            Err(RagError::transient("cache", "down"))
        }
        async fn put_many(&self, _: Vec<(String, Vec<f32>)>) -> Result<()> {
            Err(RagError::transient("cache", "down"))
        }
        fn describe(&self) -> String {
            "broken".into()
        }
    }

    #[tokio::test]
    async fn a_failing_cache_never_fails_embedding() {
        let e = CachedEmbedder::new(mock(), Arc::new(Broken));
        let v = e.embed(vec!["a".into(), "a".into()]).await.unwrap();
        assert_eq!(v.len(), 2);
        assert!(e.is_degraded());
        assert_eq!(e.stats(), CacheStats { hits: 0, misses: 2, embedded: 1, errors: 2 });
    }
}
