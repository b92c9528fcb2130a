//! [`KeywordIndex`]: a persistent, incremental BM25 keyword index over chunks, on tantivy; the
//! default [`KeywordSearch`] of a pipeline.
//!
//! English tokenisation (lower-casing, stop words, Snowball stemming; each configurable), add /
//! update / delete by chunk id, durable commits. Metadata filters use the reference semantics of
//! [`Filter::matches`] on over-retrieved candidates, widening until `k` pass or the index is exhausted.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use rag_core::{Candidate, Chunk, Filter, KeywordSearch, RagError, Result, RetrievalQuery, ScoredChunk};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};
mod sparse;
pub use sparse::{B as BM25_B, Bm25Encoder, K1 as BM25_K1, term_id};

use tantivy::index::{SegmentId, SegmentReader};
use tantivy::tokenizer::TokenStream;
use tantivy::{DocAddress, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TERMINATED, TantivyDocument, Term, doc};

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
/// average 81.6 analysed terms (`rag stats`; docs/benchmarks.md).
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
    /// The index's own analysis, applied to queries.
    analyzer: TextAnalyzer,
    /// Chunk ids by document, per segment: built from the fast field the first time a search
    /// lands in a segment, so naming a hit is an array lookup.
    ids: RwLock<HashMap<SegmentId, Arc<Vec<String>>>>,
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

/// The index's fields. `chunk_id` is also a fast field, so a search can name its hits without
/// reading the stored chunks.
fn schema() -> Schema {
    let mut sb = Schema::builder();
    sb.add_text_field("chunk_id", STRING | STORED | FAST);
    sb.add_text_field("doc_id", STRING);
    let indexing =
        TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqsAndPositions);
    sb.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
    sb.add_bytes_field("chunk", STORED);
    sb.build()
}

impl Fields {
    fn of(schema: &Schema) -> Result<Self> {
        Ok(Self {
            chunk_id: schema.get_field("chunk_id").map_err(kw_err)?,
            doc_id: schema.get_field("doc_id").map_err(kw_err)?,
            text: schema.get_field("text").map_err(kw_err)?,
            chunk: schema.get_field("chunk").map_err(kw_err)?,
        })
    }

    /// Adds one chunk; `stored` is its JSON.
    fn add(&self, w: &IndexWriter, c: &Chunk, stored: Vec<u8>) -> Result<()> {
        w.add_document(doc!(
            self.chunk_id => c.id.as_str(),
            self.doc_id => c.doc_id.as_str(),
            self.text => c.indexed_text(),
            self.chunk => stored,
        ))
        .map(|_| ())
        .map_err(kw_err)
    }
}

/// A directory beside the index's own, for the schema upgrade.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

const UPGRADE_STAGING: &str = ".upgrading";
const UPGRADE_RETIRED: &str = ".pre-upgrade";

/// Completes or rolls back a schema upgrade that a crash interrupted (see [`upgrade_schema`]):
/// the new index is renamed in only once it is committed, so a staging copy beside a missing
/// index is complete, and one beside a present index is not.
fn finish_interrupted_upgrade(dir: &Path) -> Result<()> {
    let staging = sibling(dir, UPGRADE_STAGING);
    let retired = sibling(dir, UPGRADE_RETIRED);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| RagError::io(p, e)
    };
    if !dir.exists() {
        if staging.exists() {
            std::fs::rename(&staging, dir).map_err(io(&staging))?;
        } else if retired.exists() {
            std::fs::rename(&retired, dir).map_err(io(&retired))?;
        }
    }
    for leftover in [staging, retired] {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover).map_err(io(&leftover))?;
        }
    }
    Ok(())
}

