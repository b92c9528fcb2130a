//! The store itself (feature `store`): the Python client driven through PyO3.

use crate::settings::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use rag_core::fusion::Fusion;
use rag_core::{
    Chunk, Distance, EmbeddedChunk, Filter, HybridQuery, HybridSearch, IngestLedger, KeywordSearch, LedgerEntry, MetadataValue,
    RagError, Result, RetrievalQuery, ScoredChunk, SparseEncoder, SparseVector, StoreDescription, VectorQuery, VectorStore,
};
use rag_python::PyResultExt;
use rag_python::classify::{ErrorKind, ErrorRule, ErrorRules};
use rag_python::convert::{json_to_py, matrix_to_numpy, metadata_to_py, metadata_value_to_json};
use rag_python::pyo3::prelude::*;
use rag_python::pyo3::types::{PyDict, PyList, PyModule};
use rag_python::store::{DimensionGuard, EmbeddedModule, PayloadLayout, StoreOptions, shim_rows};
use serde_json::{Value, json};

/// The chunk's text and original string id live in the payload (`text`, `chunk_id`).
const LAYOUT: PayloadLayout = PayloadLayout { backend: "qdrant", text_key: Some("text"), id_key: Some("chunk_id") };
/// The Python side (`src/qdrant_ops.py`).
static OPS: EmbeddedModule = EmbeddedModule::new(c"rag_qdrant_ops", c"rag_qdrant_ops.py", include_str!("qdrant_ops.py"));
/// qdrant-client's exceptions (and the shim's own) by class.
const ERRORS: ErrorRules = ErrorRules {
    backend: "qdrant",
    rules: &[
        ErrorRule::new(
            "qdrant_client.http.exceptions.ResponseHandlingException",
            ErrorKind::Transient,
            "is the Qdrant server running?",
        ),
        ErrorRule::new("httpx.TransportError", ErrorKind::Transient, "is the Qdrant server running?"),
        ErrorRule::new(
            "qdrant_client.http.exceptions.UnexpectedResponse",
            ErrorKind::Permanent,
            "Qdrant refused the request (see its message)",
        ),
        // Before the generic 5xx rule: the shim names the shards a lost node took with it.
        ErrorRule::new(
            "rag_qdrant_ops.ShardUnavailable",
            ErrorKind::Transient,
            "a Qdrant node holding the only copy of a shard is down",
        ),
        ErrorRule::new(
            "rag_qdrant_ops.StorageLocked",
            ErrorKind::Permanent,
            "local mode allows one client: close the other process or store first",
        ),
    ],
};
/// Namespace for string id -> UUID v5.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7a1f_3c2e_9b4d_4e8a_a6f0_52c1_d3e4_b5a6);

/// The deterministic UUID Qdrant stores for a string id.
pub fn point_id(id: &str) -> String {
    uuid::Uuid::new_v5(&ID_NAMESPACE, id.as_bytes()).to_string()
}

fn ops(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    OPS.bind(py)
}

/// Builder for [`QdrantStore`].
#[derive(Clone)]
pub struct QdrantStoreBuilder {
    mode: QdrantMode,
    collection: String,
    options: StoreOptions,
    batch_size: usize,
    sparse: Option<Arc<dyn SparseEncoder>>,
    shards: Option<u32>,
    replication: Option<u32>,
    layout: QdrantLayout,
    search: QdrantSearchParams,
    timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for QdrantStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            QdrantMode::Server { url, prefer_grpc, .. } => format!("server({url}, grpc={prefer_grpc})"),
            m => format!("{m:?}"),
        };
        f.debug_struct("QdrantStoreBuilder").field("mode", &mode).field("collection", &self.collection).finish_non_exhaustive()
    }
}

