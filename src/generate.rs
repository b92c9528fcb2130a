//! [`ExtractiveGenerator`]: the offline answerer used when no LM is configured. It answers with
//! the sentences of the retrieved context that best match the question, each cited, and says
//! plainly that the answer is extractive.

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

/// Calls `each` with every term of `text`: its words, lowercased, stop words left out, lightly
/// stemmed. One buffer serves every word, so a sentence costs no allocation per word.
fn for_each_term(text: &str, buf: &mut String, mut each: impl FnMut(&str)) {
    for word in text.unicode_words() {
        buf.clear();
        if word.is_ascii() {
            buf.push_str(word);
            buf.make_ascii_lowercase();
        } else {
            buf.push_str(&word.to_lowercase());
        }
        if !STOP.contains(&buf.as_str()) {
            each(stem(buf));
        }
    }
}

/// The terms of `text`, each once, in first-seen order.
fn distinct_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for_each_term(text, &mut String::new(), |t| {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    });
    out
}

/// A light suffix stripper: enough to match "reduces" with "reduce" and "infections" with "infection".
fn stem(w: &str) -> &str {
    for suffix in ["ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "s"] {
        if w.len() > suffix.len() + 3
            && let Some(stripped) = w.strip_suffix(suffix)
        {
            return stripped;
        }
    }
    w
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
        // Only the question's terms score, so each sentence keeps just its length in terms
        // and how often each question term occurs in it (nothing else is needed for BM25).
        struct Candidate<'a> {
            passage: usize,
            order: usize,
            text: &'a str,
            len: usize,
            tf: Vec<u32>,
        }
        let q = distinct_terms(&request.question);
        let mut buf = String::new();
        let mut cands = Vec::new();
        for (p, passage) in request.context.iter().enumerate() {
            for (o, s) in passage.text.split_sentence_bounds().enumerate() {
                let t = s.trim();
                if t.chars().filter(|c| c.is_alphanumeric()).take(3).count() < 3 {
                    continue;
                }
                let (mut len, mut tf) = (0, vec![0u32; q.len()]);
                for_each_term(t, &mut buf, |term| {
                    len += 1;
                    if let Some(i) = q.iter().position(|x| x == term) {
                        tf[i] += 1;
                    }
                });
                cands.push(Candidate { passage: p, order: o, text: t, len, tf });
            }
        }
        let n = cands.len().max(1) as f32;
        let df: Vec<f32> = (0..q.len()).map(|i| cands.iter().filter(|c| c.tf[i] > 0).count() as f32).collect();
        let avg_len = cands.iter().map(|c| c.len).sum::<usize>() as f32 / n;
        let mut scored: Vec<(f32, &Candidate)> = cands
            .iter()
            .map(|c| {
                let len = c.len as f32;
                let mut s = 0.0;
                for (i, &tf) in c.tf.iter().enumerate() {
                    if tf > 0 {
                        let (tf, df) = (tf as f32, df[i]);
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
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
                format!("{} [{}]", c.text.split_whitespace().collect::<Vec<_>>().join(" "), c.passage + 1)
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

    /// The straightforward version of [`ExtractiveGenerator::answer`]'s scoring: every
    /// sentence as its full list of owned terms, BM25 summed over the question's distinct terms.
    fn reference_answer(max_sentences: usize, request: &GenerationRequest) -> Vec<(usize, usize)> {
        let terms = |text: &str| -> Vec<String> {
            text.unicode_words()
                .map(|w| w.to_lowercase())
                .filter(|w| !STOP.contains(&w.as_str()))
                .map(|w| stem(&w).to_owned())
                .collect()
        };
        let mut cands: Vec<(usize, usize, Vec<String>)> = Vec::new();
        for (p, passage) in request.context.iter().enumerate() {
            for (o, s) in passage.text.split_sentence_bounds().enumerate() {
                let t = s.trim();
                if t.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
                    cands.push((p, o, terms(t)));
                }
            }
        }
        let mut q: Vec<String> = Vec::new();
        for t in terms(&request.question) {
            if !q.contains(&t) {
                q.push(t);
            }
        }
        let n = cands.len().max(1) as f32;
        let avg_len = cands.iter().map(|c| c.2.len()).sum::<usize>() as f32 / n;
        let mut scored: Vec<(f32, (usize, usize))> = cands
            .iter()
            .map(|(p, o, ts)| {
                let mut s = 0.0;
                for t in &q {
                    let tf = ts.iter().filter(|x| *x == t).count() as f32;
                    if tf > 0.0 {
                        let df = cands.iter().filter(|c| c.2.contains(t)).count() as f32;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        s += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * ts.len() as f32 / avg_len.max(1.0)));
                    }
                }
                (s + 0.05 / (1.0 + *p as f32), (*p, *o))
            })
            .filter(|(s, _)| *s > 0.1)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut picked: Vec<(usize, usize)> = scored.into_iter().take(max_sentences).map(|(_, c)| c).collect();
        if picked.is_empty()
            && let Some((p, o, _)) = cands.first()
        {
            picked.push((*p, *o));
        }
        picked.sort();
        picked
    }

    #[test]
    fn the_answer_quotes_exactly_the_sentences_the_straightforward_scoring_picks() {
        // Words with stop words, suffixes the stemmer strips, non-ASCII case (a final sigma,
        // a dotted capital I), numbers and punctuation, in sentences of varied length.
        let words = [
            "Vitamin",
            "vitamins",
            "D",
            "reduces",
            "reduced",
            "fracture",
            "fractures",
            "risk",
            "the",
            "of",
            "in",
            "Elderly",
            "patients",
            "infection",
            "infections",
            "ΟΔΟΣ",
            "Straße",
            "İstanbul",
            "3.5",
            "mg/kg",
            "cells",
            "signalling",
            "signaling",
            "was",
            "does",
            "not",
            "T-cell",
            "(p<0.05)",
            "Treatment",
            "treatments",
            "and",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let sentence = |next: &mut dyn FnMut(usize) -> usize| {
            let len = 1 + next(14);
            let text: Vec<&str> = (0..len).map(|_| words[next(words.len())]).collect();
            format!("{}{}", text.join(if next(5) == 0 { "  " } else { " " }), [". ", "? ", "! ", "; ", ".\n"][next(5)])
        };
        for case in 0..300 {
            let context: Vec<ContextPassage> = (0..1 + next(6))
                .map(|p| passage(&format!("p{p}"), &(0..next(8)).map(|_| sentence(&mut next)).collect::<String>()))
                .collect();
            let question = sentence(&mut next);
            let max = 1 + next(4);
            let req = GenerationRequest { question: question.clone(), context };
            let got = ExtractiveGenerator::new(max).labelled(false).answer(&req);
            let want: Vec<String> = reference_answer(max, &req)
                .into_iter()
                .map(|(p, o)| {
                    let s = req.context[p].text.split_sentence_bounds().nth(o).unwrap_or_default();
                    format!("{} [{}]", s.split_whitespace().collect::<Vec<_>>().join(" "), p + 1)
                })
                .collect();
            if want.is_empty() {
                assert!(got.answer.starts_with("No answer"), "case {case}: {:?}", got.answer);
            } else {
                assert_eq!(got.answer, want.join(" "), "case {case}: question {question:?}");
            }
        }
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
