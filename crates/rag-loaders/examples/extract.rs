//! Shows what the loaders make of your files: format, pages, title, speed, and the text.
//! `cargo run --release -p rag-loaders --example extract -- report.pdf page.html notes.docx`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
                continue;
            }
        };
        let start = std::time::Instant::now();
        let loaded = rag_loaders::detect(std::path::Path::new(&path), &bytes).and_then(|f| Ok((f, rag_loaders::load(bytes, f)?)));
        match loaded {
            Ok((format, x)) => {
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "{path}: {format}, {} page(s), {} bytes of text in {secs:.3} s, title {:?}\n{}\n",
                    x.page_starts.len().max(1),
                    x.text.len(),
                    x.title,
                    x.text
                );
            }
            Err(e) => {
                println!("{path}: skipped: {e}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
