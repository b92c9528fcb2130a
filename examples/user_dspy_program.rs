//! A user's DSPy program (`examples/programs/claim_checker.py`) loaded by path and run with the
//! Rust hybrid retriever injected as its retrieval model.
//!
//! Offline: `cargo run --example user_dspy_program` (DummyLM verdict; retrieval is real).
//! With an LM: set `RAG_LM` (and `RAG_LM_API_BASE`).

mod common;

use std::collections::BTreeMap;

use rag::dspy::{DspyProgram, LmConfig};

#[tokio::main]
async fn main() -> rag::Result<()> {
    let pipeline = common::scifact_pipeline().await?;
    let claim = std::env::args().nth(1).unwrap_or_else(|| "Vitamin D supplementation reduces fractures in older adults.".into());
    let lm = LmConfig::from_env().unwrap_or_else(|| {
        eprintln!("RAG_LM is not set: a DummyLM gives a scripted verdict; the evidence is retrieved for real");
        LmConfig::dummy([[("verdict", "NOT_ENOUGH_INFO"), ("rationale", "Scripted by DummyLM: set RAG_LM for a real verdict.")]])
    });
    let program = DspyProgram::from_file("examples/programs/claim_checker.py", "ClaimChecker")?
        .with_args(serde_json::json!({"k": 3}))
        .with_lm(lm)
        .with_retriever(common::hybrid(&pipeline)?, 3)
        .load()
        .await?;
    let out = program.run(BTreeMap::from([("claim".to_owned(), claim.clone())])).await?;
    println!("claim:     {claim}\nverdict:   {}\nrationale: {}\n", out["verdict"], out["rationale"]);
    for (i, e) in out["evidence"].as_array().into_iter().flatten().enumerate() {
        println!("evidence [{}]: {}", i + 1, e.as_str().unwrap_or("").chars().take(140).collect::<String>().replace('\n', " "));
    }
    println!("\nthe Rust retriever was called with: {:?}", program.retriever_calls());
    Ok(())
}
