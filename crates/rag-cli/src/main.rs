//! `rag`: ingest, query, search, delete, evaluate and benchmark a RAG pipeline from the command
//! line. One client of the `rag` library: typed settings are built from the raw flags here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod commands;
mod feedback;
mod load;
mod optimize;
mod output;
mod plot;
mod queue;
mod remote;
mod report;

use clap::{Args, Parser, Subcommand};
use rag::assemble::Needs;
use rag::config::RagConfig;
use rag::core::MetadataValue;
use rag::pipeline::Progress;
use rag::{Filter, QueryOptions, RagError, Result, RetrievalMode};

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
        /// Spread the ingest over `rag worker`s: queue the documents on this Redis work queue
        /// (URL, or queue.url when given bare) instead of ingesting them here.
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
        queue: Option<String>,
        /// With --queue: follow the run until every worker's batches are acknowledged (a
        /// progress bar of all of them), then print the run's totals.
        #[arg(long, requires = "queue")]
        wait: bool,
    },
    /// Work an ingest queue: take batches, embed and write them, acknowledge, until stopped
    /// (SIGINT/SIGTERM finish the batch in hand). Needs store.index = engine.
    Worker {
        /// The queue's Redis URL [default: queue.url].
        #[arg(long, value_name = "URL")]
        queue: Option<String>,
        /// This worker's name among the queue's workers [default: HOST-PID].
        #[arg(long)]
        name: Option<String>,
        /// Exit once the queue has had nothing waiting or in flight for this many seconds.
        #[arg(long, value_name = "SECS")]
        until_idle: Option<f64>,
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
        /// Also write a self-contained HTML page: the summary, a histogram of per-query
        /// nDCG@10 and every query (worst first) with its retrieved and judged documents.
        #[arg(long, value_name = "FILE", conflicts_with = "answers")]
        report: Option<PathBuf>,
        /// Judgments to score with instead of the dataset's qrels/test.tsv (BEIR's
        /// qrels/train.tsv or dev.tsv, or a file of your own: query-id, corpus-id, score).
        #[arg(long, value_name = "FILE", conflicts_with = "answers")]
        qrels: Option<PathBuf>,
    },
    /// Search the retrieval settings that need no re-ingest (mode, fusion and its weight or
    /// constant, candidates, reranking and its depth where a cross-encoder is configured) and,
    /// with --reingest, chunkings, on judged queries: chosen on one seeded half, reported on the
    /// other with a paired bootstrap interval against the current settings.
    Tune {
        /// Dataset folder with corpus.jsonl, queries.jsonl, qrels/test.tsv (BEIR).
        #[arg(long)]
        dataset: PathBuf,
        /// Seed of the query split and the bootstrap.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Use only the first N judged queries.
        #[arg(long)]
        limit: Option<usize>,
        /// Write the chosen settings' changed keys into the configuration file (--config, else
        /// ./rag.toml), printing the change first.
        #[arg(long)]
        apply: bool,
        /// Also draw the quality-vs-latency plot (tune-pareto.svg and .png) into DIR.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// Judgments to tune on instead of the dataset's qrels/test.tsv (e.g. BEIR's
        /// qrels/train.tsv, keeping the test split untouched for the final check).
        #[arg(long, value_name = "FILE")]
        qrels: Option<PathBuf>,
        /// Also write a self-contained HTML page: the choice and its interval, the Pareto plot
        /// and every setting's scores.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Also compare chunkings (sizes from --chunk-sizes; for the token chunker each with and
        /// without overlap; fitting to the embedder's window on and off): each is ingested into
        /// a collection of its own (`<collection>-<chunking>`, kept for the next run).
        #[arg(long)]
        reingest: bool,
        /// Chunk sizes (tokens) --reingest tries: the largest chunk (semantic) or the window
        /// (token). Default 128,256,512.
        #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "reingest")]
        chunk_sizes: Option<Vec<usize>>,
    },
    /// Judgments users gave answers through `rag serve`: export them as JSON Lines or as
    /// qrels for rag eval / tune / optimize.
    Feedback {
        #[command(subcommand)]
        action: feedback::FeedbackAction,
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
        /// Queries in flight at once; several levels make a sweep (`1,4,16,64`) [default: 4; with --scale 1,16].
        #[arg(long, value_delimiter = ',')]
        concurrency: Option<Vec<usize>>,
        /// Ingest without the embedding cache (measures the model, not the cache).
        #[arg(long)]
        cold: bool,
        /// Scale benchmark: SciFact plus this many generated distractor chunks written through
        /// the pipeline (collection scale-N unless --collection); reports load, memory, disk,
        /// latency, recall@10 against exact search and nDCG@10 with the distractors.
        #[arg(long, value_name = "N", conflicts_with_all = ["docs", "cold"])]
        scale: Option<usize>,
        /// With --scale: spread the distractors over this many tenants (metadata `tenant`) and
        /// also time one-tenant queries.
        #[arg(long, requires = "scale", default_value_t = 0)]
        tenants: usize,
        /// With --scale: queries whose top 10 is checked against an exact search.
        #[arg(long, requires = "scale", default_value_t = 200)]
        recall_queries: usize,
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
        /// Stream each answer (Server-Sent Events, query only) and report time to first token,
        /// tokens per second and answers per minute.
        #[arg(long)]
        stream: bool,
        /// Start at the dataset's Nth query: levels of one benchmark each get their own
        /// questions (a model's prompt cache would make a repeated question quick).
        #[arg(long, default_value_t = 0)]
        skip: usize,
        /// Seconds a request may take before it counts as an error (status 0).
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
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

fn progress_bar(
    json: bool,
    what: impl Into<std::borrow::Cow<'static, str>>,
) -> (Option<Progress>, Option<indicatif::ProgressBar>) {
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

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Serve { addr } => commands::serve(g, addr).await,
        Command::Load { url, dataset, requests, concurrency, endpoint, key, stream, skip, timeout_secs } => {
            let timeout = std::time::Duration::from_secs(timeout_secs.max(1));
            let options = load::LoadOptions { endpoint, requests, concurrency, key, stream, skip, timeout };
            commands::load_test(g, url, dataset, options).await
        }
        Command::Mcp => commands::mcp(g).await,
        Command::Ingest { paths, prune, queue: Some(url), wait } => queue::ingest(g, paths, Some(url), wait, prune).await,
        Command::Ingest { paths, prune, queue: None, .. } => commands::ingest(g, paths, prune).await,
        Command::Worker { queue, name, until_idle } => queue::worker(g, queue, name, until_idle).await,
        Command::Query { question, retrieval, stream, program } => commands::query(g, question, retrieval, stream, program).await,
        Command::Search { query, retrieval } => commands::search(g, query, retrieval).await,
        Command::Delete { doc_id } => commands::delete(g, doc_id).await,
        Command::Eval { dataset, mode, rerank, limit, answers, report, qrels } => {
            commands::eval(g, commands::EvalRequest { dataset, mode, rerank, limit, answers, html: report, qrels }).await
        }
        Command::Tune { dataset, seed, limit, apply, plot, qrels, report, reingest, chunk_sizes } => {
            let req = commands::TuneRequest { dataset, seed, limit, apply, plot, qrels, html: report, reingest, chunk_sizes };
            commands::tune(g, req).await
        }
        Command::Bench { dataset, scale: Some(n), tenants, recall_queries, concurrency, .. } => {
            let mut opts = rag::scale::ScaleOptions::new(n);
            opts.tenants = tenants;
            opts.recall_queries = recall_queries;
            if let Some(c) = concurrency {
                opts.concurrency = c;
            }
            commands::bench_scale(g, dataset, opts).await
        }
        Command::Bench { dataset, docs, queries, concurrency, cold, .. } => {
            commands::bench(g, dataset, docs, queries, concurrency.unwrap_or_else(|| vec![4]), cold).await
        }
        Command::Feedback { action } => feedback::run(g, action).await,
        Command::Optimize { args, retrieval } => commands::optimize(g, args, retrieval).await,
        Command::Stats => commands::stats(g).await,
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
