//! Indexing: any [`DocumentSource`] into the vector store, the keyword index and the ingest
//! record (the manifest, or the store itself), idempotently and crash-safely; deleting a
//! document from all three.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use futures::StreamExt;
use rag_core::{
    Chunk, DocumentSource, EmbeddedChunk, LedgerEntry, MetadataValue, PAGE_END_KEY, PAGE_KEY, RagError, Result, Skipped,
    SourceDocument, SourceItem, TextFormat, content_hash, ledger_keys,
};
use serde::Serialize;

use crate::pipeline::{CacheCounters, Progress, RagPipeline};
use crate::sys::peak_rss_mb;

/// How an ingest runs. Built with its methods; `IngestOptions::default()` ingests without
/// pruning, in batches of 64 documents, with no progress callback.
#[derive(Clone)]
#[non_exhaustive]
pub struct IngestOptions {
    prune: bool,
    progress: Option<Progress>,
    batch_documents: usize,
    batch_chunks: usize,
    cache_namespace: Option<String>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { prune: false, progress: None, batch_documents: 64, batch_chunks: 512, cache_namespace: None }
    }
}

impl std::fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("prune", &self.prune)
            .field("batch_documents", &self.batch_documents)
            .field("batch_chunks", &self.batch_chunks)
            .field("cache_namespace", &self.cache_namespace)
            .finish_non_exhaustive()
    }
}

impl IngestOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remove documents of the source's origins that it no longer yields.
    pub fn prune(mut self, yes: bool) -> Self {
        self.prune = yes;
        self
    }

    /// Called with `(done, total)` documents as the ingest goes (`total` 0 while unknown).
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(std::sync::Arc::new(f));
        self
    }

    /// Documents written per batch (at least 1; a batch is also closed at 8x as many chunks).
    pub fn batch_size(mut self, documents: usize) -> Self {
        self.batch_documents = documents.max(1);
        self.batch_chunks = documents.max(1) * 8;
        self
    }

    /// Embeds through the cache entries of `namespace` only ([`rag_core::Embedder::embed_in`]):
    /// for an ingest on behalf of a tenant, whose report (and speed) must not tell whether
    /// another tenant stored the same text. The report's `cache_hits` are then exactly this
    /// ingest's, from the namespace's own entries.
    pub fn cache_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.cache_namespace = Some(namespace.into());
        self
    }

    fn report(&self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(done, total);
        }
    }
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct IngestReport {
    /// Documents seen (changed + unchanged).
    pub documents: u64,
    /// Chunks written this run.
    pub chunks: u64,
    /// Texts sent to the embedding model (cache misses).
    pub embedded: u64,
    /// Texts served from the embedding cache.
    pub cache_hits: u64,
    /// Documents skipped because their content hash had not changed.
    pub unchanged: u64,
    /// Documents removed by pruning.
    pub removed: u64,
    /// Inputs that were not ingested, with the reason.
    pub skipped: Vec<Skipped>,
    /// Wall time.
    pub seconds: f64,
    /// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere).
    pub peak_rss_mb: Option<f64>,
}

/// What the reading stage of an ingest saw.
#[derive(Default)]
struct ReadStage {
    /// Items read from the source (documents and skipped inputs), for progress.
    read: u64,
    documents: u64,
    unchanged: u64,
    skipped: Vec<Skipped>,
    seen: HashSet<String>,
}

/// Chunked documents on their way from the reading stage to the writing stage.
struct ChunkedBatch {
    docs: Vec<Pending>,
    /// Items read from the source when the batch was closed.
    read: u64,
}

/// What the writing stage did, summed over batches.
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    chunks: u64,
    /// Texts handed to the embedder.
    texts: u64,
    /// Of those, the ones a namespaced cache served.
    cache_hits: u64,
}

impl Written {
    fn add(&mut self, other: Written) {
        self.chunks += other.chunks;
        self.texts += other.texts;
        self.cache_hits += other.cache_hits;
    }
}

/// A document waiting to be written.
struct Pending {
    doc_id: String,
    hash: String,
    root: String,
    chunks: Vec<Chunk>,
    old: Option<LedgerEntry>,
}

/// A document as messages name it: with the file it came from, when the source says.
pub(crate) fn document_label(d: &SourceDocument) -> String {
    match d.document.metadata.get("source").and_then(MetadataValue::as_str) {
        Some(source) => format!("{source}: document `{}`", d.document.id),
        None => format!("document `{}`", d.document.id),
    }
}

