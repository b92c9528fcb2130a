//! A whole pipeline assembled from mockall mocks: no Python, no models, no servers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rag::chunk::{SemanticChunker, TokenCounter};
use rag::{Document, FileSource, IngestOptions, QueryOptions, RagError, RagPipeline, RetrievalMode};
use rag_core::mocks::{MockEmbedder, MockGenerator, MockReranker, MockRetriever, MockVectorStore};
use rag_core::{Chunk, EmbeddedChunk, Generation, ScoredChunk, VectorQuery};

/// An in-memory vector store behind the mock: records upserts, answers queries by dot product.
fn store(records: Arc<Mutex<Vec<EmbeddedChunk>>>) -> MockVectorStore {
    let mut s = MockVectorStore::new();
    let r = records.clone();
    s.expect_upsert().returning(move |chunks| {
        let mut v = r.lock().unwrap();
        for c in chunks {
            v.retain(|x| x.chunk.id != c.chunk.id);
            v.push(c);
        }
        Ok(())
    });
    let nearest = |records: &[EmbeddedChunk], q: &VectorQuery| -> Vec<ScoredChunk> {
        let mut hits: Vec<ScoredChunk> = records
            .iter()
            .map(|e| ScoredChunk { chunk: e.chunk.clone(), score: e.embedding.iter().zip(&q.vector).map(|(a, b)| a * b).sum() })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(q.k);
        hits
    };
    let r = records.clone();
    s.expect_query().returning(move |q: VectorQuery| Ok(nearest(&r.lock().unwrap(), &q)));
    let r = records.clone();
    s.expect_candidates()
        .returning(move |q: VectorQuery| Ok(nearest(&r.lock().unwrap(), &q).into_iter().map(Into::into).collect()));
    let r = records.clone();
    s.expect_delete().returning(move |ids| {
        r.lock().unwrap().retain(|x| !ids.contains(&x.chunk.id));
        Ok(())
    });
    let r = records.clone();
    s.expect_count().returning(move || Ok(r.lock().unwrap().len()));
    s.expect_describe().returning(|| Ok(description(Some(26))));
    s
}

/// What a mock store says about itself.
fn description(dimension: Option<usize>) -> rag_core::StoreDescription {
    rag_core::StoreDescription {
        backend: "mock".into(),
        collection: "mock".into(),
        dimension,
        distance: rag_core::Distance::Cosine,
        count: 0,
        details: Default::default(),
    }
}

/// A bag-of-letters embedder: deterministic, and similar texts get similar vectors.
fn embedder(calls: Arc<Mutex<usize>>) -> MockEmbedder {
    let mut e = MockEmbedder::new();
    e.expect_dimension().return_const(26usize);
    e.expect_model_id().return_const("mock-letters".to_owned());
    e.expect_embed().returning(move |texts| {
        *calls.lock().unwrap() += texts.len();
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0f32; 26];
                for c in t.to_lowercase().bytes().filter(u8::is_ascii_lowercase) {
                    v[(c - b'a') as usize] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / n).collect()
            })
            .collect())
    });
    e
}

struct Fixture {
    pipeline: RagPipeline,
    records: Arc<Mutex<Vec<EmbeddedChunk>>>,
    embedded: Arc<Mutex<usize>>,
    _dir: tempfile::TempDir,
    docs: std::path::PathBuf,
}

fn fixture(generator: Option<MockGenerator>, reranker: Option<MockReranker>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("rust.txt"),
        "Rust is a systems programming language. It guarantees memory safety without a garbage collector.",
    )
    .unwrap();
    std::fs::write(
        docs.join("python.md"),
        "# Python\n\nPython is a dynamic language. It is popular for data science and machine learning.",
    )
    .unwrap();
    std::fs::write(docs.join("tea.txt"), "Green tea is brewed at lower temperatures than black tea. Steep it for two minutes.")
        .unwrap();
    let records = Arc::new(Mutex::new(Vec::new()));
    let embedded = Arc::new(Mutex::new(0));
    let mut b = RagPipeline::builder()
        .data_dir(dir.path().join("data"))
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
        .embedder(Arc::new(embedder(embedded.clone())))
        .vector_store(Arc::new(store(records.clone())))
        .k(2)
        .generation_timeout(Duration::from_millis(300));
    if let Some(g) = generator {
        b = b.generator(Arc::new(g));
    }
    if let Some(r) = reranker {
        b = b.reranker(Arc::new(r)).initial_k(3).final_k(1);
    }
    Fixture { pipeline: b.build().unwrap(), records, embedded, _dir: dir, docs }
}

