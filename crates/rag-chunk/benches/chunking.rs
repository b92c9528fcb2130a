//! Chunking and token-counting throughput (MB/s) on the SciFact corpus, beside Python tiktoken
//! on the same text in the same run (when the venv is set up).
//!
//! `cargo bench -p rag-chunk --bench chunking`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use rag_chunk::{MarkdownChunker, SemanticChunker, TokenChunker, TokenCounter};
use rag_core::Document;

fn corpus() -> Vec<Document> {
    let path = std::env::var_os("RAG_SCIFACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact")))
        .join("corpus.jsonl");
    let file = std::fs::File::open(&path).expect("SciFact corpus (set RAG_SCIFACT)");
    std::io::BufReader::new(file)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            let text = format!("{}\n\n{}", v["title"].as_str().unwrap_or(""), v["text"].as_str().unwrap_or(""));
            Document::new(v["_id"].as_str().unwrap(), text)
        })
        .collect()
}

fn measure(name: &str, bytes: usize, mut f: impl FnMut() -> usize) -> f64 {
    // One warm-up, then the best of 3 (the machine has 2 cores shared with everything else).
    f();
    let mut best = f64::INFINITY;
    let mut out = 0;
    for _ in 0..3 {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mbs = bytes as f64 / 1e6 / best;
    println!("{name:<44} {mbs:>8.2} MB/s  ({out} items, {best:.3} s)");
    mbs
}

fn main() {
    let docs = corpus();
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    println!("SciFact corpus: {} documents, {:.2} MB", docs.len(), bytes as f64 / 1e6);
    let tc = TokenCounter::cl100k().unwrap();
    let counting = measure("token counting (bpe-openai cl100k, count)", bytes, || docs.iter().map(|d| tc.count(&d.text)).sum());
    let fast = bpe_openai::cl100k_base();
    measure("pre-tokenizer pieces only (bpe-openai)", bytes, || docs.iter().map(|d| fast.split(&d.text).count()).sum());
    measure("token ids (tiktoken-rs cl100k, encode)", bytes, || docs.iter().map(|d| tc.encode_reference(&d.text).len()).sum());
    measure("token ids (bpe-openai cl100k, encode)", bytes, || docs.iter().map(|d| tc.encode(&d.text).len()).sum());
    let token = TokenChunker::new(tc.clone(), 256, 32).unwrap();
    let windows = measure("TokenChunker(256, overlap 32)", bytes, || docs.iter().map(|d| token.chunk_document(d).len()).sum());
    let semantic = SemanticChunker::new(tc.clone(), 64, 256).unwrap();
    measure("SemanticChunker(64..256)", bytes, || docs.iter().map(|d| semantic.chunk_document(d).len()).sum());
    let md = MarkdownChunker::new(tc.clone(), 64, 256).unwrap();
    measure("MarkdownChunker(64..256)", bytes, || docs.iter().map(|d| md.chunk_document(d).len()).sum());

    // Python tiktoken on the same text, same run. tiktoken's own download fails offline, so the
    // encoding is built from the cl100k ranks that tiktoken-rs embeds.
    let venv_python = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python"));
    if !venv_python.exists() {
        println!("python tiktoken: skipped (no .venv: run `make setup`)");
        return;
    }
    let dir = std::env::temp_dir().join("rag-chunk-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let texts = dir.join("texts.json");
    std::fs::write(&texts, serde_json::to_string(&docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>()).unwrap()).unwrap();
    let script = format!(
        r#"
import json, time, base64, tiktoken
ranks = {{}}
for line in open({ranks:?}, 'rb').read().splitlines():
    if line:
        tok, rank = line.split()
        ranks[base64.b64decode(tok)] = int(rank)
pat = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
enc = tiktoken.Encoding('cl100k_base', pat_str=pat, mergeable_ranks=ranks, special_tokens={{}})
texts = json.load(open({texts:?}))
n = sum(len(t.encode()) for t in texts)
best = 1e9
for _ in range(4):
    t = time.perf_counter(); c = sum(len(enc.encode_ordinary(x)) for x in texts); best = min(best, time.perf_counter() - t)
label = 'python tiktoken (cl100k, encode_ordinary)'
print(f"{{label:<44}} {{n / 1e6 / best:>8.2f}} MB/s  ({{c}} items, {{best:.3f}} s)")
print(f"RATIO {{n / 1e6 / best}}")
"#,
        ranks = write_ranks(&dir).display().to_string(),
        texts = texts.display().to_string()
    );
    let out = std::process::Command::new(&venv_python).arg("-c").arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python: Option<f64> = stdout.lines().find_map(|l| l.strip_prefix("RATIO ")?.trim().parse().ok());
    print!("{}", stdout.lines().filter(|l| !l.starts_with("RATIO ")).map(|l| format!("{l}\n")).collect::<String>());
    if let Some(py) = python {
        println!("ratio to python tiktoken: counting {:.2}x, token windows (TokenChunker) {:.2}x", counting / py, windows / py);
    }
    if !out.status.success() {
        println!("python tiktoken failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Writes the cl100k ranks in tiktoken's file format (base64 token, rank) from tiktoken-rs's tables.
fn write_ranks(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("cl100k_base.tiktoken");
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    let mut out = String::new();
    for rank in 0u32.. {
        let Ok(bytes) = bpe.decode_bytes(&[rank]) else { break };
        out.push_str(&base64_encode(&bytes));
        out.push(' ');
        out.push_str(&rank.to_string());
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    path
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}
