//! What metadata and filters every store accepts: one set of rules, checked in Rust before any
//! store sees a key or a value, so a bad field is the same clear [`RagError::InvalidInput`] on
//! Chroma, Qdrant, Pinecone and the keyword index, never a backend's exception.
//!
//! The rules are the union of what the stores refuse (tested against each of them by the
//! conformance suite):
//!
//! * a **key** is 1 to [`MAX_KEY_BYTES`] bytes, does not start with `$` (the operator prefix of
//!   Chroma and Pinecone filters), does not start with `chroma:` (Chroma's own keys), and has no
//!   control characters, `"` or `\` (a Qdrant payload path quotes a key with `.`, `:` or `[`
//!   in it, and cannot quote those two);
//! * a document's metadata may not use the keys a store keeps a chunk's own fields under
//!   ([`STORE_KEYS`]) nor the `rag_` prefix of the ingest record ([`crate::ledger_keys`]): they
//!   would be overwritten by, or overwrite, what the pipeline writes;
//! * a **value** is a boolean, an integer, a finite number, a string, or a list of strings
//!   ([`MetadataValue`]). An empty list matches no `eq`/`in` and every `ne`/`nin`, exactly as a
//!   missing key does, so stores keep it as a missing key (Chroma refuses empty lists).

use crate::{Chunk, EmbeddedChunk, Filter, Metadata, MetadataValue, RagError, Result};

/// The longest metadata key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// The most conditions one filter may hold (leaves and AND/OR nodes together), so the cost of
/// translating and evaluating a filter from a client is bounded.
pub const MAX_FILTER_CONDITIONS: usize = 512;

/// The deepest a filter may nest AND/OR.
pub const MAX_FILTER_DEPTH: usize = 16;

/// The names of the fields stores keep beside a chunk's metadata. [`fields::DOC_ID`] and
/// [`fields::CHUNK_INDEX`] are filterable on every store (a filter on `doc_id` selects a
/// document's chunks): [`filter_view`] is the metadata a filter sees.
pub mod fields {
    /// Parent document id (filterable).
    pub const DOC_ID: &str = "doc_id";
    /// Chunk index in its document (filterable).
    pub const CHUNK_INDEX: &str = "chunk_index";
    /// Byte span start.
    pub const SPAN_START: &str = "span_start";
    /// Byte span end.
    pub const SPAN_END: &str = "span_end";
    /// Token count.
    pub const TOKEN_COUNT: &str = "token_count";
    /// Content hash.
    pub const CONTENT_HASH: &str = "content_hash";
    /// The chunk's text, where a store keeps it in the payload.
    pub const TEXT: &str = "text";
    /// The chunk's id, where a store keeps it in the payload.
    pub const CHUNK_ID: &str = "chunk_id";
    /// The fields every store keeps beside the metadata.
    pub const ALL: [&str; 6] = [DOC_ID, CHUNK_INDEX, SPAN_START, SPAN_END, TOKEN_COUNT, CONTENT_HASH];
}

/// Keys under which stores keep a chunk's own fields beside its metadata (the chunk's document,
/// position, span, token count and hash everywhere; its text and id where the store keeps them
/// in the payload). A document's metadata may not use them.
pub const STORE_KEYS: [&str; 8] = [
    fields::DOC_ID,
    fields::CHUNK_INDEX,
    fields::SPAN_START,
    fields::SPAN_END,
    fields::TOKEN_COUNT,
    fields::CONTENT_HASH,
    fields::TEXT,
    fields::CHUNK_ID,
];

/// The metadata a [`Filter`] is evaluated against for `chunk`: its metadata plus the filterable
/// reserved fields ([`fields::DOC_ID`], [`fields::CHUNK_INDEX`]). A store that filters in Rust
/// (`Filter::matches(&filter_view(chunk))`) then agrees with every other store.
pub fn filter_view(chunk: &Chunk) -> Metadata {
    let mut m = chunk.metadata.clone();
    m.insert(fields::DOC_ID.into(), MetadataValue::Str(chunk.doc_id.clone()));
    m.insert(fields::CHUNK_INDEX.into(), MetadataValue::Int(chunk.index as i64));
    m
}

