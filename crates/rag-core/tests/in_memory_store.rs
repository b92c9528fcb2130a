//! `InMemoryStore` keeps the whole `VectorStore` contract: the conformance suite, run from
//! rag-core alone (no Python in this test's build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rag_core::conformance::{Factory, run_conformance};
use rag_core::{InMemoryStore, RagError, VectorStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_store_passes_the_conformance_suite() {
    // A catalog of named stores, as a server holds collections: opening a missing one with
    // creation off is NotFound; opening an existing one again sees its data.
    let catalog: Arc<Mutex<HashMap<String, Arc<InMemoryStore>>>> = Arc::default();
    let factory: Factory = Arc::new(move |name: String, create: bool| {
        let catalog = catalog.clone();
        Box::pin(async move {
            let mut all = catalog.lock().unwrap();
            match all.get(&name) {
                Some(s) => Ok(s.clone() as Arc<dyn VectorStore>),
                None if create => {
                    let s = Arc::new(InMemoryStore::new(name.clone()));
                    all.insert(name, s.clone());
                    Ok(s as Arc<dyn VectorStore>)
                }
                None => Err(RagError::not_found(format!("in-memory collection `{name}`"), None)),
            }
        })
    });
    run_conformance("memory", factory, true).await;
}
