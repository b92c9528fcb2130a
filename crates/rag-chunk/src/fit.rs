//! Chunks that fit the embedding model: [`EmbedderTokenizer`] counts text in the model's own
//! tokens (its `tokenizer.json`, special tokens included), and [`FitToEmbedder`] splits any chunk
//! of another chunker that the model would truncate.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rag_core::{Chunk, Chunker, Document, RagError, Result, Span, content_hash};
use unicode_segmentation::UnicodeSegmentation;

use crate::TokenCounter;

/// An embedding model's tokenizer and input window.
#[derive(Clone)]
pub struct EmbedderTokenizer {
    tokenizer: Arc<tokenizers::Tokenizer>,
    max_tokens: usize,
}

impl std::fmt::Debug for EmbedderTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedderTokenizer").field("max_tokens", &self.max_tokens).finish_non_exhaustive()
    }
}

impl EmbedderTokenizer {
    /// Loads `tokenizer.json` (Hugging Face format) for a model reading at most `max_tokens`.
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<Self> {
        if max_tokens < 8 {
            return Err(RagError::invalid_input("max_tokens", format!("{max_tokens} is too small for an embedding window")));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| RagError::invalid_input(path.display().to_string(), format!("not a readable tokenizer.json: {e}")))?;
        // Count everything: the model's own truncation is what this exists to avoid.
        tokenizer
            .with_truncation(None)
            .map_err(|e| RagError::invalid_input(path.display().to_string(), e.to_string()))?
            .with_padding(None);
        Ok(Self { tokenizer: Arc::new(tokenizer), max_tokens })
    }

    /// The model's input window in its tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens the model sees for `text`, special tokens included.
    pub fn count(&self, text: &str) -> usize {
        // A tokenizer error on valid UTF-8 does not happen with a WordPiece/BPE model; count it
        // as over the window so the text is split rather than truncated.
        self.tokenizer.encode(text, true).map_or(usize::MAX, |e| e.len())
    }
}

/// Wraps a chunker so no chunk exceeds the embedding model's window: a chunk whose embedded
/// text (title included, see [`Chunk::indexed_text`]) is too long is split at sentence
/// boundaries (then words, then characters) into pieces that fit. Ids, indexes, spans and
/// token counts stay exact; ids stay `"{doc_id}#{index}"`.
pub struct FitToEmbedder {
    inner: Arc<dyn Chunker>,
    tokenizer: EmbedderTokenizer,
    counter: TokenCounter,
}

impl FitToEmbedder {
    /// Fits `inner`'s chunks to `tokenizer`'s window; `counter` is `inner`'s token counter (for
    /// the pieces' `token_count`).
    pub fn new(inner: Arc<dyn Chunker>, tokenizer: EmbedderTokenizer, counter: TokenCounter) -> Self {
        Self { inner, tokenizer, counter }
    }

    fn fits(&self, title_tokens: usize, text: &str) -> bool {
        // Title, newline and text tokenise (nearly) additively; the check after joining below
        // makes it exact.
        title_tokens + self.tokenizer.count(text) <= self.tokenizer.max_tokens()
    }

    /// Byte ranges of `text` (relative) that each fit, covering all non-space content.
    fn pieces(&self, chunk: &Chunk) -> Vec<(usize, usize)> {
        let title_tokens = match chunk.indexed_text().strip_suffix(chunk.text.as_str()) {
            Some(prefix) if !prefix.is_empty() => self.tokenizer.count(prefix).saturating_sub(1),
            _ => 0,
        };
        let text = chunk.text.as_str();
        let mut out = Vec::new();
        split_into(text, 0, text.len(), &|a, b| self.fits(title_tokens, &text[a..b]), Level::Sentence, &mut out);
        out
    }
}

#[derive(Clone, Copy)]
enum Level {
    Sentence,
    Word,
    Char,
}

/// Greedily packs units of `text[start..end]` at `level` into ranges that `fits`; a unit that
/// alone does not fit is split at the next finer level.
fn split_into(
    text: &str,
    start: usize,
    end: usize,
    fits: &dyn Fn(usize, usize) -> bool,
    level: Level,
    out: &mut Vec<(usize, usize)>,
) {
    let slice = &text[start..end];
    let bounds: Vec<usize> = match level {
        Level::Sentence => slice.split_sentence_bound_indices().map(|(i, _)| start + i).collect(),
        Level::Word => slice.split_word_bound_indices().map(|(i, _)| start + i).collect(),
        Level::Char => slice.char_indices().map(|(i, _)| start + i).collect(),
    };
    let mut units: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
    if let Some(&last) = bounds.last() {
        units.push((last, end));
    }
    let mut cur: Option<(usize, usize)> = None;
    for (a, b) in units {
        match cur {
            Some((s, _)) if fits(s, b) => cur = Some((s, b)),
            _ => {
                if let Some(c) = cur.take() {
                    push_trimmed(text, c, out);
                }
                if fits(a, b) {
                    cur = Some((a, b));
                } else {
                    match level {
                        Level::Sentence => split_into(text, a, b, fits, Level::Word, out),
                        Level::Word => split_into(text, a, b, fits, Level::Char, out),
                        // One character over the window: nothing smaller exists; keep it.
                        Level::Char => push_trimmed(text, (a, b), out),
                    }
                }
            }
        }
    }
    if let Some(c) = cur {
        push_trimmed(text, c, out);
    }
}

fn push_trimmed(text: &str, (a, b): (usize, usize), out: &mut Vec<(usize, usize)>) {
    let s = &text[a..b];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if a + lead < b - trail {
        out.push((a + lead, b - trail));
    }
}

#[async_trait]
impl Chunker for FitToEmbedder {
    async fn chunk(&self, document: &Document) -> Result<Vec<Chunk>> {
        let chunks = self.inner.chunk(document).await?;
        if chunks.iter().all(|c| self.tokenizer.count(&c.indexed_text()) <= self.tokenizer.max_tokens()) {
            return Ok(chunks);
        }
        let mut out = Vec::with_capacity(chunks.len() + 4);
        for c in chunks {
            if self.tokenizer.count(&c.indexed_text()) <= self.tokenizer.max_tokens() {
                out.push(c);
                continue;
            }
            for (a, b) in self.pieces(&c) {
                let text = c.text[a..b].to_owned();
                out.push(Chunk {
                    id: String::new(),
                    doc_id: c.doc_id.clone(),
                    index: 0,
                    span: Span { start: c.span.start + a, end: c.span.start + b },
                    token_count: self.counter.count(&text),
                    content_hash: content_hash(&text),
                    metadata: c.metadata.clone(),
                    text,
                });
            }
        }
        for (i, c) in out.iter_mut().enumerate() {
            c.index = i;
            c.id = format!("{}#{i}", c.doc_id);
        }
        Ok(out)
    }

    fn fingerprint(&self) -> String {
        format!("{}+fit(max={})", self.inner.fingerprint(), self.tokenizer.max_tokens())
    }
}
