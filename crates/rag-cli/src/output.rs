//! How the `rag` command prints: one JSON object with `--json`, else lines for people.

use rag::{Citation, Hit, RagError, Result};

/// Prints `v` as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| RagError::json("the output", e))?;
    println!("{s}");
    Ok(())
}

pub fn print_ingest(json: bool, report: &rag::IngestReport) -> Result<()> {
    if json {
        return print_json(report);
    }
    println!(
        "{} documents ({} unchanged, {} removed), {} chunks written, {} embedded, {} from cache, in {:.1} s",
        report.documents, report.unchanged, report.removed, report.chunks, report.embedded, report.cache_hits, report.seconds
    );
    print_skipped(&report.skipped);
    Ok(())
}

fn print_skipped(skipped: &[rag::core::Skipped]) {
    for s in skipped {
        println!("skipped {}: {}", s.path, s.reason);
    }
}

/// `rag ingest --queue` without `--wait`: what was queued.
pub fn print_enqueued(json: bool, run: &rag::queue::EnqueuedRun, stream: &str) -> Result<()> {
    if json {
        return print_json(run);
    }
    println!(
        "queued run {}: {} documents in {} batches on {stream}; `rag worker` processes ingest them",
        run.run, run.documents, run.batches
    );
    print_skipped(&run.skipped);
    Ok(())
}

/// `rag ingest --queue --wait`: the run's totals over every worker.
pub fn print_queue_run(json: bool, report: &rag::queue::QueueRunReport) -> Result<()> {
    if json {
        return print_json(report);
    }
    println!(
        "run {}: {} documents ({} unchanged, {} failed, {} removed), {} chunks written, {} embedded, {} from cache, in {:.1} s",
        report.run,
        report.documents,
        report.unchanged,
        report.failed,
        report.removed,
        report.chunks,
        report.embedded,
        report.cache_hits,
        report.seconds
    );
    for (name, share) in &report.workers {
        println!("  worker {name}: {} documents in {} batches", share.documents, share.batches);
    }
    for d in &report.dead_letters {
        println!("dead letter (batch {}): {:?}: {}", d.seq, d.doc_ids, d.reason);
    }
    print_skipped(&report.skipped);
    Ok(())
}

/// `rag worker` when it stops.
pub fn print_worker(json: bool, report: &rag::queue::WorkerReport) -> Result<()> {
    if json {
        return print_json(report);
    }
    let t = &report.tally;
    println!(
        "worker {}: {} batches, {} documents ({} unchanged, {} failed), {} chunks, {} embedded",
        report.worker, report.batches, t.documents, t.unchanged, t.failed, t.chunks, t.embedded
    );
    Ok(())
}

pub fn print_answer(g: &crate::Global, result: &rag::QueryResult) -> Result<()> {
    if g.json {
        return print_json(result);
    }
    println!("{}\n", result.answer);
    if let Some(r) = &result.reasoning {
        println!("Reasoning: {r}\n");
    }
    print_passages(&result.citations);
    if g.verbose > 0 {
        print_passages(&result.hits);
    }
    for d in &result.degraded {
        println!("note: {d}");
    }
    println!("({} in {:.0} ms)", result.generator, result.timings_ms.get("total").copied().unwrap_or(0.0));
    Ok(())
}

pub fn print_level(level: &rag::bench::QueryLevel) {
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
    if let Some(cpu) = level.cpu_ms_per_query {
        println!("  CPU per query (every thread): {cpu:.2} ms");
    }
}

/// A retrieved passage as printed: a hit (`#rank`) or a citation (`[number]`).
pub trait Passage {
    /// `#3` or `[2]`.
    fn marker(&self) -> String;
    /// The hit or citation itself.
    fn parts(&self) -> (String, &str, [usize; 2], f32, &str);
}

impl Passage for Hit {
    fn marker(&self) -> String {
        format!("#{}", self.rank)
    }
    fn parts(&self) -> (String, &str, [usize; 2], f32, &str) {
        (self.label(), &self.chunk_id, self.span, self.score, &self.text)
    }
}

impl Passage for Citation {
    fn marker(&self) -> String {
        format!("[{}]", self.number)
    }
    fn parts(&self) -> (String, &str, [usize; 2], f32, &str) {
        (self.label(), &self.chunk_id, self.span, self.score, &self.text)
    }
}

