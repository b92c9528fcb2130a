//! The seams of a pipeline ([`Retriever`] and [`KeywordSearch`] beside the five model/store seams), each `#[async_trait]`, `Send + Sync`,
//! object-safe, with blanket impls for `Arc<T>` and `Box<T>` so `Arc<dyn VectorStore>` and
//! friends work everywhere a trait bound is asked for.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::{
    Candidate, Chunk, Document, EmbeddedChunk, Filter, Generation, GenerationEvent, GenerationRequest, Result, RetrievalQuery,
    ScoredChunk, StoreDescription, VectorQuery,
};

/// A store of embedded chunks that answers nearest-neighbour queries.
///
/// # The contract
///
/// Every store in this workspace keeps it, and [`crate::conformance::run_conformance`]
/// (feature `conformance`, no Python) checks a store of yours against it.
///
/// * **Scores** are cosine similarity for the default [`crate::Distance::Cosine`]: higher is
///   more similar, and a stored vector scores 1 against itself. Results are best first.
/// * **Filters** are checked with [`Filter::validate`] before anything else: a malformed one
///   is a [`crate::RagError::InvalidInput`] naming `filter`, never a backend's exception. A
///   filter means what [`Filter::matches`] says on [`crate::rules::filter_view`]: the chunk's
///   metadata plus the reserved fields `doc_id` and `chunk_index`
///   ([`crate::rules::fields`]), which every store must let a filter (and
///   [`VectorStore::delete_by_filter`]) select on. A list field equals a value it contains.
/// * **Metadata** follows [`crate::rules`]: a batch holding a refused key or value is an
///   `InvalidInput` naming the chunk (``chunk `id` ``), and nothing of that batch is written. An
///   empty list is kept as no value.
/// * **Dimensions**: the first write (or the store's settings) fixes the dimension; a vector of
///   another length, on upsert or on query, is a [`crate::RagError::DimensionMismatch`]
///   ([`crate::rules::DimensionGuard`] implements the rule). A query before any write returns
///   no hits.
/// * **Collections**: a store opened on a collection that does not exist, with creation off,
///   is a [`crate::RagError::NotFound`].
/// * **Idempotence**: upserting a chunk id again replaces it; deleting unknown ids is not an
///   error; `count` counts chunks.
/// * Texts (any Unicode, tens of kilobytes) and metadata come back exactly as written.
///
/// [`crate::InMemoryStore`] is a complete, small implementation to read or to use.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Inserts or replaces chunks by id (idempotent).
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<()>;
    /// The `k` nearest chunks to `query.vector` that pass `query.filter`, best first.
    async fn query(&self, query: VectorQuery) -> Result<Vec<ScoredChunk>>;
    /// Deletes chunks by id; unknown ids are ignored.
    async fn delete(&self, ids: Vec<String>) -> Result<()>;
    /// Deletes every chunk whose metadata passes `filter`.
    async fn delete_by_filter(&self, filter: Filter) -> Result<()>;
    /// Number of stored chunks.
    async fn count(&self) -> Result<usize>;
    /// Backend, collection, dimension, distance, count and backend-specific details.
    async fn describe(&self) -> Result<StoreDescription>;
    /// Candidates for hybrid fusion: the `k` nearest chunk ids to `query.vector` that pass
    /// `query.filter`, with their scores, best first. Fusion needs only ids and scores, so a
    /// store may leave the chunks out (then it must answer [`VectorStore::chunks`]). The
    /// default runs [`VectorStore::query`] and keeps the chunks.
    async fn candidates(&self, query: VectorQuery) -> Result<Vec<Candidate>> {
        Ok(self.query(query).await?.into_iter().map(Candidate::from).collect())
    }
    /// The stored chunks with these ids, in any order; unknown ids are left out. Needed only
    /// by a store whose [`VectorStore::candidates`] leaves chunks out; the default says so.
    async fn chunks(&self, ids: Vec<String>) -> Result<Vec<Chunk>> {
        let _ = ids;
        Err(crate::RagError::internal("this vector store does not fetch chunks by id: its `candidates` must return them"))
    }
}

