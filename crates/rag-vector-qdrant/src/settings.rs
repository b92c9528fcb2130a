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

rag_core::choice! {
    /// How a new collection compresses the vectors it searches (the originals are kept for
    /// rescoring).
    QdrantQuantization {
        /// float32 vectors only: 1.5 KiB a 384-dimension vector.
        None = "none",
        /// Scalar int8: a quarter of the float32 memory (searched from RAM; with `on_disk`, the
        /// originals stay on disk and are read only to rescore).
        Int8 = "int8",
        /// One bit a dimension: a thirty-second; needs rescoring and oversampling for recall.
        Binary = "binary",
    }
}

/// The quantization of a new server collection when `quantization` is unset: int8, chosen by
/// `rag bench --scale` at a million chunks (docs/scaling.md has the numbers).
pub const SERVER_QUANTIZATION: QdrantQuantization = QdrantQuantization::Int8;

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
    /// Seconds one request to the server may take before it fails (as transient), 1 to
    /// 3600. Unset: qdrant-client's own (5 s over REST, none over gRPC); raise it for
    /// filtered queries that scan, e.g. a tenant filter on a big collection without
    /// `tenant_keys`.
    pub timeout_secs: Option<u64>,
    /// Shards of a new collection (server or cluster), 1 to 1024.
    pub shards: Option<u32>,
    /// Copies of each shard of a new collection (cluster), 1 to 1024: 2 or more survives
    /// losing a node.
    pub replication: Option<u32>,
    /// Vector compression of a new collection (`server`): `none`, `int8`, `binary`. Unset:
    /// [`SERVER_QUANTIZATION`] for a server (chosen by the million-chunk benchmark: the least
    /// memory with recall@10 >= 0.95 and SciFact nDCG@10 within 0.005 of `none`), `none` in
    /// local and memory mode (which search exactly).
    pub quantization: Option<QdrantQuantization>,
    /// Quantized vectors stay in RAM when the originals are on disk (true: the point of
    /// quantizing is to search from RAM and read the originals only to rescore).
    pub quantization_always_ram: bool,
    /// Queries re-score the quantized candidates with the original vectors (true: the scores
    /// are then exact and the recall lost to compression mostly comes back).
    pub rescore: bool,
    /// Queries take `oversampling` × k quantized candidates before rescoring, 1 to 100 (2.0:
    /// twice the candidates recovers most of int8's and binary's misses for a few more reads).
    pub oversampling: f64,
    /// The original vectors of a new collection memory-mapped from disk, not held in RAM.
    /// Unset: on disk exactly when the collection is quantized (quantization saves RAM only if
    /// the originals leave it; they are then read only to rescore a few candidates).
    pub on_disk: Option<bool>,
    /// HNSW edges per node of a new collection, 0 to 1024 (16, Qdrant's default; 0 builds no
    /// global graph, for per-tenant graphs with `tenant_keys`).
    pub hnsw_m: u32,
    /// HNSW build beam of a new collection, 4 to 10,000 (100, Qdrant's default).
    pub hnsw_ef_construct: u32,
    /// The HNSW graph of a new collection on disk (false: graph reads are random, RAM is fast).
    pub hnsw_on_disk: bool,
    /// Query beam, 1 to 100,000; unset: Qdrant's choice (the collection's `ef_construct`).
    pub hnsw_ef: Option<u32>,
    /// A segment is indexed (HNSW, quantized) once it holds this many KB of vectors; unset:
    /// the server's default (Qdrant's 10,000 KB: below it, segments are searched exactly).
    pub indexing_threshold_kb: Option<u64>,
    /// Metadata keys that hold a tenant id: each gets a keyword index marked `is_tenant`
    /// (Qdrant's multitenancy index, which stores a tenant's points together) in a new
    /// collection. `rag serve` adds the tenant fields of its keys.
    pub tenant_keys: Vec<String>,
}

/// How a new collection is laid out and indexed (from [`QdrantSettings`]), as the store
/// creates it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QdrantLayout {
    /// `none`, `int8` or `binary`.
    pub quantization: QdrantQuantization,
    /// Quantized vectors kept in RAM.
    pub always_ram: bool,
    /// Original vectors on disk.
    pub on_disk: bool,
    /// HNSW `m`.
    pub m: u32,
    /// HNSW `ef_construct`.
    pub ef_construct: u32,
    /// The HNSW graph on disk.
    pub hnsw_on_disk: bool,
    /// The optimizer's indexing threshold in KB.
    pub indexing_threshold_kb: Option<u64>,
    /// Payload paths indexed as tenant keys.
    pub tenant_keys: Vec<String>,
}

