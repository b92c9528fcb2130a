//! Retrieval: dense, keyword (BM25) and hybrid are one component, [`HybridRetriever`], with
//! either side switched off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rag_core::fusion::{convex_combination, distribution_based_score_fusion, reciprocal_rank_fusion};
use rag_core::{
    Embedder, EngineFusion, HybridQuery, HybridSearch, KeywordSearch, RagError, Result, RetrievalQuery, Retriever, ScoredChunk,
    StageTimings, VectorQuery, VectorStore,
};

use crate::config::defaults;

/// How the two sides are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal Rank Fusion with constant `k` (60 by default).
    Rrf {
        /// The RRF constant.
        k: f32,
    },
    /// `alpha * dense + (1 - alpha) * keyword` over min-max-normalised scores.
    Convex {
        /// Weight of the dense side.
        alpha: f32,
    },
    /// Distribution-Based Score Fusion: each side normalised by its mean ± 3σ, then summed.
    Dbsf,
}

impl Fusion {
    /// The same fusion run by an engine, where it has a twin there (RRF, DBSF; convex has none).
    pub fn in_engine(self) -> Option<EngineFusion> {
        match self {
            Self::Rrf { k } => Some(EngineFusion::Rrf { k }),
            Self::Dbsf => Some(EngineFusion::Dbsf),
            Self::Convex { .. } => None,
        }
    }
}

impl Default for Fusion {
    /// Convex at [`defaults::ALPHA`]: measured best on SciFact (README, Benchmarks).
    fn default() -> Self {
        Self::Convex { alpha: defaults::ALPHA }
    }
}

/// The dense side: an embedder and a vector store.
#[derive(Clone)]
pub struct DenseSide {
    /// Embeds the query.
    pub embedder: Arc<dyn Embedder>,
    /// Answers the nearest-neighbour query.
    pub store: Arc<dyn VectorStore>,
}

/// Over-retrieves from a vector store and a keyword index, then fuses.
#[derive(Clone)]
pub struct HybridRetriever {
    dense: Option<DenseSide>,
    keyword: Option<Arc<dyn KeywordSearch>>,
    /// Runs both sides and the fusion in one request, when the fusion has a twin there.
    engine: Option<Arc<dyn HybridSearch>>,
    fusion: Fusion,
    candidates: usize,
}

impl std::fmt::Debug for HybridRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridRetriever")
            .field("dense", &self.dense.is_some())
            .field("keyword", &self.keyword.is_some())
            .field("engine", &self.engine.is_some())
            .field("fusion", &self.fusion)
            .field("candidates", &self.candidates)
            .finish()
    }
}

impl HybridRetriever {
    /// Both sides, fused.
    pub fn hybrid(dense: DenseSide, keyword: Arc<dyn KeywordSearch>, fusion: Fusion) -> Self {
        Self { dense: Some(dense), keyword: Some(keyword), engine: None, fusion, candidates: defaults::CANDIDATES }
    }

    /// Dense only.
    pub fn dense_only(dense: DenseSide) -> Self {
        Self { dense: Some(dense), keyword: None, engine: None, fusion: Fusion::default(), candidates: defaults::CANDIDATES }
    }

    /// Keyword (BM25) only.
    pub fn keyword_only(keyword: Arc<dyn KeywordSearch>) -> Self {
        Self { dense: None, keyword: Some(keyword), engine: None, fusion: Fusion::default(), candidates: defaults::CANDIDATES }
    }

    /// Lets `engine` run hybrid retrieval and its fusion in one request when the fusion has a
    /// twin there (RRF, DBSF); convex fusion still runs here, over the engine's two lists.
    pub fn engine(mut self, engine: Arc<dyn HybridSearch>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Candidates taken from each side before fusion (default 100; at least `k`).
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = n.max(1);
        self
    }

    /// The query's embedding, timed as `embed_query` so a caller can see the model apart.
    async fn embed_query(d: &DenseSide, text: &str, t: &mut StageTimings) -> Result<Vec<f32>> {
        let start = Instant::now();
        let mut v = d.embedder.embed(vec![text.to_owned()]).await?;
        t.insert("embed_query".into(), ms(start));
        v.pop().ok_or_else(|| RagError::Other("the embedder returned no vector for the query".into()))
    }

    /// Embeds the question once per call, then asks the vector store.
    async fn dense_hits(&self, d: &DenseSide, q: &RetrievalQuery, n: usize, t: &mut StageTimings) -> Result<Vec<ScoredChunk>> {
        let vector = Self::embed_query(d, &q.text, t).await?;
        let start = Instant::now();
        let hits = d.store.query(VectorQuery { vector, k: n, filter: q.filter.clone() }).await?;
        t.insert("vector_search".into(), ms(start));
        Ok(hits)
    }

    async fn keyword_hits(
        &self,
        k: &Arc<dyn KeywordSearch>,
        q: &RetrievalQuery,
        n: usize,
        t: &mut StageTimings,
    ) -> Result<Vec<ScoredChunk>> {
        let start = Instant::now();
        let hits = k.search(RetrievalQuery { text: q.text.clone(), k: n, filter: q.filter.clone() }).await?;
        t.insert("keyword_search".into(), ms(start));
        Ok(hits)
    }

