//! What every request shares: the pipelines (one per collection, one set of models), the keys,
//! the limits and the metrics.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rag::assemble::PipelineFactory;
use rag::config::ServerConfig;
use rag::{RagPipeline, Result};
use tokio::sync::{Mutex, OnceCell, Semaphore};

use crate::auth::{Keys, Principal};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// One served collection: its pipeline, and a lock that keeps its writes one at a time (the
/// keyword index has one writer, and the manifest is rewritten per ingest).
pub struct Collection {
    /// The pipeline.
    pub pipeline: RagPipeline,
    /// Held while ingesting or deleting.
    pub writes: Mutex<()>,
}

/// Shared server state.
pub struct AppState {
    factory: PipelineFactory,
    collections: Mutex<HashMap<String, Arc<OnceCell<Arc<Collection>>>>>,
    /// Server settings (limits, keys).
    pub settings: ServerConfig,
    /// API keys.
    pub keys: Keys,
    /// Metrics.
    pub metrics: Metrics,
    /// Caps requests in flight.
    pub limiter: Arc<Semaphore>,
    /// Caps long-lived streams (MCP's event stream), apart from requests.
    pub streams: Arc<Semaphore>,
    /// Where judgments of answers go (`DATA_DIR/feedback.jsonl` unless replaced).
    pub feedback: Arc<dyn rag::feedback::FeedbackStore>,
    /// The last answers given, which judgments may name.
    pub answers: std::sync::Mutex<crate::feedback::RecentAnswers>,
    /// `(collection, tenant namespace)` pairs known to hold some of the tenant's documents.
    tenant_data: std::sync::Mutex<HashSet<(String, String)>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("factory", &self.factory).finish_non_exhaustive()
    }
}

/// Collection names become directory names: letters, digits, `_`, `-`, `.`, 1 to 64 of them,
/// starting with a letter or digit.
pub fn check_collection_name(name: &str) -> std::result::Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "collection",
            format!(
                "`{name}` is not a collection name: use 1 to 64 letters, digits, `_`, `-` or `.`, starting with a letter or digit"
            ),
        ))
    }
}

/// The 404 of a collection that does not exist (or that the caller may not know of).
fn missing_collection(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "collection `{name}` does not exist: ingest documents into it first (POST /v1/collections/{name}/documents)"
    ))
}

impl AppState {
    /// State over `factory`'s configuration.
    pub fn new(factory: PipelineFactory, keys: Keys) -> Self {
        let settings = factory.config().server.clone();
        let feedback = Arc::new(rag::feedback::JsonlFeedbackStore::in_data_dir(&factory.config().data_dir));
        Self {
            feedback,
            answers: std::sync::Mutex::new(crate::feedback::RecentAnswers::new(settings.feedback_answers)),
            limiter: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            streams: Arc::new(Semaphore::new(settings.max_streams)),
            tenant_data: std::sync::Mutex::new(HashSet::new()),
            factory,
            collections: Mutex::new(HashMap::new()),
            settings,
            keys,
            metrics: Metrics::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// The collections served from the start: `server.collections`, else `collection`.
    pub fn configured_collections(&self) -> Vec<String> {
        let cfg = self.factory.config();
        if cfg.server.collections.is_empty() { vec![cfg.collection.clone()] } else { cfg.server.collections.clone() }
    }

    /// Every collection that exists: the configured ones and those under the data directory
    /// (a directory there is a collection only if it holds one's ingest record: any other
    /// directory, empty or not, is not listed).
    pub fn known_collections(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.configured_collections().into_iter().collect();
        let dir = self.factory.config().data_dir.join("collections");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Some(n) = e.file_name().to_str()
                    && check_collection_name(n).is_ok()
                    && self.holds_collection(n)
                {
                    names.insert(n.to_owned());
                }
            }
        }
        names.into_iter().collect()
    }

    /// Whether the data directory holds collection `name` (its ingest record is there).
    fn holds_collection(&self, name: &str) -> bool {
        self.factory.config().data_dir.join("collections").join(name).join(rag::pipeline::MANIFEST_FILE).is_file()
    }

    fn exists(&self, name: &str) -> bool {
        self.configured_collections().iter().any(|c| c == name) || self.holds_collection(name)
    }

    /// The collection `name` for reading by `p`. A tenant-bound key that reaches it only
    /// through `*` sees it only where its tenant has documents: elsewhere it is the same 404 as
    /// a collection that does not exist, so a tenant learns nothing of others' collections.
    pub async fn readable_collection(&self, p: &Principal, name: &str) -> std::result::Result<Arc<Collection>, ApiError> {
        let c = self.collection(name, false).await?;
        if self.tenant_sees(p, name, &c).await? { Ok(c) } else { Err(missing_collection(name)) }
    }

