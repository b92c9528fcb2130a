//! The three chunkers: token windows, sentence groups, markdown sections.

use async_trait::async_trait;
use rag_core::{Chunk, Chunker, Document, MetadataValue, RagError, Result, Span, content_hash};
use unicode_segmentation::UnicodeSegmentation;

use crate::tokens::TokenCounter;

/// A piece of a document chosen by a chunker, before it becomes a [`Chunk`].
#[derive(Debug, Clone, PartialEq)]
struct Piece {
    span: Span,
    tokens: usize,
    heading_path: Option<Vec<String>>,
}

fn to_chunks(doc: &Document, pieces: Vec<Piece>) -> Vec<Chunk> {
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            let text = doc.text[p.span.start..p.span.end].to_owned();
            let mut metadata = doc.metadata.clone();
            if let Some(path) = p.heading_path.filter(|p| !p.is_empty()) {
                metadata.insert("heading_path".into(), MetadataValue::StrList(path));
            }
            Chunk {
                id: format!("{}#{index}", doc.id),
                doc_id: doc.id.clone(),
                index,
                content_hash: content_hash(&text),
                text,
                span: p.span,
                token_count: p.tokens,
                metadata,
            }
        })
        .collect()
}

/// Trims ASCII/Unicode whitespace off both ends of `span` within `text`.
fn trim_span(text: &str, span: Span) -> Span {
    let s = &text[span.start..span.end];
    let start = span.start + (s.len() - s.trim_start().len());
    let end = span.start + s.trim_end().len();
    if start >= end { Span { start, end: start } } else { Span { start, end } }
}

/// Fixed token windows over `text[range]` with `overlap` tokens shared between neighbours.
/// Windows are cut at token boundaries (never inside a UTF-8 character); a window whose text
/// re-encodes to more than `size` tokens (BPE merges differ at a cut) is shortened until it fits.
fn token_windows(counter: &TokenCounter, text: &str, range: Span, size: usize, overlap: usize) -> Vec<Piece> {
    let sub = &text[range.start..range.end];
    let offsets = counter.token_offsets(sub);
    let n = offsets.len() - 1;
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let mut start = 0usize;
    loop {
        let mut end = (start + size).min(n);
        loop {
            let span = Span { start: range.start + offsets[start], end: range.start + offsets[end] };
            let tokens = counter.count_span(sub, &offsets, offsets[start], offsets[end]);
            if tokens <= size || end <= start + 1 {
                if span.start < span.end {
                    out.push(Piece { span, tokens, heading_path: None });
                }
                break;
            }
            // Step back to the previous distinct byte offset (several tokens of one split
            // character share an offset; stepping over them would not shrink the text).
            let cur = offsets[end];
            while end > start + 1 && offsets[end] == cur {
                end -= 1;
            }
        }
        if end >= n {
            break;
        }
        // Next window starts `overlap` tokens before this one's end: overlaps stay exact even
        // when a window had to be shortened.
        start = end.saturating_sub(overlap).max(start + 1);
    }
    out
}

/// Fixed-size token windows with overlap.
#[derive(Debug, Clone)]
pub struct TokenChunker {
    counter: TokenCounter,
    chunk_size: usize,
    overlap: usize,
}

impl TokenChunker {
    /// `chunk_size` tokens a window, `overlap` tokens shared with the previous window.
    /// Fails if `chunk_size` is 0 or `overlap >= chunk_size`.
    pub fn new(counter: TokenCounter, chunk_size: usize, overlap: usize) -> Result<Self> {
        if chunk_size == 0 || overlap >= chunk_size {
            return Err(RagError::config(format!(
                "token chunker: overlap ({overlap}) must be smaller than chunk_size ({chunk_size}), and chunk_size > 0"
            )));
        }
        Ok(Self { counter, chunk_size, overlap })
    }

    /// Chunks synchronously (the trait method is a thin async wrapper).
    pub fn chunk_document(&self, doc: &Document) -> Vec<Chunk> {
        let pieces =
            token_windows(&self.counter, &doc.text, Span { start: 0, end: doc.text.len() }, self.chunk_size, self.overlap);
        to_chunks(doc, pieces)
    }
}

#[async_trait]
impl Chunker for TokenChunker {
    async fn chunk(&self, document: &Document) -> Result<Vec<Chunk>> {
        Ok(self.chunk_document(document))
    }
    fn fingerprint(&self) -> String {
        format!("token(size={},overlap={},{})", self.chunk_size, self.overlap, self.counter.encoding().name())
    }
}

/// A sentence (or code block) with its token count, and whether it starts a paragraph / heading.
#[derive(Debug, Clone, Copy)]
struct Segment {
    span: Span,
    tokens: usize,
    paragraph_start: bool,
}

