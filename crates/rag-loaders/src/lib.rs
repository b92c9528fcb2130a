//! Document loaders: the bytes of a PDF, HTML or DOCX file in, text a chunker can cut out.
//!
//! - **PDF** ([`pdf`]): text per page in reading order, with where each page starts, line-end
//!   hyphenation repaired and headers/footers repeated across pages removed.
//! - **HTML** ([`html`]): the main text without navigation, scripts and styles, headings as
//!   Markdown headings (so chunks carry a heading path), in whatever encoding the page declares.
//! - **DOCX** ([`docx`]): paragraphs, headings (as Markdown headings) and tables as text rows.
//!
//! [`detect()`] decides a file's format from its content first and its extension second, and
//! refuses binary files nothing here can read. A file that cannot be read gives a [`LoadError`]
//! whose message says why (encrypted, no text layer, corrupt): callers report it and go on.

pub mod detect;
pub mod docx;
pub mod html;
pub mod pdf;

pub use detect::{FileFormat, detect};
use rag_core::TextFormat;

/// Text extracted from a document, ready to chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The text. HTML and DOCX headings are Markdown headings (`## Methods`).
    pub text: String,
    /// How the text is structured: Markdown for HTML and DOCX, plain for PDF.
    pub format: TextFormat,
    /// The document's own title (PDF Info, HTML `<title>`, DOCX core properties or Title style).
    pub title: Option<String>,
    /// Byte offset in `text` where each page starts (page 1 first); empty when unpaged.
    pub page_starts: Vec<usize>,
}

/// Why a file was not loaded. Each message says what is wrong and, where something can be
/// done, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A PDF that needs a password.
    #[error("encrypted PDF: it needs a password, which is not supported (decrypt it first, e.g. `qpdf --decrypt`)")]
    Encrypted,
    /// A PDF whose pages are images only.
    #[error("no text layer; OCR is not supported (image-only PDF, {pages} page(s))")]
    NoTextLayer {
        /// Pages in the file.
        pages: usize,
    },
    /// A file with nothing to index (the message says what was empty).
    #[error("{0}")]
    NoText(&'static str),
    /// A file of a known format that cannot be parsed.
    #[error("corrupt or unreadable {format}: {detail}")]
    Corrupt {
        /// The format it claims to be.
        format: FileFormat,
        /// What the parser said.
        detail: String,
    },
    /// A binary file of no format rag reads.
    #[error("unknown binary file ({0}); not indexed")]
    UnknownBinary(String),
    /// A text file that is not UTF-8.
    #[error("invalid UTF-8 at byte {0} (convert the file to UTF-8)")]
    InvalidUtf8(usize),
}

/// Extracts the text of `bytes`, read as `format` (taken by value: a text file becomes the
/// text without a copy).
pub fn load(bytes: Vec<u8>, format: FileFormat) -> Result<Extracted, LoadError> {
    match format {
        FileFormat::Pdf => pdf::extract(&bytes),
        FileFormat::Html => html::extract(&bytes),
        FileFormat::Docx => docx::extract(&bytes),
        FileFormat::Text | FileFormat::Markdown | FileFormat::Jsonl => {
            let text = String::from_utf8(bytes).map_err(|e| LoadError::InvalidUtf8(e.utf8_error().valid_up_to()))?;
            if text.trim().is_empty() {
                return Err(LoadError::NoText("empty file"));
            }
            let title = match format {
                FileFormat::Markdown => text.lines().find_map(|l| l.strip_prefix("# ").map(|t| t.trim().to_owned())),
                _ => None,
            };
            let structure = if format == FileFormat::Markdown { TextFormat::Markdown } else { TextFormat::Plain };
            Ok(Extracted { text, format: structure, title, page_starts: Vec::new() })
        }
    }
}

/// Collapses runs of whitespace inside a line to one space and trims it.
pub(crate) fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