#[tokio::test]
async fn ingests_and_answers_with_citations_from_mocks() {
    let mut generator = MockGenerator::new();
    generator.expect_name().return_const("mock-lm".to_owned());
    generator.expect_generate().returning(|req| {
        assert!(req.question.contains("memory safety"));
        let first = req.context.first().unwrap();
        Ok(Generation {
            answer: format!("From {} [1].", first.doc_id),
            reasoning: Some("read it".into()),
            used_context_ids: vec![first.id.clone()],
            generator: "mock-lm".into(),
        })
    });
    let f = fixture(Some(generator), None);
    let report = f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap();
    assert_eq!((report.documents, report.unchanged), (3, 0));
    assert_eq!(report.chunks as usize, f.records.lock().unwrap().len());
    let again = f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap();
    assert_eq!((again.unchanged, again.chunks), (3, 0), "second ingest writes nothing");
    let embedded_before = *f.embedded.lock().unwrap();
    let r = f.pipeline.query("Which language gives memory safety?", &QueryOptions::default()).await.unwrap();
    assert_eq!(r.generator, "mock-lm");
    assert_eq!(r.answer, "From docs/rust.txt [1].");
    assert_eq!(r.citations.len(), 1);
    assert_eq!(r.citations[0].doc_id, "docs/rust.txt");
    assert!(r.degraded.is_empty());
    for stage in ["embed_query", "vector_search", "keyword_search", "fusion", "pack", "generate", "total"] {
        assert!(r.timings_ms.contains_key(stage), "{stage} missing from {:?}", r.timings_ms);
    }
    assert_eq!(*f.embedded.lock().unwrap(), embedded_before + 1, "one query embedding");
    // The same pipeline, keyword side only: no embedding at all.
    let opts = QueryOptions::new().mode(RetrievalMode::Bm25);
    f.pipeline.query("memory safety garbage collector", &opts).await.unwrap();
    assert_eq!(*f.embedded.lock().unwrap(), embedded_before + 1);
}

#[tokio::test]
async fn degrades_when_the_reranker_or_the_lm_fails_and_says_so() {
    let mut generator = MockGenerator::new();
    generator.expect_name().return_const("flaky-lm".to_owned());
    generator.expect_generate().returning(|_| Err(RagError::transient("lm", "503 upstream")));
    let mut reranker = MockReranker::new();
    reranker.expect_model_id().return_const("mock-ce".to_owned());
    reranker.expect_rerank().returning(|_, _, _| Err(RagError::Other("model crashed".into())));
    let f = fixture(Some(generator), Some(reranker));
    f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap();
    let opts = QueryOptions::new().rerank(true);
    let r = f.pipeline.query("How long should green tea steep?", &opts).await.unwrap();
    assert_eq!(r.generator, "extractive", "LM down: extractive answer");
    assert!(r.answer.starts_with("Extractive answer"), "{}", r.answer);
    assert!(r.answer.contains("two minutes"), "{}", r.answer);
    assert_eq!(r.degraded.len(), 2, "{:?}", r.degraded);
    assert!(r.degraded[0].contains("reranker failed") && r.degraded[1].contains("flaky-lm"));
    assert_eq!(r.citations.len(), 1, "final_k after the fallback");
}

/// A generator that never returns: only the pipeline's deadline can end the query. Tokio's
/// clock is paused, so the 300 ms deadline passes instantly and exactly; without the timeout
/// the query would hang and the test would never finish.
struct NeverGenerator;