/// Refuses a document without an id.
pub(crate) fn check_id_present(d: &SourceDocument) -> Result<()> {
    if d.document.id.is_empty() {
        return Err(RagError::invalid_input(
            format!("a document from `{}`", d.origin),
            "its id is empty: give every document an id",
        ));
    }
    Ok(())
}

/// Refuses an id `seen` already holds in this ingest; adds it otherwise.
pub(crate) fn check_id_unique(d: &SourceDocument, seen: &mut HashSet<String>) -> Result<()> {
    if !seen.insert(d.document.id.clone()) {
        return Err(RagError::invalid_input(document_label(d), "the id appears twice in this ingest: ids must be unique"));
    }
    Ok(())
}

impl RagPipeline {
    fn counters(&self) -> CacheCounters {
        self.cache_probe.as_ref().map(|p| p()).unwrap_or_default()
    }

    fn chunker_for(&self, format: TextFormat) -> &std::sync::Arc<dyn rag_core::Chunker> {
        match format {
            TextFormat::Markdown => &self.markdown_chunker,
            _ => &self.chunker,
        }
    }

    fn doc_hash(&self, d: &SourceDocument) -> String {
        let meta = serde_json::to_string(&d.document.metadata).unwrap_or_default();
        let chunker = self.chunker_for(d.format).fingerprint();
        let model = self.embedder.as_ref().map(|e| e.model_id()).unwrap_or_default();
        // Unpaged documents hash as they always did, so existing ingests stay unchanged.
        let pages = if d.page_starts.is_empty() { String::new() } else { format!("\u{0}pages {:?}", d.page_starts) };
        // Likewise only a store that encodes chunks itself (BM25 sparse vectors) adds its encoder.
        let index = self.index_fingerprint.as_ref().map(|f| format!("\u{0}index {f}")).unwrap_or_default();
        content_hash(&format!("{}\u{0}{meta}\u{0}{chunker}\u{0}{model}{pages}{index}", d.document.text))
    }

    /// Chunks a document. A paged one (PDF) is chunked page by page, as LlamaIndex and Haystack
    /// read PDFs, so a citation points at one page: each page is chunked as the document
    /// `{id}@p{n}` (which makes the chunk ids unique, `report.pdf@p4#0`), then the chunks are put
    /// back under the document with spans in its text, and carry `page` and `page_end`.
    pub(crate) async fn chunk(&self, d: &SourceDocument) -> Result<Vec<Chunk>> {
        let chunker = self.chunker_for(d.format);
        if d.page_starts.is_empty() {
            return chunker.chunk(&d.document).await;
        }
        let text = &d.document.text;
        let mut chunks = Vec::new();
        for (i, &start) in d.page_starts.iter().enumerate() {
            let end = d.page_starts.get(i + 1).copied().unwrap_or(text.len()).min(text.len());
            let Some(page_text) = text.get(start..end).filter(|t| !t.trim().is_empty()) else { continue };
            let page = rag_core::Document {
                id: format!("{}@p{}", d.document.id, i + 1),
                text: page_text.to_owned(),
                metadata: d.document.metadata.clone(),
            };
            for mut c in chunker.chunk(&page).await? {
                c.doc_id = d.document.id.clone();
                c.index = chunks.len();
                c.span = rag_core::Span { start: c.span.start + start, end: c.span.end + start };
                c.metadata.insert(PAGE_KEY.into(), MetadataValue::Int(i as i64 + 1));
                c.metadata.insert(PAGE_END_KEY.into(), MetadataValue::Int(i as i64 + 1));
                chunks.push(c);
            }
        }
        Ok(chunks)
    }

