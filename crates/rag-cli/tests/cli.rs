//! The `rag` binary end to end: every `--json` shape, idempotent ingest, changed files, bad
//! inputs, a 50 MB file under a memory bound, and a killed ingest that converges.
//! Uses the real embedded default (ChromaDB on disk + MiniLM) where the test is about it, and
//! the keyword-only configuration (no Python) where it is not. Needs `make setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BM25_ONLY: [&str; 4] = ["--set", "store.backend=none", "--set", "retrieval.mode=bm25"];

fn rag(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rag")).arg("--data-dir").arg(data).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "rag failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn scifact() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/scifact"))
}

/// The first `n` SciFact documents as a JSONL file.
fn scifact_slice(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(scifact().join("corpus.jsonl")).unwrap();
    let path = dir.join(format!("scifact-{n}.jsonl"));
    std::fs::write(&path, text.lines().take(n).collect::<Vec<_>>().join("\n")).unwrap();
    path
}

fn keys(v: &Value, expected: &[&str]) {
    for k in expected {
        assert!(v.get(k).is_some(), "missing key `{k}` in {v}");
    }
}

#[test]
fn json_shapes_idempotent_ingest_and_changed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("tea.txt"), "Green tea is brewed at 80 degrees. Black tea is brewed with boiling water.").unwrap();
    std::fs::write(
        docs.join("notes.md"),
        "# Coffee\n\nEspresso is pressed at nine bars.\n\n## Milk\n\nSteamed milk makes a latte.",
    )
    .unwrap();
    let corpus = scifact_slice(tmp.path(), 12);
    let d = docs.to_str().unwrap();
    let c = corpus.to_str().unwrap();

    let first = json(&rag(&data, &["ingest", d, c, "--json"]));
    keys(&first, &["documents", "chunks", "embedded", "cache_hits", "unchanged", "removed", "seconds"]);
    assert_eq!(first["documents"], 14);
    assert!(first["embedded"].as_u64().unwrap() >= 14);

    let second = json(&rag(&data, &["ingest", d, c, "--json"]));
    assert_eq!(
        (second["unchanged"].as_u64(), second["embedded"].as_u64(), second["chunks"].as_u64()),
        (Some(14), Some(0), Some(0)),
        "{second}"
    );

    std::fs::write(docs.join("tea.txt"), "Oolong tea is partly oxidised. It is brewed at 90 degrees.").unwrap();
    let third = json(&rag(&data, &["ingest", d, c, "--json"]));
    assert_eq!(third["unchanged"], 13);
    assert_eq!(third["chunks"], 1, "only the changed file's chunk");
    assert_eq!(third["embedded"], 1, "only the changed text is embedded");

    let q = json(&rag(&data, &["query", "At what temperature is oolong brewed?", "--json"]));
    keys(&q, &["answer", "generator", "citations", "timings_ms"]);
    assert_eq!(q["generator"], "extractive");
    assert!(q["answer"].as_str().unwrap().contains("90 degrees"), "{q}");
    let cit = &q["citations"][0];
    keys(cit, &["number", "chunk_id", "doc_id", "score", "text", "span"]);
    // Every [n] in the answer names a listed citation's number.
    let numbers: Vec<u64> = q["citations"].as_array().unwrap().iter().map(|c| c["number"].as_u64().unwrap()).collect();
    let answer = q["answer"].as_str().unwrap();
    for n in answer.split('[').skip(1).filter_map(|p| p.split(']').next()?.parse::<u64>().ok()) {
        assert!(numbers.contains(&n), "answer cites [{n}] but citations are {numbers:?}: {answer}");
    }
    assert_eq!(cit["doc_id"], "docs/tea.txt");
    assert!(q["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    // The ranked hits that fed the context, beside the citations.
    let hits = q["hits"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 5, "{q}");
    keys(&hits[0], &["rank", "chunk_id", "doc_id", "score", "span"]);
    assert_eq!(hits[0]["rank"], 1);
    assert!(hits.iter().any(|h| h["chunk_id"] == cit["chunk_id"]), "the cited chunk is a hit");

    // `rag search` ranks without generating; `rag delete` removes a document everywhere.
    let found = json(&rag(&data, &["search", "oolong temperature", "--k", "3", "--json"]));
    assert_eq!(found["hits"][0]["doc_id"], "docs/tea.txt", "{found}");
    assert!(found.get("answer").is_none());
    let deleted = json(&rag(&data, &["delete", "docs/tea.txt", "--json"]));
    assert_eq!(deleted["deleted"], "docs/tea.txt");
    let found = json(&rag(&data, &["search", "oolong temperature", "--k", "3", "--json"]));
    assert!(found["hits"].as_array().unwrap().iter().all(|h| h["doc_id"] != "docs/tea.txt"), "{found}");
    let missing = rag(&data, &["delete", "docs/tea.txt"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("docs/tea.txt"));
    // Re-ingest restores it (the manifest forgot it, so it is not "unchanged").
    assert_eq!(json(&rag(&data, &["ingest", d, c, "--json"]))["chunks"], 1);

    // Bad values are refused, naming the input and what is allowed.
    let bad_k = rag(&data, &["query", "tea", "--k", "0"]);
    let err = String::from_utf8_lossy(&bad_k.stderr);
    assert!(!bad_k.status.success() && err.contains("1 to 1000"), "{err}");
    let typo = rag(&data, &["--set", "store.chroma.mode=htpp", "stats"]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success() && err.contains("htpp") && err.contains("persistent"), "{err}");
    let typo = rag(&data, &["query", "tea", "--mode", "hybird"]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success() && err.contains("hybird") && err.contains("bm25"), "{err}");

    let filtered = json(&rag(&data, &["query", "milk latte", "--where", "title=Coffee", "--json"]));
    assert!(filtered["citations"].as_array().unwrap().iter().all(|c| c["doc_id"] == "docs/notes.md"), "{filtered}");

    let s = json(&rag(&data, &["stats", "--json"]));
    keys(&s, &["chunks", "documents", "collection", "embedder_max_tokens", "chunks_over_embedder_limit"]);
    assert_eq!(s["documents"], 14);
    assert_eq!(s["embedder_max_tokens"], 256, "MiniLM's window");
    assert_eq!(s["chunks_over_embedder_limit"], 0, "the default chunking fits the embedder: {s}");
    assert_eq!(s["chunks"], s["keyword_chunks"], "vector store and keyword index agree");

    let streamed = rag(&data, &["query", "How is espresso made?", "--stream"]);
    assert!(streamed.status.success());
    assert!(String::from_utf8_lossy(&streamed.stdout).contains("nine bars"));

    // --prune removes what disappeared from the folder (and keeps the JSONL corpus).
    std::fs::remove_file(docs.join("notes.md")).unwrap();
    let pruned = json(&rag(&data, &["ingest", d, c, "--prune", "--json"]));
    assert_eq!(pruned["removed"], 1);
    assert_eq!(json(&rag(&data, &["stats", "--json"]))["documents"], 13);
}

#[test]
fn eval_and_bench_print_their_json() {
    let tmp = tempfile::tempdir().unwrap();
    // A small BEIR dataset: 60 SciFact documents and the test queries judged against them.
    let ds = tmp.path().join("mini");
    std::fs::create_dir_all(ds.join("qrels")).unwrap();
    let corpus = scifact_slice(tmp.path(), 60);
    std::fs::copy(&corpus, ds.join("corpus.jsonl")).unwrap();
    let ids: std::collections::HashSet<String> = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap().to_owned())
        .collect();
    let qrels = std::fs::read_to_string(scifact().join("qrels/test.tsv")).unwrap();
    let kept: Vec<&str> = qrels.lines().skip(1).filter(|l| l.split('\t').nth(1).is_some_and(|d| ids.contains(d))).collect();
    assert!(kept.len() >= 3, "the slice has judged documents");
    std::fs::write(ds.join("qrels/test.tsv"), format!("query-id\tcorpus-id\tscore\n{}\n", kept.join("\n"))).unwrap();
    std::fs::copy(scifact().join("queries.jsonl"), ds.join("queries.jsonl")).unwrap();
    let data = tmp.path().join("data");
    let e = json(&rag(&data, &["eval", "--dataset", ds.to_str().unwrap(), "--mode", "hybrid", "--json"]));
    keys(&e, &["ndcg_at_10", "recall_at_100", "mrr_at_10", "queries"]);
    assert_eq!(
        e["queries"].as_u64().unwrap() as usize,
        kept.iter().map(|l| l.split('\t').next().unwrap()).collect::<std::collections::HashSet<_>>().len()
    );
    assert!(e["ndcg_at_10"].as_f64().unwrap() > 0.5, "60 documents, judged queries: retrieval finds them: {e}");
    let again = json(&rag(&data, &["eval", "--dataset", ds.to_str().unwrap(), "--retriever", "bm25", "--json"]));
    assert_eq!(again["ingest"]["unchanged"], 60, "the corpus is reused");
    let b = json(&rag(
        &data,
        &["bench", "--dataset", ds.to_str().unwrap(), "--docs", "20", "--queries", "10", "--concurrency", "1,4", "--json"],
    ));
    keys(&b, &["documents", "ingest_docs_per_s", "ingest", "levels"]);
    let levels = b["levels"].as_array().unwrap();
    assert_eq!(levels.iter().map(|l| l["concurrency"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 4], "{b}");
    for l in levels {
        keys(l, &["p50_ms", "p95_ms", "p99_ms", "qps", "mean_embed_batch", "embed_calls", "cpu_ms_per_query"]);
        // CPU time is counted in 10 ms ticks: ten queries may round to nothing, never below it.
        assert!(l["cpu_ms_per_query"].as_f64().unwrap() >= 0.0, "{l}");
        assert!(l["p50_ms"].as_f64().unwrap() <= l["p99_ms"].as_f64().unwrap());
        assert_eq!(l["queries"], 10);
        // Every query embeds its question once, through the batcher.
        assert!(l["embed_calls"].as_u64().unwrap() >= 1 && l["embed_calls"].as_u64().unwrap() <= 10, "{l}");
    }
    // One at a time, each call carries one question.
    assert_eq!(levels[0]["mean_embed_batch"].as_f64().unwrap(), 1.0, "{b}");
    // The model's own batched throughput is measured in the same run, as the ceiling.
    assert!(b["model_ceiling_qps"].as_f64().unwrap() > 0.0, "{b}");
    // ... with what it costs the machine a query (256 questions: well over one clock tick).
    assert!(b["model_cpu_ms_per_query"].as_f64().unwrap() > 0.0, "{b}");
    // The model loads before the ingest is timed, and the load is reported apart.
    assert!(b["model_load_seconds"].as_f64().unwrap() > 0.0, "{b}");
}

#[test]
fn bad_inputs_are_reported_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let good = tmp.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"_id\": \"a\", \"title\": \"Alpha\", \"text\": \"alpha particles\"}\n{\"_id\": \"b\", \"text\": \"beta decay\"}\n",
    )
    .unwrap();
    let mut args = BM25_ONLY.to_vec();
    // Query on an empty collection: a clear message and a non-zero exit.
    args.extend(["query", "anything"]);
    let out = rag(&data, &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty") && err.contains("rag ingest"), "{err}");

    let ingest = |paths: &[&Path]| {
        let mut a: Vec<String> = BM25_ONLY.iter().map(|s| s.to_string()).collect();
        a.push("ingest".into());
        a.extend(paths.iter().map(|p| p.display().to_string()));
        a.push("--json".into());
        rag(&data, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(json(&ingest(&[&good]))["documents"], 2);
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"_id\": \"c\", \"text\": \"fine\"}\n{\"_id\": \"d\", \"text\": \n").unwrap();
    let out = ingest(&[&bad]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2") && err.contains("malformed JSON"), "{err}");
    let mut stats = BM25_ONLY.to_vec();
    stats.extend(["stats", "--json"]);
    let s = json(&rag(&data, &stats));
    assert_eq!(
        (s["documents"].as_u64(), s["chunks"].as_u64()),
        (Some(2), Some(2)),
        "nothing stored was lost, nothing half-written: {s}"
    );

    let folder = tmp.path().join("mixed");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("ok.txt"), "gamma rays").unwrap();
    std::fs::write(folder.join("empty.txt"), "").unwrap();
    std::fs::write(folder.join("latin1.txt"), b"caf\xe9").unwrap();
    let r = json(&ingest(&[&folder]));
    assert_eq!(r["documents"], 1);
    let skipped = r["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{r}");
    assert!(skipped.iter().any(|s| s["reason"].as_str().unwrap().contains("invalid UTF-8")));
    assert!(skipped.iter().any(|s| s["reason"] == "empty file"));

    for (args, needle) in [
        (vec!["query", "x", "--where", "year>>2"], "--where"),
        (vec!["--set", "retrieval.kk=3", "stats"], "retrieval.kk"),
        // `--retriever` is the old name of `--mode`, still read.
        (vec!["query", "x", "--retriever", "fuzzy"], "fuzzy"),
        (vec!["ingest", "/no/such/path"], "/no/such/path"),
    ] {
        let out = rag(&data, &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_50_mb_file_is_ingested_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    let mut n = 0usize;
    let mut i = 0u64;
    while n < 50 * 1024 * 1024 {
        let line = format!("Sentence {i} talks about topic {} and measurement {}. ", i % 97, i * 7 % 1013);
        n += line.len();
        f.write_all(line.as_bytes()).unwrap();
        i += 1;
        if i.is_multiple_of(40) {
            f.write_all(b"\n\n").unwrap();
            n += 2;
        }
    }
    f.flush().unwrap();
    drop(f);
    let data = tmp.path().join("data");
    let mut args = BM25_ONLY.to_vec();
    let p = big.display().to_string();
    args.extend(["ingest", &p, "--json"]);
    let r = json(&rag(&data, &args));
    assert_eq!(r["documents"], 1);
    let chunks = r["chunks"].as_u64().unwrap();
    assert!(chunks > 50_000, "{r}");
    let peak = r["peak_rss_mb"].as_f64().unwrap();
    // The text itself is 50 MiB; chunk texts and the index writer's 64 MB budget come on top.
    assert!(peak < 700.0, "peak RSS {peak:.0} MiB for a 50 MiB file");
    let mut q = BM25_ONLY.to_vec();
    q.extend(["query", "topic 42 measurement", "--json"]);
    assert!(!json(&rag(&data, &q))["citations"].as_array().unwrap().is_empty());
}

fn snapshot(data: &Path) -> (Value, Vec<String>) {
    let s = json(&rag(data, &["stats", "--json"]));
    let mut ids = Vec::new();
    for q in ["vitamin D and bone health", "cancer cell proliferation", "immune response to infection"] {
        let r = json(&rag(data, &["query", q, "--k", "10", "--json"]));
        ids.extend(r["citations"].as_array().unwrap().iter().map(|c| c["chunk_id"].as_str().unwrap().to_owned()));
    }
    (serde_json::json!({"documents": s["documents"], "chunks": s["chunks"], "keyword_chunks": s["keyword_chunks"]}), ids)
}

#[test]
fn a_killed_ingest_rerun_equals_a_clean_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = scifact_slice(tmp.path(), 120);
    let c = corpus.to_str().unwrap();
    let clean = tmp.path().join("clean");
    json(&rag(&clean, &["ingest", c, "--json"]));
    let expected = snapshot(&clean);

    let killed = tmp.path().join("killed");
    // The ingest dies (abort, as a kill would) right after its first batch of 64 documents is
    // written: driven by a count through the CLI's fault hook, not by how fast this machine is.
    let status = Command::new(env!("CARGO_BIN_EXE_rag"))
        .arg("--data-dir")
        .arg(&killed)
        .args(["ingest", c, "--json"])
        .env("RAG_TEST_ABORT_AFTER_DOCS", "40")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the ingest was aborted");
    let partial = json(&rag(&killed, &["stats", "--json"]));
    assert!(partial["documents"].as_u64().unwrap() < 120, "the kills landed mid-ingest: {partial}");
    let rerun = json(&rag(&killed, &["ingest", c, "--json"]));
    assert_eq!(rerun["documents"], 120);
    let got = snapshot(&killed);
    assert_eq!(got.0, expected.0, "same counts: no duplicates, nothing missing");
    assert_eq!(got.1, expected.1, "same retrieval results");
    let again = json(&rag(&killed, &["ingest", c, "--json"]));
    assert_eq!(again["unchanged"], 120);
}

/// `rag ingest folder/` with PDF, HTML, DOCX, Markdown and text on the embedded default
/// (ChromaDB + MiniLM): every format answers, a PDF citation names its page, bad files are
/// reported and skipped.
#[test]
fn a_mixed_folder_ingests_end_to_end_with_page_citations() {
    use rag_testkit::documents::{DocxBlock, docx, image_only_pdf, pdf, pdf_lines};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("library");
    std::fs::create_dir_all(&docs).unwrap();
    let pages: Vec<_> = [
        "Volcanoes form where tectonic plates pull apart or collide.",
        "Mount Etna in Sicily erupts more often than any other volcano in Europe.",
        "Basaltic lava flows cool into hexagonal columns.",
    ]
    .iter()
    .map(|fact| {
        let mut runs = pdf_lines(72.0, 760.0, &["Field Notes on Volcanology"]);
        runs.extend(pdf_lines(72.0, 690.0, &[fact]));
        runs
    })
    .collect();
    std::fs::write(docs.join("volcanoes.pdf"), pdf(Some("Volcanoes"), &pages)).unwrap();
    std::fs::write(
        docs.join("rivers.html"),
        "<html><head><meta charset=\"utf-8\"><title>Rivers</title></head><body><nav>Menu</nav><main>\
         <h1>Rivers</h1><p>The Nile flows north into the Mediterranean Sea.</p></main></body></html>",
    )
    .unwrap();
    std::fs::write(
        docs.join("forests.docx"),
        docx(
            "Forests",
            &[DocxBlock::Heading(1, "Forests".into()), DocxBlock::Paragraph("Boreal forests ring the Arctic.".into())],
        ),
    )
    .unwrap();
    std::fs::write(docs.join("deserts.md"), "# Deserts\n\nThe Atacama is the driest desert on Earth.").unwrap();
    std::fs::write(docs.join("caves.txt"), "Stalactites hang from the ceilings of limestone caves.").unwrap();
    std::fs::write(docs.join("scan.pdf"), image_only_pdf(1)).unwrap();
    let d = docs.to_str().unwrap();

    let r = json(&rag(&data, &["ingest", d, "--json"]));
    assert_eq!(r["documents"], 5, "{r}");
    let skipped = r["skipped"].as_array().unwrap();
    assert!(skipped.len() == 1 && skipped[0]["reason"].as_str().unwrap().contains("OCR is not supported"), "{r}");

    for (question, doc) in [
        ("Which volcano erupts most often in Europe?", "library/volcanoes.pdf"),
        ("Which way does the Nile flow?", "library/rivers.html"),
        ("Where are boreal forests?", "library/forests.docx"),
        ("What is the driest desert?", "library/deserts.md"),
        ("What hangs from cave ceilings?", "library/caves.txt"),
    ] {
        let q = json(&rag(&data, &["query", question, "--json"]));
        assert_eq!(q["citations"][0]["doc_id"], doc, "{question}: {q}");
    }
    let q = json(&rag(&data, &["query", "Which volcano erupts most often in Europe?", "--json"]));
    assert_eq!(q["citations"][0]["pages"], serde_json::json!({"first": 2, "last": 2}), "{q}");
    // The source is the file under its ingest root, never the absolute path it was read from.
    assert_eq!(q["citations"][0]["source"], "library/volcanoes.pdf", "{q}");
    assert_eq!(q["citations"][0]["title"], "Volcanoes", "{q}");
    assert!(q["answer"].as_str().unwrap().contains("Etna"), "{q}");
    let plain = rag(&data, &["query", "Which volcano erupts most often in Europe?"]);
    let out = String::from_utf8_lossy(&plain.stdout);
    assert!(
        out.contains("[1] Volcanoes p. 2 (library/volcanoes.pdf"),
        "a citation is labelled by its title and page, then its id: {out}"
    );
    assert!(!out.contains("Field Notes on Volcanology"), "the running header is not content: {out}");
}

/// `rag eval --answers` scores the configured generator's answers (extractive here, no model):
/// citation precision and recall against the gold documents; `rag optimize` refuses a bad
/// trainset line by file and line, and a configuration without a language model, before any work.
#[test]
fn answer_eval_and_optimize_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("tiny");
    std::fs::create_dir_all(ds.join("qrels")).unwrap();
    std::fs::write(
        ds.join("corpus.jsonl"),
        "{\"_id\": \"vitd\", \"title\": \"Vitamin D\", \"text\": \"Vitamin D supplementation lowers the risk of hip fractures.\"}\n\
         {\"_id\": \"tea\", \"title\": \"Tea\", \"text\": \"Green tea is brewed at eighty degrees.\"}\n",
    )
    .unwrap();
    std::fs::write(ds.join("queries.jsonl"), "{\"_id\": \"q1\", \"text\": \"hip fractures and vitamin D\"}\n").unwrap();
    std::fs::write(ds.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\nq1\tvitd\t1\n").unwrap();
    let data = tmp.path().join("data");
    let d = ds.to_str().unwrap();
    let mut args = BM25_ONLY.to_vec();
    args.extend(["--set", "retrieval.k=1", "eval", "--dataset", d, "--answers", "--json"]);
    let r = json(&rag(&data, &args));
    keys(&r, &["examples", "exact_match", "f1", "citation_precision", "citation_recall", "generator", "seconds"]);
    assert_eq!(r["examples"], 1);
    assert_eq!((r["citation_precision"].as_f64(), r["citation_recall"].as_f64()), (Some(1.0), Some(1.0)), "{r}");
    assert!(r["f1"].is_null(), "no gold answers, no F1: {r}");

    let bad = tmp.path().join("train.jsonl");
    std::fs::write(&bad, "{\"question\": \"a?\", \"answer\": \"b\"}\n{\"question\": \"c?\", \"anwser\": \"d\"}\n").unwrap();
    let out = rag(&data, &["optimize", "--trainset", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train.jsonl line 2") && err.contains("anwser"), "{err}");
    let mut args = BM25_ONLY.to_vec();
    args.extend(["optimize", "--trainset", d, "--train", "1", "--dev", "1"]);
    let out = rag(&data, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("generator.lm"), "{err}");
}
