//! Retrieval metrics as BEIR computes them (binary or graded relevance from qrels).

use std::collections::{HashMap, HashSet};

/// nDCG@k with graded relevance (`qrels`: doc id -> grade > 0). Returns 0 when no document is relevant.
pub fn ndcg_at_k(ranked: &[String], qrels: &HashMap<String, u32>, k: usize) -> f64 {
    let dcg: f64 =
        ranked.iter().take(k).enumerate().map(|(i, id)| f64::from(*qrels.get(id).unwrap_or(&0)) / (i as f64 + 2.0).log2()).sum();
    let mut ideal: Vec<u32> = qrels.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| f64::from(*g) / (i as f64 + 2.0).log2()).sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Recall@k: the fraction of relevant documents found in the top k.
pub fn recall_at_k(ranked: &[String], qrels: &HashMap<String, u32>, k: usize) -> f64 {
    let relevant: HashSet<&String> = qrels.iter().filter(|(_, g)| **g > 0).map(|(id, _)| id).collect();
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|id| relevant.contains(id)).count();
    found as f64 / relevant.len() as f64
}

/// MRR@k: 1 / rank of the first relevant document within the top k, else 0.
pub fn mrr_at_k(ranked: &[String], qrels: &HashMap<String, u32>, k: usize) -> f64 {
    ranked.iter().take(k).position(|id| qrels.get(id).is_some_and(|g| *g > 0)).map_or(0.0, |p| 1.0 / (p as f64 + 1.0))
}

/// Collapses a ranked list of chunk hits to documents, keeping each document's best rank
/// (BEIR scores documents; a document's score is its best chunk's).
pub fn dedup_documents<'a>(doc_ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    doc_ids.into_iter().filter(|d| seen.insert(*d)).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }
    fn r(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ndcg_perfect_and_shifted() {
        let qrels = q(&[("a", 1)]);
        assert!((ndcg_at_k(&r(&["a", "b"]), &qrels, 10) - 1.0).abs() < 1e-12);
        let shifted = ndcg_at_k(&r(&["b", "a"]), &qrels, 10);
        assert!((shifted - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(ndcg_at_k(&r(&["b", "a"]), &qrels, 1), 0.0);
    }

    #[test]
    fn recall_and_mrr() {
        let qrels = q(&[("a", 1), ("c", 1)]);
        assert_eq!(recall_at_k(&r(&["a", "b", "c"]), &qrels, 2), 0.5);
        assert_eq!(recall_at_k(&r(&["a", "b", "c"]), &qrels, 3), 1.0);
        assert_eq!(mrr_at_k(&r(&["b", "c"]), &qrels, 10), 0.5);
        assert_eq!(mrr_at_k(&r(&["b", "c"]), &qrels, 1), 0.0);
        assert_eq!(dedup_documents(["x", "y", "x", "z"]), r(&["x", "y", "z"]));
    }
}
