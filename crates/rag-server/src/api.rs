//! The native JSON API: query (JSON or Server-Sent Events), search, ingest, delete, stats,
//! health and readiness.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use rag::core::{Document, Filter, GenerationEvent, InMemorySource, Metadata, MetadataValue, TextFormat};
use rag::{Citation, Hit, IngestOptions, IngestReport, QueryOptions, QueryResult, RetrievalMode};
use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

use crate::auth::{Need, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// `axum::Json` whose rejections are [`ApiError`]s (JSON, naming the field).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Shared handler state.
pub type AppStateRef = Arc<AppState>;

/// The schema of a retrieval mode: one of [`RetrievalMode::ALL`] (the type's own spellings).
fn mode_schema(_: &mut rmcp::schemars::SchemaGenerator) -> rmcp::schemars::Schema {
    let mut names: Vec<serde_json::Value> = RetrievalMode::ALL.iter().map(|m| (*m).into()).collect();
    names.push(serde_json::Value::Null);
    rmcp::schemars::json_schema!({ "type": ["string", "null"], "enum": names })
}

/// A query or search request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The question.
    pub question: String,
    /// Chunks to retrieve (1 to 1000); default: the server's.
    #[serde(default)]
    pub k: Option<usize>,
    /// `hybrid`, `dense` or `bm25` (`retrieval.mode`); default: the server's. `retriever` is
    /// its old name, still read.
    #[serde(default, alias = "retriever")]
    #[schemars(schema_with = "mode_schema")]
    pub mode: Option<RetrievalMode>,
    /// Rerank with the configured cross-encoder (`true` needs one).
    #[serde(default)]
    pub rerank: Option<bool>,
    /// Metadata filter, e.g. `{"and": [{"eq": ["lang", "en"]}, {"gte": ["year", 2020]}]}`.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub filter: Option<Filter>,
    /// Stream the answer as Server-Sent Events (query only).
    #[serde(default)]
    pub stream: bool,
}

impl AppState {
    /// Checks a question against the limits and builds the query options, held to the
    /// principal's tenant.
    pub fn options(&self, p: &Principal, req: &QueryRequest) -> Result<QueryOptions, ApiError> {
        let chars = req.question.chars().count();
        if chars > self.settings.max_question_chars {
            return Err(ApiError::invalid(
                "question",
                format!(
                    "{chars} characters is longer than the limit of {} (server.max_question_chars)",
                    self.settings.max_question_chars
                ),
            ));
        }
        if req.question.trim().is_empty() {
            return Err(ApiError::invalid("question", "the question is empty"));
        }
        let mut opts = QueryOptions::new();
        if let Some(k) = req.k {
            opts = opts.k(k);
        }
        if let Some(m) = req.mode {
            opts = opts.mode(m);
        }
        if let Some(r) = req.rerank {
            opts = opts.rerank(r);
        }
        if let Some(f) = p.scope(req.filter.clone()) {
            opts = opts.filter(f);
        }
        Ok(opts)
    }
}

/// `POST /v1/collections/{collection}/query`: an answer with citations, as JSON or a stream.
pub async fn query(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    p.check(&collection, Need::Read)?;
    let opts = state.options(&p, &req)?;
    let c = state.readable_collection(&p, &collection).await?;
    if req.stream {
        let events = answer_events(state.clone(), p, c, req.question, opts).await?;
        let sse = events.map(|e| {
            let event = match e {
                AnswerEvent::Token(text) => Event::default().event("token").json_data(serde_json::json!({ "text": text })),
                AnswerEvent::Done(result) => Event::default().event("done").json_data(&*result),
                AnswerEvent::Error(err) => Event::default().event("error").json_data(err.body()),
            };
            Ok::<_, Infallible>(event.unwrap_or_else(|_| Event::default().event("error").data("unserialisable event")))
        });
        return Ok(Sse::new(sse).keep_alive(KeepAlive::default()).into_response());
    }
    let mut result = c.pipeline.query(&req.question, &opts).await?;
    state.answered(&p, c.pipeline.collection(), &req.question, &mut result);
    Ok(Json(result).into_response())
}