impl Default for QdrantLayout {
    /// The layout of a local or in-memory collection (no quantization, vectors in RAM).
    fn default() -> Self {
        QdrantSettings::default().layout()
    }
}

impl QdrantLayout {
    /// The layout a new server collection gets from the default settings ([`SERVER_QUANTIZATION`],
    /// originals on disk).
    pub fn server_default() -> Self {
        QdrantSettings { mode: QdrantClient::Server, ..QdrantSettings::default() }.layout()
    }
}

/// How queries search (from [`QdrantSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QdrantSearchParams {
    /// HNSW beam; `None`: Qdrant's choice.
    pub hnsw_ef: Option<u32>,
    /// Re-score quantized candidates with the originals.
    pub rescore: bool,
    /// Candidates per result before rescoring.
    pub oversampling: f64,
}

impl Default for QdrantSearchParams {
    fn default() -> Self {
        QdrantSettings::default().search_params()
    }
}

impl Default for QdrantSettings {
    fn default() -> Self {
        Self {
            mode: QdrantClient::Local,
            url: None,
            api_key_env: "QDRANT_API_KEY".into(),
            prefer_grpc: false,
            grpc_port: 6334,
            timeout_secs: None,
            shards: None,
            replication: None,
            quantization: None,
            quantization_always_ram: true,
            rescore: true,
            oversampling: 2.0,
            on_disk: None,
            hnsw_m: 16,
            hnsw_ef_construct: 100,
            hnsw_on_disk: false,
            hnsw_ef: None,
            indexing_threshold_kb: None,
            tenant_keys: Vec::new(),
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
        let bad = |key: &str, v: String, range: &str| {
            RagError::invalid_input(format!("{prefix}.{key}"), format!("{v} is out of range: use {range}"))
        };
        if let Some(t) = self.timeout_secs
            && !(1..=3600).contains(&t)
        {
            return Err(bad("timeout_secs", t.to_string(), "1 to 3600"));
        }
        if !(1.0..=100.0).contains(&self.oversampling) {
            return Err(bad("oversampling", self.oversampling.to_string(), "1 to 100"));
        }
        if self.hnsw_m > 1024 {
            return Err(bad("hnsw_m", self.hnsw_m.to_string(), "0 to 1024"));
        }
        if !(4..=10_000).contains(&self.hnsw_ef_construct) {
            return Err(bad("hnsw_ef_construct", self.hnsw_ef_construct.to_string(), "4 to 10000"));
        }
        if let Some(ef) = self.hnsw_ef
            && !(1..=100_000).contains(&ef)
        {
            return Err(bad("hnsw_ef", ef.to_string(), "1 to 100000"));
        }
        for key in &self.tenant_keys {
            rag_core::rules::check_key(&format!("{prefix}.tenant_keys"), key)?;
        }
        if self.mode != QdrantClient::Server
            && let Some(key) = self.server_only_key()
        {
            return Err(RagError::config(format!(
                "{prefix}.{key} shapes a Qdrant server's collection; mode `{}` searches exactly and keeps no index: \
                 use {prefix}.mode = server, or leave {prefix}.{key} at its default",
                self.mode
            )));
        }
        if self.mode != QdrantClient::Server && self.timeout_secs.is_some() {
            return Err(RagError::config(format!(
                "{prefix}.timeout_secs limits requests to a Qdrant server; mode `{}` makes none: use {prefix}.mode = \
                 server, or remove {prefix}.timeout_secs",
                self.mode
            )));
        }
        if self.mode == QdrantClient::Server && self.url.is_none() {
            return Err(RagError::config(format!("{prefix}.mode = server needs {prefix}.url")));
        }
        Ok(())
    }

    /// The first setting that only a server honours and that is not at its default.
    fn server_only_key(&self) -> Option<&'static str> {
        let d = Self::default();
        [
            ("quantization", self.quantization.is_some_and(|q| q != QdrantQuantization::None)),
            ("quantization_always_ram", self.quantization_always_ram != d.quantization_always_ram),
            ("on_disk", self.on_disk == Some(true)),
            ("hnsw_m", self.hnsw_m != d.hnsw_m),
            ("hnsw_ef_construct", self.hnsw_ef_construct != d.hnsw_ef_construct),
            ("hnsw_on_disk", self.hnsw_on_disk != d.hnsw_on_disk),
            ("hnsw_ef", self.hnsw_ef.is_some()),
            ("indexing_threshold_kb", self.indexing_threshold_kb.is_some()),
            ("tenant_keys", !self.tenant_keys.is_empty()),
        ]
        .into_iter()
        .find(|(_, differs)| *differs)
        .map(|(key, _)| key)
    }