#[async_trait::async_trait]
impl rag_core::Generator for NeverGenerator {
    async fn generate(&self, _: rag_core::GenerationRequest) -> rag::Result<Generation> {
        std::future::pending().await
    }
    fn name(&self) -> String {
        "never-lm".into()
    }
}

#[tokio::test(start_paused = true)]
async fn a_generator_that_never_returns_is_abandoned_at_the_deadline() {
    let f = fixture(None, None);
    f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap();
    let pipeline = RagPipeline::builder()
        .data_dir(f._dir.path().join("data2"))
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
        .mode(RetrievalMode::Bm25)
        .generator(Arc::new(NeverGenerator))
        .generation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = pipeline.query("green tea", &QueryOptions::default()).await.unwrap();
    assert_eq!(r.generator, "extractive");
    assert!(r.degraded.iter().any(|d| d.contains("never-lm") && d.contains("timed out after 300ms")), "{:?}", r.degraded);
    assert!(started.elapsed() >= Duration::from_millis(300), "the deadline, not an error, ended it");
}

/// A retriever of the user's own replaces the built-in one; asking it for a mode is refused.
#[tokio::test]
async fn a_custom_retriever_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut retriever = MockRetriever::new();
    retriever.expect_retrieve().times(1).returning(|q| {
        assert_eq!(q.k, 2);
        Ok(vec![ScoredChunk { chunk: Chunk::new("mine#0", "mine", "from my own retriever"), score: 1.0 }])
    });
    let pipeline = RagPipeline::builder()
        .data_dir(dir.path().to_owned())
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
        .retriever(Arc::new(retriever))
        .k(2)
        .build()
        .unwrap();
    pipeline
        .ingest(vec![Document::new("d", "something to make the collection non-empty")], IngestOptions::default())
        .await
        .unwrap();
    let r = pipeline.query("anything", &QueryOptions::new()).await.unwrap();
    assert_eq!(r.hits[0].chunk_id, "mine#0");
    assert_eq!(r.citations[0].doc_id, "mine");
    let err = pipeline.query("anything", &QueryOptions::new().mode(RetrievalMode::Dense)).await.unwrap_err();
    assert!(matches!(err, RagError::InvalidInput { .. }) && err.to_string().contains("its own"), "{err}");
}