    /// Ingests every document of `source` (files, a `Vec<Document>`, a stream). Unchanged
    /// documents are skipped without embedding; changed ones have their chunks replaced; with
    /// [`IngestOptions::prune`], documents of the source's origins that it no longer yields are
    /// removed. Safe to interrupt at any point: re-running converges on one clean ingest.
    ///
    /// ```no_run
    /// # async fn demo(pipeline: &rag::RagPipeline) -> rag::Result<()> {
    /// use rag::{Document, IngestOptions};
    /// let docs = vec![Document::new("a", "Rust has no garbage collector.")];
    /// let report = pipeline.ingest(docs, IngestOptions::default()).await?;
    /// assert_eq!(report.documents, 1);
    /// # Ok(()) }
    /// ```
    pub async fn ingest(&self, source: impl DocumentSource, options: IngestOptions) -> Result<IngestReport> {
        let start = Instant::now();
        self.check_dimensions().await?;
        let before = self.counters();
        let stream = source.open().await?;
        let total = stream.total.unwrap_or(0);
        let origins: BTreeSet<String> = stream.origins.into_iter().collect();
        // Two stages overlap: reading, the ingest-record lookup and chunking make the next
        // batch while the previous one is embedded and written. The channel holds one batch,
        // so at most three are in memory.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ChunkedBatch>(1);
        let opts = &options;
        let read = self.read_stage(stream.items, opts, tx);
        // `move`: when writing fails, the receiver is dropped at once, which stops the reader.
        let namespace = options.cache_namespace.as_deref();
        let write = async move {
            let mut written = Written::default();
            while let Some(batch) = rx.recv().await {
                written.add(self.write_batch(batch.docs, namespace).await?);
                opts.report(batch.read, total);
            }
            Ok::<Written, RagError>(written)
        };
        let (read, written) = tokio::join!(read, write);
        // Reading stops early only because writing failed: that error is the one to report.
        let written = written?;
        let chunks = written.chunks;
        let read = read?;
        options.report(read.read, total.max(read.read));
        let mut report = IngestReport {
            documents: read.documents,
            chunks,
            unchanged: read.unchanged,
            skipped: read.skipped,
            ..IngestReport::default()
        };
        if options.prune {
            report.removed = self.prune(&origins, &read.seen).await?;
        }
        let after = self.counters();
        report.embedded = after.embedded - before.embedded;
        report.cache_hits = after.hits - before.hits;
        if namespace.is_some() {
            // Counted per call, so nobody else's concurrent work shows up in this report.
            report.embedded = written.texts - written.cache_hits;
            report.cache_hits = written.cache_hits;
        } else if self.cache_probe.is_none() {
            report.embedded = report.chunks * u64::from(self.embedder.is_some());
        }
        report.seconds = start.elapsed().as_secs_f64();
        report.peak_rss_mb = peak_rss_mb();
        Ok(report)
    }

    /// The first stage of an ingest: reads the source, checks ids, and hands batches of
    /// changed documents, chunked, to the writing stage through `tx`.
    async fn read_stage(
        &self,
        mut items: futures::stream::BoxStream<'static, Result<SourceItem>>,
        options: &IngestOptions,
        tx: tokio::sync::mpsc::Sender<ChunkedBatch>,
    ) -> Result<ReadStage> {
        let mut stage = ReadStage::default();
        // Documents wait here until a batch is full, then the ingest record is asked about
        // all of them at once (one round trip when the record is a shared store).
        let mut incoming: Vec<SourceDocument> = Vec::new();
        while let Some(item) = items.next().await {
            stage.read += 1;
            let d = match item? {
                SourceItem::Skipped(skip) => {
                    tracing::warn!(path = %skip.path, reason = %skip.reason, "skipped");
                    stage.skipped.push(skip);
                    continue;
                }
                SourceItem::Document(d) => d,
            };
            check_id_present(&d)?;
            // Checked as each document is read, before its batch can be written, so a refused
            // document writes nothing of its batch on any side.
            rag_core::rules::check_document_metadata(&format!("document `{}`", d.document.id), &d.document.metadata)?;
            if d.document.text.trim().is_empty() {
                // Nothing to index: reported as skipped, as a file source reports an empty file,
                // never recorded as ingested. Not `seen`, so pruning removes an older version.
                let path = document_label(&d);
                tracing::warn!(%path, "skipped: no text");
                stage.skipped.push(Skipped { path, reason: "no text (empty or only whitespace)".into() });
                continue;
            }
            check_id_unique(&d, &mut stage.seen)?;
            stage.documents += 1;
            incoming.push(d);
            if incoming.len() >= options.batch_documents
                && !self.chunk_batch(std::mem::take(&mut incoming), options, &mut stage, &tx).await?
            {
                return Ok(stage);
            }
        }
        self.chunk_batch(incoming, options, &mut stage, &tx).await?;
        Ok(stage)
    }

