//! The vector-store conformance suite (feature `conformance`): one body of checks every
//! [`VectorStore`] runs, the contract written on the trait made executable (upsert,
//! nearest-first cosine queries, every filter operator against [`Filter::matches`], list
//! fields, the metadata and filter rules of [`crate::rules`], deletes by id and by the reserved
//! fields, dimension errors, unicode, reopen, `NotFound`, 10,000 vectors).
//!
//! Run it from a test of your own store: `run_conformance("mine", factory, persists).await`
//! panics with the store's name and the broken rule. It needs no Python; add
//! `rag-core = { version = "…", features = ["conformance"] }` to your dev-dependencies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Chunk, Distance, EmbeddedChunk, Filter, Metadata, MetadataValue, RagError, VectorQuery, VectorStore};

/// Dimension of the suite's vectors.
pub const DIM: usize = 8;

/// Opens (or, with `true`, creates) a store on the named collection.
pub type Factory =
    Arc<dyn Fn(String, bool) -> Pin<Box<dyn Future<Output = crate::Result<Arc<dyn VectorStore>>> + Send>> + Send + Sync>;

/// The suite's i-th vector: pseudo-random, unit length, nearest to itself.
pub fn vector(i: usize) -> Vec<f32> {
    // Pseudo-random, distinct for every i (splitmix64): the i-th vector is closest to itself.
    let mut state = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    v[i % DIM] += 0.5;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// The i-th chunk's metadata: every value type, and a string list on half of the chunks.
pub fn meta(i: usize) -> Metadata {
    let mut m = Metadata::new();
    m.insert("year".into(), MetadataValue::Int(2015 + (i % 8) as i64));
    m.insert("lang".into(), MetadataValue::Str(["en", "de", "fr"][i % 3].into()));
    m.insert("score".into(), MetadataValue::Float((i % 10) as f64 / 10.0));
    m.insert("ok".into(), MetadataValue::Bool(i.is_multiple_of(2)));
    // Some stores refuse empty lists: chunks without tags have no `tags` key at all.
    match i % 4 {
        0 => m.insert("tags".into(), MetadataValue::StrList(vec!["a".into(), "b".into()])),
        1 => m.insert("tags".into(), MetadataValue::StrList(vec!["b".into()])),
        _ => None,
    };
    m
}

/// The i-th embedded chunk, with `text`.
pub fn chunk(i: usize, text: &str) -> EmbeddedChunk {
    let mut c = Chunk::new(format!("c{i}"), format!("doc{}", i / 4), text);
    c.index = i % 4;
    c.token_count = 3;
    c.metadata = meta(i);
    EmbeddedChunk { chunk: c, embedding: vector(i) }
}

/// The ids of hits.
pub fn ids(hits: &[crate::ScoredChunk]) -> BTreeSet<String> {
    hits.iter().map(|h| h.chunk.id.clone()).collect()
}

/// Runs the whole suite on the store `factory` opens; `persists`: reopening sees the data.
pub async fn run_conformance(name: &str, factory: Factory, persists: bool) {
    let coll = format!("conf-{}-{}", name, std::process::id());
    let store = factory(coll.clone(), true).await.unwrap();

    // Empty collection.
    assert_eq!(store.count().await.unwrap(), 0, "{name}: empty count");
    let q = VectorQuery { vector: vector(0), k: 5, filter: None };
    assert!(store.query(q.clone()).await.unwrap().is_empty(), "{name}: empty query");

    // Upsert, nearest first, scores descending (higher is more similar).
    let n = 40;
    let texts: Vec<String> = (0..n).map(|i| format!("chunk number {i}")).collect();
    store.upsert((0..n).map(|i| chunk(i, &texts[i])).collect()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), n, "{name}: count after upsert");
    for probe in [0usize, 7, 23] {
        let hits = store.query(VectorQuery { vector: vector(probe), k: 5, filter: None }).await.unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].chunk.id, format!("c{probe}"), "{name}: nearest first");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{name}: scores descending");
        assert!((hits[0].score - 1.0).abs() < 1e-3, "{name}: cosine self-similarity is 1, got {}", hits[0].score);
        let c = &hits[0].chunk;
        assert_eq!(c.text, texts[probe]);
        assert_eq!(c.doc_id, format!("doc{}", probe / 4));
        assert_eq!(c.index, probe % 4);
        assert_eq!(c.span.end, texts[probe].len());
        assert_eq!(c.metadata.get("lang"), meta(probe).get("lang"));
        assert_eq!(c.metadata.get("year").and_then(MetadataValue::as_f64), Some((2015 + probe % 8) as f64));
    }

    // Candidates name the same hits with the same scores as a query, with or without their
    // chunks; chunks a store leaves out it hands over by id (unknown ids left out).
    for filter in [None, Some(Filter::eq("lang", "de"))] {
        let q = VectorQuery { vector: vector(7), k: 12, filter };
        let hits = store.query(q.clone()).await.unwrap();
        let candidates = store.candidates(q).await.unwrap();
        assert_eq!(
            candidates.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            hits.iter().map(|h| h.chunk.id.clone()).collect::<Vec<_>>(),
            "{name}: candidates rank as the query does"
        );
        for (c, h) in candidates.iter().zip(&hits) {
            assert!(
                (c.score - h.score).abs() < 1e-5,
                "{name}: {} scores {} as a candidate, {} in a query",
                c.id,
                c.score,
                h.score
            );
            assert!(c.chunk.as_ref().is_none_or(|chunk| chunk == &h.chunk), "{name}: {}", c.id);
        }
        let bare: Vec<String> = candidates.iter().filter(|c| c.chunk.is_none()).map(|c| c.id.clone()).collect();
        if !bare.is_empty() {
            let mut asked = bare.clone();
            asked.push("no-such-chunk".into());
            let mut got = store.chunks(asked).await.unwrap();
            got.sort_by(|a, b| a.id.cmp(&b.id));
            let mut expected: Vec<Chunk> = hits.iter().filter(|h| bare.contains(&h.chunk.id)).map(|h| h.chunk.clone()).collect();
            expected.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(got, expected, "{name}: chunks by id");
        }
    }

    // Every filter operator agrees with the reference semantics.
    let filters = vec![
        Filter::eq("lang", "de"),
        Filter::ne("lang", "de"),
        Filter::is_in("lang", ["en", "fr"]),
        Filter::not_in("lang", ["en", "fr"]),
        Filter::gt("year", 2018),
        Filter::gte("year", 2018),
        Filter::lt("score", 0.3),
        Filter::lte("score", 0.3),
        Filter::eq("ok", true),
        Filter::eq("year", 2020),
        Filter::eq("lang", "en").and(Filter::gte("year", 2019)),
        Filter::eq("lang", "fr").or(Filter::lt("year", 2016)),
        Filter::eq("ok", false).and(Filter::eq("lang", "de").or(Filter::gt("score", 0.75))),
        // A list field equals a value it contains (rag-core's documented semantics), on every store.
        Filter::eq("tags", "a"),
        Filter::eq("tags", "b"),
        Filter::ne("tags", "a"),
        Filter::is_in("tags", ["a", "zzz"]),
        Filter::not_in("tags", ["a"]),
        Filter::eq("tags", "b").and(Filter::eq("lang", "en")),
    ];
    for f in filters {
        let expected: BTreeSet<String> = (0..n).filter(|i| f.matches(&meta(*i))).map(|i| format!("c{i}")).collect();
        let hits = store.query(VectorQuery { vector: vector(3), k: 100, filter: Some(f.clone()) }).await.unwrap();
        assert_eq!(ids(&hits), expected, "{name}: filter {f}");
    }
    // A malformed filter is an InvalidInput error naming `filter`, checked in Rust by the rules
    // every store shares (rag_core::rules), never a Python exception.
    let malformed = [
        Filter::And(vec![]),
        Filter::Eq("tenant".into(), MetadataValue::StrList(vec!["globex".into()])),
        Filter::eq("", "x"),
        Filter::eq("$and", "x"),
        Filter::In("lang".into(), vec!["en".into(), 1.into()]),
        Filter::eq("score", f64::NAN),
    ];
    for f in malformed {
        let err = store.query(VectorQuery { vector: vector(3), k: 3, filter: Some(f.clone()) }).await.unwrap_err();
        assert!(matches!(&err, RagError::InvalidInput { input, .. } if input == "filter"), "{name}: {f}: {err}");
    }

    // Metadata keys at the edges of the rules round-trip and filter alike on every store; keys
    // the rules refuse are refused before the store sees them, and the batch writes nothing.
    let edge_keys = ["a.b", "dc:title", "Year 2020", "ключ", "with-dash_and_underscore"];
    let mut edgy = chunk(200, "edge keys");
    for (j, k) in edge_keys.iter().enumerate() {
        edgy.chunk.metadata.insert((*k).to_owned(), MetadataValue::Str(format!("v{j}")));
    }
    edgy.chunk.metadata.insert("empty".into(), MetadataValue::StrList(vec![]));
    store.upsert(vec![edgy]).await.unwrap();
    for (j, k) in edge_keys.iter().enumerate() {
        let hits =
            store.query(VectorQuery { vector: vector(3), k: 5, filter: Some(Filter::eq(*k, format!("v{j}"))) }).await.unwrap();
        assert_eq!(ids(&hits), BTreeSet::from(["c200".to_owned()]), "{name}: filter on key {k:?}");
        assert_eq!(hits[0].chunk.metadata.get(*k), Some(&MetadataValue::Str(format!("v{j}"))), "{name}: key {k:?} round-trips");
    }
    // An empty list is kept as no value, on every store: filters treat the two alike.
    let hits = store.query(VectorQuery { vector: vector(200), k: 1, filter: None }).await.unwrap();
    assert_eq!(hits[0].chunk.metadata.get("empty"), None, "{name}: an empty list is stored as no value");
    assert!(
        ids(&store.query(VectorQuery { vector: vector(3), k: 100, filter: Some(Filter::ne("empty", "x")) }).await.unwrap())
            .contains("c200"),
        "{name}: a missing (empty) list matches `ne`"
    );
    store.delete(vec!["c200".into()]).await.unwrap();
    let before = store.count().await.unwrap();
    for bad_key in ["", "$and", "chroma:document", "doc_id", "text", "chunk_id", "ctl\u{1}"] {
        let mut bad = chunk(201, "refused");
        bad.chunk.metadata.insert(bad_key.to_owned(), MetadataValue::Str("x".into()));
        let err = store.upsert(vec![chunk(202, "good one of the batch"), bad]).await.unwrap_err();
        assert!(matches!(&err, RagError::InvalidInput { input, .. } if input == "chunk `c201`"), "{name}: {bad_key:?}: {err}");
    }
    let mut nan = chunk(201, "refused");
    nan.chunk.metadata.insert("score".into(), MetadataValue::Float(f64::INFINITY));
    assert!(matches!(store.upsert(vec![nan]).await.unwrap_err(), RagError::InvalidInput { .. }), "{name}: a non-finite number");
    assert_eq!(store.count().await.unwrap(), before, "{name}: a refused batch writes nothing");

    // k larger than the collection.
    assert_eq!(
        store.query(VectorQuery { vector: vector(1), k: 1000, filter: None }).await.unwrap().len(),
        n,
        "{name}: k > count"
    );

    // Idempotent re-upsert.
    store.upsert((0..10).map(|i| chunk(i, &texts[i])).collect()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), n, "{name}: re-upsert keeps count");

    // Delete by id, then by filter.
    store.delete(vec!["c0".into(), "c1".into(), "nope".into()]).await.unwrap();
    assert_eq!(store.count().await.unwrap(), n - 2, "{name}: delete by id");
    let hits = store.query(VectorQuery { vector: vector(0), k: 3, filter: None }).await.unwrap();
    assert!(!ids(&hits).contains("c0"));
    store.delete_by_filter(Filter::eq("lang", "fr")).await.unwrap();
    let remaining = (2..n).filter(|i| i % 3 != 2).count();
    assert_eq!(store.count().await.unwrap(), remaining, "{name}: delete by filter");
    store.delete_by_filter(Filter::eq("doc_id", "doc9")).await.unwrap();
    let hits = store.query(VectorQuery { vector: vector(37), k: 100, filter: None }).await.unwrap();
    assert!(hits.iter().all(|h| h.chunk.doc_id != "doc9"), "{name}: delete by the reserved doc_id field");

    // Dimension mismatch on upsert and on query: a typed error.
    let mut bad = chunk(99, "bad");
    bad.embedding = vec![0.5; DIM + 1];
    let err = store.upsert(vec![bad]).await.unwrap_err();
    assert!(matches!(err, RagError::DimensionMismatch { expected: DIM, .. }), "{name}: {err}");
    let err = store.query(VectorQuery { vector: vec![0.1; DIM - 1], k: 1, filter: None }).await.unwrap_err();
    assert!(matches!(err, RagError::DimensionMismatch { .. }), "{name}: {err}");

    // Unicode and long texts round-trip.
    let unicode = "Ünïcödé — 日本語のテキスト 🎉 \"quotes\" and \\backslashes\\ \n newline";
    let long = "long text ".repeat(2000);
    store.upsert(vec![chunk(100, unicode), chunk(101, &long)]).await.unwrap();
    let hit = store.query(VectorQuery { vector: vector(100), k: 1, filter: None }).await.unwrap();
    assert_eq!(hit[0].chunk.text, unicode, "{name}: unicode");
    let hit = store.query(VectorQuery { vector: vector(101), k: 1, filter: None }).await.unwrap();
    assert_eq!(hit[0].chunk.text.len(), long.len(), "{name}: long text");

    let desc = store.describe().await.unwrap();
    assert_eq!(desc.dimension, Some(DIM));
    assert_eq!(desc.distance, Distance::Cosine);
    assert_eq!(desc.count, store.count().await.unwrap());

    // Persistence across reopen.
    let before = store.count().await.unwrap();
    drop(store);
    if persists {
        let reopened = factory(coll.clone(), false).await.unwrap();
        assert_eq!(reopened.count().await.unwrap(), before, "{name}: persisted across reopen");
        drop(reopened);
    }

    // An unknown collection is NotFound when creation is off.
    let err = factory(format!("missing-{coll}"), false).await.map(|_| ()).unwrap_err();
    assert!(matches!(err, RagError::NotFound { .. }), "{name}: {err}");

    // 10,000 vectors in batches.
    let big = factory(format!("big-{coll}"), true).await.unwrap();
    let many: Vec<EmbeddedChunk> = (0..10_000).map(|i| chunk(i, "x")).collect();
    big.upsert(many).await.unwrap();
    assert_eq!(big.count().await.unwrap(), 10_000, "{name}: 10,000 vectors");
    let hits = big.query(VectorQuery { vector: vector(5), k: 10, filter: Some(Filter::eq("lang", "de")) }).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.chunk.metadata.get("lang") == Some(&MetadataValue::Str("de".into()))));
}
