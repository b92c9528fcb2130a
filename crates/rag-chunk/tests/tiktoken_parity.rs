//! The fast exact BPE (bpe-openai) gives tiktoken's tokens on the whole SciFact corpus: the
//! same ids, hence the same counts, for cl100k and o200k.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::BufRead;
use std::path::PathBuf;

use rag_chunk::{Encoding, TokenCounter};

#[test]
fn counts_equal_tiktoken_on_all_of_scifact() {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact/corpus.jsonl"));
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (the SciFact dataset sits in ../shared)", path.display()));
    let texts: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            format!("{}\n\n{}", v["title"].as_str().unwrap_or(""), v["text"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(texts.len(), 5183);
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let tc = TokenCounter::new(enc).unwrap();
        let mut tokens = 0;
        for (i, t) in texts.iter().enumerate() {
            let reference = tc.encode_reference(t);
            assert_eq!(tc.encode(t), reference, "{enc:?}: document {i} tokenises differently");
            assert_eq!(tc.count(t), reference.len(), "{enc:?}: document {i} counts differently");
            tokens += reference.len();
        }
        assert!(tokens > 1_000_000, "{enc:?}: {tokens} tokens");
    }
}
