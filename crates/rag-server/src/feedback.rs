//! Feedback on answers: `POST /v1/collections/{collection}/feedback` judges an answer or one of
//! its passages (thumbs or a 1-5 rating, a comment), `GET` lists a collection's judgments (a
//! tenant-bound key: only its tenant's).
//!
//! A judgment names an answer by the `query_id` every answer carries. The server remembers the
//! last `server.feedback_answers` answers (their question, collection, tenant and passages), so
//! a judgment can only be about an answer this server gave, to the same tenant, and only about
//! a passage that answer showed. The judgment itself goes to the [`rag::feedback::FeedbackStore`] (durable:
//! `DATA_DIR/feedback.jsonl` by default) with everything an export needs.

use std::collections::{HashMap, VecDeque};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rag::QueryResult;
use rag::feedback::{Feedback, FeedbackScope, Judgment, MAX_COMMENT_CHARS};
use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;

use crate::api::{ApiJson, AppStateRef};
use crate::auth::{Need, Principal};
use crate::error::ApiError;

/// The most judgments one answer takes (each of its passages judged several times over): what
/// one answer can cost the store.
pub const MAX_JUDGMENTS_PER_ANSWER: usize = 100;

/// How many of an answer's hits (beyond its citations) may be judged.
pub const MAX_JUDGED_HITS: usize = 50;

/// An answer remembered for feedback, with stored ids.
#[derive(Debug, Clone)]
struct Answered {
    collection: String,
    tenant: Option<String>,
    question: String,
    /// (chunk id, document id) of every passage the answer showed: citations and hits.
    passages: Vec<(String, String)>,
    judgments: usize,
}

/// The last answers given, oldest dropped first.
#[derive(Debug)]
pub struct RecentAnswers {
    capacity: usize,
    answers: HashMap<String, Answered>,
    order: VecDeque<String>,
}

impl RecentAnswers {
    /// Room for `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), answers: HashMap::new(), order: VecDeque::new() }
    }

    /// Remembers `result` (ids as stored, before they are shown to `p`).
    pub fn remember(&mut self, p: &Principal, collection: &str, question: &str, result: &QueryResult) {
        let mut passages: Vec<(String, String)> =
            result.citations.iter().map(|c| (c.chunk_id.clone(), c.doc_id.clone())).collect();
        // A query may ask for 1,000 hits: only the first ones can be judged, so the log's memory
        // stays bounded whatever `k` clients send.
        for h in result.hits.iter().take(MAX_JUDGED_HITS) {
            if !passages.iter().any(|(c, _)| *c == h.chunk_id) {
                passages.push((h.chunk_id.clone(), h.doc_id.clone()));
            }
        }
        let answered = Answered {
            collection: collection.to_owned(),
            tenant: p.tenant().map(|t| t.namespace().to_owned()),
            question: question.to_owned(),
            passages,
            judgments: 0,
        };
        if self.answers.insert(result.query_id.clone(), answered).is_none() {
            self.order.push_back(result.query_id.clone());
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// A judgment of an answer, or of one passage of it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `query_id` of the answer (every answer, streamed or not, carries one).
    pub query_id: String,
    /// The judged passage: the `chunk_id` of one of the answer's citations or first 50 hits.
    /// Leave it out to judge the whole answer.
    #[serde(default)]
    pub chunk_id: Option<String>,
    /// Thumbs up (`true`) or down (`false`). Give this or `rating`.
    #[serde(default)]
    pub relevant: Option<bool>,
    /// 1 (useless) to 5 (exactly right). Give this or `relevant`.
    #[serde(default)]
    pub rating: Option<u8>,
    /// What the person wrote (at most 2,000 characters).
    #[serde(default)]
    pub comment: Option<String>,
}

impl FeedbackRequest {
    /// The judgment it gives, checked.
    fn judgment(&self) -> Result<Judgment, ApiError> {
        match (self.relevant, self.rating) {
            (Some(r), None) => Ok(Judgment::Relevant(r)),
            (None, Some(r)) => Judgment::Rating(r)
                .validate("rating")
                .map_err(|_| ApiError::invalid("rating", format!("{r} is out of range: give 1 (useless) to 5 (exactly right)"))),
            (None, None) => Err(ApiError::invalid("relevant", "give `relevant` (true or false) or `rating` (1 to 5)")),
            (Some(_), Some(_)) => Err(ApiError::invalid("rating", "give `relevant` or `rating`, not both")),
        }
    }

    /// The comment, trimmed (an empty one is none), at most [`MAX_COMMENT_CHARS`].
    fn comment(&self) -> Result<Option<String>, ApiError> {
        let Some(c) = self.comment.as_deref().map(str::trim).filter(|c| !c.is_empty()) else { return Ok(None) };
        let chars = c.chars().count();
        if chars > MAX_COMMENT_CHARS {
            return Err(ApiError::invalid(
                "comment",
                format!("{chars} characters is longer than the limit of {MAX_COMMENT_CHARS}: shorten it"),
            ));
        }
        Ok(Some(c.to_owned()))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `POST /v1/collections/{collection}/feedback`: 201 with the stored judgment (ids as the key
/// knows them).
pub async fn give(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
    ApiJson(req): ApiJson<FeedbackRequest>,
) -> Result<Response, ApiError> {
    p.check(&collection, Need::Read)?;
    let judgment = req.judgment()?;
    let comment = req.comment()?;
    state.readable_collection(&p, &collection).await?;
    let tenant = p.tenant().map(|t| t.namespace().to_owned());
    let (question, passage) = {
        let mut answers = state
            .answers
            .lock()
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the answer log's lock is poisoned"))?;
        let kept = answers.capacity;
        // Another tenant's answer, or another collection's, is the same 404 as one never given.
        let answered = answers
            .answers
            .get_mut(&req.query_id)
            .filter(|a| a.collection == collection && a.tenant == tenant)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "query_id `{}` is not one of this collection's recent answers (the server keeps the last {kept} for feedback, server.feedback_answers): ask again and judge the new answer",
                    req.query_id
                ))
            })?;
        if answered.judgments >= MAX_JUDGMENTS_PER_ANSWER {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_judgments",
                format!("answer `{}` has {MAX_JUDGMENTS_PER_ANSWER} judgments already, the most one answer takes", req.query_id),
            ));
        }
        let passage = match &req.chunk_id {
            None => None,
            Some(shown) => {
                let stored = p.document_id(shown);
                let found = answered.passages.iter().find(|(c, _)| *c == stored).cloned();
                Some(found.ok_or_else(|| {
                    ApiError::invalid(
                        "chunk_id",
                        format!(
                            "`{shown}` is not a passage of answer `{}`: give the chunk_id of one of its citations or hits, or leave chunk_id out to judge the whole answer",
                            req.query_id
                        ),
                    )
                })?)
            }
        };
        answered.judgments += 1;
        (answered.question.clone(), passage)
    };
    let feedback = Feedback {
        id: Feedback::new_id(),
        at_unix_ms: now_ms(),
        collection,
        tenant,
        source: p.name.clone(),
        query_id: req.query_id,
        question,
        chunk_id: passage.as_ref().map(|(c, _)| c.clone()),
        doc_id: passage.map(|(_, d)| d),
        judgment,
        comment,
    };
    state.feedback.record(feedback.clone()).await?;
    state.metrics.feedback.inc();
    Ok((StatusCode::CREATED, Json(shown(&p, feedback))).into_response())
}

