//! Basic RAG: DSPy's `BasicRag` module (Retrieve, then ChainOfThought) whose retrieval is the Rust
//! hybrid retriever over SciFact.
//!
//! Offline: `cargo run --example basic_rag` (a scripted DummyLM answers; the retrieval is real).
//! With an LM: `RAG_LM=openai/gpt-4o-mini OPENAI_API_KEY=... cargo run --example basic_rag`, or
//! `RAG_LM=hosted_vllm/gemma RAG_LM_API_BASE=http://127.0.0.1:8080/v1 cargo run --example basic_rag`.

mod common;

use rag::dspy::{BasicRag, LmConfig};

#[tokio::main]
async fn main() -> rag::Result<()> {
    let pipeline = common::scifact_pipeline().await?;
    let question = std::env::args().nth(1).unwrap_or_else(|| "Does vitamin D deficiency increase fracture risk?".into());
    let lm = LmConfig::from_env().unwrap_or_else(|| {
        eprintln!("RAG_LM is not set: a DummyLM gives a scripted answer; the passages are retrieved for real");
        LmConfig::dummy([[
            ("reasoning", "Scripted (DummyLM): read passage [1]."),
            ("answer", "See passage [1] (set RAG_LM for a real answer)."),
        ]])
    });
    let rag = BasicRag::new(common::hybrid(&pipeline)?, lm, 4).await?;
    let out = rag.answer(&question).await?;
    println!("Q: {question}\nA: {}\n", out.answer);
    if let Some(r) = &out.reasoning {
        println!("Reasoning: {r}\n");
    }
    for (i, p) in out.passages.iter().enumerate() {
        println!(
            "[{}] {} ({}, score {:.3}): {}",
            i + 1,
            p.doc_id,
            p.id,
            p.score,
            p.text.chars().take(120).collect::<String>().replace('\n', " ")
        );
    }
    println!("\nExtractive answer from the Rust pipeline, for comparison:");
    println!("{}", pipeline.query(&question, &Default::default()).await?.answer);
    Ok(())
}
