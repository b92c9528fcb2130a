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

    /// Byte ranges of `chunk.text` that each fit, counted exactly as the model will see them
    /// (with the title prefix of [`Chunk::indexed_text`]), covering all non-space content.
    fn pieces(&self, chunk: &Chunk) -> Vec<(usize, usize)> {
        let indexed = chunk.indexed_text();
        let prefix = indexed.strip_suffix(chunk.text.as_str()).unwrap_or("");
        let text = chunk.text.as_str();
        let fits = |a: usize, b: usize| self.tokenizer.count(&format!("{prefix}{}", &text[a..b])) <= self.tokenizer.max_tokens();
        let mut out = Vec::new();
        split_into(text, 0, text.len(), &fits, Level::Sentence, &mut out);
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
        // Each chunk is counted once: most fit, and then the inner chunking stands as it is.
        let fits: Vec<bool> =
            chunks.iter().map(|c| self.tokenizer.count(&c.indexed_text()) <= self.tokenizer.max_tokens()).collect();
        if fits.iter().all(|f| *f) {
            return Ok(chunks);
        }
        let mut out = Vec::with_capacity(chunks.len() + 4);
        for (c, fits) in chunks.into_iter().zip(fits) {
            if fits {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SemanticChunker;

    /// A word-level tokenizer: one token per whitespace-separated word (all unknown), no
    /// special tokens, so counts are easy to reason about.
    fn word_tokenizer(dir: &Path, max: usize) -> EmbedderTokenizer {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}"#;
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        EmbedderTokenizer::from_file(&path, max).unwrap()
    }

    #[tokio::test]
    async fn long_chunks_are_split_to_fit_with_exact_spans_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let tok = word_tokenizer(dir.path(), 12);
        assert_eq!(tok.count("one two  three"), 3);
        let counter = TokenCounter::cl100k().unwrap();
        let inner: Arc<dyn Chunker> = Arc::new(SemanticChunker::new(counter.clone(), 64, 256).unwrap());
        let fit = FitToEmbedder::new(inner.clone(), tok.clone(), counter.clone());
        let sentence = |i: usize| format!("Sentence number {i} has exactly seven words. ");
        let text: String = (0..9).map(sentence).collect::<String>()
            + "A_single_sentence_of_many_words a b c d e f g h i j k l m n o p q r s t u v w x y z.";
        let doc = Document::new("d", text.clone()).with_metadata("title", "Two words");
        let before = inner.chunk(&doc).await.unwrap();
        assert!(before.iter().any(|c| tok.count(&c.indexed_text()) > 12), "the fixture must need splitting");
        let chunks = fit.chunk(&doc).await.unwrap();
        assert!(chunks.len() > before.len());
        for (i, c) in chunks.iter().enumerate() {
            assert!(tok.count(&c.indexed_text()) <= 12, "chunk {i} fits with its title: {:?}", c.indexed_text());
            assert_eq!(&text[c.span.start..c.span.end], c.text, "span slices back");
            assert_eq!((c.index, c.id.clone()), (i, format!("d#{i}")));
            assert_eq!(c.token_count, counter.count(&c.text), "exact token count in the chunker's tokenizer");
            assert_eq!(c.content_hash, content_hash(&c.text));
            assert_eq!(c.metadata.get("title"), doc.metadata.get("title"));
        }
        // Nothing lost: every word of the document is in exactly one chunk, in order.
        let words: Vec<&str> = chunks.iter().flat_map(|c| c.text.split_whitespace()).collect();
        assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
        assert!(fit.fingerprint().ends_with("+fit(max=12)"));
        // Chunks that already fit pass through untouched.
        let short = Document::new("s", "Short enough.");
        assert_eq!(fit.chunk(&short).await.unwrap(), inner.chunk(&short).await.unwrap());
    }
}