/// Prints hits or citations: marker, label, chunk id, span, score, then the text's start.
pub fn print_passages(passages: &[impl Passage]) {
    for p in passages {
        let (label, chunk_id, span, score, text) = p.parts();
        let snippet: String = text.chars().take(160).collect();
        println!(
            "{} {label} ({chunk_id}, bytes {}..{}, score {score:.3})\n    {}",
            p.marker(),
            span[0],
            span[1],
            snippet.replace('\n', " ")
        );
    }
}

/// `rag bench --scale`'s summary.
pub fn print_scale(r: &rag::scale::ScaleReport) {
    let mb = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0} MiB"));
    println!(
        "{}: {} chunks ({} SciFact + {} distractors) in {}",
        r.collection,
        r.chunks,
        r.real_chunks,
        r.distractor_chunks,
        r.backends.get("store").map_or("?", String::as_str)
    );
    println!(
        "load: {:.0} s, {:.0} chunks/s; index ready {:.0} s later",
        r.load_seconds, r.load_chunks_per_s, r.index_wait_seconds
    );
    println!("memory: {} now, {} peak; local disk {}", mb(r.rss_mb), mb(r.peak_rss_mb), mb(r.disk_mb));
    println!("recall@10 against exact search: {:.4} ({} queries)", r.recall_at_10, r.recall_queries);
    for l in &r.latency {
        println!(
            "{:<18} concurrency {:>3}: p50 {:.1} ms, p99 {:.1} ms, {:.0} QPS ({} queries)",
            l.path.to_string(),
            l.concurrency,
            l.p50_ms,
            l.p99_ms,
            l.qps,
            l.queries
        );
    }
    for c in &r.ndcg_at_10 {
        println!("nDCG@10 {:?}: {:.4} alone, {:.4} with the distractors ({:+.4})", c.mode, c.without, c.with, c.with - c.without);
    }
}

/// `rag tune`'s table: every setting (quality on both halves, latency, `*` on the Pareto front),
/// then the choice against the current settings and the warnings.
pub fn print_tune(
    report: &rag::tune::TuneReport,
    changes: &std::collections::BTreeMap<&'static str, toml_edit::Value>,
    applied: Option<&Option<std::path::PathBuf>>,
) {
    println!(
        "{} judged queries: settings chosen on {} (half A), reported on {} (half B); split seed {}",
        report.tune_queries.len() + report.report_queries.len(),
        report.tune_queries.len(),
        report.report_queries.len(),
        report.seed
    );
    let width = report.settings.iter().map(|s| s.label.chars().count()).max().unwrap_or(0).max(42);
    println!(
        "  {:<width$} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "setting", "nDCG A", "nDCG B", "Recall@100", "MRR@10", "p50 ms", "p99 ms"
    );
    for s in &report.settings {
        let mark = if s.label == report.chosen.label {
            ">"
        } else if s.pareto {
            "*"
        } else {
            " "
        };
        println!(
            "{mark} {:<width$} {:>8.4} {:>8.4} {:>10.4} {:>8.4} {:>8.1} {:>8.1}",
            s.label, s.tune.ndcg_at_10, s.report.ndcg_at_10, s.report.recall_at_100, s.report.mrr_at_10, s.p50_ms, s.p99_ms
        );
    }
    println!("(> chosen, * on the quality/latency Pareto front; the first row is the current configuration)");
    let d = report.difference;
    println!(
        "chosen: {} — half B nDCG@10 {:.4} vs current {:.4}: {:+.4} (95% bootstrap interval {:+.4} to {:+.4})",
        report.chosen.label, report.chosen.report.ndcg_at_10, report.current.report.ndcg_at_10, d.mean, d.low, d.high
    );
    for w in &report.warnings {
        println!("warning: {w}");
    }
    if changes.is_empty() {
        println!("the current settings are the best found: nothing to change");
    } else {
        let keys: Vec<String> = changes.iter().map(|(k, v)| format!("{k} = {}", v.to_string().trim())).collect();
        match applied {
            Some(Some(path)) => println!("written to {}: {}", path.display(), keys.join(", ")),
            _ => println!("to use it: {} (or rag tune --apply)", keys.join(", ")),
        }
    }
}
