//! Tenants that cannot touch each other, and a server a hostile or careless client cannot wear
//! down: `rag serve` in-process on a free port, against the real embedded ChromaDB, MiniLM and
//! the local embedding cache. Two tenant keys share one collection, as in the probe that found
//! these (issue 24).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Api, key, start};
use rag::RagConfig;
use rag::config::Access;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const ADMIN: &str = "admin-key-0123456789abcdef";
const ACME: &str = "acme-key-0123456789abcdef";
const GLOBEX: &str = "globex-key-0123456789abcdef";

fn config(dir: &std::path::Path) -> RagConfig {
    let mut cfg = RagConfig { data_dir: dir.to_path_buf(), collection: "shared".into(), ..Default::default() };
    cfg.server.keys = vec![
        key("admin", ADMIN, &["*"], Access::ReadWrite, None),
        // acme reaches every collection through `*`; globex names its one.
        key("acme", ACME, &["*"], Access::ReadWrite, Some("acme")),
        key("globex", GLOBEX, &["shared"], Access::ReadWrite, Some("globex")),
    ];
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn docs(list: &[(&str, &str)]) -> Value {
    json!({ "documents": list.iter().map(|(id, text)| json!({ "id": id, "text": text })).collect::<Vec<_>>() })
}

/// `(doc_id, text)` of the hits of a BM25 search.
async fn hits(api: &Api, k: &str, collection: &str, question: &str) -> Vec<(String, String)> {
    let (s, r) = api
        .post(Some(k), &format!("/v1/collections/{collection}/search"), json!({ "question": question, "mode": "bm25", "k": 20 }))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["doc_id"].as_str().unwrap().into(), h["text"].as_str().unwrap().into()))
        .collect()
}

