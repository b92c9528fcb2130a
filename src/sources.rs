//! [`FileSource`]: files and folders as a [`DocumentSource`]: `.txt`, `.md`, and BEIR-style
//! JSONL corpora (`{"_id", "title", "text", "metadata"}` per line), streamed so a large file
//! never has to be held more than once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
pub use rag_core::Skipped;
use rag_core::{
    Document, DocumentSource, DocumentStream, Metadata, MetadataValue, RagError, Result, SourceDocument, SourceItem, TextFormat,
};

/// Files and folders (recursively; hidden entries are passed over). Each root is an origin, so
/// pruning removes documents that came from a root before and are gone from it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    paths: Vec<PathBuf>,
}

impl FileSource {
    /// The files and folders in `paths`.
    pub fn new(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        Self { paths: paths.into_iter().map(Into::into).collect() }
    }
}

#[async_trait]
impl DocumentSource for FileSource {
    async fn open(&self) -> Result<DocumentStream> {
        let (files, skipped) = scan(&self.paths)?;
        // Every JSONL line is checked before anything is written: a malformed corpus loses nothing.
        let mut total = 0u64;
        for f in &files {
            total += if f.kind == SourceKind::Jsonl { validate_jsonl(&f.path)? as u64 } else { 1 };
        }
        // Every file's root is one of these (scan canonicalises the same paths), and a root with
        // no files left is still an origin, so pruning can empty it.
        let origins: Vec<String> = self
            .paths
            .iter()
            .map(|p| p.canonicalize().map(|c| c.display().to_string()).map_err(|e| RagError::io(p, e)))
            .collect::<Result<std::collections::BTreeSet<_>>>()?
            .into_iter()
            .collect();
        let skipped = skipped.into_iter().map(|s| Ok(SourceItem::Skipped(s)));
        // Ids unique across the ingest are checked by the pipeline, for every source alike.
        let documents = files.into_iter().flat_map(file_items);
        Ok(DocumentStream { total: Some(total), origins, items: futures::stream::iter(skipped.chain(documents)).boxed() })
    }
}

/// The items one file yields: its document, each JSONL line's, or why it was skipped.
fn file_items(file: SourceFile) -> Box<dyn Iterator<Item = Result<SourceItem>> + Send> {
    let doc = |document: Document, format: TextFormat, origin: &str| {
        SourceItem::Document(SourceDocument { document, format, origin: origin.to_owned() })
    };
    match file.kind {
        SourceKind::Jsonl => match JsonlReader::open(&file.path) {
            Ok(reader) => Box::new(reader.map(move |d| d.map(|d| doc(d, TextFormat::Plain, &file.root)))),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
        kind => {
            let format = if kind == SourceKind::Markdown { TextFormat::Markdown } else { TextFormat::Plain };
            let item = match read_text(&file) {
                Ok(Ok(d)) => Ok(doc(d, format, &file.root)),
                Ok(Err(skip)) => Ok(SourceItem::Skipped(skip)),
                Err(e) => Err(e),
            };
            Box::new(std::iter::once(item))
        }
    }
}

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Plain text: one document.
    Text,
    /// Markdown: one document, chunked by sections.
    Markdown,
    /// JSONL corpus: one document per line.
    Jsonl,
}

/// A file to ingest, with the root it was found under (for `--prune`).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// The file.
    pub path: PathBuf,
    /// How to read it.
    pub kind: SourceKind,
    /// Document id for text/markdown files (root name + relative path).
    pub doc_id: String,
    /// The canonical ingest root it came from.
    pub root: String,
}

fn kind_of(path: &Path) -> Option<SourceKind> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("txt") | Some("text") => Some(SourceKind::Text),
        Some("md") | Some("markdown") => Some(SourceKind::Markdown),
        Some("jsonl") => Some(SourceKind::Jsonl),
        _ => None,
    }
}

