//! The store kit: what every Python-backed [`rag_core::VectorStore`] shares, written once.
//!
//! * [`PayloadLayout`]: how a chunk is persisted (metadata plus its own fields under the
//!   [`reserved`] keys), and the strict inverse: a payload that lacks a field is an error naming
//!   the store and the chunk, never a default.
//! * [`EmbeddedModule`]: a store's Python shim, compiled once per process.
//! * [`DimensionGuard`]: one dimension rule for every store.
//! * [`operator_filter`]: the `$eq`/`$and` operator language (Chroma, Pinecone) with per-store switches.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyModule;
use rag_core::{Chunk, Distance, Filter, Metadata, MetadataValue, RagError, Result, Span};
use serde_json::{Value, json};

use crate::PyResultExt;
use crate::convert::metadata_value_to_json;

/// Reserved metadata keys under which stores keep a chunk's own fields next to its metadata
/// (defined in rag-core, so stores without Python use the same names).
pub use rag_core::rules::fields as reserved;

/// The settings every store builder shares (distance, dimension, creation), with one rule for
/// reopening an existing collection ([`StoreOptions::reconcile`]). Builders hold it as
/// `options` and get their setters from [`store_option_setters!`](crate::store_option_setters).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Distance for a new collection; must match an existing one.
    pub distance: Distance,
    /// Vector dimension, when known before the first write.
    pub dimension: Option<usize>,
    /// Create a missing collection (otherwise it is [`RagError::NotFound`]).
    pub create_if_missing: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { distance: Distance::Cosine, dimension: None, create_if_missing: true }
    }
}

impl StoreOptions {
    /// Checks an existing collection (`context`, e.g. ``Chroma collection `docs` ``) against
    /// these options: another distance is a configuration error, another dimension a
    /// [`RagError::DimensionMismatch`]. Returns the dimension now known.
    pub fn reconcile(&self, context: &str, stored_distance: &str, stored_dimension: Option<usize>) -> Result<Option<usize>> {
        if stored_distance != self.distance.as_str() {
            return Err(RagError::config(format!(
                "{context} uses distance `{stored_distance}`, but `{}` was asked for: use the same distance, or a new collection",
                self.distance.as_str()
            )));
        }
        match (stored_dimension, self.dimension) {
            (Some(stored), Some(asked)) if stored != asked => {
                Err(RagError::DimensionMismatch { context: context.to_owned(), expected: stored, actual: asked })
            }
            (Some(stored), _) => Ok(Some(stored)),
            (None, asked) => Ok(asked),
        }
    }

    /// The error for a missing collection when creation is off.
    pub fn missing(&self, context: &str) -> RagError {
        RagError::not_found(context, Some("ingest into it first, or enable create_if_missing"))
    }
}

/// The builder setters of [`StoreOptions`] (`distance`, `dimension`, `create_if_missing`), for
/// a builder with a field `options: StoreOptions`: written once, used by every store.
#[macro_export]
macro_rules! store_option_setters {
    () => {
        /// Distance for a new collection; must match an existing one.
        pub fn distance(mut self, d: ::rag_core::Distance) -> Self {
            self.options.distance = d;
            self
        }
        /// Vector dimension; recorded on a new collection, checked against an existing one.
        pub fn dimension(mut self, d: usize) -> Self {
            self.options.dimension = Some(d);
            self
        }
        /// Create the collection if it does not exist (default true); false makes a missing
        /// collection a `RagError::NotFound`.
        pub fn create_if_missing(mut self, yes: bool) -> Self {
            self.options.create_if_missing = yes;
            self
        }
    };
}

/// Where a store keeps a chunk's id and text: beside the payload (Chroma's `ids` and
/// `documents`) or inside it under a key (Qdrant, Pinecone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLayout {
    /// Backend name for errors (`chroma`, `qdrant`, `pinecone`).
    pub backend: &'static str,
    /// Payload key of the chunk text; `None` when the store keeps it apart.
    pub text_key: Option<&'static str>,
    /// Payload key of the chunk id; `None` when the store keeps it apart.
    pub id_key: Option<&'static str>,
}

/// A stored record as a store returned it, before it becomes a [`Chunk`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRecord {
    /// The id, when the store returns it apart from the payload.
    pub id: Option<String>,
    /// The text, when the store returns it apart from the payload.
    pub text: Option<String>,
    /// The payload.
    pub payload: Metadata,
}