/// Rewrites an index made before chunk ids were a fast field into the current schema, from
/// the chunks it stores (nothing is re-embedded; the ingest record is untouched): built beside
/// the old one, committed, then renamed into its place. The old index's writer lock is held
/// throughout, so no ingest writes to it meanwhile.
fn upgrade_schema(dir: &Path, old: Index, cfg: &KeywordConfig) -> Result<()> {
    let _lock = old.writer::<TantivyDocument>(15_000_000).map_err(|e| RagError::Busy {
        what: "keyword index".into(),
        path: dir.to_owned(),
        message: format!("it needs an upgrade, which cannot run while it is being written ({e}); retry when the writer is done"),
    })?;
    let old_fields = Fields::of(&old.schema())?;
    let searcher = old.reader().map_err(kw_err)?.searcher();
    let staging = sibling(dir, UPGRADE_STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| RagError::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| RagError::io(&staging, e))?;
    let schema = schema();
    let fields = Fields::of(&schema)?;
    let new = Index::create_in_dir(&staging, schema).map_err(kw_err)?;
    new.tokenizers().register(TOKENIZER, analyzer(cfg)?);
    let mut writer: IndexWriter = new.writer(64_000_000).map_err(kw_err)?;
    let mut copied = 0usize;
    for segment in searcher.segment_readers() {
        let store = segment.get_store_reader(64).map_err(kw_err)?;
        for doc in store.iter::<TantivyDocument>(segment.alive_bitset()) {
            let doc = doc.map_err(kw_err)?;
            let Some(bytes) = doc.get_first(old_fields.chunk).and_then(|v| v.as_bytes()) else { continue };
            let chunk: Chunk = serde_json::from_slice(bytes).map_err(kw_err)?;
            fields.add(&writer, &chunk, bytes.to_vec())?;
            copied += 1;
        }
    }
    writer.commit().map_err(kw_err)?;
    writer.wait_merging_threads().map_err(kw_err)?;
    drop(new);
    let retired = sibling(dir, UPGRADE_RETIRED);
    std::fs::rename(dir, &retired).map_err(|e| RagError::io(dir, e))?;
    std::fs::rename(&staging, dir).map_err(|e| RagError::io(&staging, e))?;
    std::fs::remove_dir_all(&retired).map_err(|e| RagError::io(&retired, e))?;
    tracing::info!(path = %dir.display(), chunks = copied, "keyword index upgraded: chunk ids are now a fast field");
    Ok(())
}

/// Opens the on-disk index in `d` (creating it when absent), upgrading one of an older schema.
fn open_dir(d: &Path, cfg: &KeywordConfig) -> Result<Index> {
    finish_interrupted_upgrade(d)?;
    std::fs::create_dir_all(d).map_err(|e| RagError::io(d, e))?;
    let unreadable = |e: tantivy::TantivyError| {
        RagError::permanent("keyword index", format!("{}: {e} (delete the directory to rebuild it by re-ingesting)", d.display()))
    };
    let mmap = tantivy::directory::MmapDirectory::open(d).map_err(kw_err)?;
    if Index::exists(&mmap).map_err(kw_err)? {
        let existing = Index::open(mmap).map_err(unreadable)?;
        let schema = existing.schema();
        let fast_ids = schema.get_field("chunk_id").is_ok_and(|f| schema.get_field_entry(f).is_fast());
        if !fast_ids {
            upgrade_schema(d, existing, cfg)?;
        }
    }
    let mmap = tantivy::directory::MmapDirectory::open(d).map_err(kw_err)?;
    Index::open_or_create(mmap, schema()).map_err(unreadable)
}

impl KeywordIndex {
    /// An index held in memory (nothing on disk, gone with the process): the keyword side of a
    /// pipeline for prototypes and tests.
    pub fn in_memory(cfg: &KeywordConfig) -> Result<Self> {
        Self::open(None, cfg)
    }

    /// Opens (or creates) the index in `dir`; `None` keeps it in memory. An index written by
    /// an earlier version (chunk ids not yet a fast field) is rewritten once from its stored
    /// chunks (nothing is re-embedded).
    pub fn open(dir: Option<&Path>, cfg: &KeywordConfig) -> Result<Self> {
        let index = match dir {
            Some(d) => open_dir(d, cfg)?,
            None => Index::create_in_ram(schema()),
        };
        index.tokenizers().register(TOKENIZER, analyzer(cfg)?);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(kw_err)?;
        let fields = Fields::of(&index.schema())?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                writer: Mutex::new(None),
                fields,
                analyzer: analyzer(cfg)?,
                ids: RwLock::new(HashMap::new()),
                path: dir.map(Path::to_path_buf),
            }),
        })
    }
}

