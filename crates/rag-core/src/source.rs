//! The loader seam: where documents come from. Files are one [`DocumentSource`]; an in-memory
//! list or a stream of [`Document`]s is another, so a pipeline ingests data it already holds.

use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

use crate::{Document, RagError, Result};

/// How a document's text is structured, so the pipeline picks the chunker that fits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TextFormat {
    /// Prose or plain text.
    #[default]
    Plain,
    /// Markdown: headings become the chunk's heading path.
    Markdown,
}

/// Chunk metadata key: the first page (from 1) a chunk of a paged document covers.
pub const PAGE_KEY: &str = "page";
/// Chunk metadata key: the last page a chunk of a paged document covers.
pub const PAGE_END_KEY: &str = "page_end";

/// One document from a source, with where it came from. Serializable, so a work queue carries
/// it to another process as it is ([`crate::queue::WorkBatch`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SourceDocument {
    /// The document.
    pub document: Document,
    /// How its text is structured.
    pub format: TextFormat,
    /// The origin it belongs to (a root folder, a feed name): pruning removes documents of an
    /// origin that a later ingest of the same origin no longer yields.
    pub origin: String,
    /// Byte offset in the text where each page starts (page 1 first), for paged formats such as
    /// PDF; empty otherwise. The pipeline chunks such a document page by page and marks every
    /// chunk with its page ([`PAGE_KEY`], [`PAGE_END_KEY`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub page_starts: Vec<usize>,
}

impl SourceDocument {
    /// An unpaged document from `origin`.
    pub fn new(document: Document, format: TextFormat, origin: impl Into<String>) -> Self {
        Self { document, format, origin: origin.into(), page_starts: Vec::new() }
    }

    /// The byte offsets where its pages start (page 1 first).
    pub fn with_page_starts(mut self, page_starts: Vec<usize>) -> Self {
        self.page_starts = page_starts;
        self
    }
}

/// An input a source passed over, and why (an empty file, invalid UTF-8, an unknown format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Skipped {
    /// The file or item.
    pub path: String,
    /// Why it was not ingested.
    pub reason: String,
}

/// One item of a [`DocumentStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A document to ingest.
    Document(SourceDocument),
    /// An input that was passed over, with the reason (reported, never fatal).
    Skipped(Skipped),
}

/// What [`DocumentSource::open`] returns: the documents, and what the ingest report and
/// pruning need to know about them.
pub struct DocumentStream {
    /// Documents the stream will yield, when known up front (drives progress).
    pub total: Option<u64>,
    /// Every origin this source covers (pruning is limited to these).
    pub origins: Vec<String>,
    /// The items, in order.
    pub items: BoxStream<'static, Result<SourceItem>>,
}

impl std::fmt::Debug for DocumentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentStream").field("total", &self.total).field("origins", &self.origins).finish_non_exhaustive()
    }
}

/// Where documents come from: files, a database, a queue, a list in memory.
///
/// `open` should check everything it can before yielding anything (every line of a JSONL
/// corpus, say): an input that fails there has written nothing. Ids need not be checked here:
/// the pipeline refuses an empty id, and an id seen twice in one ingest, for every source.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait DocumentSource: Send + Sync {
    /// Checks the input and returns its documents as a stream.
    async fn open(&self) -> Result<DocumentStream>;
}

/// Origin of documents given in memory, unless a source names its own.
pub const MEMORY_ORIGIN: &str = "memory";

/// Documents held in memory (a `Vec<Document>` is one too).
#[derive(Debug, Clone, PartialEq)]
pub struct InMemorySource {
    documents: Vec<Document>,
    format: TextFormat,
    origin: String,
}

impl InMemorySource {
    /// Plain-text documents under the origin [`MEMORY_ORIGIN`].
    pub fn new(documents: impl IntoIterator<Item = Document>) -> Self {
        Self { documents: documents.into_iter().collect(), format: TextFormat::Plain, origin: MEMORY_ORIGIN.into() }
    }

    /// The origin pruning is scoped to (default [`MEMORY_ORIGIN`]).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// How the texts are structured (default plain).
    pub fn format(mut self, format: TextFormat) -> Self {
        self.format = format;
        self
    }
}

#[async_trait]
impl DocumentSource for InMemorySource {
    async fn open(&self) -> Result<DocumentStream> {
        let (format, origin) = (self.format, self.origin.clone());
        let items: Vec<Result<SourceItem>> = self
            .documents
            .iter()
            .cloned()
            .map(|document| Ok(SourceItem::Document(SourceDocument::new(document, format, origin.clone()))))
            .collect();
        Ok(DocumentStream {
            total: Some(items.len() as u64),
            origins: vec![self.origin.clone()],
            items: futures::stream::iter(items).boxed(),
        })
    }
}

#[async_trait]
impl DocumentSource for Vec<Document> {
    async fn open(&self) -> Result<DocumentStream> {
        InMemorySource::new(self.iter().cloned()).open().await
    }
}

/// Documents from an async stream (a queue consumer, a paginated API), yielded as they come.
/// A stream can be read once: opening it a second time is an error.
pub struct StreamSource {
    stream: Mutex<Option<BoxStream<'static, Result<Document>>>>,
    format: TextFormat,
    origin: String,
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl StreamSource {
    /// A source over `stream`, under `origin`.
    pub fn new(stream: BoxStream<'static, Result<Document>>, origin: impl Into<String>) -> Self {
        Self { stream: Mutex::new(Some(stream)), format: TextFormat::Plain, origin: origin.into() }
    }

    /// A source over an iterator (read lazily, one document at a time).
    pub fn from_documents<I>(docs: I, origin: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = Document>,
        I::IntoIter: Send + 'static,
    {
        Self::new(futures::stream::iter(docs.into_iter().map(Ok)).boxed(), origin)
    }

    /// How the texts are structured (default plain).
    pub fn format(mut self, format: TextFormat) -> Self {
        self.format = format;
        self
    }
}

#[async_trait]
impl DocumentSource for StreamSource {
    async fn open(&self) -> Result<DocumentStream> {
        let stream = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or_else(|| {
            RagError::invalid_input(
                format!("stream source `{}`", self.origin),
                "this stream was already ingested once: make a new StreamSource",
            )
        })?;
        let (format, origin) = (self.format, self.origin.clone());
        let items = stream.map(move |d| Ok(SourceItem::Document(SourceDocument::new(d?, format, origin.clone())))).boxed();
        Ok(DocumentStream { total: None, origins: vec![self.origin.clone()], items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn memory_and_stream_sources_yield_their_documents_once() {
        let docs = vec![Document::new("a", "alpha"), Document::new("b", "beta")];
        let s = docs.open().await.unwrap();
        assert_eq!((s.total, s.origins.clone()), (Some(2), vec![MEMORY_ORIGIN.to_owned()]));
        assert_eq!(s.items.try_collect::<Vec<_>>().await.unwrap().len(), 2);
        let stream = StreamSource::from_documents(vec![Document::new("c", "gamma")], "feed");
        let items: Vec<SourceItem> = stream.open().await.unwrap().items.try_collect().await.unwrap();
        assert!(matches!(&items[0], SourceItem::Document(d) if d.origin == "feed" && d.document.id == "c"));
        assert!(stream.open().await.unwrap_err().to_string().contains("already ingested"));
    }
}
