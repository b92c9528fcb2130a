//! `rag serve` in-process on a free port, against the real embedded ChromaDB, MiniLM and DSPy
//! (pointed at the local OpenAI-compatible test server): every endpoint, keys, tenants, limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

mod common;

use common::{Api, key, start};
use rag::RagConfig;
use rag::config::Access;
use rag_testkit::{ServerProcess, spawn_python_server};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789abcdef";
const READER: &str = "reader-key-0123456789abcdef";
const ACME: &str = "acme-key-0123456789abcdef";
const GLOBEX: &str = "globex-key-0123456789abcdef";
const OUTSIDER: &str = "outsider-key-0123456789abcdef";

fn config(dir: &std::path::Path, lm: &ServerProcess) -> RagConfig {
    let mut cfg = RagConfig { data_dir: dir.to_path_buf(), collection: "papers".into(), ..Default::default() };
    cfg.cache.backend = rag::config::CacheBackend::None;
    cfg.generator.lm = Some("openai/fake-model".into());
    cfg.generator.api_base = Some(format!("{}/v1", lm.url()));
    cfg.generator.api_key_env = "RAG_TEST_FAKE_LM_KEY".into();
    cfg.generator.retries = 0;
    cfg.server.max_body_bytes = 64 * 1024;
    cfg.server.keys = vec![
        key("admin", ADMIN, &["*"], Access::ReadWrite, None),
        key("reader", READER, &["papers"], Access::Read, None),
        key("acme", ACME, &["papers"], Access::ReadWrite, Some("acme")),
        key("globex", GLOBEX, &["papers"], Access::ReadWrite, Some("globex")),
        key("outsider", OUTSIDER, &["other"], Access::ReadWrite, None),
    ];
    cfg
}

fn doc(id: &str, text: &str) -> Value {
    json!({ "id": id, "text": text })
}

#[test]
fn the_service_end_to_end() {
    // SAFETY: set before any other thread of this test process exists (the runtime starts below).
    unsafe { std::env::set_var("RAG_TEST_FAKE_LM_KEY", "test-key") };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    runtime.block_on(end_to_end());
}