impl Inner {
    fn with_writer<T>(&self, f: impl FnOnce(&mut IndexWriter) -> Result<T>) -> Result<T> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            // Opened lazily: a process that only queries never takes the writer lock.
            let w = self.index.writer(64_000_000).map_err(|e| match (&e, &self.path) {
                (tantivy::TantivyError::LockFailure(..), Some(dir)) => {
                    RagError::Busy { what: "keyword index".into(), path: dir.clone(), message: e.to_string() }
                }
                _ => RagError::permanent("keyword index", format!("cannot open the writer: {e}")),
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
                self.fields.add(w, c, serde_json::to_vec(c).map_err(kw_err)?)?;
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
        let q = self.query(query);
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
                if filter.is_none_or(|f| f.matches(&rag_core::rules::filter_view(&chunk))) {
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

impl Inner {
    /// The best `k` chunk ids for `query` by BM25, with their scores, best first: names come
    /// from the chunk-id fast field, so no stored chunk is read or decoded.
    pub fn search_ids(&self, query: &str, k: usize) -> Result<Vec<(String, f32)>> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(&self.query(query), &TopDocs::with_limit(k).order_by_score()).map_err(kw_err)?;
        let mut tables: HashMap<u32, Arc<Vec<String>>> = HashMap::new();
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let table = match tables.entry(addr.segment_ord) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(self.id_table(searcher.segment_reader(addr.segment_ord))?),
            };
            let id = table.get(addr.doc_id as usize).ok_or_else(|| kw_err("a hit beyond its segment's id table"))?;
            out.push((id.clone(), score));
        }
        Ok(out)
    }

    /// The words of a question as one BM25 disjunction over the index's own analysis (every
    /// character is a word character: nothing in a question is query syntax).
    fn query(&self, text: &str) -> BooleanQuery {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        while let Some(token) = stream.next() {
            let term = Term::from_field_text(self.fields.text, &token.text);
            clauses.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))));
        }
        BooleanQuery::new(clauses)
    }

    /// The chunk id of every document of `segment`, by document number, from the fast field
    /// (cached per segment; a segment never changes, only disappears in a merge).
    fn id_table(&self, segment: &SegmentReader) -> Result<Arc<Vec<String>>> {
        let id = segment.segment_id();
        if let Some(table) = self.ids.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(table.clone());
        }
        let column =
            segment.fast_fields().str("chunk_id").map_err(kw_err)?.ok_or_else(|| kw_err("chunk_id is not a fast field"))?;
        let mut by_ord: Vec<String> = Vec::with_capacity(column.num_terms());
        let mut terms = column.dictionary().stream().map_err(kw_err)?;
        while terms.advance() {
            by_ord.push(String::from_utf8_lossy(terms.key()).into_owned());
        }
        let table: Vec<String> = (0..segment.max_doc())
            .map(|doc| column.term_ords(doc).next().and_then(|ord| by_ord.get(ord as usize)).cloned().unwrap_or_default())
            .collect();
        let table = Arc::new(table);
        let mut cache = self.ids.write().unwrap_or_else(|p| p.into_inner());
        // Forget segments merged away since.
        let live: HashSet<SegmentId> = self.reader.searcher().segment_readers().iter().map(SegmentReader::segment_id).collect();
        cache.retain(|seg, _| live.contains(seg));
        cache.insert(id, table.clone());
        Ok(table)
    }

    /// The stored chunks with these ids (each looked up in the id's postings), in the order
    /// given; ids not in the index are left out.
    pub fn chunks_by_id(&self, ids: &[String]) -> Result<Vec<Chunk>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let term = Term::from_field_text(self.fields.chunk_id, id);
            for (ord, segment) in searcher.segment_readers().iter().enumerate() {
                let index = segment.inverted_index(self.fields.chunk_id).map_err(kw_err)?;
                let Some(mut postings) = index.read_postings(&term, IndexRecordOption::Basic).map_err(kw_err)? else { continue };
                let mut doc = postings.doc();
                // An update leaves the replaced copy behind as deleted until a merge.
                while doc != TERMINATED && segment.alive_bitset().is_some_and(|alive| !alive.is_alive(doc)) {
                    doc = postings.advance();
                }
                if doc == TERMINATED {
                    continue;
                }
                let d: TantivyDocument = searcher.doc(DocAddress::new(ord as u32, doc)).map_err(kw_err)?;
                if let Some(bytes) = d.get_first(self.fields.chunk).and_then(|v| v.as_bytes()) {
                    out.push(serde_json::from_slice(bytes).map_err(kw_err)?);
                    break;
                }
            }
        }
        Ok(out)
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
    /// The best `k` chunk ids for `query` by BM25 with their scores, best first, without
    /// reading any stored chunk (the fast path hybrid fusion uses).
    pub fn search_ids(&self, query: &str, k: usize) -> Result<Vec<(String, f32)>> {
        self.inner.search_ids(query, k)
    }
    /// The stored chunks with these ids, in the order given; unknown ids are left out.
    pub fn chunks_by_id(&self, ids: &[String]) -> Result<Vec<Chunk>> {
        self.inner.chunks_by_id(ids)
    }

    /// Runs blocking index work off the async runtime.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| RagError::internal_from("a keyword index task failed", e))?
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

    /// Without a filter, ids and scores from the fast field alone; a filter needs each
    /// candidate's metadata, so a filtered search reads the chunks (and hands them over).
    async fn candidates(&self, query: RetrievalQuery) -> Result<Vec<Candidate>> {
        if query.filter.is_some() {
            return Ok(KeywordSearch::search(self, query).await?.into_iter().map(Candidate::from).collect());
        }
        self.blocking(move |k| {
            Ok(k.search_ids(&query.text, query.k)?.into_iter().map(|(id, score)| Candidate { id, score, chunk: None }).collect())
        })
        .await
    }

    /// A query's handful of chunks are read in place: a few point lookups (tens of
    /// microseconds) cost less than handing them to a blocking thread and back.
    async fn chunks(&self, ids: Vec<String>) -> Result<Vec<Chunk>> {
        if ids.len() <= INLINE_LOOKUPS {
            return self.inner.chunks_by_id(&ids);
        }
        self.blocking(move |k| k.chunks_by_id(&ids)).await
    }
}

