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
}

/// Runs `requests` queries from `dataset` (cycled) against `url` with `concurrency` in flight.
pub async fn run(
    url: &str,
    collection: &str,
    endpoint: LoadEndpoint,
    dataset: &std::path::Path,
    requests: usize,
    concurrency: usize,
    key: Option<&str>,
) -> Result<LoadReport> {
    let questions: Vec<String> = BeirDataset::load(dataset)?.queries.into_values().collect();
    if questions.is_empty() {
        return Err(RagError::invalid_input(dataset.display().to_string(), "queries.jsonl has no queries"));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| RagError::remote("HTTP client", "could not be built", Some(e.into())))?;
    let path = match endpoint {
        LoadEndpoint::Query => "query",
        LoadEndpoint::Search => "search",
    };
    let target = format!("{}/v1/collections/{collection}/{path}", url.trim_end_matches('/'));
    let start = Instant::now();
    let results: Vec<(u16, f64)> = futures::stream::iter((0..requests).map(|i| {
        let mut req = client.post(&target).json(&serde_json::json!({ "question": questions[i % questions.len()] }));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let t = Instant::now();
            let status = match req.send().await {
                // The whole body is part of the request's time.
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    if resp.bytes().await.is_ok() { s } else { 0 }
                }
                Err(_) => 0,
            };
            (status, t.elapsed().as_secs_f64() * 1000.0)
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    let seconds = start.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results.iter().map(|(_, ms)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut statuses = BTreeMap::new();
    for (s, _) in &results {
        *statuses.entry(*s).or_insert(0) += 1;
    }
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
        errors: results.iter().filter(|(s, _)| *s != 200).count(),
        statuses,
        seconds,
    })
}
