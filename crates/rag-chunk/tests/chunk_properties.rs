//! Property tests and edge cases for the chunkers and the context window.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use proptest::prelude::*;
use rag_chunk::{ContextOrder, ContextWindow, MarkdownChunker, SemanticChunker, TokenChunker, TokenCounter};
use rag_core::{Chunk, Document, ScoredChunk};

fn tc() -> TokenCounter {
    TokenCounter::cl100k().unwrap()
}

/// Invariants every chunker keeps: spans slice the text back exactly, chunks are in order and
/// cover every non-whitespace byte, token counts are exact and within `max`, ids are deterministic.
fn check_chunks(doc: &Document, chunks: &[Chunk], max: usize, may_overlap: bool) {
    let counter = tc();
    let mut covered = vec![false; doc.text.len()];
    let mut prev_start = 0usize;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert_eq!(c.id, format!("{}#{i}", doc.id));
        assert_eq!(c.doc_id, doc.id);
        assert_eq!(&doc.text[c.span.start..c.span.end], c.text, "span must slice the parent back exactly");
        assert!(!c.text.is_empty());
        assert!(c.span.start >= prev_start, "chunks in document order");
        prev_start = c.span.start;
        assert_eq!(c.token_count, counter.count(&c.text), "token count is exact");
        assert!(c.token_count <= max, "chunk {i} has {} tokens > {max}", c.token_count);
        assert_eq!(c.content_hash, rag_core::content_hash(&c.text));
        covered[c.span.start..c.span.end].iter_mut().for_each(|b| *b = true);
    }
    if !may_overlap {
        for w in chunks.windows(2) {
            assert!(w[0].span.end <= w[1].span.start, "no overlap: {:?} then {:?}", w[0].span, w[1].span);
        }
    }
    for (i, ch) in doc.text.char_indices() {
        if !ch.is_whitespace() {
            assert!(covered[i], "byte {i} ({ch:?}) not covered by any chunk in {:?}", doc.text);
        }
    }
}

fn arb_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        "[a-zA-Z]{1,12}",
        "[0-9]{1,6}",
        Just("日本語".to_owned()),
        Just("🎉".to_owned()),
        Just("café".to_owned()),
        Just("e\u{301}".to_owned()),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    let sep = prop_oneof![Just(" "), Just(". "), Just("! "), Just("\n"), Just("\n\n"), Just("\r\n"), Just("? "), Just("")];
    proptest::collection::vec((word, sep), 0..300).prop_map(|v| v.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn token_chunker_invariants(text in arb_text(), size in 4usize..64, overlap_frac in 0usize..4) {
        let overlap = size * overlap_frac / 4;
        let chunker = TokenChunker::new(tc(), size, overlap).unwrap();
        let doc = Document::new("d", text);
        let chunks = chunker.chunk_document(&doc);
        check_chunks(&doc, &chunks, size, overlap > 0);
    }

    #[test]
    fn token_overlaps_are_exact(words in proptest::collection::vec("[a-zA-Z]{1,10}[ .,!?\n]{0,2}", 0..200), size in 4usize..48, overlap_frac in 0usize..4) {
        // Text where every token starts on its own character boundary, so token indices can be
        // recovered from byte spans: neighbours share exactly `overlap` tokens.
        let overlap = size * overlap_frac / 4;
        let doc = Document::new("d", words.concat());
        let chunks = TokenChunker::new(tc(), size, overlap).unwrap().chunk_document(&doc);
        check_chunks(&doc, &chunks, size, overlap > 0);
        let offsets = tc().token_offsets(&doc.text);
        let idx = |b: usize| offsets.iter().position(|o| *o == b).unwrap();
        for w in chunks.windows(2) {
            prop_assert_eq!(idx(w[0].span.end) - idx(w[1].span.start), overlap);
        }
    }

    #[test]
    fn semantic_chunker_invariants(text in arb_text(), min in 1usize..40, extra in 0usize..80) {
        let max = min + extra + 4;
        let chunker = SemanticChunker::new(tc(), min, max).unwrap();
        let doc = Document::new("d", text);
        let chunks = chunker.chunk_document(&doc);
        check_chunks(&doc, &chunks, max, false);
        prop_assert_eq!(chunks.clone(), chunker.chunk_document(&doc), "deterministic");
    }

    #[test]
    fn markdown_chunker_invariants(text in arb_text(), heads in proptest::collection::vec("[A-Za-z ]{1,10}", 0..4)) {
        let mut md = String::new();
        for (i, h) in heads.iter().enumerate() {
            md.push_str(&format!("{} {h}\n\n", "#".repeat(i % 3 + 1)));
            md.push_str(&text);
            md.push_str("\n```\ncode block\n```\n");
        }
        md.push_str(&text);
        let chunker = MarkdownChunker::new(tc(), 8, 48).unwrap();
        let doc = Document::new("m", md);
        let chunks = chunker.chunk_document(&doc);
        check_chunks(&doc, &chunks, 48, false);
    }

    #[test]
    fn context_window_never_exceeds_budget(texts in proptest::collection::vec(arb_text(), 0..8), max in 0usize..400) {
        let ranked: Vec<ScoredChunk> = texts.iter().enumerate().filter(|(_, t)| !t.is_empty())
            .map(|(i, t)| ScoredChunk { chunk: Chunk::new(format!("c{i}"), "d", t.clone()), score: 1.0 / (i as f32 + 1.0) })
            .collect();
        let window = ContextWindow::new(tc(), max).min_truncated_tokens(4);
        let packed = window.pack("what is in the text?", &ranked);
        prop_assert!(packed.tokens <= packed.budget);
        prop_assert!(tc().count(&packed.text) <= packed.budget + packed.chunks.len());
        for p in &packed.chunks {
            let original = ranked.iter().find(|r| r.chunk.id == p.chunk.chunk.id).unwrap();
            prop_assert!(original.chunk.text.starts_with(&p.chunk.chunk.text));
        }
    }
}