#[tokio::test]
async fn in_memory_documents_and_delete_document_reach_every_store() {
    let f = fixture(None, None);
    let docs = vec![
        Document::new("m1", "Saturn has rings made of ice.").with_metadata("kind", "planet"),
        Document::new("m2", "Venus is the hottest planet.").with_metadata("kind", "planet"),
    ];
    let r = f.pipeline.ingest(docs, IngestOptions::new().batch_size(1)).await.unwrap();
    assert_eq!((r.documents, r.chunks), (2, 2));
    let hits = f.pipeline.search("Saturn rings ice", &QueryOptions::new().mode(RetrievalMode::Bm25)).await.unwrap();
    assert_eq!((hits.hits[0].doc_id.as_str(), hits.hits[0].rank), ("m1", 1), "search ranks the same Hit type a query reports");
    f.pipeline.delete_document("m1").await.unwrap();
    assert!(f.records.lock().unwrap().iter().all(|e| e.chunk.doc_id != "m1"), "gone from the vector store");
    let hits = f.pipeline.search("Saturn rings ice", &QueryOptions::new().mode(RetrievalMode::Bm25)).await.unwrap();
    assert!(hits.hits.iter().all(|h| h.doc_id != "m1"), "gone from the keyword index");
    assert_eq!(f.pipeline.stats().await.unwrap().documents, 1, "gone from the manifest");
    let err = f.pipeline.delete_document("m1").await.unwrap_err();
    assert!(matches!(err, RagError::NotFound { .. }) && err.to_string().contains("`m1`"), "{err}");
    // Ids are checked for every source: an empty id, or one given twice, is refused before
    // anything of that document is written.
    let dup = vec![Document::new("x", "one"), Document::new("x", "two")];
    let err = f.pipeline.ingest(dup, IngestOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("`x`") && err.contains("twice"), "{err}");
    let err = f.pipeline.ingest(vec![Document::new("", "no id")], IngestOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    std::fs::write(f.docs.join("c.jsonl"), "{\"_id\": \"dup\", \"text\": \"a\"}\n{\"_id\": \"dup\", \"text\": \"b\"}\n").unwrap();
    let err = f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap_err().to_string();
    assert!(err.contains("c.jsonl") && err.contains("`dup`"), "the file is named: {err}");
    std::fs::remove_file(f.docs.join("c.jsonl")).unwrap();
    // k out of range is refused, not an empty answer.
    let err = f.pipeline.query("Venus", &QueryOptions::new().k(0)).await.unwrap_err();
    assert!(err.to_string().contains("k") && err.to_string().contains("1 to 1000"), "{err}");
}

#[tokio::test]
async fn changed_removed_and_bad_inputs() {
    let f = fixture(None, None);
    f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::default()).await.unwrap();
    let before: Vec<String> = f.records.lock().unwrap().iter().map(|e| e.chunk.id.clone()).collect();
    std::fs::write(f.docs.join("tea.txt"), "Oolong tea sits between green and black tea.").unwrap();
    std::fs::remove_file(f.docs.join("python.md")).unwrap();
    let embedded = *f.embedded.lock().unwrap();
    let r = f.pipeline.ingest(FileSource::new([&f.docs]), IngestOptions::new().prune(true)).await.unwrap();
    assert_eq!((r.documents, r.unchanged, r.removed), (2, 1, 1));
    assert_eq!(*f.embedded.lock().unwrap() - embedded, r.chunks as usize, "only the changed file was embedded");
    let after: Vec<String> = f.records.lock().unwrap().iter().map(|e| e.chunk.id.clone()).collect();
    assert!(after.iter().all(|id| !id.starts_with("docs/python.md")), "pruned: {after:?}");
    assert!(before.iter().any(|id| id.starts_with("docs/python.md")));
    let texts: Vec<String> = f.records.lock().unwrap().iter().map(|e| e.chunk.text.clone()).collect();
    assert!(texts.iter().any(|t| t.contains("Oolong")) && !texts.iter().any(|t| t.contains("Steep it")));
    // Empty question, empty collection: clear errors.
    assert!(matches!(f.pipeline.query("  ", &QueryOptions::default()).await.unwrap_err(), RagError::InvalidInput { .. }));
    let empty = fixture(None, None);
    let err = empty.pipeline.query("anything", &QueryOptions::default()).await.unwrap_err();
    assert!(matches!(&err, RagError::EmptyCollection { collection } if collection == "rag"), "{err}");
    // The library says what is wrong; commands to run are the CLI's to add.
    assert!(!err.to_string().contains("rag ingest"), "{err}");
    // Reranking without a reranker is a configuration error, not a silent no-op.
    let err = f.pipeline.query("tea", &QueryOptions::new().rerank(true)).await.unwrap_err();
    assert!(matches!(err, RagError::Config { .. }), "{err}");
}

