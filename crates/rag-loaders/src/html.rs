//! HTML: the main text (the `<main>` element, else a lone `<article>`, else `<body>`), without
//! navigation, headers, footers, asides, forms, scripts and styles; headings become Markdown
//! headings so chunks carry a heading path; tables become rows of cells separated by ` | `.

use encoding_rs::Encoding;
use rag_core::TextFormat;
use scraper::{ElementRef, Html, Node, Selector};

use crate::{Extracted, FileFormat, LoadError, squash};

/// Elements that are never content.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "aside", "form", "iframe", "svg", "button", "select", "canvas", "object",
    "embed", "head", "dialog", "menu",
];

/// Elements that end a block of text.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "address",
    "hr",
    "br",
    "details",
    "summary",
    "body",
    "center",
    "caption",
];

/// Roles that mark navigation and page chrome.
const CHROME_ROLES: &[&str] = &["navigation", "banner", "contentinfo", "complementary", "search"];

/// The encoding the bytes declare: a byte-order mark, then `<meta charset>` / `http-equiv`
/// / an XML declaration in the first 1,024 bytes; otherwise UTF-8 when valid, else
/// windows-1252 (what browsers assume).
pub fn encoding_of(bytes: &[u8]) -> &'static Encoding {
    if let Some((enc, _)) = Encoding::for_bom(bytes) {
        return enc;
    }
    let head: Vec<u8> = bytes[..bytes.len().min(1024)].iter().map(u8::to_ascii_lowercase).collect();
    for marker in [&b"charset="[..], b"encoding="] {
        if let Some(at) = head.windows(marker.len()).position(|w| w == marker) {
            let rest = &head[at + marker.len()..];
            let rest = rest.strip_prefix(b"\"").or_else(|| rest.strip_prefix(b"'")).unwrap_or(rest);
            let end = rest.iter().position(|b| !(b.is_ascii_alphanumeric() || b"-_:.".contains(b))).unwrap_or(rest.len());
            if let Some(enc) = Encoding::for_label(&rest[..end]) {
                // A page saved as UTF-16 cannot declare it in ASCII: a stale declaration.
                if enc != encoding_rs::UTF_16LE && enc != encoding_rs::UTF_16BE {
                    return enc;
                }
            }
        }
    }
    if std::str::from_utf8(bytes).is_ok() { encoding_rs::UTF_8 } else { encoding_rs::WINDOWS_1252 }
}

/// Text blocks as they are collected.
#[derive(Default)]
struct Blocks {
    done: Vec<String>,
    line: String,
}

impl Blocks {
    fn flush(&mut self) {
        let text = squash(&self.line);
        self.line.clear();
        if !text.is_empty() {
            self.done.push(text);
        }
    }

    fn push_block(&mut self, block: String) {
        self.flush();
        if !block.trim().is_empty() {
            self.done.push(block);
        }
    }
}

fn is_chrome(el: &ElementRef<'_>) -> bool {
    let e = el.value();
    SKIPPED.contains(&e.name())
        || e.attr("hidden").is_some()
        || e.attr("aria-hidden") == Some("true")
        || e.attr("role").is_some_and(|r| CHROME_ROLES.contains(&r))
}

/// The inline text of `el` (skipping chrome), whitespace collapsed.
fn inline_text(el: ElementRef<'_>) -> String {
    let mut s = String::new();
    for node in el.descendants() {
        if let Node::Text(t) = node.value()
            && !node.ancestors().filter_map(ElementRef::wrap).any(|a| is_chrome(&a))
        {
            s.push_str(t);
        }
    }
    squash(&s)
}