/// Paragraphs of `text[range]`: runs of lines separated by blank lines (CRLF-aware).
fn paragraphs(text: &str, range: Span) -> Vec<Span> {
    let mut out = Vec::new();
    let mut para_start: Option<usize> = None;
    let mut pos = range.start;
    for line in text[range.start..range.end].split_inclusive('\n') {
        let blank = line.trim().is_empty();
        match (blank, para_start) {
            (true, Some(s)) => {
                out.push(Span { start: s, end: pos });
                para_start = None;
            }
            (false, None) => para_start = Some(pos),
            _ => {}
        }
        pos += line.len();
    }
    if let Some(s) = para_start {
        out.push(Span { start: s, end: range.end });
    }
    out
}

/// Groups whole sentences (Unicode sentence segmentation) into chunks of `min_tokens..=max_tokens`.
/// Paragraph breaks are preferred cut points; a sentence longer than `max_tokens` falls back to
/// token windows.
#[derive(Debug, Clone)]
pub struct SemanticChunker {
    counter: TokenCounter,
    min_tokens: usize,
    max_tokens: usize,
}

impl SemanticChunker {
    /// Chunks of at least `min_tokens` (where the text allows) and at most `max_tokens`.
    pub fn new(counter: TokenCounter, min_tokens: usize, max_tokens: usize) -> Result<Self> {
        if max_tokens == 0 || min_tokens > max_tokens {
            return Err(RagError::config(format!(
                "semantic chunker: need 0 < min_tokens ({min_tokens}) <= max_tokens ({max_tokens})"
            )));
        }
        Ok(Self { counter, min_tokens, max_tokens })
    }

    /// Chunks synchronously.
    pub fn chunk_document(&self, doc: &Document) -> Vec<Chunk> {
        // One encoding of the whole text; sentence and chunk counts are derived from it.
        let offsets = self.counter.token_offsets(&doc.text);
        let segs = self.segments(&doc.text, Span { start: 0, end: doc.text.len() }, &offsets);
        to_chunks(doc, self.pack(&doc.text, &segs, None, &offsets))
    }

    fn segments(&self, text: &str, range: Span, offsets: &[usize]) -> Vec<Segment> {
        let mut segs = Vec::new();
        for para in paragraphs(text, range) {
            let mut first = true;
            for (off, sentence) in text[para.start..para.end].split_sentence_bound_indices() {
                let span = trim_span(text, Span { start: para.start + off, end: para.start + off + sentence.len() });
                if span.is_empty() {
                    continue;
                }
                let tokens = self.counter.count_span(text, offsets, span.start, span.end);
                segs.push(Segment { span, tokens, paragraph_start: first });
                first = false;
            }
        }
        segs
    }

    fn pack(&self, text: &str, segs: &[Segment], heading_path: Option<&[String]>, offsets: &[usize]) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut cur: Vec<Segment> = Vec::new();
        let mut cur_tokens = 0usize;
        let tag = |mut p: Piece| {
            p.heading_path = heading_path.map(<[String]>::to_vec);
            p
        };
        for seg in segs {
            if seg.tokens > self.max_tokens {
                self.flush(text, &mut cur, &mut out, heading_path, offsets);
                cur_tokens = 0;
                let windows = token_windows(&self.counter, text, seg.span, self.max_tokens, 0);
                out.extend(windows.into_iter().map(tag));
                continue;
            }
            let over = cur_tokens + seg.tokens > self.max_tokens;
            let natural_break = seg.paragraph_start && cur_tokens >= self.min_tokens;
            if !cur.is_empty() && (over || natural_break) {
                self.flush(text, &mut cur, &mut out, heading_path, offsets);
                cur_tokens = 0;
            }
            // Separators between sentences add a token or so; the exact count is checked at flush.
            cur_tokens += seg.tokens;
            cur.push(*seg);
        }
        self.flush(text, &mut cur, &mut out, heading_path, offsets);
        out
    }

    /// Emits `cur` as one piece, counting its exact tokens; if joining the sentences made it
    /// exceed `max_tokens`, the last sentences move to a piece of their own.
    fn flush(
        &self,
        text: &str,
        cur: &mut Vec<Segment>,
        out: &mut Vec<Piece>,
        heading_path: Option<&[String]>,
        offsets: &[usize],
    ) {
        let mut rest: Vec<Segment> = Vec::new();
        while !cur.is_empty() {
            let (Some(first), Some(last)) = (cur.first(), cur.last()) else { break };
            let span = Span { start: first.span.start, end: last.span.end };
            let tokens = self.counter.count_span(text, offsets, span.start, span.end);
            if tokens <= self.max_tokens || cur.len() == 1 {
                if tokens > self.max_tokens {
                    // One sentence whose trimmed text still exceeds the budget: token windows.
                    out.extend(token_windows(&self.counter, text, span, self.max_tokens, 0).into_iter().map(|mut p| {
                        p.heading_path = heading_path.map(<[String]>::to_vec);
                        p
                    }));
                } else {
                    out.push(Piece { span, tokens, heading_path: heading_path.map(<[String]>::to_vec) });
                }
                cur.clear();
                // Whatever was moved aside goes next, in order.
                std::mem::swap(cur, &mut rest);
                cur.reverse();
                continue;
            }
            if let Some(seg) = cur.pop() {
                rest.push(seg);
            }
        }
    }
}

