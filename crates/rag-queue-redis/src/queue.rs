//! The queue on Redis Streams.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use rag_core::queue::{BatchTally, DeadLetter, Delivery, RunStatus, WorkBatch};
use rag_core::{IngestQueue, RagError, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, Value};

use crate::QueueSettings;

/// The consumer group every worker reads through.
const GROUP: &str = "workers";
/// A run's bookkeeping outlives it by a week, then Redis drops it.
const RUN_TTL_SECS: u64 = 7 * 24 * 3600;
/// Dead letters kept per collection (the oldest go first).
const DEAD_LETTERS_KEPT: usize = 10_000;
/// The longest a worker's read blocks, so it notices a stop request soon.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// Adds a batch's tally to its run once (a set of acknowledged batch numbers decides), records
/// its dead letters, then acknowledges and deletes the entry: one atomic step.
const ACK_SCRIPT: &str = r#"
local first = redis.call('SADD', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
if first == 1 then
  redis.call('HINCRBY', KEYS[2], 'acked_batches', 1)
  redis.call('HINCRBY', KEYS[2], 'worker:' .. ARGV[4] .. ':batches', 1)
  redis.call('HINCRBY', KEYS[2], 'worker:' .. ARGV[4] .. ':documents', ARGV[5])
  local pairs = tonumber(ARGV[8])
  local i = 9
  for _ = 1, pairs do
    redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  while i <= #ARGV do
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'letter', ARGV[i])
    i = i + 1
  end
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return first
"#;

/// The keys of one collection's queue, all under one hash tag.
#[derive(Debug, Clone)]
struct Keys {
    base: String,
}

impl Keys {
    fn new(collection: &str) -> Self {
        Self { base: format!("rag:queue:{{{collection}}}") }
    }
    fn batches(&self) -> String {
        format!("{}:batches", self.base)
    }
    fn dead(&self) -> String {
        format!("{}:dead", self.base)
    }
    fn run(&self, run: &str) -> String {
        format!("{}:run:{run}", self.base)
    }
    fn done(&self, run: &str) -> String {
        format!("{}:run:{run}:done", self.base)
    }
}

/// An [`IngestQueue`] on Redis Streams, shared by every process that connects to the same Redis
/// and collection. Cheap to clone (one multiplexed connection that reconnects by itself).
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    url: String,
    keys: Keys,
    visibility: Duration,
    ack: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").field("url", &self.url).field("stream", &self.keys.batches()).finish_non_exhaustive()
    }
}

fn redis_err(url: &str) -> impl Fn(redis::RedisError) -> RagError + '_ {
    move |e| {
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
            RagError::transient("redis queue", format!("{url}: {e} (is redis-server running there?)"))
        } else {
            RagError::permanent("redis queue", format!("{url}: {e}"))
        }
    }
}

impl RedisQueue {
    /// Connects to the queue of `collection` at `url` and makes sure its stream and consumer
    /// group exist (a group made here reads the stream from its start, so workers started after
    /// the producer still see every batch).
    pub async fn connect(url: &str, collection: &str, settings: &QueueSettings) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| RagError::invalid_input("queue URL", format!("`{url}`: {e} (use redis://HOST:PORT/DB)")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // Reads block up to MAX_BLOCK on the server: the reply may take that long.
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(10)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(|e| {
            RagError::transient("redis queue", format!("cannot reach {url}: {e} (is redis-server running there?)"))
        })?;
        let queue = Self {
            conn,
            url: url.to_owned(),
            keys: Keys::new(collection),
            visibility: Duration::from_secs(settings.visibility_timeout_secs),
            ack: std::sync::Arc::new(redis::Script::new(ACK_SCRIPT)),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// The stream's key (for operators: `XLEN`, `XPENDING`).
    pub fn stream_key(&self) -> String {
        self.keys.batches()
    }

    /// The dead letters' stream key.
    pub fn dead_letter_key(&self) -> String {
        self.keys.dead()
    }

    async fn ensure_group(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let made: redis::RedisResult<()> = conn.xgroup_create_mkstream(self.keys.batches(), GROUP, "0").await;
        match made {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(redis_err(&self.url)(e)),
        }
    }

    /// Runs `op`; if Redis lost the group (restarted without persistence), makes it again and
    /// runs `op` once more.
    async fn with_group<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match op(self.conn.clone()).await {
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(url = %self.url, "the queue's consumer group was gone (Redis restarted without appendonly?): made again");
                self.ensure_group().await?;
                op(self.conn.clone()).await.map_err(redis_err(&self.url))
            }
            other => other.map_err(redis_err(&self.url)),
        }
    }

