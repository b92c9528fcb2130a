//! Loaders against documents the tests generate: exact pages, no headers, hyphenation,
//! two columns, unicode, tables; encrypted, image-only and corrupt files refused with a reason.

use rag_loaders::{FileFormat, LoadError, detect, load};
use rag_testkit::documents::{DocxBlock, PdfText, docx, encrypted_pdf, image_only_pdf, pdf, pdf_lines};

fn page(n: usize, body: &[&str]) -> Vec<PdfText> {
    let mut runs = pdf_lines(72.0, 750.0, &["Quarterly Report of ACME Corporation"]);
    runs.extend(pdf_lines(72.0, 700.0, body));
    runs.extend(pdf_lines(280.0, 40.0, &[&format!("Page {n} of 4")]));
    runs
}

fn report() -> Vec<u8> {
    let two_columns = {
        let mut runs = pdf_lines(72.0, 700.0, &["Left column starts here and", "continues down the left side."]);
        runs.extend(pdf_lines(320.0, 700.0, &["Right column comes after", "the left one in reading order."]));
        runs
    };
    let pages = vec![
        page(1, &["Introduction to the caf\u{e9} market in Z\u{fc}rich.", "The espresso trade grew quickly."]),
        page(2, &["Our treat-", "ment of the data was careful.", "Methods are described below."]),
        {
            let mut p = page(3, &[]);
            p.extend(two_columns);
            p
        },
        page(4, &["Conclusion: the observatory on Mount Kilimanjaro reported snow."]),
    ];
    pdf(Some("ACME Quarterly"), &pages)
}

#[test]
fn pdf_pages_in_order_without_running_headers() {
    let bytes = report();
    assert_eq!(detect(std::path::Path::new("report.bin"), &bytes), Ok(FileFormat::Pdf));
    let got = load(bytes.to_vec(), FileFormat::Pdf).unwrap();
    assert_eq!(got.title.as_deref(), Some("ACME Quarterly"));
    assert_eq!(got.page_starts.len(), 4);
    let page_text = |i: usize| {
        let end = got.page_starts.get(i + 1).copied().unwrap_or(got.text.len());
        got.text[got.page_starts[i]..end].trim().to_owned()
    };
    assert!(page_text(0).contains("caf\u{e9} market in Z\u{fc}rich"), "{}", page_text(0));
    assert!(page_text(1).contains("treatment of the data"), "hyphenation not repaired: {}", page_text(1));
    let p3 = page_text(2);
    let (left, right) = (p3.find("Left column starts").unwrap(), p3.find("Right column comes").unwrap());
    assert!(left < right && p3.find("left side").unwrap() < right, "columns out of order: {p3}");
    assert!(page_text(3).contains("Kilimanjaro"));
    assert!(!got.text.contains("Quarterly Report of ACME"), "running header indexed: {}", got.text);
    assert!(!got.text.contains(" of 4"), "page footer indexed: {:?}", got.text);
}

#[test]
fn bad_pdfs_are_refused_with_their_reason() {
    assert_eq!(load(encrypted_pdf("secret").to_vec(), FileFormat::Pdf), Err(LoadError::Encrypted));
    // An empty user password opens without asking: it is read.
    let open = load(encrypted_pdf("").to_vec(), FileFormat::Pdf).unwrap();
    assert!(open.text.contains("salary tables"), "{}", open.text);
    let scanned = load(image_only_pdf(3).to_vec(), FileFormat::Pdf).unwrap_err();
    assert_eq!(scanned, LoadError::NoTextLayer { pages: 3 });
    assert!(scanned.to_string().contains("no text layer; OCR is not supported"));
    let mut truncated = report();
    truncated.truncate(truncated.len() / 3);
    let err = load(truncated.to_vec(), FileFormat::Pdf).unwrap_err();
    assert!(matches!(err, LoadError::Corrupt { format: FileFormat::Pdf, .. }), "{err:?}");
    assert!(matches!(load(b"%PDF-1.4 garbage".to_vec(), FileFormat::Pdf), Err(LoadError::Corrupt { .. })));
}

#[test]
fn docx_headings_paragraphs_and_tables() {
    let bytes = docx(
        "Field guide",
        &[
            DocxBlock::Heading(1, "Birds".into()),
            DocxBlock::Paragraph("The \u{e9}meu & the kiwi cannot fly.".into()),
            DocxBlock::Heading(2, "Sizes".into()),
            DocxBlock::Table(vec![vec!["Bird".into(), "Height".into()], vec!["Emu".into(), "1.9 m".into()]]),
        ],
    );
    assert_eq!(detect(std::path::Path::new("guide"), &bytes), Ok(FileFormat::Docx));
    let got = load(bytes.to_vec(), FileFormat::Docx).unwrap();
    assert_eq!(got.title.as_deref(), Some("Field guide"));
    assert_eq!(got.text, "# Birds\n\nThe \u{e9}meu & the kiwi cannot fly.\n\n## Sizes\n\nBird | Height\nEmu | 1.9 m");
    assert_eq!(got.format, rag_core::TextFormat::Markdown);
}