impl QdrantStoreBuilder {
    /// Collection name.
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }
    rag_python::store_option_setters!();
    /// Points per upsert request (default 256).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Keep BM25 in the collection as the sparse vector `bm25` (IDF by Qdrant), encoded by
    /// `encoder`: the store then also serves keyword and hybrid search and the ingest record.
    /// An existing collection created without it is refused.
    pub fn sparse(mut self, encoder: Arc<dyn SparseEncoder>) -> Self {
        self.sparse = Some(encoder);
        self
    }

    /// Shards of a new collection (a server or cluster; ignored in local mode).
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = Some(n);
        self
    }

    /// Copies of each shard in a new collection (a cluster; ignored in local mode).
    pub fn replication_factor(mut self, n: u32) -> Self {
        self.replication = Some(n);
        self
    }

    /// How a new collection is laid out and indexed: quantization, vectors and graph on disk,
    /// HNSW parameters, tenant indexes (a server; local mode searches exactly).
    pub fn layout(mut self, layout: QdrantLayout) -> Self {
        self.layout = layout;
        self
    }

    /// How queries search: HNSW beam, rescoring, oversampling.
    pub fn search_params(mut self, params: QdrantSearchParams) -> Self {
        self.search = params;
        self
    }

    /// How long one request to a server may take before it fails as transient (whole
    /// seconds, at least one). Unset: qdrant-client's own (5 s over REST, none over gRPC).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Connects; creates the collection if missing and the dimension is known.
    pub async fn build(self) -> Result<QdrantStore> {
        if self.collection.is_empty() {
            return Err(RagError::invalid_input("collection", "the Qdrant collection name is empty"));
        }
        if let QdrantMode::Local(p) = &self.mode {
            std::fs::create_dir_all(p).map_err(|e| RagError::io(p, e))?;
        }
        let cfg = self.clone();
        let (client, dimension) = rag_python::runtime()?
            .run(move |py| {
                let ops = ops(py)?;
                let kw = PyDict::new(py);
                match &cfg.mode {
                    QdrantMode::Local(p) => {
                        kw.set_item("mode", "local").py_context(py)?;
                        kw.set_item("path", p.display().to_string()).py_context(py)?;
                    }
                    QdrantMode::InMemory => kw.set_item("mode", "memory").py_context(py)?,
                    QdrantMode::Server { url, api_key, prefer_grpc, grpc_port } => {
                        kw.set_item("mode", "server").py_context(py)?;
                        kw.set_item("url", url).py_context(py)?;
                        kw.set_item("api_key", api_key.clone()).py_context(py)?;
                        kw.set_item("prefer_grpc", *prefer_grpc).py_context(py)?;
                        kw.set_item("grpc_port", *grpc_port).py_context(py)?;
                        // qdrant-client takes whole seconds.
                        kw.set_item("timeout", cfg.timeout.map(|t| t.as_secs().max(1))).py_context(py)?;
                    }
                }
                let client = ops.getattr("connect").and_then(|f| f.call((), Some(&kw))).py_context(py)?;
                let info = ops.getattr("collection_info").and_then(|f| f.call1((&client, &cfg.collection))).py_context(py)?;
                let context = format!("Qdrant collection `{}`", cfg.collection);
                let dimension = if info.is_none() {
                    if !cfg.options.create_if_missing {
                        return Err(cfg.options.missing(&context));
                    }
                    if let Some(d) = cfg.options.dimension {
                        cfg.creation().create(py, &ops, &client, &cfg.collection, d)?;
                    }
                    cfg.options.dimension
                } else {
                    let (size, distance, sparse): (usize, String, bool) = info.extract().py_context(py)?;
                    if cfg.sparse.is_some() && !sparse {
                        return Err(RagError::config(format!(
                            "{context} was created without the BM25 sparse vector `bm25`, so it cannot serve keyword or \
                             hybrid search in the engine: ingest into a new collection with store.index = engine, or \
                             keep store.index = local for this one"
                        )));
                    }
                    cfg.options.reconcile(&context, &distance, Some(size))?
                };
                Ok((client.unbind(), dimension))
            })
            .await
            .map_err(|e| classify(e, &self.collection))?;
        let creation = self.creation();
        Ok(QdrantStore {
            inner: Arc::new(Inner {
                creation,
                client,
                dimension: DimensionGuard::new(format!("Qdrant collection `{}`", self.collection), dimension),
                name: self.collection,
                mode: self.mode,
                distance: self.options.distance,
                batch_size: self.batch_size,
                sparse: self.sparse,
                search: self.search,
            }),
        })
    }

    fn creation(&self) -> Creation {
        Creation {
            layout: self.layout.clone(),
            distance: self.options.distance,
            sparse: self.sparse.is_some(),
            shards: self.shards,
            replication: self.replication,
            server: matches!(self.mode, QdrantMode::Server { .. }),
        }
    }
}