/// A store that is also the keyword index, the hybrid engine and the ingest record
/// (`store.index = engine`), from mocks: chunks carry their document's record, an unchanged
/// re-ingest is decided by the store's answer alone, and a hybrid RRF query is one engine call
/// with the filter and the candidates, never a separate keyword search.
#[tokio::test]
async fn a_store_that_is_its_own_index_and_ingest_record() {
    use rag_core::fusion::Fusion;
    use rag_core::mocks::{MockHybridSearch, MockIngestLedger, MockKeywordSearch};
    use rag_core::{Filter, ledger_keys};
    let dir = tempfile::tempdir().unwrap();
    let records = Arc::new(Mutex::new(Vec::new()));
    let embedded = Arc::new(Mutex::new(0));
    let mut ledger = MockIngestLedger::new();
    ledger.expect_in_chunks().return_const(true);
    let r = records.clone();
    // The record is read back from what the store holds, as QdrantStore does.
    ledger.expect_lookup().returning(move |ids: Vec<String>| {
        let rows = r
            .lock()
            .unwrap()
            .iter()
            .filter(|e: &&EmbeddedChunk| ids.contains(&e.chunk.doc_id))
            .map(|e| (e.chunk.doc_id.clone(), e.chunk.id.clone(), e.chunk.metadata.clone()))
            .collect();
        Ok(rag_core::entries_from_chunks(rows))
    });
    ledger.expect_begin().returning(|_| Ok(()));
    ledger.expect_commit().returning(|_| Ok(()));
    let mut keyword = MockKeywordSearch::new();
    keyword.expect_write().returning(|_, _| Ok(()));
    keyword.expect_count().returning(|| Ok(1));
    keyword.expect_search().times(0);
    let mut engine = MockHybridSearch::new();
    engine
        .expect_hybrid_search()
        .times(1)
        .withf(|q| {
            q.fusion == Fusion::Rrf
                && q.rrf_k == 60.0
                && q.filter == Some(Filter::eq("lang", "en"))
                && q.candidates == 100
                && q.k == 2
                && q.vector.len() == 26
        })
        .returning(|_| Ok(vec![ScoredChunk { chunk: Chunk::new("a#0", "a", "Rust is memory safe."), score: 0.03 }]));
    let p = RagPipeline::builder()
        .data_dir(dir.path().join("data"))
        .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
        .embedder(Arc::new(embedder(embedded.clone())))
        .vector_store(Arc::new(store(records.clone())))
        .keyword_index(Arc::new(keyword))
        .hybrid_engine(Arc::new(engine))
        .ingest_ledger(Arc::new(ledger))
        .retrieval(rag::RetrievalSettings { fusion: Fusion::Rrf, rrf_k: 60.0, ..Default::default() })
        .k(2)
        .build()
        .unwrap();
    let docs = || vec![Document::new("a", "Rust is memory safe."), Document::new("b", "Tea is brewed hot.")];
    let first = p.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!((first.documents, first.chunks), (2, 2));
    for e in records.lock().unwrap().iter() {
        for key in [ledger_keys::HASH, ledger_keys::CHUNKS, ledger_keys::ROOT, ledger_keys::FINGERPRINT] {
            assert!(e.chunk.metadata.contains_key(key), "{} lacks {key}: {:?}", e.chunk.id, e.chunk.metadata);
        }
    }
    let embedded_once = *embedded.lock().unwrap();
    let again = p.ingest(docs(), IngestOptions::default()).await.unwrap();
    assert_eq!((again.unchanged, again.chunks), (2, 0), "the store's own record says unchanged");
    assert_eq!(*embedded.lock().unwrap(), embedded_once);
    assert!(!dir.path().join("data").join("manifest.redb").exists(), "no local manifest");
    let r = p.search("memory safety", &QueryOptions::new().filter(Filter::eq("lang", "en"))).await.unwrap();
    assert_eq!(r.hits[0].chunk_id, "a#0");
    assert!(r.timings_ms.contains_key("engine_hybrid_search"), "{:?}", r.timings_ms);
}

