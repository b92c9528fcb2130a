//! Loader throughput up to the embedder (extraction and chunking only, no model): PDF pages/s,
//! HTML MB/s and DOCX MB/s on documents generated from SciFact abstracts, median of 5 rounds.
//!
//! `cargo bench --bench loaders`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use rag::chunk::{MarkdownChunker, SemanticChunker, TokenCounter};
use rag_core::{Chunker, Document};
use rag_loaders::{FileFormat, load};
use rag_testkit::documents::{DocxBlock, PdfText, docx, pdf, pdf_lines};

const ROUNDS: usize = 5;
const LINES_PER_PAGE: usize = 46;

/// Wraps `text` into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.len() + word.len() + 1 > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median seconds to extract `bytes` as `format` and chunk the text.
fn time(bytes: &[u8], format: FileFormat, chunker: &dyn Chunker, rt: &tokio::runtime::Runtime) -> (f64, usize) {
    let mut secs = Vec::new();
    let mut chunks = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let x = load(bytes.to_vec(), format).unwrap();
        chunks = rt.block_on(chunker.chunk(&Document::new("bench", x.text))).unwrap().len();
        secs.push(t.elapsed().as_secs_f64());
    }
    (median(secs), chunks)
}

fn main() {
    let dataset = std::env::var_os("RAG_SCIFACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets/scifact")));
    let docs: Vec<Document> =
        rag::sources::JsonlReader::open(&dataset.join("corpus.jsonl")).unwrap().take(400).map(Result::unwrap).collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let counter = TokenCounter::cl100k().unwrap();
    let semantic = SemanticChunker::new(counter.clone(), 64, 256).unwrap();
    let markdown = MarkdownChunker::new(counter, 64, 256).unwrap();

    // PDF: abstracts set in 11-point lines, 46 lines a page, a running header and page number.
    let lines: Vec<String> = docs
        .iter()
        .flat_map(|d| {
            let mut l = wrap(&d.text, 95);
            l.push(String::new());
            l
        })
        .collect();
    let pages: Vec<Vec<PdfText>> = lines
        .chunks(LINES_PER_PAGE)
        .enumerate()
        .map(|(i, page)| {
            let mut runs = pdf_lines(72.0, 760.0, &["SciFact abstracts: a benchmark document"]);
            let refs: Vec<&str> = page.iter().map(String::as_str).collect();
            runs.extend(pdf_lines(72.0, 730.0, &refs));
            runs.extend(pdf_lines(300.0, 30.0, &[&(i + 1).to_string()]));
            runs
        })
        .collect();
    let pdf_bytes = pdf(Some("SciFact"), &pages);
    let (s, chunks) = time(&pdf_bytes, FileFormat::Pdf, &semantic, &rt);
    println!(
        "pdf:  {} pages, {:.1} MB -> {chunks} chunks in {:.3} s: {:.0} pages/s ({:.2} MB/s)",
        pages.len(),
        pdf_bytes.len() as f64 / 1e6,
        s,
        pages.len() as f64 / s,
        pdf_bytes.len() as f64 / 1e6 / s
    );

    // HTML: each abstract an <article> section with a heading, inside page chrome.
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>SciFact</title><style>p{margin:0}</style>\
        <script>var analytics = 1;</script></head><body><nav><a href=/>Home</a></nav><main><h1>SciFact abstracts</h1>",
    );
    for d in &docs {
        let title = d.metadata.get("title").map(ToString::to_string).unwrap_or_default();
        html.push_str(&format!("<section><h2>{}</h2><p>{}</p></section>", escape(&title), escape(&d.text)));
    }
    html.push_str("</main><footer>(c) benchmark</footer></body></html>");
    let (s, chunks) = time(html.as_bytes(), FileFormat::Html, &markdown, &rt);
    println!("html: {:.1} MB -> {chunks} chunks in {:.3} s: {:.1} MB/s", html.len() as f64 / 1e6, s, html.len() as f64 / 1e6 / s);

    let blocks: Vec<DocxBlock> = docs
        .iter()
        .flat_map(|d| {
            let title = d.metadata.get("title").map(ToString::to_string).unwrap_or_default();
            [DocxBlock::Heading(2, title), DocxBlock::Paragraph(d.text.clone())]
        })
        .collect();
    let docx_bytes = docx("SciFact", &blocks);
    let (s, chunks) = time(&docx_bytes, FileFormat::Docx, &markdown, &rt);
    println!(
        "docx: {:.1} MB ({} paragraphs) -> {chunks} chunks in {:.3} s: {:.1} MB/s",
        docx_bytes.len() as f64 / 1e6,
        blocks.len(),
        s,
        docx_bytes.len() as f64 / 1e6 / s
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
