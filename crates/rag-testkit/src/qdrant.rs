//! A real Qdrant server for tests: one node or a cluster of several processes on this
//! machine, each on free ports with its own storage, killed when dropped.
//!
//! The binary comes from `QDRANT_BIN`, else `qdrant` on the PATH, else the workspace's
//! `../shared/bin/qdrant` (v1.18.3, see `../shared/notes/qdrant-server.md`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rag_core::{RagError, Result};

use crate::servers::{ServerProcess, free_port, http_get_json, repo_root, spawn_listening_in, which};

/// The Qdrant server binary, or an error saying where it was looked for.
pub fn qdrant_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("QDRANT_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = which("qdrant") {
        return Ok(p);
    }
    let shared = repo_root().join("../shared/bin/qdrant");
    if shared.exists() {
        return Ok(shared);
    }
    Err(RagError::config(
        "no Qdrant server binary: set QDRANT_BIN, put `qdrant` on the PATH, or keep ../shared/bin/qdrant beside the checkout",
    ))
}

/// One Qdrant process.
#[derive(Debug)]
pub struct QdrantNode {
    /// The process (killed on drop).
    pub process: ServerProcess,
    /// REST port.
    pub http_port: u16,
    /// gRPC port.
    pub grpc_port: u16,
    /// Cluster (p2p) port, when clustered.
    pub p2p_port: Option<u16>,
}

impl QdrantNode {
    /// REST base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// SIGKILLs the node (no shutdown: as if the machine were lost).
    pub fn kill(&mut self) {
        self.process.stop();
    }
}

fn spawn_node(dir: &Path, p2p: Option<(u16, Option<u16>)>) -> Result<QdrantNode> {
    std::fs::create_dir_all(dir).map_err(|e| RagError::io(dir, e))?;
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let cluster = match p2p {
        Some((port, _)) => format!("cluster: {{enabled: true, p2p: {{port: {port}}}}}\n"),
        None => String::new(),
    };
    let config = format!(
        "storage: {{storage_path: {d}/storage, snapshots_path: {d}/snapshots}}\n\
         service: {{host: 127.0.0.1, http_port: {http_port}, grpc_port: {grpc_port}}}\n\
         {cluster}telemetry_disabled: true\nlog_level: WARN\n",
        d = dir.display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).map_err(|e| RagError::io(&path, e))?;
    let mut args = vec!["--config-path".to_owned(), path.display().to_string(), "--disable-telemetry".to_owned()];
    if let Some((port, bootstrap)) = p2p {
        if let Some(b) = bootstrap {
            args.extend(["--bootstrap".to_owned(), format!("http://127.0.0.1:{b}")]);
        }
        args.extend(["--uri".to_owned(), format!("http://127.0.0.1:{port}")]);
    }
    // Qdrant writes `.qdrant-initialized` into its working directory: keep it in the node's.
    let process = spawn_listening_in(&qdrant_bin()?, &args, Some(dir), http_port, Duration::from_secs(60))?;
    Ok(QdrantNode { process, http_port, grpc_port, p2p_port: p2p.map(|(p, _)| p) })
}

/// A single-node Qdrant server storing under `dir`.
pub fn spawn_qdrant(dir: &Path) -> Result<QdrantNode> {
    spawn_node(dir, None)
}

/// A cluster of Qdrant processes on this machine.
#[derive(Debug)]
pub struct QdrantCluster {
    /// The nodes; the first bootstrapped the others.
    pub nodes: Vec<QdrantNode>,
}

impl QdrantCluster {
    /// Starts `n` nodes under `dir` and waits until the first sees all of them as peers.
    pub fn start(dir: &Path, n: usize) -> Result<Self> {
        let first_p2p = free_port()?;
        let mut nodes = vec![spawn_node(&dir.join("node0"), Some((first_p2p, None)))?];
        for i in 1..n {
            // One at a time: each joins through the first, which must accept it before the next.
            nodes.push(spawn_node(&dir.join(format!("node{i}")), Some((free_port()?, Some(first_p2p))))?);
            wait_for_peers(&nodes[0].url(), i + 1)?;
        }
        Ok(Self { nodes })
    }
}

fn wait_for_peers(url: &str, n: usize) -> Result<()> {
    let start = Instant::now();
    let timeout = Duration::from_secs(60);
    while start.elapsed() < timeout {
        if let Ok(v) = http_get_json(&format!("{url}/cluster"))
            && v["result"]["peers"].as_object().is_some_and(|p| p.len() >= n)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(RagError::Timeout { what: format!("a Qdrant cluster of {n} peers at {url}"), after: timeout })
}