/// Turns texts into vectors.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Embeds a batch; the output has one vector per input, in input order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>>;
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;
    /// An id that changes whenever the vectors would (model name and revision, options).
    fn model_id(&self) -> String;
    /// The longest input the model reads, in its own tokens (special tokens included); longer
    /// inputs are truncated by the model. `None` when the backend does not say.
    fn max_input_tokens(&self) -> Option<usize> {
        None
    }
    /// Embeds a batch on behalf of `namespace` (a tenant), and says how many vectors came from
    /// a cache. An embedder with a cache keeps each namespace's entries apart, so one tenant
    /// can never learn from a hit, or from how fast an ingest was, that another stored a text.
    /// The default embeds with [`Embedder::embed`] and reports no cache hits.
    async fn embed_in(&self, namespace: &str, texts: Vec<String>) -> Result<NamespacedEmbedding> {
        let _ = namespace;
        Ok(NamespacedEmbedding { vectors: self.embed(texts).await?, cache_hits: 0 })
    }
}

/// What [`Embedder::embed_in`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamespacedEmbedding {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// How many of them came from the namespace's cache entries.
    pub cache_hits: usize,
}

/// Re-orders candidates by relevance to a query.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Reranker: Send + Sync {
    /// Scores every candidate against `query` and returns the best `top_k`, best first,
    /// with the reranker's scores.
    async fn rerank(&self, query: String, candidates: Vec<ScoredChunk>, top_k: usize) -> Result<Vec<ScoredChunk>>;
    /// Reranks several queries at once (one crossing into the model where the backend can).
    async fn rerank_batch(&self, batch: Vec<(String, Vec<ScoredChunk>)>, top_k: usize) -> Result<Vec<Vec<ScoredChunk>>> {
        let mut out = Vec::with_capacity(batch.len());
        for (q, c) in batch {
            out.push(self.rerank(q, c, top_k).await?);
        }
        Ok(out)
    }
    /// An id for logs and reports.
    fn model_id(&self) -> String;
}

/// Splits a document into chunks.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Chunker: Send + Sync {
    /// Chunks `document`; ids are deterministic for the same document and settings.
    async fn chunk(&self, document: &Document) -> Result<Vec<Chunk>>;
    /// A description of the chunker and its settings (part of the ingest manifest: when it
    /// changes, documents are re-chunked).
    fn fingerprint(&self) -> String;
}

/// Answers a question from context passages.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Generator: Send + Sync {
    /// Produces an answer, optional reasoning, and the ids of the passages used.
    async fn generate(&self, request: GenerationRequest) -> Result<Generation>;
    /// Streams the answer: zero or more [`GenerationEvent::Token`]s, then one
    /// [`GenerationEvent::Final`]. The default runs [`Generator::generate`] and emits only the final event.
    async fn generate_stream(&self, request: GenerationRequest) -> Result<BoxStream<'static, Result<GenerationEvent>>> {
        let generation = self.generate(request).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(GenerationEvent::Final(generation)) })))
    }
    /// A label for results and logs (`extractive`, `dspy:ChainOfThought(model)`).
    fn name(&self) -> String;
}

/// `events` ending right after its final answer or its first error, without waiting for the
/// generator to close it: a [`Generator::generate_stream`] that keeps its stream open after
/// the end (a sender still alive somewhere) must not keep a caller, or an HTTP response,
/// waiting for ever.
pub fn through_final(events: BoxStream<'static, Result<GenerationEvent>>) -> BoxStream<'static, Result<GenerationEvent>> {
    Box::pin(futures::stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        let event = events.next().await?;
        let more = matches!(event, Ok(GenerationEvent::Token(_)));
        Some((event, more.then_some(events)))
    }))
}

