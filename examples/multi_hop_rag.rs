//! Multi-hop RAG: DSPy's `MultiHopRag` (per hop: write a search query from the context so far,
//! retrieve through Rust, de-duplicate; then ChainOfThought).
//!
//! Offline: `cargo run --example multi_hop_rag` (a DummyLM scripts the hop queries; retrieval is
//! real). With an LM: set `RAG_LM` (and `RAG_LM_API_BASE` for a local server).

mod common;

use rag::dspy::{LmConfig, MultiHopRag};

#[tokio::main]
async fn main() -> rag::Result<()> {
    let pipeline = common::scifact_pipeline().await?;
    let question = "How does vitamin D status relate to bone fractures in the elderly?";
    let lm = LmConfig::from_env().unwrap_or_else(|| {
        eprintln!("RAG_LM is not set: a DummyLM scripts the hop queries and the answer; retrieval is real");
        LmConfig::dummy([
            vec![("reasoning", "Start with the exposure."), ("query", "vitamin D deficiency elderly")],
            vec![("reasoning", "Then the outcome."), ("query", "fracture risk bone mineral density")],
            vec![
                ("reasoning", "Combine both hops."),
                ("answer", "Scripted: see passages [1] and [3] (set RAG_LM for a real answer)."),
            ],
        ])
    });
    let rag = MultiHopRag::new(common::hybrid(&pipeline)?, lm, 2, 3).await?;
    let out = rag.answer(question).await?;
    println!("Q: {question}\nA: {}\n", out.answer);
    for (i, hop) in out.hops.iter().enumerate() {
        println!("hop {}: query {:?}", i + 1, hop.query);
        for p in &hop.passages {
            println!("    {} ({}, score {:.3})", p.doc_id, p.id, p.score);
        }
    }
    println!("{} distinct passages in the final context", out.passages.len());
    Ok(())
}