async fn end_to_end() {
    let lm = spawn_python_server("fake_openai.py", &["--max-seconds", "900"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = start(config(dir.path(), &lm)).await;
    let api = Api { url: url.clone(), http: reqwest::Client::new() };
    let papers = "/v1/collections/papers";

    // Ingest: shared papers, and one document per tenant with the same words and different facts.
    let shared = json!({ "documents": [
        doc("vitd", "Vitamin D supplementation lowers the risk of hip fractures in older adults."),
        doc("statins", "Statins reduce cardiovascular mortality in patients with high cholesterol."),
        doc("mirna", "MicroRNA molecules regulate gene expression and play a role in cancer."),
    ]});
    let (s, report) = api.post(Some(ADMIN), &format!("{papers}/documents"), shared.clone()).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!((report["documents"].as_u64(), report["unchanged"].as_u64()), (Some(3), Some(0)), "{report}");
    let (s, again) = api.post(Some(ADMIN), &format!("{papers}/documents"), shared).await;
    assert_eq!(
        (s, again["unchanged"].as_u64(), again["chunks"].as_u64()),
        (StatusCode::OK, Some(3), Some(0)),
        "idempotent: {again}"
    );
    let falcon = |who: &str, budget: &str| json!({ "documents": [doc(&format!("{who}-falcon"), &format!("Project Falcon budget for {who} is {budget} million dollars."))] });
    assert_eq!(api.post(Some(ACME), &format!("{papers}/documents"), falcon("acme", "42")).await.0, StatusCode::OK);
    assert_eq!(api.post(Some(GLOBEX), &format!("{papers}/documents"), falcon("globex", "7")).await.0, StatusCode::OK);
    // A tenant cannot write into another tenant.
    let forged =
        json!({ "documents": [{ "id": "forged", "text": "Project Falcon is cancelled.", "metadata": { "tenant": "globex" } }] });
    let (s, body) = api.post(Some(ACME), &format!("{papers}/documents"), forged).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // JSON query through DSPy: the fake LM's answer, with citations and timings.
    let (s, r) = api
        .post(Some(READER), &format!("{papers}/query"), json!({ "question": "Does vitamin D lower fracture risk?", "k": 3 }))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["generator"].as_str().unwrap().starts_with("dspy"), "{r}");
    assert!(r["answer"].as_str().unwrap().contains("Does vitamin D lower fracture risk?"), "{r}");
    assert!(r["citations"].as_array().unwrap().iter().any(|c| c["doc_id"] == "vitd"), "{r}");
    assert!(r["timings_ms"]["generate"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["degraded"].as_array().unwrap().is_empty(), "{r}");

    // Tenants: each sees only its own chunks, through every surface.
    for (k, own, other) in [(ACME, "acme-falcon", "globex-falcon"), (GLOBEX, "globex-falcon", "acme-falcon")] {
        let (s, r) =
            api.post(Some(k), &format!("{papers}/search"), json!({ "question": "Project Falcon budget million", "k": 10 })).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let ids: Vec<&str> = r["hits"].as_array().unwrap().iter().map(|h| h["doc_id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec![own], "a tenant sees its own chunk and nothing else");
        for retriever in ["bm25", "dense"] {
            let (_, r) =
                api.post(Some(k), &format!("{papers}/search"), json!({ "question": "vitamin D", "mode": retriever })).await;
            assert!(r["hits"].as_array().unwrap().iter().all(|h| h["doc_id"] == own), "{retriever}: {r}");
        }
        let (_, chat) = api
            .post(
                Some(k),
                "/v1/chat/completions",
                json!({ "model": "papers", "messages": [{"role": "user", "content": "Project Falcon budget"}] }),
            )
            .await;
        assert!(chat["citations"].as_array().unwrap().iter().all(|c| c["doc_id"] != other), "{chat}");
    }
    // The admin (no tenant) sees both.
    let (_, r) =
        api.post(Some(ADMIN), &format!("{papers}/search"), json!({ "question": "Project Falcon budget", "mode": "bm25" })).await;
    assert_eq!(r["hits"].as_array().unwrap().iter().filter(|h| h["doc_id"].as_str().unwrap().ends_with("falcon")).count(), 2);

    // Keys: none, unknown, read-only, wrong collection.
    assert_eq!(api.post(None, &format!("{papers}/query"), json!({ "question": "x" })).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.post(Some("nope-nope-nope-nope"), &format!("{papers}/query"), json!({ "question": "x" })).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, body) = api.post(Some(READER), &format!("{papers}/documents"), json!({ "documents": [doc("x", "y")] })).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("read_write"), "{body}");
    let (s, body) = api.post(Some(OUTSIDER), &format!("{papers}/search"), json!({ "question": "vitamin" })).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // Bad requests: a JSON error naming the field; nothing stored changes.
    let (s, body) = api.post(Some(READER), &format!("{papers}/query"), json!({ "question": "x", "kk": 3 })).await;
    assert_eq!((s, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("kk")), "{body}");
    let (s, body) = api.post(Some(READER), &format!("{papers}/query"), json!({ "question": "x", "k": 0 })).await;
    assert_eq!((s, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("k")), "{body}");
    // `retriever` is the old name of `mode`, still read: a bad value is refused either way.
    for field in ["mode", "retriever"] {
        let (s, body) = api.post(Some(READER), &format!("{papers}/query"), json!({ "question": "x", field: "fuzzy" })).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("fuzzy"), "{body}");
    }
    let long = "why ".repeat(600);
    let (s, body) = api.post(Some(READER), &format!("{papers}/query"), json!({ "question": long })).await;
    assert_eq!((s, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("question")), "{body}");
    let big = json!({ "documents": [doc("big", &"lorem ipsum ".repeat(10_000))] });
    let (s, body) = api.post(Some(ADMIN), &format!("{papers}/documents"), big).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")), "{body}");
    let (s, _) = api.post(Some(ADMIN), "/v1/collections/nope/query", json!({ "question": "x" })).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, stats) = api.get(Some(READER), &format!("{papers}/stats")).await;
    assert_eq!(s, StatusCode::OK);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["documents"], 5, "{stats}");

    // Streamed answer: several token events, then one `done` whose answer the tokens make up.
    let events =
        api.sse(READER, &format!("{papers}/query"), json!({ "question": "What do statins reduce?", "stream": true })).await;
    let tokens: String = events
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.iter().filter(|(e, _)| e == "token").count() >= 2, "{events:?}");
    let (last_event, last) = events.last().unwrap();
    assert_eq!(last_event, "done", "{events:?}");
    let done: Value = serde_json::from_str(last).unwrap();
    assert_eq!(tokens.trim(), done["answer"].as_str().unwrap(), "the tokens make up the answer");
    assert!(done["citations"].as_array().unwrap().iter().any(|c| c["doc_id"] == "statins"), "{done}");

    // Sixteen streamed answers at once each get their own tokens (stanfordnlp/dspy#8173).
    let streams = (0..16).map(|i| {
        let api = &api;
        async move {
            let q = format!("Question number {i} about statins?");
            let ev = api.sse(READER, &format!("{papers}/query"), json!({ "question": q, "stream": true })).await;
            let text: String = ev
                .iter()
                .filter(|(e, _)| e == "token")
                .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["text"].as_str().unwrap().to_owned())
                .collect();
            (q, text)
        }
    });
    for (q, text) in futures::future::join_all(streams).await {
        assert!(text.contains(&q), "stream for `{q}` carried `{text}`");
    }

    // An LM reply cut off before its answer (max_tokens reached): a JSON query answers
    // extractively and says why; a stream ends with an `error` event naming the setting to
    // change (it used to stay open until Python's garbage collector ran); the next is answered.
    let control = format!("{}/control", lm.url());
    rag_testkit::http_post_json(&control, &json!({ "truncate_chars": 40 })).unwrap();
    let (s, body) = api.post(Some(READER), &format!("{papers}/query"), json!({ "question": "Are statins cut short?" })).await;
    assert_eq!((s, body["generator"].as_str()), (StatusCode::OK, Some("extractive")), "{body}");
    assert!(body["degraded"][0].as_str().unwrap().contains("generator.max_tokens"), "{body}");
    let cut = json!({ "question": "Are statins cut short when streamed?", "stream": true });
    let events = api.sse(READER, &format!("{papers}/query"), cut).await;
    let (last_event, last) = events.last().unwrap();
    assert_eq!(last_event, "error", "{events:?}");
    assert!(last.contains("backend_failed") && last.contains("generator.max_tokens"), "{last}");
    rag_testkit::http_post_json(&control, &json!({ "truncate_chars": 0 })).unwrap();
    let again = json!({ "question": "What do statins reduce, once more?", "stream": true });
    let events = api.sse(READER, &format!("{papers}/query"), again).await;
    assert_eq!(events.last().unwrap().0, "done", "{events:?}");

    // OpenAI-compatible chat, plain and streamed.
    let msgs = json!([{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "Does vitamin D lower fracture risk?" }]);
    let (s, chat) =
        api.post(Some(READER), "/v1/chat/completions", json!({ "model": "papers", "messages": msgs, "temperature": 0 })).await;
    assert_eq!(s, StatusCode::OK, "{chat}");
    assert_eq!(chat["object"], "chat.completion");
    assert!(chat["choices"][0]["message"]["content"].as_str().unwrap().contains("vitamin D"), "{chat}");
    assert!(chat["citations"].as_array().unwrap().iter().any(|c| c["doc_id"] == "vitd"), "{chat}");
    let events = api.sse(READER, "/v1/chat/completions", json!({ "model": "papers", "messages": msgs, "stream": true })).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content.trim(), chat["choices"][0]["message"]["content"].as_str().unwrap());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["citations"].as_array().is_some_and(|c| !c.is_empty()), "{last}");
    let (s, models) = api.get(Some(READER), "/v1/models").await;
    assert_eq!(s, StatusCode::OK);
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect::<Vec<_>>(), vec!["papers"]);

    // The official OpenAI Python client, unchanged.
    let script = format!(
        r#"
from openai import OpenAI
c = OpenAI(base_url="{url}/v1", api_key="{READER}")
r = c.chat.completions.create(model="papers", messages=[{{"role": "user", "content": "What do statins reduce?"}}])
parts = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(model="papers", messages=[{{"role": "user", "content": "What do statins reduce?"}}], stream=True) if ch.choices]
print(r.choices[0].message.content)
print("".join(parts).strip())
print([m.id for m in c.models.list()])
"#
    );
    let out =
        std::process::Command::new(rag_testkit::venv_bin().unwrap().join("python")).arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("What do statins reduce?"), "{stdout}");
    assert_eq!(lines[0], lines[1], "streamed and plain answers agree: {stdout}");
    assert_eq!(lines[2], "['papers']");

    // MCP over streamable HTTP: initialize, then call `search`, held to the key's tenant.
    let hits = mcp_search(&api, ACME, "Project Falcon budget").await;
    assert!(hits.contains("acme-falcon") && !hits.contains("globex-falcon"), "{hits}");

    // Delete: gone from search; a second delete is a 404; a reader may not delete.
    let del = |k: &'static str, id: &'static str| {
        let http = api.http.clone();
        let url = format!("{url}{papers}/documents/{id}");
        async move { http.delete(url).bearer_auth(k).send().await.unwrap().status() }
    };
    assert_eq!(del(READER, "mirna").await, StatusCode::FORBIDDEN);
    assert_eq!(del(ACME, "mirna").await, StatusCode::NOT_FOUND, "a tenant deletes only in its own namespace");
    assert_eq!(del(ADMIN, "mirna").await, StatusCode::OK);
    assert_eq!(del(ADMIN, "mirna").await, StatusCode::NOT_FOUND);
    let (_, r) = api
        .post(Some(ADMIN), &format!("{papers}/search"), json!({ "question": "MicroRNA gene expression cancer", "k": 10 }))
        .await;
    assert!(r["hits"].as_array().unwrap().iter().all(|h| h["doc_id"] != "mirna"), "{r}");

    // Metrics, OpenAPI, the page.
    let (_, metrics) = api.get(None, "/metrics").await;
    for needle in [
        "rag_http_requests_total{route=\"/v1/collections/{collection}/query\",method=\"POST\",status=\"200\"}",
        "rag_stage_duration_seconds_count{stage=\"embed_query\"}",
        "rag_http_requests_in_flight",
        "rag_embed_batches",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
    let (_, openapi) = api.get(None, "/openapi.json").await;
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    for path in ["/v1/collections/{collection}/query", "/v1/chat/completions", "/v1/models", "/mcp", "/metrics"] {
        assert!(openapi["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let (s, page) = api.get(None, "/").await;
    assert!(s == StatusCode::OK && page.contains("<form id=\"ask\""));

    // Overload: a second server with room for two requests, and an LM that takes its time.
    let mut tight = config(tempfile::tempdir().unwrap().keep().as_path(), &lm);
    tight.server.max_concurrent_requests = 2;
    tight.server.keys.clear();
    let tight_url = start(tight).await;
    let tight_api = Api { url: tight_url.clone(), http: reqwest::Client::new() };
    tight_api.post(None, "/v1/collections/papers/documents", json!({ "documents": [doc("a", "Alpha beta gamma.")] })).await;
    rag_testkit::http_post_json(&format!("{}/control", lm.url()), &json!({ "delay_ms": 1500 })).unwrap();
    let slow = || tight_api.post(None, "/v1/collections/papers/query", json!({ "question": "alpha?" }));
    let overload = async {
        // Both slots are taken once the in-flight gauge shows them (and this scrape).
        for _ in 0..200 {
            let (_, m) = tight_api.get(None, "/metrics").await;
            if m.lines().any(|l| l.starts_with("rag_http_requests_in_flight ") && l.ends_with(" 3")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let resp = tight_api
            .http
            .post(format!("{tight_url}/v1/collections/papers/search"))
            .json(&json!({ "question": "alpha" }))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()))
    };
    let (a, b, (status, retry)) = tokio::join!(slow(), slow(), overload);
    rag_testkit::http_post_json(&format!("{}/control", lm.url()), &json!({ "delay_ms": 0 })).unwrap();
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "the requests in flight finish: {a:?} {b:?}");
    assert_eq!((status, retry.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    let (_, m) = tight_api.get(None, "/metrics").await;
    assert!(m.contains("rag_overload_rejections_total 1"), "{m}");
}

/// Calls the MCP tool `search` over streamable HTTP with `key`; returns the tool's text.
async fn mcp_search(api: &Api, key: &str, query: &str) -> String {
    let post = |body: Value, session: Option<String>| {
        let mut r = api
            .http
            .post(format!("{}/mcp", api.url))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.send()
    };
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test", "version": "0" } } });
    let resp = post(init, None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let session = resp.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let _ = resp.text().await.unwrap();
    let note = post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }), session.clone()).await.unwrap();
    assert!(note.status().is_success(), "{}", note.status());
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "search", "arguments": { "query": query, "k": 10 } } });
    let text = post(call, session).await.unwrap().text().await.unwrap();
    let data: BTreeMap<usize, Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|v| v["id"] == 2)
        .enumerate()
        .collect();
    let result = data.values().next().unwrap_or_else(|| panic!("no tools/call result in {text}"));
    assert_ne!(result["result"]["isError"], true, "{result}");
    result["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}