/// Ingest runs as two overlapping stages (reading and chunking; embedding and writing). A
/// failing write stops the reader (the source is not read to its end), is the error reported
/// rather than a hang, and the next run converges on every document exactly once.
#[tokio::test]
async fn a_failing_write_stops_the_staged_ingest_and_a_rerun_converges() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let records = Arc::new(Mutex::new(Vec::<EmbeddedChunk>::new()));
    let upserts = Arc::new(AtomicUsize::new(0));
    let mut failing = MockVectorStore::new();
    let (r, u) = (records.clone(), upserts.clone());
    failing.expect_upsert().returning(move |chunks| {
        if u.fetch_add(1, Ordering::SeqCst) == 3 {
            return Err(RagError::transient("mock store", "connection reset"));
        }
        r.lock().unwrap().extend(chunks);
        Ok(())
    });
    failing.expect_delete().returning(|_| Ok(()));
    // The pipeline compares the store's dimension with the embedder's before its first write.
    failing.expect_describe().returning(|| Ok(description(None)));
    let pipeline = |store: MockVectorStore| {
        RagPipeline::builder()
            .data_dir(dir.path().join("data"))
            .chunker(Arc::new(SemanticChunker::new(TokenCounter::cl100k().unwrap(), 8, 64).unwrap()))
            .embedder(Arc::new(embedder(Arc::new(Mutex::new(0)))))
            .vector_store(Arc::new(store))
            .build()
            .unwrap()
    };
    let docs: Vec<Document> =
        (0..200).map(|i| Document::new(format!("d{i}"), format!("Document {i} is about topic {}.", i % 7))).collect();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = {
        let pulled = pulled.clone();
        docs.clone().into_iter().inspect(move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
        })
    };
    let source = rag::StreamSource::from_documents(counted, "gen");
    let first =
        tokio::time::timeout(Duration::from_secs(120), pipeline(failing).ingest(source, IngestOptions::new().batch_size(2)))
            .await
            .expect("the staged ingest must end when a write fails, not hang");
    let err = first.unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert!(pulled.load(Ordering::SeqCst) < docs.len(), "the reader stopped early: {}", pulled.load(Ordering::SeqCst));
    let written_before = records.lock().unwrap().len();
    assert!(written_before >= 6, "three batches of two documents were written: {written_before}");

    // The same source again (an ingest record is kept per origin).
    let again = pipeline(store(records.clone()))
        .ingest(rag::StreamSource::from_documents(docs.clone(), "gen"), IngestOptions::new().batch_size(2))
        .await
        .unwrap();
    assert_eq!(again.documents, 200);
    assert!(again.unchanged >= 6, "the batches committed before the failure are unchanged: {again:?}");
    let mut ids: Vec<String> = records.lock().unwrap().iter().map(|e| e.chunk.doc_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every document is stored");
}

/// The library's contract, as an outside user meets it (#25): empty documents, origins, the
/// builder, dimensions, the in-memory parts.
mod contract {
    use super::*;
    use rag::core::{InMemorySource, InMemoryStore, VectorStore};

    fn letters() -> Arc<MockEmbedder> {
        Arc::new(embedder(Arc::new(Mutex::new(0))))
    }

