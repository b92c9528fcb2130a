//! One function a subcommand: each reads its settings, forwards to a running `rag serve` where
//! one owns the data directory, or builds the pipeline, then prints through [`crate::output`].

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use rag::assemble::{Needs, build_pipeline};
use rag::config::CacheBackend;
use rag::core::GenerationEvent;
use rag::{FileSource, IngestOptions, QueryOptions, RagError, Result, RetrievalMode};

use crate::output::{print_answer, print_ingest, print_json, print_level, print_passages, print_scale, print_tune};
use crate::remote::RemoteServer;
use crate::{Global, RetrievalArgs, config, load, optimize, progress_bar};

/// `rag serve`.
pub async fn serve(g: &Global, addr: Option<String>) -> Result<()> {
    let cfg = config(g)?;
    let on_listen: Arc<dyn Fn(std::net::SocketAddr) + Send + Sync> = Arc::new(|bound| {
        // One line on stdout, so scripts and tests learn the port when it was 0.
        println!("rag serve listening on http://{bound}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    });
    rag_server::serve(cfg, rag_server::ServeOptions { addr, on_listen: Some(on_listen) }).await
}

/// `rag load`.
pub async fn load_test(g: &Global, url: String, dataset: PathBuf, options: load::LoadOptions) -> Result<()> {
    let collection = config(g)?.collection;
    let r = load::run(&url, &collection, &dataset, &options).await?;
    if g.json {
        return print_json(&r);
    }
    println!(
        "{} {:?} requests at concurrency {} against {}: {:.1} QPS, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {} errors {:?}",
        r.requests, r.endpoint, r.concurrency, r.url, r.qps, r.p50_ms, r.p95_ms, r.p99_ms, r.errors, r.statuses
    );
    if let Some(s) = &r.stream {
        println!(
            "  streamed: {:.1} answers/min, {} tokens at {:.1} tokens/s, time to first token p50 {:.0} ms, p99 {:.0} ms",
            s.answers_per_min, s.tokens, s.tokens_per_s, s.ttft_p50_ms, s.ttft_p99_ms
        );
    }
    Ok(())
}

/// `rag mcp`.
pub async fn mcp(g: &Global) -> Result<()> {
    // stdout carries the protocol: everything else goes to stderr.
    let cfg = config(g)?;
    if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
        server.announce();
        return rag_server::mcp::forward_stdio(server.url(), server.token()).await;
    }
    rag_server::mcp::serve_stdio(rag_server::state(cfg)?).await
}

/// `rag ingest`.
pub async fn ingest(g: &Global, paths: Vec<PathBuf>, prune: bool) -> Result<()> {
    let cfg = config(g)?;
    if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
        server.announce();
        let report = server.ingest(&cfg.collection, &paths, prune).await?;
        return print_ingest(g.json, &report);
    }
    let pipeline = build_pipeline(&cfg, Needs::All).await?;
    let (progress, bar) = progress_bar(g.json, "ingesting");
    let mut options = IngestOptions::new().prune(prune);
    let abort_after = crash_test_abort_after();
    if progress.is_some() || abort_after.is_some() {
        options = options.progress(move |done, total| {
            if let Some(p) = &progress {
                p(done, total);
            }
            if abort_after.is_some_and(|n| done >= n) {
                std::process::abort();
            }
        });
    }
    let report = pipeline.ingest(FileSource::new(paths), options).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_ingest(g.json, &report)
}

/// `rag query`.
pub async fn query(g: &Global, question: String, retrieval: RetrievalArgs, stream: bool, program: Option<PathBuf>) -> Result<()> {
    let mut cfg = config(g)?;
    let (opts, needs) = retrieval.options(&mut cfg)?;
    if program.is_some() {
        RemoteServer::refuse(&cfg.data_dir, "rag query --program")?;
    } else if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
        server.announce();
        let body = retrieval.request(&question)?;
        if stream && !g.json {
            let result = server
                .query_stream(&cfg.collection, &body, |t| {
                    print!("{t}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                })
                .await?;
            println!();
            print_passages(&result.citations);
            return Ok(());
        }
        let result = server.query(&cfg.collection, &body).await?;
        return print_answer(g, &result);
    }
    if let Some(program) = program {
        let a = optimize::query_program(&cfg, &program, &question, opts).await?;
        if g.json {
            return print_json(&a);
        }
        println!("{}\n", a.answer);
        if let Some(r) = &a.reasoning {
            println!("Reasoning: {r}\n");
        }
        for (i, h) in a.hops.iter().enumerate() {
            println!("hop {}: {}", i + 1, h.query);
        }
        for (i, p) in a.passages.iter().enumerate() {
            let text: String = p.text.chars().take(100).collect();
            println!("[{}] {} ({}): {text}", i + 1, p.doc_id, p.id);
        }
        return Ok(());
    }
    let pipeline = build_pipeline(&cfg, needs).await?;
    if stream && !g.json {
        let (head, mut events) = pipeline.stream_query(&question, &opts).await?;
        let mut last = None;
        while let Some(ev) = events.next().await {
            match ev? {
                GenerationEvent::Token(t) => {
                    print!("{t}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                }
                GenerationEvent::Final(f) => last = Some(f),
            }
        }
        if let Some(f) = last {
            println!("\r{}", f.answer);
        }
        print_passages(&head.citations);
        return Ok(());
    }
    let result = pipeline.query(&question, &opts).await?;
    print_answer(g, &result)
}

/// `rag search`.
pub async fn search(g: &Global, query: String, retrieval: RetrievalArgs) -> Result<()> {
    let mut cfg = config(g)?;
    let (opts, needs) = retrieval.options(&mut cfg)?;
    if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
        server.announce();
        let found = server.search(&cfg.collection, &retrieval.request(&query)?).await?;
        if g.json {
            return print_json(&serde_json::json!({"hits": found.hits, "degraded": found.degraded}));
        }
        print_passages(&found.hits);
        for d in &found.degraded {
            println!("note: {d}");
        }
        return Ok(());
    }
    let pipeline = build_pipeline(&cfg, needs).await?;
    let found = pipeline.search(&query, &opts).await?;
    if g.json {
        return print_json(&found);
    }
    print_passages(&found.hits);
    for d in &found.degraded {
        println!("note: {d}");
    }
    Ok(())
}

/// `rag delete`.
pub async fn delete(g: &Global, doc_id: String) -> Result<()> {
    let cfg = config(g)?;
    if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
        server.announce();
        server.delete(&cfg.collection, &doc_id).await?;
    } else {
        let pipeline = build_pipeline(&cfg, Needs::All).await?;
        pipeline.delete_document(&doc_id).await.map_err(|e| match e {
            RagError::NotFound { what, hint: None } => {
                RagError::NotFound { what, hint: Some("`rag search QUESTION` shows the ids of stored documents".into()) }
            }
            e => e,
        })?;
    }
    if g.json {
        return print_json(&serde_json::json!({"deleted": doc_id}));
    }
    println!("deleted {doc_id}");
    Ok(())
}

/// What `rag eval` was asked for.
pub struct EvalRequest {
    /// The BEIR folder.
    pub dataset: PathBuf,
    /// The mode (default hybrid; with answers, the configured one).
    pub mode: Option<RetrievalMode>,
    /// Rerank with the configured cross-encoder.
    pub rerank: bool,
    /// The first N queries only.
    pub limit: Option<usize>,
    /// Score answers (from FILE, else the dataset's test queries).
    pub answers: Option<Option<PathBuf>>,
    /// Also write the HTML report here.
    pub html: Option<PathBuf>,
    /// Other judgments than the dataset's qrels/test.tsv.
    pub qrels: Option<PathBuf>,
}

/// `rag eval`.
pub async fn eval(g: &Global, req: EvalRequest) -> Result<()> {
    let EvalRequest { dataset, mode, rerank, limit, answers, html, qrels } = req;
    let mut cfg = dataset_config(g, &dataset, "rag eval")?;
    if rerank {
        cfg.rerank.enabled = true;
    }
    if let Some(file) = answers {
        let mut opts = QueryOptions::new();
        if let Some(m) = mode {
            opts = opts.mode(m);
        }
        let (progress, bar) = progress_bar(g.json, "answers");
        let r = optimize::eval_answers(&cfg, &dataset, file, limit, opts, progress).await?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if g.json {
            return print_json(&r);
        }
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.4}"));
        println!(
            "{} answers by {}: EM {}  F1 {}  citation precision {}  recall {}  ({} degraded, {:.1} s)",
            r.examples,
            r.generator,
            show(r.exact_match),
            show(r.f1),
            show(r.citation_precision),
            show(r.citation_recall),
            r.degraded,
            r.seconds
        );
        return Ok(());
    }
    let mode = mode.unwrap_or(RetrievalMode::Hybrid);
    // The corpus is ingested with both sides, so every mode evaluates the same collection
    // (keyword-only without a store).
    if cfg.store.backend != rag::config::StoreBackend::None {
        cfg.retrieval.mode = RetrievalMode::Hybrid;
    }
    let pipeline = build_pipeline(&cfg, Needs::All).await?;
    let (progress, bar) = progress_bar(g.json, "eval");
    let data = rag::eval::BeirDataset::load_with_qrels(&dataset, qrels.as_deref())?;
    let report = rag::eval::run_eval_on(&pipeline, &dataset, &data, mode, rerank, limit, progress).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(path) = &html {
        crate::report::write_eval_report(&report, &dataset, path)?;
        if !g.json {
            println!("report: {}", path.display());
        }
    }
    if g.json {
        return print_json(&report);
    }
    println!(
        "{}{}: nDCG@10 {:.4} (half A {:.4}, half B {:.4})  Recall@100 {:.4}  MRR@10 {:.4}  ({} queries, {:.1} s)",
        report.mode,
        if report.rerank { " + rerank" } else { "" },
        report.ndcg_at_10,
        report.ndcg_at_10_half_a,
        report.ndcg_at_10_half_b,
        report.recall_at_100,
        report.mrr_at_10,
        report.queries,
        report.query_seconds
    );
    Ok(())
}

/// The configuration a command over a BEIR dataset runs on (`rag eval`, `rag tune`): refused
/// while a `rag serve` holds the data directory; the collection is named after the dataset's
/// folder unless `--collection` / `RAG_COLLECTION` names one, or the folder has no corpus (then
/// it is the configured collection).
fn dataset_config(g: &Global, dataset: &std::path::Path, command: &str) -> Result<rag::RagConfig> {
    let mut cfg = config(g)?;
    RemoteServer::refuse(&cfg.data_dir, command)?;
    // A folder without a corpus (judgments from `rag feedback export`) scores the configured
    // collection; one with a corpus gets a collection of its own.
    let has_corpus = dataset.join("corpus.jsonl").is_file();
    if has_corpus && g.collection.is_none() && std::env::var_os("RAG_COLLECTION").is_none() {
        cfg.collection = dataset.file_name().map_or("eval".into(), |n| n.to_string_lossy().into_owned());
    }
    Ok(cfg)
}

/// What `rag tune` was asked for.
pub struct TuneRequest {
    /// The BEIR folder.
    pub dataset: PathBuf,
    /// Seed of the split and the bootstrap.
    pub seed: u64,
    /// The first N judged queries only.
    pub limit: Option<usize>,
    /// Write the chosen keys into the configuration file.
    pub apply: bool,
    /// Draw the Pareto plot into this folder.
    pub plot: Option<PathBuf>,
    /// Other judgments than the dataset's qrels/test.tsv.
    pub qrels: Option<PathBuf>,
    /// Also write the HTML page here.
    pub html: Option<PathBuf>,
    /// Compare chunkings too, each ingested into a collection of its own.
    pub reingest: bool,
    /// The chunk sizes `--reingest` tries (default: `rag::tune::DEFAULT_CHUNK_SIZES`).
    pub chunk_sizes: Option<Vec<usize>>,
}

/// Smallest and largest chunk size `--chunk-sizes` accepts (tokens).
const CHUNK_SIZES: (usize, usize) = (8, 8192);

/// `rag tune`.
pub async fn tune(g: &Global, req: TuneRequest) -> Result<()> {
    let TuneRequest { dataset, seed, limit, apply, plot, qrels, html, reingest, chunk_sizes } = req;
    let sizes = chunk_sizes.unwrap_or_else(|| rag::tune::DEFAULT_CHUNK_SIZES.to_vec());
    if let Some(bad) = sizes.iter().find(|s| !(CHUNK_SIZES.0..=CHUNK_SIZES.1).contains(*s)) {
        return Err(RagError::invalid_input(
            "--chunk-sizes",
            format!("{bad} tokens: each size must be {} to {}", CHUNK_SIZES.0, CHUNK_SIZES.1),
        ));
    }
    let mut cfg = dataset_config(g, &dataset, "rag tune")?;
    let current = rag::tune::TunedSetting::from_config(&cfg);
    // Ingested with both sides (as rag eval), so every mode searches the same collection.
    if cfg.store.backend != rag::config::StoreBackend::None {
        cfg.retrieval.mode = RetrievalMode::Hybrid;
    }
    let data = rag::eval::BeirDataset::load_with_qrels(&dataset, qrels.as_deref())?;
    if reingest && !dataset.join("corpus.jsonl").is_file() {
        return Err(RagError::invalid_input(
            "--reingest",
            format!(
                "{} has no corpus.jsonl to chunk again: give a dataset with its corpus, or tune without --reingest",
                dataset.display()
            ),
        ));
    }
    let factory = rag::assemble::PipelineFactory::new(cfg.clone(), Needs::All)?;
    let chunkings =
        if reingest { rag::tune::chunking_space(&cfg.chunker, &sizes, factory.dense()) } else { vec![cfg.chunker.clone()] };
    let mut pipelines = Vec::with_capacity(chunkings.len());
    for (i, chunking) in chunkings.iter().enumerate() {
        // The configuration's chunking keeps the dataset's collection (what rag eval scores);
        // each other chunking gets one named after it, kept so a second run ingests nothing.
        let collection = if i == 0 { cfg.collection.clone() } else { format!("{}-{}", cfg.collection, chunking_slug(chunking)) };
        let pipeline = factory.pipeline_chunked(&collection, chunking).await?;
        let label = if reingest { format!("ingest {}", rag::tune::chunking_label(chunking)) } else { "ingest".into() };
        let (progress, bar) = progress_bar(g.json, label);
        rag::eval::ingest_corpus(&pipeline, &dataset, progress).await?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        pipelines.push(pipeline);
    }
    // The query precisions the queries are not embedded at now (ONNX: fp32 or int8), each
    // tried against the stored vectors.
    let mut query_embedders = Vec::new();
    for precision in [rag::embed::OnnxPrecision::Fp32, rag::embed::OnnxPrecision::Int8] {
        if precision == cfg.embedder.onnx.effective_query_precision() {
            continue;
        }
        // An export without this precision narrows the search; it does not stop it.
        match factory.onnx_query_embedder(precision).await {
            Ok(Some(e)) => query_embedders.push((precision, e)),
            Ok(None) => {}
            Err(e) => eprintln!("note: {precision} queries not searched: {e}"),
        }
    }
    let corpora: Vec<rag::tune::TuneCorpus<'_>> = pipelines
        .iter()
        .zip(&chunkings)
        .map(|(pipeline, c)| rag::tune::TuneCorpus { pipeline, chunking: Some(c), query_embedders: &query_embedders })
        .collect();
    let (progress, bar) = progress_bar(g.json, "settings");
    let options = rag::tune::TuneOptions { seed, limit };
    let report = rag::tune::tune_corpora(&corpora, &data, &current, &options, progress).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let changes = rag::tune::changed_keys(&current, &report.chosen.setting);
    let plots = match &plot {
        Some(dir) => crate::plot::pareto(&report, dir)?,
        None => Vec::new(),
    };
    if let Some(path) = &html {
        crate::report::write_tune_report(&report, &dataset, path)?;
    }
    let applied = if apply { Some(apply_tuned(g, &changes)?) } else { None };
    if g.json {
        return print_json(&serde_json::json!({ "report": report, "applied": applied, "plots": plots, "html": html }));
    }
    print_tune(&report, &changes, applied.as_ref());
    for p in plots.iter().chain(&html) {
        println!("written: {}", p.display());
    }
    Ok(())
}

/// A chunking as part of a collection name: its label with dashes (`semantic-64-512`,
/// `token-256-32`, `-unfitted`).
fn chunking_slug(c: &rag::config::ChunkerConfig) -> String {
    rag::tune::chunking_label(c).replace([' ', '/'], "-")
}

/// Writes `changes` into the configuration file and returns its path, or `None` when there
/// was nothing to change; the change is printed first (to stderr, so `--json` stays one object).
fn apply_tuned(g: &Global, changes: &std::collections::BTreeMap<&'static str, toml_edit::Value>) -> Result<Option<PathBuf>> {
    if changes.is_empty() {
        return Ok(None);
    }
    let path = g.config.clone().unwrap_or_else(|| PathBuf::from("rag.toml"));
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(RagError::io(&path, e)),
    };
    let new = rag::tune::apply_to_toml(&old, changes)?;
    eprintln!("--- {}\n+++ {} (rag tune --apply)", path.display(), path.display());
    let before: Vec<&str> = old.lines().collect();
    let after: Vec<&str> = new.lines().collect();
    for line in before.iter().filter(|l| !after.contains(l)) {
        eprintln!("-{line}");
    }
    for line in after.iter().filter(|l| !before.contains(l)) {
        eprintln!("+{line}");
    }
    // Checked before it is written: the file must still load.
    rag::RagConfig::from_toml(&new)?;
    std::fs::write(&path, new).map_err(|e| RagError::io(&path, e))?;
    Ok(Some(path))
}

/// `rag bench`.
pub async fn bench(g: &Global, dataset: PathBuf, docs: usize, queries: usize, concurrency: Vec<usize>, cold: bool) -> Result<()> {
    let mut cfg = bench_config(g, format!("bench-{docs}"))?;
    if cold {
        cfg.cache.backend = CacheBackend::None;
    }
    let pipeline = build_pipeline(&cfg, Needs::All).await?;
    let corpus = cfg.data_dir.join(format!("bench-corpus-{docs}.jsonl"));
    rag::bench::slice_corpus(&dataset, docs, &corpus)?;
    let data = rag::eval::BeirDataset::load(&dataset)?;
    // Each level gets its own `queries` questions (cached embeddings would flatter a level).
    let questions: Vec<String> = data.queries.values().cycle().take(queries * concurrency.len()).cloned().collect();
    let report = rag::bench::run_bench(&pipeline, &corpus, &questions, &concurrency).await?;
    if g.json {
        return print_json(&report);
    }
    if let Some(load) = report.model_load_seconds {
        println!("embedding model loaded in {load:.1} s (before the ingest clock starts)");
    }
    println!(
        "ingest: {} docs at {:.1} docs/s ({} embedded, {} cached)",
        report.documents, report.ingest_docs_per_s, report.ingest.embedded, report.ingest.cache_hits,
    );
    for level in &report.levels {
        print_level(level);
    }
    if let Some(ceiling) = report.model_ceiling_qps {
        println!("the embedding model alone, batches of 32: {ceiling:.1} queries/s");
        for level in &report.levels {
            println!("  concurrency {:>3} reaches {:.0}% of it", level.concurrency, 100.0 * level.qps / ceiling);
        }
    }
    if let Some(model) = report.model_cpu_ms_per_query {
        println!("CPU per query of the model alone: {model:.2} ms; everything else costs");
        for level in &report.levels {
            if let Some(cpu) = level.cpu_ms_per_query {
                // Queries answered from the embedding cache cost no model time.
                let embedded = match (level.embed_calls, level.mean_embed_batch) {
                    (Some(calls), Some(mean)) => calls as f64 * mean,
                    _ => level.queries as f64,
                };
                let model_share = model * embedded / level.queries.max(1) as f64;
                println!("  concurrency {:>3}: {:.2} ms a query", level.concurrency, cpu - model_share);
            }
        }
    }
    Ok(())
}

/// The configuration a benchmark runs on: `collection`, its local directory removed so the
/// run starts from nothing (refused while a `rag serve` holds the data directory).
fn bench_config(g: &Global, collection: String) -> Result<rag::RagConfig> {
    let mut cfg = config(g)?;
    RemoteServer::refuse(&cfg.data_dir, "rag bench")?;
    cfg.collection = collection;
    let dir = cfg.collection_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| RagError::io(&dir, e))?;
    }
    Ok(cfg)
}

