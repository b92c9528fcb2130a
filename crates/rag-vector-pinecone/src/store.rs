//! The store itself (feature `store`): the Python client driven through PyO3.

use crate::settings::*;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rag_core::{Distance, EmbeddedChunk, Filter, RagError, Result, ScoredChunk, StoreDescription, VectorQuery, VectorStore};
use rag_python::PyResultExt;
use rag_python::classify::{ErrorKind, ErrorRule, ErrorRules};
use rag_python::convert::{json_to_py, metadata_value_to_json};
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyModule};
use rag_python::store::{
    DimensionGuard, EmbeddedModule, OperatorDialect, PayloadLayout, StoreOptions, operator_filter, shim_query,
};
use serde_json::{Value, json};

/// Ids are Pinecone's own; the chunk text lives in metadata (`text`).
const LAYOUT: PayloadLayout = PayloadLayout { backend: "pinecone", text_key: Some("text"), id_key: None };
/// Pinecone's operators: `$eq` / `$in` already match inside list fields.
pub const DIALECT: OperatorDialect = OperatorDialect { collapse_single: false, list_membership: false };
/// The Python side (`src/pinecone_ops.py`).
static OPS: EmbeddedModule = EmbeddedModule::new(c"rag_pinecone_ops", c"rag_pinecone_ops.py", include_str!("pinecone_ops.py"));
/// The pinecone client's exceptions by class.
const ERRORS: ErrorRules = ErrorRules {
    backend: "pinecone",
    rules: &[
        ErrorRule::new("urllib3.exceptions.HTTPError", ErrorKind::Transient, "is Pinecone reachable?"),
        ErrorRule::new("pinecone.errors.exceptions.ServiceError", ErrorKind::Transient, ""),
        ErrorRule::new("pinecone.errors.exceptions.UnauthorizedError", ErrorKind::Permanent, "check PINECONE_API_KEY"),
        ErrorRule::new("pinecone.errors.exceptions.ForbiddenError", ErrorKind::Permanent, "check PINECONE_API_KEY"),
        ErrorRule::new("pinecone.errors.exceptions.NotFoundError", ErrorKind::NotFound, ""),
        ErrorRule::new("rag_pinecone_ops.IndexMissing", ErrorKind::NotFound, "create it, or enable create_if_missing"),
    ],
};
/// Pinecone's documented limits.
const MAX_VECTORS_PER_REQUEST: usize = 1000;
const MAX_BYTES_PER_REQUEST: usize = 2 * 1024 * 1024;
const MAX_METADATA_BYTES: usize = 40 * 1024;

fn ops(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    OPS.bind(py)
}

/// Builder for [`PineconeStore`].
#[derive(Clone)]
pub struct PineconeStoreBuilder {
    api_key: Option<String>,
    index: PineconeIndex,
    control_host: Option<String>,
    namespace: String,
    options: StoreOptions,
    cloud: String,
    region: String,
}

impl std::fmt::Debug for PineconeStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PineconeStoreBuilder")
            .field("index", &self.index)
            .field("namespace", &self.namespace)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl PineconeStoreBuilder {
    /// API key; unset reads `PINECONE_API_KEY`. Never logged.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Control-plane URL (default Pinecone's); tests point it at a local server.
    pub fn control_host(mut self, host: impl Into<String>) -> Self {
        self.control_host = Some(host.into());
        self
    }
    /// Namespace (default `""`).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }
    rag_python::store_option_setters!();
    /// Serverless cloud and region for a new index (default aws / us-east-1).
    pub fn serverless(mut self, cloud: impl Into<String>, region: impl Into<String>) -> Self {
        self.cloud = cloud.into();
        self.region = region.into();
        self
    }

    /// Connects (and creates the index if needed).
    pub async fn build(self) -> Result<PineconeStore> {
        let api_key = self
            .api_key
            .clone()
            .or_else(|| std::env::var("PINECONE_API_KEY").ok())
            .ok_or_else(|| RagError::config("Pinecone: no API key: set PINECONE_API_KEY or the `api_key` setting"))?;
        let cfg = self.clone();
        let (client, index, info) = rag_python::runtime()?
            .run(move |py| {
                let (name, host) = match &cfg.index {
                    PineconeIndex::Name(n) => (Some(n.clone()), None),
                    PineconeIndex::Host(h) => (None, Some(h.clone())),
                };
                let res = ops(py)?
                    .getattr("connect")
                    .and_then(|f| {
                        f.call1((
                            api_key,
                            name,
                            host,
                            cfg.control_host.clone(),
                            cfg.options.create_if_missing,
                            cfg.options.dimension,
                            cfg.options.distance.as_str(),
                            &cfg.cloud,
                            &cfg.region,
                        ))
                    })
                    .py_context(py)?;
                let (client, index, info): (Py<PyAny>, Py<PyAny>, Option<(usize, String)>) = res.extract().py_context(py)?;
                Ok((client, index, info))
            })
            .await
            .map_err(|e| classify(e, &self.index))?;
        let context = format!("Pinecone index {:?}", self.index);
        let dimension = match info {
            Some((d, metric)) => self.options.reconcile(&context, &metric, Some(d))?,
            None => self.options.dimension,
        };
        let dimension = DimensionGuard::new(format!("Pinecone index {:?}", self.index), dimension);
        Ok(PineconeStore { inner: Arc::new(Inner { _client: client, index, cfg: self, dimension }) })
    }
}

