//! Retrieval: dense, keyword (BM25) and hybrid are one component, [`HybridRetriever`], with
//! either side switched off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rag_core::fusion::{convex_combination, distribution_based_score_fusion, reciprocal_rank_fusion};
use rag_core::{
    Candidate, Chunk, Embedder, HybridQuery, HybridSearch, KeywordSearch, RagError, Result, RetrievalQuery, Retriever,
    ScoredChunk, StageTimings, VectorQuery, VectorStore,
};

use crate::pipeline::{check_range, defaults};

pub use rag_core::fusion::Fusion;

rag_core::choice! {
    /// Which side(s) retrieval uses.
    RetrievalMode {
        /// Vector and keyword search, fused.
        Hybrid = "hybrid",
        /// Vector search only.
        Dense = "dense",
        /// BM25 keyword search only.
        Bm25 = "bm25",
    }
}

/// How a pipeline retrieves: the one type the configuration file's `[retrieval]` table, the
/// builder ([`crate::RagPipelineBuilder::retrieval`]) and the pipeline hold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalSettings {
    /// `hybrid` (default), `dense`, or `bm25`.
    pub mode: RetrievalMode,
    /// Chunks returned to the caller / packed into the context (1 to [`defaults::MAX_K`]).
    pub k: usize,
    /// Candidates taken from each side before fusion.
    pub candidates: usize,
    /// `convex` (default), `rrf` or `dbsf`.
    pub fusion: Fusion,
    /// The RRF constant (`rrf`).
    pub rrf_k: f32,
    /// Weight of the dense side (`convex`), 0 to 1.
    pub alpha: f32,
}

impl Default for RetrievalSettings {
    /// Hybrid, convex at [`defaults::ALPHA`]: measured best on SciFact (docs/benchmarks.md).
    fn default() -> Self {
        Self {
            mode: RetrievalMode::Hybrid,
            k: defaults::K,
            candidates: defaults::CANDIDATES,
            fusion: Fusion::Convex,
            rrf_k: defaults::RRF_K,
            alpha: defaults::ALPHA,
        }
    }
}

impl RetrievalSettings {
    /// Checks every number's range; the error names the key (`retrieval.k`).
    pub fn validate(&self) -> Result<()> {
        check_range("retrieval.k", self.k, 1, defaults::MAX_K)?;
        check_range("retrieval.candidates", self.candidates, 1, 100_000)?;
        check_range("retrieval.alpha", self.alpha, 0.0, 1.0)?;
        check_range("retrieval.rrf_k", self.rrf_k, 1.0, 10_000.0)
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
    /// Runs both sides and the fusion in one request, when the engine runs the fusion.
    engine: Option<Arc<dyn HybridSearch>>,
    /// Fusion, its parameters, and the candidates per side (the mode is the caller's).
    settings: RetrievalSettings,
}

impl std::fmt::Debug for HybridRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridRetriever")
            .field("dense", &self.dense.is_some())
            .field("keyword", &self.keyword.is_some())
            .field("engine", &self.engine.is_some())
            .field("fusion", &self.settings.fusion)
            .field("candidates", &self.settings.candidates)
            .finish()
    }
}

impl HybridRetriever {
    /// Both sides, fused as `settings` say (fusion, its parameters, candidates per side).
    pub fn hybrid(dense: DenseSide, keyword: Arc<dyn KeywordSearch>, settings: &RetrievalSettings) -> Self {
        Self { dense: Some(dense), keyword: Some(keyword), engine: None, settings: settings.clone() }
    }

    /// Dense only.
    pub fn dense_only(dense: DenseSide) -> Self {
        Self { dense: Some(dense), keyword: None, engine: None, settings: RetrievalSettings::default() }
    }

    /// Keyword (BM25) only.
    pub fn keyword_only(keyword: Arc<dyn KeywordSearch>) -> Self {
        Self { dense: None, keyword: Some(keyword), engine: None, settings: RetrievalSettings::default() }
    }