    /// Looks a batch of documents up in the ingest record, skips the unchanged, chunks the
    /// rest and sends them on (in batches of at most `batch_chunks` chunks). False when the
    /// writing stage has stopped.
    async fn chunk_batch(
        &self,
        docs: Vec<SourceDocument>,
        options: &IngestOptions,
        stage: &mut ReadStage,
        tx: &tokio::sync::mpsc::Sender<ChunkedBatch>,
    ) -> Result<bool> {
        if docs.is_empty() {
            return Ok(true);
        }
        let mut known = self.ledger.lookup(docs.iter().map(|d| d.document.id.clone()).collect()).await?;
        let mut batch: Vec<Pending> = Vec::new();
        let mut batch_chunks = 0usize;
        for d in docs {
            let hash = self.doc_hash(&d);
            let old = known.remove(&d.document.id);
            // Unchanged only under the same origin: a document now yielded by another source
            // is rewritten under it (vectors come from the cache), so pruning that source's
            // origin finds it.
            if old.as_ref().is_some_and(|e| e.hash.as_deref() == Some(hash.as_str()) && e.root == d.origin) {
                stage.unchanged += 1;
                continue;
            }
            let mut chunks = self.chunk(&d).await?;
            if self.ledger.in_chunks() {
                self.stamp(&mut chunks, &hash, &d.origin, d.format);
            }
            batch_chunks += chunks.len();
            batch.push(Pending { doc_id: d.document.id, hash, root: d.origin, chunks, old });
            if batch_chunks >= options.batch_chunks {
                if tx.send(ChunkedBatch { docs: std::mem::take(&mut batch), read: stage.read }).await.is_err() {
                    return Ok(false);
                }
                batch_chunks = 0;
            }
        }
        // Progress is reported as batches are written, so even a batch of unchanged documents goes through.
        Ok(tx.send(ChunkedBatch { docs: batch, read: stage.read }).await.is_ok())
    }

    /// Stamps a document's chunks with its record ([`ledger_keys`]), for a store that is the
    /// ingest record: the chunk writes are then the record.
    fn stamp(&self, chunks: &mut [Chunk], hash: &str, root: &str, format: TextFormat) {
        let model = self.embedder.as_ref().map(|e| e.model_id()).unwrap_or_default();
        // For people reading the payload; the hash is what decides "unchanged".
        let fingerprint = format!("{} | {model}", self.chunker_for(format).fingerprint());
        let n = chunks.len() as i64;
        for c in chunks {
            c.metadata.insert(ledger_keys::HASH.into(), MetadataValue::Str(hash.to_owned()));
            c.metadata.insert(ledger_keys::CHUNKS.into(), MetadataValue::Int(n));
            c.metadata.insert(ledger_keys::ROOT.into(), MetadataValue::Str(root.to_owned()));
            c.metadata.insert(ledger_keys::FINGERPRINT.into(), MetadataValue::Str(fingerprint.clone()));
        }
    }