/// The `(event, data)` of one Server-Sent Events block as this server writes them (`event:`
/// and `data:` lines; `message` when the block names no event), for clients of the stream.
pub fn sse_event(block: &str) -> (String, String) {
    let mut event = "message".to_owned();
    let mut data = String::new();
    for line in block.lines() {
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    (event, data)
}

/// One event of a streamed answer.
#[derive(Debug)]
pub enum AnswerEvent {
    /// A piece of the answer.
    Token(String),
    /// The whole answer, with citations, hits and timings; always last unless an error is.
    Done(Box<QueryResult>),
    /// The generation failed after the stream had begun.
    Error(ApiError),
}

impl AppState {
    /// Finishes an answer for `p`: counts it in the metrics, remembers it for feedback (by its
    /// `query_id`), then shows its ids as `p` knows them.
    pub fn answered(&self, p: &Principal, collection: &str, question: &str, result: &mut QueryResult) {
        self.metrics.observe_stages(&result.timings_ms);
        if !result.degraded.is_empty() {
            self.metrics.degraded.inc();
        }
        if let Ok(mut answers) = self.answers.lock() {
            answers.remember(p, collection, question, result);
        }
        p.present(result);
    }
}

/// Retrieves, then streams the generation: tokens as they come, then the whole result (with
/// only the citations the generator used, when it says which), its ids as `p` knows them.
pub async fn answer_events(
    state: AppStateRef,
    p: Principal,
    c: Arc<crate::state::Collection>,
    question: String,
    opts: QueryOptions,
) -> Result<impl Stream<Item = AnswerEvent> + Send + 'static, ApiError> {
    let start = Instant::now();
    let (head, events) = c.pipeline.stream_query(&question, &opts).await?;
    let collection = c.pipeline.collection().to_owned();
    let generate_start = Instant::now();
    let mut head = Some(head);
    let mut streamed_any = false;
    let stream = events
        .map(move |ev| {
            let mut out = Vec::with_capacity(2);
            match ev {
                Ok(GenerationEvent::Token(t)) => {
                    streamed_any |= !t.is_empty();
                    out.push(AnswerEvent::Token(t));
                }
                Ok(GenerationEvent::Final(g)) => {
                    if let Some(mut r) = head.take() {
                        // A generator that does not stream (the extractive one, or a cached LM
                        // answer) still gives the client its answer as text, in one piece.
                        if !streamed_any && !g.answer.is_empty() {
                            out.push(AnswerEvent::Token(g.answer.clone()));
                        }
                        if !g.used_context_ids.is_empty() {
                            let used: Vec<Citation> =
                                r.citations.iter().filter(|c| g.used_context_ids.contains(&c.chunk_id)).cloned().collect();
                            if !used.is_empty() {
                                r.citations = used;
                            }
                        }
                        r.answer = g.answer;
                        r.generator = g.generator;
                        r.reasoning = g.reasoning;
                        r.timings_ms.insert("generate".into(), generate_start.elapsed().as_secs_f64() * 1000.0);
                        r.timings_ms.insert("total".into(), start.elapsed().as_secs_f64() * 1000.0);
                        state.answered(&p, &collection, &question, &mut r);
                        out.push(AnswerEvent::Done(Box::new(r)));
                    }
                }
                Err(e) => out.push(AnswerEvent::Error(ApiError::from(e))),
            }
            futures::stream::iter(out)
        })
        .flatten();
    Ok(stream)
}

/// What `search` answers.
#[derive(Debug, Serialize)]
pub struct SearchResponse {
    /// Ranked hits.
    pub hits: Vec<Hit>,
    /// Per-stage milliseconds.
    pub timings_ms: BTreeMap<String, f64>,
    /// Components that failed and what stood in for them.
    pub degraded: Vec<String>,
}

/// `POST /v1/collections/{collection}/search`: ranked hits, no answer.
pub async fn search(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    if req.stream {
        return Err(ApiError::invalid("stream", "search answers at once: leave `stream` out (it is for query)"));
    }
    p.check(&collection, Need::Read)?;
    let opts = state.options(&p, &req)?;
    let c = state.readable_collection(&p, &collection).await?;
    let r = c.pipeline.search(&req.question, &opts).await?;
    state.metrics.observe_stages(&r.timings_ms);
    let mut hits = r.hits;
    p.present_hits(&mut hits);
    Ok(Json(SearchResponse { hits, timings_ms: r.timings_ms, degraded: r.degraded }))
}

/// A document to ingest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// Stable id (re-sending the same id with the same text changes nothing).
    pub id: String,
    /// The text.
    pub text: String,
    /// A title (stored as metadata `title`).
    #[serde(default)]
    pub title: Option<String>,
    /// Metadata copied onto every chunk (strings, numbers, booleans, lists of strings).
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub metadata: Metadata,
}