/// The client's exceptions by class (see [`ERRORS`]), naming the index.
fn classify(e: RagError, index: &PineconeIndex) -> RagError {
    ERRORS.classify(e, &format!("index {index:?}"))
}

struct Inner {
    _client: Py<PyAny>,
    index: Py<PyAny>,
    cfg: PineconeStoreBuilder,
    dimension: DimensionGuard,
}

/// A Pinecone index namespace as a [`VectorStore`]. Cheap to clone.
#[derive(Clone)]
pub struct PineconeStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PineconeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PineconeStore").field("cfg", &self.inner.cfg).finish()
    }
}

/// Pinecone's filter JSON for a typed filter (see [`DIALECT`]).
pub fn to_pinecone_filter(filter: &Filter) -> Result<Value> {
    operator_filter(filter, DIALECT)
}

/// One upsert record as JSON, and its estimated request size.
fn record(c: &EmbeddedChunk) -> Result<(Value, usize)> {
    let meta = LAYOUT.encode(&c.chunk)?;
    let meta: serde_json::Map<String, Value> = meta.iter().map(|(k, v)| (k.clone(), metadata_value_to_json(v))).collect();
    let meta_bytes = serde_json::to_vec(&meta).map(|v| v.len()).unwrap_or(0);
    if meta_bytes > MAX_METADATA_BYTES {
        return Err(RagError::invalid_input(
            format!("chunk `{}`", c.chunk.id),
            format!(
                "its metadata with text is {meta_bytes} bytes, over Pinecone's {MAX_METADATA_BYTES}: use a smaller chunk size"
            ),
        ));
    }
    let rec = json!({"id": c.chunk.id, "values": c.embedding, "metadata": meta});
    let size = serde_json::to_vec(&rec).map(|v| v.len()).unwrap_or(usize::MAX);
    Ok((rec, size))
}

/// Splits records into requests within the vector and byte limits.
fn batches(records: Vec<(Value, usize)>) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 64usize; // the request envelope
    for (rec, size) in records {
        if !cur.is_empty() && (cur.len() >= MAX_VECTORS_PER_REQUEST || bytes + size + 1 > MAX_BYTES_PER_REQUEST) {
            out.push(std::mem::take(&mut cur));
            bytes = 64;
        }
        bytes += size + 1;
        cur.push(rec);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl PineconeStore {
    /// A builder for `index`, namespace `""`, cosine, aws/us-east-1, created if missing.
    pub fn builder(index: PineconeIndex) -> PineconeStoreBuilder {
        PineconeStoreBuilder {
            api_key: None,
            index,
            control_host: None,
            namespace: String::new(),
            options: StoreOptions::default(),
            cloud: "aws".into(),
            region: "us-east-1".into(),
        }
    }

    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'py> FnOnce(Python<'py>, &Bound<'py, PyModule>, &Bound<'py, PyAny>, &str) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        rag_python::runtime()?
            .run(move |py| f(py, &ops(py)?, inner.index.bind(py), &inner.cfg.namespace))
            .await
            .map_err(|e| classify(e, &self.inner.cfg.index))
    }
}

#[async_trait]
impl VectorStore for PineconeStore {
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<()> {
        let Some(dim) = EmbeddedChunk::batch_dimension(&chunks)? else { return Ok(()) };
        // Pinecone fixes the dimension when the index is created: nothing to persist here.
        if !self.inner.dimension.check(dim, "upsert")? {
            self.inner.dimension.record(dim)?;
        }
        let records = chunks.iter().map(record).collect::<Result<Vec<_>>>()?;
        let batches = Value::Array(batches(records).into_iter().map(Value::Array).collect());
        self.call(move |py, ops, index, ns| {
            let b = json_to_py(py, &batches)?;
            ops.getattr("upsert").and_then(|f| f.call1((index, ns, b))).py_context(py)?;
            Ok(())
        })
        .await
    }

