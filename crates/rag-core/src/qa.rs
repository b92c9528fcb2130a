//! Question-answer examples (`{"question", "answer"?, "doc_ids"?}` per JSONL line) and the
//! answer metrics of SQuAD: exact match and token F1 over normalised text. Shared by the answer
//! evaluation (`rag eval --answers`) and the DSPy optimiser (`rag optimize`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{RagError, Result};

/// One example: a question, and optionally its answer and the ids of the documents that support it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaExample {
    /// The question.
    pub question: String,
    /// The expected answer, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Ids of the documents that support the answer, if known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub doc_ids: Vec<String>,
}

/// Reads examples from JSONL (blank lines skipped). A bad line is an error naming the file and
/// the line; a file with no example is an error too.
pub fn read_qa_examples(path: &Path) -> Result<Vec<QaExample>> {
    let text = std::fs::read_to_string(path).map_err(|e| RagError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let ex: QaExample = serde_json::from_str(line).map_err(|e| {
            RagError::invalid_input(
                at(),
                format!("{e}: each line is {{\"question\": ..., \"answer\"?: ..., \"doc_ids\"?: [...]}}"),
            )
        })?;
        if ex.question.trim().is_empty() {
            return Err(RagError::invalid_input(at(), "the question is empty"));
        }
        out.push(ex);
    }
    if out.is_empty() {
        return Err(RagError::invalid_input(path.display().to_string(), "no examples: the file has no non-blank line"));
    }
    Ok(out)
}

/// SQuAD's normalisation: lower case; punctuation, the articles a/an/the and citation marks
/// (`[3]`) removed; whitespace collapsed.
pub fn normalise_answer(text: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(text.len());
    for c in without_citation_marks(text).chars() {
        if c.is_alphanumeric() || c == '_' {
            spaced.extend(c.to_lowercase());
        } else {
            spaced.push(' ');
        }
    }
    spaced.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).map(str::to_owned).collect()
}

/// `text` with every `[digits]` replaced by a space.
fn without_citation_marks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j) if j > 0 && after[..j].bytes().all(|b| b.is_ascii_digit()) => {
                out.push(' ');
                rest = &after[j + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// 1 when the normalised answers are equal, else 0.
pub fn exact_match(gold: &str, answer: &str) -> f64 {
    f64::from(u8::from(normalise_answer(gold) == normalise_answer(answer)))
}

/// Token F1 between the normalised answers (1 when both are empty).
pub fn token_f1(gold: &str, answer: &str) -> f64 {
    let (g, a) = (normalise_answer(gold), normalise_answer(answer));
    if g.is_empty() || a.is_empty() {
        return f64::from(u8::from(g == a));
    }
    let mut remaining = g.clone();
    let mut same = 0usize;
    for w in &a {
        if let Some(i) = remaining.iter().position(|x| x == w) {
            remaining.swap_remove(i);
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let (p, r) = (same as f64 / a.len() as f64, same as f64 / g.len() as f64);
    2.0 * p * r / (p + r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_and_metrics() {
        assert_eq!(normalise_answer("The Vitamin-D [2], an answer!"), ["vitamin", "d", "answer"]);
        assert_eq!(exact_match("Vitamin D", "the vitamin d [1]."), 1.0);
        assert_eq!(exact_match("Vitamin D", "vitamin C"), 0.0);
        let f = token_f1("vitamin d lowers fracture risk", "vitamin d lowers risk of hip fracture");
        // All 5 gold tokens among the 7 predicted: p 5/7, r 1, F1 10/12.
        assert!((f - 10.0 / 12.0).abs() < 1e-9, "{f}");
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
    }

    #[test]
    fn a_bad_line_names_the_file_and_the_line() {
        let dir = std::env::temp_dir().join(format!("rag-qa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("train.jsonl");
        std::fs::write(&p, "{\"question\": \"a?\", \"answer\": \"b\"}\n\n{\"question\": \"c?\", \"anwser\": \"d\"}\n").unwrap();
        let err = read_qa_examples(&p).unwrap_err().to_string();
        assert!(err.contains("train.jsonl line 3") && err.contains("anwser"), "{err}");
        std::fs::write(&p, "{\"question\": \" \"}\n").unwrap();
        assert!(read_qa_examples(&p).unwrap_err().to_string().contains("line 1"));
        std::fs::write(&p, "\n").unwrap();
        assert!(read_qa_examples(&p).unwrap_err().to_string().contains("no examples"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
