//! `rag tune` on a BEIR set made so that one kind of setting clearly wins: each document is a
//! long filler paragraph shared by all (so their embeddings are nearly alike) plus one made-up
//! six-digit record number, and each query is a number. Keyword search finds the code; dense search cannot
//! tell the documents apart. Starting from `retrieval.mode = dense`, tune must leave dense, show
//! a gain whose interval excludes 0, split the queries into disjoint halves, and `--apply` must
//! write exactly the changed keys, keeping the file's comments. Needs `make setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const FILLER: &str = "The committee reviewed the quarterly operating report, discussed staffing, budgets and \
    facilities, approved the minutes of the previous meeting and agreed to meet again next month.";

fn code(i: usize) -> String {
    // Six digits: one token to BM25, a few shared word pieces to MiniLM (so dense mixes them up).
    format!("{}", 100_000 + (i * 7919) % 900_000)
}

fn beir(dir: &Path, n: usize) -> std::path::PathBuf {
    let out = dir.join("codes");
    std::fs::create_dir_all(out.join("qrels")).unwrap();
    let mut corpus = std::fs::File::create(out.join("corpus.jsonl")).unwrap();
    let mut queries = std::fs::File::create(out.join("queries.jsonl")).unwrap();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for i in 0..n {
        let text = format!("{FILLER} Record {}. {FILLER}", code(i));
        writeln!(corpus, "{}", serde_json::json!({"_id": format!("d{i}"), "title": "", "text": text})).unwrap();
        writeln!(queries, "{}", serde_json::json!({"_id": format!("q{i}"), "text": code(i)})).unwrap();
        qrels.push_str(&format!("q{i}\td{i}\t1\n"));
    }
    std::fs::write(out.join("qrels/test.tsv"), qrels).unwrap();
    out
}

fn rag(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rag")).current_dir(dir).arg("--data-dir").arg(dir.join("data")).args(args).output().unwrap()
}

