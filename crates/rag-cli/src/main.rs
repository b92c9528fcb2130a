//! `rag`: ingest, query, search, delete, evaluate and benchmark a RAG pipeline from the command
//! line. One client of the `rag` library: typed settings are built from the raw flags here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod load;
mod optimize;
mod remote;

use remote::RemoteServer;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use rag::assemble::{Needs, build_pipeline};
use rag::config::{CacheBackend, RagConfig};
use rag::core::{GenerationEvent, MetadataValue};
use rag::pipeline::Progress;
use rag::{FileSource, Filter, Hit, IngestOptions, QueryOptions, RagError, Result, RetrievalMode};

#[derive(Parser)]
#[command(name = "rag", version, about = "Production RAG in Rust: ingest, query, search, delete, eval, bench, stats")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Configuration file (default: ./rag.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (stores, indexes, caches) [env: RAG_DATA_DIR] [default: .rag].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Collection name [env: RAG_COLLECTION] [default: rag].
    #[arg(long, global = true)]
    collection: Option<String>,
    /// Override any configuration key: --set retrieval.k=8 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Print one JSON object on stdout (no progress bar).
    #[arg(long, global = true)]
    json: bool,
    /// Tracing logs with per-stage timings on stderr (-vv for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest files and folders (.txt, .md, BEIR .jsonl).
    Ingest {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Remove documents that came from these paths before and are gone now.
        #[arg(long)]
        prune: bool,
    },
    /// Answer a question with citations.
    Query {
        /// The question.
        question: String,
        #[command(flatten)]
        retrieval: RetrievalArgs,
        /// Stream the answer as it is generated.
        #[arg(long)]
        stream: bool,
        /// Answer with a DSPy program compiled by `rag optimize` (its JSON file) instead of the
        /// configured generator.
        #[arg(long, conflicts_with = "stream")]
        program: Option<PathBuf>,
    },
    /// Print the ranked hits for a query, without generating an answer.
    Search {
        /// The query.
        query: String,
        #[command(flatten)]
        retrieval: RetrievalArgs,
    },
    /// Delete a document (all its chunks) from every store.
    Delete {
        /// The document id (as `rag search` shows it).
        doc_id: String,
    },

    /// Evaluate retrieval on a BEIR dataset (nDCG@10, Recall@100, MRR@10).
    Eval {
        /// Dataset folder with corpus.jsonl, queries.jsonl, qrels/test.tsv.
        #[arg(long)]
        dataset: PathBuf,
        /// dense, bm25 or hybrid [default: hybrid; with --answers, the configured mode]
        /// (`retrieval.mode`; `--retriever` is its old name).
        #[arg(long, alias = "retriever")]
        mode: Option<RetrievalMode>,
        /// Rerank with the configured cross-encoder.
        #[arg(long)]
        rerank: bool,
        /// Evaluate only the first N queries.
        #[arg(long)]
        limit: Option<usize>,
        /// Score answers instead of retrieval: the configured generator answers each example
        /// (EM / F1 against `answer`, citation precision / recall against `doc_ids`). FILE is a
        /// JSONL of examples; without FILE, the dataset's test queries with their gold documents.
        #[arg(long, value_name = "FILE", num_args = 0..=1)]
        answers: Option<Option<PathBuf>>,
    },
    /// Compile a DSPy program whose retrieval is this pipeline, with a DSPy optimiser, and save it.
    Optimize {
        #[command(flatten)]
        args: optimize::OptimizeArgs,
        #[command(flatten)]
        retrieval: RetrievalArgs,
    },
    /// Benchmark ingestion and query latency on a BEIR dataset.
    Bench {
        /// Dataset folder with corpus.jsonl and queries.jsonl.
        #[arg(long)]
        dataset: PathBuf,
        /// Documents to ingest into a fresh bench collection.
        #[arg(long, default_value_t = 1000)]
        docs: usize,
        /// Queries to run at each concurrency level.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Queries in flight at once; several levels make a sweep (`1,4,16,64`).
        #[arg(long, value_delimiter = ',', default_value = "4")]
        concurrency: Vec<usize>,
        /// Ingest without the embedding cache (measures the model, not the cache).
        #[arg(long)]
        cold: bool,
    },
    /// Collection, counts, backends, models, data directory.
    Stats,
    /// Serve the pipeline over HTTP: JSON and SSE, OpenAI-compatible chat, MCP, metrics, a web page.
    Serve {
        /// Listen address [default: server.addr, 127.0.0.1:8080]; port 0 picks a free port.
        #[arg(long)]
        addr: Option<String>,
    },
    /// Serve the MCP tools `search` and `answer` over stdin/stdout (for desktop agents).
    Mcp,
    /// Load-test a running `rag serve` over HTTP with a dataset's queries.
    Load {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Dataset folder with queries.jsonl (and qrels/test.tsv).
        #[arg(long)]
        dataset: PathBuf,
        /// Requests to send (the queries are cycled).
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// query (retrieval and answer) or search (retrieval only).
        #[arg(long, value_enum, default_value = "query")]
        endpoint: load::LoadEndpoint,
        /// API key, if the server has keys.
        #[arg(long, env = "RAG_API_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

/// How a query retrieves (shared by `query` and `search`).
#[derive(Args)]
struct RetrievalArgs {
    /// Chunks to retrieve and pack (1 to 1000).
    #[arg(long)]
    k: Option<usize>,
    /// dense, bm25 or hybrid (`retrieval.mode`; `--retriever` is its old name).
    #[arg(long, alias = "retriever")]
    mode: Option<RetrievalMode>,
    /// Rerank with the configured cross-encoder.
    #[arg(long)]
    rerank: bool,
    /// Metadata filter, e.g. --where lang=en --where year>=2020 (all must hold).
    #[arg(long = "where", value_name = "FIELD OP VALUE")]
    filters: Vec<String>,
}

impl RetrievalArgs {
    /// The query options, and whether the embedding model is needed at all; `--rerank` also
    /// turns the reranker on in `cfg`, so the pipeline is built with one.
    fn options(&self, cfg: &mut RagConfig) -> Result<(QueryOptions, Needs)> {
        if self.rerank {
            cfg.rerank.enabled = true;
        }
        let mut opts = QueryOptions::new();
        if let Some(k) = self.k {
            opts = opts.k(k);
        }
        if let Some(m) = self.mode {
            opts = opts.mode(m);
        }
        if self.rerank {
            opts = opts.rerank(true);
        }
        if let Some(f) = self.filter()? {
            opts = opts.filter(f);
        }
        let needs = if self.mode == Some(RetrievalMode::Bm25) { Needs::KeywordOnly } else { Needs::All };
        Ok((opts, needs))
    }

    /// Every `--where`, joined by AND.
    fn filter(&self) -> Result<Option<Filter>> {
        self.filters.iter().map(|f| parse_filter(f)).try_fold(None::<Filter>, |acc, f| {
            let f = f?;
            Ok(Some(match acc {
                Some(a) => a.and(f),
                None => f,
            }))
        })
    }

    /// The same options as the body of a query or search request to `rag serve`.
    fn request(&self, question: &str) -> Result<serde_json::Value> {
        let mut body = serde_json::json!({ "question": question });
        if let Some(k) = self.k {
            body["k"] = k.into();
        }
        if let Some(m) = self.mode {
            body["mode"] = m.as_str().into();
        }
        if self.rerank {
            body["rerank"] = true.into();
        }
        if let Some(f) = self.filter()? {
            body["filter"] = serde_json::to_value(f).map_err(|e| RagError::json("the filter", e))?;
        }
        Ok(body)
    }
}

fn config(g: &Global) -> Result<RagConfig> {
    let mut cfg = RagConfig::load(g.config.as_deref())?;
    if let Some(d) = &g.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(c) = &g.collection {
        cfg.collection = c.clone();
    }
    for s in &g.sets {
        let (k, v) = s.split_once('=').ok_or_else(|| RagError::invalid_input("--set", format!("`{s}`: use KEY=VALUE")))?;
        cfg.set(k.trim(), v.trim())?;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn parse_filter(s: &str) -> Result<Filter> {
    for op in [">=", "<=", "!=", "=", ">", "<"] {
        if let Some((k, v)) = s.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                break;
            }
            let num =
                || v.parse::<f64>().map_err(|_| RagError::invalid_input("--where", format!("`{s}`: `{v}` is not a number")));
            let value = if let Ok(i) = v.parse::<i64>() {
                MetadataValue::Int(i)
            } else if let Ok(f) = v.parse::<f64>() {
                MetadataValue::Float(f)
            } else if let Ok(b) = v.parse::<bool>() {
                MetadataValue::Bool(b)
            } else {
                MetadataValue::Str(v.trim_matches('"').to_owned())
            };
            return Ok(match op {
                "=" => Filter::Eq(k.into(), value),
                "!=" => Filter::Ne(k.into(), value),
                ">=" => Filter::gte(k, num()?),
                "<=" => Filter::lte(k, num()?),
                ">" => Filter::gt(k, num()?),
                _ => Filter::lt(k, num()?),
            });
        }
    }
    Err(RagError::invalid_input(
        "--where",
        format!("`{s}`: use FIELD=VALUE, FIELD!=VALUE, FIELD>=N, FIELD<=N, FIELD>N or FIELD<N"),
    ))
}

fn progress_bar(json: bool, what: &'static str) -> (Option<Progress>, Option<indicatif::ProgressBar>) {
    if json || !std::io::stderr().is_terminal() {
        return (None, None);
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    let b = bar.clone();
    let f: Progress = Arc::new(move |done, total| {
        b.set_length(total);
        b.set_position(done);
    });
    (Some(f), Some(bar))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| RagError::json("the output", e))?;
    println!("{s}");
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Serve { addr } => {
            let cfg = config(g)?;
            let on_listen: Arc<dyn Fn(std::net::SocketAddr) + Send + Sync> = Arc::new(|bound| {
                // One line on stdout, so scripts and tests learn the port when it was 0.
                println!("rag serve listening on http://{bound}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            });
            rag_server::serve(cfg, rag_server::ServeOptions { addr, on_listen: Some(on_listen) }).await
        }
        Command::Load { url, dataset, requests, concurrency, endpoint, key } => {
            let collection = config(g)?.collection;
            let r = load::run(&url, &collection, endpoint, &dataset, requests, concurrency, key.as_deref()).await?;
            if g.json {
                return print_json(&r);
            }
            println!(
                "{} {:?} requests at concurrency {} against {}: {:.1} QPS, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {} errors {:?}",
                r.requests, r.endpoint, r.concurrency, r.url, r.qps, r.p50_ms, r.p95_ms, r.p99_ms, r.errors, r.statuses
            );
            Ok(())
        }
        Command::Mcp => {
            // stdout carries the protocol: everything else goes to stderr.
            let cfg = config(g)?;
            if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
                server.announce();
                return rag_server::mcp::forward_stdio(server.url(), server.token()).await;
            }
            rag_server::mcp::serve_stdio(rag_server::state(cfg)?).await
        }
        Command::Ingest { paths, prune } => {
            let cfg = config(g)?;
            if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
                server.announce();
                let report = server.ingest(&cfg.collection, &paths, prune).await?;
                return print_ingest(g.json, &report);
            }
            let pipeline = build_pipeline(&cfg, Needs::All).await?;
            let (progress, bar) = progress_bar(g.json, "ingesting");
            let mut options = IngestOptions::new().prune(prune);
            // Fault injection for the crash-recovery test: die like a killed process once this
            // many documents are through, so the test is driven by a count, not by timing.
            let abort_after: Option<u64> = std::env::var("RAG_TEST_ABORT_AFTER_DOCS").ok().and_then(|v| v.parse().ok());
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
        Command::Query { question, retrieval, stream, program } => {
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
                    print_citations(&result.citations);
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
                print_citations(&head.citations);
                return Ok(());
            }
            let result = pipeline.query(&question, &opts).await?;
            print_answer(g, &result)
        }
        Command::Search { query, retrieval } => {
            let mut cfg = config(g)?;
            let (opts, needs) = retrieval.options(&mut cfg)?;
            if let Some(server) = RemoteServer::find(&cfg.data_dir).await? {
                server.announce();
                let found = server.search(&cfg.collection, &retrieval.request(&query)?).await?;
                if g.json {
                    return print_json(&serde_json::json!({"hits": found.hits, "degraded": found.degraded}));
                }
                print_hits(&found.hits);
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
            print_hits(&found.hits);
            for d in &found.degraded {
                println!("note: {d}");
            }
            Ok(())
        }
        Command::Delete { doc_id } => {
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
        Command::Eval { dataset, mode, rerank, limit, answers } => {
            let mut cfg = config(g)?;
            RemoteServer::refuse(&cfg.data_dir, "rag eval")?;
            if g.collection.is_none() && std::env::var_os("RAG_COLLECTION").is_none() {
                cfg.collection = dataset.file_name().map_or("eval".into(), |n| n.to_string_lossy().into_owned());
            }
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
            // The corpus is ingested with both sides, so every mode evaluates the same collection.
            cfg.retrieval.mode = RetrievalMode::Hybrid;
            let pipeline = build_pipeline(&cfg, Needs::All).await?;
            let (progress, bar) = progress_bar(g.json, "eval");
            let report = rag::eval::run_eval(&pipeline, &dataset, mode, rerank, limit, progress).await?;
            if let Some(b) = bar {
                b.finish_and_clear();
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
        Command::Bench { dataset, docs, queries, concurrency, cold } => {
            let mut cfg = config(g)?;
            RemoteServer::refuse(&cfg.data_dir, "rag bench")?;
            cfg.collection = format!("bench-{docs}");
            let dir = cfg.collection_dir();
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| RagError::io(&dir, e))?;
            }
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
            Ok(())
        }
        Command::Optimize { args, retrieval } => {
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
        Command::Stats => {
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
    }
}

fn print_ingest(json: bool, report: &rag::IngestReport) -> Result<()> {
    if json {
        return print_json(report);
    }
    println!(
        "{} documents ({} unchanged, {} removed), {} chunks written, {} embedded, {} from cache, in {:.1} s",
        report.documents, report.unchanged, report.removed, report.chunks, report.embedded, report.cache_hits, report.seconds
    );
    for s in &report.skipped {
        println!("skipped {}: {}", s.path, s.reason);
    }
    Ok(())
}

fn print_answer(g: &Global, result: &rag::QueryResult) -> Result<()> {
    if g.json {
        return print_json(result);
    }
    println!("{}\n", result.answer);
    if let Some(r) = &result.reasoning {
        println!("Reasoning: {r}\n");
    }
    print_citations(&result.citations);
    if g.verbose > 0 {
        print_hits(&result.hits);
    }
    for d in &result.degraded {
        println!("note: {d}");
    }
    println!("({} in {:.0} ms)", result.generator, result.timings_ms.get("total").copied().unwrap_or(0.0));
    Ok(())
}

fn print_level(level: &rag::bench::QueryLevel) {
    let batch = level.mean_embed_batch.map_or_else(|| "no batching".to_owned(), |b| format!("mean embed batch {b:.1}"));
    println!(
        "concurrency {:>3}: {:>6.1} QPS, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {batch} ({} queries)",
        level.concurrency, level.qps, level.p50_ms, level.p95_ms, level.p99_ms, level.queries
    );
    println!(
        "  hybrid retrieval without the embedding model: p50 {:.2} ms, p95 {:.2} ms",
        level.retrieval_excl_embed_p50_ms, level.retrieval_excl_embed_p95_ms
    );
    for (stage, share) in &level.stage_share {
        println!(
            "  {stage:<20} {:>5.1}%  ({:.2} ms mean)",
            share * 100.0,
            level.stage_mean_ms.get(stage).copied().unwrap_or(0.0)
        );
    }
}

fn print_hits(hits: &[Hit]) {
    for h in hits {
        let snippet: String = h.text.chars().take(120).collect();
        println!(
            "#{} {} ({}, bytes {}..{}, score {:.3})\n    {}",
            h.rank,
            h.label(),
            h.chunk_id,
            h.span[0],
            h.span[1],
            h.score,
            snippet.replace('\n', " ")
        );
    }
}

fn print_citations(citations: &[rag::Citation]) {
    for c in citations {
        let snippet: String = c.text.chars().take(160).collect();
        println!(
            "[{}] {} ({}, bytes {}..{}, score {:.3})\n    {}",
            c.number,
            c.label(),
            c.chunk_id,
            c.span[0],
            c.span[1],
            c.score,
            snippet.replace('\n', " ")
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.global.verbose {
        0 => "warn",
        1 => "info,rag=debug",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(h) = hint(&e) {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What to do next, in this command's words: the library says what is wrong, the CLI adds how
/// to fix it with its own commands.
fn hint(e: &RagError) -> Option<&'static str> {
    match e {
        RagError::EmptyCollection { .. } => Some("run `rag ingest PATH` first"),
        RagError::Busy { .. } => Some(
            "another `rag ingest` (or a server) is writing to this data directory: wait for it, or start `rag serve` and every `rag` command goes through it",
        ),
        _ => None,
    }
}