/// How a new collection is made.
#[derive(Debug, Clone)]
struct Creation {
    layout: QdrantLayout,
    distance: Distance,
    sparse: bool,
    shards: Option<u32>,
    replication: Option<u32>,
    server: bool,
}

impl Creation {
    fn create(&self, py: Python<'_>, ops: &Bound<'_, PyModule>, client: &Bound<'_, PyAny>, name: &str, dim: usize) -> Result<()> {
        let kw = PyDict::new(py);
        kw.set_item("sparse", self.sparse).py_context(py)?;
        kw.set_item("shards", self.shards).py_context(py)?;
        kw.set_item("replication", self.replication).py_context(py)?;
        kw.set_item("server", self.server).py_context(py)?;
        if self.server {
            let mut layout = self.layout.clone();
            // Tenant keys are metadata keys; Qdrant wants their payload paths.
            layout.tenant_keys = layout.tenant_keys.iter().map(|k| payload_key(k)).collect();
            let layout = serde_json::to_value(&layout).map_err(|e| RagError::json("the Qdrant layout", e))?;
            kw.set_item("layout", json_to_py(py, &layout)?).py_context(py)?;
        }
        ops.getattr("create").and_then(|f| f.call((client, name, dim, self.distance.as_str()), Some(&kw))).py_context(py)?;
        if self.server {
            let warning: Option<String> = ops
                .getattr("warn_single_copy")
                .and_then(|f| f.call1((client, name, self.replication)))
                .and_then(|w| w.extract())
                .py_context(py)?;
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
        }
        Ok(())
    }
}

struct Inner {
    client: Py<PyAny>,
    name: String,
    mode: QdrantMode,
    distance: Distance,
    /// Unknown until given, read from the collection, or set by the first upsert (which
    /// creates the collection).
    dimension: DimensionGuard,
    batch_size: usize,
    creation: Creation,
    search: QdrantSearchParams,
    /// BM25 as sparse vectors, when the collection keeps them.
    sparse: Option<Arc<dyn SparseEncoder>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Local mode holds a file lock until the client is closed; release it so the same path
        // can be reopened in this process.
        let _ = Python::try_attach(|py| self.client.bind(py).call_method0("close").map(|_| ()));
    }
}

/// A Qdrant collection as a [`VectorStore`]. Cheap to clone.
#[derive(Clone)]
pub struct QdrantStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStore").field("collection", &self.inner.name).finish_non_exhaustive()
    }
}

/// Qdrant's REST filter JSON for a typed filter (validated into `models.Filter` in Python).
pub fn to_qdrant_filter(filter: &Filter) -> Result<Value> {
    filter.validate()?;
    Ok(as_filter(filter))
}

/// A metadata key as a Qdrant payload path: plain when it is letters, digits, `_` and `-`;
/// otherwise quoted, so `a.b` is the key `a.b`, not `b` inside `a` (the rules of
/// `rag_core::rules` keep `"` and `\` out of keys, which a quoted path cannot hold).
pub fn payload_key(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') { key.to_owned() } else { format!("\"{key}\"") }
}