#[test]
fn tune_leaves_a_clearly_worse_setting_and_applies_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = beir(tmp.path(), 64);
    let config = tmp.path().join("rag.toml");
    std::fs::write(&config, "# my settings\n[retrieval]\nmode = \"dense\" # what we run today\nk = 5\n").unwrap();
    let plots = tmp.path().join("plots");
    let page = tmp.path().join("tune.html");
    let args = ["--json", "--config", config.to_str().unwrap(), "tune", "--dataset", data.to_str().unwrap(), "--apply", "--plot"];
    let out = rag(tmp.path(), &[&args[..], &[plots.to_str().unwrap(), "--report", page.to_str().unwrap()]].concat());
    assert!(out.status.success(), "rag tune failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["report"];

    // The split: seeded, disjoint, every judged query in one half.
    let a: BTreeSet<&str> = r["tune_queries"].as_array().unwrap().iter().map(|q| q.as_str().unwrap()).collect();
    let b: BTreeSet<&str> = r["report_queries"].as_array().unwrap().iter().map(|q| q.as_str().unwrap()).collect();
    assert_eq!((a.len(), b.len()), (32, 32), "{r}");
    assert!(a.is_disjoint(&b));
    assert_eq!(r["seed"], 42);

    // Dense cannot tell the documents apart; the chosen setting finds the codes.
    assert_eq!(r["current"]["settings"]["mode"], "dense");
    let chosen = &r["chosen"];
    assert_ne!(chosen["settings"]["mode"], "dense", "{chosen}");
    let (cur, best) = (r["current"]["report"]["ndcg_at_10"].as_f64().unwrap(), chosen["report"]["ndcg_at_10"].as_f64().unwrap());
    assert!(best > 0.9 && best > cur + 0.3, "chosen {best} vs current {cur}");
    let d = &r["difference"];
    assert!(d["low"].as_f64().unwrap() > 0.0, "a large difference's interval excludes 0: {d}");
    assert!(r["warnings"].as_array().unwrap().is_empty(), "{r}");
    let settings = r["settings"].as_array().unwrap();
    assert!(settings.len() > 20 && settings.iter().any(|s| s["pareto"] == true));
    // The other query precision (fp32: int8 is the default), tried once on the best dense or
    // hybrid setting.
    let fp32: Vec<&Value> = settings.iter().filter(|s| s["query_precision"] == "fp32").collect();
    assert_eq!(fp32.len(), 1, "{r}");
    assert_ne!(fp32[0]["settings"]["mode"], "bm25");
    assert!(fp32[0]["label"].as_str().unwrap().ends_with(" + fp32 queries"), "{}", fp32[0]["label"]);
    for s in settings {
        assert!(s["p50_ms"].as_f64().unwrap() > 0.0 && s["p99_ms"].as_f64().unwrap() >= s["p50_ms"].as_f64().unwrap());
    }

    // The picture: an SVG with every setting and both marks, a PNG of the stated size.
    let svg = std::fs::read_to_string(plots.join("tune-pareto.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.len() > 10_000, "{} bytes", svg.len());
    assert!(svg.matches("<circle").count() >= settings.len(), "a point a setting");
    assert!(svg.contains("Pareto front") && svg.contains("chosen: ") && svg.contains("current: dense"));
    let png = std::fs::read(plots.join("tune-pareto.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (960, 600));
    assert!(png.len() > 20_000, "a PNG with content: {} bytes", png.len());
    assert_eq!(v["plots"].as_array().unwrap().len(), 2);
    // The page: the choice, the same plot inline, a row a setting with the chosen one marked.
    assert_eq!(v["html"], page.to_str().unwrap());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<figure id=\"pareto\"><svg") && html.matches("<circle").count() >= settings.len());
    assert_eq!(html.matches("<tr><td>").count(), settings.len(), "a row a setting");
    assert!(html.contains(&format!("chosen: <b>{}</b>", chosen["label"].as_str().unwrap())), "{html}");
    assert_eq!(html.matches("<td>chosen</td>").count(), 1);
    assert!(!html.contains("<script"), "a page without scripts");

    // --apply: exactly the keys that differ from the current settings, comments kept.
    assert_eq!(v["applied"], config.to_str().unwrap());
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.starts_with("# my settings") && written.contains("k = 5"), "{written}");
    let table: toml::Table = toml::from_str(&written).unwrap();
    let retrieval = table["retrieval"].as_table().unwrap();
    assert_eq!(retrieval["mode"].as_str(), chosen["settings"]["mode"].as_str());
    let defaults = serde_json::json!({"fusion": "convex", "candidates": 100, "alpha": 0.5, "rrf_k": 60.0});
    for (key, default) in defaults.as_object().unwrap() {
        let differs = chosen["settings"][key] != *default;
        assert_eq!(retrieval.contains_key(key), differs, "{key}: {written}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("+mode = "), "the change is shown first");

    // Tuning again from the applied file: the current settings are now the chosen ones.
    let again = rag(
        tmp.path(),
        &["--json", "--config", config.to_str().unwrap(), "tune", "--dataset", data.to_str().unwrap(), "--limit", "40"],
    );
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["report"]["current"]["settings"]["mode"], chosen["settings"]["mode"]);
    let warnings = v["report"]["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("too few")), "20 report queries are too few: {warnings:?}");
}

/// A keyword-only set where chunking decides: each relevant document names its two query terms
/// twenty words apart, and two distractors repeat one of them.
fn split_terms(dir: &Path, n: usize) -> std::path::PathBuf {
    let out = dir.join("terms");
    std::fs::create_dir_all(out.join("qrels")).unwrap();
    let filler = "the committee reviewed the report discussed staffing budgets and facilities approved the minutes and agreed to meet again next month";
    let (mut corpus, mut queries, mut qrels) = (String::new(), String::new(), String::from("query-id\tcorpus-id\tscore\n"));
    for i in 0..n {
        for (id, text) in [
            (format!("r{i}"), format!("alpha{i} {filler} beta{i}")),
            (format!("a{i}"), format!("alpha{i} alpha{i} {filler}")),
            (format!("b{i}"), format!("beta{i} beta{i} {filler}")),
        ] {
            corpus.push_str(&format!("{}\n", serde_json::json!({"_id": id, "title": "", "text": text})));
        }
        queries.push_str(&format!("{}\n", serde_json::json!({"_id": format!("q{i}"), "text": format!("alpha{i} beta{i}")})));
        qrels.push_str(&format!("q{i}\tr{i}\t1\n"));
    }
    std::fs::write(out.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(out.join("queries.jsonl"), queries).unwrap();
    std::fs::write(out.join("qrels/test.tsv"), qrels).unwrap();
    out
}

/// `--reingest` with a real (randomly initialised, so harmful) cross-encoder configured: tune
/// ingests each chunking into its own collection, tries reranking at each depth on each
/// chunking's best first stage, and writes back the wide windows and reranking off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_reingest_compares_chunkings_and_reranking_and_applies_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("cross-encoder");
    rag_testkit::models::build_tiny_cross_encoder(&model).await.unwrap();
    let data = split_terms(tmp.path(), 40);
    let config = tmp.path().join("rag.toml");
    let toml = format!(
        "[store]\nbackend = \"none\"\n[retrieval]\nmode = \"bm25\"\n[chunker]\nkind = \"token\"\nchunk_size = 8\noverlap = 0\n\
         [rerank]\nenabled = true\ninitial_k = 30\n[rerank.cross-encoder]\nmodel = {:?}\n",
        model.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let cfg = config.to_str().unwrap();
    let args = [
        "--json",
        "--config",
        cfg,
        "tune",
        "--dataset",
        data.to_str().unwrap(),
        "--reingest",
        "--chunk-sizes",
        "8,256",
        "--apply",
    ];
    let out = rag(tmp.path(), &args);
    assert!(out.status.success(), "rag tune failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["report"];
    let settings = r["settings"].as_array().unwrap();
    // Four chunkings (8/0 current, 8/1, 256/0, 256/32), each bm25 alone and reranked at 20, 30
    // (the configuration's depth), 50 and 100; the current setting (8/0 bm25 reranked at 30) is
    // one of them.
    let chunkings: BTreeSet<(u64, u64)> = settings
        .iter()
        .map(|s| (s["chunking"]["chunk_size"].as_u64().unwrap(), s["chunking"]["overlap"].as_u64().unwrap()))
        .collect();
    assert_eq!(chunkings, BTreeSet::from([(8, 0), (8, 1), (256, 0), (256, 32)]), "{r}");
    assert_eq!(settings.len(), 20, "{r}");
    assert_eq!(settings.iter().filter(|s| s["rerank"]["enabled"] == true).count(), 16);
    assert_eq!(r["current"]["label"], "token 8/0 | bm25 + rerank 30");
    let chosen = &r["chosen"];
    assert_eq!(
        (chosen["chunking"]["chunk_size"].as_u64(), &chosen["rerank"]["enabled"]),
        (Some(256), &Value::Bool(false)),
        "{chosen}"
    );
    assert!(chosen["report"]["ndcg_at_10"].as_f64().unwrap() > 0.95, "{chosen}");
    // One collection a chunking, named after it.
    let collections: BTreeSet<String> = std::fs::read_dir(tmp.path().join("data/collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in ["terms", "terms-token-8-1", "terms-token-256-0", "terms-token-256-32"] {
        assert!(collections.contains(name), "{name} in {collections:?}");
    }
    // --apply: the wide window and reranking off, in their own tables; the rest kept.
    let written: rag::RagConfig = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!((written.chunker.chunk_size, written.rerank.enabled), (256, false));
    assert_eq!(written.retrieval.mode, rag::RetrievalMode::Bm25);
    assert!(written.rerank.cross_encoder.model.is_some());
    // A corpus-less folder cannot be chunked again; a silly size is refused by name.
    std::fs::remove_file(data.join("corpus.jsonl")).unwrap();
    let out = rag(tmp.path(), &["--config", cfg, "tune", "--dataset", data.to_str().unwrap(), "--reingest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--reingest") && err.contains("corpus.jsonl"), "{err}");
    let out =
        rag(tmp.path(), &["--config", cfg, "tune", "--dataset", data.to_str().unwrap(), "--reingest", "--chunk-sizes", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--chunk-sizes"), "{err}");
}

/// `embedder.onnx.query_precision = "int8"` (what `rag tune` may choose): queries go through
/// the int8 export against the fp32 vectors already stored, so nothing is re-embedded, and dense
/// search still finds the passage. Set with another embedder, it is refused by name.
#[test]
fn int8_queries_search_fp32_documents_without_reembedding() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("notes.jsonl");
    let docs = [
        ("bone", "Vitamin D supports bone health and calcium absorption."),
        ("heart", "Statins lower cholesterol and cardiovascular risk."),
    ];
    let lines: Vec<String> =
        docs.iter().map(|(id, text)| serde_json::json!({"_id": id, "title": "", "text": text}).to_string()).collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    // fp32 documents (int8 is the default precision), then int8 queries against them.
    let fp32 = ["--set", "embedder.onnx.precision=fp32", "--json"];
    let ingest = rag(tmp.path(), &[&fp32[..], &["ingest", corpus.to_str().unwrap()]].concat());
    assert!(ingest.status.success(), "{}", String::from_utf8_lossy(&ingest.stderr));
    let int8 = ["--set", "embedder.onnx.precision=fp32", "--set", "embedder.onnx.query_precision=int8", "--json"];
    let again: Value =
        serde_json::from_slice(&rag(tmp.path(), &[&int8[..], &["ingest", corpus.to_str().unwrap()]].concat()).stdout).unwrap();
    assert_eq!((again["unchanged"].as_u64(), again["embedded"].as_u64()), (Some(2), Some(0)), "{again}");
    let stats: Value = serde_json::from_slice(&rag(tmp.path(), &[&int8[..], &["stats"]].concat()).stdout).unwrap();
    let backends = &stats["backends"];
    assert!(backends["embedder"].as_str().unwrap().contains("onnx fp32"), "{backends}");
    assert!(backends["query_embedder"].as_str().unwrap().contains("onnx int8"), "{backends}");
    for (question, expected) in [("bone calcium", "bone"), ("cholesterol drugs", "heart")] {
        let out = rag(tmp.path(), &[&int8[..], &["search", question, "--mode", "dense", "--k", "1"]].concat());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["hits"][0]["doc_id"], expected, "{v}");
    }
    let out = rag(tmp.path(), &["--set", "embedder.backend=openai", "--set", "embedder.onnx.query_precision=int8", "stats"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("embedder.onnx.query_precision"), "{err}");
}

#[test]
fn tune_refuses_a_dataset_without_judged_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rag(tmp.path(), &["tune", "--dataset", tmp.path().join("missing").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eval_report_opens_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = beir(tmp.path(), 40);
    // A query whose text is HTML: the page must show it, not run it.
    let queries = std::fs::read_to_string(data.join("queries.jsonl")).unwrap();
    let hostile = serde_json::json!({"_id": "q0", "text": format!("{} <script>window.pwned = 1</script>", code(0))});
    let rest: Vec<&str> = queries.lines().skip(1).collect();
    std::fs::write(data.join("queries.jsonl"), format!("{hostile}\n{}\n", rest.join("\n"))).unwrap();
    let html = tmp.path().join("report.html");
    let out = rag(
        tmp.path(),
        &["--json", "eval", "--dataset", data.to_str().unwrap(), "--mode", "dense", "--report", html.to_str().unwrap()],
    );
    assert!(out.status.success(), "rag eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("per_query").is_none(), "the JSON keeps its keys");

    let browser = rag_testkit::browser::Browser::launch();
    let mut page = browser.open(&format!("file://{}", html.display())).await;
    page.wait_for("document.querySelectorAll('#queries tbody tr').length > 0", std::time::Duration::from_secs(20)).await;
    assert_eq!(page.eval("document.querySelectorAll('#queries tbody tr').length").await, 40);
    let scores = page.eval("[...document.querySelectorAll('#queries tbody tr')].map(r => Number(r.dataset.ndcg))").await;
    let scores: Vec<f64> = scores.as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "worst queries first: {scores:?}");
    assert!(scores[0] < scores[39], "dense mixes up the numbers, so the scores differ: {scores:?}");
    let shown = page.eval("document.getElementById('ndcg').textContent").await;
    assert_eq!(shown.as_str().unwrap(), format!("{:.4}", v["ndcg_at_10"].as_f64().unwrap()));
    // The histogram: an inline SVG with its bars, drawn at a real size.
    let bars = page.eval("document.querySelectorAll('#histogram svg rect').length").await.as_u64().unwrap();
    assert!(bars >= 10, "{bars} rects");
    let width = page.eval("document.querySelector('#histogram svg').getBoundingClientRect().width").await.as_f64().unwrap();
    assert!(width > 300.0, "the plot is shown ({width} px wide)");
    // Each row lists ten retrieved documents and the judged one, marked found or missed.
    assert_eq!(page.eval("document.querySelectorAll('#queries tbody tr')[0].querySelectorAll('ol li').length").await, 10);
    let judged = page.eval("[...document.querySelectorAll('#queries tbody tr ul li')].map(li => li.className)").await;
    let judged: Vec<&str> = judged.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(judged.len(), 40);
    assert!(judged.contains(&"missed") || judged.contains(&"found"));
    // The hostile query is text.
    assert_eq!(page.eval("window.pwned === undefined && document.querySelectorAll('script').length === 0").await, true);
    let row = page
        .eval("[...document.querySelectorAll('#queries tbody tr td:first-child')].map(td => td.textContent).join('\\n')")
        .await;
    assert!(row.as_str().unwrap().contains("<script>window.pwned = 1</script>"), "shown as text");
}
