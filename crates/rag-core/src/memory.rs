//! [`InMemoryStore`]: a [`VectorStore`] in a map, exact cosine search, no Python and no files.
//! For prototypes and for tests of code built on the library (where a mock would need an
//! expectation for every call); it passes the conformance suite like every other store.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;

use crate::rules::{DimensionGuard, filter_view, stored_metadata};
use crate::{
    Candidate, Chunk, Distance, EmbeddedChunk, Filter, Metadata, Result, ScoredChunk, StoreDescription, VectorQuery, VectorStore,
};

/// A chunk as kept: its vector at unit length (so a score is a dot product) and the metadata
/// its filters see.
#[derive(Debug, Clone)]
struct Stored {
    chunk: Chunk,
    unit: Vec<f32>,
    view: Metadata,
}

/// A vector store held in memory: exact (brute-force) cosine similarity, every filter, the
/// whole [`VectorStore`] contract. Nothing survives the process; searching scans every chunk,
/// so it suits up to some tens of thousands of chunks.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use rag_core::{Chunk, EmbeddedChunk, VectorQuery, VectorStore, memory::InMemoryStore};
/// let store = InMemoryStore::new("notes");
/// store.upsert(vec![EmbeddedChunk { chunk: Chunk::new("a#0", "a", "alpha"), embedding: vec![1.0, 0.0] }]).await?;
/// let hits = store.query(VectorQuery { vector: vec![2.0, 0.0], k: 1, filter: None }).await?;
/// assert_eq!((hits[0].chunk.id.as_str(), hits[0].score), ("a#0", 1.0));
/// # rag_core::Result::Ok(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct InMemoryStore {
    collection: String,
    dimension: DimensionGuard,
    chunks: RwLock<BTreeMap<String, Stored>>,
}

impl InMemoryStore {
    /// An empty store named `collection`; its dimension is set by the first write.
    pub fn new(collection: impl Into<String>) -> Self {
        Self::with_dimension(collection, None)
    }

    /// An empty store whose vectors must have `dimension` values (when given).
    pub fn with_dimension(collection: impl Into<String>, dimension: Option<usize>) -> Self {
        let collection = collection.into();
        Self {
            dimension: DimensionGuard::new(format!("in-memory collection `{collection}`"), dimension),
            collection,
            chunks: RwLock::new(BTreeMap::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Stored>> {
        // A panic elsewhere while holding the lock leaves whole entries: the map stays usable.
        self.chunks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Stored>> {
        self.chunks.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The best `k` chunks for `query`, best first (ties by id, so results are stable).
    fn search(&self, query: &VectorQuery) -> Result<Vec<ScoredChunk>> {
        if let Some(f) = &query.filter {
            f.validate()?;
        }
        if !self.dimension.check(query.vector.len(), "query")? {
            // Nothing was ever written: no dimension, no hits.
            return Ok(Vec::new());
        }
        let q = unit(&query.vector);
        let mut hits: Vec<ScoredChunk> = self
            .read()
            .values()
            .filter(|s| query.filter.as_ref().is_none_or(|f| f.matches(&s.view)))
            .map(|s| ScoredChunk { chunk: s.chunk.clone(), score: dot(&s.unit, &q) })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.chunk.id.cmp(&b.chunk.id)));
        hits.truncate(query.k);
        Ok(hits)
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 { v.iter().map(|x| x / norm).collect() } else { v.to_vec() }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[async_trait]
impl VectorStore for InMemoryStore {
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<()> {
        // The whole batch is checked before any of it is kept: a refused batch writes nothing.
        let Some(dimension) = self.dimension.check_upsert(&chunks)? else { return Ok(()) };
        self.dimension.record(dimension)?;
        let mut map = self.write();
        for EmbeddedChunk { mut chunk, embedding } in chunks {
            chunk.metadata = stored_metadata(&chunk.metadata);
            let view = filter_view(&chunk);
            map.insert(chunk.id.clone(), Stored { unit: unit(&embedding), view, chunk });
        }
        Ok(())
    }

    async fn query(&self, query: VectorQuery) -> Result<Vec<ScoredChunk>> {
        self.search(&query)
    }

    async fn candidates(&self, query: VectorQuery) -> Result<Vec<Candidate>> {
        Ok(self.search(&query)?.into_iter().map(Candidate::from).collect())
    }

    async fn chunks(&self, ids: Vec<String>) -> Result<Vec<Chunk>> {
        let map = self.read();
        Ok(ids.iter().filter_map(|id| map.get(id).map(|s| s.chunk.clone())).collect())
    }

    async fn delete(&self, ids: Vec<String>) -> Result<()> {
        let mut map = self.write();
        for id in ids {
            map.remove(&id);
        }
        Ok(())
    }

    async fn delete_by_filter(&self, filter: Filter) -> Result<()> {
        filter.validate()?;
        self.write().retain(|_, s| !filter.matches(&s.view));
        Ok(())
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.read().len())
    }

    async fn describe(&self) -> Result<StoreDescription> {
        Ok(StoreDescription {
            backend: "memory".into(),
            collection: self.collection.clone(),
            dimension: self.dimension.get(),
            distance: Distance::Cosine,
            count: self.read().len(),
            details: BTreeMap::new(),
        })
    }
}