#[test]
fn edge_cases() {
    let counter = tc();
    let sem = SemanticChunker::new(counter.clone(), 10, 50).unwrap();
    let tok = TokenChunker::new(counter.clone(), 50, 10).unwrap();
    let md = MarkdownChunker::new(counter.clone(), 10, 50).unwrap();
    for text in ["", "   \n\t  \r\n  "] {
        let d = Document::new("e", text);
        assert!(sem.chunk_document(&d).is_empty(), "{text:?}");
        assert!(tok.chunk_document(&d).iter().all(|c| c.text.trim().is_empty() || !c.text.is_empty()));
        assert!(md.chunk_document(&d).is_empty());
    }
    // Shorter than a chunk: one chunk, the whole (trimmed) text.
    let d = Document::new("s", "  Short text.  ");
    let c = sem.chunk_document(&d);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].text, "Short text.");
    assert_eq!(c[0].span.start, 2);
    // One huge sentence falls back to token windows.
    let huge = format!("{}.", "word ".repeat(500));
    let d = Document::new("h", huge.clone());
    let c = sem.chunk_document(&d);
    assert!(c.len() >= 10, "{}", c.len());
    check_chunks(&d, &c, 50, false);
    // CRLF paragraphs are natural boundaries.
    let crlf = "First paragraph has a few words in it here.\r\n\r\nSecond paragraph also has some words in it.\r\n";
    let c = SemanticChunker::new(counter.clone(), 5, 200).unwrap().chunk_document(&Document::new("c", crlf));
    assert_eq!(c.len(), 2, "{c:#?}");
    assert!(c[0].text.ends_with("here.") && c[1].text.starts_with("Second"));
    // Emoji and CJK never split inside a character.
    let cjk = "日本語の文章です。これは二番目の文です。🎉🎉🎉 絵文字もあります。".repeat(20);
    let d = Document::new("j", cjk);
    for chunks in
        [sem.chunk_document(&d), tok.chunk_document(&d), TokenChunker::new(counter.clone(), 3, 1).unwrap().chunk_document(&d)]
    {
        assert!(!chunks.is_empty());
        for ch in &chunks {
            assert!(d.text.is_char_boundary(ch.span.start) && d.text.is_char_boundary(ch.span.end));
        }
    }
    // Sentences are not cut on every '.', e.g. decimals and abbreviations in one sentence.
    let c = SemanticChunker::new(counter.clone(), 1, 200)
        .unwrap()
        .chunk_document(&Document::new("x", "The value was 3.14 in e.g. the lab. Next sentence here."));
    assert_eq!(c.len(), 1);
    // Configuration errors.
    assert!(TokenChunker::new(counter.clone(), 10, 10).is_err());
    assert!(SemanticChunker::new(counter.clone(), 20, 10).is_err());
}

