//! `rag serve`: the rag pipeline as a long-running service.
//!
//! One process loads the models once and serves every collection under its data directory:
//! a JSON API with Server-Sent Events for streamed answers, an OpenAI-compatible chat endpoint,
//! MCP tools over streamable HTTP (and stdio through [`mcp::serve_stdio`]), Prometheus metrics,
//! health and readiness probes, and a small web page. API keys name the collections they may
//! read or write and, optionally, a tenant filter they are held to. The endpoints are listed in
//! `docs/http-api.md`; [`openapi::document`] is the OpenAPI description generated from the
//! routes.
//!
//! ```no_run
//! # async fn run() -> rag::Result<()> {
//! let cfg = rag::RagConfig::load(None)?;
//! rag_server::serve(cfg, rag_server::ServeOptions::default()).await
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod feedback;
pub mod listen;
pub mod mcp;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod state;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rag::assemble::{Needs, PipelineFactory};
use rag::{RagConfig, RagError, Result};

pub use auth::{Keys, Principal};
pub use error::ApiError;
pub use state::AppState;

use crate::api::AppStateRef;
use crate::metrics::{LatencyLabels, RouteLabels};

/// Options of [`serve`] beyond the configuration file.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Listen address (overrides `server.addr`); port 0 picks a free one.
    pub addr: Option<String>,
    /// Called once with the bound address, before the first request is served.
    pub on_listen: Option<Arc<dyn Fn(SocketAddr) + Send + Sync>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The shared state for `cfg`: keys read, pipelines not yet opened.
pub fn state(cfg: RagConfig) -> Result<AppStateRef> {
    let keys = Keys::load(&cfg.server.keys, |v| std::env::var(v).ok())?;
    state_with_keys(cfg, keys)
}

/// The shared state for `cfg` with these keys.
pub fn state_with_keys(cfg: RagConfig, keys: Keys) -> Result<AppStateRef> {
    let factory = PipelineFactory::new(cfg, Needs::All)?;
    Ok(Arc::new(AppState::new(factory, keys)))
}

/// A route table: `method "path" => handler` rows, kept as (method, path, router) so the
/// OpenAPI document's table can be checked against it.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        vec![$((stringify!($method), $path, axum::routing::$method($handler))),*]
    };
}

/// One route: its method (lowercase), its path, its handler.
pub type Route = (&'static str, &'static str, axum::routing::MethodRouter<AppStateRef>);

/// The routes behind API keys. Each is documented once in [`openapi`]'s table (and
/// docs/http-api.md); a test holds the three together.
pub fn api_routes() -> Vec<Route> {
    routes![
        get "/v1/collections" => api::list_collections,
        post "/v1/collections/{collection}/query" => api::query,
        post "/v1/collections/{collection}/search" => api::search,
        post "/v1/collections/{collection}/documents" => api::ingest,
        delete "/v1/collections/{collection}/documents/{id}" => api::delete_document,
        get "/v1/collections/{collection}/stats" => api::stats,
        post "/v1/collections/{collection}/feedback" => feedback::give,
        get "/v1/collections/{collection}/feedback" => feedback::list,
        post "/v1/local/collections/{collection}/files" => api::ingest_files,
        post "/v1/chat/completions" => openai::chat_completions,
        get "/v1/models" => openai::models,
    ]
}

/// The routes open without a key.
pub fn open_routes() -> Vec<Route> {
    routes![
        get "/" => web::index,
        get "/healthz" => api::healthz,
        get "/readyz" => api::readyz,
        get "/metrics" => api::metrics,
        get "/openapi.json" => openapi::serve,
    ]
}

/// Where MCP's streamable HTTP transport is mounted (POST, GET and DELETE).
pub const MCP_PATH: &str = "/mcp";

/// The whole application: every route, with keys, limits and metrics applied. `mcp_cancel`
/// ends the MCP sessions (at shutdown).
pub fn router(state: AppStateRef, mcp_cancel: tokio_util::sync::CancellationToken) -> Router {
    let api = api_routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| r.route(path, handler))
        .nest_service(MCP_PATH, mcp::http_service(state.clone(), mcp_cancel))
        .layer(middleware::from_fn(mcp_session_end))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), limit));
    let open = open_routes().into_iter().fold(Router::new(), |r, (_, path, handler)| r.route(path, handler));
    api.merge(open)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {} (see docs/http-api.md or GET /openapi.json)", req.method(), req.uri().path()))
}

