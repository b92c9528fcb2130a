//! `rag optimize`, `rag query --program` and `rag eval --answers`: the DSPy optimiser and the
//! answer-level evaluation, from flags to typed settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rag::assemble::{Needs, build_pipeline, lm_config};
use rag::config::RagConfig;
use rag::dspy::{CompiledProgram, LmConfig, Metric, MetricFn, OptimizeOptions, Optimizer, ProgramSpec};
use rag::eval::load_examples;
use rag::{FileSource, IngestOptions, PipelineRetriever, QueryOptions, RagError, RagPipeline, Result};

/// `rag optimize` flags.
#[derive(Args)]
pub struct OptimizeArgs {
    /// basic, multihop, or FILE.py:Class (a dspy.Module whose retrieval is dspy.Retrieve).
    #[arg(long, default_value = "basic")]
    program: String,
    /// Training examples: a JSONL file ({"question", "answer"?, "doc_ids"?} per line) or a BEIR
    /// dataset folder (its test queries, gold documents from the qrels; its corpus is ingested).
    #[arg(long)]
    trainset: PathBuf,
    /// Devset (same format); default: the trainset's examples after the first --train.
    #[arg(long)]
    devset: Option<PathBuf>,
    /// Training examples to use (default: half of the trainset when there is no devset, else all).
    #[arg(long)]
    train: Option<usize>,
    /// Devset examples to score on (default: all of them).
    #[arg(long)]
    dev: Option<usize>,
    /// bootstrap, random-search, labeled or mipro.
    #[arg(long, default_value = "bootstrap")]
    optimizer: Optimizer,
    /// em, f1, citation-recall or retrieval-recall (default: f1 when every example has an
    /// answer, else citation-recall).
    #[arg(long)]
    metric: Option<Metric>,
    /// A metric of your own instead: FILE.py:function, called as function(example, prediction,
    /// trace=None) -> float or bool (DSPy's convention; example.question / .answer / .doc_ids).
    #[arg(long, value_name = "FILE.py:FUNCTION")]
    metric_fn: Option<String>,
    /// Most demos per predictor.
    #[arg(long, default_value_t = 4)]
    max_demos: usize,
    /// Hops (multihop).
    #[arg(long, default_value_t = 2)]
    hops: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the compiled program goes (DSPy's JSON; the report beside it, .report.json).
    #[arg(long, default_value = "program.json")]
    out: PathBuf,
}

/// The pipeline with its LM, for DSPy programs (which need `generator.lm`).
async fn pipeline_and_lm(cfg: &RagConfig, what: &str) -> Result<(Arc<RagPipeline>, LmConfig)> {
    let lm = lm_config(cfg).await?.ok_or_else(|| {
        RagError::config(format!(
            "{what} needs a language model: set generator.lm (e.g. `--set generator.lm=local` after `make setup`, or RAG_LM)"
        ))
    })?;
    Ok((Arc::new(build_pipeline(cfg, Needs::All).await?), lm))
}

/// Ingests a BEIR folder's corpus (idempotent: unchanged documents are skipped).
async fn ingest_if_dataset(pipeline: &RagPipeline, path: &Path) -> Result<()> {
    let corpus = path.join("corpus.jsonl");
    if path.is_dir() && corpus.is_file() {
        pipeline.ingest(FileSource::new([corpus]), IngestOptions::default()).await?;
    }
    Ok(())
}

/// Runs `rag optimize` with `k` passages per retrieval (per hop for multihop); returns the report.
pub async fn optimize(cfg: &RagConfig, a: OptimizeArgs, opts: QueryOptions, k: usize) -> Result<rag::dspy::OptimizeReport> {
    let program = ProgramSpec::parse(&a.program, k, a.hops)?;
    let mut train = load_examples(&a.trainset)?;
    let mut dev = match &a.devset {
        Some(p) => load_examples(p)?,
        None => {
            let n = a.train.unwrap_or(train.len() / 2).min(train.len());
            train.split_off(n)
        }
    };
    if let Some(n) = a.train {
        train.truncate(n);
    }
    if let Some(n) = a.dev {
        dev.truncate(n);
    }
    let metric_fn = a.metric_fn.as_deref().map(MetricFn::parse).transpose()?;
    let metric = match (a.metric, &metric_fn) {
        (Some(m), _) => m,
        // With a metric of one's own the built-in one is only a label.
        (None, Some(_)) => Metric::auto(&train).unwrap_or(Metric::F1),
        (None, None) => Metric::auto(&train)?,
    };
    let (pipeline, lm) = pipeline_and_lm(cfg, "rag optimize").await?;
    ingest_if_dataset(&pipeline, &a.trainset).await?;
    let retriever = Arc::new(PipelineRetriever::new(pipeline, opts));
    let options = OptimizeOptions { optimizer: a.optimizer, metric, metric_fn, max_demos: a.max_demos, seed: a.seed };
    rag::dspy::optimize(program, retriever, lm, train, dev, options, &a.out).await
}

/// Answers `question` with a compiled program.
pub async fn query_program(cfg: &RagConfig, program: &Path, question: &str, opts: QueryOptions) -> Result<rag::dspy::RagAnswer> {
    let (pipeline, lm) = pipeline_and_lm(cfg, "rag query --program").await?;
    let retriever = Arc::new(PipelineRetriever::new(pipeline, opts));
    let compiled = CompiledProgram::load(program, retriever, lm).await?;
    // The generator's timeout bounds one LM call; a program makes several.
    let timeout = Duration::from_secs(cfg.generator.timeout_secs.max(1)) * compiled.spec().lm_calls();
    compiled.answer(question, timeout).await
}

/// Runs `rag eval --answers`: the dataset's corpus ingested, then every example answered by the
/// configured generator and scored.
pub async fn eval_answers(
    cfg: &RagConfig,
    dataset: &Path,
    answers: Option<PathBuf>,
    limit: Option<usize>,
    opts: QueryOptions,
    progress: Option<rag::pipeline::Progress>,
) -> Result<rag::eval::AnswerEvalReport> {
    let mut examples = load_examples(answers.as_deref().unwrap_or(dataset))?;
    if let Some(n) = limit {
        examples.truncate(n);
    }
    let pipeline = build_pipeline(cfg, Needs::All).await?;
    ingest_if_dataset(&pipeline, dataset).await?;
    rag::eval::run_answer_eval(&pipeline, &examples, &opts, progress).await
}
