//! PDF: text per page through `pdf-extract` (MIT, pure Rust, over `lopdf`), laid out by a small
//! output device of ours that keeps each line's position, then cleaned: running headers and
//! footers (lines at the top or bottom edge that repeat across pages) dropped, words hyphenated
//! at line ends repaired.
//!
//! Reading order is the order of the page's content stream, with a line break wherever the
//! text moves to another line and a paragraph break where it jumps down or back up (a new
//! column): right for single-column pages and for columns written one after the other (what
//! word processors and LaTeX produce).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use lopdf::{Document, Object};
use pdf_extract::{MediaBox, OutputDev, OutputError, Transform};
use rag_core::TextFormat;

use crate::{Extracted, FileFormat, LoadError, squash};

/// The band at the top and at the bottom of a page, as a share of its height, where running
/// headers and footers sit.
const EDGE_BAND: f64 = 0.12;

fn corrupt(detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt { format: FileFormat::Pdf, detail: detail.into() }
}

/// Runs `f`, turning a panic inside the PDF libraries (they have some on malformed input)
/// into an error: one bad file must not take the ingest down.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, LoadError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal error".into());
        corrupt(format!("{what}: {msg}"))
    })
}

/// One line of a page as laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct PageLine {
    /// Where the line sits, as a share of the page height from the top (0.0 top, 1.0 bottom).
    pub depth: f64,
    /// Whether a paragraph break comes before it (a large gap, or a jump up to a new column).
    pub breaks: bool,
    /// The text.
    pub text: String,
}

/// An `OutputDev` that collects the lines of one page with their vertical positions.
#[derive(Default)]
struct LineCollector {
    height: f64,
    top: f64,
    lines: Vec<PageLine>,
    last_end: f64,
    last_y: f64,
    word_start: bool,
}

impl OutputDev for LineCollector {
    fn begin_page(&mut self, _page: u32, media_box: &MediaBox, _art: Option<(f64, f64, f64, f64)>) -> Result<(), OutputError> {
        self.height = (media_box.ury - media_box.lly).abs().max(1.0);
        self.top = media_box.ury;
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        ch: &str,
    ) -> Result<(), OutputError> {
        // The same geometry as pdf-extract's plain-text output: position from the text
        // matrix, size from the transformed font size.
        let (x, y) = (trm.m31, self.top - trm.m32);
        let size = ((font_size * (trm.m11 + trm.m21)) * (font_size * (trm.m12 + trm.m22))).abs().sqrt().max(1e-3);
        let dy = y - self.last_y;
        let new_line = self.lines.is_empty() || (self.word_start && dy.abs() > size * 0.5);
        if new_line {
            let breaks = !self.lines.is_empty() && (dy > size * 1.8 || dy < -size * 0.5);
            self.lines.push(PageLine { depth: (y / self.height).clamp(0.0, 1.0), breaks, text: String::new() });
        } else if self.word_start
            && x > self.last_end + size * 0.1
            && let Some(line) = self.lines.last_mut()
        {
            line.text.push(' ');
        }
        if let Some(line) = self.lines.last_mut() {
            line.text.push_str(ch);
        }
        self.word_start = false;
        self.last_y = y;
        self.last_end = x + width * size;
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.word_start = true;
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// The lines of each page.
fn page_lines(doc: &Document) -> Result<Vec<Vec<PageLine>>, LoadError> {
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    if numbers.is_empty() {
        return Err(corrupt("no pages"));
    }
    numbers
        .into_iter()
        .map(|n| {
            let mut out = LineCollector::default();
            guarded(&format!("page {n}"), || pdf_extract::output_doc_page(doc, &mut out, n))?
                .map_err(|e| corrupt(format!("page {n}: {e}")))?;
            Ok(out.lines.into_iter().filter(|l| !l.text.trim().is_empty()).collect())
        })
        .collect()
}

fn title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = match info {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let t = squash(&lopdf::decode_text_string(info.get(b"Title").ok()?).ok()?);
    (!t.is_empty()).then_some(t)
}

fn has_images(doc: &Document) -> bool {
    doc.objects
        .values()
        .any(|o| o.as_stream().is_ok_and(|s| s.dict.get(b"Subtype").and_then(Object::as_name).is_ok_and(|n| n == b"Image")))
}

/// Extracts the text of a PDF, page by page.
pub fn extract(bytes: &[u8]) -> Result<Extracted, LoadError> {
    let doc = guarded("parse", || Document::load_mem(bytes))?.map_err(|e| corrupt(e.to_string()))?;
    // lopdf opens files whose user password is empty by itself; any other needs the password.
    if doc.is_encrypted() && !doc.was_encrypted() {
        return Err(LoadError::Encrypted);
    }
    let pages = clean_pages(&page_lines(&doc)?);
    if pages.iter().all(|p| p.trim().is_empty()) {
        return Err(if has_images(&doc) {
            LoadError::NoTextLayer { pages: pages.len() }
        } else {
            LoadError::NoText("no text on any page")
        });
    }
    let mut text = String::new();
    let mut page_starts = Vec::with_capacity(pages.len());
    for (i, page) in pages.iter().enumerate() {
        if i > 0 {
            text.push_str("\n\n");
        }
        page_starts.push(text.len());
        text.push_str(page);
    }
    Ok(Extracted { text, format: TextFormat::Plain, title: title(&doc), page_starts })
}

/// A line as header/footer detection compares it: page numbers and dates vary, so digits do not
/// count; case and spacing do not either.
fn edge_key(line: &str) -> String {
    let mut key = String::with_capacity(line.len());
    let mut in_digits = false;
    for c in squash(line).chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                key.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            key.extend(c.to_lowercase());
        }
    }
    key
}

