//! Shared data types: documents, chunks, scored hits, typed metadata.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One typed metadata value. Stores keep these types (numbers stay numbers), never JSON in a string.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetadataValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list of strings (tags, authors).
    StrList(Vec<String>),
}

/// What `#[serde(untagged)]` would accept, read in one pass: an untagged enum buffers each value
/// and tries the variants in turn, building an error for every miss, which made decoding stored
/// chunks (every query reads some) several times slower for string values.
impl<'de> Deserialize<'de> for MetadataValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MetadataValueVisitor)
    }
}

/// The message an untagged enum gives, kept so that errors read as before.
const NO_VARIANT: &str = "data did not match any variant of untagged enum MetadataValue";

struct MetadataValueVisitor;

impl<'de> serde::de::Visitor<'de> for MetadataValueVisitor {
    type Value = MetadataValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, a number, a string or a list of strings")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Int(v))
    }

    /// Beyond `i64` an integer becomes a float, as the untagged `Float` variant took it.
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MetadataValue, E> {
        Ok(i64::try_from(v).map_or(MetadataValue::Float(v as f64), MetadataValue::Int))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Float(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Str(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Str(v))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<MetadataValue, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(s) = seq.next_element::<String>().map_err(|_| serde::de::Error::custom(NO_VARIANT))? {
            out.push(s);
        }
        Ok(MetadataValue::StrList(out))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<MetadataValue, E> {
        Err(E::custom(NO_VARIANT))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<MetadataValue, E> {
        Err(E::custom(NO_VARIANT))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<MetadataValue, A::Error> {
        Err(serde::de::Error::custom(NO_VARIANT))
    }
}

impl MetadataValue {
    /// The value as a number, if it is one (ints widen to f64).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Equality as filters see it: `Int(2) == Float(2.0)`, and a list equals a value it contains
    /// (the convention Chroma, Qdrant and Pinecone share for array fields).
    pub fn filter_eq(&self, other: &MetadataValue) -> bool {
        match (self, other) {
            (Self::StrList(list), Self::Str(s)) => list.iter().any(|x| x == s),
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => a == b,
            },
        }
    }
}

impl fmt::Display for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => f.write_str(s),
            Self::StrList(l) => write!(f, "[{}]", l.join(", ")),
        }
    }
}

macro_rules! from_impl {
    ($($t:ty => $variant:ident via $conv:expr),* $(,)?) => {
        $(impl From<$t> for MetadataValue {
            fn from(v: $t) -> Self { Self::$variant($conv(v)) }
        })*
    };
}
from_impl! {
    bool => Bool via |v| v,
    i64 => Int via |v| v,
    i32 => Int via i64::from,
    u32 => Int via i64::from,
    f64 => Float via |v| v,
    f32 => Float via f64::from,
    String => Str via |v| v,
    &str => Str via str::to_owned,
    Vec<String> => StrList via |v| v,
}

/// Metadata: a sorted map of field name to typed value.
pub type Metadata = BTreeMap<String, MetadataValue>;

/// A source document before chunking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable identifier (a path relative to the ingest root, or a corpus `_id`).
    pub id: String,
    /// Full text.
    pub text: String,
    /// Typed metadata, copied onto every chunk.
    #[serde(default)]
    pub metadata: Metadata,
}

impl Document {
    /// A document with no metadata.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self { id: id.into(), text: text.into(), metadata: Metadata::new() }
    }

    /// Adds one metadata field (builder style).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<MetadataValue>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A piece of a document: the unit that is embedded, indexed, retrieved and cited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Deterministic id: same document, same settings, same id.
    pub id: String,
    /// The parent document's id.
    pub doc_id: String,
    /// Position of this chunk within its document (0-based).
    pub index: usize,
    /// The chunk's text, exactly `parent.text[span.start..span.end]`.
    pub text: String,
    /// Byte span in the parent document's text, so a citation can point back into the source.
    pub span: Span,
    /// Number of tokens in `text` under the chunker's tokenizer.
    pub token_count: usize,
    /// SHA-256 of `text` (hex, first 16 bytes): tells an unchanged chunk from a changed one.
    pub content_hash: String,
    /// Metadata (the document's, plus any the chunker adds, such as a heading path).
    #[serde(default)]
    pub metadata: Metadata,
}

impl Chunk {
    /// A chunk covering all of `text`, for tests and hand-built inputs.
    pub fn new(id: impl Into<String>, doc_id: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let span = Span { start: 0, end: text.len() };
        let content_hash = content_hash(&text);
        Self {
            id: id.into(),
            doc_id: doc_id.into(),
            index: 0,
            text,
            span,
            token_count: 0,
            content_hash,
            metadata: Metadata::new(),
        }
    }