async fn stats(api: &Api, k: &str, collection: &str) -> (StatusCode, Value) {
    let (s, body) = api.get(Some(k), &format!("/v1/collections/{collection}/stats")).await;
    (s, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn tenants_cannot_see_replace_or_remove_each_others_documents() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let api = Api { url: start(config(dir.path())).await, http: reqwest::Client::new() };
        let shared = "/v1/collections/shared/documents";
        let victim = "Globex secret: the moon base opens in 2031.";

        let (s, r) =
            api.post(Some(GLOBEX), shared, docs(&[("gx-victim", victim), ("gx-2", "Globex payroll runs on Fridays.")])).await;
        assert_eq!(s, StatusCode::OK, "{r}");

        // acme reuses globex's id with globex's text word for word: a document of acme's own,
        // and the report does not tell that globex stored the text (no cache hit).
        let (s, r) = api.post(Some(ACME), shared, docs(&[("gx-victim", victim)])).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!((r["documents"].as_u64(), r["unchanged"].as_u64()), (Some(1), Some(0)), "a new document of acme's: {r}");
        assert_eq!((r["embedded"].as_u64(), r["cache_hits"].as_u64()), (Some(1), Some(0)), "no hit from globex's entry: {r}");
        // ... then replaces its own with other text: globex's is untouched.
        let (s, r) = api.post(Some(ACME), shared, docs(&[("gx-victim", "Acme note: anvils ship on Mondays.")])).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(
            hits(&api, GLOBEX, "shared", "moon base 2031").await,
            vec![("gx-victim".to_owned(), victim.to_owned())],
            "globex keeps its document and sees it under its own id"
        );
        assert_eq!(
            hits(&api, ACME, "shared", "anvils moon base").await,
            vec![("gx-victim".to_owned(), "Acme note: anvils ship on Mondays.".to_owned())],
            "acme sees its own gx-victim only"
        );
        let admin_ids: Vec<String> = hits(&api, ADMIN, "shared", "anvils moon base").await.into_iter().map(|h| h.0).collect();
        assert_eq!(admin_ids.len(), 2, "two documents `gx-victim`, one per tenant: {admin_ids:?}");
        assert!(admin_ids.contains(&"tenant:tenant=acme/gx-victim".to_owned()), "{admin_ids:?}");
        assert!(admin_ids.contains(&"tenant:tenant=globex/gx-victim".to_owned()), "{admin_ids:?}");

        // Stats: each tenant its own counts, nothing of the collection's.
        let (s, acme) = stats(&api, ACME, "shared").await;
        assert_eq!((s, acme["documents"].as_u64(), acme["chunks"].as_u64()), (StatusCode::OK, Some(1), Some(1)), "{acme}");
        assert!(acme.get("backends").is_none() && acme.get("store").is_none(), "nothing about the collection: {acme}");
        assert_eq!(stats(&api, GLOBEX, "shared").await.1["documents"], 2);
        assert_eq!(stats(&api, ADMIN, "shared").await.1["documents"], 3);

        // Deletes stay in the tenant's namespace: acme removes its own gx-victim, never globex's
        // documents (gx-2 is not acme's: not found).
        let delete = |k: &'static str, id: &'static str| {
            let req = api.http.delete(format!("{}/v1/collections/shared/documents/{id}", api.url)).bearer_auth(k);
            async move { req.send().await.unwrap().status() }
        };
        assert_eq!(delete(ACME, "gx-2").await, StatusCode::NOT_FOUND);
        assert_eq!(delete(ACME, "gx-victim").await, StatusCode::OK);
        assert_eq!(delete(ACME, "gx-victim").await, StatusCode::NOT_FOUND);
        assert_eq!(stats(&api, GLOBEX, "shared").await.1["documents"], 2, "globex lost nothing");
        assert_eq!(hits(&api, GLOBEX, "shared", "moon base 2031").await[0].1, victim);
        // Re-posting its deleted text hits acme's own cache entry (and only its own).
        let (_, r) = api.post(Some(ACME), shared, docs(&[("gx-victim", "Acme note: anvils ship on Mondays.")])).await;
        assert_eq!((r["embedded"].as_u64(), r["cache_hits"].as_u64()), (Some(0), Some(1)), "{r}");

        // A key without a tenant may not write into a tenant's namespace.
        let (s, r) = api.post(Some(ADMIN), shared, docs(&[("tenant:tenant=globex/gx-victim", "overwritten")])).await;
        assert_eq!((s, r["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("documents[0].id")), "{r}");

        // Readiness is open to anyone: it says ready, and nothing about the data.
        let (s, ready) = api.get(None, "/readyz").await;
        assert_eq!((s, serde_json::from_str::<Value>(&ready).unwrap()), (StatusCode::OK, json!({ "ready": true })));

        // A tenant key with `*` sees a collection only where its tenant has documents (or the
        // key names it): globex's private collection is, to acme, a collection that does not
        // exist, through every surface.
        let (s, r) = api
            .post(
                Some(ADMIN),
                "/v1/collections/globex-private/documents",
                docs(&[("p", "Private Globex plans."), ("q", "More.")]),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let list = |k: &'static str| {
            let api = &api;
            async move {
                let (_, body) = api.get(Some(k), "/v1/collections").await;
                serde_json::from_str::<Value>(&body).unwrap()["collections"].clone()
            }
        };
        assert_eq!(list(ACME).await, json!(["shared"]));
        let (s_private, private) =
            api.post(Some(ACME), "/v1/collections/globex-private/search", json!({ "question": "plans" })).await;
        let (s_none, none) = api.post(Some(ACME), "/v1/collections/no-such/search", json!({ "question": "plans" })).await;
        assert_eq!((s_private, s_none), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "{private} {none}");
        assert_eq!(
            private["error"]["message"].as_str().unwrap().replace("globex-private", "X"),
            none["error"]["message"].as_str().unwrap().replace("no-such", "X"),
            "the same answer as for a collection that does not exist"
        );
        assert_eq!(stats(&api, ACME, "globex-private").await.0, StatusCode::NOT_FOUND);
        let (_, models) = api.get(Some(ACME), "/v1/models").await;
        assert!(!models.contains("globex-private"), "{models}");
        // Once acme writes there, it is acme's too (and still holds only acme's documents for it).
        assert_eq!(
            api.post(Some(ACME), "/v1/collections/globex-private/documents", docs(&[("a", "Acme plans.")])).await.0,
            StatusCode::OK
        );
        assert_eq!(list(ACME).await, json!(["globex-private", "shared"]));
        assert_eq!(hits(&api, ACME, "globex-private", "plans").await, vec![("a".to_owned(), "Acme plans.".to_owned())]);

        // Only directories that hold a collection are collections.
        std::fs::create_dir_all(dir.path().join("collections/empty-dir")).unwrap();
        std::fs::create_dir_all(dir.path().join("collections/stray")).unwrap();
        std::fs::write(dir.path().join("collections/stray/notes.txt"), "not a collection").unwrap();
        assert_eq!(list(ADMIN).await, json!(["globex-private", "shared"]));
        let (s, _) = api.post(Some(ADMIN), "/v1/collections/stray/search", json!({ "question": "notes" })).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

#[test]
fn bad_input_is_a_400_naming_the_field_and_a_refused_batch_writes_nothing() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let api = Api { url: start(config(dir.path())).await, http: reqwest::Client::new() };
        let shared = "/v1/collections/shared/documents";
        assert_eq!(api.post(Some(ADMIN), shared, docs(&[("seed", "Rivers flow to the sea.")])).await.0, StatusCode::OK);
        let counts = || async {
            let (_, s) = stats(&api, ADMIN, "shared").await;
            (s["documents"].as_u64(), s["chunks"].as_u64(), s["keyword_chunks"].as_u64())
        };
        let before = counts().await;

        // [good, bad]: the bad document's metadata key is refused before anything is written,
        // on either side (before the fix the keyword index kept the good one's chunks).
        let batch = json!({ "documents": [
            { "id": "good", "text": "Glaciers carve valleys over millennia." },
            { "id": "bad", "text": "x", "metadata": { "$and": "y" } },
        ]});
        let (s, r) = api.post(Some(ADMIN), shared, batch).await;
        assert_eq!((s, r["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("documents[1].metadata.$and")), "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains('$'), "{r}");
        assert_eq!(counts().await, before, "nothing written on any side");
        assert!(hits(&api, ADMIN, "shared", "glaciers valleys").await.is_empty());

        // Metadata keys no store takes: a 400 naming the key, never the backend's exception.
        for (meta, field) in [
            (json!({ "": "x" }), "documents[0].metadata."),
            (json!({ "$and": "x" }), "documents[0].metadata.$and"),
            (json!({ "chroma:document": "x" }), "documents[0].metadata.chroma:document"),
            (json!({ "doc_id": "x" }), "documents[0].metadata.doc_id"),
            (json!({ "a\"b": "x" }), "documents[0].metadata.a\"b"),
        ] {
            for k in [ADMIN, ACME] {
                let body = json!({ "documents": [{ "id": "m", "text": "metadata", "metadata": meta }] });
                let (s, r) = api.post(Some(k), shared, body).await;
                assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_input")), "{meta}: {r}");
                assert_eq!(r["error"]["field"].as_str(), Some(field), "{meta}: {r}");
            }
        }
        // Duplicate ids in one request name both places.
        let (s, r) = api.post(Some(ADMIN), shared, docs(&[("d", "one"), ("d", "two")])).await;
        assert_eq!((s, r["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("documents[1].id")), "{r}");
        assert_eq!(counts().await, before);

        // Filters of the wrong shape: a 400 naming `filter`, checked in Rust, on every retriever
        // and for a tenant key (whose own filter is added to the client's).
        for filter in [
            json!({ "eq": ["tenant", ["globex"]] }),
            json!({ "eq": ["$where", "x"] }),
            json!({ "eq": ["", "x"] }),
            json!({ "in": ["lang", ["en", 1]] }),
            json!({ "and": [] }),
            json!({ "or": (0..600).map(|i| json!({ "eq": ["n", i] })).collect::<Vec<_>>() }),
        ] {
            for retriever in ["hybrid", "dense", "bm25"] {
                for k in [ADMIN, GLOBEX] {
                    let body = json!({ "question": "rivers", "mode": retriever, "filter": filter });
                    let (s, r) = api.post(Some(k), "/v1/collections/shared/search", body).await;
                    assert_eq!(
                        (s, r["error"]["field"].as_str()),
                        (StatusCode::BAD_REQUEST, Some("filter")),
                        "{retriever} {filter}: {r}"
                    );
                    assert!(!r.to_string().contains("Python"), "{r}");
                }
            }
        }
        // A value that is not a metadata value at all is refused by the JSON reader, naming it.
        let (s, r) = api
            .post(Some(ADMIN), "/v1/collections/shared/search", json!({ "question": "x", "filter": { "eq": ["a", { "b": 1 }] } }))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
        assert!(r["error"]["field"].as_str().unwrap().starts_with("filter"), "{r}");
    });
}

#[test]
fn a_client_that_resets_before_the_response_head_leaves_the_gauge_idle() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let api = Api { url: start(config(dir.path())).await, http: reqwest::Client::new() };
        let addr = api.url.trim_start_matches("http://").to_owned();
        // Each request's head arrives and its handler starts reading the body, which never
        // comes whole: the client resets the connection (RST) mid-body.
        // Two ways: mid-body (the handler is reading the body), and with the whole request sent
        // while the handler works (embedding a long document).
        let long: String = (0..300).map(|i| format!("Sentence number {i} about rivers, glaciers and valleys. ")).collect();
        for i in 0..40 {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let body = json!({ "documents": [{ "id": format!("long-{i}"), "text": long }] }).to_string();
            let (length, sent) = if i % 2 == 0 { (100_000, "{\"documents\": [".to_owned()) } else { (body.len(), body) };
            let head = format!(
                "POST /v1/collections/shared/documents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{sent}"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.set_zero_linger().unwrap();
            drop(s);
        }
        // The gauge returns to idle: only the scrape that reads it is in flight.
        let mut last = String::new();
        for _ in 0..100 {
            let (_, m) = api.get(None, "/metrics").await;
            last = m.lines().find(|l| l.starts_with("rag_http_requests_in_flight ")).unwrap_or_default().to_owned();
            if last == "rag_http_requests_in_flight 1" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the in-flight gauge stayed at `{last}` after 40 resets");
    });
}

/// Opens an MCP session over streamable HTTP; returns its id.
async fn mcp_session(api: &Api) -> String {
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test", "version": "0" } } });
    let resp = api
        .http
        .post(format!("{}/mcp", api.url))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let session = resp.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = resp.text().await.unwrap();
    let note = api
        .http
        .post(format!("{}/mcp", api.url))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .send()
        .await
        .unwrap();
    assert!(note.status().is_success(), "{}", note.status());
    session
}

/// Opens the session's standing event stream (`GET /mcp`).
async fn mcp_stream(api: &Api, session: &str) -> reqwest::Response {
    api.http
        .get(format!("{}/mcp", api.url))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap()
}

#[test]
fn mcp_streams_hold_no_request_slot_and_idle_sessions_end() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RagConfig { data_dir: dir.path().to_path_buf(), collection: "shared".into(), ..Default::default() };
        cfg.server.max_concurrent_requests = 2;
        cfg.server.max_streams = 4;
        cfg.server.mcp_session_idle_secs = 3;
        let api = Api { url: start(cfg).await, http: reqwest::Client::new() };
        assert_eq!(
            api.post(None, "/v1/collections/shared/documents", docs(&[("a", "Alpha beta gamma.")])).await.0,
            StatusCode::OK
        );

        // Four standing streams, more than the two request slots: searches still answer.
        let mut streams = Vec::new();
        for _ in 0..4 {
            let session = mcp_session(&api).await;
            let stream = mcp_stream(&api, &session).await;
            assert_eq!(stream.status(), StatusCode::OK);
            streams.push((session, stream));
        }
        for _ in 0..3 {
            let (s, r) = api.post(None, "/v1/collections/shared/search", json!({ "question": "alpha" })).await;
            assert_eq!(s, StatusCode::OK, "an open MCP stream must not take a request's slot: {r}");
        }
        // A fifth stream is past server.max_streams: 503 naming the setting.
        let fifth = mcp_session(&api).await;
        let resp = mcp_stream(&api, &fifth).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.text().await.unwrap().contains("server.max_streams"));

        // Idle sessions end after server.mcp_session_idle_secs, and their streams with them.
        let ended = futures::future::join_all(
            streams
                .into_iter()
                .map(|(_, s)| async move { tokio::time::timeout(Duration::from_secs(30), s.bytes()).await.is_ok() }),
        )
        .await;
        assert!(ended.iter().all(|e| *e), "every idle stream ended: {ended:?}");
        let session = mcp_session(&api).await;
        assert_eq!(mcp_stream(&api, &session).await.status(), StatusCode::OK, "the slots are free again");

        // Ending a session answers as the MCP SDKs expect (the Python SDK takes 200 or 204, and
        // logged `Session termination failed: 202` before).
        let end = api
            .http
            .delete(format!("{}/mcp", api.url))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
            .await
            .unwrap();
        assert_eq!(end.status(), StatusCode::NO_CONTENT);
    });
}
