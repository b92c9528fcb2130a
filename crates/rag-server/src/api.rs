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

/// The retrieval modes, as the API spells them (for the OpenAPI schema).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RetrieverName {
    /// BM25 and dense, fused.
    Hybrid,
    /// Dense vectors only.
    Dense,
    /// BM25 only.
    Bm25,
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
    /// `hybrid`, `dense` or `bm25`; default: the server's.
    #[serde(default)]
    #[schemars(with = "Option<RetrieverName>")]
    pub retriever: Option<RetrievalMode>,
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
        if let Some(m) = req.retriever {
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
    let c = state.collection(&collection, false).await?;
    if req.stream {
        let events = answer_events(state.clone(), c, req.question, opts).await?;
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
    let result = c.pipeline.query(&req.question, &opts).await?;
    state.record(&result);
    Ok(Json(result).into_response())
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
    /// Counts a finished answer in the metrics.
    pub fn record(&self, result: &QueryResult) {
        self.metrics.observe_stages(&result.timings_ms);
        if !result.degraded.is_empty() {
            self.metrics.degraded.inc();
        }
    }
}

/// Retrieves, then streams the generation: tokens as they come, then the whole result (with
/// only the citations the generator used, when it says which).
pub async fn answer_events(
    state: AppStateRef,
    c: Arc<crate::state::Collection>,
    question: String,
    opts: QueryOptions,
) -> Result<impl Stream<Item = AnswerEvent> + Send + 'static, ApiError> {
    let start = Instant::now();
    let (head, events) = c.pipeline.stream_query(&question, &opts).await?;
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
                        state.record(&r);
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
    let c = state.collection(&collection, false).await?;
    let r = c.pipeline.search(&req.question, &opts).await?;
    state.metrics.observe_stages(&r.timings);
    Ok(Json(SearchResponse { hits: r.ranked(), timings_ms: r.timings, degraded: r.degraded }))
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
pub async fn ingest(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
    ApiJson(req): ApiJson<IngestRequest>,
) -> Result<Json<IngestReport>, ApiError> {
    p.check(&collection, Need::Write)?;
    if req.documents.is_empty() {
        return Err(ApiError::invalid("documents", "the list is empty: send at least one {\"id\", \"text\"}"));
    }
    let max = state.settings.max_documents_per_request;
    if req.documents.len() > max {
        return Err(ApiError::invalid(
            "documents",
            format!(
                "{} documents is more than {max} per request (server.max_documents_per_request): split the batch",
                req.documents.len()
            ),
        ));
    }
    let mut docs = Vec::with_capacity(req.documents.len());
    for (i, d) in req.documents.into_iter().enumerate() {
        if d.id.trim().is_empty() {
            return Err(ApiError::invalid(format!("documents[{i}].id"), "the id is empty"));
        }
        if d.text.trim().is_empty() {
            return Err(ApiError::invalid(format!("documents[{i}].text"), format!("document `{}` has no text", d.id)));
        }
        let mut metadata = d.metadata;
        if let Some(t) = d.title {
            metadata.insert("title".into(), MetadataValue::Str(t));
        }
        p.stamp(&d.id, &mut metadata)?;
        docs.push(Document { id: d.id, text: d.text, metadata });
    }
    let format = match req.format {
        FormatIn::Text => TextFormat::Plain,
        FormatIn::Markdown => TextFormat::Markdown,
    };
    let c = state.collection(&collection, true).await?;
    let _one_writer = c.writes.lock().await;
    let source = InMemorySource::new(docs).origin(format!("api:{}", p.name)).format(format);
    let report = c.pipeline.ingest(source, IngestOptions::new()).await?;
    Ok(Json(report))
}

/// `DELETE /v1/collections/{collection}/documents/{id}`.
pub async fn delete_document(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.check(&collection, Need::Write)?;
    if p.tenant().is_some() {
        // A document's tenant is on its chunks, not in the manifest: deleting by id alone could
        // remove another tenant's document.
        return Err(ApiError::forbidden(format!(
            "key `{}` is bound to a tenant and may not delete by id: use a key without a tenant",
            p.name
        )));
    }
    let c = state.collection(&collection, false).await?;
    let _one_writer = c.writes.lock().await;
    c.pipeline.delete_document(&id).await?;
    Ok(Json(serde_json::json!({ "deleted": id, "collection": collection })))
}

/// `GET /v1/collections/{collection}/stats`.
pub async fn stats(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
) -> Result<Json<rag::Stats>, ApiError> {
    p.check(&collection, Need::Read)?;
    let c = state.collection(&collection, false).await?;
    Ok(Json(c.pipeline.stats().await?))
}

/// `GET /v1/collections`: the collections this key may use.
pub async fn list_collections(State(state): State<AppStateRef>, Extension(p): Extension<Principal>) -> Json<serde_json::Value> {
    let names: Vec<String> = state.known_collections().into_iter().filter(|c| p.can_see(c)).collect();
    Json(serde_json::json!({ "collections": names }))
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the model is loaded and every open collection's stores answer.
pub async fn readyz(State(state): State<AppStateRef>) -> Response {
    if !state.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "ready": false, "reason": "loading the model" })))
            .into_response();
    }
    let mut counts = serde_json::Map::new();
    for c in state.open_collections().await {
        let p = &c.pipeline;
        let vectors = match p.vector_store() {
            Some(s) => s.count().await,
            None => Ok(0),
        };
        match (vectors, p.keyword_index().count().await) {
            (Ok(v), Ok(k)) => {
                counts.insert(p.collection().to_owned(), serde_json::json!({ "chunks": v.max(k) }));
            }
            (Err(e), _) | (_, Err(e)) => {
                let body = serde_json::json!({ "ready": false, "reason": format!("collection `{}`: {e}", p.collection()) });
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
        }
    }
    Json(serde_json::json!({ "ready": true, "collections": counts })).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppStateRef>) -> Response {
    state.refresh_model_metrics().await;
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}