    /// The text that is embedded and keyword-indexed: the chunk's text with its document's title
    /// in front (the `title` metadata readers set), unless the chunk already starts with it, so
    /// later chunks of a document keep its subject. The stored text stays the span's.
    pub fn indexed_text(&self) -> String {
        match self.metadata.get("title") {
            Some(MetadataValue::Str(t)) if !t.is_empty() && !self.text.starts_with(t.as_str()) => format!("{t}\n{}", self.text),
            _ => self.text.clone(),
        }
    }
}

/// The content hash used for chunks and documents: SHA-256, hex, first 16 bytes (32 hex digits).
pub fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..16])
}

/// A half-open byte range `[start, end)` into a document's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A retrieved chunk and its score. Higher is more similar, for every backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredChunk {
    /// The chunk.
    pub chunk: Chunk,
    /// Similarity: higher is better. Vector stores convert their distances to this convention
    /// (cosine: `1 - distance`; l2: `-distance`; inner product: the dot product).
    pub score: f32,
}

/// A candidate for hybrid fusion from one side (vector store or keyword index): the chunk id
/// and score are what fusion needs; the chunk comes along only when the side had it at hand. A
/// side with a fast path leaves it out and hands over the chunks of the fused top `k` alone
/// ([`VectorStore::chunks`](crate::VectorStore::chunks), [`KeywordSearch::chunks`](crate::KeywordSearch::chunks)).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The chunk's id.
    pub id: String,
    /// The side's score (higher is better).
    pub score: f32,
    /// The chunk, when the side read it anyway (a filtered keyword search does, to check metadata).
    pub chunk: Option<Chunk>,
}

impl From<ScoredChunk> for Candidate {
    fn from(hit: ScoredChunk) -> Self {
        Self { id: hit.chunk.id.clone(), score: hit.score, chunk: Some(hit.chunk) }
    }
}

/// A chunk with its embedding, ready to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedChunk {
    /// The chunk.
    pub chunk: Chunk,
    /// Its embedding.
    pub embedding: Vec<f32>,
}

impl EmbeddedChunk {
    /// The dimension shared by every vector of `batch` (`None` for an empty batch), or a
    /// [`crate::RagError::DimensionMismatch`] naming the first chunk that differs.
    pub fn batch_dimension(batch: &[EmbeddedChunk]) -> crate::Result<Option<usize>> {
        let Some(first) = batch.first() else { return Ok(None) };
        let dim = first.embedding.len();
        match batch.iter().enumerate().find(|(_, c)| c.embedding.len() != dim) {
            Some((i, c)) => Err(crate::RagError::DimensionMismatch {
                context: format!("upsert batch, chunk #{i} `{}`", c.chunk.id),
                expected: dim,
                actual: c.embedding.len(),
            }),
            None => Ok(Some(dim)),
        }
    }
}

/// How a vector store measures similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Cosine distance (score = 1 - distance = cosine similarity).
    #[default]
    Cosine,
    /// Euclidean (squared, as Chroma reports it) distance (score = -distance).
    L2,
    /// Inner product (score = dot product).
    #[serde(alias = "dot")]
    Ip,
}

impl Distance {
    /// The lowercase name used in configs and in Chroma's `hnsw:space`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::Ip => "ip",
        }
    }
}

impl std::str::FromStr for Distance {
    type Err = crate::RagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Self::Cosine),
            "l2" | "euclid" | "euclidean" => Ok(Self::L2),
            "ip" | "dot" | "dotproduct" => Ok(Self::Ip),
            other => Err(crate::RagError::invalid_input("distance", format!("unknown distance `{other}`: use cosine, l2 or ip"))),
        }
    }
}

/// A query against a vector store.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorQuery {
    /// The query embedding.
    pub vector: Vec<f32>,
    /// How many nearest chunks to return.
    pub k: usize,
    /// Optional metadata filter.
    pub filter: Option<crate::Filter>,
}

/// What a vector store built from its settings (a backend's `from_settings`) needs from the
/// pipeline around it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreContext {
    /// The collection's name.
    pub collection: String,
    /// The collection's local directory, for stores that keep files there (embedded modes).
    pub dir: std::path::PathBuf,
    /// Distance of a new collection (an existing one must match).
    pub distance: Distance,
    /// The embedder's dimension.
    pub dimension: usize,
}

