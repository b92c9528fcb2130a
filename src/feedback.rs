//! Judgments from people, kept on disk: [`JsonlFeedbackStore`] (the store `rag serve` writes
//! and `rag feedback export` reads), and [`write_beir_folder`], which turns judgments into the
//! `queries.jsonl` + `qrels/test.tsv` that `rag eval --dataset` and `rag tune --dataset` read.
//!
//! The types and the seam are in [`rag_core::feedback`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
pub use rag_core::feedback::{
    Feedback, FeedbackScope, FeedbackStore, InMemoryFeedbackStore, JudgedQueries, Judgment, MAX_COMMENT_CHARS,
};
use rag_core::{RagError, Result};

/// The file, under the data directory, that holds every collection's judgments.
pub const FEEDBACK_FILE: &str = "feedback.jsonl";

/// Judgments appended to one JSON Lines file, one record a line, each written and synced to
/// disk before [`FeedbackStore::record`] returns: a record that was acknowledged survives a
/// crash or a restart. A line cut short by a crash mid-write was never acknowledged; the next
/// write trims it away. The file is plain text, so people can read it, and another process
/// (`rag feedback export`) can read it while a server appends.
#[derive(Debug, Clone)]
pub struct JsonlFeedbackStore {
    path: PathBuf,
    // One writer at a time within a process (a server is the only writer of its data directory).
    write: Arc<Mutex<()>>,
}

impl JsonlFeedbackStore {
    /// The store at `path` (created on the first judgment).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), write: Arc::new(Mutex::new(())) }
    }

    /// The store of a data directory: `DATA_DIR/feedback.jsonl`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join(FEEDBACK_FILE))
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, line: &str) -> Result<()> {
        let _one = self.write.lock().map_err(|_| RagError::config("the feedback store's lock is poisoned"))?;
        let io = |e| RagError::io(&self.path, e);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RagError::io(dir, e))?;
        }
        let mut f = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&self.path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            f.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                let keep = last_line_end(&self.path)?;
                tracing::warn!(path = %self.path.display(), "trimming a judgment cut short by an earlier crash (it was never acknowledged)");
                f.set_len(keep).map_err(io)?;
            }
        }
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }

    fn read(&self) -> Result<Vec<Feedback>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RagError::io(&self.path, e)),
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        complete
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| RagError::json(format!("{} line {}", self.path.display(), i + 1), e))
            })
            .collect()
    }
}

/// The length of `path` up to and including its last newline.
fn last_line_end(path: &Path) -> Result<u64> {
    let bytes = std::fs::read(path).map_err(|e| RagError::io(path, e))?;
    Ok(bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i as u64 + 1))
}

#[async_trait]
impl FeedbackStore for JsonlFeedbackStore {
    async fn record(&self, feedback: Feedback) -> Result<()> {
        let mut line = serde_json::to_string(&feedback).map_err(|e| RagError::json("a judgment", e))?;
        line.push('\n');
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.append(&line))
            .await
            .map_err(|e| RagError::config(format!("the feedback writer stopped: {e}")))?
    }

    async fn list(&self, collection: &str, scope: FeedbackScope) -> Result<Vec<Feedback>> {
        let store = self.clone();
        let all = tokio::task::spawn_blocking(move || store.read())
            .await
            .map_err(|e| RagError::config(format!("the feedback reader stopped: {e}")))??;
        Ok(all.into_iter().filter(|f| f.collection == collection && scope.admits(f)).collect())
    }
}

