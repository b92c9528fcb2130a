//! Packing ranked chunks into a model's context window.

use rag_core::{ContextPassage, ScoredChunk};

use crate::tokens::TokenCounter;

/// How packed chunks are ordered in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextOrder {
    /// Best first.
    #[default]
    ByRank,
    /// Best chunks at both ends, weakest in the middle ("lost in the middle", Liu et al. 2023).
    LostInTheMiddle,
}

/// A token budget for context: `max_tokens` minus the answer's reserve minus the question.
#[derive(Debug, Clone)]
pub struct ContextWindow {
    counter: TokenCounter,
    max_tokens: usize,
    reserved_for_answer: usize,
    min_truncated_tokens: usize,
    order: ContextOrder,
    separator: String,
}

/// One chunk as packed.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedChunk {
    /// The chunk (text possibly truncated) and its score.
    pub chunk: ScoredChunk,
    /// Tokens it takes in the window.
    pub tokens: usize,
    /// Whether its text was cut to fit.
    pub truncated: bool,
}

/// The packed context.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackedContext {
    /// The chunks in prompt order.
    pub chunks: Vec<PackedChunk>,
    /// The chunk texts joined by the separator.
    pub text: String,
    /// Tokens used by `text` (separators included).
    pub tokens: usize,
    /// The budget that was available for context.
    pub budget: usize,
    /// Whether any chunk was truncated or dropped for lack of room.
    pub truncated: bool,
}

impl PackedContext {
    /// The packed chunks as generator passages.
    pub fn passages(&self) -> Vec<ContextPassage> {
        self.chunks
            .iter()
            .map(|p| ContextPassage {
                id: p.chunk.chunk.id.clone(),
                doc_id: p.chunk.chunk.doc_id.clone(),
                text: p.chunk.chunk.text.clone(),
                score: p.chunk.score,
            })
            .collect()
    }
}

impl ContextWindow {
    /// A window of `max_tokens` with a quarter reserved for the answer, truncation down to 32
    /// tokens, by-rank order, and chunks separated by a blank line.
    pub fn new(counter: TokenCounter, max_tokens: usize) -> Self {
        Self {
            counter,
            max_tokens,
            reserved_for_answer: max_tokens / 4,
            min_truncated_tokens: 32,
            order: ContextOrder::ByRank,
            separator: "\n\n".into(),
        }
    }

    /// Tokens kept free for the answer.
    pub fn reserved_for_answer(mut self, tokens: usize) -> Self {
        self.reserved_for_answer = tokens;
        self
    }

    /// The smallest remainder worth filling with a truncated chunk.
    pub fn min_truncated_tokens(mut self, tokens: usize) -> Self {
        self.min_truncated_tokens = tokens;
        self
    }

    /// Prompt ordering strategy.
    pub fn order(mut self, order: ContextOrder) -> Self {
        self.order = order;
        self
    }

    /// Tokens available for context given `question` (never underflows).
    pub fn budget(&self, question: &str) -> usize {
        self.max_tokens.saturating_sub(self.reserved_for_answer).saturating_sub(self.counter.count(question))
    }

    /// Packs `ranked` (best first) into the budget: whole chunks while they fit, then the next one
    /// truncated at a token boundary (backing off to a paragraph or sentence end when that keeps
    /// at least half of what fits) if at least `min_truncated_tokens` remain; then stops.
    pub fn pack(&self, question: &str, ranked: &[ScoredChunk]) -> PackedContext {
        let budget = self.budget(question);
        let sep_tokens = self.counter.count(&self.separator);
        let mut used = 0usize;
        let mut packed = Vec::new();
        let mut truncated = false;
        for sc in ranked {
            let sep = if packed.is_empty() { 0 } else { sep_tokens };
            let remaining = budget.saturating_sub(used + sep);
            let tokens = self.counter.count(&sc.chunk.text);
            if tokens <= remaining {
                used += sep + tokens;
                packed.push(PackedChunk { chunk: sc.clone(), tokens, truncated: false });
                continue;
            }
            truncated = true;
            if remaining >= self.min_truncated_tokens.max(1)
                && let Some((text, t)) = self.truncate(&sc.chunk.text, remaining)
            {
                let mut cut = sc.clone();
                cut.chunk.span.end = cut.chunk.span.start + text.len();
                cut.chunk.text = text;
                cut.chunk.token_count = t;
                used += sep + t;
                packed.push(PackedChunk { chunk: cut, tokens: t, truncated: true });
            }
            break;
        }
        let chunks = match self.order {
            ContextOrder::ByRank => packed,
            ContextOrder::LostInTheMiddle => lost_in_the_middle(packed),
        };
        let text = chunks.iter().map(|p| p.chunk.chunk.text.as_str()).collect::<Vec<_>>().join(&self.separator);
        PackedContext { chunks, text, tokens: used, budget, truncated }
    }

    fn truncate(&self, text: &str, max: usize) -> Option<(String, usize)> {
        let offsets = self.counter.token_offsets(text);
        let mut cut = offsets.get(max).copied()?;
        // Prefer a paragraph, then a sentence end, if it keeps at least half of what fits.
        let prefix = &text[..cut];
        let half = cut / 2;
        if let Some(p) = prefix.rfind("\n\n").filter(|p| *p >= half) {
            cut = p;
        } else if let Some(p) = sentence_end(prefix).filter(|p| *p >= half) {
            cut = p;
        }
        let mut out = text[..cut].trim_end().to_owned();
        let mut tokens = self.counter.count(&out);
        // Re-encoding a cut can merge differently; shorten until it fits, a token at a time.
        // The cut is the last token start strictly inside `out`: a character split across two
        // byte-level tokens has its second start moved to the character's end (possibly the end
        // of `out`), and cutting there would not shorten anything.
        while tokens > max && !out.is_empty() {
            let cut = self.counter.token_offsets(&out).into_iter().rev().find(|o| *o < out.len()).unwrap_or(0);
            out.truncate(cut);
            tokens = self.counter.count(&out);
        }
        (!out.is_empty()).then_some((out, tokens))
    }
}

fn sentence_end(s: &str) -> Option<usize> {
    use unicode_segmentation::UnicodeSegmentation;
    let mut last = None;
    for (off, sent) in s.split_sentence_bound_indices() {
        let end = off + sent.len();
        if end < s.len() {
            last = Some(off + sent.trim_end().len());
        }
    }
    last
}

fn lost_in_the_middle(packed: Vec<PackedChunk>) -> Vec<PackedChunk> {
    let mut front = Vec::new();
    let mut back = Vec::new();
    for (i, p) in packed.into_iter().enumerate() {
        if i % 2 == 0 { front.push(p) } else { back.push(p) }
    }
    back.reverse();
    front.extend(back);
    front
}
