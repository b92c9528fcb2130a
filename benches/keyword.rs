//! Keyword search on SciFact: QPS of the tantivy `KeywordIndex` beside the Python library bm25s
//! on the same corpus and queries in the same run, with nDCG@10 of both (same task, same quality
//! check). Both use English stop words and Snowball stemming.
//!
//! `cargo bench --bench keyword`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use rag::KeywordIndex;
use rag::eval::BeirDataset;
use rag_core::metrics::ndcg_at_k;
use rag_core::{Chunk, MetadataValue};

fn main() {
    let dataset = std::env::var_os("RAG_SCIFACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets/scifact")));
    let data = BeirDataset::load(&dataset).unwrap();
    let docs: Vec<rag_core::Document> =
        rag::sources::JsonlReader::open(&dataset.join("corpus.jsonl")).unwrap().map(Result::unwrap).collect();
    let queries: Vec<(String, String)> = data.qrels.keys().map(|q| (q.clone(), data.queries[q].clone())).collect();

    let dir = tempfile::tempdir().unwrap();
    let index = KeywordIndex::open(Some(dir.path()), &Default::default()).unwrap();
    let t = Instant::now();
    let chunks: Vec<Chunk> = docs
        .iter()
        .map(|d| {
            let mut c = Chunk::new(d.id.clone(), d.id.clone(), d.text.clone());
            if let Some(MetadataValue::Str(t)) = d.metadata.get("title") {
                c.metadata.insert("title".into(), MetadataValue::Str(t.clone()));
            }
            c
        })
        .collect();
    index.upsert(&chunks).unwrap();
    index.commit().unwrap();
    let index_s = t.elapsed().as_secs_f64();

    // Three ways to answer, one query at a time: the full search (stored chunks read and
    // decoded for every hit), the fast path (ids and scores from the fast field: what bm25s
    // returns, and what hybrid fusion needs), and the fast path plus the texts of the k.
    type Run<'a> = Box<dyn Fn(&str) -> Vec<String> + 'a>;
    let ways: [(&str, Run); 3] = [
        (
            "rag KeywordIndex, full chunks",
            Box::new(|q| index.search(q, 10, None).unwrap().into_iter().map(|h| h.chunk.doc_id).collect()),
        ),
        (
            "rag KeywordIndex, fast path (ids)",
            Box::new(|q| index.search_ids(q, 10).unwrap().into_iter().map(|(id, _)| id).collect()),
        ),
        (
            "rag fast path + texts of the k",
            Box::new(|q| {
                let ids: Vec<String> = index.search_ids(q, 10).unwrap().into_iter().map(|(id, _)| id).collect();
                index.chunks_by_id(&ids).unwrap().into_iter().map(|c| c.doc_id).collect()
            }),
        ),
    ];
    println!("SciFact: {} documents, {} test queries, k = 10 (index {index_s:.2} s)", docs.len(), queries.len());
    for (name, way) in &ways {
        let results: Vec<Vec<String>> = queries.iter().map(|(_, q)| way(q)).collect();
        let ndcg: f64 = queries.iter().zip(&results).map(|((qid, _), r)| ndcg_at_k(r, &data.qrels[qid], 10)).sum::<f64>()
            / queries.len() as f64;
        // Several rounds, the median kept: the machine is shared.
        let mut rounds: Vec<f64> = (0..5)
            .map(|_| {
                let reps = 10;
                let t = Instant::now();
                for _ in 0..reps {
                    for (_, q) in &queries {
                        std::hint::black_box(way(q));
                    }
                }
                (reps * queries.len()) as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        println!("{name:<34} {:>10.0} QPS  nDCG@10 {ndcg:.4}  (one query at a time, one thread)", rounds[2]);
    }

    let python = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"));
    let qrels_json: HashMap<&String, &HashMap<String, u32>> = data.qrels.iter().collect();
    let qfile = dir.path().join("queries.json");
    std::fs::write(&qfile, serde_json::to_string(&serde_json::json!({"queries": queries, "qrels": qrels_json})).unwrap())
        .unwrap();
    let script = format!(
        r#"
import json, math, time, bm25s, Stemmer
docs = [json.loads(l) for l in open({corpus:?})]
q = json.load(open({qfile:?}))
ids = [d["_id"] for d in docs]
texts = [(d.get("title", "") + "\n\n" + d["text"]).strip() for d in docs]
stem = Stemmer.Stemmer("english")
t = time.perf_counter()
r = bm25s.BM25()
r.index(bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
index_s = time.perf_counter() - t
qs = [x[1] for x in q["queries"]]
def run():
    tok = bm25s.tokenize(qs, stopwords="en", stemmer=stem, show_progress=False)
    return r.retrieve(tok, k=10, show_progress=False, n_threads=1)[0]
res = run()
def ndcg(ranked, rel):
    dcg = sum(rel.get(ids[d], 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0
nd = sum(ndcg(list(res[i]), q["qrels"][qid]) for i, (qid, _) in enumerate(q["queries"])) / len(qs)
def rounds(f, reps):
    out = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps): f()
        out.append(reps * len(qs) / (time.perf_counter() - t))
    return sorted(out)[2]
print(f"{{'bm25s (Python, batched)':<34}} {{rounds(run, 10):>10.0f}} QPS  nDCG@10 {{nd:.4f}}  (all queries in one call, one thread; index {{index_s:.2f}} s)")
def one_at_a_time():
    for x in qs:
        r.retrieve(bm25s.tokenize([x], stopwords="en", stemmer=stem, show_progress=False), k=10, show_progress=False, n_threads=1)
print(f"{{'bm25s (Python, one at a time)':<34}} {{rounds(one_at_a_time, 2):>10.0f}} QPS")
"#,
        corpus = dataset.join("corpus.jsonl").display().to_string(),
        qfile = qfile.display().to_string()
    );
    match std::process::Command::new(&python).arg("-c").arg(script).output() {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!("bm25s failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => println!("bm25s: no venv python at {} ({e}): run `make setup`", python.display()),
    }
}