/// Lists the ingestible files under `paths` (files or folders, recursively, sorted).
pub fn scan(paths: &[PathBuf]) -> Result<(Vec<SourceFile>, Vec<Skipped>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        let root = p.canonicalize().map_err(|e| RagError::io(p, e))?;
        let root_name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
        let mut stack = vec![root.clone()];
        let mut found = Vec::new();
        while let Some(cur) = stack.pop() {
            let meta = std::fs::metadata(&cur).map_err(|e| RagError::io(&cur, e))?;
            if meta.is_dir() {
                let entries = std::fs::read_dir(&cur).map_err(|e| RagError::io(&cur, e))?;
                for e in entries {
                    let e = e.map_err(|e| RagError::io(&cur, e))?;
                    let name = e.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue; // hidden files and folders (.git, .rag)
                    }
                    stack.push(e.path());
                }
            } else {
                found.push(cur);
            }
        }
        found.sort();
        for f in found {
            let Some(kind) = kind_of(&f) else {
                skipped.push(Skipped {
                    path: f.display().to_string(),
                    reason: "unsupported file type (use .txt, .md or .jsonl)".into(),
                });
                continue;
            };
            let rel = if root.is_dir() {
                format!("{root_name}/{}", f.strip_prefix(&root).unwrap_or(&f).display())
            } else {
                root_name.clone()
            };
            files.push(SourceFile { path: f, kind, doc_id: rel, root: root.display().to_string() });
        }
    }
    Ok((files, skipped))
}

/// Reads a text or markdown file: `Ok(None)` with a reason when it must be skipped (empty,
/// whitespace only, invalid UTF-8).
pub fn read_text(file: &SourceFile) -> Result<std::result::Result<Document, Skipped>> {
    let bytes = std::fs::read(&file.path).map_err(|e| RagError::io(&file.path, e))?;
    let skip = |reason: String| Ok(Err(Skipped { path: file.path.display().to_string(), reason }));
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return skip(format!("invalid UTF-8 at byte {} (convert the file to UTF-8)", e.utf8_error().valid_up_to())),
    };
    if text.trim().is_empty() {
        return skip("empty file".into());
    }
    let mut metadata = Metadata::new();
    metadata.insert("source".into(), MetadataValue::Str(file.path.display().to_string()));
    let title = match file.kind {
        SourceKind::Markdown => text.lines().find_map(|l| l.strip_prefix("# ").map(|t| t.trim().to_owned())),
        _ => None,
    }
    .or_else(|| file.path.file_stem().map(|s| s.to_string_lossy().into_owned()));
    if let Some(t) = title {
        metadata.insert("title".into(), MetadataValue::Str(t));
    }
    Ok(Ok(Document { id: file.doc_id.clone(), text, metadata }))
}

fn json_metadata(v: &serde_json::Value) -> Option<MetadataValue> {
    use serde_json::Value;
    match v {
        Value::Bool(b) => Some(MetadataValue::Bool(*b)),
        Value::Number(n) => n.as_i64().map(MetadataValue::Int).or_else(|| n.as_f64().map(MetadataValue::Float)),
        Value::String(s) => Some(MetadataValue::Str(s.clone())),
        Value::Array(a) => {
            a.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().map(MetadataValue::StrList)
        }
        _ => None,
    }
}

/// Parses one JSONL line into a document; the error names the file and line.
fn parse_line(path: &Path, lineno: usize, line: &str) -> Result<Document> {
    let at = || format!("{}:{lineno}", path.display());
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| RagError::invalid_input(at(), format!("malformed JSON ({e}); fix or remove the line")))?;
    let obj = v.as_object().ok_or_else(|| RagError::invalid_input(at(), "expected a JSON object with `_id` and `text`"))?;
    let id = match obj.get("_id").or_else(|| obj.get("id")) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(RagError::invalid_input(at(), "missing `_id` (a non-empty string)")),
    };
    let body =
        obj.get("text").and_then(|t| t.as_str()).ok_or_else(|| RagError::invalid_input(at(), "missing `text` (a string)"))?;
    let title = obj.get("title").and_then(|t| t.as_str()).unwrap_or("").trim();
    let text = if title.is_empty() { body.to_owned() } else { format!("{title}\n\n{body}") };
    let mut metadata = Metadata::new();
    if !title.is_empty() {
        metadata.insert("title".into(), MetadataValue::Str(title.to_owned()));
    }
    metadata.insert("source".into(), MetadataValue::Str(path.display().to_string()));
    if let Some(serde_json::Value::Object(m)) = obj.get("metadata") {
        for (k, v) in m {
            if let Some(v) = json_metadata(v) {
                metadata.insert(k.clone(), v);
            }
        }
    }
    Ok(Document { id, text, metadata })
}

