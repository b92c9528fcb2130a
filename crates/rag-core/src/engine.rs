//! Seams for stores that do more than nearest-neighbour search: BM25 as sparse vectors
//! ([`SparseEncoder`], [`SparseVector`]), hybrid search with fusion inside the engine
//! ([`HybridSearch`]), and the ingest record kept by the store itself ([`IngestLedger`]), so a
//! deployment of several workers needs no local state.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Filter, Result, ScoredChunk};

/// Chunk metadata keys under which a store that is its own ingest record keeps each chunk's
/// document record (see [`IngestLedger::in_chunks`]).
pub mod ledger_keys {
    /// The document's content hash (text, metadata, chunker and embedder fingerprints).
    pub const HASH: &str = "rag_doc_hash";
    /// How many chunks the document has, so a half-written document is seen as such.
    pub const CHUNKS: &str = "rag_doc_chunks";
    /// The ingest root (origin) the document came from, for pruning.
    pub const ROOT: &str = "rag_doc_root";
    /// The chunker and embedder that produced the chunk, readable by people.
    pub const FINGERPRINT: &str = "rag_fingerprint";
    /// Every ledger key.
    pub const ALL: [&str; 4] = [HASH, CHUNKS, ROOT, FINGERPRINT];
}

/// A sparse vector: term ids and their weights, ids ascending and unique.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    /// Term ids, ascending.
    pub indices: Vec<u32>,
    /// One weight per id.
    pub values: Vec<f32>,
}

impl SparseVector {
    /// Whether it has no terms (a query of stop words only).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Turns text into sparse vectors for a store's sparse index (BM25 term weights).
pub trait SparseEncoder: Send + Sync {
    /// The vector stored for a chunk's text.
    fn encode_document(&self, text: &str) -> SparseVector;
    /// The vector a query searches with.
    fn encode_query(&self, text: &str) -> SparseVector;
    /// What produces the vectors (analyser, hash, parameters): chunks encoded under another
    /// fingerprint are not comparable.
    fn fingerprint(&self) -> String;
}

macro_rules! forward_encoder {
    ($($ptr:ident),*) => {$(
        impl<T: SparseEncoder + ?Sized> SparseEncoder for $ptr<T> {
            fn encode_document(&self, text: &str) -> SparseVector { (**self).encode_document(text) }
            fn encode_query(&self, text: &str) -> SparseVector { (**self).encode_query(text) }
            fn fingerprint(&self) -> String { (**self).fingerprint() }
        }
    )*};
}
forward_encoder!(Arc, Box);

/// One hybrid query for an engine: a dense and a sparse candidate list fused in the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridQuery {
    /// The question (the engine's sparse encoder turns it into terms).
    pub text: String,
    /// The question's embedding.
    pub vector: Vec<f32>,
    /// Results wanted.
    pub k: usize,
    /// Candidates per side before fusion.
    pub candidates: usize,
    /// Applied inside both candidate lists, before fusion.
    pub filter: Option<Filter>,
    /// How the lists are fused: an engine runs [`crate::fusion::Fusion::Rrf`] and
    /// [`crate::fusion::Fusion::Dbsf`] (convex fusion runs in Rust over the engine's two lists).
    pub fusion: crate::fusion::Fusion,
    /// The RRF constant (for [`crate::fusion::Fusion::Rrf`]).
    pub rrf_k: f32,
}

/// A store that runs hybrid (dense + sparse) retrieval and its fusion in one request.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait HybridSearch: Send + Sync {
    /// The fused top `k`, best first, with the engine's fused scores.
    async fn hybrid_search(&self, query: HybridQuery) -> Result<Vec<ScoredChunk>>;
}

#[async_trait]
impl<T: HybridSearch + ?Sized> HybridSearch for Arc<T> {
    async fn hybrid_search(&self, query: HybridQuery) -> Result<Vec<ScoredChunk>> {
        (**self).hybrid_search(query).await
    }
}

#[async_trait]
impl<T: HybridSearch + ?Sized> HybridSearch for Box<T> {
    async fn hybrid_search(&self, query: HybridQuery) -> Result<Vec<ScoredChunk>> {
        (**self).hybrid_search(query).await
    }
}

/// What is stored for one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The content hash the stored chunks were made from; `None` while pending, or when the
    /// stored chunks disagree (a write that did not finish), which makes the next ingest redo it.
    pub hash: Option<String>,
    /// Chunk ids that may be stored for this document.
    pub chunk_ids: Vec<String>,
    /// The ingest root the document came from (for pruning).
    pub root: String,
}

/// The ingest record: per document, what is stored. The local manifest is one; a store that
/// keeps each chunk's document record in its payload is another ([`IngestLedger::in_chunks`]),
/// and then every worker sharing the store sees the same record.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait IngestLedger: Send + Sync {
    /// The entries of these documents (absent: never stored), in one batched lookup.
    async fn lookup(&self, doc_ids: Vec<String>) -> Result<HashMap<String, LedgerEntry>>;
    /// Records entries as pending before their chunks are written.
    async fn begin(&self, entries: Vec<(String, LedgerEntry)>) -> Result<()>;
    /// Records entries as final once their chunks are durable.
    async fn commit(&self, entries: Vec<(String, LedgerEntry)>) -> Result<()>;
    /// Forgets documents whose chunks were deleted.
    async fn forget(&self, doc_ids: Vec<String>) -> Result<()>;
    /// Every entry whose root is one of `roots` (for pruning).
    async fn under_roots(&self, roots: Vec<String>) -> Result<Vec<(String, LedgerEntry)>>;
    /// Documents with a final entry.
    async fn documents(&self) -> Result<usize>;
    /// Whether the record lives in the chunks themselves (their [`ledger_keys`] metadata),
    /// so the pipeline must stamp it on every chunk it writes; `begin`, `commit` and `forget`
    /// are then no-ops, the chunk writes being the record.
    fn in_chunks(&self) -> bool {
        false
    }
}

