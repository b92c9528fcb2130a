//! Which format a file is: by its content first (magic bytes, markup), by its extension second.

use std::io::Cursor;
use std::path::Path;

use crate::LoadError;

/// A format rag can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// Plain UTF-8 text.
    Text,
    /// Markdown.
    Markdown,
    /// A JSONL corpus, one document per line.
    Jsonl,
    /// PDF.
    Pdf,
    /// HTML.
    Html,
    /// Word (Office Open XML) document.
    Docx,
}

impl FileFormat {
    /// The lowercase name (`pdf`, `html`), as stored in chunk metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Jsonl => "jsonl",
            Self::Pdf => "pdf",
            Self::Html => "html",
            Self::Docx => "docx",
        }
    }
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pdf => "PDF",
            Self::Html => "HTML",
            Self::Docx => "DOCX",
            other => other.name(),
        })
    }
}

/// Binary signatures of files nothing here reads, named in the skip reason.
const FOREIGN: &[(&[u8], &str)] = &[
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"),
    (b"7z\xbc\xaf", "a 7z archive"),
    (b"\x7fELF", "an executable"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office (OLE) document: save it as .docx"),
    (b"SQLite format 3", "an SQLite database"),
];

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

/// Whether the start of `bytes` looks like an HTML document (after a BOM and whitespace).
fn looks_like_html(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    let lower: Vec<u8> = head[start..].iter().map(u8::to_ascii_lowercase).collect();
    lower.starts_with(b"<!doctype html")
        || lower.starts_with(b"<html")
        || (lower.starts_with(b"<?xml") || lower.starts_with(b"<!--")) && lower.windows(5).any(|w| w == b"<html")
}

fn is_docx(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(Cursor::new(bytes)).is_ok_and(|z| z.index_for_name("word/document.xml").is_some())
}

/// The format of the file at `path` with content `bytes`. Content decides first: a PDF or DOCX
/// is read as one whatever its name, a page of HTML too; a file named `.pdf` or `.docx` whose
/// content is something else, and any binary file of another kind, is an error (reported, never
/// indexed as text). Other files are read by extension: `.md`, `.jsonl`, and anything else that
/// is UTF-8 text as plain text.
pub fn detect(path: &Path, bytes: &[u8]) -> Result<FileFormat, LoadError> {
    let ext = extension(path);
    if bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        return Ok(FileFormat::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return if is_docx(bytes) {
            Ok(FileFormat::Docx)
        } else {
            Err(LoadError::UnknownBinary("a ZIP archive that is not a DOCX document".into()))
        };
    }
    if let Some((_, what)) = FOREIGN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Err(LoadError::UnknownBinary((*what).into()));
    }
    match ext.as_deref() {
        Some("pdf") => return Err(LoadError::Corrupt { format: FileFormat::Pdf, detail: "no %PDF- header".into() }),
        Some("docx") => {
            return Err(LoadError::Corrupt { format: FileFormat::Docx, detail: "not a ZIP package".into() });
        }
        _ => {}
    }
    let head = &bytes[..bytes.len().min(8192)];
    let binary = head.contains(&0);
    if !binary && (matches!(ext.as_deref(), Some("html" | "htm" | "xhtml")) || looks_like_html(bytes)) {
        return Ok(FileFormat::Html);
    }
    let format = match ext.as_deref() {
        Some("md" | "markdown") => FileFormat::Markdown,
        Some("jsonl") => FileFormat::Jsonl,
        _ => FileFormat::Text,
    };
    let named_text = matches!(ext.as_deref(), Some("txt" | "text" | "md" | "markdown" | "jsonl"));
    if binary || (!named_text && std::str::from_utf8(bytes).is_err()) {
        let what = ext.map_or_else(|| "no extension".to_owned(), |e| format!(".{e}"));
        return Err(LoadError::UnknownBinary(what));
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_before_the_extension() {
        let p = |s: &str| std::path::PathBuf::from(s);
        assert_eq!(detect(&p("report.txt"), b"%PDF-1.7\n..."), Ok(FileFormat::Pdf));
        assert_eq!(detect(&p("page"), b"\n  <!DOCTYPE html><html>x</html>"), Ok(FileFormat::Html));
        assert_eq!(detect(&p("a.htm"), b"<p>x</p>"), Ok(FileFormat::Html));
        assert_eq!(detect(&p("notes.md"), b"# T"), Ok(FileFormat::Markdown));
        assert_eq!(detect(&p("LICENSE"), b"MIT License"), Ok(FileFormat::Text));
        assert!(matches!(detect(&p("x.pdf"), b"hello"), Err(LoadError::Corrupt { format: FileFormat::Pdf, .. })));
        assert!(matches!(detect(&p("photo.dat"), b"\x89PNG\r\n"), Err(LoadError::UnknownBinary(w)) if w.contains("PNG")));
        assert!(matches!(detect(&p("blob.bin"), b"ab\0\x01\x02"), Err(LoadError::UnknownBinary(_))));
        assert!(matches!(detect(&p("x.zip"), b"PK\x03\x04junk"), Err(LoadError::UnknownBinary(w)) if w.contains("ZIP")));
        // A .txt that is not UTF-8 is still a text file: loading it says where the bad byte is.
        assert_eq!(detect(&p("latin1.txt"), b"caf\xe9"), Ok(FileFormat::Text));
        assert_eq!(crate::load(b"caf\xe9".to_vec(), FileFormat::Text), Err(LoadError::InvalidUtf8(3)));
    }
}