/// Checks every line of a JSONL file before anything from it is stored, so a malformed line
/// fails the ingest up front with its file and line. Returns the number of documents.
pub fn validate_jsonl(path: &Path) -> Result<usize> {
    let mut n = 0;
    for item in JsonlReader::open(path)? {
        item?;
        n += 1;
    }
    Ok(n)
}

/// Streams the documents of a JSONL file.
pub struct JsonlReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    lineno: usize,
}

impl JsonlReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| RagError::io(path, e))?;
        Ok(Self { path: path.to_owned(), lines: BufReader::new(f).lines(), lineno: 0 })
    }
}

impl Iterator for JsonlReader {
    type Item = Result<Document>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.lineno += 1;
            let line = match self.lines.next()? {
                Ok(l) => l,
                Err(e) => {
                    return Some(Err(RagError::invalid_input(
                        format!("{}:{}", self.path.display(), self.lineno),
                        format!("unreadable line: {e}"),
                    )));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(parse_line(&self.path, self.lineno, &line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"_id\":\"1\",\"title\":\"T\",\"text\":\"body\",\"metadata\":{\"year\":2020,\"tags\":[\"a\"]}}\n\n{\"_id\": \"2\", \"text\": oops}\n").unwrap();
        let err = validate_jsonl(&p).unwrap_err().to_string();
        assert!(err.contains("c.jsonl:3") && err.contains("malformed JSON"), "{err}");
        let first = JsonlReader::open(&p).unwrap().next().unwrap().unwrap();
        assert_eq!(first.text, "T\n\nbody");
        assert_eq!(first.metadata.get("year"), Some(&MetadataValue::Int(2020)));
        assert_eq!(first.metadata.get("tags"), Some(&MetadataValue::StrList(vec!["a".into()])));
        std::fs::write(&p, "{\"title\":\"no id\",\"text\":\"x\"}\n").unwrap();
        assert!(validate_jsonl(&p).unwrap_err().to_string().contains("missing `_id`"));
    }

    #[tokio::test]
    async fn file_source_yields_documents_skips_and_origins() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "# A\n\nbody").unwrap();
        std::fs::write(dir.path().join("c.jsonl"), "{\"_id\":\"1\",\"text\":\"x\"}\n{\"_id\":\"1\",\"text\":\"y\"}\n").unwrap();
        std::fs::write(dir.path().join("z.bin"), "?").unwrap();
        let stream = FileSource::new([dir.path()]).open().await.unwrap();
        assert_eq!(stream.total, Some(3));
        assert_eq!(stream.origins, vec![dir.path().canonicalize().unwrap().display().to_string()]);
        let items: Vec<SourceItem> = stream.items.try_collect().await.unwrap();
        assert!(matches!(&items[0], SourceItem::Skipped(s) if s.path.ends_with("z.bin")));
        assert!(matches!(&items[1], SourceItem::Document(d) if d.format == TextFormat::Markdown));
        let ids: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                SourceItem::Document(d) => Some(d.document.id.as_str()),
                SourceItem::Skipped(_) => None,
            })
            .collect();
        assert_eq!(ids, vec![dir.path().file_name().unwrap().to_str().unwrap().to_owned() + "/a.md", "1".into(), "1".into()]);
    }

    #[test]
    fn scan_reports_skips_and_reads_text() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("docs");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "hello").unwrap();
        std::fs::write(root.join("sub/b.md"), "# Title B\n\ntext").unwrap();
        std::fs::write(root.join("c.pdf"), "x").unwrap();
        std::fs::write(root.join("empty.txt"), "  \n").unwrap();
        std::fs::write(root.join("bad.txt"), [0x66, 0xff, 0xfe]).unwrap();
        let (files, skipped) = scan(&[root]).unwrap();
        let ids: Vec<&str> = files.iter().map(|f| f.doc_id.as_str()).collect();
        assert_eq!(ids, vec!["docs/a.txt", "docs/bad.txt", "docs/empty.txt", "docs/sub/b.md"]);
        assert_eq!(skipped.len(), 1);
        let md = read_text(&files[3]).unwrap().unwrap();
        assert_eq!(md.metadata.get("title"), Some(&MetadataValue::Str("Title B".into())));
        assert!(read_text(&files[1]).unwrap().unwrap_err().reason.contains("invalid UTF-8 at byte 1"));
        assert_eq!(read_text(&files[2]).unwrap().unwrap_err().reason, "empty file");
    }
}
