//! Token counting: BPE tables embedded in the binary, loaded once, shared. cl100k and o200k
//! run on `bpe-openai` (GitHub's exact BPE: the same tokens as tiktoken, checked on the whole
//! SciFact corpus by a test, and faster); p50k, which it lacks, on tiktoken-rs.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use rag_core::{RagError, Result};
use tiktoken_rs::CoreBPE;

rag_core::choice! {
    /// A tiktoken encoding (`chunker.encoding` in the configuration).
    #[derive(Hash, Default)]
    Encoding {
        /// GPT-4 / GPT-3.5 / text-embedding-3 (default).
        #[default]
        Cl100kBase = "cl100k_base",
        /// GPT-4o family.
        O200kBase = "o200k_base",
        /// Codex / text-davinci-002/003.
        P50kBase = "p50k_base",
    }
}

impl Encoding {
    /// The encoding's tiktoken name.
    pub fn name(&self) -> &'static str {
        self.as_str()
    }
}

struct Loaded {
    bpe: CoreBPE,
    /// The faster exact encoder, where one exists for the encoding.
    fast: Option<&'static bpe_openai::Tokenizer>,
    /// Byte length of every token rank, so token byte offsets need no decoding per token.
    token_len: Vec<u32>,
}

/// Counts and locates tokens. Cheap to clone: the BPE tables are loaded once per process.
#[derive(Clone)]
pub struct TokenCounter {
    encoding: Encoding,
    loaded: Arc<Loaded>,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter").field("encoding", &self.encoding).finish()
    }
}

fn load(encoding: Encoding) -> std::result::Result<Arc<Loaded>, String> {
    let bpe = match encoding {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base(),
        Encoding::O200kBase => tiktoken_rs::o200k_base(),
        Encoding::P50kBase => tiktoken_rs::p50k_base(),
    }
    .map_err(|e| e.to_string())?;
    let mut token_len = Vec::new();
    // Ranks are dense from 0; stop at the first gap (special tokens sit far above and never
    // appear in ordinary encodings).
    for rank in 0u32.. {
        match bpe.decode_bytes(&[rank]) {
            Ok(bytes) => token_len.push(bytes.len() as u32),
            Err(_) => break,
        }
    }
    let fast = match encoding {
        Encoding::Cl100kBase => Some(bpe_openai::cl100k_base()),
        Encoding::O200kBase => Some(bpe_openai::o200k_base()),
        Encoding::P50kBase => None,
    };
    Ok(Arc::new(Loaded { bpe, fast, token_len }))
}

/// Pieces (the pre-tokenizer's words) longer than this are encoded every time, not cached.
const CACHED_PIECE_BYTES: usize = 32;
/// A thread's piece cache is emptied when it holds this many pieces (a few MB at most).
const PIECE_CACHE_LIMIT: usize = 1 << 16;

/// A piece's text and its tokens.
type PieceCache = FxHashMap<Box<str>, Box<[u32]>>;

thread_local! {
    /// Tokens of recently seen pieces, per encoding with a fast path (cl100k, o200k). Words
    /// repeat, so most of SciFact's 1.4 million pieces cost a hash lookup instead of a BPE run
    /// (on SciFact, counting went from 42 to 95 MB/s with it). Per thread: no lock is taken.
    static PIECES: RefCell<[PieceCache; 2]> = RefCell::new([PieceCache::default(), PieceCache::default()]);
}

impl TokenCounter {
    /// Calls `f` with the tokens of each pre-tokenizer piece of `text`, in order, through the
    /// piece cache. The tokens are exactly `fast.encode(text)`'s: each piece is encoded alone
    /// by the BPE either way.
    fn for_each_piece(&self, fast: &bpe_openai::Tokenizer, text: &str, mut f: impl FnMut(&[u32])) {
        let slot = self.encoding as usize;
        PIECES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let Some(map) = cache.get_mut(slot) else {
                f(&fast.encode(text));
                return;
            };
            for piece in fast.split(text) {
                if piece.len() > CACHED_PIECE_BYTES {
                    f(&fast.bpe.encode_via_backtracking(piece.as_bytes()));
                    continue;
                }
                if let Some(tokens) = map.get(piece) {
                    f(tokens);
                    continue;
                }
                let tokens: Box<[u32]> = fast.bpe.encode_via_backtracking(piece.as_bytes()).into();
                f(&tokens);
                if map.len() >= PIECE_CACHE_LIMIT {
                    map.clear();
                }
                map.insert(piece.into(), tokens);
            }
        });
    }

    /// The counter for `encoding`, loading its tables the first time.
    pub fn new(encoding: Encoding) -> Result<Self> {
        static CACHE: [OnceLock<std::result::Result<Arc<Loaded>, String>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = &CACHE[encoding as usize];
        let loaded = slot
            .get_or_init(|| load(encoding))
            .clone()
            .map_err(|e| RagError::config(format!("could not load tiktoken encoding {}: {e}", encoding.name())))?;
        Ok(Self { encoding, loaded })
    }

    /// The default counter (cl100k_base).
    pub fn cl100k() -> Result<Self> {
        Self::new(Encoding::Cl100kBase)
    }

    /// Which encoding this counts with.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Number of tokens in `text`.
    pub fn count(&self, text: &str) -> usize {
        match (text.is_empty(), self.loaded.fast) {
            (true, _) => 0,
            (false, Some(fast)) => {
                let mut n = 0;
                self.for_each_piece(fast, text, |t| n += t.len());
                n
            }
            (false, None) => self.loaded.bpe.encode_ordinary(text).len(),
        }
    }

    /// Token ids of `text` (tiktoken's ranks, without special tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self.loaded.fast {
            Some(fast) => {
                let mut out = Vec::with_capacity(text.len() / 4 + 1);
                self.for_each_piece(fast, text, |t| out.extend_from_slice(t));
                out
            }
            None => self.loaded.bpe.encode_ordinary(text),
        }
    }

    /// Token ids of `text` as tiktoken-rs gives them (the reference the fast path is checked against).
    pub fn encode_reference(&self, text: &str) -> Vec<u32> {
        self.loaded.bpe.encode_ordinary(text)
    }

    /// Byte offset in `text` where each token starts, plus `text.len()` at the end (so token `i`
    /// spans `offsets[i]..offsets[i + 1]`). Byte-level BPE can split a UTF-8 character between two
    /// tokens; such offsets are moved forward to the next character boundary, so every offset is a
    /// valid place to slice `text`.
    pub fn token_offsets(&self, text: &str) -> Vec<usize> {
        let tokens = self.encode(text);
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        let mut pos = 0usize;
        for t in tokens {
            offsets.push(ceil_char_boundary(text, pos));
            pos += self.loaded.token_len.get(t as usize).copied().unwrap_or(0) as usize;
        }
        offsets.push(text.len());
        offsets
    }
}