/// A chunk's metadata as every store keeps it: an empty list is no value (see the module's
/// rules), so it is dropped.
pub fn stored_metadata(metadata: &Metadata) -> Metadata {
    metadata
        .iter()
        .filter(|(_, v)| !matches!(v, MetadataValue::StrList(l) if l.is_empty()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One dimension rule for every store: the dimension is fixed by the store's settings or by its
/// first write, and a vector of another length is a [`RagError::DimensionMismatch`] naming the
/// store and the operation.
#[derive(Debug)]
pub struct DimensionGuard {
    context: String,
    dimension: std::sync::Mutex<Option<usize>>,
}

impl DimensionGuard {
    /// A guard for `context` (``Chroma collection `docs` ``), knowing `dimension` if given.
    pub fn new(context: impl Into<String>, dimension: Option<usize>) -> Self {
        Self { context: context.into(), dimension: std::sync::Mutex::new(dimension) }
    }

    /// The known dimension.
    pub fn get(&self) -> Option<usize> {
        *self.dimension.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a vector of length `actual` for `operation` (`upsert`, `query`): `Ok(true)` when
    /// the dimension is known and equal, `Ok(false)` when it is still unknown, and a
    /// [`RagError::DimensionMismatch`] otherwise.
    pub fn check(&self, actual: usize, operation: &str) -> Result<bool> {
        match self.get() {
            Some(expected) if expected != actual => {
                Err(RagError::DimensionMismatch { context: format!("{} ({operation})", self.context), expected, actual })
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Records the dimension after the store has accepted it (the first write). A concurrent
    /// first write with another dimension loses with a mismatch error.
    pub fn record(&self, actual: usize) -> Result<()> {
        let mut d = self.dimension.lock().unwrap_or_else(|p| p.into_inner());
        match *d {
            Some(expected) if expected != actual => {
                Err(RagError::DimensionMismatch { context: self.context.clone(), expected, actual })
            }
            _ => {
                *d = Some(actual);
                Ok(())
            }
        }
    }

    /// Checks a batch before a store writes any of it: every vector of one length, equal to
    /// the known dimension, and every chunk's metadata allowed ([`check_chunk_metadata`]).
    /// Returns the batch's dimension (`None` for an empty batch); call [`DimensionGuard::record`]
    /// with it once the store has accepted the batch.
    pub fn check_upsert(&self, chunks: &[EmbeddedChunk]) -> Result<Option<usize>> {
        let Some(first) = chunks.first() else { return Ok(None) };
        let dimension = self.get().unwrap_or(first.embedding.len());
        for c in chunks {
            if c.embedding.len() != dimension {
                return Err(RagError::DimensionMismatch {
                    context: format!("{} (upsert of chunk `{}`)", self.context, c.chunk.id),
                    expected: dimension,
                    actual: c.embedding.len(),
                });
            }
            check_chunk_metadata(&c.chunk.id, &c.chunk.metadata)?;
        }
        Ok(Some(dimension))
    }
}

/// The prefix of the keys the pipeline stamps on chunks when the store is the ingest record.
pub const RECORD_KEY_PREFIX: &str = "rag_";

/// Checks one metadata or filter key's spelling (not whether it is reserved). `input` names
/// where the key came from, for the error.
pub fn check_key(input: &str, key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(RagError::invalid_input(
            input,
            format!(
                "metadata key {key:?} {why}: use 1 to {MAX_KEY_BYTES} bytes of text without `\"` or `\\` that do not start with `$` or `chroma:`"
            ),
        ))
    };
    if key.is_empty() {
        return bad("is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad(&format!("is {} bytes long", key.len()));
    }
    if key.starts_with('$') {
        return bad("starts with `$`, which stores read as an operator");
    }
    if key.starts_with("chroma:") {
        return bad("starts with `chroma:`, which Chroma keeps for itself");
    }
    if key.chars().any(char::is_control) {
        return bad("holds a control character");
    }
    if key.contains(['"', '\\']) {
        return bad("holds `\"` or `\\`");
    }
    Ok(())
}

/// Whether `key` is one the pipeline or a store writes itself ([`STORE_KEYS`], the `rag_` prefix).
pub fn is_reserved_key(key: &str) -> bool {
    STORE_KEYS.contains(&key) || key.starts_with(RECORD_KEY_PREFIX)
}

/// Checks one metadata value. `input` names the document (or chunk) and `key` the field.
pub fn check_value(input: &str, key: &str, value: &MetadataValue) -> Result<()> {
    match value {
        MetadataValue::Float(f) if !f.is_finite() => {
            Err(RagError::invalid_input(input, format!("metadata `{key}` is {f}: numbers must be finite")))
        }
        _ => Ok(()),
    }
}

/// Checks a document's metadata as a caller gives it: every key spelled right and not reserved,
/// every value allowed. `input` names the document in the error (``document `x` ``).
pub fn check_document_metadata(input: &str, metadata: &Metadata) -> Result<()> {
    metadata.iter().try_for_each(|(k, v)| check_document_field(input, k, v))
}

/// Checks one field of a document's metadata ([`check_document_metadata`]); `input` names the
/// field (`documents[2].metadata.year`) or its document.
pub fn check_document_field(input: &str, key: &str, value: &MetadataValue) -> Result<()> {
    check_key(input, key)?;
    if is_reserved_key(key) {
        return Err(RagError::invalid_input(
            input,
            format!(
                "metadata key `{key}` is reserved (the stores keep a chunk's own fields under {} and the ingest record under `{RECORD_KEY_PREFIX}*`): rename it",
                STORE_KEYS.map(|s| format!("`{s}`")).join(", ")
            ),
        ));
    }
    check_value(input, key, value)
}

/// Checks a chunk's metadata as a store is about to write it: keys spelled right, values
/// allowed, and none of [`STORE_KEYS`] (where stores keep the chunk's own fields). The ingest
/// record's `rag_` keys are allowed here: the pipeline writes them.
pub fn check_chunk_metadata(chunk_id: &str, metadata: &Metadata) -> Result<()> {
    let input = format!("chunk `{chunk_id}`");
    for (k, v) in metadata {
        check_key(&input, k)?;
        if STORE_KEYS.contains(&k.as_str()) {
            return Err(RagError::invalid_input(
                input,
                format!("metadata key `{k}` is where stores keep the chunk's own field: rename it"),
            ));
        }
        check_value(&input, k, v)?;
    }
    Ok(())
}

impl Filter {
    /// Checks the filter is well formed before any store translates it: every field name
    /// spelled as a metadata key must be ([`check_key`]); `eq` / `ne` compare with one value (a
    /// boolean, a number or a string, never a list); an `in` / `nin` list is not empty and holds
    /// values of one kind (strings, numbers or booleans); bounds are finite; AND/OR are not
    /// empty; and the whole filter has at most [`MAX_FILTER_CONDITIONS`] conditions, nested at
    /// most [`MAX_FILTER_DEPTH`] deep. Errors are [`RagError::InvalidInput`] naming `filter`.
    pub fn validate(&self) -> Result<()> {
        let mut conditions = 0usize;
        self.validate_at(1, &mut conditions)
    }

    fn validate_at(&self, depth: usize, conditions: &mut usize) -> Result<()> {
        let bad = |message: String| Err(RagError::invalid_input("filter", message));
        *conditions += 1;
        if *conditions > MAX_FILTER_CONDITIONS {
            return bad(format!("more than {MAX_FILTER_CONDITIONS} conditions: simplify the filter"));
        }
        if depth > MAX_FILTER_DEPTH {
            return bad(format!("AND/OR nested more than {MAX_FILTER_DEPTH} deep: flatten the filter"));
        }
        match self {
            Self::And(v) | Self::Or(v) if v.is_empty() => bad("an AND/OR filter needs at least one condition".into()),
            Self::And(v) | Self::Or(v) => v.iter().try_for_each(|c| c.validate_at(depth + 1, conditions)),
            Self::Eq(f, v) | Self::Ne(f, v) => {
                check_key("filter", f)?;
                scalar_kind(f, v).map(|_| ())
            }
            Self::In(f, vs) | Self::Nin(f, vs) => {
                check_key("filter", f)?;
                let Some(first) = vs.first() else {
                    return bad(format!("the IN/NOT IN list for field `{f}` is empty"));
                };
                let kind = scalar_kind(f, first)?;
                for v in &vs[1..] {
                    if scalar_kind(f, v)? != kind {
                        return bad(format!(
                            "the IN/NOT IN list for field `{f}` mixes {kind} and {}: use values of one kind",
                            scalar_kind(f, v)?
                        ));
                    }
                }
                Ok(())
            }
            Self::Gt(f, x) | Self::Gte(f, x) | Self::Lt(f, x) | Self::Lte(f, x) => {
                check_key("filter", f)?;
                if x.is_finite() { Ok(()) } else { bad(format!("the bound for field `{f}` is not a finite number")) }
            }
        }
    }
}

/// The kind of a value a filter compares with (`string`, `number`, `boolean`); a list or a
/// non-finite number is an error naming the field.
fn scalar_kind(field: &str, v: &MetadataValue) -> Result<&'static str> {
    match v {
        MetadataValue::Str(_) => Ok("strings"),
        MetadataValue::Int(_) => Ok("numbers"),
        MetadataValue::Float(f) if f.is_finite() => Ok("numbers"),
        MetadataValue::Float(_) => {
            Err(RagError::invalid_input("filter", format!("the value for field `{field}` is not a finite number")))
        }
        MetadataValue::Bool(_) => Ok("booleans"),
        MetadataValue::StrList(_) => Err(RagError::invalid_input(
            "filter",
            format!("field `{field}` is compared with a list: compare with one value, or use `in` for several"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, MetadataValue)]) -> Metadata {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn keys_are_spelled_as_every_store_accepts() {
        for good in ["lang", "Year 2020", "tags-v2", "a.b", "dc:title", "é", &"k".repeat(MAX_KEY_BYTES)] {
            assert!(check_key("x", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "$and",
            "$in",
            "chroma:document",
            "a\u{0}b",
            "line\nbreak",
            "q\"uote",
            "back\\slash",
            &"k".repeat(MAX_KEY_BYTES + 1),
        ] {
            let e = check_key("document `d`", bad).unwrap_err();
            assert!(matches!(&e, RagError::InvalidInput { input, .. } if input == "document `d`"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn document_metadata_may_not_use_reserved_keys_or_bad_values() {
        assert!(check_document_metadata("document `d`", &meta(&[("lang", "en".into()), ("year", 2020.into())])).is_ok());
        for key in ["doc_id", "text", "chunk_id", "content_hash", "rag_doc_hash", "rag_anything"] {
            let e = check_document_metadata("document `d`", &meta(&[(key, "x".into())])).unwrap_err().to_string();
            assert!(e.contains("reserved") && e.contains(key), "{e}");
        }
        let e = check_document_metadata("document `d`", &meta(&[("score", f64::NAN.into())])).unwrap_err().to_string();
        assert!(e.contains("finite") && e.contains("score"), "{e}");
        assert!(check_document_metadata("document `d`", &meta(&[("tags", MetadataValue::StrList(vec![]))])).is_ok());
    }

    #[test]
    fn chunk_metadata_allows_the_record_but_not_the_layout() {
        let stamped = meta(&[("rag_doc_hash", "h".into()), ("lang", "en".into())]);
        assert!(check_chunk_metadata("d#0", &stamped).is_ok());
        assert!(check_chunk_metadata("d#0", &meta(&[("text", "t".into())])).is_err());
        assert!(check_chunk_metadata("d#0", &meta(&[("$or", "t".into())])).is_err());
    }

    #[test]
    fn filters_compare_fields_with_values_of_one_kind() {
        let ok = Filter::eq("lang", "en").and(Filter::is_in("year", [2020, 2021]).or(Filter::gte("score", 0.5)));
        assert!(ok.validate().is_ok());
        assert!(Filter::In("n".into(), vec![1.into(), 2.5.into()]).validate().is_ok(), "ints and floats are both numbers");
        let cases = [
            (Filter::Eq("tenant".into(), MetadataValue::StrList(vec!["globex".into()])), "list"),
            (Filter::eq("", "x"), "empty"),
            (Filter::eq("$and", "x"), "`$`"),
            (Filter::In("tag".into(), vec!["a".into(), 1.into()]), "mixes"),
            (Filter::In("tag".into(), vec![]), "empty"),
            (Filter::gt("x", f64::NAN), "finite"),
            (Filter::eq("x", f64::INFINITY), "finite"),
            (Filter::And(vec![]), "at least one"),
        ];
        for (f, needle) in cases {
            let e = f.validate().unwrap_err();
            assert!(matches!(&e, RagError::InvalidInput { input, .. } if input == "filter"), "{f}: {e}");
            assert!(e.to_string().contains(needle), "{f}: {e}");
        }
    }

    #[test]
    fn filters_are_bounded_in_size_and_depth() {
        let wide = Filter::Or((0..MAX_FILTER_CONDITIONS).map(|i| Filter::eq("n", i as i64)).collect());
        assert!(wide.validate().unwrap_err().to_string().contains("conditions"));
        let mut deep = Filter::eq("a", 1);
        for _ in 0..MAX_FILTER_DEPTH {
            deep = Filter::And(vec![Filter::Or(vec![deep])]);
        }
        assert!(deep.validate().unwrap_err().to_string().contains("deep"));
    }
}
