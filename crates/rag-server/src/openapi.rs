//! The OpenAPI 3.1 document (`GET /openapi.json`): the route table below, with request schemas
//! generated from the request types themselves, so the document cannot drift from what the
//! handlers parse.

use axum::Json;
use rmcp::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Value, json};

use crate::api::{FilesRequest, IngestRequest, QueryRequest};
use crate::openai::ChatRequest;

/// One documented operation.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
    response: &'static str,
    auth: bool,
}

/// Every route of [`crate::router`], in the order docs/http-api.md lists them.
const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/v1/collections/{collection}/query",
        summary: "Answer a question with citations (JSON, or Server-Sent Events with `stream: true`: `token` events, then one `done` event with the whole result)",
        request: Some("QueryRequest"),
        response: "QueryResult: query_id, answer, generator, reasoning, citations, hits, timings_ms, degraded",
        auth: true,
    },
    Operation {
        method: "post",
        path: "/v1/collections/{collection}/search",
        summary: "Ranked hits, no answer",
        request: Some("QueryRequest"),
        response: "hits, timings_ms, degraded",
        auth: true,
    },
    Operation {
        method: "post",
        path: "/v1/collections/{collection}/documents",
        summary: "Ingest documents (idempotent by content)",
        request: Some("IngestRequest"),
        response: "IngestReport: documents, chunks, embedded, cache_hits, unchanged, removed, skipped, seconds",
        auth: true,
    },
    Operation {
        method: "delete",
        path: "/v1/collections/{collection}/documents/{id}",
        summary: "Delete a document from every store",
        request: None,
        response: "deleted, collection",
        auth: true,
    },
    Operation {
        method: "get",
        path: "/v1/collections/{collection}/stats",
        summary: "Counts, backends and models of a collection (a tenant key: its own documents and chunks only)",
        request: None,
        response: "Stats, or for a tenant key: collection, tenant, documents, chunks",
        auth: true,
    },
    Operation {
        method: "post",
        path: "/v1/collections/{collection}/feedback",
        summary: "Judge an answer (by its `query_id`) or one of its passages (`chunk_id`): `relevant` true/false or a 1-5 `rating`, an optional comment; stored durably with the key's tenant",
        request: Some("FeedbackRequest"),
        response: "201, the stored judgment: id, at_unix_ms, collection, source, query_id, question, chunk_id, doc_id, judgment, comment",
        auth: true,
    },
    Operation {
        method: "get",
        path: "/v1/collections/{collection}/feedback",
        summary: "The collection's judgments, oldest first (a tenant key: its tenant's only)",
        request: None,
        response: "collection, feedback",
        auth: true,
    },
    Operation {
        method: "get",
        path: "/v1/collections",
        summary: "The collections this key may use",
        request: None,
        response: "collections",
        auth: true,
    },
    Operation {
        method: "post",
        path: "/v1/local/collections/{collection}/files",
        summary: "`rag ingest PATH...` run by the server, only for the `rag` command on its machine (the token of the data directory's serve.json; no API key may)",
        request: Some("FilesRequest"),
        response: "IngestReport",
        auth: true,
    },
    Operation {
        method: "post",
        path: "/v1/chat/completions",
        summary: "OpenAI-compatible chat completion (`model` names the collection; `stream: true` gives chunks ending in `data: [DONE]`; citations in an extra field)",
        request: Some("ChatRequest"),
        response: "chat.completion or chat.completion.chunk events",
        auth: true,
    },
    Operation {
        method: "get",
        path: "/v1/models",
        summary: "Collections as OpenAI models",
        request: None,
        response: "list of models",
        auth: true,
    },
    Operation {
        method: "post",
        path: "/mcp",
        summary: "MCP over streamable HTTP: tools `search` and `answer`",
        request: None,
        response: "MCP JSON-RPC",
        auth: true,
    },
    Operation { method: "get", path: "/healthz", summary: "Alive", request: None, response: "status", auth: false },
    Operation {
        method: "get",
        path: "/readyz",
        summary: "Model loaded and stores reachable (503 until then); nothing about the data",
        request: None,
        response: "ready",
        auth: false,
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        request: None,
        response: "OpenMetrics text",
        auth: false,
    },
    Operation { method: "get", path: "/", summary: "The web page", request: None, response: "HTML", auth: false },
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        request: None,
        response: "OpenAPI 3.1",
        auth: false,
    },
];

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    serde_json::to_value(generator.subschema_for::<T>()).unwrap_or(Value::Null)
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut schemas = serde_json::Map::new();
    schemas.insert("QueryRequest".into(), schema::<QueryRequest>(&mut generator));
    schemas.insert("IngestRequest".into(), schema::<IngestRequest>(&mut generator));
    schemas.insert("FeedbackRequest".into(), schema::<crate::feedback::FeedbackRequest>(&mut generator));
    schemas.insert("ChatRequest".into(), schema::<ChatRequest>(&mut generator));
    schemas.insert("FilesRequest".into(), schema::<FilesRequest>(&mut generator));
    for (name, s) in generator.take_definitions(true) {
        schemas.insert(name, s);
    }
    let error = json!({
        "type": "object",
        "properties": { "error": { "type": "object", "properties": {
            "code": { "type": "string" }, "field": { "type": "string" }, "message": { "type": "string" } },
            "required": ["code", "message"] } },
    });
    schemas.insert("Error".into(), error);
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let mut o = json!({
            "summary": op.summary,
            "responses": {
                "200": { "description": op.response },
                "4XX": { "description": "A bad request, naming the field", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "503": { "description": "Overloaded (with Retry-After) or not ready" },
            },
        });
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(obj) = o.as_object_mut() {
            if !params.is_empty() {
                obj.insert("parameters".into(), Value::Array(params));
            }
            if let Some(r) = op.request {
                obj.insert(
                    "requestBody".into(),
                    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{r}") } } } }),
                );
            }
            if !op.auth {
                obj.insert("security".into(), json!([]));
            }
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(e) = entry.as_object_mut() {
            e.insert(op.method.to_owned(), o);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "rag serve", "version": env!("CARGO_PKG_VERSION"), "description": "See docs/http-api.md" },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
        "security": [{ "bearer": [] }],
    })
}