    /// The quantization a new collection gets: the setting, else the measured default for
    /// the mode.
    pub fn effective_quantization(&self) -> QdrantQuantization {
        self.quantization.unwrap_or(match self.mode {
            QdrantClient::Server => SERVER_QUANTIZATION,
            QdrantClient::Local | QdrantClient::Memory => QdrantQuantization::None,
        })
    }

    /// Whether a new collection's original vectors go to disk: the setting, else exactly when
    /// it is quantized.
    pub fn effective_on_disk(&self) -> bool {
        self.on_disk.unwrap_or(self.effective_quantization() != QdrantQuantization::None)
    }

    /// How a new collection is laid out and indexed.
    pub fn layout(&self) -> QdrantLayout {
        QdrantLayout {
            quantization: self.effective_quantization(),
            always_ram: self.quantization_always_ram,
            on_disk: self.effective_on_disk(),
            m: self.hnsw_m,
            ef_construct: self.hnsw_ef_construct,
            hnsw_on_disk: self.hnsw_on_disk,
            indexing_threshold_kb: self.indexing_threshold_kb,
            tenant_keys: self.tenant_keys.clone(),
        }
    }

    /// How queries search.
    pub fn search_params(&self) -> QdrantSearchParams {
        QdrantSearchParams { hnsw_ef: self.hnsw_ef, rescore: self.rescore, oversampling: self.oversampling }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_for_size_are_checked_by_name_and_need_a_server() {
        let local = QdrantSettings { quantization: Some(QdrantQuantization::Int8), ..QdrantSettings::default() };
        let err = local.validate("store.qdrant").unwrap_err().to_string();
        assert!(err.contains("store.qdrant.quantization") && err.contains("server"), "{err}");
        let server = QdrantSettings { mode: QdrantClient::Server, url: Some("http://q:6333".into()), ..local };
        server.validate("store.qdrant").unwrap();
        let bad = QdrantSettings { oversampling: 0.5, ..server.clone() };
        assert!(bad.validate("store.qdrant").unwrap_err().to_string().contains("store.qdrant.oversampling"));
        let bad = QdrantSettings { tenant_keys: vec!["$t".into()], ..server.clone() };
        assert!(bad.validate("store.qdrant").unwrap_err().to_string().contains("tenant_keys"));
        assert_eq!(server.layout().quantization, QdrantQuantization::Int8);
        assert!(server.search_params().rescore);
        for t in [0, 3601] {
            let bad = QdrantSettings { timeout_secs: Some(t), ..server.clone() };
            assert!(bad.validate("store.qdrant").unwrap_err().to_string().contains("store.qdrant.timeout_secs"), "{t}");
        }
        QdrantSettings { timeout_secs: Some(600), ..server.clone() }.validate("store.qdrant").unwrap();
        let local = QdrantSettings { timeout_secs: Some(600), ..QdrantSettings::default() };
        assert!(local.validate("store.qdrant").unwrap_err().to_string().contains("store.qdrant.timeout_secs"));
    }

    #[test]
    fn unset_quantization_and_on_disk_follow_the_mode() {
        // Local and memory mode search exactly: no quantization, vectors in RAM; `none` and
        // `on_disk = false` said out loud are fine there.
        let local = QdrantSettings::default();
        assert_eq!((local.layout().quantization, local.layout().on_disk), (QdrantQuantization::None, false));
        let said = QdrantSettings { quantization: Some(QdrantQuantization::None), on_disk: Some(false), ..local.clone() };
        said.validate("store.qdrant").unwrap();
        let on_disk = QdrantSettings { on_disk: Some(true), ..local };
        assert!(on_disk.validate("store.qdrant").unwrap_err().to_string().contains("store.qdrant.on_disk"));
        // A server gets the measured default, with the originals on disk; each can be overridden.
        let server =
            QdrantSettings { mode: QdrantClient::Server, url: Some("http://q:6333".into()), ..QdrantSettings::default() };
        assert_eq!(server.layout(), QdrantLayout::server_default());
        assert_eq!((server.layout().quantization, server.layout().on_disk), (SERVER_QUANTIZATION, true));
        let plain = QdrantSettings { quantization: Some(QdrantQuantization::None), ..server.clone() };
        assert_eq!((plain.layout().quantization, plain.layout().on_disk), (QdrantQuantization::None, false));
        let in_ram = QdrantSettings { on_disk: Some(false), ..server };
        assert_eq!((in_ram.layout().quantization, in_ram.layout().on_disk), (SERVER_QUANTIZATION, false));
    }
}