/// A condition as a (must, must_not) contribution.
fn condition(filter: &Filter) -> (Option<Value>, Option<Value>) {
    let number = |v: &MetadataValue| v.as_f64();
    let field_match = |f: &str, v: &MetadataValue| match number(v) {
        // Numbers match by range so 2 and 2.0 are the same, as in the reference semantics.
        Some(x) => json!({"key": payload_key(f), "range": {"gte": x, "lte": x}}),
        None => json!({"key": payload_key(f), "match": {"value": metadata_value_to_json(v)}}),
    };
    let any = |f: &str, vs: &[MetadataValue]| {
        if vs.iter().all(|v| matches!(v, MetadataValue::Str(_))) {
            json!({"key": payload_key(f), "match": {"any": vs.iter().map(metadata_value_to_json).collect::<Vec<_>>()}})
        } else {
            json!({"should": vs.iter().map(|v| field_match(f, v)).collect::<Vec<_>>()})
        }
    };
    match filter {
        Filter::Eq(f, v) => (Some(field_match(f, v)), None),
        Filter::Ne(f, v) => (None, Some(field_match(f, v))),
        Filter::In(f, vs) => (Some(any(f, vs)), None),
        Filter::Nin(f, vs) => (None, Some(any(f, vs))),
        Filter::Gt(f, x) => (Some(json!({"key": payload_key(f), "range": {"gt": x}})), None),
        Filter::Gte(f, x) => (Some(json!({"key": payload_key(f), "range": {"gte": x}})), None),
        Filter::Lt(f, x) => (Some(json!({"key": payload_key(f), "range": {"lt": x}})), None),
        Filter::Lte(f, x) => (Some(json!({"key": payload_key(f), "range": {"lte": x}})), None),
        Filter::And(_) | Filter::Or(_) => (Some(as_filter(filter)), None),
    }
}

fn as_filter(filter: &Filter) -> Value {
    match filter {
        Filter::Or(v) => json!({"should": v.iter().map(as_filter_single).collect::<Vec<_>>()}),
        Filter::And(v) => {
            let (mut must, mut must_not) = (Vec::new(), Vec::new());
            for c in v {
                let (m, n) = condition(c);
                must.extend(m);
                must_not.extend(n);
            }
            json!({"must": must, "must_not": must_not})
        }
        leaf => as_filter_single(leaf),
    }
}

/// One filter as a self-contained Qdrant filter object.
fn as_filter_single(filter: &Filter) -> Value {
    match condition(filter) {
        (Some(m), None) if matches!(filter, Filter::And(_) | Filter::Or(_)) => m,
        (m, n) => json!({"must": m.into_iter().collect::<Vec<_>>(), "must_not": n.into_iter().collect::<Vec<_>>()}),
    }
}

impl QdrantStore {
    /// A builder for `mode`, collection `rag`, cosine, created if missing; a new server
    /// collection gets [`QdrantLayout::server_default`] (int8, originals on disk), a local one
    /// none of it.
    pub fn builder(mode: QdrantMode) -> QdrantStoreBuilder {
        let layout = match mode {
            QdrantMode::Server { .. } => QdrantLayout::server_default(),
            QdrantMode::Local(_) | QdrantMode::InMemory => QdrantLayout::default(),
        };
        QdrantStoreBuilder {
            mode,
            collection: "rag".into(),
            options: StoreOptions::default(),
            batch_size: 256,
            sparse: None,
            shards: None,
            replication: None,
            layout,
            search: QdrantSearchParams::default(),
            timeout: None,
        }
    }

    fn dimension(&self) -> Option<usize> {
        self.inner.dimension.get()
    }

    fn score(&self, s: f32) -> f32 {
        match self.inner.distance {
            Distance::L2 => -s,
            _ => s,
        }
    }

    async fn ensure_collection(&self, dim: usize) -> Result<()> {
        if self.inner.dimension.check(dim, "upsert")? {
            return Ok(());
        }
        let creation = self.inner.creation.clone();
        self.call(move |py, ops, client, name| creation.create(py, ops, client, name, dim)).await?;
        self.inner.dimension.record(dim)
    }

    /// The dense search's parameters as Qdrant's `SearchParams` JSON; `None` outside a server
    /// (local mode searches exactly).
    fn params(&self) -> Result<Option<Value>> {
        if !matches!(self.inner.mode, QdrantMode::Server { .. }) {
            return Ok(None);
        }
        let p = &self.inner.search;
        let mut params = json!({"quantization": {"rescore": p.rescore, "oversampling": p.oversampling}});
        if let Some(ef) = p.hnsw_ef {
            params["hnsw_ef"] = ef.into();
        }
        Ok(Some(params))
    }

