//! The `[queue]` table of the configuration: plain data, built without the redis client.

use rag_core::{RagError, Result};

/// The ingest work queue's settings: the `[queue]` table of the configuration, read by this
/// crate ([`RedisQueue::connect`](crate::RedisQueue::connect)) and by the producer and workers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// The Redis URL (`redis://host:6379/0`); unset: `--queue URL` names it.
    pub url: Option<String>,
    /// Documents a batch holds at most: for SciFact-sized documents about 1.3 s of MiniLM on
    /// this 2-core machine (2.7 s on one core), long enough that the queue's own cost (a few round trips) is lost in it,
    /// short enough that a dead worker's batch costs little to redo.
    pub batch_documents: usize,
    /// Text a batch holds at most, in bytes (a batch of long documents closes early, so one
    /// stream entry stays small).
    pub batch_bytes: usize,
    /// A batch not acknowledged (or touched) for this long goes to another worker. A working
    /// worker touches its batch every third of this, so only a dead one loses it.
    pub visibility_timeout_secs: u64,
    /// A batch delivered this many times without being acknowledged (it kills or fails every
    /// worker that takes it) goes to the dead letters.
    pub max_deliveries: u32,
    /// The producer waits while this many batches are queued or in flight, so a huge corpus
    /// never fills Redis's memory.
    pub max_backlog_batches: u64,
    /// `rag serve` also works the queue of its collection.
    pub serve_worker: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            url: None,
            batch_documents: 32,
            batch_bytes: 4 << 20,
            visibility_timeout_secs: 60,
            max_deliveries: 5,
            max_backlog_batches: 256,
            serve_worker: false,
        }
    }
}

impl QueueSettings {
    /// Checks the numbers and the URL; errors name the key under `prefix` (`queue`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("batch_documents", self.batch_documents as u64, 1, 10_000),
            ("batch_bytes", self.batch_bytes as u64, 1024, 256 << 20),
            ("visibility_timeout_secs", self.visibility_timeout_secs, 1, 86_400),
            ("max_deliveries", u64::from(self.max_deliveries), 1, 1000),
            ("max_backlog_batches", self.max_backlog_batches, 1, 1_000_000),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(RagError::invalid_input(format!("{prefix}.{key}"), format!("{v} is out of range: use {lo} to {hi}")));
            }
        }
        if let Some(url) = &self.url {
            check_url(&format!("{prefix}.url"), url)?;
        }
        Ok(())
    }

    /// The queue's URL: `flag` (from `--queue`) if given, else `url`; an error naming both when
    /// neither is.
    pub fn resolve_url(&self, flag: Option<&str>) -> Result<String> {
        let flag = flag.filter(|f| !f.is_empty());
        let url = flag.map(str::to_owned).or_else(|| self.url.clone()).ok_or_else(|| {
            RagError::config("no queue: give --queue redis://HOST:PORT/DB, or set queue.url in the configuration")
        })?;
        check_url(if flag.is_some() { "--queue" } else { "queue.url" }, &url)?;
        Ok(url)
    }
}

/// A queue URL must be Redis's (a path given to `--queue` by mistake is caught here).
fn check_url(input: &str, url: &str) -> Result<()> {
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://") {
        Ok(())
    } else {
        Err(RagError::invalid_input(input, format!("`{url}` is not a Redis URL: use redis://HOST:PORT/DB")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_urls_are_checked_by_name() {
        QueueSettings::default().validate("queue").unwrap();
        let bad = QueueSettings { batch_documents: 0, ..QueueSettings::default() };
        assert!(bad.validate("queue").unwrap_err().to_string().contains("queue.batch_documents"));
        let path = QueueSettings::default().resolve_url(Some("corpus.jsonl")).unwrap_err().to_string();
        assert!(path.contains("--queue") && path.contains("corpus.jsonl"), "{path}");
        assert!(QueueSettings::default().resolve_url(None).unwrap_err().to_string().contains("queue.url"));
        let set = QueueSettings { url: Some("redis://h:1/0".into()), ..QueueSettings::default() };
        assert_eq!(set.resolve_url(None).unwrap(), "redis://h:1/0");
        assert_eq!(set.resolve_url(Some("redis://o:2/0")).unwrap(), "redis://o:2/0");
    }
}