/// How ingested texts are chunked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatIn {
    /// Prose.
    #[default]
    Text,
    /// Markdown (headings become each chunk's heading path).
    Markdown,
}

/// An ingest request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The documents.
    pub documents: Vec<DocumentIn>,
    /// `text` (default) or `markdown`.
    #[serde(default)]
    pub format: FormatIn,
}

/// `POST /v1/collections/{collection}/documents`: ingest (idempotent by content).
///
/// Every document is checked before anything is written (ids, texts, metadata keys and values
/// as [`rag::core::rules`] has them, the key's tenant), so a refused batch writes nothing. A
/// tenant-bound key writes into its tenant's namespace ([`crate::auth::Tenant`]), and its
/// embedding-cache hits come only from its own entries.
pub async fn ingest(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
    ApiJson(req): ApiJson<IngestRequest>,
) -> Result<Json<IngestReport>, ApiError> {
    p.check(&collection, Need::Write)?;
    let docs = checked_documents(&p, req.documents, state.settings.max_documents_per_request)?;
    let format = match req.format {
        FormatIn::Text => TextFormat::Plain,
        FormatIn::Markdown => TextFormat::Markdown,
    };
    let c = state.collection(&collection, true).await?;
    let _one_writer = c.writes.lock().await;
    let (origin, options) = match p.tenant() {
        Some(t) => (t.namespace().to_owned(), IngestOptions::new().cache_namespace(t.namespace())),
        None => (format!("api:{}", p.name), IngestOptions::new()),
    };
    let source = InMemorySource::new(docs).origin(origin).format(format);
    let report = c.pipeline.ingest(source, options).await?;
    if p.tenant().is_some() {
        state.tenant_has_data(&collection, &p);
    }
    Ok(Json(report))
}

/// The documents of an ingest request, each checked, stamped with the key's tenant and put in
/// its namespace; the first bad one is a 400 naming its index and field, before any is written.
pub fn checked_documents(p: &Principal, documents: Vec<DocumentIn>, max: usize) -> Result<Vec<Document>, ApiError> {
    if documents.is_empty() {
        return Err(ApiError::invalid("documents", "the list is empty: send at least one {\"id\", \"text\"}"));
    }
    if documents.len() > max {
        return Err(ApiError::invalid(
            "documents",
            format!(
                "{} documents is more than {max} per request (server.max_documents_per_request): split the batch",
                documents.len()
            ),
        ));
    }
    let mut seen = std::collections::HashMap::new();
    let mut docs = Vec::with_capacity(documents.len());
    for (i, d) in documents.into_iter().enumerate() {
        if d.id.trim().is_empty() {
            return Err(ApiError::invalid(format!("documents[{i}].id"), "the id is empty"));
        }
        if let Some(first) = seen.insert(d.id.clone(), i) {
            return Err(ApiError::invalid(
                format!("documents[{i}].id"),
                format!("`{}` is also documents[{first}].id: ids must be unique in a request", d.id),
            ));
        }
        if p.tenant().is_none() && d.id.starts_with(crate::auth::TENANT_ID_PREFIX) {
            return Err(ApiError::invalid(
                format!("documents[{i}].id"),
                format!(
                    "ids starting with `{}` are the namespaces of tenants' documents: choose another id",
                    crate::auth::TENANT_ID_PREFIX
                ),
            ));
        }
        if d.text.trim().is_empty() {
            return Err(ApiError::invalid(format!("documents[{i}].text"), format!("document `{}` has no text", d.id)));
        }
        for (k, v) in &d.metadata {
            rag::core::rules::check_document_field(&format!("documents[{i}].metadata.{k}"), k, v)?;
        }
        let mut metadata = d.metadata;
        if let Some(t) = d.title {
            metadata.insert("title".into(), MetadataValue::Str(t));
        }
        p.stamp(&d.id, &mut metadata)?;
        docs.push(Document { id: p.document_id(&d.id), text: d.text, metadata });
    }
    Ok(docs)
}

/// A request of the local `rag ingest`: files and folders on this machine, by path.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesRequest {
    /// Files and folders, as absolute paths.
    pub paths: Vec<std::path::PathBuf>,
    /// Remove documents that came from these paths before and are gone now.
    #[serde(default)]
    pub prune: bool,
}

