//! Judgments from people about answers: the [`FeedbackStore`] seam, its record
//! ([`Feedback`]), and the step that turns judgments into BEIR-style qrels
//! ([`JudgedQueries::from_feedback`]) so they feed `rag eval`, `rag tune` and `rag optimize`.
//!
//! A record carries everything an export needs (the question, the judged document), so it
//! outlives the answer it was given on: a server keeps answers only a while, the store keeps
//! judgments for good.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{RagError, Result};

/// The longest comment a judgment may carry, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// What a person said about an answer or one of its passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgment {
    /// Thumbs up (`true`) or down (`false`).
    Relevant(bool),
    /// A rating from 1 (useless) to 5 (exactly right).
    Rating(u8),
}

impl Judgment {
    /// The relevance grade this judgment gives its document in qrels: thumbs down 0, up 1;
    /// ratings 1 and 2 are 0, then 3 -> 1, 4 -> 2, 5 -> 3 (a grade above 0 counts as relevant
    /// for Recall and MRR; nDCG uses the grade as gain).
    pub fn grade(self) -> u32 {
        match self {
            Self::Relevant(r) => u32::from(r),
            Self::Rating(r) => u32::from(r.saturating_sub(2)),
        }
    }

    /// Checks the judgment: a rating is 1 to 5.
    pub fn validate(self, input: &str) -> Result<Self> {
        match self {
            Self::Rating(r) if !(1..=5).contains(&r) => {
                Err(RagError::invalid_input(input, format!("rating {r} is out of range: give 1 (useless) to 5 (exactly right)")))
            }
            j => Ok(j),
        }
    }
}

/// One judgment, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Its own id (`fb-` and 32 hex digits).
    pub id: String,
    /// When it was given, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The collection the answer came from.
    pub collection: String,
    /// The tenant namespace of the key that gave it (`None`: a key without a tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The name of the key (or client) that gave it.
    pub source: String,
    /// The id of the answer it is about ([`crate`]'s query results carry one).
    pub query_id: String,
    /// The question that was answered.
    pub question: String,
    /// The judged chunk; `None` when the judgment is about the whole answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_id: Option<String>,
    /// The judged chunk's document, as stored (a tenant's documents carry its namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// The judgment.
    pub judgment: Judgment,
    /// What the person wrote, if anything (at most [`MAX_COMMENT_CHARS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Feedback {
    /// A new id for a judgment.
    pub fn new_id() -> String {
        format!("fb-{}", crate::random_hex_id())
    }
}

/// Which judgments a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackScope {
    /// Every judgment of the collection (a key without a tenant, or the local CLI).
    All,
    /// Only those given by keys of this tenant namespace.
    Tenant(String),
}

impl FeedbackScope {
    /// Whether `f` is inside the scope.
    pub fn admits(&self, f: &Feedback) -> bool {
        match self {
            Self::All => true,
            Self::Tenant(t) => f.tenant.as_deref() == Some(t.as_str()),
        }
    }
}

/// A durable store of judgments. Implementations keep every record they accepted (across
/// restarts) and return a collection's records oldest first.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait FeedbackStore: Send + Sync {
    /// Stores one judgment (durably, before returning `Ok`).
    async fn record(&self, feedback: Feedback) -> Result<()>;
    /// The judgments of `collection` inside `scope`, oldest first.
    async fn list(&self, collection: &str, scope: FeedbackScope) -> Result<Vec<Feedback>>;
}

macro_rules! forward_feedback {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: FeedbackStore + ?Sized> FeedbackStore for $ptr<T> {
            async fn record(&self, feedback: Feedback) -> Result<()> { (**self).record(feedback).await }
            async fn list(&self, collection: &str, scope: FeedbackScope) -> Result<Vec<Feedback>> {
                (**self).list(collection, scope).await
            }
        }
    )*};
}

forward_feedback!(Arc, Box);

/// A [`FeedbackStore`] in memory (tests, and programs that export judgments themselves).
#[derive(Debug, Default)]
pub struct InMemoryFeedbackStore {
    records: Mutex<Vec<Feedback>>,
}

#[async_trait]
impl FeedbackStore for InMemoryFeedbackStore {
    async fn record(&self, feedback: Feedback) -> Result<()> {
        self.records.lock().map_err(|_| RagError::config("the feedback store's lock is poisoned"))?.push(feedback);
        Ok(())
    }

    async fn list(&self, collection: &str, scope: FeedbackScope) -> Result<Vec<Feedback>> {
        let records = self.records.lock().map_err(|_| RagError::config("the feedback store's lock is poisoned"))?;
        Ok(records.iter().filter(|f| f.collection == collection && scope.admits(f)).cloned().collect())
    }
}

