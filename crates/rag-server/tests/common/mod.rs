//! What the in-process server tests share: starting `rag serve` on a free port, keys, and a
//! small JSON client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rag::RagConfig;
use rag::config::{Access, ApiKeyConfig};
use rag::core::{Metadata, MetadataValue};
use reqwest::StatusCode;
use serde_json::Value;

/// An API key with `value`, on `collections`, held to `tenant = VALUE` when given.
pub fn key(name: &str, value: &str, collections: &[&str], access: Access, tenant: Option<&str>) -> ApiKeyConfig {
    let mut t = Metadata::new();
    if let Some(v) = tenant {
        t.insert("tenant".into(), MetadataValue::Str(v.into()));
    }
    ApiKeyConfig {
        name: name.into(),
        key_env: None,
        key: Some(value.into()),
        collections: collections.iter().map(|s| s.to_string()).collect(),
        access,
        tenant: t,
    }
}

/// Starts `rag serve` on a free port inside this process; returns its base URL.
pub async fn start(cfg: RagConfig) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let tx = std::sync::Mutex::new(Some(tx));
    let on_listen: Arc<dyn Fn(SocketAddr) + Send + Sync> = Arc::new(move |a| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(a);
        }
    });
    let opts = rag_server::ServeOptions { addr: Some("127.0.0.1:0".into()), on_listen: Some(on_listen) };
    tokio::spawn(async move {
        if let Err(e) = rag_server::serve(cfg, opts).await {
            panic!("server failed: {e}");
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(60), rx).await.expect("listening in time").expect("address");
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server never became ready");
}

pub struct Api {
    pub url: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn post(&self, key: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        let mut r = self.http.post(format!("{}{path}", self.url)).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, key: Option<&str>, path: &str) -> (StatusCode, String) {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// A streamed POST: the `(event, data)` pairs of its Server-Sent Events.
    pub async fn sse(&self, key: &str, path: &str, body: Value) -> Vec<(String, String)> {
        let resp = self.http.post(format!("{}{path}", self.url)).bearer_auth(key).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        // A stream that never ends fails the test instead of hanging it.
        let text =
            tokio::time::timeout(std::time::Duration::from_secs(120), resp.text()).await.expect("the stream ends").unwrap();
        text.split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(rag_server::api::sse_event)
            .filter(|(_, data)| !data.is_empty())
            .collect()
    }
}