/// A keyword (BM25 / sparse) index over chunks: the lexical side of hybrid retrieval. The
/// tantivy index in `rag-keyword` is one; a store with its own sparse search can be another.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait KeywordSearch: Send + Sync {
    /// Adds or replaces `upsert` by chunk id and removes `delete` by chunk id, as one durable
    /// write: when it returns, searches see it and a restart keeps it.
    async fn write(&self, upsert: Vec<Chunk>, delete: Vec<String>) -> Result<()>;
    /// The best `query.k` chunks for `query.text` that pass `query.filter`, best first, scored
    /// by the index (higher is better).
    async fn search(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>>;
    /// Number of indexed chunks.
    async fn count(&self) -> Result<usize>;
    /// Every indexed chunk (for statistics and audits; reads the whole index).
    async fn scan(&self) -> Result<Vec<Chunk>>;
    /// Candidates for hybrid fusion: the best `query.k` chunk ids and scores for `query.text`
    /// that pass `query.filter`, best first. Fusion needs only ids and scores, so an index may
    /// leave the chunks out (then it must answer [`KeywordSearch::chunks`] for the fused top
    /// `k`). The default runs [`KeywordSearch::search`] and keeps the chunks.
    async fn candidates(&self, query: RetrievalQuery) -> Result<Vec<Candidate>> {
        Ok(self.search(query).await?.into_iter().map(Candidate::from).collect())
    }
    /// The indexed chunks with these ids, in any order; ids not in the index are left out. The
    /// default reads the whole index ([`KeywordSearch::scan`]): an index whose
    /// [`KeywordSearch::candidates`] leaves chunks out should look them up directly.
    async fn chunks(&self, ids: Vec<String>) -> Result<Vec<Chunk>> {
        let wanted: std::collections::HashSet<String> = ids.into_iter().collect();
        Ok(self.scan().await?.into_iter().filter(|c| wanted.contains(&c.id)).collect())
    }
}

/// Question in, scored chunks out: dense, keyword, hybrid, reranked, all behind one seam.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Retriever: Send + Sync {
    /// The best `query.k` chunks for `query.text` that pass `query.filter`, best first.
    async fn retrieve(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>>;
}

