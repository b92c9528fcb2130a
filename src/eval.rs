//! Retrieval evaluation on a BEIR dataset (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`):
//! nDCG@10, Recall@100 and MRR@10 at document level (a document's rank is its best chunk's).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use rag_core::metrics::{dedup_documents, mrr_at_k, ndcg_at_k, recall_at_k};
use rag_core::qa::{exact_match, token_f1};
use rag_core::{QaExample, RagError, Result, read_qa_examples};
use serde::Serialize;

use crate::ingest::{IngestOptions, IngestReport};
use crate::pipeline::{Progress, RagPipeline};
use crate::query::QueryOptions;
use crate::retrieve::RetrievalMode;
use crate::sources::FileSource;

/// Evaluation results (the keys `rag eval --json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Mean Recall@100.
    pub recall_at_100: f64,
    /// Mean MRR@10.
    pub mrr_at_10: f64,
    /// Mean nDCG@10 over half A of the queries (even positions in query-id order): the half
    /// new settings are chosen on.
    pub ndcg_at_10_half_a: f64,
    /// Mean nDCG@10 over half B (odd positions): the held-out half a setting is reported on.
    pub ndcg_at_10_half_b: f64,
    /// Queries evaluated.
    pub queries: usize,
    /// Retrieval mode (`retriever` in reports written before it was renamed).
    #[serde(alias = "retriever")]
    pub mode: RetrievalMode,
    /// Whether results were reranked.
    pub rerank: bool,
    /// What ingesting the corpus did (all unchanged on a second run).
    pub ingest: IngestReport,
    /// Seconds spent on queries.
    pub query_seconds: f64,
    /// Each query's scores and documents, in query-id order (for `rag eval --report`; not in
    /// the JSON).
    #[serde(skip)]
    pub per_query: Vec<QueryEval>,
}

/// One query of an evaluation: its scores, the documents retrieved (best first) and judged.
#[derive(Debug, Clone, Serialize)]
pub struct QueryEval {
    /// The query's id.
    pub query_id: String,
    /// The query's text.
    pub question: String,
    /// nDCG@10.
    pub ndcg_at_10: f64,
    /// Recall@100.
    pub recall_at_100: f64,
    /// MRR@10.
    pub mrr_at_10: f64,
    /// The first ten distinct documents retrieved, best first.
    pub retrieved: Vec<RetrievedDoc>,
    /// The judged documents and their grades, best grade first.
    pub judged: Vec<(String, u32)>,
}

/// A retrieved document as a report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievedDoc {
    /// Document id.
    pub doc_id: String,
    /// Its title, when it has one.
    pub title: Option<String>,
    /// Its judged grade for the query (0: not judged relevant).
    pub grade: u32,
}

/// A BEIR dataset's test split.
#[derive(Debug, Clone)]
pub struct BeirDataset {
    /// Query id -> text.
    pub queries: BTreeMap<String, String>,
    /// Query id -> (doc id -> relevance grade).
    pub qrels: BTreeMap<String, HashMap<String, u32>>,
}

impl BeirDataset {
    /// Loads `queries.jsonl` and `qrels/test.tsv` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with_qrels(dir, None)
    }

    /// Loads `dir/queries.jsonl` and the judgments of `qrels` (default `dir/qrels/test.tsv`):
    /// BEIR's `qrels/train.tsv` or `dev.tsv`, or a file of your own in the same format.
    pub fn load_with_qrels(dir: &Path, qrels: Option<&Path>) -> Result<Self> {
        let qpath = dir.join("queries.jsonl");
        let mut queries = BTreeMap::new();
        for doc in crate::sources::JsonlReader::open(&qpath)?.without_metadata() {
            let d = doc?;
            queries.insert(d.id, d.text);
        }
        let rpath = qrels.map_or_else(|| dir.join("qrels").join("test.tsv"), Path::to_path_buf);
        let text = std::fs::read_to_string(&rpath).map_err(|e| RagError::io(&rpath, e))?;
        let mut qrels: BTreeMap<String, HashMap<String, u32>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if i == 0 && cols.first().is_some_and(|c| c.contains("query")) {
                continue;
            }
            if cols.len() < 3 {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(RagError::invalid_input(
                    format!("{}:{}", rpath.display(), i + 1),
                    "expected query-id, corpus-id, score separated by tabs",
                ));
            }
            let grade: u32 = cols[2]
                .trim()
                .parse()
                .map_err(|_| RagError::invalid_input(format!("{}:{}", rpath.display(), i + 1), "score is not a whole number"))?;
            qrels.entry(cols[0].to_owned()).or_default().insert(cols[1].to_owned(), grade);
        }
        qrels.retain(|q, _| queries.contains_key(q));
        if qrels.is_empty() {
            return Err(RagError::invalid_input(
                rpath.display().to_string(),
                format!("no query of {} has relevance judgements here", qpath.display()),
            ));
        }
        Ok(Self { queries, qrels })
    }

    /// The test queries as question-answer examples: the query text as the question, the
    /// relevant documents as `doc_ids` (BEIR has no answers). In query-id order.
    pub fn examples(&self) -> Vec<QaExample> {
        self.qrels
            .iter()
            .map(|(qid, rel)| {
                let mut doc_ids: Vec<String> = rel.iter().filter(|(_, g)| **g > 0).map(|(d, _)| d.clone()).collect();
                doc_ids.sort();
                QaExample { question: self.queries[qid].clone(), answer: None, doc_ids }
            })
            .collect()
    }
}

