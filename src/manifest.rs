//! The ingest manifest: per document, the content hash and chunk ids that are stored.
//!
//! Written around each document's store writes so a crash anywhere is repaired by the next
//! run: before writing chunks, an entry is marked *pending* with the union of old and new chunk
//! ids (a superset of whatever may be stored); after the store and the keyword index are
//! durable, the entry becomes final with the new hash and ids. A pending or outdated entry makes
//! the next run redo the document and delete every id it lists that the new chunking lacks.

use std::path::Path;
use std::sync::Arc;

use std::collections::HashMap;

use async_trait::async_trait;
use rag_core::{IngestLedger, LedgerEntry, RagError, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const DOCS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("documents");

/// What is stored for one document (the manifest's name for [`LedgerEntry`]).
pub type ManifestEntry = LedgerEntry;

/// The manifest file (redb).
#[derive(Clone)]
pub struct Manifest {
    db: Arc<redb::Database>,
}

fn err(e: impl std::fmt::Display) -> RagError {
    RagError::permanent("ingest manifest", e.to_string())
}

impl Manifest {
    /// Opens or creates the manifest at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RagError::io(parent, e))?;
        }
        let db = redb::Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                RagError::Busy { what: "ingest manifest".into(), path: path.to_owned(), message: e.to_string() }
            }
            e => RagError::permanent("ingest manifest", format!("{}: {e}", path.display())),
        })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// A manifest held in memory (nothing on disk, gone with the process): for pipelines built
    /// [`in_memory`](crate::RagPipelineBuilder::in_memory).
    pub fn in_memory() -> Result<Self> {
        let db = redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(err)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The entry for `doc_id`.
    pub fn get(&self, doc_id: &str) -> Result<Option<ManifestEntry>> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = match tx.open_table(DOCS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        match table.get(doc_id).map_err(err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(err)?)),
            None => Ok(None),
        }
    }

    /// Writes entries in one durable transaction.
    pub fn put_many(&self, entries: &[(String, ManifestEntry)]) -> Result<()> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(DOCS).map_err(err)?;
            for (id, e) in entries {
                let bytes = serde_json::to_vec(e).map_err(err)?;
                t.insert(id.as_str(), bytes.as_slice()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Removes entries.
    pub fn remove_many(&self, ids: &[String]) -> Result<()> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(DOCS).map_err(err)?;
            for id in ids {
                t.remove(id.as_str()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Every entry, sorted by document id.
    pub fn all(&self) -> Result<Vec<(String, ManifestEntry)>> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = match tx.open_table(DOCS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            out.push((k.value().to_owned(), serde_json::from_slice(v.value()).map_err(err)?));
        }
        Ok(out)
    }

    /// Number of documents with a final (non-pending) entry.
    pub fn documents(&self) -> Result<usize> {
        Ok(self.all()?.iter().filter(|(_, e)| e.hash.is_some()).count())
    }
}

/// The local manifest as the pipeline's ingest record (one process owns it).
#[async_trait]
impl IngestLedger for Manifest {
    async fn lookup(&self, doc_ids: Vec<String>) -> Result<HashMap<String, LedgerEntry>> {
        let mut out = HashMap::new();
        for id in doc_ids {
            if let Some(e) = self.get(&id)? {
                out.insert(id, e);
            }
        }
        Ok(out)
    }

    async fn begin(&self, entries: Vec<(String, LedgerEntry)>) -> Result<()> {
        self.put_many(&entries)
    }

    async fn commit(&self, entries: Vec<(String, LedgerEntry)>) -> Result<()> {
        self.put_many(&entries)
    }

    async fn forget(&self, doc_ids: Vec<String>) -> Result<()> {
        self.remove_many(&doc_ids)
    }

    async fn under_roots(&self, roots: Vec<String>) -> Result<Vec<(String, LedgerEntry)>> {
        Ok(self.all()?.into_iter().filter(|(_, e)| roots.contains(&e.root)).collect())
    }

    async fn documents(&self) -> Result<usize> {
        Manifest::documents(self)
    }
}