    /// Retrieves with per-stage timings.
    pub async fn retrieve_timed(&self, query: RetrievalQuery) -> Result<(Vec<ScoredChunk>, StageTimings)> {
        let mut t = StageTimings::new();
        let n = self.candidates.max(query.k);
        if let (Some(d), Some(_), Some(engine), Some(fusion)) =
            (&self.dense, &self.keyword, &self.engine, self.fusion.in_engine())
        {
            let vector = Self::embed_query(d, &query.text, &mut t).await?;
            let start = Instant::now();
            let hits = engine
                .hybrid_search(HybridQuery { text: query.text, vector, k: query.k, candidates: n, filter: query.filter, fusion })
                .await?;
            t.insert("engine_hybrid_search".into(), ms(start));
            return Ok((hits, t));
        }
        let (dense, keyword) = match (&self.dense, &self.keyword) {
            (Some(d), Some(k)) => {
                let mut td = StageTimings::new();
                let mut tk = StageTimings::new();
                let (a, b) = tokio::join!(self.dense_hits(d, &query, n, &mut td), self.keyword_hits(k, &query, n, &mut tk));
                t.extend(td);
                t.extend(tk);
                (a?, b?)
            }
            (Some(d), None) => (self.dense_hits(d, &query, query.k, &mut t).await?, Vec::new()),
            (None, Some(k)) => (Vec::new(), self.keyword_hits(k, &query, query.k, &mut t).await?),
            (None, None) => return Err(RagError::config("a retriever needs a dense side, a keyword side, or both")),
        };
        if self.dense.is_none() || self.keyword.is_none() {
            let mut one = if self.dense.is_some() { dense } else { keyword };
            one.truncate(query.k);
            return Ok((one, t));
        }
        let start = Instant::now();
        let fused = fuse(dense, keyword, self.fusion, query.k);
        t.insert("fusion".into(), ms(start));
        Ok((fused, t))
    }
}

/// Fuses two ranked lists into the top `k`, with fused scores.
pub fn fuse(dense: Vec<ScoredChunk>, keyword: Vec<ScoredChunk>, fusion: Fusion, k: usize) -> Vec<ScoredChunk> {
    let ranked = match fusion {
        Fusion::Rrf { k: c } => {
            let lists = [
                dense.iter().map(|h| h.chunk.id.as_str()).collect::<Vec<_>>(),
                keyword.iter().map(|h| h.chunk.id.as_str()).collect(),
            ];
            reciprocal_rank_fusion(&lists, c)
        }
        Fusion::Convex { alpha } => convex_combination(&scored(&dense), &scored(&keyword), alpha),
        Fusion::Dbsf => distribution_based_score_fusion(&[scored(&dense), scored(&keyword)]),
    };
    let mut by_id: HashMap<String, ScoredChunk> = HashMap::new();
    for h in keyword.into_iter().chain(dense) {
        by_id.insert(h.chunk.id.clone(), h);
    }
    ranked
        .into_iter()
        .take(k)
        .filter_map(|(id, score)| {
            by_id.remove(&id).map(|mut h| {
                h.score = score;
                h
            })
        })
        .collect()
}

/// A ranked list as `(id, score)` pairs, for the score-based fusions.
fn scored(hits: &[ScoredChunk]) -> Vec<(&str, f32)> {
    hits.iter().map(|h| (h.chunk.id.as_str(), h.score)).collect()
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[async_trait]
impl Retriever for HybridRetriever {
    async fn retrieve(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>> {
        Ok(self.retrieve_timed(query).await?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::Chunk;
    use rag_core::mocks::{MockEmbedder, MockVectorStore};

    fn hit(id: &str, score: f32) -> ScoredChunk {
        ScoredChunk { chunk: Chunk::new(id, "d", format!("text of {id}")), score }
    }

    #[tokio::test]
    async fn hybrid_fuses_both_sides_and_passes_filters_through() {
        let mut embedder = MockEmbedder::new();
        embedder.expect_embed().times(2).returning(|t| Ok(vec![vec![1.0, 0.0]; t.len()]));
        let mut store = MockVectorStore::new();
        store
            .expect_query()
            .withf(|q| q.k == 10 && q.filter == Some(rag_core::Filter::eq("lang", "en")))
            .returning(|_| Ok(vec![hit("a", 0.9), hit("b", 0.8)]));
        let keyword = rag_keyword::KeywordIndex::open(None, &Default::default()).unwrap();
        let mut c = Chunk::new("b", "d", "b is about rust programming");
        c.metadata.insert("lang".into(), "en".into());
        let mut c2 = Chunk::new("c", "d", "rust rust rust");
        c2.metadata.insert("lang".into(), "en".into());
        keyword.upsert(&[c, c2]).unwrap();
        keyword.commit().unwrap();
        let dense = DenseSide { embedder: Arc::new(embedder), store: Arc::new(store) };
        let keyword: Arc<dyn KeywordSearch> = Arc::new(keyword);
        let r = HybridRetriever::hybrid(dense.clone(), keyword.clone(), Fusion::Rrf { k: 60.0 }).candidates(10);
        let mut q = RetrievalQuery::new("rust", 3);
        q.filter = Some(rag_core::Filter::eq("lang", "en"));
        let (hits, timings) = r.retrieve_timed(q.clone()).await.unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.chunk.id.as_str()).collect();
        assert_eq!(ids[0], "b", "RRF: in both lists, so first: {ids:?}");
        assert_eq!(ids.len(), 3);
        // Convex (the default): each side's best gets 1 after normalisation, so the dense top
        // ("a") and the BM25 top ("c", three mentions) tie at 0.5 ahead of "b", last on both.
        let convex = HybridRetriever::hybrid(dense, keyword, Fusion::default()).candidates(10);
        let (chunks, _) = convex.retrieve_timed(q).await.unwrap();
        let ids: Vec<&str> = chunks.iter().map(|h| h.chunk.id.as_str()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], "b", "convex: {ids:?}");
        assert!((chunks[0].score - 0.5).abs() < 1e-6 && (chunks[1].score - 0.5).abs() < 1e-6, "{chunks:?}");
        for stage in ["embed_query", "vector_search", "keyword_search", "fusion"] {
            assert!(timings.contains_key(stage), "{timings:?}");
        }
    }
}