    /// The sparse encoder, or the error for a store without one.
    fn encoder(&self, what: &str) -> Result<&Arc<dyn SparseEncoder>> {
        self.inner.sparse.as_ref().ok_or_else(|| {
            RagError::config(format!(
                "{what} in Qdrant needs the collection's BM25 sparse vectors: build the store with a sparse encoder \
                 (store.index = engine)"
            ))
        })
    }

    /// Query rows as scored chunks.
    fn scored(&self, rows: Vec<(Option<f32>, rag_python::store::StoredRecord)>, convert: bool) -> Result<Vec<ScoredChunk>> {
        rows.into_iter()
            .map(|(score, record)| {
                let chunk = LAYOUT.decode(&self.inner.name, record)?;
                let score = score.ok_or_else(|| LAYOUT.missing_score(&self.inner.name, &chunk.id))?;
                Ok(ScoredChunk { chunk, score: if convert { self.score(score) } else { score } })
            })
            .collect()
    }

    /// Runs `f(ops, client, collection)` on the Python runtime.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'py> FnOnce(Python<'py>, &Bound<'py, PyModule>, &Bound<'py, PyAny>, &str) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        rag_python::runtime()?
            .run(move |py| f(py, &ops(py)?, inner.client.bind(py), &inner.name))
            .await
            .map_err(|e| classify(e, &self.inner.name))
    }
}

/// qdrant-client's exceptions by class (see [`ERRORS`]), naming the collection.
fn classify(e: RagError, collection: &str) -> RagError {
    ERRORS.classify(e, &format!("collection `{collection}`"))
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn upsert(&self, chunks: Vec<EmbeddedChunk>) -> Result<()> {
        let Some(dim) = EmbeddedChunk::batch_dimension(&chunks)? else { return Ok(()) };
        let encoded: Vec<rag_core::Metadata> = chunks.iter().map(|c| LAYOUT.encode(&c.chunk)).collect::<Result<_>>()?;
        self.ensure_collection(dim).await?;
        let batch_size = self.inner.batch_size;
        let sparse: Option<Vec<SparseVector>> =
            self.inner.sparse.as_ref().map(|e| chunks.iter().map(|c| e.encode_document(&c.chunk.indexed_text())).collect());
        self.call(move |py, ops, client, name| {
            let ids: Vec<String> = chunks.iter().map(|c| point_id(&c.chunk.id)).collect();
            let vectors: Vec<Vec<f32>> = chunks.iter().map(|c| c.embedding.clone()).collect();
            let payloads = PyList::empty(py);
            for payload in &encoded {
                payloads.append(metadata_to_py(py, payload)?).py_context(py)?;
            }
            let matrix = matrix_to_numpy(py, &vectors)?;
            let sparse: Option<Vec<(Vec<u32>, Vec<f32>)>> =
                sparse.map(|v| v.into_iter().map(|s| (s.indices, s.values)).collect());
            ops.getattr("upsert")
                .and_then(|f| f.call1((client, name, ids, matrix, payloads, batch_size, sparse)))
                .py_context(py)?;
            Ok(())
        })
        .await
    }

    async fn query(&self, query: VectorQuery) -> Result<Vec<ScoredChunk>> {
        if !self.inner.dimension.check(query.vector.len(), "query")? {
            return Ok(Vec::new()); // no collection yet: nothing stored
        }
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let spec = query.filter.as_ref().map(to_qdrant_filter).transpose()?;
        let params = self.params()?;
        let rows = self
            .call(move |py, ops, client, name| {
                let spec = spec.as_ref().map(|s| json_to_py(py, s)).transpose()?;
                let vector = rag_python::convert::vector_to_numpy(py, &query.vector);
                let params = params.as_ref().map(|p| json_to_py(py, p)).transpose()?;
                let rows =
                    ops.getattr("query").and_then(|f| f.call1((client, name, vector, query.k, spec, params))).py_context(py)?;
                shim_rows(py, &rows)
            })
            .await?;
        self.scored(rows, true)
    }

    async fn delete(&self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() || self.dimension().is_none() {
            return Ok(());
        }
        let uuids: Vec<String> = ids.iter().map(|i| point_id(i)).collect();
        self.call(move |py, ops, client, name| {
            ops.getattr("delete_ids").and_then(|f| f.call1((client, name, uuids))).py_context(py)?;
            Ok(())
        })
        .await
    }

    async fn delete_by_filter(&self, filter: Filter) -> Result<()> {
        let spec = to_qdrant_filter(&filter)?;
        if self.dimension().is_none() {
            return Ok(());
        }
        self.call(move |py, ops, client, name| {
            let spec = json_to_py(py, &spec)?;
            ops.getattr("delete_filter").and_then(|f| f.call1((client, name, spec))).py_context(py)?;
            Ok(())
        })
        .await
    }

    async fn count(&self) -> Result<usize> {
        if self.dimension().is_none() {
            return Ok(0);
        }
        self.call(|py, ops, client, name| {
            ops.getattr("count").and_then(|f| f.call1((client, name))).and_then(|c| c.extract()).py_context(py)
        })
        .await
    }

    async fn describe(&self) -> Result<StoreDescription> {
        let mut details: BTreeMap<String, String> = BTreeMap::new();
        match &self.inner.mode {
            QdrantMode::Local(p) => {
                details.insert("mode".into(), "local".into());
                details.insert("path".into(), p.display().to_string());
            }
            QdrantMode::InMemory => {
                details.insert("mode".into(), "in-memory".into());
            }
            QdrantMode::Server { url, prefer_grpc, .. } => {
                details.insert("mode".into(), "server".into());
                details.insert("url".into(), url.clone());
                details.insert("prefer_grpc".into(), prefer_grpc.to_string());
            }
        }
        if let Some(e) = &self.inner.sparse {
            details.insert("sparse_encoder".into(), e.fingerprint());
        }
        let count = if self.dimension().is_some() {
            let info: BTreeMap<String, String> = self
                .call(|py, ops, client, name| {
                    ops.getattr("describe").and_then(|f| f.call1((client, name))).and_then(|d| d.extract()).py_context(py)
                })
                .await?;
            let count = info.get("points_count").and_then(|c| c.parse().ok()).unwrap_or(0);
            details.extend(info);
            count
        } else {
            details.insert("status".into(), "not created (no vectors yet)".into());
            0
        };
        Ok(StoreDescription {
            backend: "qdrant".into(),
            collection: self.inner.name.clone(),
            dimension: self.dimension(),
            distance: self.inner.distance,
            count,
            details,
        })
    }
}