/// Whether byte `i` of `text` starts a pre-tokenizer piece in every encoding here: a space
/// followed by a non-whitespace character. The cl100k, o200k and p50k patterns all let a piece
/// start with one optional space and never let a piece end with a space that precedes a
/// non-space, so no piece crosses such a position, with or without the text around it.
fn is_piece_boundary(text: &str, i: usize) -> bool {
    text.as_bytes().get(i) == Some(&b' ') && text[i + 1..].chars().next().is_some_and(|c| !c.is_whitespace())
}

/// How far to look for a piece boundary before falling back to encoding the span whole.
const BOUNDARY_SEARCH: usize = 256;

impl TokenCounter {
    /// The exact token count of `text[start..end]` (as [`TokenCounter::count`] would give it),
    /// computed from `offsets = self.token_offsets(text)` of the whole text: only the short head
    /// and tail up to the nearest piece boundaries are encoded again; the tokens between the two
    /// boundaries are the whole text's, counted from `offsets`. Text without such boundaries
    /// (CJK, long runs without spaces) is simply encoded.
    pub fn count_span(&self, text: &str, offsets: &[usize], start: usize, end: usize) -> usize {
        let span = &text[start..end];
        // Judged within the span: a space whose next character lies past `end` is followed,
        // in the span, by nothing, and the whitespace before it merges into one piece.
        let upto = &text[..end];
        let first = (start..end.min(start + BOUNDARY_SEARCH)).find(|&i| is_piece_boundary(upto, i));
        let last = (start.max(end.saturating_sub(BOUNDARY_SEARCH))..end).rev().find(|&i| is_piece_boundary(upto, i));
        let (Some(a), Some(b)) = (first, last) else { return self.count(span) };
        if b <= a {
            return self.count(span);
        }
        // The real token at a boundary is the last one listed there (tokens of a split
        // character before it were moved up to the same offset).
        let index = |pos: usize| offsets.partition_point(|o| *o <= pos).checked_sub(1).filter(|&i| offsets[i] == pos);
        match (index(a), index(b)) {
            (Some(ia), Some(ib)) => self.count(&text[start..a]) + (ib - ia) + self.count(&text[b..end]),
            _ => self.count(span),
        }
    }
}

/// The smallest char boundary >= `i` (or `s.len()`).
pub(crate) fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_reassemble_the_text() {
        let tc = TokenCounter::cl100k().unwrap();
        for text in ["Hello, world!", "日本語のテキスト 🎉🎉 café", "", "a\r\nb"] {
            let off = tc.token_offsets(text);
            assert_eq!(*off.last().unwrap(), text.len());
            assert!(off.windows(2).all(|w| w[0] <= w[1]));
            assert!(off.iter().all(|o| text.is_char_boundary(*o)));
            assert_eq!(off.len() - 1, tc.count(text));
        }
        assert_eq!(tc.count("hello world"), 2);
    }

    #[test]
    fn span_counts_equal_direct_counts() {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase, Encoding::P50kBase] {
            let tc = TokenCounter::new(enc).unwrap();
            let text =
                "The quick  brown fox, aged 123, jumped. Über-naïve café\n\n  tabs\tand 🎉 emoji 日本語 ok!? (yes) it's fine.  ";
            let off = tc.token_offsets(text);
            let bounds: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
            for (x, &a) in bounds.iter().enumerate() {
                for &b in &bounds[x..] {
                    assert_eq!(tc.count_span(text, &off, a, b), tc.count(&text[a..b]), "{enc:?} {a}..{b} {:?}", &text[a..b]);
                }
            }
        }
    }

    #[test]
    fn fast_and_reference_encoders_agree() {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let tc = TokenCounter::new(enc).unwrap();
            for text in ["Hello, world!", "  spaces   before\n\n\nand after  ", "日本語 🎉 café 123456789 it's", "a\r\nb\t\tc"]
            {
                assert_eq!(tc.encode(text), tc.encode_reference(text), "{enc:?} {text:?}");
                assert_eq!(tc.count(text), tc.encode_reference(text).len());
            }
        }
    }

    #[test]
    fn every_encoding_loads() {
        for e in [Encoding::Cl100kBase, Encoding::O200kBase, Encoding::P50kBase] {
            let tc = TokenCounter::new(e).unwrap();
            assert!(tc.count("The quick brown fox") >= 4);
            assert_eq!(e.name().parse::<Encoding>().unwrap(), e);
        }
        assert!("gpt2".parse::<Encoding>().is_err());
    }
}
