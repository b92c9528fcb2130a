//! The settings the configuration reads for this store (`[store.qdrant]`), and the modes its
//! builder takes: plain data, built without Python (no `store` feature needed).

use std::path::PathBuf;

use rag_core::{RagError, Result};

/// Where Qdrant keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub enum QdrantMode {
    /// Local mode on disk (`QdrantClient(path=...)`); one process at a time.
    Local(PathBuf),
    /// Local mode in memory.
    InMemory,
    /// A Qdrant server.
    Server {
        /// `http://host:6333` or `https://...`.
        url: String,
        /// API key, if the server needs one. Never logged.
        api_key: Option<String>,
        /// Use gRPC for data operations.
        prefer_grpc: bool,
        /// The server's gRPC port (Qdrant's default is 6334).
        grpc_port: u16,
    },
}

rag_core::choice! {
    /// Which client a [`QdrantSettings`] opens.
    QdrantClient {
        /// Local mode on disk under the collection's directory (one process at a time).
        Local = "local",
        /// Local mode in memory.
        Memory = "memory",
        /// A Qdrant server or cluster (`url`).
        Server = "server",
    }
}

/// A Qdrant store's settings: the `[store.qdrant]` table of the configuration, read by this
/// crate ([`QdrantStore::from_settings`](crate::QdrantStore::from_settings)).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QdrantSettings {
    /// `local` (default: under the collection's directory), `memory`, or `server`.
    pub mode: QdrantClient,
    /// The server's URL (`server`), e.g. `http://qdrant:6333`.
    pub url: Option<String>,
    /// Environment variable holding the API key (`server`); the key is never logged.
    pub api_key_env: String,
    /// Data operations over gRPC (`server`).
    pub prefer_grpc: bool,
    /// The server's gRPC port (`server`, with `prefer_grpc`).
    pub grpc_port: u16,
    /// Shards of a new collection (server or cluster), 1 to 1024.
    pub shards: Option<u32>,
    /// Copies of each shard of a new collection (cluster), 1 to 1024: 2 or more survives
    /// losing a node.
    pub replication: Option<u32>,
}

impl Default for QdrantSettings {
    fn default() -> Self {
        Self {
            mode: QdrantClient::Local,
            url: None,
            api_key_env: "QDRANT_API_KEY".into(),
            prefer_grpc: false,
            grpc_port: 6334,
            shards: None,
            replication: None,
        }
    }
}

impl QdrantSettings {
    /// Checks the numbers and that a server has a URL; errors name the key under `prefix`
    /// (`store.qdrant`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        for (key, v) in [("shards", self.shards), ("replication", self.replication)] {
            if let Some(v) = v
                && !(1..=1024).contains(&v)
            {
                return Err(RagError::invalid_input(format!("{prefix}.{key}"), format!("{v} is out of range: use 1 to 1024")));
            }
        }
        if self.mode == QdrantClient::Server && self.url.is_none() {
            return Err(RagError::config(format!("{prefix}.mode = server needs {prefix}.url")));
        }
        Ok(())
    }

    /// The mode these settings open for a collection kept under `dir` (the API key read from
    /// `api_key_env` now).
    pub fn mode(&self, dir: &std::path::Path) -> Result<QdrantMode> {
        Ok(match self.mode {
            QdrantClient::Local => QdrantMode::Local(dir.join("qdrant")),
            QdrantClient::Memory => QdrantMode::InMemory,
            QdrantClient::Server => QdrantMode::Server {
                url: self.url.clone().ok_or_else(|| RagError::config("store.qdrant.mode = server needs store.qdrant.url"))?,
                api_key: std::env::var(&self.api_key_env).ok(),
                prefer_grpc: self.prefer_grpc,
                grpc_port: self.grpc_port,
            },
        })
    }
}
