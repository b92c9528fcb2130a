//! The settings the configuration reads for this store (`[store.chroma]`), and the modes its
//! builder takes: plain data, built without Python (no `store` feature needed).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where Chroma keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub enum ChromaMode {
    /// `chromadb.PersistentClient(path)`: embedded, on disk.
    Persistent(PathBuf),
    /// `chromadb.EphemeralClient()`: embedded, in memory, gone at exit.
    InMemory,
    /// `chromadb.HttpClient(...)`: a Chroma server.
    Http {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Use HTTPS.
        ssl: bool,
        /// Extra headers (auth tokens).
        headers: BTreeMap<String, String>,
    },
}

rag_core::choice! {
    /// Which client a [`ChromaSettings`] opens.
    ChromaClient {
        /// Embedded, on disk under the collection's directory.
        Persistent = "persistent",
        /// Embedded, in memory, gone at exit.
        Memory = "memory",
        /// A `chroma run` server.
        Http = "http",
    }
}

/// A Chroma store's settings: the `[store.chroma]` table of the configuration. The
/// configuration names the backend (`[store] backend = "chroma"`); this crate reads its own
/// table and builds the store ([`ChromaStore::from_settings`](crate::ChromaStore::from_settings)).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChromaSettings {
    /// `persistent` (default: under the collection's directory), `memory`, or `http`.
    pub mode: ChromaClient,
    /// Server host (`http`).
    pub host: String,
    /// Server port (`http`).
    pub port: u16,
    /// HTTPS (`http`).
    pub ssl: bool,
    /// Concurrent unfiltered queries share one `collection.query` call (one GIL hold).
    pub batch_queries: bool,
}

impl Default for ChromaSettings {
    fn default() -> Self {
        Self { mode: ChromaClient::Persistent, host: "127.0.0.1".into(), port: 8000, ssl: false, batch_queries: true }
    }
}

impl ChromaSettings {
    /// The mode these settings open for a collection kept under `dir`.
    pub fn mode(&self, dir: &std::path::Path) -> ChromaMode {
        match self.mode {
            ChromaClient::Persistent => ChromaMode::Persistent(dir.join("chroma")),
            ChromaClient::Memory => ChromaMode::InMemory,
            ChromaClient::Http => {
                ChromaMode::Http { host: self.host.clone(), port: self.port, ssl: self.ssl, headers: BTreeMap::new() }
            }
        }
    }
}

/// Chroma wants 3 to 512 characters: a shorter collection name is padded predictably.
pub fn collection_name(name: &str) -> String {
    if name.chars().count() < 3 { format!("rag-{name}") } else { name.to_owned() }
}