macro_rules! forward_smart_pointers {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: VectorStore + ?Sized> VectorStore for $ptr<T> {
            async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<()> { (**self).upsert(chunks).await }
            async fn query(&self, query: VectorQuery) -> Result<Vec<ScoredChunk>> { (**self).query(query).await }
            async fn delete(&self, ids: Vec<String>) -> Result<()> { (**self).delete(ids).await }
            async fn delete_by_filter(&self, filter: Filter) -> Result<()> { (**self).delete_by_filter(filter).await }
            async fn count(&self) -> Result<usize> { (**self).count().await }
            async fn describe(&self) -> Result<StoreDescription> { (**self).describe().await }
            async fn candidates(&self, query: VectorQuery) -> Result<Vec<Candidate>> { (**self).candidates(query).await }
            async fn chunks(&self, ids: Vec<String>) -> Result<Vec<Chunk>> { (**self).chunks(ids).await }
        }

        #[async_trait]
        impl<T: Embedder + ?Sized> Embedder for $ptr<T> {
            async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> { (**self).embed(texts).await }
            fn dimension(&self) -> usize { (**self).dimension() }
            fn model_id(&self) -> String { (**self).model_id() }
            fn max_input_tokens(&self) -> Option<usize> { (**self).max_input_tokens() }
            async fn embed_in(&self, namespace: &str, texts: Vec<String>) -> Result<NamespacedEmbedding> {
                (**self).embed_in(namespace, texts).await
            }
        }

        #[async_trait]
        impl<T: KeywordSearch + ?Sized> KeywordSearch for $ptr<T> {
            async fn write(&self, upsert: Vec<Chunk>, delete: Vec<String>) -> Result<()> { (**self).write(upsert, delete).await }
            async fn search(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>> { (**self).search(query).await }
            async fn count(&self) -> Result<usize> { (**self).count().await }
            async fn scan(&self) -> Result<Vec<Chunk>> { (**self).scan().await }
            async fn candidates(&self, query: RetrievalQuery) -> Result<Vec<Candidate>> { (**self).candidates(query).await }
            async fn chunks(&self, ids: Vec<String>) -> Result<Vec<Chunk>> { (**self).chunks(ids).await }
        }

        #[async_trait]
        impl<T: crate::DocumentSource + ?Sized> crate::DocumentSource for $ptr<T> {
            async fn open(&self) -> Result<crate::DocumentStream> { (**self).open().await }
        }

        #[async_trait]
        impl<T: Reranker + ?Sized> Reranker for $ptr<T> {
            async fn rerank(&self, query: String, candidates: Vec<ScoredChunk>, top_k: usize) -> Result<Vec<ScoredChunk>> {
                (**self).rerank(query, candidates, top_k).await
            }
            async fn rerank_batch(&self, batch: Vec<(String, Vec<ScoredChunk>)>, top_k: usize) -> Result<Vec<Vec<ScoredChunk>>> {
                (**self).rerank_batch(batch, top_k).await
            }
            fn model_id(&self) -> String { (**self).model_id() }
        }

        #[async_trait]
        impl<T: Chunker + ?Sized> Chunker for $ptr<T> {
            async fn chunk(&self, document: &Document) -> Result<Vec<Chunk>> { (**self).chunk(document).await }
            fn fingerprint(&self) -> String { (**self).fingerprint() }
        }

        #[async_trait]
        impl<T: Generator + ?Sized> Generator for $ptr<T> {
            async fn generate(&self, request: GenerationRequest) -> Result<Generation> { (**self).generate(request).await }
            async fn generate_stream(&self, request: GenerationRequest) -> Result<BoxStream<'static, Result<GenerationEvent>>> {
                (**self).generate_stream(request).await
            }
            fn name(&self) -> String { (**self).name() }
        }

        #[async_trait]
        impl<T: Retriever + ?Sized> Retriever for $ptr<T> {
            async fn retrieve(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>> { (**self).retrieve(query).await }
        }
    )*};
}

forward_smart_pointers!(Arc, Box);

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;
    use crate::RagError;

    fn final_event(answer: &str) -> Result<GenerationEvent> {
        Ok(GenerationEvent::Final(Generation {
            answer: answer.into(),
            reasoning: None,
            used_context_ids: vec![],
            generator: "test".into(),
        }))
    }

    /// Events, then a stream that never ends (a sender the generator never dropped).
    fn left_open(events: Vec<Result<GenerationEvent>>) -> BoxStream<'static, Result<GenerationEvent>> {
        Box::pin(futures::stream::iter(events).chain(futures::stream::pending()))
    }

    #[test]
    fn a_stream_ends_at_its_final_event_or_error_even_when_left_open() {
        let then = |last: Vec<Result<GenerationEvent>>| {
            let mut events = vec![Ok(GenerationEvent::Token("a".into())), Ok(GenerationEvent::Token("b".into()))];
            events.extend(last);
            left_open(events)
        };
        let got = through_final(then(vec![final_event("ab"), final_event("never seen")]))
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("ends without waiting");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(&got[2], Ok(GenerationEvent::Final(g)) if g.answer == "ab"), "{got:?}");
        let got = through_final(then(vec![Err(RagError::invalid_input("q", "bad")), final_event("never seen")]))
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("ends without waiting");
        assert!(matches!(got.as_slice(), [Ok(_), Ok(_), Err(RagError::InvalidInput { .. })]), "{got:?}");
        // Tokens alone: it waits for more, as the generator's stream does.
        assert!(through_final(then(vec![])).collect::<Vec<_>>().now_or_never().is_none());
    }
}
