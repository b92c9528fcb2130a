//! The OpenAI-compatible surface: `POST /v1/chat/completions` (with and without streaming) and
//! `GET /v1/models`, so the official OpenAI clients and chat UIs work unchanged. `model` names
//! the collection; the last user message is the question; citations ride in an extra field.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{AnswerEvent, ApiJson, AppStateRef, QueryRequest, answer_events};
use crate::auth::{Need, Principal};
use crate::error::ApiError;

/// One chat message. `content` is a string or a list of parts (`{"type": "text", "text": ...}`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, `developer`.
    pub role: String,
    /// The text, or its parts.
    #[serde(default)]
    pub content: Option<Value>,
}

/// The request body. The OpenAI fields that make no sense for a retrieval pipeline are accepted
/// and ignored by name; any other field is refused, so a misspelling is not silently dropped.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ignored fields are named so that they parse, not to be read
pub struct ChatRequest {
    /// The collection to answer from.
    pub model: String,
    /// The conversation; the last `user` message is the question.
    pub messages: Vec<ChatMessage>,
    /// Stream chunks as Server-Sent Events, ending with `data: [DONE]`.
    #[serde(default)]
    pub stream: bool,
    /// Must be 1 when given.
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    temperature: Option<Value>,
    #[serde(default)]
    top_p: Option<Value>,
    #[serde(default)]
    max_tokens: Option<Value>,
    #[serde(default)]
    max_completion_tokens: Option<Value>,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    presence_penalty: Option<Value>,
    #[serde(default)]
    frequency_penalty: Option<Value>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    seed: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
    #[serde(default)]
    logit_bias: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    store: Option<Value>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The text of a message's content.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn question(req: &ChatRequest) -> Result<String, ApiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only one choice is generated: leave n out or set it to 1"));
    }
    let last = req
        .messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| ApiError::invalid("messages", "no message has role `user`: the last user message is the question"))?;
    let text = req.messages[last].content.as_ref().map(text_of).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!("messages[{last}].content"), "the last user message has no text"));
    }
    Ok(text)
}

fn citations_json(citations: &[rag::Citation]) -> Value {
    serde_json::to_value(citations).unwrap_or(Value::Null)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let collection = req.model.clone();
    p.check(&collection, Need::Read)?;
    let q = QueryRequest { question: question(&req)?, k: None, mode: None, rerank: None, filter: None, stream: req.stream };
    let opts = state.options(&p, &q)?;
    let c = state.readable_collection(&p, &collection).await?;
    let created = now();
    let id = format!("chatcmpl-{created:x}{:06x}", NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    if !req.stream {
        let mut r = c.pipeline.query(&q.question, &opts).await?;
        state.answered(&p, c.pipeline.collection(), &q.question, &mut r);
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": collection,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": r.answer },
                "finish_reason": "stop",
            }],
            "usage": { "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 },
            "citations": citations_json(&r.citations),
            "query_id": r.query_id,
            "degraded": r.degraded,
        });
        return Ok(Json(body).into_response());
    }
    let events = answer_events(state.clone(), p, c, q.question, opts).await?;
    let chunk = move |delta: Value, finish: Option<&str>, extra: Vec<(&str, Value)>| {
        let mut v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": collection,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        if let Some(obj) = v.as_object_mut() {
            for (k, x) in extra {
                obj.insert(k.to_owned(), x);
            }
        }
        Event::default().data(v.to_string())
    };
    let first = futures::stream::once({
        let c = chunk.clone();
        async move { c(json!({ "role": "assistant", "content": "" }), None, Vec::new()) }
    });
    let body = events.map(move |e| match e {
        AnswerEvent::Token(t) => chunk(json!({ "content": t }), None, Vec::new()),
        AnswerEvent::Done(r) => {
            chunk(json!({}), Some("stop"), vec![("citations", citations_json(&r.citations)), ("query_id", json!(r.query_id))])
        }
        AnswerEvent::Error(err) => Event::default().data(json!({ "error": err.body()["error"] }).to_string()),
    });
    let done = futures::stream::once(async { Event::default().data("[DONE]") });
    let all = first.chain(body).chain(done).map(Ok::<_, Infallible>);
    Ok(Sse::new(all).keep_alive(KeepAlive::default()).into_response())
}

/// Completion ids: unique within a process, ordered.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `GET /v1/models`: the collections this key may read, as models.
pub async fn models(State(state): State<AppStateRef>, Extension(p): Extension<Principal>) -> Result<Json<Value>, ApiError> {
    let created = now();
    let data: Vec<Value> = state
        .visible_collections(&p)
        .await?
        .into_iter()
        .map(|c| json!({ "id": c, "object": "model", "created": created, "owned_by": "rag" }))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_user_message_is_the_question() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "papers",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "what is X?"}]}
            ],
            "temperature": 0.2
        }))
        .unwrap();
        assert_eq!(question(&req).unwrap(), "what is X?");
        let bad = serde_json::from_value::<ChatRequest>(json!({"model": "m", "messages": [], "temprature": 1}));
        assert!(bad.unwrap_err().to_string().contains("temprature"));
    }
}