fn table_rows(table: ElementRef<'_>) -> String {
    let rows = Selector::parse("tr").ok();
    let cells = Selector::parse("th, td").ok();
    let (Some(rows), Some(cells)) = (rows, cells) else { return String::new() };
    table
        .select(&rows)
        .map(|tr| tr.select(&cells).map(inline_text).collect::<Vec<_>>().join(" | "))
        .filter(|r| !r.replace('|', "").trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk(el: ElementRef<'_>, out: &mut Blocks, in_content: bool) {
    for child in el.children() {
        match child.value() {
            Node::Text(t) => out.line.push_str(t),
            Node::Element(_) => {
                let Some(c) = ElementRef::wrap(child) else { continue };
                let name = c.value().name();
                // A site's header and footer are chrome; an article's own header holds its title.
                if is_chrome(&c) || (!in_content && matches!(name, "header" | "footer")) {
                    continue;
                }
                match name {
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        let level = usize::from(name.as_bytes()[1] - b'0');
                        let text = inline_text(c);
                        if !text.is_empty() {
                            out.push_block(format!("{} {text}", "#".repeat(level)));
                        }
                    }
                    "table" => out.push_block(table_rows(c)),
                    "pre" => out.push_block(c.text().collect::<String>().trim_end().to_owned()),
                    "li" => {
                        out.flush();
                        out.line.push_str("- ");
                        walk(c, out, in_content);
                        out.flush();
                    }
                    _ if BLOCKS.contains(&name) => {
                        out.flush();
                        walk(c, out, in_content || matches!(name, "main" | "article"));
                        out.flush();
                    }
                    _ => walk(c, out, in_content),
                }
            }
            _ => {}
        }
    }
}

fn select_first<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    Selector::parse(css).map(|s| doc.select(&s).collect()).unwrap_or_default()
}

/// Extracts the main text of an HTML page.
pub fn extract(bytes: &[u8]) -> Result<Extracted, LoadError> {
    let (text, _, had_errors) = encoding_of(bytes).decode(bytes);
    if had_errors && text.chars().filter(|c| *c == '\u{fffd}').count() > text.len() / 10 {
        return Err(LoadError::Corrupt { format: FileFormat::Html, detail: "mostly undecodable bytes".into() });
    }
    let doc = Html::parse_document(&text);
    let title = select_first(&doc, "title").first().map(|t| squash(&t.text().collect::<String>())).filter(|t| !t.is_empty());
    let main = select_first(&doc, "main, [role=main]");
    let articles = select_first(&doc, "article");
    let (root, in_content) = match (main.first(), articles.as_slice()) {
        (Some(m), _) => (*m, true),
        (None, [a]) => (*a, true),
        _ => (doc.root_element(), false),
    };
    let mut blocks = Blocks::default();
    walk(root, &mut blocks, in_content);
    blocks.flush();
    let body = blocks.done.join("\n\n");
    if body.trim().is_empty() {
        return Err(LoadError::NoText("no text in the page's body"));
    }
    let title = title.or_else(|| body.lines().find_map(|l| l.strip_prefix("# ").map(str::to_owned)));
    Ok(Extracted { text: body, format: TextFormat::Markdown, title, page_starts: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_text_headings_tables_and_declared_encoding() {
        let page = "<!DOCTYPE html><html><head><meta charset=\"windows-1252\"><title>Caf\u{e9} guide</title>\
            <style>p{color:red}</style><script>var x = 'secret';</script></head><body>\
            <header><nav><a href=/>Home</a> <a href=/about>About</a></nav></header>\
            <main><h1>Caf\u{e9}s</h1><p>Espresso is <b>strong</b>.</p><h2>Prices</h2>\
            <table><tr><th>Drink</th><th>Price</th></tr><tr><td>Latte</td><td>3</td></tr></table>\
            <ul><li>one</li><li>two</li></ul></main><footer>Copyright ACME</footer></body></html>";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(page);
        let got = extract(&bytes).unwrap();
        assert_eq!(got.title.as_deref(), Some("Caf\u{e9} guide"));
        assert_eq!(got.text, "# Caf\u{e9}s\n\nEspresso is strong.\n\n## Prices\n\nDrink | Price\nLatte | 3\n\n- one\n\n- two");
        for chrome in ["Home", "secret", "color", "Copyright"] {
            assert!(!got.text.contains(chrome), "{chrome} leaked: {}", got.text);
        }
    }
}
