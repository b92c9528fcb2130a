//! `rag eval --report FILE` and `rag tune --report FILE`: self-contained HTML pages (inline CSS
//! and SVG, no scripts, no links out). The evaluation's: the summary, a histogram of per-query
//! nDCG@10 and the per-query table, worst queries first, each with its retrieved and judged
//! documents. The tuning's: the choice and its interval, the Pareto plot, every setting.

use std::fmt::Write as _;
use std::path::Path;

use rag::eval::{EvalReport, QueryEval};
use rag::tune::TuneReport;
use rag::{RagError, Result};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;font-size:13px}th{background:#f3f3f3}\
td.num{text-align:right;font-variant-numeric:tabular-nums}li.rel,li.found{color:#17663a}li.irrel{color:#666}\
li.missed{color:#a11}ol,ul{margin:0;padding-left:1.4em}.summary span{margin-right:1.5em}";

/// Writes the report of `report` (an evaluation of `dataset`) to `path`.
pub fn write_eval_report(report: &EvalReport, dataset: &Path, path: &Path) -> Result<()> {
    let name = dataset.file_name().map_or_else(|| dataset.display().to_string(), |n| n.to_string_lossy().into_owned());
    let scores: Vec<f64> = report.per_query.iter().map(|q| q.ndcg_at_10).collect();
    let svg = crate::plot::ndcg_histogram_svg(&scores, &format!("per-query nDCG@10, {} queries", scores.len()))?;
    let mut rows: Vec<&QueryEval> = report.per_query.iter().collect();
    rows.sort_by(|a, b| a.ndcg_at_10.total_cmp(&b.ndcg_at_10).then(a.query_id.cmp(&b.query_id)));
    let mut html = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rag eval: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>rag eval: {}</h1>\n<p class=\"summary\"><span>mode <b>{}</b>{}</span><span>queries <b>{}</b></span>\
         <span>nDCG@10 <b id=\"ndcg\">{:.4}</b> (half A {:.4}, half B {:.4})</span><span>Recall@100 <b>{:.4}</b></span>\
         <span>MRR@10 <b>{:.4}</b></span></p>\n<figure id=\"histogram\">{svg}</figure>\n\
         <h2>Queries, worst first</h2>\n<table id=\"queries\"><thead><tr><th>query</th><th>nDCG@10</th><th>Recall@100</th>\
         <th>MRR@10</th><th>retrieved (top 10; green: judged relevant)</th><th>judged (red: not in the top 10)</th></tr></thead><tbody>\n",
        escape(&name),
        escape(&name),
        report.mode,
        if report.rerank { " + rerank" } else { "" },
        report.queries,
        report.ndcg_at_10,
        report.ndcg_at_10_half_a,
        report.ndcg_at_10_half_b,
        report.recall_at_100,
        report.mrr_at_10,
    );
    for q in rows {
        let _ = write!(
            html,
            "<tr data-ndcg=\"{:.6}\"><td><code>{}</code> {}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td><ol>",
            q.ndcg_at_10,
            escape(&q.query_id),
            escape(&q.question),
            q.ndcg_at_10,
            q.recall_at_100,
            q.mrr_at_10
        );
        for d in &q.retrieved {
            let title = d.title.as_deref().map(|t| format!(" {}", escape(t))).unwrap_or_default();
            let class = if d.grade > 0 { "rel" } else { "irrel" };
            let _ = write!(html, "<li class=\"{class}\"><code>{}</code>{title}</li>", escape(&d.doc_id));
        }
        html.push_str("</ol></td><td><ul>");
        for (doc, grade) in &q.judged {
            let class = if q.retrieved.iter().any(|d| &d.doc_id == doc) { "found" } else { "missed" };
            let _ = write!(html, "<li class=\"{class}\"><code>{}</code> ({grade})</li>", escape(doc));
        }
        html.push_str("</ul></td></tr>\n");
    }
    html.push_str("</tbody></table>\n</body></html>\n");
    std::fs::write(path, html).map_err(|e| RagError::io(path, e))
}

/// Writes the page of a `rag tune` run over `dataset` to `path`.
pub fn write_tune_report(report: &TuneReport, dataset: &Path, path: &Path) -> Result<()> {
    let name = dataset.file_name().map_or_else(|| dataset.display().to_string(), |n| n.to_string_lossy().into_owned());
    let svg = crate::plot::pareto_svg(report)?;
    let d = report.difference;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rag tune: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>rag tune: {}</h1>\n<p class=\"summary\"><span>queries <b>{}</b> (chosen on {}, reported on {}; split seed {})</span></p>\n\
         <p id=\"choice\">chosen: <b>{}</b>: half-B nDCG@10 {:.4} against the current {:.4} (<b>{}</b>): {:+.4}, 95% bootstrap interval {:+.4} to {:+.4}</p>\n",
        escape(&name),
        escape(&name),
        report.tune_queries.len() + report.report_queries.len(),
        report.tune_queries.len(),
        report.report_queries.len(),
        report.seed,
        escape(&report.chosen.label),
        report.chosen.report.ndcg_at_10,
        report.current.report.ndcg_at_10,
        escape(&report.current.label),
        d.mean,
        d.low,
        d.high,
    );
    for w in &report.warnings {
        let _ = writeln!(html, "<p class=\"warning\">{}</p>", escape(w));
    }
    let _ = write!(
        html,
        "<figure id=\"pareto\">{svg}</figure>\n<h2>Every setting</h2>\n<table id=\"settings\"><thead><tr><th>setting</th>\
         <th>nDCG@10 half A</th><th>nDCG@10 half B</th><th>Recall@100</th><th>MRR@10</th><th>p50 ms</th><th>p99 ms</th><th></th></tr></thead><tbody>\n"
    );
    for s in &report.settings {
        let mark = match (s.label == report.chosen.label, s.label == report.current.label, s.pareto) {
            (true, _, _) => "chosen",
            (_, true, _) => "current",
            (_, _, true) => "Pareto front",
            _ => "",
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td>\
             <td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td><td>{mark}</td></tr>",
            escape(&s.label),
            s.tune.ndcg_at_10,
            s.report.ndcg_at_10,
            s.report.recall_at_100,
            s.report.mrr_at_10,
            s.p50_ms,
            s.p99_ms
        );
    }
    html.push_str("</tbody></table>\n</body></html>\n");
    std::fs::write(path, html).map_err(|e| RagError::io(path, e))
}

/// Text as HTML: the five characters that could end an element or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_open_an_element() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