    /// Writes documents: pending manifest entries, then vectors and keyword entries, then stale
    /// deletions, then final manifest entries. Returns what was written.
    async fn write_batch(&self, batch: Vec<Pending>, namespace: Option<&str>) -> Result<Written> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        let pending: Vec<(String, LedgerEntry)> = batch
            .iter()
            .map(|p| {
                let mut ids: BTreeSet<String> = p.chunks.iter().map(|c| c.id.clone()).collect();
                if let Some(o) = &p.old {
                    ids.extend(o.chunk_ids.iter().cloned());
                }
                (p.doc_id.clone(), LedgerEntry { hash: None, chunk_ids: ids.into_iter().collect(), root: p.root.clone() })
            })
            .collect();
        self.ledger.begin(pending).await?;
        let chunks: Vec<&Chunk> = batch.iter().flat_map(|p| p.chunks.iter()).collect();
        let stale: Vec<String> = batch
            .iter()
            .flat_map(|p| {
                let new: HashSet<&str> = p.chunks.iter().map(|c| c.id.as_str()).collect();
                p.old
                    .iter()
                    .flat_map(|o| o.chunk_ids.iter())
                    .filter(move |id| !new.contains(id.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        // The vector side and the keyword side are independent until the record is committed
        // (the pending entry covers both), so they are written at the same time.
        let owned: Vec<Chunk> = chunks.iter().map(|c| (*c).clone()).collect();
        let (vectors, keyword) =
            tokio::join!(self.write_vectors(&chunks, &stale, namespace), self.keyword.write(owned, stale.clone()));
        let embedded = vectors?;
        keyword?;
        let fin: Vec<(String, LedgerEntry)> = batch
            .iter()
            .map(|p| {
                (
                    p.doc_id.clone(),
                    LedgerEntry {
                        hash: Some(p.hash.clone()),
                        chunk_ids: p.chunks.iter().map(|c| c.id.clone()).collect(),
                        root: p.root.clone(),
                    },
                )
            })
            .collect();
        self.ledger.commit(fin).await?;
        Ok(Written { chunks: chunks.len() as u64, ..embedded })
    }

    /// The vector side of a batch: embeds and upserts its chunks, then deletes the stale ones.
    /// Returns the texts embedded and the namespace's cache hits among them.
    async fn write_vectors(&self, chunks: &[&Chunk], stale: &[String], namespace: Option<&str>) -> Result<Written> {
        let Some(store) = &self.store else { return Ok(Written::default()) };
        let mut written = Written::default();
        if let Some(embedder) = &self.embedder {
            written = self.embed_and_upsert(embedder.as_ref(), store.as_ref(), chunks, namespace).await?;
        }
        if !stale.is_empty() {
            store.delete(stale.to_vec()).await?;
        }
        Ok(written)
    }

    /// Embeds and upserts in slices of `embed_batch`. The chunks are taken in order of length,
    /// so a padded model call wastes little, and slice `i + 1` is embedded while slice `i` is
    /// upserted. With a namespace, the embedder's cache is asked only for that namespace's
    /// entries ([`rag_core::Embedder::embed_in`]).
    async fn embed_and_upsert(
        &self,
        embedder: &dyn rag_core::Embedder,
        store: &dyn rag_core::VectorStore,
        chunks: &[&Chunk],
        namespace: Option<&str>,
    ) -> Result<Written> {
        let mut written = Written::default();
        let mut by_length: Vec<(&Chunk, String)> = chunks.iter().map(|c| (*c, c.indexed_text())).collect();
        by_length.sort_by_key(|(_, text)| text.len());
        let mut upserting: Option<Vec<EmbeddedChunk>> = None;
        for slice in by_length.chunks(self.embed_batch) {
            let texts: Vec<String> = slice.iter().map(|(_, text)| text.clone()).collect();
            let upsert = async {
                match upserting.take() {
                    Some(done) => store.upsert(done).await,
                    None => Ok(()),
                }
            };
            written.texts += texts.len() as u64;
            let embed = async {
                match namespace {
                    Some(ns) => embedder.embed_in(ns, texts).await.map(|e| (e.vectors, e.cache_hits as u64)),
                    None => embedder.embed(texts).await.map(|v| (v, 0)),
                }
            };
            let (vectors, upserted) = tokio::join!(embed, upsert);
            upserted?;
            let (vectors, hits) = vectors?;
            written.cache_hits += hits;
            if vectors.len() != slice.len() {
                return Err(RagError::permanent(
                    "embedder",
                    format!("returned {} vectors for {} chunks", vectors.len(), slice.len()),
                ));
            }
            upserting =
                Some(slice.iter().zip(vectors).map(|((c, _), v)| EmbeddedChunk { chunk: (*c).clone(), embedding: v }).collect());
        }
        if let Some(done) = upserting {
            store.upsert(done).await?;
        }
        Ok(written)
    }

    /// Removes documents and their chunks from the vector store, the keyword index and the
    /// manifest, in that order (the manifest last, so a crash leaves a state a re-run repairs).
    async fn remove(&self, gone: Vec<(String, LedgerEntry)>) -> Result<u64> {
        if gone.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = gone.iter().flat_map(|(_, e)| e.chunk_ids.iter().cloned()).collect();
        if let Some(store) = &self.store {
            store.delete(ids.clone()).await?;
        }
        self.keyword.write(Vec::new(), ids).await?;
        let doc_ids: Vec<String> = gone.into_iter().map(|(id, _)| id).collect();
        self.ledger.forget(doc_ids.clone()).await?;
        Ok(doc_ids.len() as u64)
    }

    pub(crate) async fn prune(&self, origins: &BTreeSet<String>, seen: &HashSet<String>) -> Result<u64> {
        let gone = self
            .ledger
            .under_roots(origins.iter().cloned().collect())
            .await?
            .into_iter()
            .filter(|(id, _)| !seen.contains(id))
            .collect();
        self.remove(gone).await
    }

    /// Deletes a document (every chunk of it) from every store. An unknown id is a
    /// [`RagError::NotFound`] naming it; nothing else is touched.
    pub async fn delete_document(&self, doc_id: &str) -> Result<()> {
        let entry = self
            .ledger
            .lookup(vec![doc_id.to_owned()])
            .await?
            .remove(doc_id)
            .ok_or_else(|| RagError::not_found(format!("document `{doc_id}` in collection `{}`", self.collection), None))?;
        self.remove(vec![(doc_id.to_owned(), entry)]).await.map(|_| ())
    }
}
