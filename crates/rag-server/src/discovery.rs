//! How the `rag` command finds a `rag serve` that has its data directory open.
//!
//! The stores of a data directory (the embedded Chroma, the manifest and embedding cache in
//! redb, the keyword index's writer) belong to one process at a time. So `rag serve` writes
//! `serve.json` into the data directory while it runs: its pid, its address and a token made
//! for this run. The `rag` command that finds it (and finds the server answering) sends its
//! work to the server instead of opening the stores: `rag ingest` in a second terminal then
//! works, and the server sees the new documents at once.
//!
//! The token grants everything, including ingesting files by path, which no API key can: it
//! is readable only by the data directory's owner (the file is created mode 0600), and anyone
//! who can read the data directory can read every document anyway.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rag::{RagError, Result};
use serde::{Deserialize, Serialize};

/// The file's name, under the data directory.
pub const FILE_NAME: &str = "serve.json";

/// What `serve.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFile {
    /// The server's process id.
    pub pid: u32,
    /// The base URL a process on this machine reaches it at (`http://127.0.0.1:8080`).
    pub url: String,
    /// The bearer token of this run (the local principal: every access, and files by path).
    pub token: String,
}

impl ServerFile {
    /// The file of a server bound to `bound`, with a fresh random token.
    pub fn new(bound: SocketAddr) -> Self {
        // Bound to every interface: this machine reaches it on loopback.
        let host = if bound.ip().is_unspecified() {
            match bound {
                SocketAddr::V4(_) => "127.0.0.1".to_owned(),
                SocketAddr::V6(_) => "[::1]".to_owned(),
            }
        } else {
            match bound {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let token: [u8; 32] = rand::random();
        Self { pid: std::process::id(), url: format!("http://{host}:{}", bound.port()), token: hex::encode(token) }
    }

    /// Where the file of `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Reads the file of `data_dir`, if there is one and its process is alive. A file whose
    /// process is gone (a server that was killed) is ignored.
    pub fn read(data_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RagError::io(&path, e)),
        };
        let file: Self = serde_json::from_str(&text).map_err(|e| {
            RagError::invalid_input(
                path.display().to_string(),
                format!("not a rag serve file ({e}): remove it if no server runs"),
            )
        })?;
        Ok(process_alive(file.pid).then_some(file))
    }

    /// `Ok` when no live server of another process holds `data_dir`; otherwise the error that
    /// names it.
    pub fn ensure_free(data_dir: &Path) -> Result<()> {
        match Self::read(data_dir)? {
            Some(other) if other.pid != std::process::id() => Err(RagError::config(format!(
                "rag serve (pid {}) already serves data directory {} at {}: stop it, or give this server another --data-dir",
                other.pid,
                data_dir.display(),
                other.url
            ))),
            _ => Ok(()),
        }
    }

    /// Writes the file into `data_dir` (readable by its owner only, replaced atomically) and
    /// returns a guard that removes it when dropped. Refused when another live server's file
    /// is there.
    pub fn publish(self, data_dir: &Path) -> Result<Published> {
        Self::ensure_free(data_dir)?;
        std::fs::create_dir_all(data_dir).map_err(|e| RagError::io(data_dir, e))?;
        let path = Self::path(data_dir);
        let staging = data_dir.join(format!(".{FILE_NAME}.{}", self.pid));
        let body = serde_json::to_vec_pretty(&self).map_err(|e| RagError::json("serve.json", e))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&staging).map_err(|e| RagError::io(&staging, e))?;
        f.write_all(&body).and_then(|()| f.sync_all()).map_err(|e| RagError::io(&staging, e))?;
        std::fs::rename(&staging, &path).map_err(|e| RagError::io(&path, e))?;
        Ok(Published { path, pid: self.pid, file: self })
    }
}

/// A published `serve.json`; removed on drop (if it is still this process's).
#[derive(Debug)]
pub struct Published {
    path: PathBuf,
    pid: u32,
    /// What was written.
    pub file: ServerFile,
}

impl Drop for Published {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<ServerFile>(&t).ok())
            .is_some_and(|f| f.pid == self.pid);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether process `pid` exists (Linux: `/proc/PID`; elsewhere assumed alive).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_is_private_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ServerFile::read(dir.path()).unwrap(), None);
        let file = ServerFile::new("0.0.0.0:8123".parse().unwrap());
        assert_eq!(file.url, "http://127.0.0.1:8123");
        assert_eq!(file.token.len(), 64);
        let published = file.clone().publish(dir.path()).unwrap();
        assert_eq!(ServerFile::read(dir.path()).unwrap(), Some(file));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ServerFile::path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads the token");
        }
        drop(published);
        assert!(!ServerFile::path(dir.path()).exists());
    }

    #[test]
    fn a_dead_servers_file_is_ignored_and_a_live_one_refuses_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let dead = ServerFile { pid: u32::MAX - 1, url: "http://127.0.0.1:1".into(), token: "t".into() };
        std::fs::write(ServerFile::path(dir.path()), serde_json::to_string(&dead).unwrap()).unwrap();
        assert_eq!(ServerFile::read(dir.path()).unwrap(), None);
        // PID 1 is always alive: a second server on the same directory is refused.
        let live = ServerFile { pid: 1, url: "http://127.0.0.1:2".into(), token: "t".into() };
        std::fs::write(ServerFile::path(dir.path()), serde_json::to_string(&live).unwrap()).unwrap();
        let e = ServerFile::new("127.0.0.1:3".parse().unwrap()).publish(dir.path()).unwrap_err().to_string();
        assert!(e.contains("pid 1") && e.contains("already serves"), "{e}");
    }
}