    /// Whether `p` sees collection `name` (already opened as `c`): always without a tenant or
    /// when the key names it; otherwise when the tenant has documents there.
    async fn tenant_sees(&self, p: &Principal, name: &str, c: &Collection) -> std::result::Result<bool, ApiError> {
        let Some(t) = p.tenant() else { return Ok(true) };
        if p.names(name) {
            return Ok(true);
        }
        let pair = (name.to_owned(), t.namespace().to_owned());
        if self.tenant_data.lock().map(|s| s.contains(&pair)).unwrap_or(false) {
            return Ok(true);
        }
        let has = c.pipeline.origin_counts(vec![t.namespace().to_owned()]).await?.documents > 0;
        if has {
            self.tenant_has_data(name, p);
        }
        Ok(has)
    }

    /// Records that `p`'s tenant now has documents in collection `name`.
    pub fn tenant_has_data(&self, name: &str, p: &Principal) {
        if let (Some(t), Ok(mut set)) = (p.tenant(), self.tenant_data.lock()) {
            set.insert((name.to_owned(), t.namespace().to_owned()));
        }
    }

    /// The collections `p` may list: those it can see, and for a tenant-bound key reaching
    /// them through `*`, only where its tenant has documents.
    pub async fn visible_collections(&self, p: &Principal) -> std::result::Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        for name in self.known_collections().into_iter().filter(|c| p.can_see(c)) {
            if p.tenant().is_none() || p.names(&name) {
                out.push(name);
                continue;
            }
            let c = self.collection(&name, false).await?;
            if self.tenant_sees(p, &name, &c).await? {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The collection `name`, opened on first use. With `create`, a collection that does not
    /// exist yet is created (ingest); without, it is a 404.
    pub async fn collection(&self, name: &str, create: bool) -> std::result::Result<Arc<Collection>, ApiError> {
        let cell = self.collection_cell(name, create).await?;
        Ok(self.open_collection(name, &cell).await?)
    }

    /// The slot of collection `name` (checked; created when `create` or when it exists on disk).
    async fn collection_cell(&self, name: &str, create: bool) -> std::result::Result<Arc<OnceCell<Arc<Collection>>>, ApiError> {
        check_collection_name(name)?;
        let mut map = self.collections.lock().await;
        Ok(match map.get(name) {
            Some(c) => c.clone(),
            None => {
                if !create && !self.exists(name) {
                    return Err(missing_collection(name));
                }
                let c = Arc::new(OnceCell::new());
                map.insert(name.to_owned(), c.clone());
                c
            }
        })
    }

    /// Opens the pipeline of `name` into its slot, once.
    async fn open_collection(&self, name: &str, cell: &OnceCell<Arc<Collection>>) -> Result<Arc<Collection>> {
        let c = cell
            .get_or_try_init(|| async {
                let pipeline = self.factory.pipeline(name).await?;
                Ok::<_, rag::RagError>(Arc::new(Collection { pipeline, writes: Mutex::new(()) }))
            })
            .await?;
        Ok(c.clone())
    }

    /// With `queue.serve_worker`, a worker of the configured collection's ingest queue, over a
    /// pipeline of its own (sharing this server's models).
    #[cfg(feature = "redis-queue")]
    pub async fn queue_worker(&self) -> Result<Option<rag::queue::IngestWorker>> {
        let cfg = self.factory.config();
        if !cfg.queue.serve_worker {
            return Ok(None);
        }
        let url = cfg.queue.resolve_url(None)?;
        let queue = rag::redis_queue::RedisQueue::connect(&url, &cfg.collection, &cfg.queue).await?;
        let pipeline = Arc::new(self.factory.pipeline(&cfg.collection).await?);
        let name = format!("serve-{}", rag::queue::default_worker_name());
        Ok(Some(rag::queue::IngestWorker::new(pipeline, Arc::new(queue), name).settings(&cfg.queue)))
    }

    /// Replaces where judgments go (a library user's own [`rag::feedback::FeedbackStore`]).
    pub fn with_feedback_store(mut self, store: Arc<dyn rag::feedback::FeedbackStore>) -> Self {
        self.feedback = store;
        self
    }

    /// Collections opened so far.
    pub async fn open_collections(&self) -> Vec<Arc<Collection>> {
        let map = self.collections.lock().await;
        map.values().filter_map(|c| c.get().cloned()).collect()
    }

    /// Opens the configured collections and loads the embedding model (one short text), so the
    /// first query does not pay for it; then the server reports ready.
    pub async fn warm_up(&self) -> Result<()> {
        for name in self.configured_collections() {
            let cell = self
                .collection_cell(&name, true)
                .await
                .map_err(|e| rag::RagError::invalid_input(format!("configured collection `{name}`"), e.message))?;
            let c = self.open_collection(&name, &cell).await?;
            if let Some(e) = c.pipeline.embedder() {
                e.embed(vec!["warm-up".to_owned()]).await?;
            }
        }
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether warm-up has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Copies the embedding batcher's and cache's counters into the metrics (at scrape time).
    pub async fn refresh_model_metrics(&self) {
        if let Some(c) = self.open_collections().await.first() {
            if let Some(b) = c.pipeline.embed_batch_counters() {
                self.metrics.embed_batches.set(b.calls());
                self.metrics.embed_batch_texts.set(b.items());
            }
            if let Some(cache) = c.pipeline.cache_counters() {
                self.metrics.cache_hits.set(cache.hits);
                self.metrics.cache_misses.set(cache.embedded);
            }
        }
    }
}
