//! PDF, HTML and DOCX files through `FileSource` into a pipeline (keyword retrieval, no Python):
//! exact pages on chunks, no running header indexed, heading paths, the expected text found by
//! a query, bad files reported and skipped with nothing stored lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use rag::chunk::{MarkdownChunker, SemanticChunker, TokenCounter};
use rag::core::MetadataValue;
use rag::{FileSource, IngestOptions, Pages, QueryOptions, RagPipeline, RetrievalMode};
use rag_testkit::documents::{DocxBlock, PdfText, docx, encrypted_pdf, image_only_pdf, pdf, pdf_lines};

const HEADER: &str = "Annual Report of the Northern Observatory";

/// A 4-page report with a running header and page-numbered footer; each page has its own fact.
fn report_pdf() -> Vec<u8> {
    let facts = [
        "The observatory was founded in 1921 on a granite ridge.",
        "Its main telescope has a mirror of 2.4 metres made of Zerodur.",
        "In 2025 the team catalogued 312 variable stars in Cygnus.",
        "The caf\u{e9} at the visitor centre serves cr\u{e8}me br\u{fb}l\u{e9}e on Sundays.",
    ];
    let pages: Vec<Vec<PdfText>> = facts
        .iter()
        .enumerate()
        .map(|(i, fact)| {
            let mut runs = pdf_lines(72.0, 760.0, &[HEADER]);
            runs.extend(pdf_lines(72.0, 700.0, &[fact, "Further details follow in the appendix."]));
            runs.extend(pdf_lines(290.0, 36.0, &[&format!("{}", i + 1)]));
            runs
        })
        .collect();
    pdf(Some("Observatory report"), &pages)
}

fn folder(dir: &Path) {
    std::fs::write(dir.join("report.pdf"), report_pdf()).unwrap();
    std::fs::write(
        dir.join("page.html"),
        "<html><head><title>Glacier facts</title><script>track()</script></head><body><nav>Home | Blog</nav>\
         <article><h1>Glaciers</h1><p>Glaciers move a few metres per day.</p><h2>Retreat</h2>\
         <p>The Rhone glacier has lost 40 percent of its volume.</p></article></body></html>",
    )
    .unwrap();
    std::fs::write(
        dir.join("guide.docx"),
        docx(
            "Beekeeping guide",
            &[
                DocxBlock::Heading(1, "Bees".into()),
                DocxBlock::Paragraph("A healthy hive holds about 50000 worker bees in summer.".into()),
                DocxBlock::Heading(2, "Equipment".into()),
                DocxBlock::Table(vec![vec!["Item".into(), "Cost".into()], vec!["Smoker".into(), "35 euros".into()]]),
            ],
        ),
    )
    .unwrap();
    std::fs::write(dir.join("notes.md"), "# Tides\n\nSpring tides follow the full moon.").unwrap();
    std::fs::write(dir.join("plain.txt"), "Basalt forms from cooling lava.").unwrap();
}

fn pipeline(data: &Path) -> RagPipeline {
    RagPipeline::builder()
        .data_dir(data.to_owned())
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
        .markdown_chunker(Arc::new(MarkdownChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
        .mode(RetrievalMode::Bm25)
        .build()
        .unwrap()
}

#[tokio::test]
async fn mixed_folder_pages_headings_and_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    folder(&docs);
    let p = pipeline(&tmp.path().join("data"));
    let report = p.ingest(FileSource::new([&docs]), IngestOptions::default()).await.unwrap();
    assert_eq!((report.documents, report.skipped.len()), (5, 0), "{report:?}");

    let search = |q: &'static str| {
        let p = &p;
        async move { p.retrieve(q, &QueryOptions::new().k(3)).await.unwrap() }
    };
    // Each page's fact is found, on exactly its page.
    for (question, page) in [
        ("granite ridge founded", 1),
        ("Zerodur mirror telescope", 2),
        ("variable stars Cygnus", 3),
        ("cr\u{e8}me br\u{fb}l\u{e9}e Sundays", 4),
    ] {
        let r = search(question).await;
        let top = &r.ranked()[0];
        assert!(top.doc_id.ends_with("report.pdf"), "{question}: {top:?}");
        assert_eq!(top.pages, Some(Pages { first: page, last: page }), "{question}: {}", top.text);
        assert_eq!(r.hits[0].chunk.metadata.get("format"), Some(&MetadataValue::Str("pdf".into())));
    }
    // The running header is not content: no chunk holds it.
    let r = search("Annual Report Northern Observatory").await;
    assert!(r.hits.iter().all(|h| !h.chunk.text.contains(HEADER)), "header indexed: {:?}", r.ranked());
    // HTML and DOCX keep their heading paths and titles; navigation and scripts are not indexed.
    let r = search("Rhone glacier volume").await;
    let c = &r.hits[0].chunk;
    assert_eq!(c.metadata.get("heading_path"), Some(&MetadataValue::StrList(vec!["Glaciers".into(), "Retreat".into()])));
    assert_eq!(c.metadata.get("title"), Some(&MetadataValue::Str("Glacier facts".into())));
    assert!(search("track Home Blog").await.hits.iter().all(|h| !h.chunk.text.contains("Blog")));
    let r = search("Smoker cost euros").await;
    assert!(r.hits[0].chunk.text.contains("Smoker | 35 euros"), "{}", r.hits[0].chunk.text);
    assert_eq!(
        r.hits[0].chunk.metadata.get("heading_path"),
        Some(&MetadataValue::StrList(vec!["Bees".into(), "Equipment".into()]))
    );

    // Bad files beside good ones: reported with their reason and skipped; nothing stored is lost.
    let before = p.stats().await.unwrap();
    std::fs::write(docs.join("locked.pdf"), encrypted_pdf("secret")).unwrap();
    std::fs::write(docs.join("scan.pdf"), image_only_pdf(2)).unwrap();
    let mut broken = report_pdf();
    broken.truncate(400);
    std::fs::write(docs.join("broken.pdf"), broken).unwrap();
    std::fs::write(docs.join("photo.txt"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    std::fs::write(docs.join("blob"), [0u8, 159, 146, 150, 7, 0]).unwrap();
    let report = p.ingest(FileSource::new([&docs]), IngestOptions::new().prune(true)).await.unwrap();
    let reason = |name: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.path.ends_with(name))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{name} not reported: {report:?}"))
    };
    assert!(reason("locked.pdf").contains("encrypted PDF"));
    assert!(reason("scan.pdf").contains("no text layer; OCR is not supported"));
    assert!(reason("broken.pdf").contains("corrupt or unreadable PDF"));
    assert!(reason("photo.txt").contains("PNG image"));
    assert!(reason("blob").contains("unknown binary"));
    assert_eq!((report.documents, report.unchanged, report.removed), (5, 5, 0), "{report:?}");
    let after = p.stats().await.unwrap();
    assert_eq!((after.documents, after.chunks), (before.documents, before.chunks));
    assert_eq!(search("granite ridge founded").await.ranked()[0].pages, Some(Pages { first: 1, last: 1 }));
}
