//! [`FileSource`]: files and folders as a [`DocumentSource`]: text, Markdown, PDF, HTML and DOCX
//! files (read by [`rag_loaders`], which tells formats apart by content as well as extension),
//! and BEIR-style JSONL corpora (`{"_id", "title", "text", "metadata"}` per line), streamed so a
//! large file never has to be held more than once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
pub use rag_core::Skipped;
use rag_core::{Document, DocumentSource, DocumentStream, Metadata, MetadataValue, RagError, Result, SourceDocument, SourceItem};
use rag_loaders::FileFormat;

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
        let files = scan(&self.paths)?;
        // Every JSONL line is checked before anything is written: a malformed corpus loses nothing.
        let mut total = 0u64;
        for f in &files {
            total += if f.is_jsonl() { validate_jsonl(&f.path)? as u64 } else { 1 };
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
        // Ids unique across the ingest are checked by the pipeline, for every source alike.
        let items = futures::stream::iter(files.into_iter().flat_map(file_items)).boxed();
        Ok(DocumentStream { total: Some(total), origins, items })
    }
}

/// The items one file yields: its document, each JSONL line's, or why it was skipped.
fn file_items(file: SourceFile) -> Box<dyn Iterator<Item = Result<SourceItem>> + Send> {
    if file.is_jsonl() {
        return match JsonlReader::open(&file.path).map(|r| r.source(file.doc_id.clone())) {
            Ok(reader) => Box::new(reader.map(move |d| {
                d.map(|d| SourceItem::Document(SourceDocument::new(d, rag_core::TextFormat::Plain, file.root.clone())))
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
    }
    let item = match read_file(&file) {
        Ok(Ok(d)) => Ok(SourceItem::Document(d)),
        Ok(Err(skip)) => Ok(SourceItem::Skipped(skip)),
        Err(e) => Err(e),
    };
    Box::new(std::iter::once(item))
}

/// A file to ingest, with the root it was found under (for `--prune`).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// The file.
    pub path: PathBuf,
    /// Document id (root name + relative path).
    pub doc_id: String,
    /// The canonical ingest root it came from.
    pub root: String,
}

impl SourceFile {
    /// Whether it is a JSONL corpus (one document per line) rather than one document.
    pub fn is_jsonl(&self) -> bool {
        self.path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
    }
}

/// Lists the files under `paths` (files or folders, recursively, sorted; hidden entries are
/// passed over). Which of them can be read is decided when each is read.
pub fn scan(paths: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
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
            let rel = if root.is_dir() {
                format!("{root_name}/{}", f.strip_prefix(&root).unwrap_or(&f).display())
            } else {
                root_name.clone()
            };
            files.push(SourceFile { path: f, doc_id: rel, root: root.display().to_string() });
        }
    }
    Ok(files)
}

/// Reads one document file of any supported format: `Ok(Err(skipped))`, with the reason, when
/// it cannot be indexed (empty, not UTF-8, encrypted, image-only, corrupt, an unknown binary).
pub fn read_file(file: &SourceFile) -> Result<std::result::Result<SourceDocument, Skipped>> {
    let bytes = std::fs::read(&file.path).map_err(|e| RagError::io(&file.path, e))?;
    let skip = |reason: String| Ok(Err(Skipped { path: file.path.display().to_string(), reason }));
    let format = match rag_loaders::detect(&file.path, &bytes) {
        Ok(f) => f,
        Err(e) => return skip(e.to_string()),
    };
    let extracted = match rag_loaders::load(bytes, format) {
        Ok(x) => x,
        Err(e) => return skip(e.to_string()),
    };
    let mut metadata = Metadata::new();
    // The file as named under its ingest root, never the server's absolute path: citations show it.
    metadata.insert("source".into(), MetadataValue::Str(file.doc_id.clone()));
    if !matches!(format, FileFormat::Text | FileFormat::Markdown) {
        metadata.insert("format".into(), MetadataValue::Str(format.name().into()));
    }
    if !extracted.page_starts.is_empty() {
        metadata.insert("page_count".into(), MetadataValue::Int(extracted.page_starts.len() as i64));
    }
    let title = extracted.title.or_else(|| file.path.file_stem().map(|s| s.to_string_lossy().into_owned()));
    if let Some(t) = title {
        metadata.insert("title".into(), MetadataValue::Str(t));
    }
    let document = Document { id: file.doc_id.clone(), text: extracted.text, metadata };
    Ok(Ok(SourceDocument::new(document, extracted.format, file.root.clone()).with_page_starts(extracted.page_starts)))
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

/// Parses one JSONL line into a document (its `source` metadata is `source`; its `metadata`
/// read when `with_metadata`); the error names the file and line.
fn parse_line(path: &Path, source: &str, with_metadata: bool, lineno: usize, line: &str) -> Result<Document> {
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
    metadata.insert("source".into(), MetadataValue::Str(source.to_owned()));
    match obj.get("metadata").filter(|_| with_metadata) {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) => {
            for (k, v) in m {
                let v = json_metadata(v).ok_or_else(|| {
                    RagError::invalid_input(
                        at(),
                        format!("metadata `{k}` is {v}: use a boolean, a number, a string or a list of strings"),
                    )
                })?;
                metadata.insert(k.clone(), v);
            }
        }
        Some(other) => {
            return Err(RagError::invalid_input(at(), format!("`metadata` is {other}: use a JSON object")));
        }
    }
    rag_core::rules::check_document_metadata(&at(), &metadata)?;
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
    source: String,
    metadata: bool,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    lineno: usize,
}

impl JsonlReader {
    /// Opens `path`. Each document's `source` metadata is the file's name, until
    /// [`JsonlReader::source`] says otherwise.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| RagError::io(path, e))?;
        let source = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Self { path: path.to_owned(), source, metadata: true, lines: BufReader::new(f).lines(), lineno: 0 })
    }

    /// The `source` every document of this file carries (the file as named under its ingest
    /// root: what citations show).
    pub fn source(mut self, source: String) -> Self {
        self.source = source;
        self
    }

    /// Reads only ids, titles and texts, passing `metadata` over unread (BEIR's query files
    /// carry their judgements there, which are not document metadata).
    pub fn without_metadata(mut self) -> Self {
        self.metadata = false;
        self
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
            return Some(parse_line(&self.path, &self.source, self.metadata, self.lineno, &line));
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

    #[test]
    fn jsonl_metadata_the_stores_would_refuse_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        for (meta, needle) in [
            (r#"{"$and": "x"}"#, "`$`"),
            (r#"{"": "x"}"#, "empty"),
            (r#"{"chroma:document": "x"}"#, "chroma:"),
            (r#"{"doc_id": "x"}"#, "reserved"),
            (r#"{"nested": {"a": 1}}"#, "nested"),
            (r#"{"nums": [1, 2]}"#, "nums"),
            (r#"["not", "an", "object"]"#, "JSON object"),
        ] {
            std::fs::write(
                &p,
                format!("{{\"_id\":\"ok\",\"text\":\"x\"}}\n{{\"_id\":\"2\",\"text\":\"y\",\"metadata\":{meta}}}\n"),
            )
            .unwrap();
            let err = validate_jsonl(&p).unwrap_err().to_string();
            assert!(err.contains("m.jsonl:2") && err.contains(needle), "{meta}: {err}");
        }
    }

    #[test]
    fn source_is_the_file_under_its_root_never_an_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("corpus");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.md"), "# A\n\nbody").unwrap();
        std::fs::write(root.join("c.jsonl"), "{\"_id\":\"1\",\"text\":\"x\"}\n").unwrap();
        let files = scan(std::slice::from_ref(&root)).unwrap();
        let md = read_file(&files[1]).unwrap().unwrap();
        assert_eq!(md.document.metadata.get("source"), Some(&MetadataValue::Str("corpus/sub/a.md".into())));
        let line: Vec<SourceItem> = file_items(files[0].clone()).collect::<Result<_>>().unwrap();
        assert!(
            matches!(&line[0], SourceItem::Document(d) if d.document.metadata.get("source") == Some(&MetadataValue::Str("corpus/c.jsonl".into()))),
        );
        let single = scan(&[root.join("c.jsonl")]).unwrap();
        let line: Vec<SourceItem> = file_items(single[0].clone()).collect::<Result<_>>().unwrap();
        let SourceItem::Document(d) = &line[0] else { panic!("a document") };
        assert_eq!(d.document.metadata.get("source"), Some(&MetadataValue::Str("c.jsonl".into())));
        assert!(!format!("{:?}", d.document.metadata).contains(&dir.path().display().to_string()));
    }

    #[tokio::test]
    async fn file_source_yields_documents_skips_and_origins() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "# A\n\nbody").unwrap();
        std::fs::write(dir.path().join("c.jsonl"), "{\"_id\":\"1\",\"text\":\"x\"}\n{\"_id\":\"1\",\"text\":\"y\"}\n").unwrap();
        std::fs::write(dir.path().join("z.bin"), b"\x00\x01binary").unwrap();
        let stream = FileSource::new([dir.path()]).open().await.unwrap();
        assert_eq!(stream.total, Some(4));
        assert_eq!(stream.origins, vec![dir.path().canonicalize().unwrap().display().to_string()]);
        let items: Vec<SourceItem> = stream.items.try_collect().await.unwrap();
        assert!(matches!(&items[0], SourceItem::Document(d) if d.format == rag_core::TextFormat::Markdown));
        assert!(matches!(&items[3], SourceItem::Skipped(s) if s.path.ends_with("z.bin") && s.reason.contains("unknown binary")));
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
    fn scan_lists_files_and_reading_reports_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("docs");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "hello").unwrap();
        std::fs::write(root.join("sub/b.md"), "# Title B\n\ntext").unwrap();
        std::fs::write(root.join("c.pdf"), "x").unwrap();
        std::fs::write(root.join("empty.txt"), "  \n").unwrap();
        std::fs::write(root.join("bad.txt"), [0x66, 0xff, 0xfe]).unwrap();
        let files = scan(&[root]).unwrap();
        let ids: Vec<&str> = files.iter().map(|f| f.doc_id.as_str()).collect();
        assert_eq!(ids, vec!["docs/a.txt", "docs/bad.txt", "docs/c.pdf", "docs/empty.txt", "docs/sub/b.md"]);
        let md = read_file(&files[4]).unwrap().unwrap();
        assert_eq!(md.document.metadata.get("title"), Some(&MetadataValue::Str("Title B".into())));
        assert!(read_file(&files[1]).unwrap().unwrap_err().reason.contains("invalid UTF-8 at byte 1"));
        assert!(read_file(&files[2]).unwrap().unwrap_err().reason.contains("corrupt or unreadable PDF"));
        assert!(read_file(&files[3]).unwrap().unwrap_err().reason.contains("empty file"));
    }
}
