//! `rag load`: drives a running `rag serve` over HTTP with a dataset's queries, as many in flight
//! as asked, and reports QPS, latency percentiles and errors (the service-level counterpart of
//! the in-process `rag bench`).

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use rag::bench::percentile;
use rag::eval::BeirDataset;
use rag::{RagError, Result};
use serde::Serialize;

/// Which endpoint each request hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadEndpoint {
    /// `POST /v1/collections/{c}/query`: retrieval and the answer.
    Query,
    /// `POST /v1/collections/{c}/search`: retrieval only.
    Search,
}

/// What a load run measured.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// The server's base URL.
    pub url: String,
    /// The collection queried.
    pub collection: String,
    /// The endpoint.
    pub endpoint: LoadEndpoint,
    /// Requests sent.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Completed requests per second of wall time.
    pub qps: f64,
    /// Latency percentiles, milliseconds, over every request.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Requests that did not get a 200 (or failed to connect).
    pub errors: usize,
    /// Responses by status (0: no response).
    pub statuses: BTreeMap<u16, usize>,
    /// Wall time.
    pub seconds: f64,
    /// With `--stream`: what the streamed answers measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamStats>,
}

/// What streamed answers measured (`rag load --stream`).
#[derive(Debug, Serialize)]
pub struct StreamStats {
    /// Completed answers per minute of wall time.
    pub answers_per_min: f64,
    /// Token events received, over all answers.
    pub tokens: usize,
    /// Token events per second of wall time, all answers together.
    pub tokens_per_s: f64,
    /// Time to the first token, milliseconds: median.
    pub ttft_p50_ms: f64,
    /// Time to the first token: 99th percentile.
    pub ttft_p99_ms: f64,
}

/// One request's outcome: status (0: no response), latency, and for a stream its first-token
/// time and token count.
struct Outcome {
    status: u16,
    ms: f64,
    ttft_ms: Option<f64>,
    tokens: usize,
}

/// Reads a Server-Sent Events answer to its end: (ms to the first `token` event, token events);
/// `None` when it broke off or ended with an `error` event (the request failed).
async fn read_stream(mut resp: reqwest::Response, start: Instant) -> Option<(Option<f64>, usize)> {
    let (mut buffer, mut first, mut tokens) = (String::new(), None, 0);
    while let Some(bytes) = resp.chunk().await.ok()? {
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            match line.trim() {
                "event: token" => {
                    tokens += 1;
                    first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1000.0);
                }
                "event: error" => return None,
                _ => {}
            }
        }
    }
    Some((first, tokens))
}

/// How a load run sends its requests.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The endpoint each request hits.
    pub endpoint: LoadEndpoint,
    /// Requests to send (the dataset's queries, cycled).
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// API key, if the server has keys.
    pub key: Option<String>,
    /// Stream each answer and measure its tokens.
    pub stream: bool,
    /// Start at this query of the dataset (runs that must not repeat each other's questions).
    pub skip: usize,
    /// A request not finished in this time counts as an error (status 0).
    pub timeout: std::time::Duration,
}

/// Runs `options.requests` queries from `dataset` (cycled) against `url`.
pub async fn run(url: &str, collection: &str, dataset: &std::path::Path, options: &LoadOptions) -> Result<LoadReport> {
    let LoadOptions { endpoint, requests, concurrency, ref key, stream, skip, timeout } = *options;
    if stream && endpoint != LoadEndpoint::Query {
        return Err(RagError::invalid_input("--stream", "only answers stream: use it with --endpoint query"));
    }
    let questions: Vec<String> = BeirDataset::load(dataset)?.queries.into_values().collect();
    if questions.is_empty() {
        return Err(RagError::invalid_input(dataset.display().to_string(), "queries.jsonl has no queries"));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(timeout)
        .build()
        .map_err(|e| RagError::remote("HTTP client", "could not be built", Some(e.into())))?;
    let path = match endpoint {
        LoadEndpoint::Query => "query",
        LoadEndpoint::Search => "search",
    };
    let target = format!("{}/v1/collections/{collection}/{path}", url.trim_end_matches('/'));
    let start = Instant::now();
    let results: Vec<Outcome> = futures::stream::iter((0..requests).map(|i| {
        let body = serde_json::json!({ "question": questions[(skip + i) % questions.len()], "stream": stream });
        let mut req = client.post(&target).json(&body);
        if let Some(k) = key.as_deref() {
            req = req.bearer_auth(k);
        }
        async move {
            let t = Instant::now();
            let (status, ttft_ms, tokens) = match req.send().await {
                // The whole body is part of the request's time.
                Ok(resp) if stream && resp.status().is_success() => {
                    let s = resp.status().as_u16();
                    match read_stream(resp, t).await {
                        Some((first, tokens)) => (s, first, tokens),
                        None => (0, None, 0),
                    }
                }
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    (if resp.bytes().await.is_ok() { s } else { 0 }, None, 0)
                }
                Err(_) => (0, None, 0),
            };
            Outcome { status, ms: t.elapsed().as_secs_f64() * 1000.0, ttft_ms, tokens }
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    let seconds = start.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results.iter().map(|o| o.ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut statuses = BTreeMap::new();
    for o in &results {
        *statuses.entry(o.status).or_insert(0) += 1;
    }
    let ok = results.iter().filter(|o| o.status == 200).count();
    let stream = stream.then(|| {
        let mut ttft: Vec<f64> = results.iter().filter_map(|o| o.ttft_ms).collect();
        ttft.sort_by(f64::total_cmp);
        let tokens = results.iter().map(|o| o.tokens).sum::<usize>();
        StreamStats {
            answers_per_min: ok as f64 * 60.0 / seconds,
            tokens,
            tokens_per_s: tokens as f64 / seconds,
            ttft_p50_ms: percentile(&ttft, 50.0),
            ttft_p99_ms: percentile(&ttft, 99.0),
        }
    });
    Ok(LoadReport {
        url: url.to_owned(),
        collection: collection.to_owned(),
        endpoint,
        requests,
        concurrency,
        qps: requests as f64 / seconds,
        p50_ms: percentile(&latencies, 50.0),
        p95_ms: percentile(&latencies, 95.0),
        p99_ms: percentile(&latencies, 99.0),
        errors: results.len() - ok,
        statuses,
        seconds,
        stream,
    })
}
