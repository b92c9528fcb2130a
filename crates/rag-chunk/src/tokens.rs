//! Token counting with tiktoken-rs: BPE files embedded in the binary, loaded once, shared.

use std::sync::{Arc, OnceLock};

use rag_core::{RagError, Result};
use tiktoken_rs::CoreBPE;

/// A tiktoken encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// GPT-4 / GPT-3.5 / text-embedding-3 (default).
    #[default]
    Cl100kBase,
    /// GPT-4o family.
    O200kBase,
    /// Codex / text-davinci-002/003.
    P50kBase,
}

impl Encoding {
    /// The encoding's tiktoken name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
            Self::P50kBase => "p50k_base",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = RagError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cl100k_base" => Ok(Self::Cl100kBase),
            "o200k_base" => Ok(Self::O200kBase),
            "p50k_base" => Ok(Self::P50kBase),
            other => Err(RagError::invalid_input(
                "encoding",
                format!("unknown tiktoken encoding `{other}`: use cl100k_base, o200k_base or p50k_base"),
            )),
        }
    }
}

struct Loaded {
    bpe: CoreBPE,
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
    Ok(Arc::new(Loaded { bpe, token_len }))
}

impl TokenCounter {
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
        if text.is_empty() { 0 } else { self.loaded.bpe.encode_ordinary(text).len() }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.loaded.bpe.encode_ordinary(text)
    }

    /// Byte offset in `text` where each token starts, plus `text.len()` at the end (so token `i`
    /// spans `offsets[i]..offsets[i + 1]`). Byte-level BPE can split a UTF-8 character between two
    /// tokens; such offsets are moved forward to the next character boundary, so every offset is a
    /// valid place to slice `text`.
    pub fn token_offsets(&self, text: &str) -> Vec<usize> {
        let tokens = self.loaded.bpe.encode_ordinary(text);
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
    fn every_encoding_loads() {
        for e in [Encoding::Cl100kBase, Encoding::O200kBase, Encoding::P50kBase] {
            let tc = TokenCounter::new(e).unwrap();
            assert!(tc.count("The quick brown fox") >= 4);
            assert_eq!(e.name().parse::<Encoding>().unwrap(), e);
        }
        assert!("gpt2".parse::<Encoding>().is_err());
    }
}