/// `POST /v1/local/collections/{collection}/files`: `rag ingest PATH...` run by this server
/// for the `rag` command on the same machine, which found it through the data directory's
/// `serve.json` ([`crate::discovery`]). Only that command's token may ask: no API key can make
/// the server read files by path.
pub async fn ingest_files(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
    ApiJson(req): ApiJson<FilesRequest>,
) -> Result<Json<IngestReport>, ApiError> {
    if !p.is_local() {
        return Err(ApiError::forbidden(
            "files are ingested by path only for the `rag` command on the server's machine (the token in the data directory's serve.json): POST documents to /v1/collections/{collection}/documents",
        ));
    }
    if req.paths.is_empty() {
        return Err(ApiError::invalid("paths", "the list is empty: give files or folders"));
    }
    if let Some((i, rel)) = req.paths.iter().enumerate().find(|(_, p)| p.is_relative()) {
        return Err(ApiError::invalid(format!("paths[{i}]"), format!("`{}` is relative: send absolute paths", rel.display())));
    }
    let c = state.collection(&collection, true).await?;
    let _one_writer = c.writes.lock().await;
    let report = c.pipeline.ingest(rag::FileSource::new(req.paths), IngestOptions::new().prune(req.prune)).await?;
    Ok(Json(report))
}

/// `DELETE /v1/collections/{collection}/documents/{id}`: a tenant-bound key deletes only its
/// own document `id` (another tenant's `id` is a different document, never touched).
pub async fn delete_document(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.check(&collection, Need::Write)?;
    let c = state.readable_collection(&p, &collection).await?;
    let _one_writer = c.writes.lock().await;
    match c.pipeline.delete_document(&p.document_id(&id)).await {
        Ok(()) => Ok(Json(serde_json::json!({ "deleted": id, "collection": collection }))),
        Err(rag::RagError::NotFound { .. }) => Err(ApiError::not_found(format!(
            "document `{id}` is not in collection `{collection}`: POST .../search shows the ids of stored documents"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// What a tenant-bound key's `stats` says: its own documents and chunks, nothing of others.
#[derive(Debug, Serialize)]
pub struct TenantStats {
    /// Collection name.
    pub collection: String,
    /// The tenant's fields.
    pub tenant: Metadata,
    /// The tenant's documents.
    pub documents: usize,
    /// Their chunks.
    pub chunks: usize,
}

/// `GET /v1/collections/{collection}/stats`: the whole collection for a key without a tenant;
/// a tenant-bound key gets its own counts only ([`TenantStats`]).
pub async fn stats(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
) -> Result<Response, ApiError> {
    p.check(&collection, Need::Read)?;
    let c = state.readable_collection(&p, &collection).await?;
    match p.tenant() {
        Some(t) => {
            let counts = c.pipeline.origin_counts(vec![t.namespace().to_owned()]).await?;
            let body = TenantStats {
                collection: collection.clone(),
                tenant: t.fields().clone(),
                documents: counts.documents,
                chunks: counts.chunks,
            };
            Ok(Json(body).into_response())
        }
        None => Ok(Json(c.pipeline.stats().await?).into_response()),
    }
}

/// `GET /v1/collections`: the collections this key may use (for a tenant-bound key with `*`,
/// those where its tenant has documents, and those the key names).
pub async fn list_collections(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({ "collections": state.visible_collections(&p).await? })))
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the model is loaded and every open collection's stores answer. It is open
/// to anyone (load balancers), so it says ready or not and nothing about the data: which
/// collection failed, and why, goes to the server's log.
pub async fn readyz(State(state): State<AppStateRef>) -> Response {
    if !state.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "ready": false, "reason": "loading the model" })))
            .into_response();
    }
    for c in state.open_collections().await {
        let p = &c.pipeline;
        let vectors = match p.vector_store() {
            Some(s) => s.count().await.map(|_| ()),
            None => Ok(()),
        };
        if let Err(e) = vectors.and(p.keyword_index().count().await.map(|_| ())) {
            tracing::error!(collection = p.collection(), error = %e, "readiness: a store does not answer");
            let body = serde_json::json!({ "ready": false, "reason": "a store does not answer (see the server's log)" });
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    }
    Json(serde_json::json!({ "ready": true })).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppStateRef>) -> Response {
    state.refresh_model_metrics().await;
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}