/// Examples from a JSONL file, or from a BEIR dataset directory's test queries.
pub fn load_examples(path: &Path) -> Result<Vec<QaExample>> {
    if path.is_dir() { Ok(BeirDataset::load(path)?.examples()) } else { read_qa_examples(path) }
}

/// Answer-level evaluation (the keys `rag eval --answers --json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct AnswerEvalReport {
    /// Examples answered.
    pub examples: usize,
    /// Mean exact match over the examples with an answer (`None` if none has one).
    pub exact_match: Option<f64>,
    /// Mean token F1 over the examples with an answer.
    pub f1: Option<f64>,
    /// Mean share of the answer's citations that are gold documents, over examples with gold
    /// documents (an answer that cites nothing scores 0).
    pub citation_precision: Option<f64>,
    /// Mean share of the gold documents the answer cites.
    pub citation_recall: Option<f64>,
    /// The generator that answered.
    pub generator: String,
    /// Answers that fell back (extractive after an LM failure or timeout).
    pub degraded: usize,
    /// Wall time.
    pub seconds: f64,
}

/// Answers every example with the pipeline's configured generator and scores the answers: exact
/// match and token F1 against `answer`, citation precision and recall against `doc_ids`.
pub async fn run_answer_eval(
    pipeline: &RagPipeline,
    examples: &[QaExample],
    opts: &QueryOptions,
    progress: Option<Progress>,
) -> Result<AnswerEvalReport> {
    let start = Instant::now();
    let (mut em, mut f1, mut cp, mut cr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut generator = String::new();
    let mut degraded = 0;
    for (i, ex) in examples.iter().enumerate() {
        let r = pipeline.query(&ex.question, opts).await?;
        generator = r.generator.clone();
        degraded += usize::from(!r.degraded.is_empty());
        if let Some(gold) = &ex.answer {
            em.push(exact_match(gold, &r.answer));
            f1.push(token_f1(gold, &r.answer));
        }
        if !ex.doc_ids.is_empty() {
            let cited: std::collections::BTreeSet<&str> = r.citations.iter().map(|c| c.doc_id.as_str()).collect();
            let hit = ex.doc_ids.iter().filter(|d| cited.contains(d.as_str())).count() as f64;
            cp.push(if cited.is_empty() { 0.0 } else { hit / cited.len() as f64 });
            cr.push(hit / ex.doc_ids.len() as f64);
        }
        if let Some(p) = &progress {
            p(i as u64 + 1, examples.len() as u64);
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Ok(AnswerEvalReport {
        examples: examples.len(),
        exact_match: mean(&em),
        f1: mean(&f1),
        citation_precision: mean(&cp),
        citation_recall: mean(&cr),
        generator,
        degraded,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Ingests the dataset's `corpus.jsonl` (unchanged documents cost nothing). A folder without
/// one (judgments exported by `rag feedback export --format qrels`) is scored against the
/// collection as it is stored, which must then hold something.
pub async fn ingest_corpus(pipeline: &RagPipeline, dataset: &Path, progress: Option<Progress>) -> Result<IngestReport> {
    let corpus = dataset.join("corpus.jsonl");
    if !corpus.is_file() {
        if pipeline.keyword_index().count().await? == 0 {
            return Err(RagError::invalid_input(
                dataset.display().to_string(),
                format!(
                    "there is no corpus.jsonl to ingest and collection `{}` is empty: name the collection the judgments are about (--collection NAME, or `collection` in rag.toml)",
                    pipeline.collection()
                ),
            ));
        }
        return Ok(IngestReport::default());
    }
    let mut options = IngestOptions::new();
    if let Some(p) = progress {
        options = options.progress(move |done, total| p(done, total));
    }
    pipeline.ingest(FileSource::new([corpus]), options).await
}

/// Ingests the corpus (idempotently; none: the collection as stored) and evaluates `mode` on
/// the test queries.
pub async fn run_eval(
    pipeline: &RagPipeline,
    dataset: &Path,
    mode: RetrievalMode,
    rerank: bool,
    limit: Option<usize>,
    progress: Option<Progress>,
) -> Result<EvalReport> {
    let data = BeirDataset::load(dataset)?;
    run_eval_on(pipeline, dataset, &data, mode, rerank, limit, progress).await
}

/// [`run_eval`] with the judgments already loaded (other qrels than the test split:
/// [`BeirDataset::load_with_qrels`]).
pub async fn run_eval_on(
    pipeline: &RagPipeline,
    dataset: &Path,
    data: &BeirDataset,
    mode: RetrievalMode,
    rerank: bool,
    limit: Option<usize>,
    progress: Option<Progress>,
) -> Result<EvalReport> {
    let ingest = ingest_corpus(pipeline, dataset, progress.clone()).await?;
    let start = Instant::now();
    let ids: Vec<&String> = data.qrels.keys().take(limit.unwrap_or(usize::MAX)).collect();
    let total = ids.len() as u64;
    // Enough chunks to rank 100 distinct documents.
    let opts = QueryOptions::new().k(300).mode(mode).rerank(rerank);
    let done = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<Result<QueryEval>> = futures::stream::iter(ids.iter().map(|qid| {
        let (opts, data, done, progress) = (&opts, &data, &done, progress.clone());
        async move {
            let question = &data.queries[*qid];
            let hits = pipeline.retrieve(question, opts).await?.hits;
            let docs = dedup_documents(hits.iter().map(|h| h.chunk.doc_id.as_str()));
            let qrels = &data.qrels[*qid];
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Some(p) = &progress {
                p(n, total);
            }
            let title = |doc: &str| {
                hits.iter()
                    .find(|h| h.chunk.doc_id == doc)
                    .and_then(|h| h.chunk.metadata.get("title"))
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            };
            let retrieved = docs
                .iter()
                .take(10)
                .map(|d| RetrievedDoc { doc_id: d.clone(), title: title(d), grade: qrels.get(d).copied().unwrap_or(0) })
                .collect();
            let mut judged: Vec<(String, u32)> = qrels.iter().map(|(d, g)| (d.clone(), *g)).collect();
            judged.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Ok(QueryEval {
                query_id: (*qid).clone(),
                question: question.clone(),
                ndcg_at_10: ndcg_at_k(&docs, qrels, 10),
                recall_at_100: recall_at_k(&docs, qrels, 100),
                mrr_at_10: mrr_at_k(&docs, qrels, 10),
                retrieved,
                judged,
            })
        }
    }))
    .buffered(4)
    .collect()
    .await;
    let mut sums = (0.0, 0.0, 0.0);
    let mut halves = [(0.0, 0usize), (0.0, 0usize)];
    for (i, r) in results.iter().enumerate() {
        let (a, b, c) = match r {
            Ok(q) => (q.ndcg_at_10, q.recall_at_100, q.mrr_at_10),
            // The first failed query's error, as it was (results are borrowed: move it out).
            Err(_) => {
                return Err(results.into_iter().find_map(Result::err).unwrap_or_else(|| RagError::internal("a query failed")));
            }
        };
        sums.0 += a;
        sums.1 += b;
        sums.2 += c;
        halves[i % 2].0 += a;
        halves[i % 2].1 += 1;
    }
    let n = results.len().max(1) as f64;
    let queries = results.len();
    let per_query: Vec<QueryEval> = results.into_iter().filter_map(Result::ok).collect();
    let half = |h: (f64, usize)| h.0 / h.1.max(1) as f64;
    Ok(EvalReport {
        ndcg_at_10_half_a: half(halves[0]),
        ndcg_at_10_half_b: half(halves[1]),
        ndcg_at_10: sums.0 / n,
        recall_at_100: sums.1 / n,
        mrr_at_10: sums.2 / n,
        queries,
        mode,
        rerank,
        ingest,
        query_seconds: start.elapsed().as_secs_f64(),
        per_query,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn other_qrels_than_the_test_split_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("qrels")).unwrap();
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\": \"1\", \"text\": \"a\"}\n{\"_id\": \"2\", \"text\": \"b\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\n1\td1\t1\n").unwrap();
        std::fs::write(dir.path().join("qrels/train.tsv"), "query-id\tcorpus-id\tscore\n2\td2\t2\n").unwrap();
        let test = BeirDataset::load(dir.path()).unwrap();
        assert_eq!(test.qrels.keys().collect::<Vec<_>>(), ["1"]);
        let train = BeirDataset::load_with_qrels(dir.path(), Some(&dir.path().join("qrels/train.tsv"))).unwrap();
        assert_eq!(train.qrels["2"]["d2"], 2);
        assert!(!train.qrels.contains_key("1"));
        let missing = BeirDataset::load_with_qrels(dir.path(), Some(&dir.path().join("qrels/dev.tsv"))).unwrap_err();
        assert!(missing.to_string().contains("dev.tsv"), "{missing}");
        std::fs::write(dir.path().join("other.tsv"), "9\td9\t1\n").unwrap();
        let unknown = BeirDataset::load_with_qrels(dir.path(), Some(&dir.path().join("other.tsv"))).unwrap_err();
        assert!(unknown.to_string().contains("other.tsv"), "no query of queries.jsonl is judged: {unknown}");
    }
}
