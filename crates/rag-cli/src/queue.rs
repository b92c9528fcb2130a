//! `rag ingest --queue` (the producer) and `rag worker`: one ingest spread over many worker
//! processes through the Redis work queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rag::assemble::{Needs, build_pipeline};
use rag::config::{IndexPlacement, RagConfig};
use rag::queue::{EnqueueOptions, IngestWorker, QueueRunReport, enqueue, wait_for_run};
use rag::redis_queue::RedisQueue;
use rag::{FileSource, IngestOptions, RagError, Result};

use crate::output;
use crate::{Global, config, progress_bar};

/// A worker needs the ingest record, the keyword index and the vectors where every worker
/// sees them: the store's engine. Said before anything is built.
fn check_shared(cfg: &RagConfig, what: &str) -> Result<()> {
    if cfg.store.index == IndexPlacement::Engine {
        return Ok(());
    }
    Err(RagError::config(format!(
        "{what} needs the ingest record and the keyword index inside the store, where every worker sees them: \
         set store.backend = \"qdrant\", store.qdrant.mode = \"server\" and store.index = \"engine\" \
         (the embedded default keeps them in this machine's data directory)"
    )))
}

async fn connect(cfg: &RagConfig, flag: Option<&str>) -> Result<RedisQueue> {
    // `rag ingest --queue corpus.jsonl`: clap took the path for the bare flag's URL.
    if let Some(f) = flag.filter(|f| !f.contains("://") && std::path::Path::new(f).exists()) {
        return Err(RagError::invalid_input(
            "--queue",
            format!(
                "`{f}` is a file, not a Redis URL: write `rag ingest {f} --queue` (paths first) or `--queue=redis://HOST/DB`"
            ),
        ));
    }
    let url = cfg.queue.resolve_url(flag)?;
    RedisQueue::connect(&url, &cfg.collection, &cfg.queue).await
}

/// `rag ingest PATH... --queue [URL] [--wait] [--prune]`.
pub async fn ingest(g: &Global, paths: Vec<PathBuf>, queue: Option<String>, wait: bool, prune: bool) -> Result<()> {
    let cfg = config(g)?;
    if prune && !wait {
        return Err(RagError::invalid_input(
            "--prune",
            "with --queue, pruning waits for every batch of the run to be acknowledged: add --wait",
        ));
    }
    let start = Instant::now();
    let redis = connect(&cfg, queue.as_deref()).await?;
    // Pruning needs the ingest record; built first, so a wrong configuration fails before
    // anything is queued.
    let pipeline = if prune {
        check_shared(&cfg, "--prune with --queue")?;
        Some(build_pipeline(&cfg, Needs::All).await?)
    } else {
        None
    };
    let (progress, bar) = progress_bar(g.json, "queueing");
    let mut options = EnqueueOptions::from_settings(&cfg.queue);
    if let Some(p) = progress {
        options = options.progress(move |done, total| p(done, total));
    }
    let run = enqueue(&redis, FileSource::new(paths), &options).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !wait {
        return output::print_enqueued(g.json, &run, &redis.stream_key());
    }
    let (progress, bar) = progress_bar(g.json, "ingesting (all workers)");
    let status = wait_for_run(&redis, &run.run, progress).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let dead = rag::core::IngestQueue::dead_letters(&redis, &run.run, 100).await?;
    let mut report = QueueRunReport::new(&run, status, dead, 0.0);
    if let Some(p) = &pipeline {
        report.removed = p.prune_run(&run).await?;
    }
    report.seconds = start.elapsed().as_secs_f64();
    output::print_queue_run(g.json, &report)
}

/// `rag worker`.
pub async fn worker(g: &Global, queue: Option<String>, name: Option<String>, until_idle: Option<f64>) -> Result<()> {
    let cfg = config(g)?;
    check_shared(&cfg, "rag worker")?;
    let redis = connect(&cfg, queue.as_deref()).await?;
    let pipeline = Arc::new(build_pipeline(&cfg, Needs::All).await?);
    let name = name.unwrap_or_else(rag::queue::default_worker_name);
    let mut worker = IngestWorker::new(pipeline, Arc::new(redis.clone()), name.clone()).settings(&cfg.queue);
    if let Some(secs) = until_idle {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(RagError::invalid_input("--until-idle", format!("{secs}: give a number of seconds, 0 or more")));
        }
        worker = worker.until_idle(Duration::from_secs_f64(secs));
    }
    if let Some(n) = stall_after() {
        // Test hook: stop dead (until killed) once `n` documents of a batch are written, so a
        // test can SIGKILL a worker that holds a half-written batch.
        worker = worker.ingest_options(IngestOptions::new().batch_size(4).progress(move |done, _| {
            if done >= n {
                eprintln!("RAG_TEST: stalled mid-batch");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }));
    }
    eprintln!("rag worker `{name}` working {} (Ctrl-C finishes the batch in hand, then stops)", redis.stream_key());
    let report = worker.run(rag_server::shutdown_signal()).await?;
    output::print_worker(g.json, &report)
}

fn stall_after() -> Option<u64> {
    std::env::var("RAG_TEST_STALL_AFTER_DOCS").ok().and_then(|v| v.parse().ok())
}