impl PayloadLayout {
    /// The chunk's metadata plus its reserved fields (and id and text where the layout keeps
    /// them). The metadata is checked first ([`rag_core::rules::check_chunk_metadata`]), so a
    /// key or value a store would refuse, or one that would overwrite a field of the chunk, is
    /// an [`RagError::InvalidInput`] naming the chunk before anything reaches Python. An empty
    /// list is kept as no value, on every store (filters treat the two alike; Chroma refuses
    /// empty lists).
    pub fn encode(&self, chunk: &Chunk) -> Result<Metadata> {
        rag_core::rules::check_chunk_metadata(&chunk.id, &chunk.metadata)?;
        let mut m = rag_core::rules::stored_metadata(&chunk.metadata);
        m.insert(reserved::DOC_ID.into(), MetadataValue::Str(chunk.doc_id.clone()));
        m.insert(reserved::CHUNK_INDEX.into(), MetadataValue::Int(chunk.index as i64));
        m.insert(reserved::SPAN_START.into(), MetadataValue::Int(chunk.span.start as i64));
        m.insert(reserved::SPAN_END.into(), MetadataValue::Int(chunk.span.end as i64));
        m.insert(reserved::TOKEN_COUNT.into(), MetadataValue::Int(chunk.token_count as i64));
        m.insert(reserved::CONTENT_HASH.into(), MetadataValue::Str(chunk.content_hash.clone()));
        if let Some(k) = self.text_key {
            m.insert(k.into(), MetadataValue::Str(chunk.text.clone()));
        }
        if let Some(k) = self.id_key {
            m.insert(k.into(), MetadataValue::Str(chunk.id.clone()));
        }
        Ok(m)
    }

    /// Rebuilds the chunk; `collection` names where it came from. A missing or mistyped field is
    /// a [`RagError::Permanent`] naming the store, the collection and the chunk.
    pub fn decode(&self, collection: &str, record: StoredRecord) -> Result<Chunk> {
        let StoredRecord { id, text, mut payload } = record;
        let corrupt = |chunk: &str, what: &str| {
            RagError::permanent(
                self.backend,
                format!(
                    "collection `{collection}` returned chunk `{chunk}` without {what}: the record is incomplete or was written by another tool; re-ingest its document"
                ),
            )
        };
        let take_str = |m: &mut Metadata, key: Option<&str>| match key.and_then(|k| m.remove(k)) {
            Some(MetadataValue::Str(s)) => Some(s),
            _ => None,
        };
        let id = match id.or_else(|| take_str(&mut payload, self.id_key)) {
            Some(id) if !id.is_empty() => id,
            _ => return Err(corrupt("?", "an id")),
        };
        let text = text.or_else(|| take_str(&mut payload, self.text_key)).ok_or_else(|| corrupt(&id, "its text"))?;
        let mut int = |key: &str| match payload.remove(key) {
            Some(MetadataValue::Int(i)) if i >= 0 => Ok(i as usize),
            // Pinecone keeps every number as a float.
            Some(MetadataValue::Float(f)) if f >= 0.0 && f.fract() == 0.0 => Ok(f as usize),
            _ => Err(corrupt(&id, &format!("a whole number `{key}`"))),
        };
        let index = int(reserved::CHUNK_INDEX)?;
        let start = int(reserved::SPAN_START)?;
        let end = int(reserved::SPAN_END)?;
        let token_count = int(reserved::TOKEN_COUNT)?;
        let doc_id = take_str(&mut payload, Some(reserved::DOC_ID)).ok_or_else(|| corrupt(&id, "`doc_id`"))?;
        let content_hash = take_str(&mut payload, Some(reserved::CONTENT_HASH)).ok_or_else(|| corrupt(&id, "`content_hash`"))?;
        Ok(Chunk { id, doc_id, index, text, span: Span { start, end }, token_count, content_hash, metadata: payload })
    }

    /// The error for a hit that came back without a score or distance.
    pub fn missing_score(&self, collection: &str, chunk: &str) -> RagError {
        RagError::permanent(self.backend, format!("collection `{collection}` returned chunk `{chunk}` without a distance"))
    }
}

