//! [`KeywordIndex`]: a persistent, incremental BM25 keyword index over chunks, on tantivy; the
//! default [`KeywordSearch`] of a pipeline.
//!
//! English tokenisation (lower-casing, stop words, Snowball stemming; each configurable), add /
//! update / delete by chunk id, durable commits. Metadata filters use the reference semantics of
//! [`Filter::matches`] on over-retrieved candidates, widening until `k` pass or the index is exhausted.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rag_core::{Chunk, Filter, KeywordSearch, MetadataValue, RagError, Result, RetrievalQuery, ScoredChunk};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};
mod sparse;
pub use sparse::{B as BM25_B, Bm25Encoder, K1 as BM25_K1, term_id};

use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

/// Text analysis settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeywordConfig {
    /// Snowball English stemming.
    pub stemming: bool,
    /// Remove English stop words.
    pub stop_words: bool,
    /// Average analysed terms per chunk, for BM25's length normalisation when a store keeps
    /// BM25 as sparse vectors (`store.index = engine`): the engine keeps document frequencies
    /// but not lengths, so the average is fixed when vectors are written.
    pub avg_chunk_terms: u32,
}

impl Default for KeywordConfig {
    fn default() -> Self {
        Self { stemming: true, stop_words: true, avg_chunk_terms: DEFAULT_AVG_CHUNK_TERMS }
    }
}

/// The default of [`KeywordConfig::avg_chunk_terms`]: SciFact's chunks with the default chunker
/// average 81.6 analysed terms (`rag stats`; README, Benchmarks).
pub const DEFAULT_AVG_CHUNK_TERMS: u32 = 80;

const TOKENIZER: &str = "rag_en";

struct Fields {
    chunk_id: Field,
    doc_id: Field,
    text: Field,
    chunk: Field,
}

/// The keyword index. Searches run concurrently; writes go through one writer. Cheap to clone
/// (clones share the index).
#[derive(Clone)]
pub struct KeywordIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
    /// Built once: parsing a query is then only tokenisation.
    parser: QueryParser,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

fn kw_err(e: impl std::fmt::Display) -> RagError {
    RagError::permanent("keyword index", e.to_string())
}

fn analyzer(cfg: &KeywordConfig) -> Result<TextAnalyzer> {
    let mut b =
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).dynamic();
    if cfg.stop_words {
        let stop = StopWordFilter::new(Language::English).ok_or_else(|| kw_err("no English stop-word list"))?;
        b = b.filter_dynamic(stop);
    }
    if cfg.stemming {
        b = b.filter_dynamic(Stemmer::new(Language::English));
    }
    Ok(b.build())
}

impl KeywordIndex {
    /// Opens (or creates) the index in `dir`; `None` keeps it in memory.
    pub fn open(dir: Option<&Path>, cfg: &KeywordConfig) -> Result<Self> {
        let mut sb = Schema::builder();
        let chunk_id = sb.add_text_field("chunk_id", STRING | STORED);
        let doc_id = sb.add_text_field("doc_id", STRING);
        let indexing =
            TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let text = sb.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
        let chunk = sb.add_bytes_field("chunk", STORED);
        let schema = sb.build();
        let index = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| RagError::io(d, e))?;
                let mmap = tantivy::directory::MmapDirectory::open(d).map_err(kw_err)?;
                Index::open_or_create(mmap, schema.clone()).map_err(|e| {
                    RagError::permanent(
                        "keyword index",
                        format!("{}: {e} (delete the directory to rebuild it by re-ingesting)", d.display()),
                    )
                })?
            }
            None => Index::create_in_ram(schema.clone()),
        };
        index.tokenizers().register(TOKENIZER, analyzer(cfg)?);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(kw_err)?;
        let fields = Fields {
            chunk_id: schema.get_field("chunk_id").map_err(kw_err)?,
            doc_id: schema.get_field("doc_id").map_err(kw_err)?,
            text: schema.get_field("text").map_err(kw_err)?,
            chunk: schema.get_field("chunk").map_err(kw_err)?,
        };
        let _ = (chunk_id, doc_id, text, chunk);
        let parser = QueryParser::for_index(&index, vec![fields.text]);
        Ok(Self {
            inner: Arc::new(Inner { index, reader, writer: Mutex::new(None), fields, parser, path: dir.map(Path::to_path_buf) }),
        })
    }
}