    async fn query(&self, query: VectorQuery) -> Result<Vec<ScoredChunk>> {
        self.inner.dimension.check(query.vector.len(), "query")?;
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let flt = query.filter.as_ref().map(to_pinecone_filter).transpose()?;
        let rows =
            self.call(move |py, ops, index, ns| shim_query(py, ops, index, ns, &query.vector, query.k, flt.as_ref())).await?;
        let sign = if self.inner.cfg.options.distance == Distance::L2 { -1.0 } else { 1.0 };
        let collection = format!("{:?}", self.inner.cfg.index);
        rows.into_iter()
            .map(|(score, record)| {
                let chunk = LAYOUT.decode(&collection, record)?;
                let score = score.ok_or_else(|| LAYOUT.missing_score(&collection, &chunk.id))?;
                Ok(ScoredChunk { chunk, score: sign * score })
            })
            .collect()
    }

    async fn delete(&self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.call(move |py, ops, index, ns| {
            ops.getattr("delete_ids").and_then(|f| f.call1((index, ns, ids))).py_context(py)?;
            Ok(())
        })
        .await
    }

    async fn delete_by_filter(&self, filter: Filter) -> Result<()> {
        let flt = to_pinecone_filter(&filter)?;
        self.call(move |py, ops, index, ns| {
            let f = json_to_py(py, &flt)?;
            ops.getattr("delete_filter").and_then(|d| d.call1((index, ns, f))).py_context(py)?;
            Ok(())
        })
        .await
    }

    async fn count(&self) -> Result<usize> {
        self.call(|py, ops, index, ns| {
            let s = ops.getattr("stats").and_then(|f| f.call1((index, ns))).py_context(py)?;
            s.get_item("namespace_count").and_then(|c| c.extract()).py_context(py)
        })
        .await
    }

    async fn describe(&self) -> Result<StoreDescription> {
        let stats: BTreeMap<String, String> = self
            .call(|py, ops, index, ns| {
                let s = ops.getattr("stats").and_then(|f| f.call1((index, ns))).py_context(py)?;
                let d = s.cast::<PyDict>().map_err(|e| RagError::internal_from("a Pinecone row is not a dict", e.to_string()))?;
                let mut out = BTreeMap::new();
                for (k, v) in d.iter() {
                    out.insert(k.to_string(), v.str().map(|s| s.to_string()).unwrap_or_default());
                }
                Ok(out)
            })
            .await?;
        let count = stats.get("namespace_count").and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut details = stats;
        details.insert("namespace".into(), self.inner.cfg.namespace.clone());
        let collection = match &self.inner.cfg.index {
            PineconeIndex::Name(n) => n.clone(),
            PineconeIndex::Host(h) => {
                details.insert("host".into(), h.clone());
                h.clone()
            }
        };
        Ok(StoreDescription {
            backend: "pinecone".into(),
            collection,
            dimension: self.inner.dimension.get(),
            distance: self.inner.cfg.options.distance,
            count,
            details,
        })
    }
}

impl PineconeStore {
    /// The store `settings` describe for the pipeline's collection (`ctx`): the one way the
    /// configuration builds a Pinecone store.
    pub async fn from_settings(settings: &PineconeSettings, ctx: &rag_core::StoreContext) -> Result<Self> {
        let index = match (&settings.host, &settings.index) {
            (Some(h), _) => PineconeIndex::Host(h.clone()),
            (None, Some(n)) => PineconeIndex::Name(n.clone()),
            (None, None) => PineconeIndex::Name(ctx.collection.clone()),
        };
        let mut b = PineconeStore::builder(index)
            .namespace(&settings.namespace)
            .distance(ctx.distance)
            .dimension(ctx.dimension)
            .serverless(&settings.cloud, &settings.region);
        if let Ok(k) = std::env::var(&settings.api_key_env) {
            b = b.api_key(k);
        }
        if let Some(h) = &settings.control_host {
            b = b.control_host(h);
        }
        b.build().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_translation() {
        let f = Filter::not_in("lang", ["de"]).and(Filter::lte("year", 2020).or(Filter::eq("ok", true)));
        assert_eq!(
            to_pinecone_filter(&f).unwrap(),
            json!({"$and": [{"lang": {"$nin": ["de"]}}, {"$or": [{"year": {"$lte": 2020.0}}, {"ok": {"$eq": true}}]}]})
        );
    }

    #[test]
    fn batches_respect_vector_and_byte_limits() {
        let recs: Vec<(Value, usize)> = (0..2500).map(|i| (json!(i), 100)).collect();
        let b = batches(recs);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        let big: Vec<(Value, usize)> = (0..10).map(|i| (json!(i), 700_000)).collect();
        let b = batches(big);
        assert!(
            b.iter().all(|x| x.len() * 700_001 + 64 <= MAX_BYTES_PER_REQUEST),
            "{:?}",
            b.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 10);
    }
}
