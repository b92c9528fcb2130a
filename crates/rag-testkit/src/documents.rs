//! Test documents made by the tests themselves: PDFs (text pages laid out as told, an encrypted
//! one, an image-only one) and DOCX packages, so loader tests need no files from outside.

use std::io::{Cursor, Write};

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, Stream, dictionary};

/// One run of text on a PDF page, at `(x, y)` points from the bottom left, in Helvetica.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfText {
    /// Left edge, in points.
    pub x: f32,
    /// Baseline, in points from the bottom.
    pub y: f32,
    /// Font size, in points.
    pub size: f32,
    /// The text (Latin-1 characters: the standard fonts' WinAnsi encoding).
    pub text: String,
}

/// Lines set from `top` downwards at `x`, 14 points apart, in 11-point type.
pub fn pdf_lines(x: f32, top: f32, lines: &[&str]) -> Vec<PdfText> {
    lines.iter().enumerate().map(|(i, l)| PdfText { x, y: top - 14.0 * i as f32, size: 11.0, text: (*l).to_owned() }).collect()
}

/// WinAnsi bytes of `text` (Latin-1 maps one to one; anything else becomes `?`).
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

fn page_tree(doc: &mut Document, contents: Vec<Vec<Operation>>, resources: Dictionary) -> lopdf::ObjectId {
    let pages_id = doc.new_object_id();
    let resources_id = doc.add_object(resources);
    let mut kids = Vec::new();
    for ops in contents {
        let bytes = Content { operations: ops }.encode().expect("encode a test page's content stream");
        let content_id = doc.add_object(Stream::new(dictionary! {}, bytes));
        kids.push(Object::Reference(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        })));
    }
    let count = kids.len() as i64;
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.trailer.set(
        "ID",
        Object::Array(vec![
            Object::string_literal(b"0123456789abcdef".to_vec()),
            Object::string_literal(b"0123456789abcdef".to_vec()),
        ]),
    );
    pages_id
}

fn text_document(title: Option<&str>, pages: &[Vec<PdfText>]) -> Document {
    let mut doc = Document::with_version("1.5");
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let contents = pages
        .iter()
        .map(|runs| {
            let mut ops = Vec::new();
            for r in runs {
                ops.push(Operation::new("BT", vec![]));
                ops.push(Operation::new("Tf", vec!["F1".into(), r.size.into()]));
                ops.push(Operation::new("Td", vec![r.x.into(), r.y.into()]));
                ops.push(Operation::new("Tj", vec![Object::string_literal(win_ansi(&r.text))]));
                ops.push(Operation::new("ET", vec![]));
            }
            ops
        })
        .collect();
    page_tree(&mut doc, contents, dictionary! { "Font" => dictionary! { "F1" => font } });
    if let Some(t) = title {
        let info = doc.add_object(dictionary! { "Title" => lopdf::text_string(t) });
        doc.trailer.set("Info", info);
    }
    doc
}

fn save(mut doc: Document) -> Vec<u8> {
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("write a test PDF");
    out
}

/// A PDF whose pages hold the given text runs, in content-stream order.
pub fn pdf(title: Option<&str>, pages: &[Vec<PdfText>]) -> Vec<u8> {
    save(text_document(title, pages))
}

/// A one-page PDF that opens only with `user_password` (RC4, 128-bit key).
pub fn encrypted_pdf(user_password: &str) -> Vec<u8> {
    let mut doc = text_document(None, &[pdf_lines(72.0, 720.0, &["Confidential salary tables of 2026."])]);
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password,
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).expect("an RC4 encryption state for a test PDF");
    doc.encrypt(&state).expect("encrypt a test PDF");
    save(doc)
}

/// A PDF of `pages` scanned pages: each is an image, with no text layer.
pub fn image_only_pdf(pages: usize) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let image = doc.add_object(Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => 2, "Height" => 2,
        "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8 },
        vec![0, 255, 255, 0],
    ));
    let draw = || {
        vec![
            Operation::new("q", vec![]),
            Operation::new("cm", vec![400.into(), 0.into(), 0.into(), 600.into(), 100.into(), 100.into()]),
            Operation::new("Do", vec!["Im1".into()]),
            Operation::new("Q", vec![]),
        ]
    };
    page_tree(&mut doc, (0..pages).map(|_| draw()).collect(), dictionary! { "XObject" => dictionary! { "Im1" => image } });
    save(doc)
}

/// A block of a generated DOCX body.
#[derive(Debug, Clone, PartialEq)]
pub enum DocxBlock {
    /// A heading paragraph in the built-in `Heading N` style.
    Heading(usize, String),
    /// A body paragraph.
    Paragraph(String),
    /// A table, row by row.
    Table(Vec<Vec<String>>),
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn paragraph(style: Option<&str>, text: &str) -> String {
    let ppr = style.map(|s| format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>")).unwrap_or_default();
    format!("<w:p>{ppr}<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>", xml_escape(text))
}

/// A DOCX package (what Word writes, reduced to the parts a reader needs) with `title` in its
/// core properties and `blocks` as its body.
pub fn docx(title: &str, blocks: &[DocxBlock]) -> Vec<u8> {
    const W: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
    let body: String = blocks
        .iter()
        .map(|b| match b {
            DocxBlock::Heading(level, text) => paragraph(Some(&format!("Heading{level}")), text),
            DocxBlock::Paragraph(text) => paragraph(None, text),
            DocxBlock::Table(rows) => {
                let rows: String = rows
                    .iter()
                    .map(|r| {
                        let cells: String = r.iter().map(|c| format!("<w:tc>{}</w:tc>", paragraph(None, c))).collect();
                        format!("<w:tr>{cells}</w:tr>")
                    })
                    .collect();
                format!("<w:tbl>{rows}</w:tbl>")
            }
        })
        .collect();
    let styles: String = (1..=3)
        .map(|n| format!("<w:style w:type=\"paragraph\" w:styleId=\"Heading{n}\"><w:name w:val=\"heading {n}\"/></w:style>"))
        .collect();
    let parts = [
        (
            "[Content_Types].xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
             <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
             <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
             <Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>"
                .to_owned(),
        ),
        (
            "_rels/.rels",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
             <Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>"
                .to_owned(),
        ),
        ("word/document.xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"{W}\"><w:body>{body}</w:body></w:document>")),
        ("word/styles.xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:styles xmlns:w=\"{W}\">{styles}</w:styles>")),
        (
            "docProps/core.xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
                 xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:title>{}</dc:title></cp:coreProperties>",
                xml_escape(title)
            ),
        ),
    ];
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in parts {
        zip.start_file(name, options).expect("start a DOCX part");
        zip.write_all(content.as_bytes()).expect("write a DOCX part");
    }
    zip.finish().map(Cursor::into_inner).expect("finish a test DOCX")
}