/// Puts the request's [`Principal`] on it, or answers 401.
async fn authenticate(State(state): State<AppStateRef>, mut req: Request, next: Next) -> Response {
    match state.keys.authenticate(req.headers()) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Ends an MCP session as the MCP SDKs expect: `DELETE /mcp` answers 204 (rmcp says 202,
/// which the official Python SDK logs as a failed termination on every close).
async fn mcp_session_end(req: Request, next: Next) -> Response {
    let ending = req.method() == axum::http::Method::DELETE && req.uri().path() == "/mcp";
    let mut response = next.run(req).await;
    if ending && response.status() == axum::http::StatusCode::ACCEPTED {
        *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
    }
    response
}

/// Whether `req` opens a long-lived stream (MCP's `GET /mcp` event stream, open for a whole
/// session), which takes a slot of `server.max_streams` rather than a request's.
fn opens_stream(req: &Request) -> bool {
    req.method() == axum::http::Method::GET && req.uri().path() == "/mcp"
}

/// Holds a request to the concurrency cap (503 with `Retry-After` past it) and the request
/// timeout (504). A streamed response keeps its slot until its body ends; a long-lived stream
/// ([`opens_stream`]) holds a slot of its own pool, so open streams never starve requests.
async fn limit(State(state): State<AppStateRef>, req: Request, next: Next) -> Response {
    let (pool, what, setting, cap) = if opens_stream(&req) {
        (&state.streams, "streams", "server.max_streams", state.settings.max_streams)
    } else {
        (&state.limiter, "requests", "server.max_concurrent_requests", state.settings.max_concurrent_requests)
    };
    let Ok(permit) = pool.clone().try_acquire_owned() else {
        state.metrics.overloaded.inc();
        return ApiError::overloaded(format!("the server is serving its limit of {cap} {what} ({setting}): retry shortly"), 1)
            .into_response();
    };
    // The local `rag ingest` (files by path, only with the local token) runs as long as the
    // folder takes, as it would in the terminal.
    let timeout = if req.uri().path().starts_with("/v1/local/") {
        Duration::MAX
    } else {
        Duration::from_secs(state.settings.request_timeout_secs)
    };
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _slot = &permit;
                chunk
            }));
            Response::from_parts(parts, body)
        }
        Err(_) => ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the request took longer than {timeout:?} (server.request_timeout_secs)"),
        )
        .into_response(),
    }
}

/// Counts every request by its matched route (never the raw path, which holds ids) and status.
async fn measure(State(state): State<AppStateRef>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    // Dropped with the request's future too, when a client goes away before the response head.
    let in_flight = InFlight::enter(&state.metrics.in_flight);
    let response = next.run(req).await;
    drop(in_flight);
    let status = response.status().as_u16();
    state.metrics.requests.get_or_create(&RouteLabels { route: route.clone(), method: method.clone(), status }).inc();
    state.metrics.latency.get_or_create(&LatencyLabels { route, method }).observe(start.elapsed().as_secs_f64());
    response
}

/// One request counted in the in-flight gauge until dropped, whichever way the request ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn enter(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resolves on SIGTERM or SIGINT.
/// Completes on SIGINT (Ctrl-C) or SIGTERM: the signals a server or worker stops on.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Checks that a server without keys listens on loopback only, unless allowed.
fn check_exposure(addr: &SocketAddr, keys: &Keys, cfg: &RagConfig) -> Result<()> {
    if keys.is_empty() && !addr.ip().is_loopback() && !cfg.server.allow_unauthenticated {
        return Err(RagError::config(format!(
            "no API key is configured, so the server listens on loopback only, not {addr}: add server.keys \
             (or set RAG_API_KEY), or set server.allow_unauthenticated = true to serve everyone"
        )));
    }
    Ok(())
}