    /// Documents with no text are skipped and reported, from every source alike, and never
    /// recorded as ingested.
    #[tokio::test]
    async fn documents_without_text_are_skipped_and_reported() {
        let p = RagPipeline::builder().in_memory().mode(RetrievalMode::Bm25).build().unwrap();
        let docs = vec![Document::new("full", "Some text."), Document::new("blank", "  \n\t "), Document::new("none", "")];
        let r = p.ingest(docs, IngestOptions::default()).await.unwrap();
        assert_eq!((r.documents, r.chunks), (1, 1), "{r:?}");
        let skipped: Vec<&str> = r.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["document `blank`", "document `none`"], "{r:?}");
        assert!(r.skipped.iter().all(|s| s.reason.contains("no text")), "{r:?}");
        assert_eq!(p.stats().await.unwrap().documents, 1, "an empty document is not recorded as ingested");
        // A file source says the same of an empty file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.txt"), " \n").unwrap();
        let r = p.ingest(FileSource::new([dir.path()]), IngestOptions::default()).await.unwrap();
        assert_eq!((r.documents, r.skipped.len()), (0, 1), "{r:?}");
    }

    /// A document that a second source yields unchanged moves to that source's origin, so
    /// pruning the second origin removes it.
    #[tokio::test]
    async fn an_unchanged_document_from_another_origin_moves_to_it() {
        let p = RagPipeline::builder().in_memory().mode(RetrievalMode::Bm25).build().unwrap();
        let doc = || vec![Document::new("shared", "A note both feeds carry.")];
        p.ingest(InMemorySource::new(doc()).origin("first"), IngestOptions::default()).await.unwrap();
        p.ingest(InMemorySource::new(doc()).origin("second"), IngestOptions::default()).await.unwrap();
        assert_eq!(p.origin_counts(vec!["second".into()]).await.unwrap().documents, 1, "now under `second`");
        assert_eq!(p.origin_counts(vec!["first".into()]).await.unwrap().documents, 0);
        let r = p.ingest(InMemorySource::new(Vec::<Document>::new()).origin("second"), IngestOptions::new().prune(true)).await;
        assert_eq!(r.unwrap().removed, 1, "pruning the second origin removes it");
        assert_eq!(p.stats().await.unwrap().documents, 0);
    }

    /// A build that fails creates nothing on disk; an empty builder has a chunker.
    #[tokio::test]
    async fn the_builder_creates_nothing_until_it_succeeds_and_has_a_default_chunker() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // Dense retrieval without an embedder: refused, and no directory left behind.
        let err = RagPipeline::builder().data_dir(data.clone()).build().unwrap_err();
        assert!(matches!(err, RagError::Config { .. }), "{err}");
        assert!(!data.exists(), "a refused build created {}", data.display());
        // The manifest cannot be opened (a directory stands where its file goes): the keyword
        // index the build had created is removed again.
        std::fs::create_dir_all(data.join("manifest.redb")).unwrap();
        let err = RagPipeline::builder().data_dir(data.clone()).mode(RetrievalMode::Bm25).build().unwrap_err();
        assert!(!data.join("keyword").exists(), "left the keyword index behind after: {err}");
        std::fs::remove_dir(data.join("manifest.redb")).unwrap();
        // No chunker given: the configuration's default one.
        let p = RagPipeline::builder().data_dir(data.clone()).mode(RetrievalMode::Bm25).build().unwrap();
        let r = p.ingest(vec![Document::new("a", "Chunked by the default chunker.")], IngestOptions::default()).await.unwrap();
        assert_eq!(r.chunks, 1);
        assert!(p.stats().await.unwrap().backends["chunker"].starts_with("semantic"), "{:?}", p.stats().await.unwrap().backends);
    }

    /// An embedder whose dimension differs from the collection's is refused before anything is
    /// written or searched, naming both.
    #[tokio::test]
    async fn an_embedder_of_another_dimension_is_refused_naming_both() {
        let store = Arc::new(InMemoryStore::with_dimension("docs", Some(384)));
        let p = RagPipeline::builder().in_memory().embedder(letters()).vector_store(store.clone()).build().unwrap();
        let err = p.ingest(vec![Document::new("a", "text")], IngestOptions::default()).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RagError::DimensionMismatch { expected: 384, actual: 26, .. }), "{msg}");
        assert!(msg.contains("mock-letters") && msg.contains("`docs`"), "{msg}");
        assert_eq!(store.count().await.unwrap(), 0);
        assert_eq!(p.stats().await.unwrap().documents, 0, "nothing recorded");
        let err = p.retrieve("text", &QueryOptions::new().mode(RetrievalMode::Dense)).await.unwrap_err();
        assert!(matches!(err, RagError::DimensionMismatch { .. }), "{err}");
    }

    /// A pipeline of in-memory parts: no data directory, nothing on disk, hybrid retrieval.
    #[tokio::test]
    async fn an_in_memory_pipeline_needs_no_directory() {
        let store = Arc::new(InMemoryStore::new("notes"));
        let p = RagPipeline::builder().in_memory().embedder(letters()).vector_store(store.clone()).build().unwrap();
        let docs =
            vec![Document::new("tea", "Oolong tea is partly oxidised."), Document::new("rust", "Rust has no garbage collector.")];
        assert_eq!(p.ingest(docs.clone(), IngestOptions::default()).await.unwrap().chunks, 2);
        assert_eq!(p.ingest(docs, IngestOptions::default()).await.unwrap().unchanged, 2, "the in-memory record");
        let found = p.search("garbage collector", &QueryOptions::new().k(1)).await.unwrap();
        assert_eq!((found.hits[0].doc_id.as_str(), found.hits[0].rank), ("rust", 1));
        assert_eq!(store.count().await.unwrap(), 2);
        assert_eq!(p.stats().await.unwrap().backends["data_dir"], "(in memory)");
        // Without a directory and not in memory: an error that says both ways out.
        let err = RagPipeline::builder().mode(RetrievalMode::Bm25).build().unwrap_err();
        assert!(err.to_string().contains("in_memory") && err.to_string().contains("data_dir"), "{err}");
    }
}