#[async_trait]
impl Chunker for SemanticChunker {
    async fn chunk(&self, document: &Document) -> Result<Vec<Chunk>> {
        Ok(self.chunk_document(document))
    }
    fn fingerprint(&self) -> String {
        format!("semantic(min={},max={},{})", self.min_tokens, self.max_tokens, self.counter.encoding().name())
    }
}

/// Splits Markdown by heading sections; code blocks stay whole where they fit; each chunk
/// carries its heading path (`["Guide", "Install"]`) in the `heading_path` metadata field.
#[derive(Debug, Clone)]
pub struct MarkdownChunker {
    inner: SemanticChunker,
}

/// One line-level block of a Markdown section.
enum Block {
    Prose(Span),
    Code(Span),
}

impl MarkdownChunker {
    /// Sections are chunked like [`SemanticChunker`] with these bounds.
    pub fn new(counter: TokenCounter, min_tokens: usize, max_tokens: usize) -> Result<Self> {
        Ok(Self { inner: SemanticChunker::new(counter, min_tokens, max_tokens)? })
    }

    /// Chunks synchronously.
    pub fn chunk_document(&self, doc: &Document) -> Vec<Chunk> {
        let text = &doc.text;
        let offsets = self.inner.counter.token_offsets(text);
        let mut pieces = Vec::new();
        let mut path: Vec<(usize, String)> = Vec::new();
        let mut blocks: Vec<Block> = Vec::new();
        let mut fence: Option<(String, usize)> = None;
        let mut prose_start: Option<usize> = None;
        let mut pos = 0usize;
        let headings = |path: &[(usize, String)]| path.iter().map(|(_, h)| h.clone()).collect::<Vec<_>>();
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            let line_end = pos + line.len();
            if let Some((marker, start)) = &fence {
                if trimmed.starts_with(marker.as_str()) {
                    blocks.push(Block::Code(Span { start: *start, end: line_end }));
                    fence = None;
                }
            } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                if let Some(s) = prose_start.take() {
                    blocks.push(Block::Prose(Span { start: s, end: pos }));
                }
                fence = Some((trimmed[..3].to_owned(), pos));
            } else if let Some((level, title)) = heading(trimmed) {
                if let Some(s) = prose_start.take() {
                    blocks.push(Block::Prose(Span { start: s, end: pos }));
                }
                self.emit_section(text, std::mem::take(&mut blocks), &headings(&path), &mut pieces, &offsets);
                path.retain(|(l, _)| *l < level);
                path.push((level, title));
                // The heading line itself opens the new section's prose.
                prose_start = Some(pos);
            } else if prose_start.is_none() {
                prose_start = Some(pos);
            }
            pos = line_end;
        }
        if let Some((_, start)) = fence {
            // An unclosed fence runs to the end of the document.
            blocks.push(Block::Code(Span { start, end: text.len() }));
        } else if let Some(s) = prose_start {
            blocks.push(Block::Prose(Span { start: s, end: text.len() }));
        }
        self.emit_section(text, blocks, &headings(&path), &mut pieces, &offsets);
        to_chunks(doc, pieces)
    }

    fn emit_section(&self, text: &str, blocks: Vec<Block>, path: &[String], out: &mut Vec<Piece>, offsets: &[usize]) {
        let mut segs = Vec::new();
        for block in blocks {
            match block {
                Block::Prose(span) => segs.extend(self.inner.segments(text, span, offsets)),
                Block::Code(span) => {
                    let span = trim_span(text, span);
                    if !span.is_empty() {
                        let tokens = self.inner.counter.count_span(text, offsets, span.start, span.end);
                        segs.push(Segment { span, tokens, paragraph_start: true });
                    }
                }
            }
        }
        out.extend(self.inner.pack(text, &segs, Some(path), offsets));
    }
}

/// `# Title` -> (1, "Title"); ATX headings only.
fn heading(line: &str) -> Option<(usize, String)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.starts_with(' ') || rest.starts_with('\t') || rest.trim().is_empty()) {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim().to_owned()))
}

#[async_trait]
impl Chunker for MarkdownChunker {
    async fn chunk(&self, document: &Document) -> Result<Vec<Chunk>> {
        Ok(self.chunk_document(document))
    }
    fn fingerprint(&self) -> String {
        format!("markdown(min={},max={},{})", self.inner.min_tokens, self.inner.max_tokens, self.inner.counter.encoding().name())
    }
}