    /// Lets `engine` run hybrid retrieval and its fusion in one request for RRF and DBSF;
    /// convex fusion still runs here, over the engine's two lists.
    pub fn engine(mut self, engine: Arc<dyn HybridSearch>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Candidates taken from each side before fusion (default 100; at least `k`).
    pub fn candidates(mut self, n: usize) -> Self {
        self.settings.candidates = n.max(1);
        self
    }

    /// The query's embedding, timed as `embed_query` so a caller can see the model apart.
    async fn embed_query(d: &DenseSide, text: &str, t: &mut StageTimings) -> Result<Vec<f32>> {
        let start = Instant::now();
        let mut v = d.embedder.embed(vec![text.to_owned()]).await?;
        t.insert("embed_query".into(), ms(start));
        v.pop().ok_or_else(|| RagError::internal("the embedder returned no vector for the query"))
    }

    /// Embeds the question once per call, then asks the vector store for its nearest `n`:
    /// whole chunks, or (with `candidates`) ids and scores for fusion.
    async fn dense_side<T>(
        d: &DenseSide,
        q: &RetrievalQuery,
        n: usize,
        t: &mut StageTimings,
        ask: impl AsyncFnOnce(VectorQuery) -> Result<T>,
    ) -> Result<T> {
        let vector = Self::embed_query(d, &q.text, t).await?;
        timed("vector_search", t, ask(VectorQuery { vector, k: n, filter: q.filter.clone() })).await
    }

    /// Retrieves with per-stage timings.
    pub async fn retrieve_timed(&self, query: RetrievalQuery) -> Result<(Vec<ScoredChunk>, StageTimings)> {
        let mut t = StageTimings::new();
        let n = self.settings.candidates.max(query.k);
        let fusion = self.settings.fusion;
        if let (Some(d), Some(_), Some(engine), true) = (&self.dense, &self.keyword, &self.engine, fusion != Fusion::Convex) {
            let vector = Self::embed_query(d, &query.text, &mut t).await?;
            let start = Instant::now();
            let hits = engine
                .hybrid_search(HybridQuery {
                    text: query.text,
                    vector,
                    k: query.k,
                    candidates: n,
                    filter: query.filter,
                    fusion,
                    rrf_k: self.settings.rrf_k,
                })
                .await?;
            t.insert("engine_hybrid_search".into(), ms(start));
            return Ok((hits, t));
        }
        let (d, kw) = match (&self.dense, &self.keyword) {
            (Some(d), Some(kw)) => (d, kw),
            (Some(d), None) => {
                let mut hits = Self::dense_side(d, &query, query.k, &mut t, async |q| d.store.query(q).await).await?;
                hits.truncate(query.k);
                return Ok((hits, t));
            }
            (None, Some(kw)) => {
                let mut hits = timed("keyword_search", &mut t, kw.search(keyword_query(&query, query.k))).await?;
                hits.truncate(query.k);
                return Ok((hits, t));
            }
            (None, None) => return Err(RagError::config("a retriever needs a dense side, a keyword side, or both")),
        };
        let mut td = StageTimings::new();
        let mut tk = StageTimings::new();
        let (dense, keyword) = tokio::join!(
            Self::dense_side(d, &query, n, &mut td, async |q| d.store.candidates(q).await),
            timed("keyword_search", &mut tk, kw.candidates(keyword_query(&query, n)))
        );
        t.extend(td);
        t.extend(tk);
        let (dense, keyword) = (dense?, keyword?);
        let start = Instant::now();
        let ranked = fused_ranking(&dense, &keyword, &self.settings);
        t.insert("fusion".into(), ms(start));
        // Chunks are needed only for the fused top k. Those neither side handed over are read
        // from the keyword index first (local, no Python), then from the vector store (the index
        // may hold only this process's share of a shared store).
        let mut by_id: HashMap<String, Chunk> =
            keyword.into_iter().chain(dense).filter_map(|c| c.chunk.map(|chunk| (c.id, chunk))).collect();
        let top: Vec<(String, f32)> = ranked.into_iter().take(query.k).collect();
        let missing = |by_id: &HashMap<String, Chunk>| -> Vec<String> {
            top.iter().filter(|(id, _)| !by_id.contains_key(id)).map(|(id, _)| id.clone()).collect()
        };
        let wanted = missing(&by_id);
        if !wanted.is_empty() {
            let start = Instant::now();
            by_id.extend(kw.chunks(wanted).await?.into_iter().map(|c| (c.id.clone(), c)));
            let wanted = missing(&by_id);
            if !wanted.is_empty() {
                by_id.extend(d.store.chunks(wanted).await?.into_iter().map(|c| (c.id.clone(), c)));
            }
            t.insert("fetch_chunks".into(), ms(start));
        }
        // A chunk deleted between the search and the fetch is left out: it is gone.
        let hits =
            top.into_iter().filter_map(|(id, score)| by_id.remove(&id).map(|chunk| ScoredChunk { chunk, score })).collect();
        Ok((hits, t))
    }
}

/// The fused ranking of the two sides' candidates, as (chunk id, score).
fn fused_ranking(dense: &[Candidate], keyword: &[Candidate], settings: &RetrievalSettings) -> Vec<(String, f32)> {
    let [dense, keyword]: [Vec<(&str, f32)>; 2] = [dense, keyword].map(|l| l.iter().map(|c| (c.id.as_str(), c.score)).collect());
    match settings.fusion {
        Fusion::Rrf => {
            let lists: [Vec<&str>; 2] = [&dense, &keyword].map(|l| l.iter().map(|(id, _)| *id).collect());
            reciprocal_rank_fusion(&lists, settings.rrf_k)
        }
        Fusion::Convex => convex_combination(&dense, &keyword, settings.alpha),
        Fusion::Dbsf => distribution_based_score_fusion(&[dense, keyword]),
    }
}

/// Awaits `work`, recording its wall time under `stage`.
async fn timed<T>(stage: &str, t: &mut StageTimings, work: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let out = work.await?;
    t.insert(stage.into(), ms(start));
    Ok(out)
}

/// The question as the keyword side's query for `n` results.
fn keyword_query(q: &RetrievalQuery, n: usize) -> RetrievalQuery {
    RetrievalQuery { text: q.text.clone(), k: n, filter: q.filter.clone() }
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

    fn rrf() -> RetrievalSettings {
        RetrievalSettings { fusion: Fusion::Rrf, ..RetrievalSettings::default() }
    }

    fn hit(id: &str, score: f32) -> ScoredChunk {
        ScoredChunk { chunk: Chunk::new(id, "d", format!("text of {id}")), score }
    }

    #[tokio::test]
    async fn hybrid_fuses_both_sides_and_passes_filters_through() {
        let mut embedder = MockEmbedder::new();
        embedder.expect_embed().times(2).returning(|t| Ok(vec![vec![1.0, 0.0]; t.len()]));
        let mut store = MockVectorStore::new();
        store
            .expect_candidates()
            .withf(|q| q.k == 10 && q.filter == Some(rag_core::Filter::eq("lang", "en")))
            .returning(|_| Ok(vec![hit("a", 0.9).into(), hit("b", 0.8).into()]));
        let keyword = rag_keyword::KeywordIndex::open(None, &Default::default()).unwrap();
        let mut c = Chunk::new("b", "d", "b is about rust programming");
        c.metadata.insert("lang".into(), "en".into());
        let mut c2 = Chunk::new("c", "d", "rust rust rust");
        c2.metadata.insert("lang".into(), "en".into());
        keyword.upsert(&[c, c2]).unwrap();
        keyword.commit().unwrap();
        let dense = DenseSide { embedder: Arc::new(embedder), store: Arc::new(store) };
        let keyword: Arc<dyn KeywordSearch> = Arc::new(keyword);
        let r = HybridRetriever::hybrid(dense.clone(), keyword.clone(), &rrf()).candidates(10);
        let mut q = RetrievalQuery::new("rust", 3);
        q.filter = Some(rag_core::Filter::eq("lang", "en"));
        let (hits, timings) = r.retrieve_timed(q.clone()).await.unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.chunk.id.as_str()).collect();
        assert_eq!(ids[0], "b", "RRF: in both lists, so first: {ids:?}");
        assert_eq!(ids.len(), 3);
        // Convex (the default): each side's best gets 1 after normalisation, so the dense top
        // ("a") and the BM25 top ("c", three mentions) tie at 0.5 ahead of "b", last on both.
        let convex = HybridRetriever::hybrid(dense, keyword, &RetrievalSettings::default()).candidates(10);
        let (chunks, _) = convex.retrieve_timed(q).await.unwrap();
        let ids: Vec<&str> = chunks.iter().map(|h| h.chunk.id.as_str()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], "b", "convex: {ids:?}");
        assert!((chunks[0].score - 0.5).abs() < 1e-6 && (chunks[1].score - 0.5).abs() < 1e-6, "{chunks:?}");
        for stage in ["embed_query", "vector_search", "keyword_search", "fusion"] {
            assert!(timings.contains_key(stage), "{timings:?}");
        }
    }

    /// Both sides may name their candidates only; the chunks of those in the fused top k are
    /// then read once, afterwards: from the keyword index first, and from the vector store for
    /// what the index lacks (another worker's documents in a shared store).
    #[tokio::test]
    async fn candidates_without_chunks_get_them_for_the_final_k_only() {
        use rag_core::mocks::MockKeywordSearch;
        let bare = |ids: &[&str]| -> Vec<Candidate> {
            ids.iter().enumerate().map(|(i, id)| Candidate { id: (*id).into(), score: 10.0 - i as f32, chunk: None }).collect()
        };
        let texts = |ids: &[String]| -> Vec<Chunk> {
            ids.iter().map(|id| Chunk::new(id.as_str(), "d", format!("text of {id}"))).collect()
        };
        let mut embedder = MockEmbedder::new();
        embedder.expect_embed().returning(|t| Ok(vec![vec![1.0, 0.0]; t.len()]));
        let mut store = MockVectorStore::new();
        store.expect_query().times(0);
        store.expect_candidates().times(1).returning(move |_| Ok(bare(&["a", "b"])));
        store.expect_chunks().times(1).withf(|ids| ids == &["a".to_owned()]).returning(move |ids| Ok(texts(&ids)));
        let mut keyword = MockKeywordSearch::new();
        keyword.expect_search().times(0);
        keyword.expect_candidates().times(1).returning(move |_| Ok(bare(&["k1", "b", "k2", "k3"])));
        // k = 3 under RRF: b (both lists), then a and k1 (first of one list each); k2, k3 are
        // never read. The index lacks "a".
        keyword
            .expect_chunks()
            .times(1)
            .withf(|ids| ids == &["b".to_owned(), "a".to_owned(), "k1".to_owned()])
            .returning(move |ids| Ok(texts(&ids).into_iter().filter(|c| c.id != "a").collect()));
        let dense = DenseSide { embedder: Arc::new(embedder), store: Arc::new(store) };
        let r = HybridRetriever::hybrid(dense, Arc::new(keyword), &rrf()).candidates(10);
        let (hits, timings) = r.retrieve_timed(RetrievalQuery::new("rust", 3)).await.unwrap();
        let got: Vec<(&str, &str)> = hits.iter().map(|h| (h.chunk.id.as_str(), h.chunk.text.as_str())).collect();
        assert_eq!(got, [("b", "text of b"), ("a", "text of a"), ("k1", "text of k1")]);
        assert!(timings.contains_key("fetch_chunks"), "{timings:?}");
    }
}