/// Up to this many chunks are looked up on the caller's thread (a query's default k is 5; a
/// larger fetch, up to the maximum k of 1,000, goes to a blocking thread).
const INLINE_LOOKUPS: usize = 16;

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

    fn corpus() -> Vec<Chunk> {
        (0..40)
            .map(|i| {
                let words = ["running", "shoes", "pasta", "dinner", "marathon", "kitchen", "late"];
                let text: Vec<&str> = (0..(i % 7 + 2)).map(|j| words[(i * 3 + j) % words.len()]).collect();
                chunk(&format!("d{i}#0"), &format!("d{i}"), &text.join(" "), if i % 2 == 0 { "en" } else { "de" })
            })
            .collect()
    }

    #[test]
    fn the_fast_path_names_the_same_hits_as_the_full_search_and_fetches_by_id() {
        let idx = KeywordIndex::open(None, &KeywordConfig::default()).unwrap();
        // Two commits: hits come from more than one segment.
        let all = corpus();
        idx.upsert(&all[..20]).unwrap();
        idx.commit().unwrap();
        idx.upsert(&all[20..]).unwrap();
        idx.commit().unwrap();
        for (q, k) in [("running shoes", 10), ("pasta dinner late", 25), ("marathon", 40), ("nothing matches", 5)] {
            let full: Vec<(String, f32)> = idx.search(q, k, None).unwrap().into_iter().map(|h| (h.chunk.id, h.score)).collect();
            let fast = idx.search_ids(q, k).unwrap();
            assert_eq!(fast, full, "{q}");
        }
        let ids: Vec<String> = vec!["d31#0".into(), "missing#0".into(), "d2#0".into()];
        let got = idx.chunks_by_id(&ids).unwrap();
        assert_eq!(got, vec![all[31].clone(), all[2].clone()], "in the order asked, unknown ids left out");
        // An update leaves a deleted copy behind in an older segment: neither path sees it.
        let changed = chunk("d2#0", "d2", "marathon marathon kitchen", "en");
        idx.upsert(std::slice::from_ref(&changed)).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.chunks_by_id(&["d2#0".to_owned()]).unwrap(), vec![changed]);
        let full: Vec<(String, f32)> =
            idx.search("marathon", 40, None).unwrap().into_iter().map(|h| (h.chunk.id, h.score)).collect();
        assert_eq!(idx.search_ids("marathon", 40).unwrap(), full);
        assert_eq!(full.iter().filter(|(id, _)| id == "d2#0").count(), 1);
    }

    #[tokio::test]
    async fn candidates_leave_chunks_out_unless_a_filter_needs_them() {
        let idx = KeywordIndex::open(None, &KeywordConfig::default()).unwrap();
        idx.upsert(&corpus()).unwrap();
        idx.commit().unwrap();
        let q = |filter| RetrievalQuery { text: "running shoes".into(), k: 8, filter };
        let fast = KeywordSearch::candidates(&idx, q(None)).await.unwrap();
        assert_eq!(fast.len(), 8);
        assert!(fast.iter().all(|c| c.chunk.is_none()));
        let filtered = KeywordSearch::candidates(&idx, q(Some(Filter::eq("lang", "de")))).await.unwrap();
        assert!(!filtered.is_empty());
        assert!(filtered.iter().all(|c| c.chunk.as_ref().is_some_and(|ch| ch.metadata["lang"] == "de".into())));
        let fetched = KeywordSearch::chunks(&idx, fast.iter().map(|c| c.id.clone()).collect()).await.unwrap();
        assert_eq!(
            fetched.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            fast.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()
        );
    }

    /// Writes an index as versions before the fast field did (chunk ids STRING | STORED).
    fn write_old_index(dir: &Path, chunks: &[Chunk]) {
        let mut sb = Schema::builder();
        sb.add_text_field("chunk_id", STRING | STORED);
        sb.add_text_field("doc_id", STRING);
        let indexing =
            TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqsAndPositions);
        sb.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
        sb.add_bytes_field("chunk", STORED);
        std::fs::create_dir_all(dir).unwrap();
        let index = Index::create_in_dir(dir, sb.build()).unwrap();
        index.tokenizers().register(TOKENIZER, analyzer(&KeywordConfig::default()).unwrap());
        let fields = Fields::of(&index.schema()).unwrap();
        let mut w: IndexWriter = index.writer(15_000_000).unwrap();
        for c in chunks {
            fields.add(&w, c, serde_json::to_vec(c).unwrap()).unwrap();
        }
        w.commit().unwrap();
        w.wait_merging_threads().unwrap();
    }

    #[test]
    fn an_index_of_the_old_schema_is_upgraded_in_place_from_its_stored_chunks() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keyword");
        let all = corpus();
        write_old_index(&dir, &all);
        let idx = KeywordIndex::open(Some(&dir), &KeywordConfig::default()).unwrap();
        assert_eq!(idx.count(), all.len());
        let schema = idx.inner.index.schema();
        assert!(schema.get_field_entry(schema.get_field("chunk_id").unwrap()).is_fast());
        let mut stored = idx.all_chunks().unwrap();
        stored.sort_by(|a, b| a.id.cmp(&b.id));
        let mut expected = all.clone();
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(stored, expected, "every chunk, metadata included, survives the upgrade");
        let full: Vec<String> = idx.search("marathon", 10, None).unwrap().into_iter().map(|h| h.chunk.id).collect();
        let fast: Vec<String> = idx.search_ids("marathon", 10).unwrap().into_iter().map(|(id, _)| id).collect();
        assert!(!fast.is_empty());
        assert_eq!(fast, full);
        let names: Vec<String> =
            std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["keyword".to_owned()], "nothing left beside the index");
        // Writes go on as before.
        idx.delete_document("d3").unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.count(), all.len() - 1);
    }

    #[test]
    fn an_interrupted_upgrade_is_completed_or_rolled_back_at_the_next_open() {
        let all = corpus();
        // Crashed between the two renames: the committed new index waits in staging.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keyword");
        let staged = KeywordIndex::open(Some(&sibling(&dir, UPGRADE_STAGING)), &KeywordConfig::default()).unwrap();
        staged.upsert(&all).unwrap();
        staged.commit().unwrap();
        drop(staged);
        write_old_index(&sibling(&dir, UPGRADE_RETIRED), &all[..3]);
        let idx = KeywordIndex::open(Some(&dir), &KeywordConfig::default()).unwrap();
        assert_eq!(idx.count(), all.len(), "the staged index was renamed in");
        assert!(!sibling(&dir, UPGRADE_STAGING).exists() && !sibling(&dir, UPGRADE_RETIRED).exists());
        // Crashed while building the copy: the old index is still in place; the partial copy goes.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keyword");
        write_old_index(&dir, &all);
        std::fs::create_dir_all(sibling(&dir, UPGRADE_STAGING)).unwrap();
        std::fs::write(sibling(&dir, UPGRADE_STAGING).join("meta.json"), b"{half").unwrap();
        let idx = KeywordIndex::open(Some(&dir), &KeywordConfig::default()).unwrap();
        assert_eq!(idx.count(), all.len());
        assert!(!sibling(&dir, UPGRADE_STAGING).exists());
        // Only the retired index is left: it is put back (and upgraded) rather than lost.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keyword");
        write_old_index(&sibling(&dir, UPGRADE_RETIRED), &all);
        let idx = KeywordIndex::open(Some(&dir), &KeywordConfig::default()).unwrap();
        assert_eq!(idx.count(), all.len());
    }
}