impl Inner {
    fn with_writer<T>(&self, f: impl FnOnce(&mut IndexWriter) -> Result<T>) -> Result<T> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            // Opened lazily: a process that only queries never takes the writer lock.
            let w = self.index.writer(64_000_000).map_err(|e| {
                RagError::permanent(
                    "keyword index",
                    format!("cannot open the writer: {e} (is another `rag ingest` running on this data directory?)"),
                )
            })?;
            *guard = Some(w);
        }
        match guard.as_mut() {
            Some(w) => f(w),
            None => Err(kw_err("writer unavailable")),
        }
    }

    /// Adds or replaces chunks by id (visible after [`KeywordIndex::commit`]).
    pub fn upsert(&self, chunks: &[Chunk]) -> Result<()> {
        self.with_writer(|w| {
            for c in chunks {
                w.delete_term(Term::from_field_text(self.fields.chunk_id, &c.id));
                let stored = serde_json::to_vec(c).map_err(kw_err)?;
                w.add_document(doc!(
                    self.fields.chunk_id => c.id.as_str(),
                    self.fields.doc_id => c.doc_id.as_str(),
                    self.fields.text => c.indexed_text(),
                    self.fields.chunk => stored,
                ))
                .map_err(kw_err)?;
            }
            Ok(())
        })
    }

    /// Deletes chunks by id.
    pub fn delete(&self, ids: &[String]) -> Result<()> {
        self.with_writer(|w| {
            for id in ids {
                w.delete_term(Term::from_field_text(self.fields.chunk_id, id));
            }
            Ok(())
        })
    }

    /// Deletes every chunk of a document.
    pub fn delete_document(&self, doc_id: &str) -> Result<()> {
        self.with_writer(|w| {
            w.delete_term(Term::from_field_text(self.fields.doc_id, doc_id));
            Ok(())
        })
    }

    /// Makes pending writes durable and visible.
    pub fn commit(&self) -> Result<()> {
        self.with_writer(|w| w.commit().map(|_| ()).map_err(kw_err))?;
        self.reader.reload().map_err(kw_err)
    }

    /// Re-reads the index from disk (another process may have committed).
    pub fn reload(&self) -> Result<()> {
        self.reader.reload().map_err(kw_err)
    }

    /// Number of indexed chunks.
    pub fn count(&self) -> usize {
        self.reader.searcher().num_docs() as usize
    }

    /// Every indexed chunk, in index order.
    pub fn all_chunks(&self) -> Result<Vec<Chunk>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(searcher.num_docs() as usize);
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(64).map_err(kw_err)?;
            for doc in store.iter::<TantivyDocument>(segment.alive_bitset()) {
                let doc = doc.map_err(kw_err)?;
                if let Some(bytes) = doc.get_first(self.fields.chunk).and_then(|v| v.as_bytes()) {
                    out.push(serde_json::from_slice(bytes).map_err(kw_err)?);
                }
            }
        }
        Ok(out)
    }

    /// The best `k` chunks for `query` by BM25 that pass `filter`, best first.
    pub fn search(&self, query: &str, k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredChunk>> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        if let Some(f) = filter {
            f.validate()?;
        }
        let searcher = self.reader.searcher();
        // Lenient: user questions contain quotes, colons and parentheses that are query syntax.
        let (q, _errors) = self.parser.parse_query_lenient(query);
        let total = searcher.num_docs() as usize;
        let mut limit = if filter.is_some() { (k * 4).max(50) } else { k };
        loop {
            let top = searcher.search(&q, &TopDocs::with_limit(limit.max(1)).order_by_score()).map_err(kw_err)?;
            let n = top.len();
            let mut out = Vec::with_capacity(k);
            for (score, addr) in top {
                let d: TantivyDocument = searcher.doc(addr).map_err(kw_err)?;
                let Some(bytes) = d.get_first(self.fields.chunk).and_then(|v| v.as_bytes()) else { continue };
                let chunk: Chunk = serde_json::from_slice(bytes).map_err(kw_err)?;
                if filter.is_none_or(|f| f.matches(&reserved_view(&chunk))) {
                    out.push(ScoredChunk { chunk, score });
                    if out.len() == k {
                        break;
                    }
                }
            }
            if out.len() >= k || n < limit || limit >= total {
                return Ok(out);
            }
            limit = (limit * 4).min(total.max(1));
        }
    }
}