/// Writes `judged` as a BEIR folder without a corpus: `DIR/queries.jsonl` and
/// `DIR/qrels/test.tsv`. `rag eval --dataset DIR` then scores the collection as it is stored.
pub fn write_beir_folder(dir: &Path, judged: &JudgedQueries) -> Result<()> {
    if judged.qrels.is_empty() {
        return Err(RagError::invalid_input(
            "feedback",
            "no question has a document judged relevant yet: there is nothing to score (collect thumbs up on citations first)",
        ));
    }
    let qrels_dir = dir.join("qrels");
    std::fs::create_dir_all(&qrels_dir).map_err(|e| RagError::io(&qrels_dir, e))?;
    let queries = dir.join("queries.jsonl");
    std::fs::write(&queries, judged.queries_jsonl()).map_err(|e| RagError::io(&queries, e))?;
    let qrels = qrels_dir.join("test.tsv");
    std::fs::write(&qrels, judged.qrels_tsv()).map_err(|e| RagError::io(&qrels, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn judgment(collection: &str, tenant: Option<&str>, doc: &str) -> Feedback {
        Feedback {
            id: Feedback::new_id(),
            at_unix_ms: 1,
            collection: collection.into(),
            tenant: tenant.map(str::to_owned),
            source: "k".into(),
            query_id: "q-1".into(),
            question: "does it work?".into(),
            chunk_id: Some(format!("{doc}#0")),
            doc_id: Some(doc.into()),
            judgment: Judgment::Relevant(true),
            comment: Some("yes \"quoted\"\nnew line".into()),
        }
    }

    #[tokio::test]
    async fn judgments_survive_reopening_and_stay_in_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlFeedbackStore::in_data_dir(dir.path());
        assert!(store.list("c", FeedbackScope::All).await.unwrap().is_empty(), "no file yet: no judgments");
        let a = judgment("c", Some("tenant:a"), "d1");
        store.record(a.clone()).await.unwrap();
        store.record(judgment("c", None, "d2")).await.unwrap();
        store.record(judgment("other", None, "d3")).await.unwrap();
        let reopened = JsonlFeedbackStore::in_data_dir(dir.path());
        assert_eq!(reopened.list("c", FeedbackScope::Tenant("tenant:a".into())).await.unwrap(), vec![a]);
        assert_eq!(reopened.list("c", FeedbackScope::All).await.unwrap().len(), 2);
        assert!(reopened.list("c", FeedbackScope::Tenant("tenant:b".into())).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_line_cut_short_is_ignored_then_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlFeedbackStore::in_data_dir(dir.path());
        store.record(judgment("c", None, "d1")).await.unwrap();
        // A crash mid-write leaves half a record and no newline.
        let mut f = std::fs::OpenOptions::new().append(true).open(store.path()).unwrap();
        f.write_all(b"{\"id\":\"fb-half").unwrap();
        assert_eq!(store.list("c", FeedbackScope::All).await.unwrap().len(), 1);
        store.record(judgment("c", None, "d2")).await.unwrap();
        let docs: Vec<_> = store.list("c", FeedbackScope::All).await.unwrap().into_iter().map(|f| f.doc_id.unwrap()).collect();
        assert_eq!(docs, ["d1", "d2"]);
    }

    #[tokio::test]
    async fn a_corrupt_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonlFeedbackStore::in_data_dir(dir.path());
        store.record(judgment("c", None, "d1")).await.unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(store.path()).unwrap();
        f.write_all(b"not json\n").unwrap();
        let err = store.list("c", FeedbackScope::All).await.unwrap_err().to_string();
        assert!(err.contains("feedback.jsonl line 2"), "{err}");
    }

    #[test]
    fn a_beir_folder_needs_one_relevant_document() {
        let dir = tempfile::tempdir().unwrap();
        let empty = JudgedQueries::default();
        assert!(write_beir_folder(dir.path(), &empty).unwrap_err().to_string().contains("thumbs up"));
        let judged = JudgedQueries::from_feedback(&[judgment("c", None, "d1")]);
        write_beir_folder(dir.path(), &judged).unwrap();
        let data = crate::eval::BeirDataset::load(dir.path()).unwrap();
        assert_eq!(data.queries["q-1"], "does it work?");
        assert_eq!(data.qrels["q-1"]["d1"], 1);
    }
}