/// `rag bench --scale N`: builds collection `scale-N` (or `--collection`) from SciFact and N
/// distractors and measures it (see [`rag::scale`]).
pub async fn bench_scale(g: &Global, dataset: PathBuf, mut opts: rag::scale::ScaleOptions) -> Result<()> {
    // A collection on a server must be dropped there first: the benchmark refuses a non-empty
    // one rather than mix runs.
    let cfg = bench_config(g, g.collection.clone().unwrap_or_else(|| format!("scale-{}", opts.distractors)))?;
    let pipeline = build_pipeline(&cfg, Needs::All).await?;
    let (progress, bar) = progress_bar(g.json, "distractors");
    opts.progress = progress;
    // Phases go to stderr even with --json (stdout carries the report): a million-chunk run is long.
    let phase_bar = bar.clone();
    opts.on_phase = Some(Arc::new(move |what: &str| match &phase_bar {
        Some(b) => b.println(format!("- {what}")),
        None => eprintln!("- {what}"),
    }));
    let report = rag::scale::run_scale(pipeline, &dataset, &opts).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if g.json {
        return print_json(&report);
    }
    print_scale(&report);
    Ok(())
}

/// `rag optimize`.
pub async fn optimize(g: &Global, args: optimize::OptimizeArgs, retrieval: RetrievalArgs) -> Result<()> {
    let mut cfg = config(g)?;
    RemoteServer::refuse(&cfg.data_dir, "rag optimize")?;
    let (opts, _) = retrieval.options(&mut cfg)?;
    // Passages per retrieval (per hop for multihop): --k, else 3.
    let r = optimize::optimize(&cfg, args, opts, retrieval.k.unwrap_or(3)).await?;
    if g.json {
        return print_json(&r);
    }
    println!(
        "{} with {} on {} examples: {} {:.4} before, {:.4} after ({} demos; devset {} examples; {:.0} s)",
        r.lm,
        r.optimizer,
        r.train,
        r.metric_fn.as_ref().map_or(r.metric.to_string(), |m| format!("{}:{}", m.path.display(), m.function)),
        r.before,
        r.after,
        r.demos,
        r.dev,
        r.seconds
    );
    println!("saved {} (report: {})", r.saved.display(), rag::dspy::report_path(&r.saved).display());
    Ok(())
}