    /// Reads an entry into a delivery; an entry that is not a batch is moved to the dead
    /// letters (`None`).
    async fn delivery(&self, worker: &str, entry: StreamId, deliveries: u32) -> Result<Option<Delivery>> {
        let raw: Option<String> = entry.get("batch");
        match raw.as_deref().map(serde_json::from_str::<WorkBatch>) {
            Some(Ok(batch)) => Ok(Some(Delivery { receipt: entry.id, batch, deliveries })),
            other => {
                let reason = match other {
                    Some(Err(e)) => format!("stream entry {} is not a rag batch: {e}", entry.id),
                    _ => format!("stream entry {} has no `batch` field", entry.id),
                };
                tracing::warn!(%reason, "moved to the dead letters");
                let letter = DeadLetter {
                    run: entry.get("run").unwrap_or_default(),
                    seq: 0,
                    doc_ids: Vec::new(),
                    reason,
                    deliveries,
                    worker: worker.to_owned(),
                };
                let json = serde_json::to_string(&letter).map_err(|e| RagError::json("a dead letter", e))?;
                let mut conn = self.conn.clone();
                redis::pipe()
                    .cmd("XADD")
                    .arg(self.keys.dead())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(DEAD_LETTERS_KEPT)
                    .arg("*")
                    .arg("letter")
                    .arg(json)
                    .ignore()
                    .xack(self.keys.batches(), GROUP, &[&entry.id])
                    .ignore()
                    .xdel(self.keys.batches(), &[&entry.id])
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_err(&self.url))?;
                Ok(None)
            }
        }
    }

    /// How many times the pending entry `id` has been delivered.
    async fn deliveries(&self, id: &str) -> Result<u32> {
        let reply: StreamPendingCountReply =
            self.with_group(|mut c| async move { c.xpending_count(self.keys.batches(), GROUP, id, id, 1).await }).await?;
        Ok(reply.ids.first().map(|p| p.times_delivered as u32).unwrap_or(1))
    }
}

fn number(fields: &HashMap<String, Value>, key: &str) -> u64 {
    match fields.get(key) {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        Some(Value::Int(i)) => (*i).max(0) as u64,
        _ => 0,
    }
}

#[async_trait]
impl IngestQueue for RedisQueue {
    async fn push(&self, batch: &WorkBatch) -> Result<()> {
        let json = serde_json::to_string(batch).map_err(|e| RagError::json("a work batch", e))?;
        let mut conn = self.conn.clone();
        let run = self.keys.run(&batch.run);
        redis::pipe()
            .cmd("XADD")
            .arg(self.keys.batches())
            .arg("*")
            .arg("run")
            .arg(&batch.run)
            .arg("seq")
            .arg(batch.seq)
            .arg("batch")
            .arg(json)
            .ignore()
            .hincr(&run, "pushed_batches", 1)
            .ignore()
            .hincr(&run, "pushed_documents", batch.documents.len())
            .ignore()
            .expire(&run, RUN_TTL_SECS as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err(&self.url))
    }

    async fn seal(&self, run: &str, batches: u64, documents: u64) -> Result<()> {
        let mut conn = self.conn.clone();
        let key = self.keys.run(run);
        redis::pipe()
            .hset_multiple(&key, &[("sealed", 1), ("batches", batches), ("documents", documents)])
            .ignore()
            .expire(&key, RUN_TTL_SECS as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err(&self.url))
    }