/// Calls a store shim's `query(handle, scope, vector, k, filter)`, whose rows are
/// `(id or None, score or None, payload)`, and returns them as `(score, record)`: the one place
/// that reads query rows from Python.
pub fn shim_query(
    py: Python<'_>,
    ops: &Bound<'_, PyModule>,
    handle: &Bound<'_, PyAny>,
    scope: &str,
    vector: &[f32],
    k: usize,
    filter: Option<&Value>,
) -> Result<Vec<(Option<f32>, StoredRecord)>> {
    let filter = match filter {
        Some(f) => crate::convert::json_to_py(py, f)?,
        None => py.None().into_bound(py),
    };
    let vector = crate::convert::vector_to_numpy(py, vector);
    let rows = ops.getattr("query").and_then(|f| f.call1((handle, scope, vector, k, filter))).py_context(py)?;
    shim_rows(py, &rows)
}

/// Rows as every store shim returns them, `(id or None, score or None, payload)`, as records.
pub fn shim_rows(py: Python<'_>, rows: &Bound<'_, PyAny>) -> Result<Vec<(Option<f32>, StoredRecord)>> {
    let mut out = Vec::new();
    for row in rows.try_iter().py_context(py)? {
        let row = row.py_context(py)?;
        let id: Option<String> = row.get_item(0).and_then(|x| x.extract()).py_context(py)?;
        let score: Option<f32> = row.get_item(1).and_then(|x| x.extract()).py_context(py)?;
        let payload = crate::convert::metadata_from_py(&row.get_item(2).py_context(py)?, &[]);
        out.push((score, StoredRecord { id, text: None, payload }));
    }
    Ok(out)
}

/// A Python shim compiled from source embedded in the binary, once per process.
#[derive(Debug)]
pub struct EmbeddedModule {
    name: &'static CStr,
    file: &'static CStr,
    source: &'static str,
    cell: OnceLock<Py<PyModule>>,
}

impl EmbeddedModule {
    /// A module named `name` (file name `file` in tracebacks) with `source`.
    pub const fn new(name: &'static CStr, file: &'static CStr, source: &'static str) -> Self {
        Self { name, file, source, cell: OnceLock::new() }
    }

    /// The module, compiled on first use.
    pub fn bind<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyModule>> {
        if let Some(m) = self.cell.get() {
            return Ok(m.bind(py).clone());
        }
        let code = CString::new(self.source)
            .map_err(|e| RagError::internal_from(format!("embedded Python module {:?} contains a NUL byte", self.name), e))?;
        let m = PyModule::from_code(py, code.as_c_str(), self.file, self.name).py_context(py)?;
        // Two threads may compile it at once; both results are equivalent and one is kept.
        let _ = self.cell.set(m.clone().unbind());
        Ok(m)
    }
}

/// The vector dimension of a collection (defined in rag-core: one rule for every store).
pub use rag_core::rules::DimensionGuard;

/// Switches between the stores that speak the `$eq` / `$and` operator language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorDialect {
    /// `$and` / `$or` need two or more operands (Chroma): a single one is sent bare.
    pub collapse_single: bool,
    /// `$eq` / `$in` do not look inside list fields (Chroma): string conditions also test
    /// membership with `$contains` / `$not_contains`, so a list field equals a value it contains.
    pub list_membership: bool,
}

/// The operator-language filter for `filter` in `dialect`, after validating it.
pub fn operator_filter(filter: &Filter, dialect: OperatorDialect) -> Result<Value> {
    filter.validate()?;
    Ok(translate(filter, dialect))
}

