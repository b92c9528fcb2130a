//! DOCX: the paragraphs of `word/document.xml` in order; paragraphs in a heading style (or with
//! an outline level) become Markdown headings, so chunks carry a heading path; each table row
//! becomes one line of cells separated by ` | `.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use rag_core::TextFormat;

use crate::{Extracted, FileFormat, LoadError, squash};

fn corrupt(detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt { format: FileFormat::Docx, detail: detail.into() }
}

/// The value of attribute `name` (any namespace prefix).
fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()))
}

fn read_part(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Option<String>, LoadError> {
    let Ok(mut file) = zip.by_name(name) else { return Ok(None) };
    let mut s = String::new();
    file.read_to_string(&mut s).map_err(|e| corrupt(format!("{name}: {e}")))?;
    Ok(Some(s))
}

/// Style id -> heading level, from `word/styles.xml` (`heading 2` -> 2, `Title` -> 1).
fn heading_styles(styles: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut reader = Reader::from_str(styles);
    let mut current: Option<String> = None;
    while let Ok(ev) = reader.read_event() {
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "style" => current = attr(&e, "styleId"),
                "name" => {
                    if let (Some(id), Some(name)) = (&current, attr(&e, "val"))
                        && let Some(level) = heading_level(&name)
                    {
                        out.insert(id.clone(), level);
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// `heading 3` / `Heading3` -> 3; `Title` -> 1.
fn heading_level(style: &str) -> Option<usize> {
    let s = style.to_ascii_lowercase().replace(' ', "");
    if s == "title" {
        return Some(1);
    }
    s.strip_prefix("heading").and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=9).contains(n))
}

/// `dc:title` from `docProps/core.xml`.
fn core_title(core: &str) -> Option<String> {
    let mut reader = Reader::from_str(core);
    let mut inside = false;
    let mut title = String::new();
    while let Ok(ev) = reader.read_event() {
        match ev {
            Event::Start(e) if e.local_name().as_ref() == "title" => inside = true,
            Event::End(e) if e.local_name().as_ref() == "title" => break,
            Event::Text(t) if inside => title.push_str(&t.xml10_content()),
            Event::Eof => break,
            _ => {}
        }
    }
    let t = squash(&title);
    (!t.is_empty()).then_some(t)
}

/// The body as it is walked.
#[derive(Default)]
struct Body {
    blocks: Vec<String>,
    para: String,
    level: Option<usize>,
    in_text: bool,
    /// Open tables: each has its rows, the current row's cells, the current cell's text.
    tables: Vec<(Vec<String>, Vec<String>, String)>,
    title: Option<String>,
}

impl Body {
    fn end_paragraph(&mut self) {
        let text = squash(&std::mem::take(&mut self.para));
        let level = self.level.take();
        if text.is_empty() {
            return;
        }
        if let Some((_, _, cell)) = self.tables.last_mut() {
            if !cell.is_empty() {
                cell.push(' ');
            }
            cell.push_str(&text);
            return;
        }
        match level {
            Some(n) => {
                if n == 1 && self.title.is_none() {
                    self.title = Some(text.clone());
                }
                self.blocks.push(format!("{} {text}", "#".repeat(n.min(6))));
            }
            None => self.blocks.push(text),
        }
    }

    fn end_table(&mut self) {
        let Some((rows, _, _)) = self.tables.pop() else { return };
        let text = rows.join("\n");
        match self.tables.last_mut() {
            // A table in a cell reads as that cell's text.
            Some((_, _, cell)) => {
                cell.push(' ');
                cell.push_str(&text.replace('\n', " ; "));
            }
            None if !text.is_empty() => self.blocks.push(text),
            None => {}
        }
    }
}

/// Extracts the text of a DOCX file.
pub fn extract(bytes: &[u8]) -> Result<Extracted, LoadError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?;
    let document = read_part(&mut zip, "word/document.xml")?.ok_or_else(|| corrupt("no word/document.xml"))?;
    let styles = read_part(&mut zip, "word/styles.xml")?.map(|s| heading_styles(&s)).unwrap_or_default();
    let core = read_part(&mut zip, "docProps/core.xml")?.and_then(|c| core_title(&c));
    let mut body = Body::default();
    let mut reader = Reader::from_str(&document);
    loop {
        let ev =
            reader.read_event().map_err(|e| corrupt(format!("word/document.xml at byte {}: {e}", reader.buffer_position())))?;
        match ev {
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => body.in_text = true,
                "tbl" => body.tables.push(Default::default()),
                "tc" => {
                    if let Some(t) = body.tables.last_mut() {
                        t.2.clear();
                    }
                }
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "pStyle" => {
                    let level = attr(&e, "val").and_then(|id| styles.get(&id).copied().or_else(|| heading_level(&id)));
                    body.level = body.level.or(level);
                }
                "outlineLvl" => {
                    let level = attr(&e, "val").and_then(|v| v.parse::<usize>().ok()).filter(|v| *v < 9);
                    body.level = body.level.or(level.map(|v| v + 1));
                }
                "tab" | "br" | "cr" => body.para.push(' '),
                _ => {}
            },
            Event::Text(t) if body.in_text => body.para.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if body.in_text => {
                let name = r.xml10_content();
                match r.resolve_char_ref() {
                    Ok(Some(c)) => body.para.push(c),
                    _ => body.para.push_str(quick_xml::escape::resolve_predefined_entity(&name).unwrap_or("")),
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "t" => body.in_text = false,
                "p" => body.end_paragraph(),
                "tc" => {
                    if let Some((_, cells, cell)) = body.tables.last_mut() {
                        cells.push(squash(&std::mem::take(cell)));
                    }
                }
                "tr" => {
                    if let Some((rows, cells, _)) = body.tables.last_mut() {
                        let row = std::mem::take(cells);
                        if row.iter().any(|c| !c.is_empty()) {
                            rows.push(row.join(" | "));
                        }
                    }
                }
                "tbl" => body.end_table(),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    let text = body.blocks.join("\n\n");
    if text.trim().is_empty() {
        return Err(LoadError::NoText("no paragraphs with text"));
    }
    Ok(Extracted { text, format: TextFormat::Markdown, title: core.or(body.title), page_starts: Vec::new() })
}