/// A bare page number: `8`, `- 8 -`, `Page 8`, `8 of 36`, `8/36`, `viii`.
fn is_page_number(text: &str) -> bool {
    let t = text.trim().trim_matches(|c: char| c == '-' || c == '\u{2013}' || c.is_whitespace()).to_lowercase();
    let t = t.strip_prefix("page").map_or(t.as_str(), str::trim_start);
    let numeric = |s: &str| !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit());
    let roman = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| "ivxlc".contains(c));
    let (first, rest) = match t.split_once(" of ").or_else(|| t.split_once('/')) {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (t, None),
    };
    (numeric(first) || (rest.is_none() && roman(first))) && rest.is_none_or(numeric)
}

fn at_edge(line: &PageLine) -> bool {
    line.depth < EDGE_BAND || line.depth > 1.0 - EDGE_BAND
}

/// The text of each page, cleaned: lines in the top or bottom band that read the same (digits
/// aside: page numbers, dates) on at least half the pages, and on two at least, are running
/// headers or footers and are dropped; words hyphenated across lines are joined.
pub fn clean_pages(pages: &[Vec<PageLine>]) -> Vec<String> {
    let threshold = pages.len().div_ceil(2).max(2);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for lines in pages {
        let mut keys: Vec<String> = lines.iter().filter(|l| at_edge(l)).map(|l| edge_key(&l.text)).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
    }
    // A bare page number at an edge is dropped even where it does not repeat (odd and even
    // pages often put it on different lines).
    let running =
        |l: &PageLine| at_edge(l) && (is_page_number(&l.text) || seen.get(&edge_key(&l.text)).is_some_and(|n| *n >= threshold));
    pages
        .iter()
        .map(|lines| {
            let mut kept: Vec<&str> = Vec::new();
            for l in lines.iter().filter(|l| !running(l)) {
                if l.breaks && !kept.is_empty() {
                    kept.push("");
                }
                kept.push(&l.text);
            }
            tidy(&kept)
        })
        .collect()
}

/// Joins a word split by a hyphen at a line end (`treat-` / `ment` -> `treatment`) when the next
/// line goes on in lowercase, and keeps at most one blank line between paragraphs.
fn tidy(lines: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in lines.iter().map(|l| l.trim()) {
        if line.is_empty() {
            out.extend(current.take());
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            continue;
        }
        current = Some(match current.take() {
            Some(prev) if line.chars().next().is_some_and(char::is_lowercase) => match hyphen_head(&prev) {
                Some(head) => format!("{head}{line}"),
                None => {
                    out.push(prev);
                    line.to_owned()
                }
            },
            Some(prev) => {
                out.push(prev);
                line.to_owned()
            }
            None => line.to_owned(),
        });
    }
    out.extend(current);
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out.join("\n")
}

/// `treat-` -> `treat`: a line ending in a letter and a hyphen (or soft hyphen).
fn hyphen_head(line: &str) -> Option<&str> {
    line.strip_suffix('-')
        .or_else(|| line.strip_suffix('\u{ad}'))
        .filter(|head| head.chars().last().is_some_and(char::is_alphabetic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(depth: f64, text: &str) -> PageLine {
        PageLine { depth, breaks: false, text: text.to_owned() }
    }

    #[test]
    fn hyphens_repaired_and_running_edges_dropped() {
        assert_eq!(tidy(&["The treat-", "ment worked.", "", "", "Well-", "Known"]), "The treatment worked.\n\nWell-\nKnown");
        let pages: Vec<Vec<PageLine>> = (1..=3)
            .map(|n| {
                // The footer comes first in the content stream: position decides, not order.
                vec![
                    line(0.95, &format!("Page {n} of 3")),
                    line(0.05, &format!("ACME Journal {n}/2026")),
                    line(0.3, "Same body line."),
                    line(0.5, &format!("Body {n}.")),
                ]
            })
            .collect();
        assert_eq!(clean_pages(&pages)[1], "Same body line.\nBody 2.");
        for number in ["8", "- 8 -", "Page 12", "3 of 36", "3/36", "viii"] {
            assert!(is_page_number(number), "{number}");
        }
        for text in ["12 monkeys", "Page one", "mix", "v2", "Table 3"] {
            assert!(!is_page_number(text), "{text}");
        }
        let numbered = clean_pages(&[vec![line(0.03, "8"), line(0.5, "Body.")], vec![line(0.5, "Other.")]]);
        assert_eq!(numbered[0], "Body.");
        // Two pages whose top lines differ keep them.
        let two = clean_pages(&[vec![line(0.05, "Intro")], vec![line(0.05, "Methods")]]);
        assert_eq!(two, vec!["Intro", "Methods"]);
    }
}