#[async_trait]
impl HybridSearch for QdrantStore {
    async fn hybrid_search(&self, query: HybridQuery) -> Result<Vec<ScoredChunk>> {
        let sparse = self.encoder("hybrid search")?.encode_query(&query.text);
        if !self.inner.dimension.check(query.vector.len(), "query")? || query.k == 0 {
            return Ok(Vec::new());
        }
        let spec = query.filter.as_ref().map(to_qdrant_filter).transpose()?;
        let (fusion, rrf_k) = match query.fusion {
            Fusion::Rrf => ("rrf", query.rrf_k),
            Fusion::Dbsf => ("dbsf", 0.0),
            Fusion::Convex => {
                return Err(RagError::invalid_input(
                    "fusion",
                    "Qdrant fuses with rrf or dbsf: convex fusion runs in the pipeline",
                ));
            }
        };
        let candidates = query.candidates.max(query.k);
        let params = self.params()?;
        let rows = self
            .call(move |py, ops, client, name| {
                let spec = spec.as_ref().map(|s| json_to_py(py, s)).transpose()?;
                let vector = rag_python::convert::vector_to_numpy(py, &query.vector);
                let params = params.as_ref().map(|p| json_to_py(py, p)).transpose()?;
                let rows = ops
                    .getattr("hybrid_query")
                    .and_then(|f| {
                        f.call1((
                            client,
                            name,
                            vector,
                            sparse.indices,
                            sparse.values,
                            query.k,
                            candidates,
                            spec,
                            fusion,
                            rrf_k,
                            params,
                        ))
                    })
                    .py_context(py)?;
                shim_rows(py, &rows)
            })
            .await?;
        // Fused scores are the engine's own (rank- or distribution-based), not distances.
        self.scored(rows, false)
    }
}

