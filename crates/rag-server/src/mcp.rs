//! MCP (Model Context Protocol) tools `search` and `answer`, over streamable HTTP at `/mcp` and
//! over stdio (`rag mcp`), with the official Rust SDK (`rmcp`). Over HTTP a tool call is held
//! to the same API key, collections and tenant as the JSON API.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig as McpServerInfo};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

use crate::api::{AppStateRef, QueryRequest};
use crate::auth::{Need, Principal};
use crate::error::ApiError;

/// Arguments of `search`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// What to look for.
    pub query: String,
    /// Collection to search; default: the server's default collection.
    #[serde(default)]
    pub collection: Option<String>,
    /// How many passages (1 to 1000; default 5).
    #[serde(default)]
    pub k: Option<usize>,
}

/// Arguments of `answer`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AnswerArgs {
    /// The question.
    pub question: String,
    /// Collection to answer from; default: the server's default collection.
    #[serde(default)]
    pub collection: Option<String>,
    /// How many passages to retrieve (1 to 1000).
    #[serde(default)]
    pub k: Option<usize>,
}

/// The MCP server: the pipeline's search and answer as tools.
#[derive(Clone)]
pub struct RagMcp {
    state: AppStateRef,
}

impl std::fmt::Debug for RagMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagMcp").finish_non_exhaustive()
    }
}

fn tool_error(e: ApiError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.body().to_string())])
}

/// The principal of a tool call: over HTTP, the one the key middleware put on the request;
/// over stdio (a local process the user started), everything.
fn principal(ctx: &RequestContext<RoleServer>) -> Principal {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>().cloned())
        .unwrap_or_else(Principal::anonymous)
}

#[tool_router]
impl RagMcp {
    /// Tools over the server's state.
    pub fn new(state: AppStateRef) -> Self {
        Self { state }
    }

    fn default_collection(&self, given: Option<String>) -> String {
        given.unwrap_or_else(|| self.state.configured_collections().into_iter().next().unwrap_or_else(|| "rag".into()))
    }

    /// What both tools do first: the caller's access, the limits, the collection, the options.
    async fn prepare(
        &self,
        ctx: &RequestContext<RoleServer>,
        collection: Option<String>,
        question: String,
        k: Option<usize>,
    ) -> Result<(Principal, Arc<crate::state::Collection>, QueryRequest, rag::QueryOptions), ApiError> {
        let p = principal(ctx);
        let collection = self.default_collection(collection);
        let req = QueryRequest { question, k, mode: None, rerank: None, filter: None, stream: false };
        p.check(&collection, Need::Read)?;
        let opts = self.state.options(&p, &req)?;
        let c = self.state.readable_collection(&p, &collection).await?;
        Ok((p, c, req, opts))
    }

    #[tool(
        description = "Search the document collection: ranked passages with their document ids and scores (hybrid BM25 + dense retrieval)."
    )]
    async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let run = async {
            let (p, c, req, opts) = self.prepare(&ctx, args.collection, args.query, args.k).await?;
            let mut hits = c.pipeline.search(&req.question, &opts).await?.hits;
            p.present_hits(&mut hits);
            Ok::<_, ApiError>(hits)
        };
        Ok(match run.await {
            Ok(hits) => {
                let hits = serde_json::to_string_pretty(&hits).unwrap_or_default();
                CallToolResult::success(vec![ContentBlock::text(hits)])
            }
            Err(e) => tool_error(e),
        })
    }

    #[tool(description = "Answer a question from the document collection, with numbered citations of the passages used.")]
    async fn answer(
        &self,
        Parameters(args): Parameters<AnswerArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let run = async {
            let (p, c, req, opts) = self.prepare(&ctx, args.collection, args.question, args.k).await?;
            let mut r = c.pipeline.query(&req.question, &opts).await?;
            self.state.answered(&p, c.pipeline.collection(), &req.question, &mut r);
            Ok::<_, ApiError>(r)
        };
        Ok(match run.await {
            Ok(r) => {
                let mut text = r.answer.clone();
                text.push_str("\n\nSources:\n");
                for c in &r.citations {
                    text.push_str(&format!("[{}] {} ({}): {}\n", c.number, c.label(), c.doc_id, c.text));
                }
                CallToolResult::success(vec![ContentBlock::text(text)])
            }
            Err(e) => tool_error(e),
        })
    }
}

#[tool_handler]
impl ServerHandler for RagMcp {
    fn get_info(&self) -> McpServerInfo {
        let mut info = McpServerInfo::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info.server_info = Implementation::from_build_env();
        info.instructions = Some("Search and answer over a rag document collection.".into());
        info
    }
}

/// The `/mcp` service (streamable HTTP), stopped by `cancel`.
pub fn http_service(
    state: AppStateRef,
    cancel: tokio_util::sync::CancellationToken,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    RagMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
    let config = StreamableHttpServerConfig::default().with_cancellation_token(cancel);
    // An idle session (and the event stream it holds open) ends after server.mcp_session_idle_secs.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(std::time::Duration::from_secs(state.settings.mcp_session_idle_secs));
    StreamableHttpService::new(move || Ok(RagMcp::new(state.clone())), Arc::new(sessions), config)
}

/// Serves the tools over stdin/stdout until the client closes them.
pub async fn serve_stdio(state: AppStateRef) -> rag::Result<()> {
    use rmcp::ServiceExt;
    let running = RagMcp::new(state)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| rag::RagError::remote("MCP over stdio", "could not start", Some(e.into())))?;
    running.waiting().await.map_err(|e| rag::RagError::remote("MCP over stdio", "stopped", Some(e.into())))?;
    Ok(())
}

/// `rag mcp` beside a running `rag serve` on the same data directory: the same tools over
/// stdio, each call forwarded to the server's `/mcp` (the server holds the stores, so this
/// process opens none). `token` is the server's local token ([`crate::discovery`]).
pub async fn forward_stdio(url: &str, token: &str) -> rag::Result<()> {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{url}/mcp")).auth_header(token.to_owned());
    let upstream =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .map_err(|e| rag::RagError::remote(format!("MCP: rag serve at {url}"), "did not answer", Some(e.into())))?;
    let forward = ForwardedTools { upstream: upstream.peer().clone() };
    let running = forward
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| rag::RagError::remote("MCP over stdio", "could not start", Some(e.into())))?;
    let waited = running.waiting().await;
    let _ = upstream.cancel().await;
    waited.map_err(|e| rag::RagError::remote("MCP over stdio", "stopped", Some(e.into())))?;
    Ok(())
}

/// The tools of a running server, served over stdio by forwarding each call.
#[derive(Clone)]
struct ForwardedTools {
    upstream: rmcp::Peer<rmcp::RoleClient>,
}

fn upstream_error(e: rmcp::ServiceError) -> McpError {
    McpError::internal_error(format!("rag serve: {e}"), None)
}

impl ServerHandler for ForwardedTools {
    fn get_info(&self) -> McpServerInfo {
        let mut info = McpServerInfo::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info.server_info = Implementation::from_build_env();
        info.instructions = Some("Search and answer over a rag document collection (through the running rag serve).".into());
        info
    }

    async fn list_tools(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, McpError> {
        self.upstream.list_tools(request).await.map_err(upstream_error)
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        self.upstream.call_tool_once(request).await.map_err(upstream_error)
    }
}
