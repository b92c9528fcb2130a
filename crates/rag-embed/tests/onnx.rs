//! The ONNX Runtime embedder against the torch one it replaces: the same vectors (fp32), and
//! close ones (int8), on 100 SciFact passages and 100 queries. Needs `make setup` (the venv and
//! the ONNX export); fails, never skips, without them.
#![cfg(all(feature = "onnx", feature = "sentence-transformers"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;

use rag_core::Embedder;
use rag_embed::{OnnxEmbedder, OnnxPrecision, SentenceTransformerEmbedder};

fn lines(file: &str, n: usize, f: impl Fn(&serde_json::Value) -> String) -> Vec<String> {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact")).join(file);
    let reader = std::io::BufReader::new(std::fs::File::open(&path).expect("SciFact at ../shared/datasets/scifact"));
    reader.lines().take(n).map(|l| f(&serde_json::from_str(&l.unwrap()).unwrap())).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_vectors_match_torch() {
    let mut texts = lines("corpus.jsonl", 100, |v| format!("{}\n{}", v["title"].as_str().unwrap(), v["text"].as_str().unwrap()));
    texts.extend(lines("queries.jsonl", 100, |v| v["text"].as_str().unwrap().to_owned()));
    texts.push("x".into());
    let torch = SentenceTransformerEmbedder::builder().build().await.unwrap();
    let reference = torch.embed(texts.clone()).await.unwrap();
    let fp32 = OnnxEmbedder::builder().build().await.unwrap();
    assert_eq!((fp32.dimension(), fp32.max_input_tokens()), (384, Some(256)));
    let got = fp32.embed(texts.clone()).await.unwrap();
    assert_eq!(got.len(), texts.len());
    let worst = reference.iter().zip(&got).map(|(a, b)| cosine(a, b)).fold(f32::MAX, f32::min);
    assert!(worst >= 0.999, "fp32 ONNX vs torch: minimum cosine {worst}");
    // The order of the inputs is kept whatever session embeds each.
    let one = fp32.embed(vec![texts[7].clone()]).await.unwrap();
    assert!(cosine(&one[0], &got[7]) > 0.9999);
    let int8 = OnnxEmbedder::builder().precision(OnnxPrecision::Int8).build().await.unwrap();
    let q = int8.embed(texts.clone()).await.unwrap();
    let worst8 = reference.iter().zip(&q).map(|(a, b)| cosine(a, b)).fold(f32::MAX, f32::min);
    let mean8 = reference.iter().zip(&q).map(|(a, b)| cosine(a, b)).sum::<f32>() / texts.len() as f32;
    // Quantisation moves vectors (mean cosine ~0.95 here); its retrieval quality is measured in the README.
    assert!(worst8 >= 0.85 && mean8 >= 0.9, "int8 ONNX vs torch: minimum cosine {worst8}, mean {mean8}");
    println!("fp32 min cosine {worst:.5}; int8 min {worst8:.4}, mean {mean8:.4}");
}

/// The model id keys the embedding cache: an export in another directory (another model, as
/// far as the embedder can tell) must not share MiniLM's id.
#[tokio::test]
async fn an_export_elsewhere_gets_its_own_model_id() {
    let default = OnnxEmbedder::builder().build().await.unwrap();
    assert_eq!(default.model_id(), "sentence-transformers/all-MiniLM-L6-v2 (onnx fp32)");
    let source = rag_embed::default_model_dir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let other = OnnxEmbedder::builder().model_dir(copy.path()).build().await.unwrap();
    assert_ne!(other.model_id(), default.model_id());
    assert!(other.model_id().contains(&copy.path().display().to_string()), "{}", other.model_id());
}

#[tokio::test]
async fn a_missing_export_is_named() {
    let err = OnnxEmbedder::builder().model_dir("/nonexistent/onnx").build().await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/onnx/model.onnx") && err.contains("make setup"), "{err}");
}