/// BM25 through the collection's sparse vectors. [`VectorStore::upsert`] writes them with the
/// dense vectors, so [`KeywordSearch::write`] has only deletions left to do.
#[async_trait]
impl KeywordSearch for QdrantStore {
    async fn write(&self, upsert: Vec<Chunk>, delete: Vec<String>) -> Result<()> {
        self.encoder("keyword search")?;
        let _ = upsert; // written (dense + sparse) by VectorStore::upsert
        VectorStore::delete(self, delete).await
    }

    async fn search(&self, query: RetrievalQuery) -> Result<Vec<ScoredChunk>> {
        let sparse = self.encoder("keyword search")?.encode_query(&query.text);
        if sparse.is_empty() || query.k == 0 || self.dimension().is_none() {
            return Ok(Vec::new());
        }
        let spec = query.filter.as_ref().map(to_qdrant_filter).transpose()?;
        let rows = self
            .call(move |py, ops, client, name| {
                let spec = spec.as_ref().map(|s| json_to_py(py, s)).transpose()?;
                let rows = ops
                    .getattr("sparse_query")
                    .and_then(|f| f.call1((client, name, sparse.indices, sparse.values, query.k, spec)))
                    .py_context(py)?;
                shim_rows(py, &rows)
            })
            .await?;
        self.scored(rows, false)
    }

    async fn count(&self) -> Result<usize> {
        VectorStore::count(self).await
    }

    async fn scan(&self) -> Result<Vec<Chunk>> {
        if self.dimension().is_none() {
            return Ok(Vec::new());
        }
        let rows = self
            .call(|py, ops, client, name| {
                let rows = ops.getattr("scan").and_then(|f| f.call1((client, name))).py_context(py)?;
                shim_rows(py, &rows)
            })
            .await?;
        rows.into_iter().map(|(_, record)| LAYOUT.decode(&self.inner.name, record)).collect()
    }
}

/// The collection as its own ingest record: each chunk's payload carries its document's hash,
/// chunk count and root ([`rag_core::ledger_keys`]), read back in batched scrolls (keyword
/// payload indexes on `doc_id` and the root on a server).
#[async_trait]
impl IngestLedger for QdrantStore {
    async fn lookup(&self, doc_ids: Vec<String>) -> Result<HashMap<String, LedgerEntry>> {
        if doc_ids.is_empty() || self.dimension().is_none() {
            return Ok(HashMap::new());
        }
        self.records("doc_id", doc_ids).await
    }

    async fn begin(&self, _entries: Vec<(String, LedgerEntry)>) -> Result<()> {
        Ok(())
    }

    async fn commit(&self, _entries: Vec<(String, LedgerEntry)>) -> Result<()> {
        Ok(())
    }

    async fn forget(&self, _doc_ids: Vec<String>) -> Result<()> {
        Ok(())
    }

    async fn under_roots(&self, roots: Vec<String>) -> Result<Vec<(String, LedgerEntry)>> {
        if roots.is_empty() || self.dimension().is_none() {
            return Ok(Vec::new());
        }
        let mut out: Vec<(String, LedgerEntry)> = self.records(rag_core::ledger_keys::ROOT, roots).await?.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn documents(&self) -> Result<usize> {
        if self.dimension().is_none() {
            return Ok(0);
        }
        let rows = self.record_rows(None).await?;
        Ok(rag_core::entries_from_chunks(rows).values().filter(|e| e.hash.is_some()).count())
    }

    fn in_chunks(&self) -> bool {
        true
    }
}

impl QdrantStore {
    async fn records(&self, key: &'static str, values: Vec<String>) -> Result<HashMap<String, LedgerEntry>> {
        Ok(rag_core::entries_from_chunks(self.record_rows(Some((key, values))).await?))
    }