/// The synchronous API (tantivy blocks: call it off the async runtime, or use the
/// [`KeywordSearch`] impl, which does).
impl KeywordIndex {
    /// Adds or replaces chunks by id (visible after [`KeywordIndex::commit`]).
    pub fn upsert(&self, chunks: &[Chunk]) -> Result<()> {
        self.inner.upsert(chunks)
    }
    /// Deletes chunks by id.
    pub fn delete(&self, ids: &[String]) -> Result<()> {
        self.inner.delete(ids)
    }
    /// Deletes every chunk of a document.
    pub fn delete_document(&self, doc_id: &str) -> Result<()> {
        self.inner.delete_document(doc_id)
    }
    /// Makes pending writes durable and visible.
    pub fn commit(&self) -> Result<()> {
        self.inner.commit()
    }
    /// Re-reads the index from disk (another process may have committed).
    pub fn reload(&self) -> Result<()> {
        self.inner.reload()
    }
    /// Number of indexed chunks.
    pub fn count(&self) -> usize {
        self.inner.count()
    }
    /// Every indexed chunk, in index order.
    pub fn all_chunks(&self) -> Result<Vec<Chunk>> {
        self.inner.all_chunks()
    }
    /// The best `k` chunks for `query` by BM25 that pass `filter`, best first.
    pub fn search(&self, query: &str, k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredChunk>> {
        self.inner.search(query, k, filter)
    }

    /// Runs blocking index work off the async runtime.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| RagError::Other(format!("keyword index task failed: {e}")))?
    }
}

#[async_trait]
impl KeywordSearch for KeywordIndex {
    async fn write(&self, upsert: Vec<Chunk>, delete: Vec<String>) -> Result<()> {
        self.blocking(move |k| {
            k.upsert(&upsert)?;
            k.delete(&delete)?;
            k.commit()
        })
        .await
    }

    async fn search(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>> {
        self.blocking(move |k| k.search(&query.text, query.k, query.filter.as_ref())).await
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.inner.count())
    }

    async fn scan(&self) -> Result<Vec<Chunk>> {
        self.blocking(|k| k.all_chunks()).await
    }
}

/// Metadata plus the chunk's own fields under the stores' reserved names (overriding metadata
/// keys of the same name, as the stores' payloads do), so a filter means the same here as in a
/// vector store.
fn reserved_view(c: &Chunk) -> rag_core::Metadata {
    let mut m = c.metadata.clone();
    m.insert("doc_id".into(), MetadataValue::Str(c.doc_id.clone()));
    m.insert("chunk_index".into(), MetadataValue::Int(c.index as i64));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, doc: &str, text: &str, lang: &str) -> Chunk {
        let mut c = Chunk::new(id, doc, text);
        c.metadata.insert("lang".into(), lang.into());
        c
    }

    #[test]
    fn stems_filters_updates_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let idx = KeywordIndex::open(Some(dir.path()), &KeywordConfig::default()).unwrap();
        idx.upsert(&[
            chunk("a#0", "a", "Running shoes for marathon runners", "en"),
            chunk("b#0", "b", "The dog runs quickly", "de"),
            chunk("c#0", "c", "Cooking pasta at home", "en"),
        ])
        .unwrap();
        idx.commit().unwrap();
        let hits = idx.search("run", 10, None).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.chunk.id.as_str()).collect();
        assert!(ids.contains(&"a#0") && ids.contains(&"b#0") && !ids.contains(&"c#0"), "stemming: {ids:?}");
        assert!(idx.search("the", 10, None).unwrap().is_empty(), "stop words are not indexed");
        let f = Filter::eq("lang", "de");
        let hits = idx.search("run", 10, Some(&f)).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk.id, "b#0");
        assert_eq!(idx.search("run", 10, Some(&Filter::eq("doc_id", "a"))).unwrap().len(), 1);
        // Update and delete by id.
        idx.upsert(&[chunk("c#0", "c", "Running late for dinner", "en")]).unwrap();
        idx.delete(&["a#0".into()]).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.count(), 2);
        let ids: Vec<String> = idx.search("running", 10, None).unwrap().into_iter().map(|h| h.chunk.id).collect();
        assert!(ids.contains(&"c#0".to_owned()) && !ids.contains(&"a#0".to_owned()));
        // Query syntax in user text does not fail.
        assert!(idx.search("what is (running) \"late\": AND OR", 5, None).is_ok());
        assert_eq!(idx.all_chunks().unwrap().len(), 2);
        drop(idx);
        let reopened = KeywordIndex::open(Some(dir.path()), &KeywordConfig::default()).unwrap();
        assert_eq!(reopened.count(), 2, "survives restarts");
        reopened.delete_document("c").unwrap();
        reopened.commit().unwrap();
        assert_eq!(reopened.count(), 1);
    }
}