fn translate(filter: &Filter, d: OperatorDialect) -> Value {
    let leaf = |f: &str, op: &str, v: Value| json!({ f: { op: v } });
    let list = |vs: &[MetadataValue]| Value::Array(vs.iter().map(metadata_value_to_json).collect());
    let strings = |vs: &[MetadataValue]| -> Vec<String> { vs.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect() };
    // With list membership: positive conditions OR a `$contains` per string; negative ones AND a
    // `$not_contains` per string.
    let with_members = |f: &str, base: Value, members: Vec<String>, positive: bool| {
        if !d.list_membership || members.is_empty() {
            return base;
        }
        let op = if positive { "$contains" } else { "$not_contains" };
        let mut all = vec![base];
        all.extend(members.into_iter().map(|m| leaf(f, op, Value::String(m))));
        json!({ if positive { "$or" } else { "$and" }: all })
    };
    match filter {
        Filter::Eq(f, v) => with_members(f, leaf(f, "$eq", metadata_value_to_json(v)), strings(std::slice::from_ref(v)), true),
        Filter::Ne(f, v) => with_members(f, leaf(f, "$ne", metadata_value_to_json(v)), strings(std::slice::from_ref(v)), false),
        Filter::In(f, vs) => with_members(f, leaf(f, "$in", list(vs)), strings(vs), true),
        Filter::Nin(f, vs) => with_members(f, leaf(f, "$nin", list(vs)), strings(vs), false),
        Filter::Gt(f, x) => leaf(f, "$gt", json!(x)),
        Filter::Gte(f, x) => leaf(f, "$gte", json!(x)),
        Filter::Lt(f, x) => leaf(f, "$lt", json!(x)),
        Filter::Lte(f, x) => leaf(f, "$lte", json!(x)),
        Filter::And(v) | Filter::Or(v) if v.len() == 1 && d.collapse_single => translate(&v[0], d),
        Filter::And(v) => json!({ "$and": v.iter().map(|c| translate(c, d)).collect::<Vec<_>>() }),
        Filter::Or(v) => json!({ "$or": v.iter().map(|c| translate(c, d)).collect::<Vec<_>>() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: PayloadLayout = PayloadLayout { backend: "demo", text_key: Some("text"), id_key: Some("chunk_id") };

    #[test]
    fn payload_round_trips_and_incomplete_records_are_errors() {
        let mut c = Chunk::new("d#0", "d", "hello");
        c.metadata.insert("lang".into(), "en".into());
        let payload = LAYOUT.encode(&c).unwrap();
        assert_eq!(LAYOUT.decode("col", StoredRecord { payload: payload.clone(), ..Default::default() }).unwrap(), c);
        for key in ["text", "chunk_id", "doc_id", "span_end", "content_hash"] {
            let mut p = payload.clone();
            p.remove(key);
            let err = LAYOUT.decode("col", StoredRecord { payload: p, ..Default::default() }).unwrap_err().to_string();
            assert!(err.contains("demo") && err.contains("`col`"), "{key}: {err}");
            if key != "chunk_id" {
                assert!(err.contains("`d#0`"), "{key}: {err}");
            }
        }
    }

    #[test]
    fn reopening_checks_distance_and_dimension_once_for_every_store() {
        let opts = StoreOptions { dimension: Some(4), ..Default::default() };
        assert_eq!(opts.reconcile("c", "cosine", None).unwrap(), Some(4));
        assert_eq!(opts.reconcile("c", "cosine", Some(4)).unwrap(), Some(4));
        assert!(matches!(
            opts.reconcile("c", "cosine", Some(5)),
            Err(RagError::DimensionMismatch { expected: 5, actual: 4, .. })
        ));
        let err = opts.reconcile("c", "l2", Some(4)).unwrap_err().to_string();
        assert!(err.contains("`l2`") && err.contains("`cosine`"), "{err}");
        assert_eq!(StoreOptions::default().reconcile("c", "cosine", Some(7)).unwrap(), Some(7));
    }

    #[test]
    fn dimension_guard_has_one_rule() {
        let g = DimensionGuard::new("demo collection", None);
        assert!(!g.check(3, "query").unwrap());
        g.record(3).unwrap();
        assert!(g.check(3, "upsert").unwrap());
        let err = g.check(4, "upsert").unwrap_err().to_string();
        assert!(err.contains("demo collection (upsert)") && err.contains('3') && err.contains('4'), "{err}");
        assert!(g.record(4).is_err());
    }

    #[test]
    fn operator_dialects() {
        let f = Filter::eq("lang", "en").and(Filter::gte("year", 2020).or(Filter::is_in("tag", ["a", "b"])));
        let plain = OperatorDialect::default();
        assert_eq!(
            operator_filter(&f, plain).unwrap(),
            json!({"$and": [{"lang": {"$eq": "en"}}, {"$or": [{"year": {"$gte": 2020.0}}, {"tag": {"$in": ["a", "b"]}}]}]})
        );
        let chroma = OperatorDialect { collapse_single: true, list_membership: true };
        assert_eq!(operator_filter(&Filter::And(vec![Filter::ne("x", 1)]), chroma).unwrap(), json!({"x": {"$ne": 1}}));
        assert_eq!(
            operator_filter(&Filter::eq("tags", "a"), chroma).unwrap(),
            json!({"$or": [{"tags": {"$eq": "a"}}, {"tags": {"$contains": "a"}}]})
        );
        assert_eq!(
            operator_filter(&Filter::not_in("tags", ["a"]), chroma).unwrap(),
            json!({"$and": [{"tags": {"$nin": ["a"]}}, {"tags": {"$not_contains": "a"}}]})
        );
        assert!(operator_filter(&Filter::Or(vec![]), chroma).is_err());
    }
}