/// What a vector store says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreDescription {
    /// Backend name (`chroma`, `qdrant`, `pinecone`).
    pub backend: String,
    /// Collection / index name.
    pub collection: String,
    /// Vector dimension, once known.
    pub dimension: Option<usize>,
    /// Distance function.
    pub distance: Distance,
    /// Number of stored vectors.
    pub count: usize,
    /// Backend-specific facts (mode, path, namespace, host).
    pub details: BTreeMap<String, String>,
}

/// A question for a [`crate::Retriever`].
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalQuery {
    /// The question or search text.
    pub text: String,
    /// How many chunks to return.
    pub k: usize,
    /// Optional metadata filter.
    pub filter: Option<crate::Filter>,
}

impl RetrievalQuery {
    /// A query with no filter.
    pub fn new(text: impl Into<String>, k: usize) -> Self {
        Self { text: text.into(), k, filter: None }
    }
}

/// A passage handed to a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextPassage {
    /// The chunk id (what citations refer to).
    pub id: String,
    /// The parent document id.
    pub doc_id: String,
    /// Passage text (possibly truncated to fit the window).
    pub text: String,
    /// Retrieval score.
    pub score: f32,
}

/// What a generator is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The user's question.
    pub question: String,
    /// Ranked context passages, best first.
    pub context: Vec<ContextPassage>,
}

/// A generator's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The answer text.
    pub answer: String,
    /// The model's reasoning, when the generator produces one (ChainOfThought).
    pub reasoning: Option<String>,
    /// Ids of the context passages the answer used or cites.
    pub used_context_ids: Vec<String>,
    /// Which generator produced it (`extractive`, `dspy:ChainOfThought(openai/gpt-4o-mini)`).
    pub generator: String,
}

/// One event of a streamed generation.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// A piece of the answer as it is produced.
    Token(String),
    /// The complete generation; always the last event.
    Final(Generation),
}

/// Counters of a batching stage (model calls and the items they carried), shared between the
/// stage that counts and whoever reports (`rag bench` prints the mean batch size per level).
#[derive(Debug, Default)]
pub struct BatchCounters {
    calls: std::sync::atomic::AtomicU64,
    items: std::sync::atomic::AtomicU64,
}

impl BatchCounters {
    /// Records one call that carried `items` items.
    pub fn record(&self, items: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.items.fetch_add(items as u64, Relaxed);
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Items so far.
    pub fn items(&self) -> u64 {
        self.items.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Mean items per call (0 before the first call).
    pub fn mean_batch(&self) -> f64 {
        let calls = self.calls();
        if calls == 0 { 0.0 } else { self.items() as f64 / calls as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derive this crate used before its own visitor: the behaviour to keep.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        StrList(Vec<String>),
    }

    fn same(u: Untagged) -> MetadataValue {
        match u {
            Untagged::Bool(b) => MetadataValue::Bool(b),
            Untagged::Int(i) => MetadataValue::Int(i),
            Untagged::Float(f) => MetadataValue::Float(f),
            Untagged::Str(s) => MetadataValue::Str(s),
            Untagged::StrList(l) => MetadataValue::StrList(l),
        }
    }

    #[test]
    fn metadata_values_decode_as_the_untagged_derive_did() {
        let inputs = [
            "true",
            "false",
            "0",
            "-1",
            "42",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "-9223372036854775808",
            "1.0",
            "-0.5",
            "1e300",
            "\"\"",
            "\"text\"",
            "\"3\"",
            "[]",
            "[\"a\",\"b\"]",
            "[\"a\",1]",
            "[1]",
            "[[\"a\"]]",
            "null",
            "{}",
            "{\"a\":1}",
            "[null]",
        ];
        for input in inputs {
            let want = serde_json::from_str::<Untagged>(input).map(same);
            let got = serde_json::from_str::<MetadataValue>(input);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{input}"),
                // The same words (serde_json may add where in the input it stopped).
                (Err(w), Err(g)) => {
                    let w = w.to_string().replace("Untagged", "MetadataValue");
                    assert!(g.to_string().starts_with(&w), "{input}: {g} is not {w}");
                }
                (w, g) => panic!("{input}: the derive gave {w:?}, the visitor {g:?}"),
            }
        }
        // Inside a chunk's metadata map, as stores decode it.
        let m: Metadata =
            serde_json::from_str(r#"{"year":2019,"title":"T","tags":["x"],"score":0.5,"ok":true}"#).unwrap_or_default();
        assert_eq!(m.get("year"), Some(&MetadataValue::Int(2019)));
        assert_eq!(m.get("tags"), Some(&MetadataValue::StrList(vec!["x".into()])));
        assert_eq!(m.len(), 5);
    }
}
