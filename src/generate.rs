//! [`ExtractiveGenerator`]: the offline answerer used when no LM is configured. It answers with
//! the sentences of the retrieved context that best match the question, each cited, and says
//! plainly that the answer is extractive.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rag_core::{Generation, GenerationRequest, Generator, Result};
use unicode_segmentation::UnicodeSegmentation;

/// Picks the best-matching context sentences (BM25-style term weights over the context's own
/// sentences, plus a small prior for higher-ranked passages).
#[derive(Debug, Clone)]
pub struct ExtractiveGenerator {
    max_sentences: usize,
    label: bool,
}

impl Default for ExtractiveGenerator {
    fn default() -> Self {
        Self { max_sentences: 3, label: true }
    }
}

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in", "is", "it", "of", "on", "or",
    "that", "the", "this", "to", "was", "what", "when", "where", "which", "who", "why", "with", "can", "not", "no", "its",
    "their", "there", "than",
];

fn terms(text: &str) -> Vec<String> {
    text.unicode_words().map(|w| w.to_lowercase()).filter(|w| !STOP.contains(&w.as_str())).map(|w| stem(&w)).collect()
}

/// A light suffix stripper: enough to match "reduces" with "reduce" and "infections" with "infection".
fn stem(w: &str) -> String {
    for suffix in ["ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "s"] {
        if w.len() > suffix.len() + 3
            && let Some(stripped) = w.strip_suffix(suffix)
        {
            return stripped.to_owned();
        }
    }
    w.to_owned()
}

impl ExtractiveGenerator {
    /// At most `max_sentences` sentences in an answer (default 3).
    pub fn new(max_sentences: usize) -> Self {
        Self { max_sentences: max_sentences.max(1), label: true }
    }

    /// Whether to prefix answers with "Extractive answer" (default true).
    pub fn labelled(mut self, yes: bool) -> Self {
        self.label = yes;
        self
    }

    /// The answer for `request`, synchronously.
    pub fn answer(&self, request: &GenerationRequest) -> Generation {
        struct Candidate {
            passage: usize,
            order: usize,
            text: String,
            terms: Vec<String>,
        }
        let mut cands = Vec::new();
        for (p, passage) in request.context.iter().enumerate() {
            for (o, s) in passage.text.split_sentence_bounds().enumerate() {
                let t = s.trim();
                if t.chars().filter(|c| c.is_alphanumeric()).count() < 3 {
                    continue;
                }
                cands.push(Candidate {
                    passage: p,
                    order: o,
                    text: t.split_whitespace().collect::<Vec<_>>().join(" "),
                    terms: terms(t),
                });
            }
        }
        let q: HashSet<String> = terms(&request.question).into_iter().collect();
        let n = cands.len().max(1) as f32;
        let mut df: HashMap<&str, usize> = HashMap::new();
        for c in &cands {
            for t in c.terms.iter().collect::<HashSet<_>>() {
                *df.entry(t.as_str()).or_default() += 1;
            }
        }
        let avg_len = cands.iter().map(|c| c.terms.len()).sum::<usize>() as f32 / n;
        let mut scored: Vec<(f32, &Candidate)> = cands
            .iter()
            .map(|c| {
                let len = c.terms.len() as f32;
                let mut s = 0.0;
                for t in q.iter() {
                    let tf = c.terms.iter().filter(|x| *x == t).count() as f32;
                    if tf > 0.0 {
                        let idf = ((n - df[t.as_str()] as f32 + 0.5) / (df[t.as_str()] as f32 + 0.5) + 1.0).ln();
                        s += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avg_len.max(1.0)));
                    }
                }
                // Earlier passages ranked higher by retrieval: a small prior that breaks ties.
                (s + 0.05 / (1.0 + c.passage as f32), c)
            })
            .filter(|(s, _)| *s > 0.1)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut picked: Vec<&Candidate> = scored.into_iter().take(self.max_sentences).map(|(_, c)| c).collect();
        if picked.is_empty()
            && let Some(first) = cands.first()
        {
            picked.push(first);
        }
        // Read in context order: by passage rank, then position in the passage.
        picked.sort_by_key(|c| (c.passage, c.order));
        let mut used: Vec<String> = Vec::new();
        let body = picked
            .iter()
            .map(|c| {
                let id = &request.context[c.passage].id;
                if !used.contains(id) {
                    used.push(id.clone());
                }
                format!("{} [{}]", c.text, c.passage + 1)
            })
            .collect::<Vec<_>>()
            .join(" ");
        let answer = if body.is_empty() {
            "No answer: the retrieved context is empty (ingest documents first, or widen the query).".to_owned()
        } else if self.label {
            format!("Extractive answer (no language model configured; sentences quoted from the sources): {body}")
        } else {
            body
        };
        Generation { answer, reasoning: None, used_context_ids: used, generator: "extractive".into() }
    }
}

#[async_trait]
impl Generator for ExtractiveGenerator {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        Ok(self.answer(&request))
    }

    fn name(&self) -> String {
        "extractive".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::ContextPassage;

    fn passage(id: &str, text: &str) -> ContextPassage {
        ContextPassage { id: id.into(), doc_id: id.into(), text: text.into(), score: 1.0 }
    }

    #[test]
    fn answers_with_the_best_matching_cited_sentences() {
        let req = GenerationRequest {
            question: "Does vitamin D reduce the risk of fractures?".into(),
            context: vec![
                passage("p1", "The weather was cold. Vitamin D supplementation reduced fracture risk in elderly patients."),
                passage("p2", "Calcium intake varies by country. Fractures are common in old age."),
            ],
        };
        let g = ExtractiveGenerator::default().answer(&req);
        assert!(g.answer.starts_with("Extractive answer"), "{}", g.answer);
        assert!(g.answer.contains("Vitamin D supplementation reduced fracture risk in elderly patients. [1]"), "{}", g.answer);
        assert!(!g.answer.contains("weather"), "{}", g.answer);
        assert_eq!(g.used_context_ids[0], "p1");
        assert_eq!(g.generator, "extractive");
        let empty = ExtractiveGenerator::default().answer(&GenerationRequest { question: "q".into(), context: vec![] });
        assert!(empty.answer.starts_with("No answer"));
        assert!(empty.used_context_ids.is_empty());
    }
}