/// `rag stats`.
pub async fn stats(g: &Global) -> Result<()> {
    let cfg = config(g)?;
    let s = match RemoteServer::find(&cfg.data_dir).await? {
        Some(server) => {
            server.announce();
            server.stats(&cfg.collection).await?
        }
        None => build_pipeline(&cfg, Needs::All).await?.stats().await?,
    };
    if g.json {
        return print_json(&s);
    }
    println!(
        "collection {}: {} documents, {} chunks ({} in the keyword index)",
        s.collection, s.documents, s.chunks, s.keyword_chunks
    );
    match (s.chunks_over_embedder_limit, s.embedder_max_tokens) {
        (Some(over), Some(max)) => {
            println!("  {over} stored chunks exceed the embedder's {max}-token window (truncated when embedded)")
        }
        _ => println!("  the embedder's token window is unknown: chunks over it cannot be counted"),
    }
    if let Some(m) = s.mean_chunk_terms {
        println!("  {m:.1} analysed terms per chunk on average (keyword.avg_chunk_terms for store.index = engine)");
    }
    for (k, v) in &s.backends {
        println!("  {k:<10} {v}");
    }
    Ok(())
}

/// Fault injection for the crash-recovery test (`RAG_TEST_ABORT_AFTER_DOCS`): the ingest dies
/// like a killed process once this many documents are through, so the test is driven by a
/// count, not by timing.
fn crash_test_abort_after() -> Option<u64> {
    std::env::var("RAG_TEST_ABORT_AFTER_DOCS").ok().and_then(|v| v.parse().ok())
}
