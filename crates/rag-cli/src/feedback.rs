//! `rag feedback export`: the judgments users gave answers through `rag serve`, as JSON Lines
//! or as a BEIR folder (queries + qrels) that `rag eval`, `rag tune` and `rag optimize` read.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use rag::feedback::{FeedbackScope, FeedbackStore, JsonlFeedbackStore, JudgedQueries, write_beir_folder};
use rag::{RagError, Result};

use crate::{Global, config};

/// What `rag feedback` does.
#[derive(Subcommand)]
pub enum FeedbackAction {
    /// Write the collection's judgments (from DATA_DIR/feedback.jsonl; a running server may be
    /// appending to it).
    Export {
        /// jsonl: every judgment as stored, one a line; qrels: a BEIR folder (queries.jsonl,
        /// qrels/test.tsv) of the judged passages, for `rag --collection NAME eval --dataset DIR`.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// With jsonl: the file (default: standard output). With qrels: the folder (required).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the judgments of this tenant's keys: its fields as the keys' `tenant` table has
        /// them, `FIELD=VALUE[,FIELD=VALUE]` (e.g. `tenant=acme`).
        #[arg(long, value_name = "FIELD=VALUE")]
        tenant: Option<String>,
    },
}

/// How judgments are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One judgment a line, as stored.
    Jsonl,
    /// queries.jsonl + qrels/test.tsv.
    Qrels,
}

/// `rag feedback ...`.
pub async fn run(g: &Global, action: FeedbackAction) -> Result<()> {
    let FeedbackAction::Export { format, out, tenant } = action;
    let cfg = config(g)?;
    let store = JsonlFeedbackStore::in_data_dir(&cfg.data_dir);
    let scope = match tenant {
        Some(t) => FeedbackScope::Tenant(tenant_namespace(&t)?),
        None => FeedbackScope::All,
    };
    if g.json && format == ExportFormat::Jsonl && out.is_none() {
        return Err(RagError::invalid_input(
            "--json",
            "--json prints a summary on standard output: give --out FILE for the judgments themselves",
        ));
    }
    let records = store.list(&cfg.collection, scope).await?;
    let mut summary = serde_json::json!({
        "collection": cfg.collection,
        "judgments": records.len(),
        "format": match format { ExportFormat::Jsonl => "jsonl", ExportFormat::Qrels => "qrels" },
        "out": out.as_ref().map(|p| p.display().to_string()),
    });
    match format {
        ExportFormat::Jsonl => {
            let mut text = String::new();
            for r in &records {
                text.push_str(&serde_json::to_string(r).map_err(|e| RagError::json("a judgment", e))?);
                text.push('\n');
            }
            match &out {
                Some(path) => std::fs::write(path, text).map_err(|e| RagError::io(path, e))?,
                None => std::io::stdout().write_all(text.as_bytes()).map_err(|e| RagError::io("standard output", e))?,
            }
            if !g.json {
                eprintln!("{} judgments of collection `{}`", records.len(), cfg.collection);
            }
        }
        ExportFormat::Qrels => {
            let dir = out.ok_or_else(|| {
                RagError::invalid_input("--out", "--format qrels writes a folder (queries.jsonl, qrels/test.tsv): give --out DIR")
            })?;
            let judged = JudgedQueries::from_feedback(&records);
            write_beir_folder(&dir, &judged)?;
            let pairs: usize = judged.qrels.values().map(|d| d.len()).sum();
            summary["queries"] = judged.queries.len().into();
            summary["judged_documents"] = pairs.into();
            summary["answer_judgments"] = judged.answer_judgments.into();
            summary["without_relevant"] = judged.without_relevant.into();
            if g.json {
                return crate::output::print_json(&summary);
            }
            eprintln!(
                "{} queries, {pairs} judged passages' documents from {} judgments of collection `{}` -> {} \
                 ({} whole-answer judgments and {} questions with no relevant document left out); \
                 score them: rag --collection {} eval --dataset {}",
                judged.queries.len(),
                records.len(),
                cfg.collection,
                dir.display(),
                judged.answer_judgments,
                judged.without_relevant,
                cfg.collection,
                dir.display()
            );
        }
    }
    if g.json {
        return crate::output::print_json(&summary);
    }
    Ok(())
}

/// The namespace of the tenant `FIELD=VALUE[,FIELD=VALUE]` (as `rag serve` names it).
fn tenant_namespace(spec: &str) -> Result<String> {
    let mut fields = rag::core::Metadata::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty()).ok_or_else(|| {
            RagError::invalid_input(
                "--tenant",
                format!("`{part}` is not FIELD=VALUE: give the tenant's fields, e.g. tenant=acme"),
            )
        })?;
        fields.insert(k.trim().to_owned(), rag::core::MetadataValue::Str(v.trim().to_owned()));
    }
    rag_server::auth::Tenant::new(fields)
        .map(|t| t.namespace().to_owned())
        .ok_or_else(|| RagError::invalid_input("--tenant", "no field given: e.g. --tenant tenant=acme"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_named_by_its_fields() {
        assert_eq!(tenant_namespace("tenant=acme").unwrap(), "tenant:tenant=acme");
        assert_eq!(tenant_namespace("region=eu, team=x").unwrap(), "tenant:region=eu,team=x");
        for bad in ["acme", "=x", "tenant=", ""] {
            assert!(tenant_namespace(bad).unwrap_err().to_string().contains("--tenant"), "{bad}");
        }
    }
}