#[test]
fn markdown_heading_paths_and_code_blocks() {
    let md = "# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n\n```sh\n# not a heading\ncargo install rag\n```\n\n## Use\n\nCall it.\n";
    let chunks = MarkdownChunker::new(tc(), 1, 200).unwrap().chunk_document(&Document::new("g", md));
    let paths: Vec<Vec<String>> = chunks
        .iter()
        .map(|c| match c.metadata.get("heading_path") {
            Some(rag_core::MetadataValue::StrList(l)) => l.clone(),
            other => panic!("no heading path: {other:?}"),
        })
        .collect();
    assert_eq!(paths.first().unwrap(), &vec!["Guide".to_owned()]);
    assert!(paths.contains(&vec!["Guide".to_owned(), "Install".to_owned()]));
    assert_eq!(paths.last().unwrap(), &vec!["Guide".to_owned(), "Use".to_owned()]);
    let code = chunks.iter().find(|c| c.text.contains("cargo install")).unwrap();
    assert!(code.text.contains("# not a heading"), "code block kept whole: {:?}", code.text);
    assert!(!chunks.iter().any(|c| c.metadata.get("heading_path")
        == Some(&rag_core::MetadataValue::StrList(vec!["Guide".into(), "Install".into(), "not a heading".into()]))));
}

#[test]
fn context_window_truncates_and_orders() {
    let counter = tc();
    let long = "Sentence one is here. Sentence two follows it. ".repeat(40);
    let ranked: Vec<ScoredChunk> = (0..5)
        .map(|i| ScoredChunk {
            chunk: Chunk::new(format!("c{i}"), "d", if i == 2 { long.clone() } else { format!("Passage number {i}.") }),
            score: 5.0 - i as f32,
        })
        .collect();
    let window = ContextWindow::new(counter.clone(), 200).reserved_for_answer(50).min_truncated_tokens(10);
    let packed = window.pack("Which passage?", &ranked);
    assert_eq!(packed.chunks.len(), 3, "two whole, then the long one truncated, then stop");
    assert!(packed.chunks[2].truncated && packed.truncated);
    assert!(packed.chunks[2].chunk.chunk.text.ends_with('.'), "cut at a sentence end: {:?}", packed.chunks[2].chunk.chunk.text);
    assert!(packed.tokens <= packed.budget);
    // Budget already spent: nothing packed, no underflow.
    let tiny = ContextWindow::new(counter.clone(), 10).reserved_for_answer(100);
    let p = tiny.pack("a question longer than the budget itself", &ranked);
    assert!(p.chunks.is_empty() && p.budget == 0);
    // Lost in the middle: best at both ends.
    let lim = ContextWindow::new(counter, 10_000).order(ContextOrder::LostInTheMiddle);
    let short: Vec<ScoredChunk> = ranked.into_iter().filter(|r| r.chunk.id != "c2").collect();
    let ids: Vec<String> = lim.pack("q", &short).chunks.iter().map(|p| p.chunk.chunk.id.clone()).collect();
    assert_eq!(ids, vec!["c0", "c3", "c4", "c1"]);
}

/// Truncating text whose last characters are split across byte-level tokens terminates and fits
/// (a cut at a character moved to the end of the text used to loop forever).
#[test]
fn truncating_multibyte_text_terminates_within_budget() {
    for tail in ["🎉", "日本語", "é🎉x🎉", "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}"] {
        for max in 1..40 {
            let text = format!("{} {}", "word ".repeat(30), tail.repeat(20));
            let ranked = vec![ScoredChunk { chunk: Chunk::new("c", "d", text), score: 1.0 }];
            let window = ContextWindow::new(tc(), max + 8).min_truncated_tokens(1);
            let packed = window.pack("q?", &ranked);
            assert!(packed.tokens <= packed.budget, "{tail} at {max}: {} > {}", packed.tokens, packed.budget);
        }
    }
}