/// Judgments as an evaluation set: queries by id and graded qrels, what a BEIR folder's
/// `queries.jsonl` and `qrels/test.tsv` hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgedQueries {
    /// Query id -> question. One id per distinct question (the id of the first answer to it
    /// that was judged).
    pub queries: BTreeMap<String, String>,
    /// Query id -> (document id -> grade), for queries with at least one relevant document.
    pub qrels: BTreeMap<String, BTreeMap<String, u32>>,
    /// Whole-answer judgments, which name no document and so are not qrels.
    pub answer_judgments: usize,
    /// Questions whose judged documents were all graded 0 (left out: no relevant document
    /// means no nDCG).
    pub without_relevant: usize,
}

impl JudgedQueries {
    /// Builds qrels from judgments (oldest first): the same question asked again is one query;
    /// a document judged again for it keeps its latest grade.
    pub fn from_feedback(records: &[Feedback]) -> Self {
        let mut out = Self::default();
        let mut ids: HashMap<&str, String> = HashMap::new();
        let mut grades: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for f in records {
            let Some(doc) = &f.doc_id else {
                out.answer_judgments += 1;
                continue;
            };
            let qid = ids.entry(f.question.as_str()).or_insert_with(|| f.query_id.clone()).clone();
            out.queries.entry(qid.clone()).or_insert_with(|| f.question.clone());
            grades.entry(qid).or_default().insert(doc.clone(), f.judgment.grade());
        }
        for (qid, docs) in grades {
            if docs.values().any(|g| *g > 0) {
                out.qrels.insert(qid, docs);
            } else {
                out.queries.remove(&qid);
                out.without_relevant += 1;
            }
        }
        out
    }

    /// `qrels/test.tsv` as BEIR writes it (a header, then `query-id  corpus-id  score`).
    pub fn qrels_tsv(&self) -> String {
        let mut s = String::from("query-id\tcorpus-id\tscore\n");
        for (qid, docs) in &self.qrels {
            for (doc, grade) in docs {
                s.push_str(&format!("{qid}\t{doc}\t{grade}\n"));
            }
        }
        s
    }

    /// `queries.jsonl` as BEIR writes it (`{"_id", "text"}` a line).
    pub fn queries_jsonl(&self) -> String {
        self.queries.iter().map(|(id, text)| format!("{}\n", serde_json::json!({ "_id": id, "text": text }))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(query_id: &str, question: &str, doc: Option<&str>, judgment: Judgment) -> Feedback {
        Feedback {
            id: Feedback::new_id(),
            at_unix_ms: 0,
            collection: "c".into(),
            tenant: None,
            source: "test".into(),
            query_id: query_id.into(),
            question: question.into(),
            chunk_id: doc.map(|d| format!("{d}#0")),
            doc_id: doc.map(str::to_owned),
            judgment,
            comment: None,
        }
    }

    #[test]
    fn grades_follow_the_documented_table() {
        assert_eq!(Judgment::Relevant(false).grade(), 0);
        assert_eq!(Judgment::Relevant(true).grade(), 1);
        let ratings: Vec<u32> = (1..=5).map(|r| Judgment::Rating(r).grade()).collect();
        assert_eq!(ratings, [0, 0, 1, 2, 3]);
        assert!(Judgment::Rating(0).validate("rating").is_err());
        assert!(Judgment::Rating(6).validate("rating").is_err());
        assert!(Judgment::Rating(5).validate("rating").is_ok());
    }

    #[test]
    fn one_query_per_question_and_the_latest_grade_wins() {
        let records = vec![
            judged("q-1", "vitamin d?", Some("a"), Judgment::Relevant(true)),
            judged("q-2", "vitamin d?", Some("b"), Judgment::Relevant(false)),
            judged("q-3", "vitamin d?", Some("a"), Judgment::Rating(5)),
            judged("q-4", "statins?", Some("c"), Judgment::Relevant(false)),
            judged("q-5", "statins?", None, Judgment::Relevant(true)),
        ];
        let j = JudgedQueries::from_feedback(&records);
        assert_eq!(j.queries.len(), 1);
        assert_eq!(j.queries["q-1"], "vitamin d?");
        assert_eq!(j.qrels["q-1"], BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 0)]));
        assert_eq!((j.answer_judgments, j.without_relevant), (1, 1));
        assert_eq!(j.qrels_tsv(), "query-id\tcorpus-id\tscore\nq-1\ta\t3\nq-1\tb\t0\n");
        assert_eq!(j.queries_jsonl(), "{\"_id\":\"q-1\",\"text\":\"vitamin d?\"}\n");
    }

    #[tokio::test]
    async fn the_memory_store_keeps_tenants_apart() {
        let store = InMemoryFeedbackStore::default();
        let mut a = judged("q-1", "x", Some("d"), Judgment::Relevant(true));
        a.tenant = Some("tenant:a".into());
        let mut b = a.clone();
        b.tenant = Some("tenant:b".into());
        store.record(a.clone()).await.unwrap();
        store.record(b).await.unwrap();
        assert_eq!(store.list("c", FeedbackScope::Tenant("tenant:a".into())).await.unwrap(), vec![a]);
        assert_eq!(store.list("c", FeedbackScope::All).await.unwrap().len(), 2);
        assert!(store.list("other", FeedbackScope::All).await.unwrap().is_empty());
    }
}