    /// `(doc_id, chunk_id, record payload)` of the chunks whose `key` is one of the values (all
    /// chunks with `None`).
    async fn record_rows(&self, by: Option<(&'static str, Vec<String>)>) -> Result<Vec<(String, String, rag_core::Metadata)>> {
        let collection = self.inner.name.clone();
        self.call(move |py, ops, client, name| {
            let rows = match by {
                Some((key, values)) => ops.getattr("records").and_then(|f| f.call1((client, name, key, values))),
                None => ops.getattr("all_records").and_then(|f| f.call1((client, name))),
            }
            .py_context(py)?;
            let mut out = Vec::new();
            for row in rows.try_iter().py_context(py)? {
                let row = row.py_context(py)?;
                let doc: Option<String> = row.get_item(0).and_then(|x| x.extract()).py_context(py)?;
                let chunk: Option<String> = row.get_item(1).and_then(|x| x.extract()).py_context(py)?;
                let (Some(doc), Some(chunk)) = (doc, chunk) else {
                    return Err(RagError::permanent(
                        "qdrant",
                        format!("collection `{collection}`: a point without `doc_id` or `chunk_id` in its payload (written by another tool?)"),
                    ));
                };
                let payload = rag_python::convert::metadata_from_py(&row.get_item(2).py_context(py)?, &[]);
                out.push((doc, chunk, payload));
            }
            Ok(out)
        })
        .await
    }
}

impl QdrantStore {
    /// The store `settings` describe for the pipeline's collection (`ctx`); with `sparse`, it
    /// also keeps BM25 (keyword search, hybrid fusion and the ingest record in the engine).
    /// The one way the configuration builds a Qdrant store.
    pub async fn from_settings(
        settings: &QdrantSettings,
        ctx: &rag_core::StoreContext,
        sparse: Option<Arc<dyn SparseEncoder>>,
    ) -> Result<Self> {
        settings.validate("store.qdrant")?;
        let mut b = QdrantStore::builder(settings.mode(&ctx.dir)?)
            .collection(&ctx.collection)
            .distance(ctx.distance)
            .dimension(ctx.dimension);
        if let Some(encoder) = sparse {
            b = b.sparse(encoder);
        }
        if let Some(n) = settings.shards {
            b = b.shards(n);
        }
        if let Some(n) = settings.replication {
            b = b.replication_factor(n);
        }
        if let Some(secs) = settings.timeout_secs {
            b = b.timeout(std::time::Duration::from_secs(secs));
        }
        b.layout(settings.layout()).search_params(settings.search_params()).build().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_uuids() {
        assert_eq!(point_id("doc#1"), point_id("doc#1"));
        assert_ne!(point_id("doc#1"), point_id("doc#2"));
        assert!(uuid::Uuid::parse_str(&point_id("x")).is_ok());
    }

    #[test]
    fn keys_with_path_characters_are_quoted() {
        assert_eq!(payload_key("lang"), "lang");
        assert_eq!(payload_key("rag_doc_root"), "rag_doc_root");
        assert_eq!(payload_key("a.b"), "\"a.b\"");
        assert_eq!(payload_key("dc:title"), "\"dc:title\"");
        let f = to_qdrant_filter(&Filter::eq("a.b", "x")).unwrap();
        assert_eq!(f["must"][0]["key"], "\"a.b\"", "{f}");
    }

    #[test]
    fn filter_translation() {
        let f = Filter::eq("lang", "en").and(Filter::ne("year", 2020)).and(Filter::gt("score", 0.5));
        assert_eq!(
            to_qdrant_filter(&f).unwrap(),
            json!({"must": [{"key": "lang", "match": {"value": "en"}}, {"key": "score", "range": {"gt": 0.5}}],
                   "must_not": [{"key": "year", "range": {"gte": 2020.0, "lte": 2020.0}}]})
        );
        let f = Filter::is_in("tag", ["a", "b"]).or(Filter::lt("year", 2000));
        assert_eq!(
            to_qdrant_filter(&f).unwrap(),
            json!({"should": [{"must": [{"key": "tag", "match": {"any": ["a", "b"]}}], "must_not": []},
                              {"must": [{"key": "year", "range": {"lt": 2000.0}}], "must_not": []}]})
        );
    }
}