/// Runs the server until SIGTERM/SIGINT: then it stops accepting, lets in-flight requests finish
/// within `server.shutdown_grace_secs`, and returns.
pub async fn serve(cfg: RagConfig, options: ServeOptions) -> Result<()> {
    let addr_text = options.addr.clone().unwrap_or_else(|| cfg.server.addr.clone());
    let addr: SocketAddr =
        addr_text.parse().map_err(|e| RagError::invalid_input("server.addr", format!("`{addr_text}` is not HOST:PORT ({e})")))?;
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    // Before anything opens the stores: another server holding this data directory is named.
    // (Workers whose state all lives in servers may share one: they publish nothing.)
    let holds = cfg.holds_local_state();
    if holds {
        discovery::ServerFile::ensure_free(&cfg.data_dir)?;
    }
    let keys = Keys::load(&cfg.server.keys, |v| std::env::var(v).ok())?;
    check_exposure(&addr, &keys, &cfg)?;
    let listener =
        listen::bind(addr).map_err(|e| RagError::Io { path: std::path::PathBuf::from(addr.to_string()), source: e })?;
    let bound = listener.local_addr().map_err(|e| RagError::Io { path: addr.to_string().into(), source: e })?;
    // The `rag` command on this machine finds the server through this file, and sends its
    // work here instead of opening the stores this process holds (see `discovery`).
    let (state, published) = if holds {
        let file = discovery::ServerFile::new(bound);
        let state = state_with_keys(cfg.clone(), keys.with_local_token(&file.token))?;
        (state, Some(file.publish(&cfg.data_dir)?))
    } else {
        (state_with_keys(cfg.clone(), keys)?, None)
    };
    let warm = state.clone();
    let warming = tokio::spawn(async move {
        if let Err(e) = warm.warm_up().await {
            tracing::error!(error = %e, "warm-up failed: /readyz stays 503");
        }
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    #[cfg(feature = "redis-queue")]
    let queue_worker = match state.queue_worker().await? {
        Some(worker) => {
            let stop = cancel.child_token();
            tracing::info!(worker = worker.name(), "working the ingest queue beside serving");
            Some(tokio::spawn(async move {
                match worker.run(async move { stop.cancelled().await }).await {
                    Ok(r) => tracing::info!(batches = r.batches, "queue worker stopped"),
                    Err(e) => tracing::error!(error = %e, "queue worker stopped"),
                }
            }))
        }
        None => None,
    };
    let app = router(state.clone(), cancel.child_token());
    if let Some(f) = &options.on_listen {
        f(bound);
    }
    let limits = listen::ConnectionLimits::new(&cfg.server);
    tracing::info!(%bound, keys = !state.keys.is_empty(), max_connections = limits.max_connections, "rag serve listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_cancel = cancel.clone();
    let server = listen::serve(listener, app, limits, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        signal_cancel.cancel();
        let _ = stop_tx.send(true);
    });
    let deadline = async move {
        let mut rx = stop_rx;
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        () = deadline => tracing::warn!(?grace, "requests still in flight after the shutdown grace period: abandoning them"),
    }
    warming.abort();
    #[cfg(feature = "redis-queue")]
    if let Some(w) = queue_worker {
        // The batch in hand is finished (it was told to stop with the signal); bounded by the grace.
        let _ = tokio::time::timeout(grace, w).await;
    }
    drop(published);
    // Writes are committed as each request finishes (keyword index, manifest, cache); nothing
    // is buffered, so what remains is to say so.
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_keys_only_loopback_is_served() {
        let cfg = RagConfig::default();
        let keys = Keys::default();
        assert!(check_exposure(&"127.0.0.1:8080".parse().unwrap(), &keys, &cfg).is_ok());
        let e = check_exposure(&"0.0.0.0:8080".parse().unwrap(), &keys, &cfg).unwrap_err().to_string();
        assert!(e.contains("allow_unauthenticated") && e.contains("RAG_API_KEY"), "{e}");
        let mut open = cfg.clone();
        open.server.allow_unauthenticated = true;
        assert!(check_exposure(&"0.0.0.0:8080".parse().unwrap(), &keys, &open).is_ok());
    }
}