/// A judgment with its ids as `p` knows them.
fn shown(p: &Principal, mut f: Feedback) -> Feedback {
    f.chunk_id = f.chunk_id.map(|c| p.shown_id(&c));
    f.doc_id = f.doc_id.map(|d| p.shown_id(&d));
    f.tenant = f.tenant.filter(|_| p.tenant().is_none());
    f
}

/// `GET /v1/collections/{collection}/feedback`: `{"feedback": [...]}`, oldest first; a
/// tenant-bound key gets only its tenant's judgments, with its own ids.
pub async fn list(
    State(state): State<AppStateRef>,
    Extension(p): Extension<Principal>,
    Path(collection): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.check(&collection, Need::Read)?;
    state.readable_collection(&p, &collection).await?;
    let scope = match p.tenant() {
        Some(t) => FeedbackScope::Tenant(t.namespace().to_owned()),
        None => FeedbackScope::All,
    };
    let records = state.feedback.list(&collection, scope).await?;
    let records: Vec<Feedback> = records.into_iter().map(|f| shown(&p, f)).collect();
    Ok(Json(serde_json::json!({ "collection": collection, "feedback": records })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> QueryResult {
        QueryResult {
            query_id: id.into(),
            answer: String::new(),
            generator: "extractive".into(),
            reasoning: None,
            citations: Vec::new(),
            hits: Vec::new(),
            timings_ms: Default::default(),
            degraded: Vec::new(),
        }
    }

    #[test]
    fn only_the_first_hits_are_remembered() {
        let mut r = result("q-1");
        r.hits = (0..1000)
            .map(|i| rag::Hit {
                rank: i + 1,
                chunk_id: format!("d{i}#0"),
                doc_id: format!("d{i}"),
                score: 0.0,
                span: [0, 1],
                text: "x".into(),
                source: None,
                title: None,
                pages: None,
            })
            .collect();
        let mut log = RecentAnswers::new(10);
        log.remember(&Principal::anonymous(), "c", "why?", &r);
        assert_eq!(log.answers["q-1"].passages.len(), MAX_JUDGED_HITS);
    }

    #[test]
    fn the_oldest_answers_drop_out_first() {
        let mut log = RecentAnswers::new(2);
        let p = Principal::anonymous();
        for id in ["q-1", "q-2", "q-3"] {
            log.remember(&p, "c", "why?", &result(id));
        }
        assert_eq!(log.len(), 2);
        assert!(!log.answers.contains_key("q-1"));
        assert!(log.answers.contains_key("q-2") && log.answers.contains_key("q-3"));
    }

    #[test]
    fn a_request_gives_one_judgment_and_a_bounded_comment() {
        let req = |relevant: Option<bool>, rating: Option<u8>, comment: Option<String>| FeedbackRequest {
            query_id: "q".into(),
            chunk_id: None,
            relevant,
            rating,
            comment,
        };
        assert_eq!(req(Some(true), None, None).judgment().unwrap(), Judgment::Relevant(true));
        assert_eq!(req(None, Some(4), None).judgment().unwrap(), Judgment::Rating(4));
        for (bad, field) in [
            (req(None, None, None), "relevant"),
            (req(Some(true), Some(3), None), "rating"),
            (req(None, Some(9), None), "rating"),
        ] {
            assert_eq!(bad.judgment().unwrap_err().field.as_deref(), Some(field));
        }
        assert_eq!(req(Some(true), None, Some("  ".into())).comment().unwrap(), None);
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert_eq!(req(Some(true), None, Some(long)).comment().unwrap_err().field.as_deref(), Some("comment"));
    }
}
