//! [`Bm25Encoder`]: BM25 as sparse vectors, for stores that search sparse vectors themselves
//! (Qdrant with `modifier = IDF`).
//!
//! * Terms come from the same analyser as [`crate::KeywordIndex`] (lower-casing, English stop
//!   words, Snowball stemming, as configured), so both keyword sides see the same words.
//! * A term's id is the 32-bit FNV-1a hash of its UTF-8 bytes (offset basis 2166136261, prime
//!   16777619). It is fixed forever: vectors written by one version must match queries from
//!   the next. Collisions (two terms, one id) are about 1 in 80,000 for a 10,000-term vocabulary
//!   pair; they merge two terms' statistics, as hashing vectorisers do.
//! * A document's weight for a term is BM25's term-frequency part,
//!   `tf · (k1 + 1) / (tf + k1 · (1 − b + b · len / avg_len))` (k1 1.2, b 0.75, as tantivy), with
//!   `len` the document's term count. The engine multiplies by the IDF it keeps from the corpus
//!   (`ln(1 + (N − n + 0.5) / (n + 0.5))`), which makes the product BM25. `avg_len` must be fixed
//!   when vectors are written, because the engine does not keep it: it is a setting
//!   (`keyword.avg_chunk_terms`).
//! * A query term weighs 1 per distinct term, so a query scores as the sum of its terms' BM25.

use std::collections::BTreeMap;

use rag_core::{SparseEncoder, SparseVector};
use tantivy::tokenizer::{TextAnalyzer, TokenStream};

use crate::{KeywordConfig, analyzer};
use rag_core::Result;

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;

/// The fixed term hash: 32-bit FNV-1a.
pub fn term_id(term: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in term.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// BM25 term weights as sparse vectors (see the module docs).
#[derive(Clone)]
pub struct Bm25Encoder {
    analyzer: TextAnalyzer,
    cfg: KeywordConfig,
}

impl std::fmt::Debug for Bm25Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Encoder").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Bm25Encoder {
    /// An encoder with the keyword index's analysis settings and average chunk length.
    pub fn new(cfg: &KeywordConfig) -> Result<Self> {
        if cfg.avg_chunk_terms == 0 {
            return Err(rag_core::RagError::config("keyword.avg_chunk_terms must be at least 1"));
        }
        Ok(Self { analyzer: analyzer(cfg)?, cfg: cfg.clone() })
    }

    /// How many analysed terms `text` has (its BM25 length).
    pub fn term_count(&self, text: &str) -> usize {
        self.terms(text).1
    }

    /// Term frequencies of `text` after analysis, and its term count.
    fn terms(&self, text: &str) -> (BTreeMap<u32, u32>, usize) {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut tf: BTreeMap<u32, u32> = BTreeMap::new();
        let mut len = 0usize;
        while stream.advance() {
            *tf.entry(term_id(&stream.token().text)).or_default() += 1;
            len += 1;
        }
        (tf, len)
    }
}

impl SparseEncoder for Bm25Encoder {
    fn encode_document(&self, text: &str) -> SparseVector {
        let (tf, len) = self.terms(text);
        let norm = K1 * (1.0 - B + B * len as f32 / self.cfg.avg_chunk_terms as f32);
        let (indices, values) = tf
            .into_iter()
            .map(|(id, n)| {
                let n = n as f32;
                (id, n * (K1 + 1.0) / (n + norm))
            })
            .unzip();
        SparseVector { indices, values }
    }

    fn encode_query(&self, text: &str) -> SparseVector {
        let (tf, _) = self.terms(text);
        SparseVector { indices: tf.keys().copied().collect(), values: vec![1.0; tf.len()] }
    }

    fn fingerprint(&self) -> String {
        format!(
            "bm25-fnv1a32(stem={},stop={},k1={K1},b={B},avg={})",
            self.cfg.stemming, self.cfg.stop_words, self.cfg.avg_chunk_terms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_ids_are_fnv1a_and_fixed() {
        // Published FNV-1a 32 test vectors: a change of hash would orphan every stored vector.
        assert_eq!(term_id(""), 0x811c_9dc5);
        assert_eq!(term_id("a"), 0xe40c_292c);
        assert_eq!(term_id("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn documents_get_saturated_length_normalised_weights_over_analysed_terms() {
        let e = Bm25Encoder::new(&KeywordConfig::default()).unwrap();
        let d = e.encode_document("The vitamins and Vitamin D deficiency: vitamin levels.");
        // "the", "and" are stop words; "vitamins"/"vitamin" stem to one term seen 3 times.
        let vitamin = term_id("vitamin");
        let i = d.indices.iter().position(|&t| t == vitamin).expect("vitamin is a term");
        let once = d.values[d.indices.iter().position(|&t| t == term_id("defici")).expect("stemmed deficiency")];
        assert!(d.values[i] > once && d.values[i] < K1 + 1.0, "{d:?}");
        assert!(!d.indices.contains(&term_id("the")));
        assert!(d.indices.windows(2).all(|w| w[0] < w[1]), "ids ascending and unique");
        // A longer document gives the same term frequency a smaller weight.
        let long = e.encode_document(&format!("vitamin {}", "filler words here ".repeat(40)));
        let short = e.encode_document("vitamin");
        let w = |v: &SparseVector| v.values[v.indices.iter().position(|&t| t == vitamin).unwrap()];
        assert!(w(&long) < w(&short), "{} !< {}", w(&long), w(&short));
        // Queries weigh each distinct term once.
        let q = e.encode_query("vitamin D vitamins");
        assert_eq!(q.values, vec![1.0; q.indices.len()]);
        assert_eq!(q.indices.len(), 2, "{q:?}");
        assert!(e.encode_query("the and of").is_empty());
    }
}