/// `GET /openapi.json` (built once: the routes and types cannot change while the server runs).
pub async fn serve() -> Json<Value> {
    static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(document);
    Json(DOCUMENT.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route table, the OpenAPI table and docs/http-api.md's endpoint table name the same
    /// routes with the same methods and the same access (key or none).
    #[test]
    fn the_router_the_openapi_table_and_the_docs_agree() {
        use std::collections::BTreeSet;
        let keyed = |routes: Vec<crate::Route>, auth: bool| -> BTreeSet<(String, String, bool)> {
            routes.into_iter().map(|(m, p, _)| (m.to_owned(), p.to_owned(), auth)).collect()
        };
        let mut routed = keyed(crate::api_routes(), true);
        routed.extend(keyed(crate::open_routes(), false));
        routed.insert(("post".into(), crate::MCP_PATH.into(), true));
        let documented: BTreeSet<(String, String, bool)> =
            OPERATIONS.iter().map(|o| (o.method.to_owned(), o.path.to_owned(), o.auth)).collect();
        assert_eq!(routed, documented, "the router and openapi.rs's OPERATIONS differ");
        assert_eq!(documented.len(), OPERATIONS.len(), "an operation is listed twice");
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/http-api.md")).unwrap();
        let table: BTreeSet<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|l| l.starts_with(['G', 'P', 'D']) && l.contains(" /"))
            .map(str::to_owned)
            .collect();
        for o in OPERATIONS {
            let method = o.method.to_uppercase();
            let listed = table.iter().any(|row| {
                row.split_once(' ').is_some_and(|(methods, path)| path == o.path && methods.split('/').any(|m| m == method))
            });
            assert!(listed, "docs/http-api.md's endpoint table lacks `{method} {}`", o.path);
        }
        assert_eq!(table.len(), OPERATIONS.len(), "docs/http-api.md lists an endpoint the router lacks: {table:?}");
    }

    #[test]
    fn every_request_field_is_in_the_document() {
        let doc = document();
        let q = &doc["components"]["schemas"]["QueryRequest"]["properties"];
        for field in ["question", "k", "mode", "rerank", "filter", "stream"] {
            assert!(q.get(field).is_some(), "QueryRequest.{field} missing: {q}");
        }
        assert!(doc["paths"]["/v1/chat/completions"]["post"]["requestBody"].is_object());
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
    }
}
