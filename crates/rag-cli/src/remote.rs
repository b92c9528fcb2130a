//! The `rag` command as a client of the `rag serve` that holds its data directory.
//!
//! The stores of a data directory belong to one process (see `rag_server::discovery`). When a
//! server has them, `rag ingest`, `query`, `search`, `delete`, `stats` and `mcp` send their work
//! to it over HTTP with the token of its `serve.json`, and print what they would have printed;
//! the commands that need the stores to themselves (`eval`, `bench`, `optimize`,
//! `query --program`) say which server holds them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use rag::{IngestReport, QueryResult, RagError, Result, Stats};
use rag_server::discovery::ServerFile;
use serde_json::Value;

/// A `rag serve` that answers for this data directory.
pub struct RemoteServer {
    file: ServerFile,
    http: reqwest::Client,
}

/// What a search through the server returns.
#[derive(Debug, serde::Deserialize)]
pub struct RemoteSearch {
    /// Ranked hits.
    pub hits: Vec<rag::Hit>,
    /// Components that failed and what stood in for them.
    #[serde(default)]
    pub degraded: Vec<String>,
}

fn transport(url: &str, e: reqwest::Error) -> RagError {
    RagError::transient("rag serve", format!("{url}: {e}"))
}

impl RemoteServer {
    /// The server holding `data_dir`, if one runs; an error when its process lives but it does
    /// not answer (its stores are held all the same).
    pub async fn find(data_dir: &Path) -> Result<Option<Self>> {
        let Some(file) = ServerFile::read(data_dir)? else { return Ok(None) };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| RagError::remote("HTTP client", "could not be built", Some(e.into())))?;
        let health = http.get(format!("{}/healthz", file.url)).timeout(Duration::from_secs(10)).send().await;
        match health {
            Ok(r) if r.status().is_success() => Ok(Some(Self { file, http })),
            _ => Err(RagError::config(format!(
                "rag serve (pid {}) holds data directory {} but does not answer at {}: wait for it, or stop it",
                file.pid,
                data_dir.display(),
                file.url
            ))),
        }
    }

    /// The commands that open the stores themselves refuse to run beside a server.
    pub fn refuse(data_dir: &Path, what: &str) -> Result<()> {
        match ServerFile::read(data_dir)? {
            Some(f) => Err(RagError::config(format!(
                "{what} needs data directory {} to itself, and rag serve (pid {}, {}) has it open: stop the server, or use another --data-dir",
                data_dir.display(),
                f.pid,
                f.url
            ))),
            None => Ok(()),
        }
    }

    /// One line for stderr: where the work goes.
    pub fn announce(&self) {
        eprintln!("rag serve (pid {}) holds this data directory: sending the work to it at {}", self.file.pid, self.file.url);
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.file.url
    }

    /// The server's local token.
    pub fn token(&self) -> &str {
        &self.file.token
    }

    fn collection_url(&self, collection: &str, rest: &str) -> String {
        format!("{}/v1/collections/{collection}/{rest}", self.file.url)
    }

    /// Sends a request and decodes a 2xx answer; an error answer becomes the error it names.
    async fn send<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let resp = request.bearer_auth(&self.file.token).send().await.map_err(|e| transport(&self.file.url, e))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| transport(&self.file.url, e))?;
        if !status.is_success() {
            return Err(answer_error(status.as_u16(), &body));
        }
        serde_json::from_value(body).map_err(|e| RagError::json("rag serve's answer", e))
    }

    /// `rag ingest PATH...`, run by the server (paths made absolute here).
    pub async fn ingest(&self, collection: &str, paths: &[PathBuf], prune: bool) -> Result<IngestReport> {
        let paths: Vec<PathBuf> =
            paths.iter().map(|p| p.canonicalize().map_err(|e| RagError::io(p, e))).collect::<Result<_>>()?;
        let url = format!("{}/v1/local/collections/{collection}/files", self.file.url);
        self.send(self.http.post(url).json(&serde_json::json!({ "paths": paths, "prune": prune }))).await
    }

    /// An answer (JSON).
    pub async fn query(&self, collection: &str, body: &Value) -> Result<QueryResult> {
        self.send(self.http.post(self.collection_url(collection, "query")).json(body)).await
    }

    /// A streamed answer: `on_token` gets each piece, then the whole result is returned.
    pub async fn query_stream(&self, collection: &str, body: &Value, mut on_token: impl FnMut(&str)) -> Result<QueryResult> {
        let mut body = body.clone();
        body["stream"] = Value::Bool(true);
        let resp = self
            .http
            .post(self.collection_url(collection, "query"))
            .bearer_auth(&self.file.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&self.file.url, e))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(answer_error(status.as_u16(), &body));
        }
        let mut events = resp.bytes_stream();
        let mut buffer = String::new();
        while let Some(bytes) = events.next().await {
            buffer.push_str(&String::from_utf8_lossy(&bytes.map_err(|e| transport(&self.file.url, e))?));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (event, data) = rag_server::api::sse_event(&block);
                match event.as_str() {
                    "token" => {
                        let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                        on_token(v["text"].as_str().unwrap_or_default());
                    }
                    "done" => {
                        return serde_json::from_str(&data).map_err(|e| RagError::json("rag serve's stream", e));
                    }
                    "error" => {
                        let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                        return Err(answer_error(500, &v));
                    }
                    _ => {}
                }
            }
        }
        Err(RagError::transient("rag serve", "the answer stream ended before its `done` event"))
    }

    /// Ranked hits.
    pub async fn search(&self, collection: &str, body: &Value) -> Result<RemoteSearch> {
        self.send(self.http.post(self.collection_url(collection, "search")).json(body)).await
    }

    /// Deletes a document.
    pub async fn delete(&self, collection: &str, doc_id: &str) -> Result<()> {
        let mut url = reqwest::Url::parse(&self.collection_url(collection, "documents/"))
            .map_err(|e| RagError::invalid_input("the server URL in serve.json", e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| RagError::invalid_input("the server URL in serve.json", "it cannot take a path"))?
            .pop_if_empty()
            .push(doc_id);
        let _: Value = self.send(self.http.delete(url)).await?;
        Ok(())
    }

    /// The collection's statistics.
    pub async fn stats(&self, collection: &str) -> Result<Stats> {
        self.send(self.http.get(self.collection_url(collection, "stats"))).await
    }
}

/// The error a server's error answer names (`{"error": {"code", "field", "message"}}`).
fn answer_error(status: u16, body: &Value) -> RagError {
    let e = &body["error"];
    let message = e["message"].as_str().unwrap_or("no message").to_owned();
    match (e["code"].as_str(), e["field"].as_str()) {
        (Some("invalid_input"), Some(field)) => RagError::invalid_input(field, message),
        (Some("not_found"), _) => RagError::not_found(message, None),
        (Some("not_configured"), _) => RagError::config(message),
        (Some("backend_unavailable" | "overloaded"), _) => RagError::transient("rag serve", message),
        _ => RagError::remote("rag serve", format!("answered {status}: {message}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_become_the_errors_they_name() {
        let bad = serde_json::json!({"error": {"code": "invalid_input", "field": "k", "message": "1 to 1000"}});
        assert!(matches!(answer_error(400, &bad), RagError::InvalidInput { input, .. } if input == "k"));
        let missing = serde_json::json!({"error": {"code": "not_found", "message": "document `x`"}});
        assert!(matches!(answer_error(404, &missing), RagError::NotFound { .. }));
        assert!(answer_error(500, &Value::Null).to_string().contains("500"));
    }
}
