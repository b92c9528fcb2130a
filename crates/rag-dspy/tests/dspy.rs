//! DSPy driven from Rust and Rust retrieval driven from DSPy: deterministic with DummyLM, and
//! end to end through `dspy.LM` against a local OpenAI-compatible server. Needs `make setup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rag_core::mocks::MockRetriever;
use rag_core::{Chunk, ContextPassage, GenerationEvent, GenerationRequest, Generator, RagError, ScoredChunk};
use rag_dspy::{BasicRag, DspyGenerator, DspyProgram, LmConfig, MultiHopRag};

fn passage(id: &str, text: &str) -> ContextPassage {
    ContextPassage { id: id.into(), doc_id: format!("doc-{id}"), text: text.into(), score: 1.0 }
}

fn request() -> GenerationRequest {
    GenerationRequest {
        question: "What lowers fracture risk?".into(),
        context: vec![
            passage("c1", "Calcium intake varies."),
            passage("c2", "Vitamin D lowers fracture risk."),
            passage("c3", "Unrelated."),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_thought_fields_and_citations() {
    let lm = LmConfig::dummy([[("reasoning", "Passage 2 says so."), ("answer", "Vitamin D [2].")]]);
    let g = DspyGenerator::with_lm(lm).build().await.unwrap();
    let out = g.generate(request()).await.unwrap();
    assert_eq!(out.answer, "Vitamin D [2].");
    assert_eq!(out.reasoning.as_deref(), Some("Passage 2 says so."));
    assert_eq!(out.used_context_ids, vec!["c2"], "the [2] citation maps to the second passage");
    assert_eq!(g.name(), "dspy:ChainOfThought(DummyLM)");
    // No [n] in the answer: the reasoning's citations, else the passages holding at least half
    // of the answer's words, else every passage it was given.
    let g = DspyGenerator::with_lm(LmConfig::dummy([[("reasoning", "As [3] says."), ("answer", "Unrelated, really.")]]))
        .build()
        .await
        .unwrap();
    assert_eq!(g.generate(request()).await.unwrap().used_context_ids, vec!["c3"]);
    let g = DspyGenerator::with_lm(LmConfig::dummy([[("reasoning", "r"), ("answer", "Vitamin D lowers it.")]]))
        .build()
        .await
        .unwrap();
    assert_eq!(g.generate(request()).await.unwrap().used_context_ids, vec!["c2"]);
    let g = DspyGenerator::with_lm(LmConfig::dummy([[("reasoning", "r"), ("answer", "Nobody knows.")]])).build().await.unwrap();
    assert_eq!(g.generate(request()).await.unwrap().used_context_ids, vec!["c1", "c2", "c3"]);
    // A bad signature is a clear input error.
    let err = DspyGenerator::with_lm(LmConfig::dummy(Vec::<Vec<(&str, &str)>>::new()))
        .signature("no arrow here")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, RagError::InvalidInput { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_generators_never_share_an_lm() {
    let mut gens = Vec::new();
    for i in 0..32 {
        let lm = LmConfig::dummy([[("reasoning", format!("r{i}")), ("answer", format!("answer number {i}"))]]);
        gens.push(Arc::new(DspyGenerator::with_lm(lm).build().await.unwrap()));
    }
    let handles: Vec<_> = gens.iter().cloned().map(|g| tokio::spawn(async move { g.generate(request()).await })).collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.await.unwrap().unwrap();
        assert_eq!(out.answer, format!("answer number {i}"), "no cross-talk through DSPy's settings");
        assert_eq!(out.reasoning, Some(format!("r{i}")));
    }
}

fn hit(id: &str, text: &str, score: f32) -> ScoredChunk {
    ScoredChunk { chunk: Chunk::new(id, format!("doc-{id}"), text), score }
}

fn mock_retriever() -> MockRetriever {
    let mut r = MockRetriever::new();
    r.expect_retrieve().returning(|q| {
        let all = match q.text.as_str() {
            t if t.contains("first") => {
                vec![hit("a", "Alpha fact.", 0.9), hit("b", "Beta fact.", 0.8), hit("c", "Gamma fact.", 0.7)]
            }
            t if t.contains("second") => {
                vec![hit("b", "Beta fact.", 0.95), hit("d", "Delta fact.", 0.6), hit("e", "Epsilon fact.", 0.5)]
            }
            _ => vec![hit("z", "Zeta fact.", 0.4)],
        };
        Ok(all.into_iter().take(q.k).collect())
    });
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_hop_generates_queries_and_deduplicates_through_the_rust_retriever() {
    let lm = LmConfig::dummy([
        vec![("reasoning", "start broad"), ("query", "first search")],
        vec![("reasoning", "need more"), ("query", "second search")],
        vec![("reasoning", "combine"), ("answer", "Alpha and Delta [1] [4].")],
    ]);
    let rag = MultiHopRag::new(Arc::new(mock_retriever()), lm, 2, 2).await.unwrap();
    let out = rag.answer("A complex question?").await.unwrap();
    assert_eq!(out.answer, "Alpha and Delta [1] [4].");
    assert_eq!(out.reasoning.as_deref(), Some("combine"));
    assert_eq!(out.hops.len(), 2);
    assert_eq!(out.hops[0].query, "first search");
    assert_eq!(out.hops[1].query, "second search");
    assert_eq!(
        rag.retriever_calls(),
        vec![("first search".to_owned(), 2), ("second search".to_owned(), 2)],
        "the Rust retriever got each hop's query and k"
    );
    let ids = |v: &[rag_dspy::PassageRef]| v.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&out.hops[0].passages), vec!["a", "b"]);
    assert_eq!(ids(&out.hops[1].passages), vec!["b", "d"]);
    assert_eq!(ids(&out.passages), vec!["a", "b", "d"], "de-duplicated across hops, in order");
    assert_eq!(out.passages[0].doc_id, "doc-a");
    assert!((out.passages[0].score - 0.9).abs() < 1e-6, "scores survive the trip through DSPy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_rag_and_a_user_program_file_retrieve_through_rust() {
    let lm = LmConfig::dummy([[("reasoning", "easy"), ("answer", "Zeta [1].")]]);
    let rag = BasicRag::new(Arc::new(mock_retriever()), lm, 3).await.unwrap();
    let out = rag.answer("anything").await.unwrap();
    assert_eq!(out.answer, "Zeta [1].");
    assert_eq!(rag.retriever_calls(), vec![("anything".to_owned(), 3)]);
    assert_eq!(out.passages[0].id, "z");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my_program.py");
    std::fs::write(
        &path,
        r#"
import dspy

class Summarise(dspy.Module):
    def __init__(self, k=2):
        super().__init__()
        self.retrieve = dspy.Retrieve(k=k)
        self.summarise = dspy.Predict("passages -> summary")

    def forward(self, topic):
        passages = self.retrieve(topic + " first").passages
        out = self.summarise(passages="\n".join(passages))
        return dspy.Prediction(summary=out.summary, passages=passages, n=len(passages))
"#,
    )
    .unwrap();
    let program = DspyProgram::from_file(&path, "Summarise")
        .unwrap()
        .with_args(serde_json::json!({"k": 2}))
        .with_lm(LmConfig::dummy([[("summary", "Alpha and Beta.")]]))
        .with_retriever(Arc::new(mock_retriever()), 5)
        .load()
        .await
        .unwrap();
    let out = program.run(BTreeMap::from([("topic".to_owned(), "facts".to_owned())])).await.unwrap();
    assert_eq!(out["summary"], "Alpha and Beta.");
    assert_eq!(out["passages"], serde_json::json!(["Alpha fact.", "Beta fact."]));
    assert_eq!(out["n"], 2);
    assert_eq!(program.retriever_calls(), vec![("facts first".to_owned(), 2)]);
    // A class that is not there: a clear error, naming what the file has.
    let err = DspyProgram::from_file(&path, "Missing")
        .unwrap()
        .with_retriever(Arc::new(mock_retriever()), 1)
        .load()
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("Summarise"), "{err}");
    assert!(DspyProgram::from_file(dir.path().join("nope.py"), "X").is_err());
}

fn post(url: &str, body: &str) {
    rag_testkit::http_post_json(url, &serde_json::from_str(body).unwrap()).unwrap();
}

fn stats(url: &str) -> serde_json::Value {
    rag_testkit::http_get_json(&format!("{url}/stats")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dspy_lm_path_end_to_end_with_retry_and_streaming() {
    let server = rag_testkit::spawn_python_server("fake_openai.py", &["--max-seconds", "300"]).unwrap();
    let base = format!("{}/v1", server.url());
    post(&format!("{}/control", server.url()), r#"{"answers": {"What lowers fracture risk?": "Vitamin D lowers it"}}"#);
    let g = DspyGenerator::builder("openai/fake-model")
        .api_base(&base)
        .api_key("test-key")
        .retries(3)
        .cache(false)
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    // One injected 500: litellm retries it and the answer still arrives.
    post(&format!("{}/control", server.url()), r#"{"fail": [500]}"#);
    let out = g.generate(request()).await.unwrap();
    assert_eq!(out.answer, "Vitamin D lowers it [1]");
    assert_eq!(out.reasoning.as_deref(), Some("Reasoning about: What lowers fracture risk?"));
    assert_eq!(out.used_context_ids, vec!["c1"]);
    let s = stats(&server.url());
    assert_eq!(s["requests"]["failed"], 1, "{s}");
    assert!(s["requests"]["chat"].as_u64().unwrap() >= 1, "{s}");
    // Streamed: several tokens, then the final answer.
    let mut stream = g.generate_stream(request()).await.unwrap();
    let mut tokens = Vec::new();
    let mut last = None;
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            GenerationEvent::Token(t) => tokens.push(t),
            GenerationEvent::Final(f) => last = Some(f),
        }
    }
    let last = last.expect("a final event ends the stream");
    assert_eq!(last.answer, "Vitamin D lowers it [1]");
    assert!(tokens.len() >= 2, "streamed in pieces: {tokens:?}");
    assert_eq!(tokens.concat().trim(), last.answer, "the pieces make up the answer");
    // A reply cut off before its answer field (max_tokens reached): DSPy cannot parse it. A
    // permanent error naming what to change, streamed or not; the next stream is answered.
    post(&format!("{}/control", server.url()), r#"{"truncate_chars": 40}"#);
    let err = g.generate(request()).await.unwrap_err();
    assert!(matches!(err, RagError::Permanent { .. }), "{err}");
    assert!(err.to_string().contains("AdapterParseError") && err.to_string().contains("generator.max_tokens"), "{err}");
    // The stream ends after its error (it used to stay open until Python's garbage collector
    // freed the token emitter, which an exception's traceback keeps in a reference cycle).
    let stream = g.generate_stream(request()).await.unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(60), stream.collect()).await.expect("the stream ends");
    assert!(matches!(events.as_slice(), [Err(RagError::Permanent { .. })]), "{events:?}");
    post(&format!("{}/control", server.url()), r#"{"truncate_chars": 0}"#);
    let events: Vec<_> = g.generate_stream(request()).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(Ok(GenerationEvent::Final(_)))), "{events:?}");
    // A bad key: a permanent error, never retried into a transient one.
    let bad = DspyGenerator::builder("openai/fake-model")
        .api_base(&base)
        .api_key("bad-key")
        .retries(0)
        .cache(false)
        .build()
        .await
        .unwrap();
    let err = bad.generate(request()).await.unwrap_err();
    assert!(!matches!(err, RagError::Transient { .. }), "{err}");
    assert!(!format!("{err}").contains("bad-key"), "the key is not echoed: {err}");
}

/// `rag optimize` deterministically: BootstrapFewShot compiles BasicRag (retrieving through a
/// Rust retriever) with DummyLM, the devset score moves from 0 to 1, the program is saved in
/// DSPy's JSON with its demos, reloaded, and the demos reach the LM's prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_compiles_saves_reloads_and_the_demos_reach_the_prompt() {
    use rag_dspy::{CompiledProgram, Example, Metric, OptimizeOptions, Optimizer, ProgramSpec, optimize, report_path};
    let retriever = || {
        let mut r = MockRetriever::new();
        r.expect_retrieve().returning(|_| {
            Ok(vec![
                ScoredChunk { chunk: Chunk::new("sky#0", "sky", "The sky is blue on a clear day."), score: 1.0 },
                ScoredChunk { chunk: Chunk::new("grass#0", "grass", "Grass is green."), score: 0.5 },
            ])
        });
        Arc::new(r)
    };
    let ex = |q: &str| Example { question: q.into(), answer: Some("blue".into()), doc_ids: vec!["sky".into()] };
    let train = vec![ex("What colour is the sky at noon?"), ex("Which colour is a clear sky?"), ex("Sky colour, please?")];
    let dev = vec![ex("What colour is the daytime sky?"), ex("The colour of the sky?")];
    let wrong = [("reasoning", "A guess."), ("answer", "red")];
    let right = [("reasoning", "Passage [1] says the sky is blue."), ("answer", "blue [1]")];
    // The devset is scored first (two wrong answers), then every later call answers right.
    let answers: Vec<[(&str, &str); 2]> = [wrong, wrong].into_iter().chain(std::iter::repeat_n(right, 40)).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compiled").join("basic.json");
    let options = OptimizeOptions { optimizer: Optimizer::Bootstrap, metric: Metric::F1, metric_fn: None, max_demos: 2, seed: 0 };
    let report = optimize(ProgramSpec::Basic { k: 2 }, retriever(), LmConfig::dummy(answers), train.clone(), dev, options, &out)
        .await
        .unwrap();
    assert_eq!((report.before, report.after), (0.0, 1.0), "{report:?}");
    assert!(report.demos >= 1, "{report:?}");
    assert_eq!((report.train, report.dev, report.lm.as_str()), (3, 2, "DummyLM"));
    // DSPy's own format, plus how to rebuild the module; the report beside it.
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(state["rag_program"], serde_json::json!({"kind": "basic", "k": 2}));
    let demos: usize = state.as_object().unwrap().values().filter_map(|v| v["demos"].as_array()).map(Vec::len).sum();
    assert_eq!(demos as u64, report.demos, "{state}");
    let saved: rag_dspy::OptimizeReport = serde_json::from_str(&std::fs::read_to_string(report_path(&out)).unwrap()).unwrap();
    assert_eq!(saved.after, 1.0);

    let compiled = CompiledProgram::load(&out, retriever(), LmConfig::dummy([right])).await.unwrap();
    assert_eq!(compiled.demos().await.unwrap() as u64, report.demos);
    let a = compiled.answer("What colour is the evening sky?", Duration::from_secs(30)).await.unwrap();
    assert_eq!(a.answer, "blue [1]");
    assert_eq!(a.passages[0].doc_id, "sky");
    let prompt = compiled.last_prompt().await.unwrap();
    assert!(train.iter().any(|e| prompt.contains(&e.question)), "a bootstrapped demo is in the prompt:\n{prompt}");

    // The pipeline's generator can answer with the compiled predictor (`generator.program`):
    // the pipeline retrieves, the demos go into the prompt.
    let g = DspyGenerator::with_lm(LmConfig::dummy([right])).program(out.clone()).build().await.unwrap();
    assert!(g.name().contains("compiled basic.json"), "{}", g.name());
    let generation = g.generate(request()).await.unwrap();
    assert_eq!(generation.answer, "blue [1]");
    let prompt = g.last_prompt().await.unwrap();
    assert!(train.iter().any(|e| prompt.contains(&e.question)), "the generator sends the compiled demos:\n{prompt}");
    let missing = DspyGenerator::with_lm(LmConfig::dummy([right])).program(dir.path().join("none.json")).build().await;
    assert!(missing.err().unwrap().to_string().contains("none.json"));

    // A metric of your own from a Python file, DSPy's convention: the same run scored by it.
    let metric_file = dir.path().join("my_metric.py");
    std::fs::write(&metric_file, "def says_blue(example, pred, trace=None):\n    return 'blue' in pred.answer\n").unwrap();
    let metric_fn = rag_dspy::MetricFn::parse(&format!("{}:says_blue", metric_file.display())).unwrap();
    let answers: Vec<[(&str, &str); 2]> = [wrong, wrong].into_iter().chain(std::iter::repeat_n(right, 40)).collect();
    let options = OptimizeOptions {
        optimizer: Optimizer::Bootstrap,
        metric: Metric::F1,
        metric_fn: Some(metric_fn.clone()),
        max_demos: 2,
        seed: 0,
    };
    let dev = vec![ex("What colour is the daytime sky?"), ex("The colour of the sky?")];
    let custom = dir.path().join("custom.json");
    let r = optimize(ProgramSpec::Basic { k: 2 }, retriever(), LmConfig::dummy(answers), train.clone(), dev, options, &custom)
        .await
        .unwrap();
    assert_eq!((r.before, r.after, r.metric_fn.as_ref()), (0.0, 1.0, Some(&metric_fn)), "{r:?}");
    assert!(rag_dspy::MetricFn::parse("my_metric.py").unwrap_err().to_string().contains("FILE.py:function"));

    // A program file without `rag_program` is refused with what to do.
    let bare = dir.path().join("bare.json");
    std::fs::write(&bare, "{}").unwrap();
    let err = CompiledProgram::load(&bare, retriever(), LmConfig::dummy([right])).await.err().unwrap().to_string();
    assert!(err.contains("rag_program") && err.contains("optimize"), "{err}");
}