    async fn next(&self, worker: &str, wait: Duration) -> Result<Option<Delivery>> {
        // Entries come back only as batches or as dead letters, so this ends: a few rounds at most.
        for _ in 0..16 {
            let idle_ms = self.visibility.as_millis() as u64;
            let claimed: redis::streams::StreamAutoClaimReply = self
                .with_group(|mut c| async move {
                    c.xautoclaim_options(
                        self.keys.batches(),
                        GROUP,
                        worker,
                        idle_ms,
                        "0-0",
                        StreamAutoClaimOptions::default().count(1),
                    )
                    .await
                })
                .await?;
            if let Some(entry) = claimed.claimed.into_iter().next() {
                let deliveries = self.deliveries(&entry.id).await?;
                tracing::info!(id = %entry.id, deliveries, "claimed a batch another worker left unacknowledged");
                match self.delivery(worker, entry, deliveries).await? {
                    Some(d) => return Ok(Some(d)),
                    None => continue,
                }
            }
            let block = wait.min(MAX_BLOCK).as_millis() as usize;
            let options = move || {
                let options = StreamReadOptions::default().group(GROUP, worker).count(1);
                if block > 0 { options.block(block) } else { options }
            };
            let read: Option<StreamReadReply> = self
                .with_group(|mut c| {
                    let options = options();
                    async move { c.xread_options(&[self.keys.batches()], &[">"], &options).await }
                })
                .await?;
            let Some(entry) = read.and_then(|r| r.keys.into_iter().next()).and_then(|k| k.ids.into_iter().next()) else {
                return Ok(None);
            };
            if let Some(d) = self.delivery(worker, entry, 1).await? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    async fn keep(&self, worker: &str, delivery: &Delivery) -> Result<()> {
        let id = delivery.receipt.as_str();
        self.with_group(|mut c| async move {
            redis::cmd("XCLAIM")
                .arg(self.keys.batches())
                .arg(GROUP)
                .arg(worker)
                .arg(0)
                .arg(id)
                .arg("JUSTID")
                .query_async::<Value>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn ack(&self, worker: &str, delivery: &Delivery, tally: BatchTally, dead: Vec<DeadLetter>) -> Result<bool> {
        let batch = &delivery.batch;
        let letters: Vec<String> = dead
            .iter()
            .map(|d| serde_json::to_string(d).map_err(|e| RagError::json("a dead letter", e)))
            .collect::<Result<_>>()?;
        let fields = tally.fields();
        let mut invocation = self.ack.prepare_invoke();
        invocation
            .key(self.keys.batches())
            .key(self.keys.run(&batch.run))
            .key(self.keys.done(&batch.run))
            .key(self.keys.dead())
            .arg(GROUP)
            .arg(&delivery.receipt)
            .arg(batch.seq)
            .arg(worker)
            .arg(batch.documents.len())
            .arg(RUN_TTL_SECS)
            .arg(DEAD_LETTERS_KEPT)
            .arg(fields.len());
        for (name, value) in fields {
            // Apart from the run's own fields (`documents` is the number pushed).
            invocation.arg(format!("tally:{name}")).arg(value);
        }
        for letter in &letters {
            invocation.arg(letter);
        }
        let mut conn = self.conn.clone();
        let first: i64 = invocation.invoke_async(&mut conn).await.map_err(redis_err(&self.url))?;
        Ok(first == 1)
    }

    async fn status(&self, run: &str) -> Result<RunStatus> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, Value> = conn.hgetall(self.keys.run(run)).await.map_err(redis_err(&self.url))?;
        let sealed = number(&fields, "sealed") == 1;
        let mut status = RunStatus {
            run: run.to_owned(),
            sealed,
            batches: number(&fields, if sealed { "batches" } else { "pushed_batches" }),
            documents: number(&fields, if sealed { "documents" } else { "pushed_documents" }),
            acked_batches: number(&fields, "acked_batches"),
            ..RunStatus::default()
        };
        for (name, _) in BatchTally::default().fields() {
            status.tally.set(name, number(&fields, &format!("tally:{name}")));
        }
        for key in fields.keys() {
            let Some(rest) = key.strip_prefix("worker:") else { continue };
            if let Some(name) = rest.strip_suffix(":batches") {
                status.workers.entry(name.to_owned()).or_default().batches = number(&fields, key);
            } else if let Some(name) = rest.strip_suffix(":documents") {
                status.workers.entry(name.to_owned()).or_default().documents = number(&fields, key);
            }
        }
        Ok(status)
    }

    async fn dead_letters(&self, run: &str, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply =
            conn.xrange_count(self.keys.dead(), "-", "+", DEAD_LETTERS_KEPT).await.map_err(redis_err(&self.url))?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|e| e.get::<String>("letter"))
            .filter_map(|j| serde_json::from_str::<DeadLetter>(&j).ok())
            .filter(|d| d.run == run)
            .take(limit)
            .collect())
    }

    async fn backlog(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        // Acknowledged entries are deleted, so the stream's length is what is left to do.
        conn.xlen(self.keys.batches()).await.map_err(redis_err(&self.url))
    }
}