macro_rules! forward_ledger {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: IngestLedger + ?Sized> IngestLedger for $ptr<T> {
            async fn lookup(&self, doc_ids: Vec<String>) -> Result<HashMap<String, LedgerEntry>> { (**self).lookup(doc_ids).await }
            async fn begin(&self, entries: Vec<(String, LedgerEntry)>) -> Result<()> { (**self).begin(entries).await }
            async fn commit(&self, entries: Vec<(String, LedgerEntry)>) -> Result<()> { (**self).commit(entries).await }
            async fn forget(&self, doc_ids: Vec<String>) -> Result<()> { (**self).forget(doc_ids).await }
            async fn under_roots(&self, roots: Vec<String>) -> Result<Vec<(String, LedgerEntry)>> { (**self).under_roots(roots).await }
            async fn documents(&self) -> Result<usize> { (**self).documents().await }
            fn in_chunks(&self) -> bool { (**self).in_chunks() }
        }
    )*};
}
forward_ledger!(Arc, Box);

/// Reads a document record back from chunk payloads: `(doc_id, chunk_id, payload)` rows, as a
/// store that keeps the record in its chunks returns them, grouped into [`LedgerEntry`]s. A
/// document is final only when every stored chunk carries the same hash and as many chunks as
/// the record says are there; otherwise its hash is `None` and the next ingest redoes it,
/// deleting whatever chunk ids the new chunking lacks.
pub fn entries_from_chunks(rows: Vec<(String, String, crate::Metadata)>) -> HashMap<String, LedgerEntry> {
    struct Acc {
        hashes: std::collections::BTreeSet<Option<String>>,
        expected: std::collections::BTreeSet<Option<i64>>,
        ids: Vec<String>,
        root: String,
    }
    let mut by_doc: HashMap<String, Acc> = HashMap::new();
    for (doc_id, chunk_id, payload) in rows {
        let acc = by_doc.entry(doc_id).or_insert_with(|| Acc {
            hashes: Default::default(),
            expected: Default::default(),
            ids: Vec::new(),
            root: String::new(),
        });
        acc.hashes.insert(payload.get(ledger_keys::HASH).and_then(|v| v.as_str()).map(str::to_owned));
        acc.expected.insert(payload.get(ledger_keys::CHUNKS).and_then(|v| v.as_f64()).map(|n| n as i64));
        if let Some(root) = payload.get(ledger_keys::ROOT).and_then(|v| v.as_str()) {
            acc.root = root.to_owned();
        }
        acc.ids.push(chunk_id);
    }
    by_doc
        .into_iter()
        .map(|(doc, mut acc)| {
            acc.ids.sort();
            acc.ids.dedup();
            let complete = acc.expected.len() == 1 && acc.expected.first() == Some(&Some(acc.ids.len() as i64));
            let hash = match (acc.hashes.len(), complete) {
                (1, true) => acc.hashes.into_iter().next().flatten(),
                _ => None,
            };
            (doc, LedgerEntry { hash, chunk_ids: acc.ids, root: acc.root })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metadata, MetadataValue};

    fn row(doc: &str, id: &str, hash: &str, chunks: i64) -> (String, String, Metadata) {
        let mut m = Metadata::new();
        m.insert(ledger_keys::HASH.into(), MetadataValue::Str(hash.into()));
        m.insert(ledger_keys::CHUNKS.into(), MetadataValue::Int(chunks));
        m.insert(ledger_keys::ROOT.into(), MetadataValue::Str("corpus".into()));
        (doc.into(), id.into(), m)
    }

    #[test]
    fn a_document_is_final_only_when_its_chunks_agree_and_are_all_there() {
        let e = entries_from_chunks(vec![row("a", "a#0", "h1", 2), row("a", "a#1", "h1", 2)]);
        assert_eq!(e["a"].hash.as_deref(), Some("h1"));
        assert_eq!(e["a"].chunk_ids, ["a#0", "a#1"]);
        assert_eq!(e["a"].root, "corpus");
        // A new version half-written over an old one: two hashes, so pending.
        let e = entries_from_chunks(vec![row("a", "a#0", "h2", 1), row("a", "a#1", "h1", 2)]);
        assert_eq!(e["a"].hash, None);
        assert_eq!(e["a"].chunk_ids.len(), 2);
        // A first write cut short: one of three chunks stored.
        let e = entries_from_chunks(vec![row("b", "b#0", "h", 3)]);
        assert_eq!(e["b"].hash, None);
        // Chunks written without a record (another tool): never final.
        let e = entries_from_chunks(vec![("c".into(), "c#0".into(), Metadata::new())]);
        assert_eq!(e["c"].hash, None);
    }
}
